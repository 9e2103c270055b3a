//! The validation table of docs/reference.md ("Validation"): each field rule
//! with good and bad values, each row its own test. A bad request lists one
//! violation per bad field, in request order, and reaches no storage at all
//! (the repository records no call).

use super::*;

/// A request of one of the RPCs that take fields.
enum Call {
    Create(CreateTokenInput),
    Get(i64),
    List(ListTokensInput),
    Revoke(RevokeInput),
    Audit(ListAuditEventsInput),
    Authenticate(AuthenticateInput),
}

/// CreateToken of a valid `kind` input, then changed by `change`.
fn create(kind: TokenKind, change: impl FnOnce(&mut CreateTokenInput)) -> Call {
    let mut input = create_input(kind, "name");
    if kind == TokenKind::ServiceAccount {
        input.name = "deploy".to_owned();
    }
    change(&mut input);
    Call::Create(input)
}

/// CreateToken of a scrape token named `name`.
fn named(name: &str) -> Call {
    create(TokenKind::Scrape, |input| input.name = name.to_owned())
}

fn scopes(scopes: &[&str]) -> Call {
    let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
    create(TokenKind::Scrape, |input| input.scopes = scopes)
}

/// AuthenticateToken (of a secret that matches nothing) requiring `scopes`.
fn requiring(scopes: &[&str]) -> Call {
    Call::Authenticate(AuthenticateInput {
        secret: "tkd_pat_unknown".to_owned(),
        required_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn expiring(at: TimestampInput) -> Call {
    create(TokenKind::Scrape, |input| input.expire_time = Some(at))
}

fn in_future(by: TimeDelta) -> TimestampInput {
    TimestampInput::Valid(start_time() + by)
}

fn list(change: impl FnOnce(&mut ListTokensInput)) -> Call {
    let mut input = list_all();
    change(&mut input);
    Call::List(input)
}

fn audit(change: impl FnOnce(&mut ListAuditEventsInput)) -> Call {
    let mut input = all_events();
    change(&mut input);
    Call::Audit(input)
}

fn revoke_scrape(id: i64) -> Call {
    Call::Revoke(RevokeInput::Scrape {
        id,
        reason: String::new(),
    })
}

fn revoke_personal(token_id: &str) -> Call {
    Call::Revoke(RevokeInput::PersonalAccess {
        token_id: token_id.to_owned(),
        reason: String::new(),
    })
}

fn revoke_service_account(slug: &str, token_slug: &str, reason: &str) -> Call {
    Call::Revoke(RevokeInput::ServiceAccount {
        service_account_slug: slug.to_owned(),
        token_slug: token_slug.to_owned(),
        reason: reason.to_owned(),
    })
}

fn delete_workspace_key(workspace_id: &str, key_name: &str) -> Call {
    Call::Revoke(RevokeInput::WorkspaceApiKey {
        workspace_id: workspace_id.to_owned(),
        key_name: key_name.to_owned(),
        reason: String::new(),
    })
}

fn with_reason(reason: &str) -> Call {
    revoke_service_account(SERVICE_ACCOUNT, "deploy", reason)
}

/// The violations `call` gets from an admin (empty: the fields passed).
async fn locations_of(fx: &Fixture, call: Call) -> Vec<String> {
    let who = admin(ACME);
    let result = match call {
        Call::Create(input) => fx.create(&who, input).await.map(drop),
        Call::Get(id) => fx.core.get_token(&who, id).await.map(drop),
        Call::List(input) => fx.core.list_tokens(&who, fx.now(), input).await.map(drop),
        Call::Revoke(input) => fx.revoke(&who, input).await.map(drop),
        Call::Audit(input) => fx.core.list_audit_events(&who, input).await.map(drop),
        Call::Authenticate(input) => {
            let introspector = caller(ACME, "gateway", &[], &["tokens_introspect"]);
            fx.core
                .authenticate_token(&introspector, &fx.audit(&introspector), input)
                .await
                .map(drop)
        }
    };
    // Passed validation (no violations): a success, or a later refusal
    // such as NOT_FOUND.
    violations(result).unwrap_or_default()
}

/// `call` is refused with exactly the violations at `expected`, in order,
/// and touches no storage; with `expected` empty, it passes validation.
async fn check(call: Call, expected: &[&str]) {
    let fx = Fixture::new();
    let got = locations_of(&fx, call).await;
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
    ($($name:ident: $call:expr => [$($field:literal),*];)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                check($call, &[$($field),*]).await;
            }
        )*
    };
}

/// 10000-01-01T00:00:00Z, the first instant refused.
fn year_10000() -> TimestampInput {
    TimestampInput::Valid(crate::domain::validation::max_timestamp_exclusive())
}

cases! {
    // kind (CreateToken): one of the four kinds.
    create_kind_scrape: create(TokenKind::Scrape, |_| ()) => [];
    create_kind_personal: create(TokenKind::PersonalAccess, |_| ()) => [];
    create_kind_service_account: create(TokenKind::ServiceAccount, |_| ()) => [];
    create_kind_workspace: create(TokenKind::WorkspaceApiKey, |_| ()) => [];
    create_kind_unspecified: create(TokenKind::Scrape, |i| i.kind = KindInput::Unspecified) => ["kind"];
    create_kind_unknown: create(TokenKind::Scrape, |i| i.kind = KindInput::Unknown(99)) => ["kind"];

    // kind (ListTokens): unspecified or one of the four.
    list_kind_unspecified: list(|i| i.kind = KindInput::Unspecified) => [];
    list_kind_known: list(|i| i.kind = KindInput::Known(TokenKind::PersonalAccess)) => [];
    list_kind_unknown: list(|i| i.kind = KindInput::Unknown(42)) => ["kind"];

    // service_account_slug, workspace_id (CreateToken): required for their
    // kind, refused for any other.
    create_service_account_without_slug: create(TokenKind::ServiceAccount, |i| i.service_account_slug.clear()) => ["service_account_slug"];
    create_workspace_key_without_workspace: create(TokenKind::WorkspaceApiKey, |i| i.workspace_id.clear()) => ["workspace_id"];
    create_scrape_with_slug: create(TokenKind::Scrape, |i| i.service_account_slug = "ci".into()) => ["service_account_slug"];
    create_personal_with_slug: create(TokenKind::PersonalAccess, |i| i.service_account_slug = "ci".into()) => ["service_account_slug"];
    create_workspace_key_with_slug: create(TokenKind::WorkspaceApiKey, |i| i.service_account_slug = "ci".into()) => ["service_account_slug"];
    create_scrape_with_workspace: create(TokenKind::Scrape, |i| i.workspace_id = WORKSPACE.into()) => ["workspace_id"];
    create_service_account_with_workspace: create(TokenKind::ServiceAccount, |i| i.workspace_id = WORKSPACE.into()) => ["workspace_id"];

    // service_account_slug, workspace_id (ListTokens): optional filters in
    // their format; one that cannot match `kind` is refused.
    list_slug_filter: list(|i| i.service_account_slug = "ci".into()) => [];
    list_slug_filter_with_its_kind: list(|i| { i.service_account_slug = "ci".into(); i.kind = KindInput::Known(TokenKind::ServiceAccount); }) => [];
    list_slug_filter_with_another_kind: list(|i| { i.service_account_slug = "ci".into(); i.kind = KindInput::Known(TokenKind::Scrape); }) => ["service_account_slug"];
    list_slug_filter_malformed: list(|i| i.service_account_slug = "Bad".into()) => ["service_account_slug"];
    list_workspace_filter: list(|i| i.workspace_id = WORKSPACE.into()) => [];
    list_workspace_filter_with_its_kind: list(|i| { i.workspace_id = WORKSPACE.into(); i.kind = KindInput::Known(TokenKind::WorkspaceApiKey); }) => [];
    list_workspace_filter_with_another_kind: list(|i| { i.workspace_id = WORKSPACE.into(); i.kind = KindInput::Known(TokenKind::Scrape); }) => ["workspace_id"];
    list_workspace_filter_malformed: list(|i| i.workspace_id = "g-ABCDEF0123".into()) => ["workspace_id"];

    // state (ListTokens): unspecified or one of the states; show_revoked
    // means ANY and goes with no other state.
    list_state_unspecified: list(|i| i.state = StateInput::Unspecified) => [];
    list_state_active: list(|i| { i.show_revoked = false; i.state = StateInput::Known(StateFilter::Active); }) => [];
    list_state_revoked: list(|i| { i.show_revoked = false; i.state = StateInput::Known(StateFilter::Revoked); }) => [];
    list_state_any_with_show_revoked: list(|i| i.state = StateInput::Known(StateFilter::Any)) => [];
    list_state_expired_with_show_revoked: list(|i| i.state = StateInput::Known(StateFilter::Expired)) => ["show_revoked"];
    list_state_unknown: list(|i| i.state = StateInput::Unknown(9)) => ["state"];

    // owner_user_id (ListTokens): optional; a JWT `sub`, 1–256 bytes, no Cc or Cf.
    list_owner_filter: list(|i| i.owner_user_id = "alice@example.com".into()) => [];
    list_owner_filter_256_bytes: list(|i| i.owner_user_id = "o".repeat(256)) => [];
    list_owner_filter_257_bytes: list(|i| i.owner_user_id = "o".repeat(257)) => ["owner_user_id"];
    list_owner_filter_control: list(|i| i.owner_user_id = "al\u{7}ice".into()) => ["owner_user_id"];
    list_owner_filter_bidi_override: list(|i| i.owner_user_id = "alice\u{202e}".into()) => ["owner_user_id"];

    // name_prefix (ListTokens): optional; as a name, 1–100 characters, no Cc or Cf.
    list_name_prefix: list(|i| i.name_prefix = "graf%_".into()) => [];
    list_name_prefix_100_chars: list(|i| i.name_prefix = "n".repeat(100)) => [];
    list_name_prefix_101_chars: list(|i| i.name_prefix = "n".repeat(101)) => ["name_prefix"];
    list_name_prefix_zero_width: list(|i| i.name_prefix = "ad\u{200b}".into()) => ["name_prefix"];

    // expire_before, last_used_before (ListTokens): optional; in (1970, 10000),
    // past or future.
    list_expire_before_past: list(|i| i.expire_before = Some(in_future(TimeDelta::days(-1)))) => [];
    list_expire_before_future: list(|i| i.expire_before = Some(in_future(TimeDelta::days(1)))) => [];
    list_expire_before_epoch: list(|i| i.expire_before = Some(TimestampInput::Valid(DateTime::UNIX_EPOCH))) => ["expire_before"];
    list_expire_before_year_10000: list(|i| i.expire_before = Some(year_10000())) => ["expire_before"];
    list_expire_before_out_of_range: list(|i| i.expire_before = Some(TimestampInput::OutOfRange)) => ["expire_before"];
    list_last_used_before_past: list(|i| i.last_used_before = Some(in_future(TimeDelta::days(-1)))) => [];
    list_last_used_before_epoch: list(|i| i.last_used_before = Some(TimestampInput::Valid(DateTime::UNIX_EPOCH))) => ["last_used_before"];
    list_last_used_before_year_10000: list(|i| i.last_used_before = Some(year_10000())) => ["last_used_before"];
    list_last_used_before_out_of_range: list(|i| i.last_used_before = Some(TimestampInput::OutOfRange)) => ["last_used_before"];

    // id: ≥ 1.
    get_id_one: Call::Get(1) => [];
    get_id_zero: Call::Get(0) => ["id"];
    get_id_negative: Call::Get(-4) => ["id"];
    revoke_scrape_id_one: revoke_scrape(1) => [];
    revoke_scrape_id_zero: revoke_scrape(0) => ["id"];
    revoke_scrape_id_min: revoke_scrape(i64::MIN) => ["id"];

    // token_id: a canonical hyphenated UUID.
    token_id_canonical: revoke_personal("0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e") => [];
    token_id_not_a_uuid: revoke_personal("not-a-uuid") => ["token_id"];
    token_id_empty: revoke_personal("") => ["token_id"];
    token_id_simple_form: revoke_personal("0190f5a27c1e7d3a9b8e2f4d6c8a0b1e") => ["token_id"];
    token_id_braced: revoke_personal("{0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e}") => ["token_id"];
    token_id_urn: revoke_personal("urn:uuid:0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e") => ["token_id"];

    // Slugs: service_account_slug, token_slug, a service-account token's name.
    slug_one_char: revoke_service_account("a", "b", "") => [];
    slug_with_digits_and_dash: revoke_service_account("ci-2", "deploy-7", "") => [];
    slug_63_chars: revoke_service_account(&"a".repeat(63), &"b".repeat(63), "") => [];
    slug_64_chars: revoke_service_account(&"a".repeat(64), "ok", "") => ["service_account_slug"];
    slug_empty: revoke_service_account("", "ok", "") => ["service_account_slug"];
    slug_leading_dash: revoke_service_account("-ci", "ok", "") => ["service_account_slug"];
    slug_trailing_dash: revoke_service_account("ci", "deploy-", "") => ["token_slug"];
    slug_upper_case: revoke_service_account("Ci", "ok", "") => ["service_account_slug"];
    slug_underscore: revoke_service_account("ci", "de_ploy", "") => ["token_slug"];
    slug_non_ascii: revoke_service_account("ci", "déploy", "") => ["token_slug"];
    create_service_account_slug_malformed: create(TokenKind::ServiceAccount, |i| i.service_account_slug = "-bad".into()) => ["service_account_slug"];
    create_service_account_name_is_a_slug: create(TokenKind::ServiceAccount, |i| i.name = "Not A Slug".into()) => ["name"];

    // workspace_id: ^g-[0-9a-f]{10}$.
    workspace_id_good: delete_workspace_key("g-0123456789", "key") => [];
    workspace_id_hex_letters: delete_workspace_key("g-abcdef0123", "key") => [];
    workspace_id_upper_case: delete_workspace_key("g-ABCDEF0123", "key") => ["workspace_id"];
    workspace_id_short: delete_workspace_key("g-012345678", "key") => ["workspace_id"];
    workspace_id_long: delete_workspace_key("g-0123456789a", "key") => ["workspace_id"];
    workspace_id_not_hex: delete_workspace_key("g-012345678g", "key") => ["workspace_id"];
    workspace_id_wrong_prefix: delete_workspace_key("x-0123456789", "key") => ["workspace_id"];
    workspace_id_empty: delete_workspace_key("", "key") => ["workspace_id"];
    create_workspace_id_malformed: create(TokenKind::WorkspaceApiKey, |i| i.workspace_id = "w".into()) => ["workspace_id"];

    // key_name and any other name: 1–100 characters, no Cc, no Cf.
    name_one_char: named("x") => [];
    name_with_spaces_and_punctuation: named("Grafana (prod) — eu/1") => [];
    name_100_chars: named(&"n".repeat(100)) => [];
    name_100_multibyte_chars: named(&"é".repeat(100)) => [];
    name_101_chars: named(&"n".repeat(101)) => ["name"];
    name_empty: named("") => ["name"];
    name_tab: named("tab\there") => ["name"];
    name_newline: named("line\nbreak") => ["name"];
    name_delete: named("del\u{7f}") => ["name"];
    name_c1_control: named("next\u{85}line") => ["name"];
    name_bidi_override: named("evil\u{202e}txt") => ["name"];
    name_zero_width_space: named("ad\u{200b}min") => ["name"];
    name_byte_order_mark: named("\u{feff}name") => ["name"];
    key_name_good: delete_workspace_key(WORKSPACE, "Key for CI") => [];
    key_name_empty: delete_workspace_key(WORKSPACE, "") => ["key_name"];
    key_name_101_chars: delete_workspace_key(WORKSPACE, &"k".repeat(101)) => ["key_name"];
    key_name_control: delete_workspace_key(WORKSPACE, "bell\u{7}") => ["key_name"];

    // reason: optional, ≤ 500 characters, no Cc or Cf but newline.
    reason_empty: with_reason("") => [];
    reason_500_chars: with_reason(&"r".repeat(500)) => [];
    reason_newline: with_reason("line\nline") => [];
    reason_501_chars: with_reason(&"r".repeat(501)) => ["reason"];
    reason_carriage_return: with_reason("line\r\nline") => ["reason"];
    reason_bell: with_reason("bell\u{7}") => ["reason"];
    reason_bidi_override: with_reason("ok\u{202e}") => ["reason"];

    // scopes: at most 50, each 1–64 of a-z 0-9 _ : . -
    scopes_none: scopes(&[]) => [];
    scopes_every_allowed_character: scopes(&["a-z_0:9.x"]) => [];
    scopes_64_chars: scopes(&[&"s".repeat(64)]) => [];
    scopes_65_chars: scopes(&[&"s".repeat(65)]) => ["scopes[0]"];
    scopes_empty_scope: scopes(&["read", ""]) => ["scopes[1]"];
    scopes_upper_case: scopes(&["READ"]) => ["scopes[0]"];
    scopes_space: scopes(&["read write"]) => ["scopes[0]"];
    scopes_each_bad_one_reported: scopes(&["ok", "NOT OK", ""]) => ["scopes[1]", "scopes[2]"];
    scopes_50: scopes(&["s"; 50]) => [];
    scopes_51_is_one_violation: scopes(&["S"; 51]) => ["scopes"];

    // required_scopes (AuthenticateToken): as scopes.
    required_scopes_none: requiring(&[]) => [];
    required_scopes_every_allowed_character: requiring(&["a-z_0:9.x"]) => [];
    required_scopes_64_chars: requiring(&[&"s".repeat(64)]) => [];
    required_scopes_65_chars: requiring(&[&"s".repeat(65)]) => ["required_scopes[0]"];
    required_scopes_empty_scope: requiring(&["read", ""]) => ["required_scopes[1]"];
    required_scopes_upper_case: requiring(&["READ"]) => ["required_scopes[0]"];
    required_scopes_bidi_override: requiring(&["read\u{202e}"]) => ["required_scopes[0]"];
    required_scopes_each_bad_one_reported: requiring(&["ok", "NOT OK", ""]) => ["required_scopes[1]", "required_scopes[2]"];
    required_scopes_50: requiring(&["s"; 50]) => [];
    required_scopes_51_is_one_violation: requiring(&["S"; 51]) => ["required_scopes"];

    // expire_time: optional; in (1970, 10000) and in the future.
    expire_time_unset: create(TokenKind::Scrape, |i| i.expire_time = None) => [];
    expire_time_one_second_ahead: expiring(in_future(TimeDelta::seconds(1))) => [];
    expire_time_year_9999: expiring(in_future(TimeDelta::days(365 * 7900))) => [];
    expire_time_now: expiring(in_future(TimeDelta::zero())) => ["expire_time"];
    expire_time_past: expiring(in_future(TimeDelta::seconds(-1))) => ["expire_time"];
    expire_time_epoch: expiring(TimestampInput::Valid(DateTime::UNIX_EPOCH)) => ["expire_time"];
    expire_time_year_10000: expiring(year_10000()) => ["expire_time"];
    expire_time_out_of_range: expiring(TimestampInput::OutOfRange) => ["expire_time"];

    // page_size: 0–1000.
    list_page_size_zero: list(|i| i.page_size = 0) => [];
    list_page_size_1000: list(|i| i.page_size = 1000) => [];
    list_page_size_1001: list(|i| i.page_size = 1001) => ["page_size"];
    list_page_size_negative: list(|i| i.page_size = -1) => ["page_size"];
    audit_page_size_zero: audit(|i| i.page_size = 0) => [];
    audit_page_size_1001: audit(|i| i.page_size = 1001) => ["page_size"];
    audit_page_size_negative: audit(|i| i.page_size = i32::MIN) => ["page_size"];

    // page_token: empty or one returned for the same listing (forged and
    // foreign tokens: see rules::page_tokens_are_bound_to_their_listing).
    list_page_token_empty: list(|i| i.page_token.clear()) => [];
    list_page_token_forged: list(|i| i.page_token = "bogus".into()) => ["page_token"];
    audit_page_token_forged: audit(|i| i.page_token = "AAAA".into()) => ["page_token"];

    // event_type: empty or one of the audit event types.
    event_type_empty: audit(|i| i.event_type.clear()) => [];
    event_type_known: audit(|i| i.event_type = "workspace_api_key_deleted".into()) => [];
    event_type_unknown: audit(|i| i.event_type = "nope".into()) => ["event_type"];
    event_type_upper_case: audit(|i| i.event_type = "SCRAPE_TOKEN_CREATED".into()) => ["event_type"];

    // Several bad fields at once: one violation each, in request order.
    create_every_field_bad: Call::Create(CreateTokenInput {
        kind: KindInput::Known(TokenKind::ServiceAccount),
        name: "BAD".into(),
        service_account_slug: "-".into(),
        workspace_id: "w".into(),
        scopes: vec!["UP".into()],
        expire_time: Some(in_future(TimeDelta::seconds(-1))),
    }) => ["name", "service_account_slug", "workspace_id", "scopes[0]", "expire_time"];
    create_unknown_kind_and_bad_name: Call::Create(CreateTokenInput {
        kind: KindInput::Unknown(7),
        name: String::new(),
        service_account_slug: String::new(),
        workspace_id: String::new(),
        scopes: Vec::new(),
        expire_time: None,
    }) => ["kind", "name"];
    revoke_service_account_every_field_bad: revoke_service_account("Bad", "bad-", &"r".repeat(501)) => ["service_account_slug", "token_slug", "reason"];
    delete_workspace_key_every_field_bad: Call::Revoke(RevokeInput::WorkspaceApiKey {
        workspace_id: "g-0123".into(),
        key_name: String::new(),
        reason: "bell\u{7}".into(),
    }) => ["workspace_id", "key_name", "reason"];
    list_every_field_bad: list(|i| {
        i.kind = KindInput::Unknown(9);
        i.service_account_slug = "-".into();
        i.workspace_id = "w".into();
        i.page_size = -1;
        i.page_token = "bogus".into();
    }) => ["kind", "service_account_slug", "workspace_id", "page_size", "page_token"];
    audit_every_field_bad: audit(|i| {
        i.event_type = "nope".into();
        i.page_size = 5000;
        i.page_token = "bogus".into();
    }) => ["event_type", "page_size", "page_token"];
}

/// Past the listed maximum, further violations are counted, not listed.
#[tokio::test]
async fn at_most_ten_violations_are_listed_and_the_rest_counted() {
    let fx = Fixture::new();
    let bad: Vec<String> = vec!["BAD".to_owned(); 50];
    let result = fx
        .create(
            &admin(ACME),
            CreateTokenInput {
                scopes: bad,
                ..create_input(TokenKind::Scrape, "")
            },
        )
        .await;
    match result {
        Err(ServiceError::InvalidArgument(fields)) => {
            assert_eq!(fields.listed.len(), 10);
            assert_eq!(fields.unlisted, 41);
            assert_eq!(fields.listed[0].location, "name");
            assert_eq!(fields.listed[9].location, "scopes[8]");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.repository.calls(), []);
}

/// A violation echoes the value received, cut to 64 bytes.
#[tokio::test]
async fn a_violation_echoes_the_value_cut_to_64_bytes() {
    let fx = Fixture::new();
    let long = "é".repeat(300);
    match fx
        .create(&admin(ACME), create_input(TokenKind::Scrape, &long))
        .await
    {
        Err(ServiceError::InvalidArgument(fields)) => {
            let echoed = &fields.listed[0].value;
            assert!(echoed.len() <= 64, "{} bytes", echoed.len());
            assert!(long.starts_with(echoed.trim_end_matches('…')));
        }
        other => panic!("{other:?}"),
    }
}
