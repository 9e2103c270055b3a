//! The token lifecycle: every RPC's rules, in order — validate, authorise,
//! then act. Time arrives as a parameter (`now`), so expiry is testable
//! without sleeping.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
use crate::domain::caller::{Caller, Permission};
use crate::domain::error::{ResourceRef, ServiceError, TokenRejection};
use crate::domain::kind::TokenKind;
use crate::domain::last_use::{LAST_USED_GRANULARITY, LastUseRecorder};
use crate::domain::pagination::{self, Cursor, PageScope, PageTokenKey};
use crate::domain::repository::{StoreError, TokenRepository};
use crate::domain::secret::TokenSecret;
use crate::domain::token::{
    NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts, TokenFilter, TokenState,
    Visibility,
};
use crate::domain::validation::{self, KindInput, TimestampInput, Violations};

/// What clients are told to wait when the database is unavailable.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

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

/// One page of results.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token for the next page, if there is one.
    pub next_page_token: Option<String>,
}

/// The result of a revoke RPC.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The token, with its (original) `revoked_at`.
    pub token: Token,
    /// Whether this call revoked it (false: it was already revoked).
    pub newly_revoked: bool,
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
    fn accepts(self, kind: TokenKind) -> bool {
        match self {
            AcceptedFamilies::Any => true,
            AcceptedFamilies::Only(accepted) => accepted == kind,
        }
    }
}

/// Logs an audit event as a structured event with the stable target
/// `tokend::audit`, after its transaction committed. No secret or hash is in
/// it: the token carries neither.
///
/// Every string a caller chose (the JWT's `sub` and `org_id`, the request
/// id, the token's name, the reason) is recorded as a `&str` value, never
/// with `%` (Display, which would print it raw): the text format prints such
/// values with `Debug`, quoted and with newlines, control and invisible
/// characters escaped, and the JSON format as JSON strings. Either way a
/// value cannot end the line, forge a field or another entry, or recolour a
/// terminal.
fn log_audit_event(
    event: AuditEventType,
    token: &Token,
    audit: &AuditContext,
    reason: Option<&str>,
) {
    tracing::info!(
        target: "tokend::audit",
        event_type = event.as_str(),
        org_id = token.org_id.as_str(),
        actor = audit.actor.as_str(),
        token_id = %token.token_id,
        token_numeric_id = token.id,
        token_kind = token.kind.as_str(),
        token_name = token.name.as_str(),
        request_id = audit.request_id.as_str(),
        reason = reason.unwrap_or(""),
        "audit event"
    );
}

/// The token lifecycle over some storage.
#[derive(Debug)]
pub struct TokenLifecycle<R> {
    repository: R,
    last_use: LastUseRecorder,
    /// The key of page tokens, shared by every replica through the
    /// database; set once the schema is ready (see
    /// [`TokenLifecycle::install_page_token_key`]).
    page_token_key: OnceLock<PageTokenKey>,
    authentications: Option<std::sync::Arc<dyn AuthenticationObserver>>,
}

/// Told of every presented secret that matched a token (for each
/// organisation's metrics). A secret that matches nothing belongs to no
/// organisation and is not reported.
pub trait AuthenticationObserver: Send + Sync + std::fmt::Debug {
    /// `token` was presented while in `state`.
    fn observe(&self, token: &Token, state: TokenState);
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => ServiceError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                source,
            },
            // Callers that can name the resource map Conflict themselves;
            // reaching this arm means a constraint we did not expect.
            StoreError::Conflict => ServiceError::Internal("unexpected unique violation".into()),
            StoreError::Other(source) => ServiceError::Internal(source),
        }
    }
}

fn require(caller: &Caller, permission: Permission) -> Result<(), ServiceError> {
    if caller.has(permission) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied {
            permission: permission.as_str(),
        })
    }
}

fn invalid(violations: Violations) -> Result<(), ServiceError> {
    violations
        .into_result()
        .map_err(ServiceError::InvalidArgument)
}

