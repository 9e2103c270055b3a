//! Properties: the secret format, page tokens and validators (proptest),
//! and revoke and pagination on a server (a few randomized cases).

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use tokend::domain::TokenSecret;
use tokend::domain::error::{FieldViolation, MAX_ECHOED_VALUE_BYTES};
use tokend::domain::pagination::{self, Cursor, InvalidPageToken, PageScope, PageTokenKey};
use tokend::domain::secret::{MAX_SECRET_LEN, MalformedSecret};
use tokend::domain::validation::{self, KindInput, Violations};
use tokend::grpc::proto::{
    CreateTokenRequest, GetTokenRequest, ListTokensRequest, Token, TokenKind,
};

use crate::backend_tests;
use crate::support::scrape_request;
use crate::support::{
    Backend, TestResult, TestServer, all_tokens, assert_tokens_and_events_agree, authed,
    expect_error,
};

backend_tests!(
    revoke_is_idempotent_and_a_foreign_org_is_never_mutated_randomized,
    pagination_visits_every_row_once_randomized,
);

/// A create request of `kind`, with whatever that kind requires.
fn create_of(kind: TokenKind, name: &str, slot: u32) -> CreateTokenRequest {
    let mut request = CreateTokenRequest {
        kind: kind as i32,
        name: name.to_owned(),
        ..Default::default()
    };
    match kind {
        TokenKind::ServiceAccount => request.service_account_slug = format!("sa-{}", slot % 3),
        TokenKind::WorkspaceApiKey => request.workspace_id = format!("g-{:010x}", slot % 3),
        TokenKind::Unspecified | TokenKind::Scrape | TokenKind::PersonalAccess => {}
    }
    request
}

const KINDS: [TokenKind; 4] = [
    TokenKind::Scrape,
    TokenKind::PersonalAccess,
    TokenKind::ServiceAccount,
    TokenKind::WorkspaceApiKey,
];

fn domain_kind() -> impl Strategy<Value = tokend::domain::TokenKind> {
    proptest::sample::select(tokend::domain::TokenKind::ALL.to_vec())
}

/// A page-token scope holding one arbitrary filter value.
fn page_scope(filter: &str) -> PageScope {
    PageScope::new("tokens").with_text("filter", filter)
}

fn page_key(byte: u8) -> PageTokenKey {
    PageTokenKey::from_bytes([byte; PageTokenKey::LEN])
}

