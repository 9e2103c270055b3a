//! RevokeTokens: its permission cells, its validation rows, which tokens
//! each selector takes, the dry run, the per-call cap and the conditional
//! revoke (a token revoked meanwhile gets no second event).

use super::*;
use crate::domain::bulk_revoke::BulkRevoked;
use crate::domain::request::{MAX_REVOKED_PER_CALL, RevokeTokensInput};

/// RevokeTokens of everything of `kind`.
fn of_kind(kind: TokenKind) -> RevokeTokensInput {
    RevokeTokensInput {
        kind: KindInput::Known(kind),
        owner_user_id: String::new(),
        service_account_slug: String::new(),
        workspace_id: String::new(),
        reason: "leak".to_owned(),
        dry_run: false,
    }
}

/// RevokeTokens with no selector, then changed by `change`.
fn selecting(change: impl FnOnce(&mut RevokeTokensInput)) -> RevokeTokensInput {
    let mut input = of_kind(TokenKind::Scrape);
    input.kind = KindInput::Unspecified;
    change(&mut input);
    input
}

impl Fixture {
    async fn revoke_tokens(
        &self,
        caller: &Caller,
        input: RevokeTokensInput,
    ) -> Result<BulkRevoked, ServiceError> {
        self.core
            .revoke_tokens(caller, &self.audit(caller), input)
            .await
    }
}

fn ok<T>(result: Result<T, ServiceError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{error:?}"),
    }
}

fn revoked_events(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| e.token_kind.map(|kind| kind.revoked_event()) == Some(e.event_type))
        .collect()
}

mod permissions {
    use super::*;

    /// RevokeTokens of every scrape token of the caller's organisation, as
    /// `alice` of `org_id` holding `grant` ("admin" the role, "" nothing).
    async fn attempt(org_id: &str, grant: &str) -> Result<usize, String> {
        let fx = Fixture::new();
        fx.made(&admin(ACME), TokenKind::Scrape, "scraper").await;
        let who = match grant {
            "admin" => caller(org_id, "alice", &["admin"], &[]),
            "" => caller(org_id, "alice", &[], &[]),
            permission => caller(org_id, "alice", &[], &[permission]),
        };
        let events_before = fx.repository.audit_events();
        match fx.revoke_tokens(&who, of_kind(TokenKind::Scrape)).await {
            Ok(done) => Ok(done.tokens.len()),
            Err(ServiceError::PermissionDenied { permission }) => {
                assert!(fx.no_token_revoked());
                assert_eq!(fx.repository.audit_events(), events_before);
                Err(permission.to_owned())
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    macro_rules! cells {
        ($($name:ident: $org:expr, $grant:literal => $expected:expr;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    assert_eq!(attempt($org, $grant).await, $expected, "{} as {:?}", $org, $grant);
                }
            )*
        };
    }

    fn denied() -> Result<usize, String> {
        Err("admin".to_owned())
    }

    // Needs the `admin` role; an admin acts in its own organisation only, so
    // another organisation's admin revokes nothing of `acme`.
    cells! {
        admin_role: ACME, "admin" => Ok(1);
        other_org_admin_role: EVIL, "admin" => Ok(0);
        user_app_keys: ACME, "user_app_keys" => denied();
        org_app_keys_read: ACME, "org_app_keys_read" => denied();
        org_app_keys_write: ACME, "org_app_keys_write" => denied();
        service_account_tokens_write: ACME, "service_account_tokens_write" => denied();
        workspace_api_keys_write: ACME, "workspace_api_keys_write" => denied();
        tokens_introspect: ACME, "tokens_introspect" => denied();
        tokens_revoke_leaked: ACME, "tokens_revoke_leaked" => denied();
        no_permission: ACME, "" => denied();
    }
}

mod validation {
    use super::*;

    /// The violations of `input` for an admin (empty: it passed); a bad
    /// request reaches no storage.
    async fn check(input: RevokeTokensInput, expected: &[&str]) {
        let fx = Fixture::new();
        let got = violations(fx.revoke_tokens(&admin(ACME), input).await).unwrap_or_default();
        assert_eq!(got, expected, "violations");
        if !expected.is_empty() {
            assert_eq!(
                fx.repository.calls(),
                [],
                "a bad request reaches no storage"
            );
        }
    }

    macro_rules! cases {
        ($($name:ident: $input:expr => [$($field:literal),*];)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    check($input, &[$($field),*]).await;
                }
            )*
        };
    }

