//! What the core needs from storage. `store::SeaStore` implements it; the
//! core never sees SQL or sea-orm.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
use crate::domain::policy::TokenPolicy;
use crate::domain::rotation::{RotateOutcome, Rotation};
use crate::domain::secret::TokenHash;
use crate::domain::token::{
    NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts, TokenFilter, Visibility,
};

/// Storage failures, classified by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded: retry later.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A unique constraint refused the write (an active name is taken).
    #[error("unique constraint violated")]
    Conflict,
    /// Anything else.
    #[error("database error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Token and audit storage. Every method that reads or writes an
/// organisation's data takes the `org_id` and applies it in the statement
/// itself.
pub trait TokenRepository: Send + Sync + 'static {
    /// Inserts a token and its `*_created` audit event in one transaction.
    fn create_token(
        &self,
        token: NewToken,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<Token, StoreError>> + Send;

    /// One token of `org_id` by numeric id, if visible.
    fn find_token(
        &self,
        org_id: &str,
        id: i64,
        visibility: &Visibility,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send;

    /// Up to `limit` tokens of `org_id` with id > `after_id`, by id.
    fn list_tokens(
        &self,
        org_id: &str,
        visibility: &Visibility,
        filter: &TokenFilter,
        after_id: Option<i64>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send;

    /// Revokes the active token `target` names, writing its audit event in the
    /// same transaction; if it is already revoked, returns it unchanged.
    fn revoke_token(
        &self,
        org_id: &str,
        target: &RevokeTarget,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send;

    /// The token with this secret hash, in any organisation.
    fn find_by_hash(
        &self,
        hash: &TokenHash,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send;

    /// Sets `last_used_at = now` unless it is already later than `stale_before`.
    fn touch_last_used(
        &self,
        id: i64,
        now: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `limit` audit events of `org_id` with id > `after_id`, by id.
    fn list_audit_events(
        &self,
        org_id: &str,
        event_type: Option<AuditEventType>,
        after_id: Option<i64>,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;

    /// Token counts of `org_id` by kind and state at `now`.
    fn count_tokens(
        &self,
        org_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<TokenCounts, StoreError>> + Send;

    /// Whether the database answers.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Rotates `rotation.id` of `rotation.org_id` if it is still rotatable
    /// at `rotation.rotated_at` (not revoked, not even at a later instant;
    /// not expired; not rotated): in one transaction, marks the old row
    /// (`rotated_at`, `replaced_by`, `revoked_at = revoke_at`, `revoked_by`,
    /// `revoke_reason`), which frees its name, inserts `new`, and writes
    /// `token_rotated` and the new token's `*_created` event. The old row's
    /// change is conditional, so of concurrent rotations exactly one wins;
    /// the others get [`RotateOutcome::NotRotatable`] and write nothing.
    fn rotate_token(
        &self,
        rotation: &Rotation,
        new: NewToken,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<RotateOutcome, StoreError>> + Send;

    /// The token policy of `org_id` (empty if none was set).
    fn token_policy(
        &self,
        org_id: &str,
    ) -> impl Future<Output = Result<TokenPolicy, StoreError>> + Send;

    /// Replaces the token policy of `org_id` with `policy` and writes
    /// `token_policy_updated`, in one transaction; returns what is stored.
    fn replace_token_policy(
        &self,
        org_id: &str,
        policy: &TokenPolicy,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<TokenPolicy, StoreError>> + Send;
    /// RevokeTokenBySecret: revokes the token with this secret hash, in any
    /// organisation, unless it is already revoked at `audit.now`, writing
    /// its `*_revoked` event (in the token's organisation) in the same
    /// transaction; an already revoked token comes back unchanged. The
    /// update is a compare-and-set on the `revoked_at` read, so of two
    /// concurrent calls exactly one revokes, whatever their clocks.
    fn revoke_by_hash(
        &self,
        hash: &TokenHash,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send;

    /// RevokeTokens: revokes those of `selected` (tokens of `org_id` read
    /// as active at `audit.now`) whose `revoked_at` is still what was read
    /// and that have not expired at `audit.now`, each with its `*_revoked`
    /// event, all in one transaction. A compare-and-set rather than a
    /// comparison with `now`: a token another call revoked meanwhile, even
    /// on a replica whose clock is ahead, is left alone and gets no second
    /// event. Returns the tokens this call revoked, by id.
    fn revoke_active(
        &self,
        org_id: &str,
        selected: &[Token],
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send;

    /// A revoked token was presented: unless a use of it was recorded at or
    /// after `recorded_before` (on any replica), notes `audit.now` on the
    /// token and writes a `revoked_token_used` event in its organisation, in
    /// one transaction. Returns the token when the event was written.
    fn record_revoked_use(
        &self,
        id: i64,
        audit: &AuditContext,
        recorded_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send;
}