/// Every echoed value of a check is at most 64 bytes, and equal to the
/// input when that is short (`None`: several inputs, not compared).
fn assert_echo_bounded(check: impl FnOnce(&mut Violations), input: Option<&str>) -> usize {
    let mut violations = Violations::default();
    check(&mut violations);
    let reported = violations
        .into_result()
        .err()
        .map(|fields| fields.listed)
        .unwrap_or_default();
    for violation in &reported {
        assert!(
            violation.value.len() <= MAX_ECHOED_VALUE_BYTES,
            "{} bytes echoed",
            violation.value.len()
        );
        if let Some(input) = input.filter(|i| i.len() <= MAX_ECHOED_VALUE_BYTES) {
            assert_eq!(violation.value, input);
        }
    }
    reported.len()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_generated_secret_parses_and_no_single_character_change_does(
        kind in domain_kind(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        edit in 0..3u8,
    ) {
        let secret = TokenSecret::generate(kind).expect("random source");
        let text = secret.expose().to_owned();
        let parsed = TokenSecret::parse(&text).expect("a generated secret parses");
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert!(text.len() <= MAX_SECRET_LEN);
        let mut chars: Vec<char> = text.chars().collect();
        let at = position.index(chars.len());
        match edit {
            // Substitute one character by any other.
            0 => {
                prop_assume!(chars[at] != replacement);
                chars[at] = replacement;
            }
            // Delete one.
            1 => {
                chars.remove(at);
            }
            // Insert one.
            _ => chars.insert(at, replacement),
        }
        let changed: String = chars.into_iter().collect();
        prop_assert!(TokenSecret::parse(&changed).is_err(), "{} parsed", changed);
    }

    #[test]
    fn any_string_is_refused_or_is_a_well_formed_secret(input in any::<String>()) {
        match TokenSecret::parse(&input) {
            Ok(secret) => {
                prop_assert!(input.len() <= MAX_SECRET_LEN);
                prop_assert!(input.starts_with(secret.kind().secret_prefix()));
            }
            Err(MalformedSecret::TooLong) => prop_assert!(input.len() > MAX_SECRET_LEN),
            Err(_) => {}
        }
    }

    #[test]
    fn anything_longer_than_a_secret_is_too_long(
        input in proptest::collection::vec(any::<char>(), 17..2000),
    ) {
        let text: String = input.into_iter().collect();
        prop_assume!(text.len() > MAX_SECRET_LEN);
        prop_assert_eq!(TokenSecret::parse(&text).err(), Some(MalformedSecret::TooLong));
    }

    #[test]
    fn page_tokens_round_trip_and_never_decode_under_another_scope_or_key(
        after_id in 1..=i64::MAX,
        scope in ".{0,40}",
        other in ".{0,40}",
        key in any::<u8>(),
        other_key in any::<u8>(),
    ) {
        let cursor = Cursor { after_id };
        let token = pagination::encode(&page_key(key), &page_scope(&scope), cursor);
        prop_assert_eq!(
            pagination::decode(&page_key(key), &page_scope(&scope), &token),
            Ok(Some(cursor))
        );
        if other != scope {
            prop_assert_eq!(
                pagination::decode(&page_key(key), &page_scope(&other), &token),
                Err(InvalidPageToken)
            );
        }
        if other_key != key {
            prop_assert_eq!(
                pagination::decode(&page_key(other_key), &page_scope(&scope), &token),
                Err(InvalidPageToken)
            );
        }
    }

    #[test]
    fn a_cursor_below_one_never_decodes(after_id in i64::MIN..1, scope in ".{0,20}") {
        let token = pagination::encode(&page_key(1), &page_scope(&scope), Cursor { after_id });
        prop_assert_eq!(
            pagination::decode(&page_key(1), &page_scope(&scope), &token),
            Err(InvalidPageToken)
        );
    }

    #[test]
    fn arbitrary_page_tokens_never_panic_and_never_decode(
        token in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,200}", "[A-Za-z0-9_-]{55}"],
        scope in ".{0,20}",
    ) {
        // Without the key nobody makes a token that decodes.
        let decoded = pagination::decode(&page_key(1), &page_scope(&scope), &token);
        prop_assert!(matches!(decoded, Ok(None) | Err(InvalidPageToken)));
        prop_assert_eq!(decoded == Ok(None), token.is_empty());
    }

    #[test]
    fn validators_never_panic_and_echo_at_most_64_bytes(
        value in prop_oneof![
            any::<String>(),
            ".{60,400}",
            "[a-z0-9-]{0,70}",
            "g-[0-9a-fA-F]{8,12}",
            "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}a-z]{0,120}",
        ],
        number in any::<i64>(),
        small in any::<i32>(),
        scopes in proptest::collection::vec(".{0,80}", 0..60),
    ) {
        let text = Some(value.as_str());
        let slug = assert_echo_bounded(|v| validation::check_slug(v, "slug", &value), text);
        prop_assert!(slug <= 1);
        let workspace =
            assert_echo_bounded(|v| validation::check_workspace_id(v, "ws", &value), text);
        prop_assert!(workspace <= 1);
        let name = assert_echo_bounded(|v| validation::check_name(v, "name", &value), text);
        prop_assert!(name <= 1);
        let reason = assert_echo_bounded(
            |v| {
                validation::check_reason(v, &value);
            },
            text,
        );
        prop_assert!(reason <= 1);
        let token_id = assert_echo_bounded(
            |v| {
                let _ = validation::check_token_id(v, &value);
            },
            text,
        );
        prop_assert!(token_id <= 1);
        let number_text = number.to_string();
        assert_echo_bounded(|v| validation::check_id(v, number), Some(&number_text));
        let small_text = small.to_string();
        assert_echo_bounded(
            |v| {
                validation::check_page_size(v, small);
            },
            Some(&small_text),
        );
        assert_echo_bounded(
            |v| {
                let _ = validation::check_required_kind(v, KindInput::Unknown(small));
            },
            Some(&small_text),
        );
        // Scopes: one violation for too many, else at most one per scope,
        // and never more than 10 listed (the rest are counted).
        let listed = assert_echo_bounded(|v| validation::check_scopes(v, "scopes", &scopes), None);
        prop_assert!(listed <= validation::MAX_REPORTED_VIOLATIONS);
        if scopes.len() > validation::MAX_SCOPES {
            prop_assert_eq!(listed, 1);
        }
    }

    #[test]
    fn an_echoed_value_is_a_prefix_of_at_most_64_bytes(value in any::<String>()) {
        let violation = FieldViolation::new("field", "message", &value);
        prop_assert!(violation.value.len() <= MAX_ECHOED_VALUE_BYTES);
        if value.len() <= MAX_ECHOED_VALUE_BYTES {
            prop_assert_eq!(&violation.value, &value);
        } else {
            let kept = violation.value.strip_suffix('…').expect("an ellipsis");
            prop_assert!(value.starts_with(kept));
        }
    }

    #[test]
    fn every_hyphenated_uuid_is_a_token_id_and_other_forms_are_not(bits in any::<u128>()) {
        let uuid = uuid::Uuid::from_u128(bits);
        let mut violations = Violations::default();
        prop_assert_eq!(
            validation::check_token_id(&mut violations, &uuid.hyphenated().to_string()).ok(),
            Some(uuid)
        );
        for other in [uuid.simple().to_string(), uuid.braced().to_string(), uuid.urn().to_string()] {
            prop_assert_eq!(validation::check_token_id(&mut violations, &other).ok(), None);
        }
    }
}

