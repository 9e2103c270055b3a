//! The token lifecycle: every RPC's rules, each method in the same order —
//! parse the raw input into its validated form (`domain::request`),
//! authorise the caller, then act. Time arrives as a parameter (`now`) and
//! randomness from an injected [`Entropy`], so expiry and what a create
//! makes are testable without sleeping or guessing.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::audit::{AuditContext, AuditEvent};
use crate::domain::audit_log::log_audit_event;
use crate::domain::caller::{Caller, Permission, Role};
use crate::domain::entropy::Entropy;
use crate::domain::error::{ResourceRef, ServiceError, TokenRejection};
use crate::domain::kind::TokenKind;
use crate::domain::last_use::{LAST_USED_GRANULARITY, LastUseRecorder};
use crate::domain::pagination::{Page, PageTokenKey, paginate};
use crate::domain::repository::{StoreError, TokenRepository};
use crate::domain::request::{
    self, AcceptedFamilies, AuthenticateInput, CreateTokenInput, ListAuditEventsInput,
    ListTokensInput, RevokeInput,
};
use crate::domain::revoked_use::{RevokedUse, RevokedUseThrottle};
use crate::domain::secret::TokenSecret;
use crate::domain::token::{
    NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts, TokenState, Visibility,
};

/// What clients are told to wait when the database is unavailable.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The result of a revoke RPC.
#[derive(Clone, Debug)]
pub struct Revoked {
    /// The token, with its (original) `revoked_at`.
    pub token: Token,
    /// Whether this call revoked it (false: it was already revoked).
    pub newly_revoked: bool,
}

/// The token lifecycle over some storage.
#[derive(Debug)]
pub struct TokenLifecycle<R> {
    repository: R,
    last_use: LastUseRecorder,
    entropy: Arc<dyn Entropy>,
    /// The key of page tokens, shared by every replica through the
    /// database; set once the schema is ready (see
    /// [`TokenLifecycle::install_page_token_key`]).
    page_token_key: OnceLock<PageTokenKey>,
    authentications: Option<Arc<dyn AuthenticationObserver>>,
    /// Which revoked tokens' uses were handed to the writer lately.
    revoked_uses: RevokedUseThrottle,
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

pub(crate) fn require(caller: &Caller, permission: Permission) -> Result<(), ServiceError> {
    if caller.has(permission) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied {
            permission: permission.as_str(),
        })
    }
}

pub(crate) fn require_role(caller: &Caller, role: Role) -> Result<(), ServiceError> {
    if caller.has_role(role) {
        Ok(())
    } else {
        Err(ServiceError::PermissionDenied {
            permission: role.as_str(),
        })
    }
}