    cases! {
        // At least one selector; with none the violation names `kind`.
        no_selector: selecting(|_| ()) => ["kind"];
        no_selector_dry_run: selecting(|i| i.dry_run = true) => ["kind"];
        no_selector_with_only_a_reason: selecting(|i| i.reason = "why".into()) => ["kind"];
        kind_alone: of_kind(TokenKind::PersonalAccess) => [];
        kind_unknown: selecting(|i| i.kind = KindInput::Unknown(9)) => ["kind"];
        owner_alone: selecting(|i| i.owner_user_id = "alice@example.com".into()) => [];
        owner_257_bytes: selecting(|i| i.owner_user_id = "o".repeat(257)) => ["owner_user_id"];
        owner_with_a_control_character: selecting(|i| i.owner_user_id = "al\u{7}ice".into()) => ["owner_user_id"];
        slug_alone: selecting(|i| i.service_account_slug = SERVICE_ACCOUNT.into()) => [];
        slug_malformed: selecting(|i| i.service_account_slug = "Bad".into()) => ["service_account_slug"];
        slug_with_its_kind: selecting(|i| { i.service_account_slug = SERVICE_ACCOUNT.into(); i.kind = KindInput::Known(TokenKind::ServiceAccount); }) => [];
        slug_with_another_kind: selecting(|i| { i.service_account_slug = SERVICE_ACCOUNT.into(); i.kind = KindInput::Known(TokenKind::Scrape); }) => ["service_account_slug"];
        workspace_alone: selecting(|i| i.workspace_id = WORKSPACE.into()) => [];
        workspace_malformed: selecting(|i| i.workspace_id = "g-ABCDEF0123".into()) => ["workspace_id"];
        workspace_with_its_kind: selecting(|i| { i.workspace_id = WORKSPACE.into(); i.kind = KindInput::Known(TokenKind::WorkspaceApiKey); }) => [];
        workspace_with_another_kind: selecting(|i| { i.workspace_id = WORKSPACE.into(); i.kind = KindInput::Known(TokenKind::PersonalAccess); }) => ["workspace_id"];
        reason_500_characters: selecting(|i| { i.kind = KindInput::Known(TokenKind::Scrape); i.reason = "r".repeat(500); }) => [];
        reason_501_characters: selecting(|i| { i.kind = KindInput::Known(TokenKind::Scrape); i.reason = "r".repeat(501); }) => ["reason"];
        reason_with_newline: selecting(|i| { i.kind = KindInput::Known(TokenKind::Scrape); i.reason = "a\nb".into(); }) => [];
        reason_with_a_bidi_override: selecting(|i| { i.kind = KindInput::Known(TokenKind::Scrape); i.reason = "a\u{202e}b".into(); }) => ["reason"];
        every_field_bad: selecting(|i| {
            i.kind = KindInput::Unknown(9);
            i.owner_user_id = "o".repeat(257);
            i.service_account_slug = "-".into();
            i.workspace_id = "g-".into();
            i.reason = "\u{0}".into();
        }) => ["kind", "owner_user_id", "service_account_slug", "workspace_id", "reason"];
    }
}

/// The tokens of `acme` and `evil` the selector tests choose from, by name.
async fn population(fx: &Fixture) {
    let root = admin(ACME);
    let alice = user(ACME, "alice");
    let bob = user(ACME, "bob");
    fx.made(&root, TokenKind::Scrape, "scraper").await;
    fx.made(&alice, TokenKind::PersonalAccess, "alice-laptop")
        .await;
    fx.made(&alice, TokenKind::PersonalAccess, "alice-ci").await;
    fx.made(&bob, TokenKind::PersonalAccess, "bob-laptop").await;
    fx.made(&root, TokenKind::ServiceAccount, "deploy").await;
    let mut other_sa = create_input(TokenKind::ServiceAccount, "deploy");
    other_sa.service_account_slug = "billing".to_owned();
    ok(fx.create(&root, other_sa).await);
    fx.made(&root, TokenKind::WorkspaceApiKey, "key").await;
    let mut other_ws = create_input(TokenKind::WorkspaceApiKey, "other-key");
    other_ws.workspace_id = "g-00000000bb".to_owned();
    ok(fx.create(&root, other_ws).await);
    let mut short = create_input(TokenKind::PersonalAccess, "alice-short");
    short.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::seconds(10)));
    ok(fx.create(&alice, short).await);
    let (old, _) = fx
        .made(&alice, TokenKind::PersonalAccess, "alice-old")
        .await;
    ok(fx.revoke(&alice, revoke_input(&old, "gone")).await);
    // Another organisation's tokens, of the same owner names.
    fx.made(
        &user(EVIL, "alice"),
        TokenKind::PersonalAccess,
        "evil-alice",
    )
    .await;
    fx.made(&admin(EVIL), TokenKind::Scrape, "evil-scraper")
        .await;
}

