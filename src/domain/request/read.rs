//! The read RPCs' requests: GetToken, ListTokens, ListAuditEvents. A list
//! request's page token is checked against the key and the scope (the
//! organisation and every filter) it must have been made for.

use super::non_empty;
use crate::domain::audit::AuditEventType;
use crate::domain::error::InvalidFields;
use crate::domain::kind::TokenKind;
use crate::domain::pagination::{self, PageScope, PageTokenKey};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::token::{StateFilter, TokenFilter};
use crate::domain::validation::{self, KindInput, TimestampInput, Violations};

/// ListTokens' fields as received.
#[derive(Clone, Debug)]
pub struct ListTokensInput {
    /// `kind` filter.
    pub kind: KindInput,
    /// `service_account_slug` filter.
    pub service_account_slug: String,
    /// `workspace_id` filter.
    pub workspace_id: String,
    /// `show_revoked` (the same as `state` ANY).
    pub show_revoked: bool,
    /// `state`.
    pub state: StateInput,
    /// `owner_user_id` filter.
    pub owner_user_id: String,
    /// `name_prefix` filter.
    pub name_prefix: String,
    /// `expire_before` filter.
    pub expire_before: Option<TimestampInput>,
    /// `last_used_before` filter.
    pub last_used_before: Option<TimestampInput>,
    /// `page_size`.
    pub page_size: i32,
    /// `page_token`.
    pub page_token: String,
}

/// ListTokens' `state` as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateInput {
    /// TOKEN_STATE_UNSPECIFIED: active and expired.
    Unspecified,
    /// One of the named states.
    Known(StateFilter),
    /// A number the API does not define.
    Unknown(i32),
}

/// ListAuditEvents' fields as received.
#[derive(Clone, Debug)]
pub struct ListAuditEventsInput {
    /// `event_type` filter.
    pub event_type: String,
    /// `page_size`.
    pub page_size: i32,
    /// `page_token`.
    pub page_token: String,
}

/// A valid GetToken request. Like every `Valid…` type, it has no public
/// constructor:
///
/// ```compile_fail,E0451
/// let unchecked = tokend::domain::request::ValidGet { id: 0 };
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidGet {
    id: i64,
}

impl ValidGet {
    /// The token's numeric id, ≥ 1.
    pub fn id(self) -> i64 {
        self.id
    }
}

/// GetToken: `id` ≥ 1.
pub fn parse_get(id: i64) -> Result<ValidGet, InvalidFields> {
    let mut violations = Violations::default();
    validation::check_id(&mut violations, id);
    violations.into_result()?;
    Ok(ValidGet { id })
}

/// A valid ListTokens request: its filter, page size and position, and the
/// scope its page tokens are bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidList {
    filter: TokenFilter,
    limit: u64,
    after_id: Option<i64>,
    scope: PageScope,
}

impl ValidList {
    /// The filters.
    pub fn filter(&self) -> &TokenFilter {
        &self.filter
    }

    /// The page size, 1–1000.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The last id of the previous page; `None` for the first page.
    pub fn after_id(&self) -> Option<i64> {
        self.after_id
    }

    /// What the next page token is bound to.
    pub fn scope(&self) -> &PageScope {
        &self.scope
    }
}

/// ListTokens of `org_id` at `now` (the instant that tells active from
/// expired): every filter well-formed and consistent with `kind`, and a page
/// token made with `key` for the same organisation and filters.
pub fn parse_list(
    input: ListTokensInput,
    org_id: &str,
    key: &PageTokenKey,
    now: DateTime<Utc>,
) -> Result<ValidList, InvalidFields> {
    let mut violations = Violations::default();
    let kind = validation::check_optional_kind(&mut violations, input.kind);
    check_kind_filters(
        &mut violations,
        kind,
        &input.service_account_slug,
        &input.workspace_id,
    );
    let state = match (input.state, input.show_revoked) {
        (StateInput::Unspecified, false) => StateFilter::NotRevoked,
        (StateInput::Unspecified, true) => StateFilter::Any,
        (StateInput::Known(state), false) => state,
        (StateInput::Known(StateFilter::Any), true) => StateFilter::Any,
        (StateInput::Known(state), true) => {
            violations.push(
                "show_revoked",
                "means TOKEN_STATE_ANY: give it or another state, not both",
                "true",
            );
            state
        }
        (StateInput::Unknown(number), _) => {
            violations.push(
                "state",
                "must be a token state or unspecified",
                &number.to_string(),
            );
            StateFilter::NotRevoked
        }
    };
    if !input.owner_user_id.is_empty() {
        validation::check_subject(&mut violations, "owner_user_id", &input.owner_user_id);
    }
    if !input.name_prefix.is_empty() {
        validation::check_name(&mut violations, "name_prefix", &input.name_prefix);
    }
    let expire_before = input
        .expire_before
        .and_then(|at| validation::check_timestamp(&mut violations, "expire_before", at));
    let last_used_before = input
        .last_used_before
        .and_then(|at| validation::check_timestamp(&mut violations, "last_used_before", at));
    let limit = validation::check_page_size(&mut violations, input.page_size);
    let filter = TokenFilter {
        kind,
        service_account_slug: non_empty(input.service_account_slug),
        workspace_id: non_empty(input.workspace_id),
        state,
        at: now,
        owner_user_id: non_empty(input.owner_user_id),
        name_prefix: non_empty(input.name_prefix),
        expire_before,
        last_used_before,
    };
    let scope = tokens_page_scope(org_id, &filter);
    let after_id = check_page_token(&mut violations, key, &scope, &input.page_token);
    violations.into_result()?;
    Ok(ValidList {
        filter,
        limit,
        after_id,
        scope,
    })
}

