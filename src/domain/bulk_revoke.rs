//! RevokeTokens: revoke every active token of the caller's organisation
//! that matches the given selectors, at most
//! [`MAX_REVOKED_PER_CALL`]
//! per call.

use crate::domain::audit::AuditContext;
use crate::domain::audit_log::log_audit_event;
use crate::domain::caller::{Caller, Role};
use crate::domain::error::ServiceError;
use crate::domain::lifecycle::{TokenLifecycle, require_role};
use crate::domain::repository::TokenRepository;
use crate::domain::request::{self, MAX_REVOKED_PER_CALL, RevokeTokensInput};
use crate::domain::token::{Revocation, Token, Visibility};

/// What one RevokeTokens call did (or, with `dry_run`, would do).
#[derive(Clone, Debug)]
pub struct BulkRevoked {
    /// The tokens this call revoked (with `dry_run`: would revoke), oldest
    /// first.
    pub tokens: Vec<Token>,
    /// More matching tokens remain: call again.
    pub more: bool,
    /// Whether this was a dry run (nothing was written).
    pub dry_run: bool,
}

impl<R: TokenRepository> TokenLifecycle<R> {
    /// RevokeTokens (`admin`): selects the oldest
    /// [`MAX_REVOKED_PER_CALL`] active tokens that match, then revokes them
    /// with one conditional statement (a compare-and-set on the
    /// `revoked_at` read) and one `*_revoked` event each, in one
    /// transaction. A token another call revoked in between is left out
    /// (no second event); a dry run only reads.
    pub async fn revoke_tokens(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: RevokeTokensInput,
    ) -> Result<BulkRevoked, ServiceError> {
        let valid = request::parse_revoke_tokens(input).map_err(ServiceError::InvalidArgument)?;
        require_role(caller, Role::Admin)?;

        let filter = valid.selectors().active_at(audit.now);
        let mut matching = self
            .repository()
            .list_tokens(
                &caller.org_id,
                &Visibility::WholeOrg,
                &filter,
                None,
                MAX_REVOKED_PER_CALL + 1,
            )
            .await?;
        let cap = usize::try_from(MAX_REVOKED_PER_CALL).unwrap_or(usize::MAX);
        let more = matching.len() > cap;
        matching.truncate(cap);
        if valid.dry_run() {
            return Ok(BulkRevoked {
                tokens: matching,
                more,
                dry_run: true,
            });
        }

        let revocation = Revocation {
            revoked_by: caller.subject.clone(),
            reason: valid.reason().map(str::to_owned),
        };
        let revoked = if matching.is_empty() {
            Vec::new()
        } else {
            self.repository()
                .revoke_active(&caller.org_id, &matching, &revocation, audit)
                .await?
        };
        for token in &revoked {
            log_audit_event(
                token.kind.revoked_event(),
                token,
                audit,
                token.revoke_reason.as_deref(),
            );
        }
        Ok(BulkRevoked {
            tokens: revoked,
            more,
            dry_run: false,
        })
    }
}