/// The names `input` revokes for `acme`'s admin, 11 s after the
/// population was made (so `alice-short` has expired): in id order, and
/// the same names, events and reason as a dry run announced.
async fn revoked_names(input: RevokeTokensInput) -> Vec<String> {
    let fx = Fixture::new();
    population(&fx).await;
    fx.clock.advance(TimeDelta::seconds(11));
    let root = admin(ACME);
    let tokens_before = fx.repository.tokens();
    let events_before = fx.repository.audit_events().len();
    let announced = ok(fx
        .revoke_tokens(
            &root,
            RevokeTokensInput {
                dry_run: true,
                ..input.clone()
            },
        )
        .await);
    assert_eq!(
        fx.repository.tokens(),
        tokens_before,
        "a dry run changes nothing"
    );
    assert_eq!(
        fx.repository.audit_events().len(),
        events_before,
        "nor writes events"
    );
    let done = ok(fx.revoke_tokens(&root, input.clone()).await);
    assert!(!done.more && !announced.more);
    let ids = |outcome: &BulkRevoked| {
        outcome
            .tokens
            .iter()
            .map(|t| t.token_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&done),
        ids(&announced),
        "the dry run lists what a call revokes"
    );
    let events = fx.repository.audit_events();
    let new_events = &events[events_before..];
    assert_eq!(new_events.len(), done.tokens.len(), "one event per token");
    for (event, token) in new_events.iter().zip(&done.tokens) {
        assert_eq!(event.event_type, token.kind.revoked_event());
        assert_eq!(event.token_id, token.token_id);
        assert_eq!(event.org_id, ACME);
        assert_eq!(event.actor, "root");
        assert_eq!(
            event.reason.as_deref(),
            Some(input.reason.as_str()).filter(|r| !r.is_empty())
        );
        assert_eq!(token.revoked_at, Some(fx.now()));
        assert_eq!(token.revoked_by.as_deref(), Some("root"));
    }
    done.tokens.into_iter().map(|t| t.name).collect()
}

macro_rules! selects {
    ($($name:ident: $input:expr => [$($token:literal),*];)*) => {
        mod selectors {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    assert_eq!(revoked_names($input).await, [$($token),*] as [&str; _]);
                }
            )*
        }
    };
}

// Only active tokens (not revoked, not expired) of the caller's own
// organisation; every given selector must match.
selects! {
    scrape_kind: of_kind(TokenKind::Scrape) => ["scraper"];
    personal_kind: of_kind(TokenKind::PersonalAccess) => ["alice-laptop", "alice-ci", "bob-laptop"];
    service_account_kind: of_kind(TokenKind::ServiceAccount) => ["deploy", "deploy"];
    workspace_kind: of_kind(TokenKind::WorkspaceApiKey) => ["key", "other-key"];
    owner: selecting(|i| i.owner_user_id = "alice".into()) => ["alice-laptop", "alice-ci"];
    owner_and_kind: selecting(|i| { i.owner_user_id = "bob".into(); i.kind = KindInput::Known(TokenKind::PersonalAccess); }) => ["bob-laptop"];
    owner_and_another_kind: selecting(|i| { i.owner_user_id = "bob".into(); i.kind = KindInput::Known(TokenKind::Scrape); }) => [];
    owner_root_every_kind: selecting(|i| i.owner_user_id = "root".into()) => ["scraper", "deploy", "deploy", "key", "other-key"];
    unknown_owner: selecting(|i| i.owner_user_id = "mallory".into()) => [];
    service_account: selecting(|i| i.service_account_slug = "billing".into()) => ["deploy"];
    workspace: selecting(|i| i.workspace_id = "g-00000000bb".into()) => ["other-key"];
    workspace_and_owner: selecting(|i| { i.workspace_id = WORKSPACE.into(); i.owner_user_id = "alice".into(); }) => [];
    no_reason: selecting(|i| { i.kind = KindInput::Known(TokenKind::Scrape); i.reason.clear(); }) => ["scraper"];
}

