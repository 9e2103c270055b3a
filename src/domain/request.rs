//! Each RPC's request twice: as received (`…Input`, built by a transport
//! from its message) and as validated (`Valid…`). One `parse_…` function per
//! RPC turns the first into the second, reporting every bad field at once
//! (the field rules live in [`crate::domain::validation`]). A validated
//! request has private fields and no constructor but its parse function, so
//! the lifecycle cannot act on a request that skipped validation, and the
//! fuzz target exercises the very functions the server runs.

use chrono::{DateTime, Utc};

use crate::domain::audit::AuditEventType;
use crate::domain::error::{InvalidFields, TokenRejection};
use crate::domain::kind::TokenKind;
use crate::domain::pagination::{self, PageScope, PageTokenKey};
use crate::domain::secret::TokenSecret;
use crate::domain::token::{RevokeTarget, TokenFilter};
use crate::domain::validation::{self, KindInput, TimestampInput, Violations};

/// CreateToken's fields as received.
#[derive(Clone, Debug)]
pub struct CreateTokenInput {
    /// `kind`.
    pub kind: KindInput,
    /// `name`.
    pub name: String,
    /// `service_account_slug`.
    pub service_account_slug: String,
    /// `workspace_id`.
    pub workspace_id: String,
    /// `scopes`.
    pub scopes: Vec<String>,
    /// `expire_time`.
    pub expire_time: Option<TimestampInput>,
}