/// `service_account_slug` and `workspace_id` as filters (ListTokens) or
/// selectors (RevokeTokens): when given, in their format and consistent
/// with `kind` (a filter that cannot match `kind` is refused).
pub(super) fn check_kind_filters(
    violations: &mut Violations,
    kind: Option<TokenKind>,
    service_account_slug: &str,
    workspace_id: &str,
) {
    if !service_account_slug.is_empty() {
        validation::check_slug(violations, "service_account_slug", service_account_slug);
        if kind.is_some_and(|k| k != TokenKind::ServiceAccount) {
            violations.push(
                "service_account_slug",
                "filters service-account tokens only",
                service_account_slug,
            );
        }
    }
    if !workspace_id.is_empty() {
        validation::check_workspace_id(violations, "workspace_id", workspace_id);
        if kind.is_some_and(|k| k != TokenKind::WorkspaceApiKey) {
            violations.push(
                "workspace_id",
                "filters workspace API keys only",
                workspace_id,
            );
        }
    }
}

/// A valid ListAuditEvents request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidAuditQuery {
    event_type: Option<AuditEventType>,
    limit: u64,
    after_id: Option<i64>,
    scope: PageScope,
}

impl ValidAuditQuery {
    /// Only events of this type, if set.
    pub fn event_type(&self) -> Option<AuditEventType> {
        self.event_type
    }

    /// The page size, 1–1000.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The last id of the previous page; `None` for the first page.
    pub fn after_id(&self) -> Option<i64> {
        self.after_id
    }

    /// What the next page token is bound to.
    pub fn scope(&self) -> &PageScope {
        &self.scope
    }
}

/// ListAuditEvents of `org_id`: a known event type or none, and a page token
/// made with `key` for the same organisation and event type.
pub fn parse_audit_query(
    input: ListAuditEventsInput,
    org_id: &str,
    key: &PageTokenKey,
) -> Result<ValidAuditQuery, InvalidFields> {
    let mut violations = Violations::default();
    let event_type = if input.event_type.is_empty() {
        None
    } else {
        let parsed = AuditEventType::parse(&input.event_type);
        if parsed.is_none() {
            violations.push(
                "event_type",
                "must be empty or one of the audit event types",
                &input.event_type,
            );
        }
        parsed
    };
    let limit = validation::check_page_size(&mut violations, input.page_size);
    let scope = PageScope::new("audit_events")
        .with_text("org_id", org_id)
        .with_optional_text("event_type", event_type.map(AuditEventType::as_str));
    let after_id = check_page_token(&mut violations, key, &scope, &input.page_token);
    violations.into_result()?;
    Ok(ValidAuditQuery {
        event_type,
        limit,
        after_id,
        scope,
    })
}

/// The scope of a ListTokens page token: the organisation and every filter,
/// each by its stable name (`TokenKind::as_str`, never `Debug`).
fn tokens_page_scope(org_id: &str, filter: &TokenFilter) -> PageScope {
    PageScope::new("tokens")
        .with_text("org_id", org_id)
        .with_optional_text("kind", filter.kind.map(TokenKind::as_str))
        .with_optional_text(
            "service_account_slug",
            filter.service_account_slug.as_deref(),
        )
        .with_optional_text("workspace_id", filter.workspace_id.as_deref())
        .with_text("state", filter.state.as_str())
        .with_optional_text("owner_user_id", filter.owner_user_id.as_deref())
        .with_optional_text("name_prefix", filter.name_prefix.as_deref())
        .with_optional_text(
            "expire_before",
            filter.expire_before.map(instant_text).as_deref(),
        )
        .with_optional_text(
            "last_used_before",
            filter.last_used_before.map(instant_text).as_deref(),
        )
}

/// An instant as a page token binds it: RFC 3339 to the nanosecond, so two
/// different instants never bind alike.
fn instant_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `page_token`: empty, or made with `key` for `scope`. Returns the cursor.
fn check_page_token(
    violations: &mut Violations,
    key: &PageTokenKey,
    scope: &PageScope,
    token: &str,
) -> Option<i64> {
    match pagination::decode(key, scope, token) {
        Ok(cursor) => cursor.map(|c| c.after_id),
        Err(pagination::InvalidPageToken) => {
            violations.push(
                "page_token",
                "must be a next_page_token returned for the same filters",
                token,
            );
            None
        }
    }
}