/// A call handles at most 1000 tokens, oldest first, and says when more
/// remain; the next call takes the rest.
#[tokio::test]
async fn a_call_revokes_at_most_1000_and_says_more() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let cap = usize::try_from(MAX_REVOKED_PER_CALL).unwrap_or(usize::MAX);
    for n in 0..=cap {
        fx.made(&root, TokenKind::Scrape, &format!("s{n}")).await;
    }
    let dry = ok(fx
        .revoke_tokens(
            &root,
            RevokeTokensInput {
                dry_run: true,
                ..of_kind(TokenKind::Scrape)
            },
        )
        .await);
    assert_eq!((dry.tokens.len(), dry.more), (cap, true));
    let first = ok(fx.revoke_tokens(&root, of_kind(TokenKind::Scrape)).await);
    assert_eq!((first.tokens.len(), first.more), (cap, true));
    assert!(
        first.tokens.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first"
    );
    assert_eq!(first.tokens.first().map(|t| t.name.as_str()), Some("s0"));
    let second = ok(fx.revoke_tokens(&root, of_kind(TokenKind::Scrape)).await);
    assert_eq!((second.tokens.len(), second.more), (1, false));
    assert_eq!(second.tokens[0].name, format!("s{cap}"));
    let third = ok(fx.revoke_tokens(&root, of_kind(TokenKind::Scrape)).await);
    assert_eq!((third.tokens.len(), third.more), (0, false));
    assert_eq!(revoked_events(&fx.repository.audit_events()).len(), cap + 1);
}

/// The revoke is a compare-and-set: a token revoked after the call
/// selected it (by another call, even one on a replica whose clock runs
/// ahead, so that its `revoked_at` lies in this call's future) is left
/// alone, keeps its first revocation and gets no second event.
#[tokio::test]
async fn a_token_revoked_meanwhile_gets_no_second_event() {
    use crate::domain::repository::TokenRepository;
    let fx = Fixture::new();
    let root = admin(ACME);
    let (first, _) = fx.made(&root, TokenKind::Scrape, "first").await;
    let (second, _) = fx.made(&root, TokenKind::Scrape, "second").await;
    let (third, _) = fx.made(&root, TokenKind::Scrape, "third").await;
    // Read as active now; then revoked by hand now, and by a replica five
    // seconds ahead.
    let selected = [first.clone(), second.clone(), third.clone()];
    let audit = fx.audit(&root);
    ok(fx.revoke(&root, revoke_input(&first, "by hand")).await);
    fx.clock.advance(TimeDelta::seconds(5));
    ok(fx
        .revoke(&root, revoke_input(&third, "by a replica ahead"))
        .await);
    let events_before = fx.repository.audit_events().len();
    let revocation = crate::domain::token::Revocation {
        revoked_by: "root".to_owned(),
        reason: Some("bulk".to_owned()),
    };
    let revoked = ok(fx
        .repository
        .revoke_active(ACME, &selected, &revocation, &audit)
        .await
        .map_err(ServiceError::from));
    assert_eq!(
        revoked.iter().map(|t| t.id).collect::<Vec<_>>(),
        [second.id]
    );
    assert_eq!(fx.repository.audit_events().len(), events_before + 1);
    let reason_of = |id| {
        fx.repository
            .tokens()
            .into_iter()
            .find(|t| t.id == id)
            .and_then(|t| t.revoke_reason)
    };
    assert_eq!(reason_of(first.id).as_deref(), Some("by hand"));
    assert_eq!(reason_of(third.id).as_deref(), Some("by a replica ahead"));
}

/// A failed store write answers its error and leaves every token active.
#[tokio::test]
async fn an_unavailable_database_is_unavailable() {
    let fx = Fixture::new();
    let root = admin(ACME);
    fx.made(&root, TokenKind::Scrape, "scraper").await;
    fx.repository
        .fail_next_with(StoreError::Unavailable("down".into()));
    let result = fx.revoke_tokens(&root, of_kind(TokenKind::Scrape)).await;
    assert!(
        matches!(result, Err(ServiceError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(fx.no_token_revoked());
}