/// ListTokens' fields as received.
#[derive(Clone, Debug)]
pub struct ListTokensInput {
    /// `kind` filter.
    pub kind: KindInput,
    /// `service_account_slug` filter.
    pub service_account_slug: String,
    /// `workspace_id` filter.
    pub workspace_id: String,
    /// `show_revoked`.
    pub show_revoked: bool,
    /// `page_size`.
    pub page_size: i32,
    /// `page_token`.
    pub page_token: String,
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

/// The four revoke RPCs' fields as received.
#[derive(Clone, Debug)]
pub enum RevokeInput {
    /// RevokeScrapeToken.
    Scrape {
        /// `id`.
        id: i64,
        /// `reason`.
        reason: String,
    },
    /// RevokePersonalAccessToken.
    PersonalAccess {
        /// `token_id`.
        token_id: String,
        /// `reason`.
        reason: String,
    },
    /// RevokeServiceAccountToken.
    ServiceAccount {
        /// `service_account_slug`.
        service_account_slug: String,
        /// `token_slug`.
        token_slug: String,
        /// `reason`.
        reason: String,
    },
    /// DeleteWorkspaceApiKey.
    WorkspaceApiKey {
        /// `workspace_id`.
        workspace_id: String,
        /// `key_name`.
        key_name: String,
        /// `reason`.
        reason: String,
    },
}

/// A valid CreateToken request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidCreate {
    kind: TokenKind,
    name: String,
    service_account_slug: Option<String>,
    workspace_id: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl ValidCreate {
    /// The family to create.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The display name (a service-account token's slug).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service account, for service-account tokens only.
    pub fn service_account_slug(&self) -> Option<&str> {
        self.service_account_slug.as_deref()
    }

    /// The workspace, for workspace API keys only.
    pub fn workspace_id(&self) -> Option<&str> {
        self.workspace_id.as_deref()
    }

    /// The scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The expiry, in the future when set.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// How the request names the token, for ALREADY_EXISTS details.
    pub fn resource_name(&self) -> String {
        // Parsing made the slug (workspace) present exactly for its kind.
        let slug = self.service_account_slug.as_deref().unwrap_or_default();
        let workspace_id = self.workspace_id.as_deref().unwrap_or_default();
        match self.kind {
            TokenKind::ServiceAccount => format!("serviceAccounts/{slug}/tokens/{}", self.name),
            TokenKind::WorkspaceApiKey => {
                format!("workspaces/{workspace_id}/apiKeys/{}", self.name)
            }
            TokenKind::Scrape | TokenKind::PersonalAccess => format!("tokens/{}", self.name),
        }
    }

    /// The parts the lifecycle stores.
    pub fn into_parts(self) -> CreateParts {
        CreateParts {
            kind: self.kind,
            name: self.name,
            service_account_slug: self.service_account_slug,
            workspace_id: self.workspace_id,
            scopes: self.scopes,
            expires_at: self.expires_at,
        }
    }
}

/// A [`ValidCreate`] taken apart, to build the new token from.
#[derive(Clone, Debug)]
pub struct CreateParts {
    /// The family.
    pub kind: TokenKind,
    /// The display name.
    pub name: String,
    /// The service account (service-account tokens only).
    pub service_account_slug: Option<String>,
    /// The workspace (workspace API keys only).
    pub workspace_id: Option<String>,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// CreateToken: the kind decides which name rule applies and which of
/// `service_account_slug` and `workspace_id` is required (the other must be
/// empty); `expire_time` must be after `now`.
pub fn parse_create(
    input: CreateTokenInput,
    now: DateTime<Utc>,
) -> Result<ValidCreate, InvalidFields> {
    let mut violations = Violations::default();
    let kind = validation::check_required_kind(&mut violations, input.kind);
    match kind {
        Ok(TokenKind::ServiceAccount) => {
            validation::check_slug(&mut violations, "name", &input.name);
            validation::check_slug(
                &mut violations,
                "service_account_slug",
                &input.service_account_slug,
            );
        }
        Ok(TokenKind::WorkspaceApiKey) => {
            validation::check_name(&mut violations, "name", &input.name);
            validation::check_workspace_id(&mut violations, "workspace_id", &input.workspace_id);
        }
        Ok(TokenKind::Scrape | TokenKind::PersonalAccess) | Err(_) => {
            validation::check_name(&mut violations, "name", &input.name);
        }
    }
    if kind != Ok(TokenKind::ServiceAccount) && !input.service_account_slug.is_empty() {
        violations.push(
            "service_account_slug",
            "is only accepted for TOKEN_KIND_SERVICE_ACCOUNT",
            &input.service_account_slug,
        );
    }
    if kind != Ok(TokenKind::WorkspaceApiKey) && !input.workspace_id.is_empty() {
        violations.push(
            "workspace_id",
            "is only accepted for TOKEN_KIND_WORKSPACE_API_KEY",
            &input.workspace_id,
        );
    }
    validation::check_scopes(&mut violations, &input.scopes);
    let expires_at = validation::check_expire_time(&mut violations, input.expire_time, now);
    let kind = violations.finish(kind)?;
    Ok(ValidCreate {
        kind,
        name: input.name,
        service_account_slug: non_empty(input.service_account_slug),
        workspace_id: non_empty(input.workspace_id),
        scopes: input.scopes,
        expires_at,
    })
}

/// A valid GetToken request.
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

/// ListTokens of `org_id`: every filter well-formed and consistent with
/// `kind`, and a page token made with `key` for the same organisation and
/// filters.
pub fn parse_list(
    input: ListTokensInput,
    org_id: &str,
    key: &PageTokenKey,
) -> Result<ValidList, InvalidFields> {
    let mut violations = Violations::default();
    let kind = validation::check_optional_kind(&mut violations, input.kind);
    if !input.service_account_slug.is_empty() {
        validation::check_slug(
            &mut violations,
            "service_account_slug",
            &input.service_account_slug,
        );
        if kind.is_some_and(|k| k != TokenKind::ServiceAccount) {
            violations.push(
                "service_account_slug",
                "filters service-account tokens only",
                &input.service_account_slug,
            );
        }
    }
    if !input.workspace_id.is_empty() {
        validation::check_workspace_id(&mut violations, "workspace_id", &input.workspace_id);
        if kind.is_some_and(|k| k != TokenKind::WorkspaceApiKey) {
            violations.push(
                "workspace_id",
                "filters workspace API keys only",
                &input.workspace_id,
            );
        }
    }
    let limit = validation::check_page_size(&mut violations, input.page_size);
    let filter = TokenFilter {
        kind,
        service_account_slug: non_empty(input.service_account_slug),
        workspace_id: non_empty(input.workspace_id),
        show_revoked: input.show_revoked,
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

/// A valid revoke request of any of the four revoke RPCs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRevoke {
    target: RevokeTarget,
    reason: Option<String>,
}

impl ValidRevoke {
    /// The token the request names (a personal access token of any owner).
    pub fn target(&self) -> &RevokeTarget {
        &self.target
    }

    /// The reason to store, `None` when empty.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The target and the reason.
    pub fn into_parts(self) -> (RevokeTarget, Option<String>) {
        (self.target, self.reason)
    }
}

/// The revoke RPCs: each names its token by its own fields, checked by the
/// rule of that field; `reason` is optional free text.
pub fn parse_revoke(input: RevokeInput) -> Result<ValidRevoke, InvalidFields> {
    let mut violations = Violations::default();
    let (target, reason) = match input {
        RevokeInput::Scrape { id, reason } => {
            validation::check_id(&mut violations, id);
            (Ok(RevokeTarget::Scrape { id }), reason)
        }
        RevokeInput::PersonalAccess { token_id, reason } => {
            let target = validation::check_token_id(&mut violations, &token_id).map(|token_id| {
                RevokeTarget::PersonalAccess {
                    token_id,
                    owner_user_id: None,
                }
            });
            (target, reason)
        }
        RevokeInput::ServiceAccount {
            service_account_slug,
            token_slug,
            reason,
        } => {
            validation::check_slug(
                &mut violations,
                "service_account_slug",
                &service_account_slug,
            );
            validation::check_slug(&mut violations, "token_slug", &token_slug);
            let target = RevokeTarget::ServiceAccount {
                service_account_slug,
                token_slug,
            };
            (Ok(target), reason)
        }
        RevokeInput::WorkspaceApiKey {
            workspace_id,
            key_name,
            reason,
        } => {
            validation::check_workspace_id(&mut violations, "workspace_id", &workspace_id);
            validation::check_name(&mut violations, "key_name", &key_name);
            let target = RevokeTarget::WorkspaceApiKey {
                workspace_id,
                key_name,
            };
            (Ok(target), reason)
        }
    };
    let reason = validation::check_reason(&mut violations, &reason);
    let target = violations.finish(target)?;
    Ok(ValidRevoke { target, reason })
}

/// Which token families a presented secret may belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptedFamilies {
    /// Any family (AuthenticateToken).
    Any,
    /// Only this one (the metrics endpoint takes scrape tokens only).
    Only(TokenKind),
}

impl AcceptedFamilies {
    /// Whether a token of `kind` is acceptable.
    pub fn accepts(self, kind: TokenKind) -> bool {
        match self {
            AcceptedFamilies::Any => true,
            AcceptedFamilies::Only(accepted) => accepted == kind,
        }
    }
}

/// A presented secret (AuthenticateToken's `secret`, a scrape token on the
/// metrics endpoint): well-formed with a matching checksum, else
/// `Malformed`; of a family `accepted` excludes, `Unknown` (decided from the
/// prefix, so nothing about such a token is revealed). No I/O.
pub fn parse_presented_secret(
    presented: &str,
    accepted: AcceptedFamilies,
) -> Result<TokenSecret, TokenRejection> {
    let secret = TokenSecret::parse(presented).map_err(TokenRejection::Malformed)?;
    if accepted.accepts(secret.kind()) {
        Ok(secret)
    } else {
        Err(TokenRejection::Unknown)
    }
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
        .with_flag("show_revoked", filter.show_revoked)
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

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
