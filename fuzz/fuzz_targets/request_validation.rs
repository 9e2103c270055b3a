//! Every request message decoded from arbitrary bytes with prost, converted
//! with `grpc::convert` (or as `grpc::handlers` builds `RevokeInput`),
//! parsed with the very functions the server runs (`domain::request::parse_*`)
//! and handed to the real `TokenLifecycle` over a stub repository, whose
//! error is turned into a gRPC status with `grpc::status::to_status`.
//!
//! Properties:
//! - never panics (decode, conversion, parsing, status building);
//! - the lifecycle refuses exactly the requests the parse function refuses,
//!   with the same violations;
//! - at most `MAX_REPORTED_VIOLATIONS` (10) violations listed (the rest
//!   counted), each echoed value at most `MAX_ECHOED_VALUE_BYTES` (64)
//!   bytes, and a cut value is a prefix of the input followed by `…`;
//! - what a parse function accepts holds its promises: an expiry in the
//!   future, a page size of 1–1000, a canonical token UUID, a reason stored
//!   only when given;
//! - a request refused as INVALID_ARGUMENT never reached the repository, a
//!   malformed secret is refused without a repository read;
//! - the status details of an invalid request stay below the 16 KiB a
//!   grpc-core client accepts in trailers;
//! - conversions round-trip (kind, timestamps) and page tokens decode only to
//!   cursors ≥ 1, bound to the key and scope they were made with.
//!
//! The first input byte picks the message; the rest is the protobuf body.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokend::domain::audit::{AuditContext, AuditEvent, AuditEventType};
use tokend::domain::error::{FieldViolation, InvalidFields, MAX_ECHOED_VALUE_BYTES, ServiceError};
use tokend::domain::last_use::LastUseRecorder;
use tokend::domain::lifecycle::TokenLifecycle;
use tokend::domain::pagination::{self, Cursor, PageScope, PageTokenKey};
use tokend::domain::repository::{StoreError, TokenRepository};
use tokend::domain::request::{self, AcceptedFamilies, RevokeInput};
use tokend::domain::secret::TokenHash;
use tokend::domain::token::{
    NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts, TokenFilter, Visibility,
};
use tokend::domain::validation::{self, KindInput, MAX_REPORTED_VIOLATIONS};
use tokend::domain::{Caller, SeededEntropy, TokenKind};
use tokend::grpc::{convert, proto, status};

/// grpc-core's default limit on received metadata (the trailer).
const TRAILER_LIMIT: usize = 16 * 1024;
/// The longest request id the server accepts: the worst case in details.
const REQUEST_ID: &str = "rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr";

// ------------------------------------------------------------- stub store

/// A repository that counts calls and answers "unavailable" (or "not
/// found" for secret lookups): validation must decide before reaching it.
#[derive(Default)]
struct Stub {
    calls: AtomicUsize,
}

impl Stub {
    fn hit<T>(&self, answer: Result<T, StoreError>) -> std::future::Ready<Result<T, StoreError>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(answer)
    }
}

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("stub repository".into()))
}

