//! RotateToken: a token is replaced by a new one with the same kind, name,
//! owner, service account, workspace and scopes. The old one keeps
//! authenticating for the requested overlap: its revocation is scheduled in
//! `revoked_at` (`rotate_time + overlap`) and takes effect by itself at that
//! instant on every replica, since "revoked" means `revoked_at <= now`
//! ([`Token::is_revoked_at`]); no background task is involved. Its name is
//! free at once: the unique index on active names only holds rows whose
//! `revoked_at` is unset.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::audit_log::log_audit_event;
use crate::domain::caller::{Caller, Permission, Role};
use crate::domain::error::{ResourceRef, ServiceError};
use crate::domain::kind::TokenKind;
use crate::domain::lifecycle::{TokenLifecycle, require, require_role};
use crate::domain::repository::{StoreError, TokenRepository};
use crate::domain::request::{self, RotateInput};
use crate::domain::secret::TokenSecret;
use crate::domain::token::{NewToken, Token, TokenState, Visibility};

/// What the store changes on the old token when it is rotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The caller's organisation (the old token's, or nothing matches).
    pub org_id: String,
    /// The old token's numeric id.
    pub id: i64,
    /// The rotation's instant: the old token's `rotate_time`.
    pub rotated_at: DateTime<Utc>,
    /// When the old token stops authenticating: `rotated_at + overlap`.
    pub revoke_at: DateTime<Utc>,
    /// The caller's `sub`, stored as the old token's `revoked_by`.
    pub revoked_by: String,
    /// The reason, stored as the old token's `revoke_reason` and in
    /// `token_rotated`.
    pub reason: Option<String>,
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq)]
pub enum RotateOutcome {
    /// The old token was replaced (boxed: the other variant is empty).
    Rotated {
        /// The new token.
        token: Box<Token>,
        /// The old token, with `rotated_at`, `replaced_by` and its
        /// (scheduled) `revoked_at`.
        previous: Box<Token>,
    },
    /// The old token was no longer rotatable when the store looked
    /// (revoked, expired or rotated, e.g. by a concurrent rotation).
    NotRotatable,
}

/// The result of RotateToken.
#[derive(Debug)]
pub struct Rotated {
    /// The new token.
    pub token: Token,
    /// Its secret, shown once.
    pub secret: TokenSecret,
    /// The old token.
    pub previous: Token,
}

impl Token {
    /// Whether RotateToken may replace the token at `now`: active, and
    /// neither rotated nor scheduled for revocation.
    pub fn is_rotatable_at(&self, now: DateTime<Utc>) -> bool {
        self.state_at(now) == TokenState::Active
            && self.rotated_at.is_none()
            && self.revoked_at.is_none()
    }
}

/// RotateToken needs what revokes the token: its family's revoke rule. A
/// personal access token of another user, for a caller without
/// `org_app_keys_write`, is NOT_FOUND, as in RevokePersonalAccessToken.
fn authorise_rotation(caller: &Caller, token: &Token) -> Result<(), ServiceError> {
    match token.kind {
        TokenKind::Scrape => require_role(caller, Role::Admin),
        TokenKind::PersonalAccess => {
            if caller.has(Permission::OrgAppKeysWrite) {
                return Ok(());
            }
            require(caller, Permission::UserAppKeys)?;
            if token.owner_user_id == caller.subject {
                Ok(())
            } else {
                Err(ServiceError::NotFound(ResourceRef::token(format!(
                    "tokens/{}",
                    token.id
                ))))
            }
        }
        TokenKind::ServiceAccount => require(caller, Permission::ServiceAccountTokensWrite),
        TokenKind::WorkspaceApiKey => require(caller, Permission::WorkspaceApiKeysWrite),
    }
}

impl<R: TokenRepository> TokenLifecycle<R> {
    /// RotateToken: parse, find the token in the caller's organisation,
    /// authorise by its family's revoke rule, check it is rotatable, then
    /// let the store replace it in one transaction (which checks again, so
    /// that of concurrent rotations exactly one wins). The new token's
    /// expiry follows the organisation's policy (see
    /// [`crate::domain::policy::TokenPolicy::rotation_expiry`]).
    pub async fn rotate_token(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: RotateInput,
    ) -> Result<Rotated, ServiceError> {
        let valid = request::parse_rotate(input).map_err(ServiceError::InvalidArgument)?;
        let resource = || ResourceRef::token(format!("tokens/{}", valid.id()));
        let old = self
            .repository()
            .find_token(&caller.org_id, valid.id(), &Visibility::WholeOrg)
            .await?
            .ok_or_else(|| ServiceError::NotFound(resource()))?;
        authorise_rotation(caller, &old)?;
        if !old.is_rotatable_at(audit.now) {
            return Err(ServiceError::NotRotatable(resource()));
        }

        let policy = self.repository().token_policy(&caller.org_id).await?;
        let expires_at = policy.rotation_expiry(&old, audit.now);
        let random = |e| ServiceError::Internal(Box::new(e));
        let secret = TokenSecret::generate_from(old.kind, self.entropy()).map_err(random)?;
        let token_id: Uuid = self.entropy().token_uuid(audit.now).map_err(random)?;
        let new_token = NewToken {
            token_id,
            kind: old.kind,
            org_id: old.org_id.clone(),
            name: old.name.clone(),
            owner_user_id: old.owner_user_id.clone(),
            service_account_slug: old.service_account_slug.clone(),
            workspace_id: old.workspace_id.clone(),
            scopes: old.scopes.clone(),
            secret_hash: secret.hash(),
            created_at: audit.now,
            expires_at,
            created_by: caller.subject.clone(),
        };
        let rotation = Rotation {
            org_id: caller.org_id.clone(),
            id: old.id,
            rotated_at: audit.now,
            revoke_at: audit
                .now
                .checked_add_signed(valid.overlap())
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            revoked_by: caller.subject.clone(),
            reason: valid.reason().map(str::to_owned),
        };
        match self
            .repository()
            .rotate_token(&rotation, new_token, audit)
            .await
        {
            Ok(RotateOutcome::Rotated { token, previous }) => {
                log_audit_event(
                    AuditEventType::TokenRotated,
                    &previous,
                    audit,
                    rotation.reason.as_deref(),
                );
                log_audit_event(token.kind.created_event(), &token, audit, None);
                Ok(Rotated {
                    token: *token,
                    secret,
                    previous: *previous,
                })
            }
            Ok(RotateOutcome::NotRotatable) => Err(ServiceError::NotRotatable(resource())),
            // The old row's name was freed in the same transaction, so only
            // a token created meanwhile under that name can clash.
            Err(StoreError::Conflict) => Err(ServiceError::AlreadyExists(resource())),
            Err(other) => Err(other.into()),
        }
    }
}