/// Randomized cases run against a server: few, to keep the runtime low.
const SERVER_CASES: u64 = 4;

async fn revoke_is_idempotent_and_a_foreign_org_is_never_mutated_randomized(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    for seed in 0..SERVER_CASES {
        let mut rng = StdRng::seed_from_u64(0x7e57_0000 + seed);
        let (org, other) = (format!("acme-{seed}"), format!("evil-{seed}"));
        let owner = server.admin(&org);
        let intruder = server.admin(&other);
        let mut tokens: Vec<Token> = Vec::new();
        for j in 0..rng.random_range(3..9u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let created = client
                .create_token(authed(create_of(kind, &format!("t{j}"), j), &owner))
                .await?;
            tokens.push(created.into_inner().token.expect("token"));
        }
        for j in 0..rng.random_range(1..4u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            client
                .create_token(authed(create_of(kind, &format!("e{j}"), j), &intruder))
                .await?;
        }
        let intruders_own = all_tokens(&server, &intruder).await?;
        let mut first_revoke: BTreeMap<i64, Option<prost_types::Timestamp>> = BTreeMap::new();
        let mut snapshot = all_tokens(&server, &owner).await?;
        for step in 0..rng.random_range(10..20u32) {
            let target = tokens[rng.random_range(0..tokens.len())].clone();
            let context = format!("seed {seed}, step {step}, token {}", target.id);
            if rng.random_bool(0.5) {
                // The owner revokes, perhaps again: the first revoke_time
                // stays, and so does everything else about the token.
                let revoked = crate::lifecycle::revoke(&server, &owner, &target, "r").await?;
                let time = first_revoke.entry(target.id).or_insert(revoked.revoke_time);
                assert_eq!(&revoked.revoke_time, time, "{context}: idempotent");
                assert!(revoked.revoke_time.is_some(), "{context}");
                snapshot = all_tokens(&server, &owner).await?;
            } else {
                // Another org's admin: NOT_FOUND, and nothing changes.
                let attempt = if rng.random_bool(0.5) {
                    crate::lifecycle::revoke(&server, &intruder, &target, "x")
                        .await
                        .map(|_| ())
                } else {
                    client
                        .get_token(authed(GetTokenRequest { id: target.id }, &intruder))
                        .await
                        .map(|_| ())
                };
                expect_error(attempt, Code::NotFound, "TOKEN_NOT_FOUND");
                assert_eq!(
                    all_tokens(&server, &owner).await?,
                    snapshot,
                    "{context}: the foreign org was not mutated"
                );
            }
        }
        // One revoked event per revoked token, one created event each.
        assert_tokens_and_events_agree(&server, &owner).await?;
        assert_tokens_and_events_agree(&server, &intruder).await?;
        assert_eq!(
            all_tokens(&server, &intruder).await?,
            intruders_own,
            "seed {seed}: the intruder's own tokens are untouched"
        );
    }
    Ok(())
}