/// Which tokens a caller may read: the whole org with `admin` or
/// `org_app_keys_read`, its own personal tokens with `user_app_keys`.
fn read_visibility(caller: &Caller) -> Result<Visibility, ServiceError> {
    if caller.has(Permission::OrgAppKeysRead) {
        Ok(Visibility::WholeOrg)
    } else if caller.has(Permission::UserAppKeys) {
        Ok(Visibility::OwnPersonalTokens {
            owner_user_id: caller.subject.clone(),
        })
    } else {
        Err(ServiceError::PermissionDenied {
            permission: Permission::OrgAppKeysRead.as_str(),
        })
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

impl<R: TokenRepository> TokenLifecycle<R> {
    /// Wraps a repository. Uses are recorded through `last_use`, whose
    /// writer the caller runs. List calls answer UNAVAILABLE until
    /// [`Self::install_page_token_key`] has been called.
    pub fn new(repository: R, last_use: LastUseRecorder) -> Self {
        TokenLifecycle {
            repository,
            last_use,
            page_token_key: OnceLock::new(),
            authentications: None,
        }
    }

    /// Gives the core the page-token key, once it has been read from the
    /// database. Returns `false` (and keeps the first key) if a key was
    /// already installed.
    pub fn install_page_token_key(&self, key: PageTokenKey) -> bool {
        self.page_token_key.set(key).is_ok()
    }

    /// The recorder of token uses (its counters, for diagnostics).
    pub fn last_use(&self) -> &LastUseRecorder {
        &self.last_use
    }

    fn page_token_key(&self) -> Result<&PageTokenKey, ServiceError> {
        self.page_token_key
            .get()
            .ok_or_else(|| ServiceError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                source: "the page-token key has not been loaded from the database yet".into(),
            })
    }

    /// Reports every authentication of an existing token to `observer`.
    pub fn with_authentication_observer(
        mut self,
        observer: std::sync::Arc<dyn AuthenticationObserver>,
    ) -> Self {
        self.authentications = Some(observer);
        self
    }

    /// The repository, for health checks.
    pub fn repository(&self) -> &R {
        &self.repository
    }

    /// CreateToken: validates every field, checks the permission for the kind,
    /// makes a secret and stores only its hash, with the audit event.
    pub async fn create_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: CreateTokenInput,
    ) -> Result<(Token, TokenSecret), ServiceError> {
        let mut violations = Violations::default();
        let kind = validation::check_required_kind(&mut violations, input.kind);
        match kind {
            Some(TokenKind::ServiceAccount) => {
                validation::check_slug(&mut violations, "name", &input.name);
                validation::check_slug(
                    &mut violations,
                    "service_account_slug",
                    &input.service_account_slug,
                );
            }
            Some(TokenKind::WorkspaceApiKey) => {
                validation::check_name(&mut violations, "name", &input.name);
                validation::check_workspace_id(
                    &mut violations,
                    "workspace_id",
                    &input.workspace_id,
                );
            }
            Some(TokenKind::Scrape | TokenKind::PersonalAccess) | None => {
                validation::check_name(&mut violations, "name", &input.name);
            }
        }
        if kind != Some(TokenKind::ServiceAccount) && !input.service_account_slug.is_empty() {
            violations.push(
                "service_account_slug",
                "is only accepted for TOKEN_KIND_SERVICE_ACCOUNT",
                &input.service_account_slug,
            );
        }
        if kind != Some(TokenKind::WorkspaceApiKey) && !input.workspace_id.is_empty() {
            violations.push(
                "workspace_id",
                "is only accepted for TOKEN_KIND_WORKSPACE_API_KEY",
                &input.workspace_id,
            );
        }
        validation::check_scopes(&mut violations, &input.scopes);
        let expires_at =
            validation::check_expire_time(&mut violations, input.expire_time, audit.now);
        invalid(violations)?;
        let Some(kind) = kind else {
            return Err(ServiceError::Internal(
                "kind passed validation unset".into(),
            ));
        };

        let permission = match kind {
            TokenKind::PersonalAccess => Permission::UserAppKeys,
            TokenKind::Scrape | TokenKind::ServiceAccount | TokenKind::WorkspaceApiKey => {
                Permission::Admin
            }
        };
        require(caller, permission)?;

        let secret = TokenSecret::generate(kind).map_err(|e| ServiceError::Internal(e.into()))?;
        let new_token = NewToken {
            token_id: Uuid::now_v7(),
            kind,
            org_id: caller.org_id.clone(),
            name: input.name.clone(),
            owner_user_id: caller.subject.clone(),
            service_account_slug: non_empty(&input.service_account_slug),
            workspace_id: non_empty(&input.workspace_id),
            scopes: input.scopes,
            secret_hash: secret.hash(),
            created_at: audit.now,
            expires_at,
            created_by: caller.subject.clone(),
        };
        let resource_name = match kind {
            TokenKind::ServiceAccount => format!(
                "serviceAccounts/{}/tokens/{}",
                input.service_account_slug, input.name
            ),
            TokenKind::WorkspaceApiKey => {
                format!("workspaces/{}/apiKeys/{}", input.workspace_id, input.name)
            }
            TokenKind::Scrape | TokenKind::PersonalAccess => format!("tokens/{}", input.name),
        };
        match self.repository.create_token(new_token, audit).await {
            Ok(token) => {
                log_audit_event(token.kind.created_event(), &token, audit, None);
                Ok((token, secret))
            }
            Err(StoreError::Conflict) => Err(ServiceError::AlreadyExists(ResourceRef::token(
                resource_name,
            ))),
            Err(other) => Err(other.into()),
        }
    }

    /// GetToken.
    pub async fn get_token(&self, caller: &Caller, id: i64) -> Result<Token, ServiceError> {
        let mut violations = Violations::default();
        validation::check_id(&mut violations, id);
        invalid(violations)?;
        let visibility = read_visibility(caller)?;
        self.repository
            .find_token(&caller.org_id, id, &visibility)
            .await?
            .ok_or_else(|| ServiceError::NotFound(ResourceRef::token(format!("tokens/{id}"))))
    }

    /// ListTokens, oldest first, with keyset pagination.
    pub async fn list_tokens(
        &self,
        caller: &Caller,
        input: ListTokensInput,
    ) -> Result<Page<Token>, ServiceError> {
        let mut violations = Violations::default();
        let kind = match input.kind {
            KindInput::Unspecified => None,
            KindInput::Known(kind) => Some(kind),
            KindInput::Unknown(number) => {
                violations.push(
                    "kind",
                    "must be a token kind or unspecified",
                    &number.to_string(),
                );
                None
            }
        };
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
            service_account_slug: non_empty(&input.service_account_slug),
            workspace_id: non_empty(&input.workspace_id),
            show_revoked: input.show_revoked,
        };
        let key = self.page_token_key()?;
        let scope = tokens_page_scope(&caller.org_id, &filter);
        let cursor = decode_page_token(&mut violations, key, &scope, &input.page_token);
        invalid(violations)?;
        let visibility = read_visibility(caller)?;

        let mut tokens = self
            .repository
            .list_tokens(&caller.org_id, &visibility, &filter, cursor, limit + 1)
            .await?;
        Ok(paginate(&mut tokens, limit, |t| t.id, key, &scope))
    }

    /// The four revoke RPCs. Idempotent: an already revoked token comes back
    /// with its original `revoke_time`, and no second audit event is written.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: RevokeInput,
    ) -> Result<Revoked, ServiceError> {
        let mut violations = Violations::default();
        let (target, reason) = match input {
            RevokeInput::Scrape { id, reason } => {
                validation::check_id(&mut violations, id);
                (Some(RevokeTarget::Scrape { id }), reason)
            }
            RevokeInput::PersonalAccess { token_id, reason } => {
                let parsed = validation::check_token_id(&mut violations, &token_id);
                let target = parsed.map(|token_id| RevokeTarget::PersonalAccess {
                    token_id,
                    owner_user_id: None,
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
                (Some(target), reason)
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
                (Some(target), reason)
            }
        };
        let reason = validation::check_reason(&mut violations, &reason);
        invalid(violations)?;
        let Some(mut target) = target else {
            return Err(ServiceError::Internal(
                "revoke target passed validation unset".into(),
            ));
        };

        match &mut target {
            RevokeTarget::Scrape { .. } => require(caller, Permission::Admin)?,
            RevokeTarget::PersonalAccess { owner_user_id, .. } => {
                if !caller.has(Permission::OrgAppKeysWrite) {
                    require(caller, Permission::UserAppKeys)?;
                    // Without org-wide rights only one's own token matches;
                    // another user's is NOT_FOUND, like another org's.
                    *owner_user_id = Some(caller.subject.clone());
                }
            }
            RevokeTarget::ServiceAccount { .. } => {
                require(caller, Permission::ServiceAccountTokensWrite)?;
            }
            RevokeTarget::WorkspaceApiKey { .. } => {
                require(caller, Permission::WorkspaceApiKeysWrite)?;
            }
        }

        let revocation = Revocation {
            revoked_by: caller.subject.clone(),
            reason,
        };
        match self
            .repository
            .revoke_token(&caller.org_id, &target, &revocation, audit)
            .await?
        {
            RevokeOutcome::Revoked(token) => {
                log_audit_event(
                    token.kind.revoked_event(),
                    &token,
                    audit,
                    token.revoke_reason.as_deref(),
                );
                Ok(Revoked {
                    token,
                    newly_revoked: true,
                })
            }
            RevokeOutcome::AlreadyRevoked(token) => Ok(Revoked {
                token,
                newly_revoked: false,
            }),
            RevokeOutcome::NotFound => Err(ServiceError::NotFound(ResourceRef::token(
                target.resource_name(),
            ))),
        }
    }

    /// AuthenticateToken: checks a presented secret of any family, in any
    /// organisation.
    pub async fn authenticate_token(
        &self,
        caller: &Caller,
        now: DateTime<Utc>,
        presented: &str,
    ) -> Result<Token, ServiceError> {
        require(caller, Permission::TokensIntrospect)?;
        self.authenticate_secret(now, presented, AcceptedFamilies::Any)
            .await
    }

    /// Checks a presented secret without a caller: the core of
    /// AuthenticateToken, also used by the metrics endpoint for scrape
    /// tokens. The checksum rejects malformed input before any database
    /// read. A token of a family that `accepted` excludes is `Unknown`
    /// whatever its state, decided from the secret's prefix before any read
    /// (and checked again on the row), so nothing about it is revealed or
    /// written. A valid secret costs one indexed read; its use is handed to
    /// the background writer (at most once a minute per token), which can
    /// neither fail nor delay the answer.
    pub async fn authenticate_secret(
        &self,
        now: DateTime<Utc>,
        presented: &str,
        accepted: AcceptedFamilies,
    ) -> Result<Token, ServiceError> {
        let secret = TokenSecret::parse(presented)
            .map_err(|why| ServiceError::TokenRejected(TokenRejection::Malformed(why)))?;
        if !accepted.accepts(secret.kind()) {
            return Err(ServiceError::TokenRejected(TokenRejection::Unknown));
        }
        let mut token = self
            .repository
            .find_by_hash(&secret.hash())
            .await?
            .filter(|token| accepted.accepts(token.kind))
            .ok_or(ServiceError::TokenRejected(TokenRejection::Unknown))?;
        let state = token.state_at(now);
        if let Some(observer) = &self.authentications {
            observer.observe(&token, state);
        }
        match state {
            TokenState::Revoked => {
                return Err(ServiceError::TokenRejected(TokenRejection::Revoked));
            }
            TokenState::Expired => {
                return Err(ServiceError::TokenRejected(TokenRejection::Expired));
            }
            TokenState::Active => {}
        }
        let stale_before = now - LAST_USED_GRANULARITY;
        if token.last_used_at.is_none_or(|at| at < stale_before) {
            self.last_use.record(token.id, now);
            token.last_used_at = Some(now);
        }
        Ok(token)
    }

    /// ListAuditEvents, oldest first, with keyset pagination.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        input: ListAuditEventsInput,
    ) -> Result<Page<AuditEvent>, ServiceError> {
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
        let key = self.page_token_key()?;
        let scope = PageScope::new("audit_events")
            .with_text("org_id", &caller.org_id)
            .with_optional_text("event_type", event_type.map(AuditEventType::as_str));
        let cursor = decode_page_token(&mut violations, key, &scope, &input.page_token);
        invalid(violations)?;
        require(caller, Permission::Admin)?;

        let mut events = self
            .repository
            .list_audit_events(&caller.org_id, event_type, cursor, limit + 1)
            .await?;
        Ok(paginate(&mut events, limit, |e| e.id, key, &scope))
    }

    /// Token counts of one organisation, for its scrape token's metrics.
    pub async fn token_counts(
        &self,
        org_id: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenCounts, ServiceError> {
        Ok(self.repository.count_tokens(org_id, now).await?)
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

fn decode_page_token(
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

/// Trims the extra row fetched to learn whether another page exists.
fn paginate<T>(
    items: &mut Vec<T>,
    limit: u64,
    id_of: impl Fn(&T) -> i64,
    key: &PageTokenKey,
    scope: &PageScope,
) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_page_token = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| {
            pagination::encode(
                key,
                scope,
                Cursor {
                    after_id: id_of(last),
                },
            )
        })
    } else {
        None
    };
    Page {
        items: std::mem::take(items),
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `MakeWriter` that keeps everything written, for reading back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn token(org_id: &str, name: &str) -> Token {
        Token {
            id: 7,
            token_id: Uuid::nil(),
            kind: TokenKind::Scrape,
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            owner_user_id: "owner".to_owned(),
            service_account_slug: None,
            workspace_id: None,
            scopes: Vec::new(),
            created_at: DateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_by: "owner".to_owned(),
            revoked_by: None,
            revoke_reason: None,
        }
    }

    const HOSTILE: &str =
        "mallory\n2026-01-01T00:00:00Z INFO audit event actor=admin \u{1b}[2K\u{202e}nimda\u{200b}";

    const CALLER_FIELDS: [&str; 5] = ["actor", "org_id", "request_id", "reason", "token_name"];

    /// The audit log line for an event whose every caller string is `HOSTILE`,
    /// as a subscriber built by `subscriber` writes it.
    fn audit_line<S>(subscriber: impl FnOnce(Captured) -> S) -> String
    where
        S: tracing::Subscriber + Send + Sync + 'static,
    {
        let captured = Captured::default();
        tracing::subscriber::with_default(subscriber(captured.clone()), || {
            log_audit_event(
                AuditEventType::ScrapeTokenRevoked,
                &token(HOSTILE, HOSTILE),
                &AuditContext {
                    actor: HOSTILE.to_owned(),
                    request_id: HOSTILE.to_owned(),
                    now: DateTime::UNIX_EPOCH,
                },
                Some(HOSTILE),
            );
        });
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// In the JSON format every caller string is one JSON string that
    /// decodes to exactly what the caller sent, on one line.
    #[test]
    fn the_json_audit_log_line_holds_caller_strings_as_json_strings() {
        let text = audit_line(|writer| {
            tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .finish()
        });
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        for field in CALLER_FIELDS {
            assert_eq!(value["fields"][field], HOSTILE, "{field}: {text:?}");
        }
    }

    /// Every caller-chosen string reaches a text log escaped: a newline
    /// cannot start a forged entry, an ANSI sequence cannot recolour the
    /// terminal, a bidi override cannot reorder what an operator reads.
    #[test]
    fn the_audit_log_line_escapes_every_caller_string() {
        let text = audit_line(|writer| {
            tracing_subscriber::fmt()
                .with_writer(writer)
                .with_ansi(false)
                .finish()
        });
        assert!(text.contains("audit event"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(text.ends_with('\n'));
        for raw in ['\u{1b}', '\u{202e}', '\u{200b}'] {
            assert!(!text.contains(raw), "{raw:?} unescaped in {text:?}");
        }
        for field in CALLER_FIELDS {
            assert!(
                text.contains(&format!("{field}=\"mallory\\n2026")),
                "{field} not escaped: {text:?}"
            );
        }
        assert!(text.contains("\\u{202e}nimda\\u{200b}"), "{text:?}");
    }
}
