//! RevokeTokenBySecret: revoke the token a leaked secret belongs to, in
//! whatever organisation it is, for the secret scanner and the incident
//! desk (`tokens_revoke_leaked`, a platform permission).

use crate::domain::audit::AuditContext;
use crate::domain::caller::{Caller, Permission};
use crate::domain::error::ServiceError;
use crate::domain::lifecycle::{Revoked, TokenLifecycle, answer_revoke, require};
use crate::domain::repository::TokenRepository;
use crate::domain::request::{self, RevokeBySecretInput};
use crate::domain::token::Revocation;

/// How a NOT_FOUND names the token of an unknown secret: by the field that
/// named it, never by its value.
pub const UNKNOWN_SECRET_RESOURCE: &str = "secret";

impl<R: TokenRepository> TokenLifecycle<R> {
    /// RevokeTokenBySecret. Authorised before parsing, like
    /// AuthenticateToken: a caller without `tokens_revoke_leaked` learns
    /// nothing about the string it sent. A malformed secret is refused
    /// without a database read. The `*_revoked` event lands in the token's
    /// organisation, with the caller as actor. Idempotent: an already
    /// revoked token comes back with its original `revoke_time` and no
    /// second event.
    pub async fn revoke_token_by_secret(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: RevokeBySecretInput,
    ) -> Result<Revoked, ServiceError> {
        require(caller, Permission::TokensRevokeLeaked)?;
        let (secret, reason) = request::parse_revoke_by_secret(input)
            .map_err(ServiceError::InvalidArgument)?
            .into_parts();
        let revocation = Revocation {
            revoked_by: caller.subject.clone(),
            reason,
        };
        let outcome = self
            .repository()
            .revoke_by_hash(&secret.hash(), &revocation, audit)
            .await?;
        answer_revoke(outcome, audit, || UNKNOWN_SECRET_RESOURCE.to_owned())
    }
}