async fn pagination_visits_every_row_once_randomized(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    for seed in 0..SERVER_CASES {
        let mut rng = StdRng::seed_from_u64(0x9a9e_0000 + seed);
        let org = format!("pages-{seed}");
        let owner = server.admin(&org);
        let noise = server.admin(&format!("noise-{seed}"));
        let mut tokens: Vec<Token> = Vec::new();
        for j in 0..rng.random_range(0..30u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let created = client
                .create_token(authed(create_of(kind, &format!("p{j}"), j), &owner))
                .await?;
            tokens.push(created.into_inner().token.expect("token"));
            // Another org's rows between ours.
            if rng.random_bool(0.3) {
                client
                    .create_token(authed(scrape_request(&format!("n{j}")), &noise))
                    .await?;
            }
        }
        let mut revoked = HashSet::new();
        for token in &tokens {
            if rng.random_bool(0.3) {
                crate::lifecycle::revoke(&server, &owner, token, "").await?;
                revoked.insert(token.id);
            }
        }
        for _ in 0..3 {
            let page_size = rng.random_range(1..12i32);
            let show_revoked = rng.random_bool(0.5);
            let kind = if rng.random_bool(0.5) {
                TokenKind::Unspecified
            } else {
                KINDS[rng.random_range(0..KINDS.len())]
            };
            let context = format!(
                "seed {seed}, {} tokens, page_size {page_size}, show_revoked {show_revoked}, kind {kind:?}",
                tokens.len()
            );
            let expected: Vec<i64> = tokens
                .iter()
                .filter(|t| show_revoked || !revoked.contains(&t.id))
                .filter(|t| kind == TokenKind::Unspecified || t.kind == kind as i32)
                .map(|t| t.id)
                .collect();
            let (mut seen, mut page_token, mut pages) = (Vec::new(), String::new(), 0);
            loop {
                let page = client
                    .list_tokens(authed(
                        ListTokensRequest {
                            kind: kind as i32,
                            show_revoked,
                            page_size,
                            page_token: page_token.clone(),
                            ..Default::default()
                        },
                        &owner,
                    ))
                    .await?
                    .into_inner();
                assert!(
                    page.tokens.len() <= usize::try_from(page_size)?,
                    "{context}"
                );
                seen.extend(page.tokens.iter().map(|t| t.id));
                pages += 1;
                assert!(pages <= expected.len() + 1, "{context}: pages never end");
                if page.next_page_token.is_empty() {
                    break;
                }
                // A page token is the caller's org's only.
                expect_error(
                    client
                        .list_tokens(authed(
                            ListTokensRequest {
                                kind: kind as i32,
                                show_revoked,
                                page_size,
                                page_token: page.next_page_token.clone(),
                                ..Default::default()
                            },
                            &noise,
                        ))
                        .await,
                    Code::InvalidArgument,
                    "INVALID_FIELD",
                );
                page_token = page.next_page_token;
            }
            assert_eq!(seen, expected, "{context}: every row once, in order");
            let size = usize::try_from(page_size)?;
            assert_eq!(pages, expected.len().div_ceil(size).max(1), "{context}");
        }
    }
    Ok(())
}