impl TokenRepository for Stub {
    fn create_token(
        &self,
        _token: NewToken,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<Token, StoreError>> + Send {
        self.hit(down())
    }

    fn find_token(
        &self,
        _org_id: &str,
        _id: i64,
        _visibility: &Visibility,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
        self.hit(down())
    }

    fn list_tokens(
        &self,
        _org_id: &str,
        _visibility: &Visibility,
        _filter: &TokenFilter,
        _after_id: Option<i64>,
        _limit: u64,
    ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send {
        self.hit(down())
    }

    fn revoke_token(
        &self,
        _org_id: &str,
        _target: &RevokeTarget,
        _revocation: &Revocation,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send {
        self.hit(down())
    }

    fn find_by_hash(
        &self,
        _hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
        self.hit(Ok(None))
    }

    fn touch_last_used(
        &self,
        _id: i64,
        _now: DateTime<Utc>,
        _stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.hit(down())
    }

    fn list_audit_events(
        &self,
        _org_id: &str,
        _event_type: Option<AuditEventType>,
        _after_id: Option<i64>,
        _limit: u64,
    ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send {
        self.hit(down())
    }

    fn count_tokens(
        &self,
        _org_id: &str,
        _now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TokenCounts, StoreError>> + Send {
        self.hit(down())
    }

    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.hit(Ok(()))
    }

    fn rotate_token(
        &self,
        _rotation: &tokend::domain::rotation::Rotation,
        _new: NewToken,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<tokend::domain::rotation::RotateOutcome, StoreError>> + Send
    {
        self.hit(down())
    }

    fn token_policy(
        &self,
        _org_id: &str,
    ) -> impl Future<Output = Result<tokend::domain::policy::TokenPolicy, StoreError>> + Send {
        self.hit(down())
    }

    fn replace_token_policy(
        &self,
        _org_id: &str,
        _policy: &tokend::domain::policy::TokenPolicy,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<tokend::domain::policy::TokenPolicy, StoreError>> + Send {
        self.hit(down())
    }

    fn revoke_by_hash(
        &self,
        _hash: &TokenHash,
        _revocation: &Revocation,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send {
        self.hit(down())
    }

    fn revoke_active(
        &self,
        _org_id: &str,
        _selected: &[Token],
        _revocation: &Revocation,
        _audit: &AuditContext,
    ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send {
        self.hit(down())
    }

    fn record_revoked_use(
        &self,
        _id: i64,
        _audit: &AuditContext,
        _recorded_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
        self.hit(down())
    }
}

/// The stub's futures are ready at once, and the core awaits nothing else.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
    panic!("the core awaited something other than the stub repository");
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01")
}

fn admin() -> Caller {
    Caller {
        org_id: "org-fuzz".to_owned(),
        subject: "alice".to_owned(),
        roles: ["admin".to_owned()].into(),
        permissions: ["tokens_introspect".to_owned()].into(),
    }
}

fn audit() -> AuditContext {
    AuditContext {
        actor: "alice".to_owned(),
        request_id: REQUEST_ID.to_owned(),
        now: now(),
    }
}

/// With `TOKEND_FUZZ_TRACE` set, prints one line per input naming the
/// outcome it reached, to check on a corpus that every path is exercised
/// (docs/fuzzing.md); otherwise does nothing.
fn trace(what: std::fmt::Arguments<'_>) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("TOKEND_FUZZ_TRACE").is_some()) {
        eprintln!("trace: {what}");
    }
}

// ------------------------------------------------------------- invariants

fn page_key() -> PageTokenKey {
    PageTokenKey::from_bytes([0x5a; PageTokenKey::LEN])
}

fn page_scope(text: &str) -> PageScope {
    PageScope::new("fuzz").with_text("scope", text)
}

fn check_violations(fields: &InvalidFields) {
    let violations = &fields.listed;
    assert!(
        !violations.is_empty(),
        "INVALID_ARGUMENT without violations"
    );
    assert!(
        violations.len() <= MAX_REPORTED_VIOLATIONS,
        "{} violations listed",
        violations.len()
    );
    assert!(
        fields.unlisted == 0 || violations.len() == MAX_REPORTED_VIOLATIONS,
        "violations left unlisted while there was room"
    );
    for v in violations {
        assert!(
            v.value.len() <= MAX_ECHOED_VALUE_BYTES,
            "echoed value of {} bytes at {}",
            v.value.len(),
            v.location
        );
        assert!(!v.location.is_empty() && !v.message.is_empty());
    }
}

/// Checks what a parse function refused.
fn check_parsed<T>(parsed: &Result<T, InvalidFields>) {
    if let Err(fields) = parsed {
        check_violations(fields);
    }
}

/// The lifecycle refuses as INVALID_ARGUMENT exactly what the parse
/// function refused, with the same violations.
fn check_agrees<T, U>(parsed: &Result<T, InvalidFields>, result: &Result<U, ServiceError>) {
    match (parsed, result) {
        (Err(expected), Err(ServiceError::InvalidArgument(got))) => {
            assert_eq!(expected, got, "the lifecycle and the parse function disagree")
        }
        (Err(expected), _) => panic!("parse refused {expected:?} but the lifecycle did not"),
        (Ok(_), Err(ServiceError::InvalidArgument(got))) => {
            panic!("parse accepted but the lifecycle refused {got:?}")
        }
        (Ok(_), _) => {}
    }
}

/// Checks a lifecycle result and the status it becomes.
fn check_outcome<T>(stub: &Stub, result: Result<T, ServiceError>) {
    let Err(error) = result else {
        trace(format_args!("outcome ok"));
        return;
    };
    match &error {
        ServiceError::InvalidArgument(violations) => {
            check_violations(violations);
            assert_eq!(
                stub.calls.load(Ordering::Relaxed),
                0,
                "an invalid request reached the repository"
            );
        }
        ServiceError::TokenRejected(tokend::domain::TokenRejection::Malformed(_)) => {
            assert_eq!(
                stub.calls.load(Ordering::Relaxed),
                0,
                "a malformed secret was looked up"
            );
        }
        _ => {}
    }
    let status = status::to_status(&error, REQUEST_ID);
    trace(format_args!(
        "outcome {:?} violations {} details {} repository_calls {}",
        status.code(),
        match &error {
            ServiceError::InvalidArgument(v) => v.count(),
            _ => 0,
        },
        status.details().len(),
        stub.calls.load(Ordering::Relaxed)
    ));
    assert!(
        status.details().len() < TRAILER_LIMIT,
        "status details of {} bytes for {} violation(s)",
        status.details().len(),
        match &error {
            ServiceError::InvalidArgument(v) => v.count(),
            _ => 0,
        }
    );
}

// ------------------------------------------------------------- the RPCs

fn check_page_token(token: &str, scope: &str) {
    let scope = page_scope(scope);
    match pagination::decode(&page_key(), &scope, token) {
        Ok(None) => assert!(token.is_empty()),
        Ok(Some(cursor)) => {
            assert!(cursor.after_id >= 1 && token.len() <= 128);
            let again = pagination::encode(&page_key(), &scope, cursor);
            assert_eq!(
                pagination::decode(&page_key(), &scope, &again),
                Ok(Some(cursor))
            );
        }
        Err(_) => {}
    }
}

fn revoke(core: &TokenLifecycle<Stub>, input: RevokeInput) {
    let parsed = request::parse_revoke(input.clone());
    check_parsed(&parsed);
    if let Ok(valid) = &parsed {
        let given = match &input {
            RevokeInput::Scrape { reason, .. }
            | RevokeInput::PersonalAccess { reason, .. }
            | RevokeInput::ServiceAccount { reason, .. }
            | RevokeInput::WorkspaceApiKey { reason, .. } => reason,
        };
        assert_eq!(valid.reason().is_none(), given.is_empty());
        if let (
            RevokeTarget::PersonalAccess { token_id, .. },
            RevokeInput::PersonalAccess { token_id: raw, .. },
        ) = (valid.target(), &input)
        {
            assert_eq!(token_id.to_string(), raw.to_ascii_lowercase());
        }
        assert_eq!(valid.target().kind(), kind_of(&input));
    }
    let result = block_on(core.revoke_token(&admin(), &audit(), input));
    check_agrees(&parsed, &result);
    check_outcome(core.repository(), result);
}

fn kind_of(input: &RevokeInput) -> TokenKind {
    match input {
        RevokeInput::Scrape { .. } => TokenKind::Scrape,
        RevokeInput::PersonalAccess { .. } => TokenKind::PersonalAccess,
        RevokeInput::ServiceAccount { .. } => TokenKind::ServiceAccount,
        RevokeInput::WorkspaceApiKey { .. } => TokenKind::WorkspaceApiKey,
    }
}

fn check_kind(value: i32) {
    if let KindInput::Known(kind) = convert::kind_input(value) {
        assert_eq!(convert::kind_to_proto(kind) as i32, value);
    }
}

fn check_timestamp(ts: &prost_types::Timestamp) {
    if let validation::TimestampInput::Valid(at) = convert::timestamp_input(ts) {
        assert_eq!(convert::timestamp(at), *ts, "timestamp round trip");
    }
}

#[derive(Arbitrary, Debug)]
struct PageCase {
    token: String,
    scope: String,
    other_scope: String,
    after_id: i64,
}

fn run(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    // No writer runs: the core never waits on recording a use anyway.
    let (last_use, _writer) = LastUseRecorder::new(1);
    let core = TokenLifecycle::new(Stub::default(), last_use, Arc::new(SeededEntropy::new(1)));
    core.install_page_token_key(page_key());
    let stub = core.repository();

    match which % 10 {
        0 => {
            let Ok(request) = proto::CreateTokenRequest::decode(body) else {
                return;
            };
            check_kind(request.kind);
            if let Some(ts) = &request.expire_time {
                check_timestamp(ts);
            }
            let input = convert::create_token_input(request);
            let parsed = request::parse_create(input.clone(), now());
            check_parsed(&parsed);
            if let Ok(valid) = &parsed {
                assert!(valid.expires_at().is_none_or(|at| at > now()));
            }
            let result = block_on(core.create_token(&admin(), &audit(), input));
            check_agrees(&parsed, &result);
            check_outcome(stub, result);
        }
        1 => {
            let Ok(request) = proto::ListTokensRequest::decode(body) else {
                return;
            };
            check_kind(request.kind);
            let input = convert::list_tokens_input(request);
            let parsed = request::parse_list(input.clone(), &admin().org_id, &page_key(), now());
            check_parsed(&parsed);
            if let Ok(valid) = &parsed {
                assert!((1..=1000).contains(&valid.limit()));
                assert!(valid.after_id().is_none_or(|id| id >= 1));
            }
            check_page_token(&input.page_token, "tokens");
            let result = block_on(core.list_tokens(&admin(), now(), input));
            check_agrees(&parsed, &result);
            check_outcome(stub, result);
        }
        2 => {
            let Ok(r) = proto::RevokeScrapeTokenRequest::decode(body) else {
                return;
            };
            revoke(
                &core,
                RevokeInput::Scrape {
                    id: r.id,
                    reason: r.reason,
                },
            );
        }
        3 => {
            let Ok(r) = proto::RevokePersonalAccessTokenRequest::decode(body) else {
                return;
            };
            revoke(
                &core,
                RevokeInput::PersonalAccess {
                    token_id: r.token_id,
                    reason: r.reason,
                },
            );
        }
        4 => {
            let Ok(r) = proto::RevokeServiceAccountTokenRequest::decode(body) else {
                return;
            };
            revoke(
                &core,
                RevokeInput::ServiceAccount {
                    service_account_slug: r.service_account_slug,
                    token_slug: r.token_slug,
                    reason: r.reason,
                },
            );
        }
        5 => {
            let Ok(r) = proto::DeleteWorkspaceApiKeyRequest::decode(body) else {
                return;
            };
            revoke(
                &core,
                RevokeInput::WorkspaceApiKey {
                    workspace_id: r.workspace_id,
                    key_name: r.key_name,
                    reason: r.reason,
                },
            );
        }
        6 => {
            let Ok(request) = proto::ListAuditEventsRequest::decode(body) else {
                return;
            };
            let input = convert::list_audit_events_input(request);
            let parsed = request::parse_audit_query(input.clone(), &admin().org_id, &page_key());
            check_parsed(&parsed);
            if let Ok(valid) = &parsed {
                assert!((1..=1000).contains(&valid.limit()));
                assert!(valid.after_id().is_none_or(|id| id >= 1));
                assert_eq!(valid.event_type().is_none(), input.event_type.is_empty());
            }
            check_page_token(&input.page_token, "audit_events");
            let result = block_on(core.list_audit_events(&admin(), input));
            check_agrees(&parsed, &result);
            check_outcome(stub, result);
        }
        7 => {
            let Ok(r) = proto::GetTokenRequest::decode(body) else {
                return;
            };
            let parsed = request::parse_get(r.id);
            check_parsed(&parsed);
            if let Ok(valid) = parsed {
                assert_eq!(valid.id(), r.id);
                assert!(r.id >= 1);
            }
            let result = block_on(core.get_token(&admin(), r.id));
            check_agrees(&parsed, &result);
            check_outcome(stub, result);
        }
        8 => {
            let Ok(r) = proto::AuthenticateTokenRequest::decode(body) else {
                return;
            };
            let scopes = request::parse_required_scopes(r.required_scopes.clone());
            let parsed = request::parse_presented_secret(&r.secret, AcceptedFamilies::Any);
            let input = request::AuthenticateInput {
                secret: r.secret.clone(),
                required_scopes: r.required_scopes.clone(),
            };
            let result = block_on(core.authenticate_token(&admin(), &audit(), input));
            match (&scopes, &parsed, &result) {
                (Err(fields), _, Err(ServiceError::InvalidArgument(got))) => {
                    assert_eq!(fields, got)
                }
                (
                    Ok(_),
                    Ok(_),
                    Err(ServiceError::TokenRejected(tokend::domain::TokenRejection::Unknown)),
                ) => {}
                (Ok(_), Err(why), Err(ServiceError::TokenRejected(got))) => assert_eq!(why, got),
                (s, p, r) => panic!("parse {s:?} {p:?} but authenticate {r:?}"),
            }
            check_outcome(stub, result);
        }
        _ => {
            // Page tokens and echoed values directly.
            let Ok(case) = PageCase::arbitrary_take_rest(Unstructured::new(body)) else {
                return;
            };
            check_page_token(&case.token, &case.scope);
            let made = pagination::encode(
                &page_key(),
                &page_scope(&case.scope),
                Cursor {
                    after_id: case.after_id,
                },
            );
            let decoded = pagination::decode(&page_key(), &page_scope(&case.scope), &made);
            if case.after_id >= 1 {
                assert_eq!(
                    decoded,
                    Ok(Some(Cursor {
                        after_id: case.after_id
                    }))
                );
                if case.other_scope != case.scope {
                    assert!(
                        pagination::decode(&page_key(), &page_scope(&case.other_scope), &made)
                            .is_err()
                    );
                }
            } else {
                assert!(decoded.is_err());
            }
            let echoed = FieldViolation::new("f", "m", &case.token);
            assert!(echoed.value.len() <= MAX_ECHOED_VALUE_BYTES);
            if case.token.len() <= MAX_ECHOED_VALUE_BYTES {
                assert_eq!(echoed.value, case.token);
            } else {
                let cut = echoed
                    .value
                    .strip_suffix('…')
                    .expect("a cut value ends with …");
                assert!(case.token.starts_with(cut));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| run(data));