/// What a revoke answers for the repository's `outcome`: an effective
/// revoke is logged as its audit event, a repeat is idempotent, and nothing
/// found is `NotFound` naming `resource_name()`.
pub(crate) fn answer_revoke(
    outcome: RevokeOutcome,
    audit: &AuditContext,
    resource_name: impl FnOnce() -> String,
) -> Result<Revoked, ServiceError> {
    match outcome {
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
        RevokeOutcome::NotFound => Err(ServiceError::NotFound(ResourceRef::token(resource_name()))),
    }
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

impl<R: TokenRepository> TokenLifecycle<R> {
    /// Wraps a repository. Uses are recorded through `last_use`, whose
    /// writer the caller runs; secrets and token UUIDs come from `entropy`.
    /// List calls answer UNAVAILABLE until [`Self::install_page_token_key`]
    /// has been called.
    pub fn new(repository: R, last_use: LastUseRecorder, entropy: Arc<dyn Entropy>) -> Self {
        TokenLifecycle {
            repository,
            last_use,
            entropy,
            page_token_key: OnceLock::new(),
            authentications: None,
            revoked_uses: RevokedUseThrottle::default(),
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
        observer: Arc<dyn AuthenticationObserver>,
    ) -> Self {
        self.authentications = Some(observer);
        self
    }

    /// The repository, for health checks.
    pub fn repository(&self) -> &R {
        &self.repository
    }

    /// Where secrets and token UUIDs come from.
    pub(crate) fn entropy(&self) -> &dyn Entropy {
        self.entropy.as_ref()
    }

    /// CreateToken: parses every field, checks the permission for the
    /// kind, makes a secret and stores only its hash, with the audit event.
    pub async fn create_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: CreateTokenInput,
    ) -> Result<(Token, TokenSecret), ServiceError> {
        let valid =
            request::parse_create(input, audit.now).map_err(ServiceError::InvalidArgument)?;

        match valid.kind() {
            TokenKind::PersonalAccess => require(caller, Permission::UserAppKeys)?,
            TokenKind::Scrape | TokenKind::ServiceAccount | TokenKind::WorkspaceApiKey => {
                require_role(caller, Role::Admin)?;
            }
        }

        // The organisation's policy bounds the expiry (a default when none
        // was asked for, a maximum otherwise).
        let policy = self.repository.token_policy(&caller.org_id).await?;
        let expires_at = policy
            .create_expiry(valid.kind(), valid.expires_at(), audit.now)
            .map_err(ServiceError::InvalidArgument)?;

        let random = |e| ServiceError::Internal(Box::new(e));
        let secret =
            TokenSecret::generate_from(valid.kind(), self.entropy.as_ref()).map_err(random)?;
        let token_id = self.entropy.token_uuid(audit.now).map_err(random)?;
        let resource_name = valid.resource_name();
        let parts = valid.into_parts();
        let new_token = NewToken {
            token_id,
            kind: parts.kind,
            org_id: caller.org_id.clone(),
            name: parts.name,
            owner_user_id: caller.subject.clone(),
            service_account_slug: parts.service_account_slug,
            workspace_id: parts.workspace_id,
            scopes: parts.scopes,
            secret_hash: secret.hash(),
            created_at: audit.now,
            expires_at,
            created_by: caller.subject.clone(),
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
        let valid = request::parse_get(id).map_err(ServiceError::InvalidArgument)?;
        let visibility = read_visibility(caller)?;
        self.repository
            .find_token(&caller.org_id, valid.id(), &visibility)
            .await?
            .ok_or_else(|| {
                ServiceError::NotFound(ResourceRef::token(format!("tokens/{}", valid.id())))
            })
    }

    /// ListTokens, oldest first, with keyset pagination; active and expired
    /// are judged at `now`.
    pub async fn list_tokens(
        &self,
        caller: &Caller,
        now: DateTime<Utc>,
        input: ListTokensInput,
    ) -> Result<Page<Token>, ServiceError> {
        let key = self.page_token_key()?;
        let valid = request::parse_list(input, &caller.org_id, key, now)
            .map_err(ServiceError::InvalidArgument)?;
        let visibility = read_visibility(caller)?;

        let tokens = self
            .repository
            .list_tokens(
                &caller.org_id,
                &visibility,
                valid.filter(),
                valid.after_id(),
                valid.limit() + 1,
            )
            .await?;
        Ok(paginate(
            tokens,
            valid.limit(),
            |t| t.id,
            key,
            valid.scope(),
        ))
    }

    /// The four revoke RPCs. Idempotent: an already revoked token comes back
    /// with its original `revoke_time`, and no second audit event is written.
    pub async fn revoke_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: RevokeInput,
    ) -> Result<Revoked, ServiceError> {
        let (mut target, reason) = request::parse_revoke(input)
            .map_err(ServiceError::InvalidArgument)?
            .into_parts();

        match &mut target {
            RevokeTarget::Scrape { .. } => require_role(caller, Role::Admin)?,
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
        let outcome = self
            .repository
            .revoke_token(&caller.org_id, &target, &revocation, audit)
            .await?;
        answer_revoke(outcome, audit, || target.resource_name())
    }

    /// AuthenticateToken: checks a presented secret of any family, in any
    /// organisation, then that the token holds every required scope. A
    /// revoked, expired or unknown token fails as such before its scopes are
    /// looked at; a token that authenticates but lacks a scope was still
    /// used (its use is recorded), and is `ScopeMissing`.
    pub async fn authenticate_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: AuthenticateInput,
    ) -> Result<Token, ServiceError> {
        // Authorise before parsing, unlike the other RPCs: a caller without
        // `tokens_introspect` learns nothing about the string it sent, not
        // even whether it is a well-formed secret.
        require(caller, Permission::TokensIntrospect)?;
        let required = request::parse_required_scopes(input.required_scopes)
            .map_err(ServiceError::InvalidArgument)?;
        let token = self
            .authenticate_secret(audit, &input.secret, AcceptedFamilies::Any)
            .await?;
        let missing = required.missing_from(&token.scopes);
        if missing.is_empty() {
            Ok(token)
        } else {
            Err(ServiceError::ScopeMissing { missing })
        }
    }

    /// Checks a presented secret without a caller: the core of
    /// AuthenticateToken, also used by the metrics endpoint for scrape
    /// tokens. The checksum rejects malformed input before any database
    /// read. A token of a family that `accepted` excludes is `Unknown`
    /// whatever its state, decided from the secret's prefix before any read
    /// (and checked again on the row), so nothing about it is revealed or
    /// written. A valid secret costs one indexed read; its use is handed to
    /// the background writer (at most once a minute per token), which can
    /// neither fail nor delay the answer. A revoked token's use is handed to
    /// the same writer as a `revoked_token_used` event by `presenter` (at
    /// most once a minute per token; see `domain::revoked_use`).
    pub async fn authenticate_secret(
        &self,
        presenter: &AuditContext,
        presented: &str,
        accepted: AcceptedFamilies,
    ) -> Result<Token, ServiceError> {
        let now = presenter.now;
        let secret = request::parse_presented_secret(presented, accepted)
            .map_err(ServiceError::TokenRejected)?;
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
                if self.revoked_uses.admit(token.id, now) {
                    self.last_use.record_revoked_use(RevokedUse {
                        token_id: token.id,
                        context: presenter.clone(),
                    });
                }
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
        let key = self.page_token_key()?;
        let valid = request::parse_audit_query(input, &caller.org_id, key)
            .map_err(ServiceError::InvalidArgument)?;
        require_role(caller, Role::Admin)?;

        let events = self
            .repository
            .list_audit_events(
                &caller.org_id,
                valid.event_type(),
                valid.after_id(),
                valid.limit() + 1,
            )
            .await?;
        Ok(paginate(
            events,
            valid.limit(),
            |e| e.id,
            key,
            valid.scope(),
        ))
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
