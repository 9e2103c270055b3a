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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pagination::{Cursor, encode};

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    fn create(kind: KindInput, name: &str) -> CreateTokenInput {
        CreateTokenInput {
            kind,
            name: name.to_owned(),
            service_account_slug: String::new(),
            workspace_id: String::new(),
            scopes: Vec::new(),
            expire_time: None,
        }
    }

    fn locations(fields: &InvalidFields) -> Vec<&str> {
        fields.listed.iter().map(|v| v.location.as_str()).collect()
    }

    #[test]
    fn a_create_without_a_kind_reports_every_bad_field_and_no_internal_error() {
        let mut input = create(KindInput::Unspecified, "");
        input.service_account_slug = "ci".to_owned();
        input.scopes = vec!["BAD".to_owned()];
        input.expire_time = Some(TimestampInput::Valid(now()));
        let refused = parse_create(input, now())
            .err()
            .unwrap_or_else(|| InvalidFields {
                listed: Vec::new(),
                unlisted: 0,
            });
        assert_eq!(
            locations(&refused),
            [
                "kind",
                "name",
                "service_account_slug",
                "scopes[0]",
                "expire_time"
            ]
        );
        let unknown = parse_create(create(KindInput::Unknown(9), "ok"), now());
        assert_eq!(
            unknown.map_err(|f| locations(&f).join(",")),
            Err("kind".to_owned())
        );
    }

    #[test]
    fn a_valid_create_keeps_only_the_fields_of_its_kind() {
        let mut input = create(KindInput::Known(TokenKind::ServiceAccount), "deploy");
        input.service_account_slug = "ci".to_owned();
        input.scopes = vec!["read:tokens".to_owned()];
        let later = now() + chrono::TimeDelta::days(1);
        input.expire_time = Some(TimestampInput::Valid(later));
        let valid = parse_create(input, now()).map_err(|f| locations(&f).join(","));
        let Ok(valid) = valid else {
            panic!("refused: {valid:?}");
        };
        assert_eq!(valid.kind(), TokenKind::ServiceAccount);
        assert_eq!(valid.service_account_slug(), Some("ci"));
        assert_eq!(valid.workspace_id(), None);
        assert_eq!(valid.scopes(), ["read:tokens"]);
        assert_eq!(valid.expires_at(), Some(later));
        assert_eq!(valid.resource_name(), "serviceAccounts/ci/tokens/deploy");

        let mut key = create(KindInput::Known(TokenKind::WorkspaceApiKey), "ci key");
        key.workspace_id = "g-0123456789".to_owned();
        let key = parse_create(key, now()).map(|v| v.resource_name());
        assert_eq!(
            key.map_err(|f| f.count()),
            Ok("workspaces/g-0123456789/apiKeys/ci key".to_owned())
        );
        let pat = parse_create(
            create(KindInput::Known(TokenKind::PersonalAccess), "laptop"),
            now(),
        );
        assert_eq!(
            pat.map(|v| v.resource_name()).map_err(|f| f.count()),
            Ok("tokens/laptop".to_owned())
        );
    }

    #[test]
    fn a_revoke_with_a_bad_token_id_is_refused_with_every_bad_field() {
        let refused = parse_revoke(RevokeInput::PersonalAccess {
            token_id: "not-a-uuid".to_owned(),
            reason: "bell\u{7}".to_owned(),
        });
        assert_eq!(
            refused.map_err(|f| locations(&f).join(",")),
            Err("token_id,reason".to_owned())
        );
        let uuid = "0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e";
        let valid = parse_revoke(RevokeInput::PersonalAccess {
            token_id: uuid.to_owned(),
            reason: String::new(),
        });
        let Ok(valid) = valid else {
            panic!("refused: {valid:?}");
        };
        assert_eq!(valid.reason(), None);
        assert_eq!(
            valid.target().resource_name(),
            format!("personalAccessTokens/{uuid}")
        );
        assert!(matches!(
            valid.target(),
            RevokeTarget::PersonalAccess {
                owner_user_id: None,
                ..
            }
        ));
        assert_eq!(parse_get(0).map_err(|f| f.count()), Err(1));
        assert_eq!(parse_get(7).map(ValidGet::id).map_err(|f| f.count()), Ok(7));
    }

    #[test]
    fn a_page_token_is_accepted_only_for_its_organisation_and_filters() {
        let key = PageTokenKey::from_bytes([7; PageTokenKey::LEN]);
        let list = |org: &str, show_revoked: bool, page_token: &str| {
            parse_list(
                ListTokensInput {
                    kind: KindInput::Unspecified,
                    service_account_slug: String::new(),
                    workspace_id: String::new(),
                    show_revoked,
                    page_size: 0,
                    page_token: page_token.to_owned(),
                },
                org,
                &key,
            )
        };
        let first = list("org-a", false, "").map_err(|f| f.count());
        let Ok(first) = first else {
            panic!("refused: {first:?}");
        };
        assert_eq!((first.limit(), first.after_id()), (100, None));
        let token = encode(&key, first.scope(), Cursor { after_id: 41 });
        assert_eq!(
            list("org-a", false, &token)
                .map(|v| v.after_id())
                .map_err(|f| f.count()),
            Ok(Some(41))
        );
        for (org, show_revoked) in [("org-b", false), ("org-a", true)] {
            assert_eq!(
                list(org, show_revoked, &token).map_err(|f| locations(&f).join(",")),
                Err("page_token".to_owned())
            );
        }
        let audit = parse_audit_query(
            ListAuditEventsInput {
                event_type: "no_such_event".to_owned(),
                page_size: 1001,
                page_token: token,
            },
            "org-a",
            &key,
        );
        assert_eq!(
            audit.map_err(|f| locations(&f).join(",")),
            Err("event_type,page_size,page_token".to_owned())
        );
    }

    #[test]
    fn a_secret_of_an_excluded_family_is_unknown_before_any_read() {
        let secret = TokenSecret::generate(TokenKind::PersonalAccess)
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        assert!(parse_presented_secret(&secret, AcceptedFamilies::Any).is_ok());
        assert_eq!(
            parse_presented_secret(&secret, AcceptedFamilies::Only(TokenKind::Scrape)),
            Err(TokenRejection::Unknown)
        );
        assert!(matches!(
            parse_presented_secret("tkd_pat_short", AcceptedFamilies::Any),
            Err(TokenRejection::Malformed(_))
        ));
    }
}
