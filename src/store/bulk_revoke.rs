//! The statements behind RevokeTokenBySecret and RevokeTokens. Both revoke
//! with a conditional UPDATE (`not revoked at now`, a revocation still
//! ahead counting as not yet revoked), so a token revoked concurrently by
//! another call is left alone and gets no second event, and write each
//! `*_revoked` event in the same transaction.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter};

use crate::domain::audit::AuditContext;
use crate::domain::repository::StoreError;
use crate::domain::secret::TokenHash;
use crate::domain::token::{Revocation, RevokeOutcome, Token};
use crate::store::entity::{audit_event, token};
use crate::store::queries::{audit_row, to_token};
use crate::store::{SeaStore, classify};

/// Not revoked at `now`: never revoked, or revoked only from a later
/// instant on.
fn not_revoked_at(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(token::Column::RevokedAt.is_null())
        .add(token::Column::RevokedAt.gt(now))
}

/// Not expired at `now`.
fn not_expired_at(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(token::Column::ExpiresAt.is_null())
        .add(token::Column::ExpiresAt.gt(now))
}

/// The UPDATE that revokes at `audit.now` by `revocation`, before its
/// WHERE clause.
fn revoke_statement(
    revocation: &Revocation,
    audit: &AuditContext,
) -> sea_orm::UpdateMany<token::Entity> {
    token::Entity::update_many()
        .col_expr(token::Column::RevokedAt, Expr::value(audit.now))
        .col_expr(
            token::Column::RevokedBy,
            Expr::value(revocation.revoked_by.clone()),
        )
        .col_expr(
            token::Column::RevokeReason,
            Expr::value(revocation.reason.clone()),
        )
}

impl SeaStore {
    /// [`TokenRepository::revoke_by_hash`]: not confined to an organisation
    /// (the secret names the token wherever it is); the event goes to the
    /// token's own organisation.
    ///
    /// [`TokenRepository::revoke_by_hash`]: crate::domain::repository::TokenRepository::revoke_by_hash
    pub(super) async fn revoke_secret_hash(
        &self,
        hash: &TokenHash,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<RevokeOutcome, StoreError> {
        let by_hash = || token::Column::SecretHash.eq(hash.as_bytes().to_vec());
        let txn = self.begin_write().await?;
        let updated = revoke_statement(revocation, audit)
            .filter(by_hash())
            .filter(not_revoked_at(audit.now))
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        if let Some(row) = updated.into_iter().next() {
            let token = to_token(row)?;
            audit_row(
                token.kind.revoked_event(),
                &token,
                audit,
                revocation.reason.clone(),
            )
            .insert(&txn)
            .await
            .map_err(classify)?;
            txn.commit().await.map_err(classify)?;
            return Ok(RevokeOutcome::Revoked(token));
        }
        let existing = token::Entity::find()
            .filter(by_hash())
            .all(&txn)
            .await
            .map_err(classify)?
            .into_iter()
            .next();
        txn.commit().await.map_err(classify)?;
        match existing {
            Some(row) => Ok(RevokeOutcome::AlreadyRevoked(to_token(row)?)),
            None => Ok(RevokeOutcome::NotFound),
        }
    }

    /// [`TokenRepository::revoke_active`]: one UPDATE of the rows of
    /// `org_id` among `ids` still active at `audit.now`, one multi-row
    /// INSERT of their events (at most 1000 rows of 9 values: within both
    /// backends' bind limits), one transaction.
    ///
    /// [`TokenRepository::revoke_active`]: crate::domain::repository::TokenRepository::revoke_active
    pub(super) async fn revoke_active_ids(
        &self,
        org_id: &str,
        ids: &[i64],
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Vec<Token>, StoreError> {
        let txn = self.begin_write().await?;
        let rows = revoke_statement(revocation, audit)
            .filter(token::Column::OrgId.eq(org_id))
            .filter(token::Column::Id.is_in(ids.iter().copied()))
            .filter(not_revoked_at(audit.now))
            .filter(not_expired_at(audit.now))
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        let mut tokens = rows
            .into_iter()
            .map(to_token)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING promises no order; events and the answer go oldest first.
        tokens.sort_by_key(|token| token.id);
        if !tokens.is_empty() {
            audit_event::Entity::insert_many(tokens.iter().map(|token| {
                audit_row(
                    token.kind.revoked_event(),
                    token,
                    audit,
                    revocation.reason.clone(),
                )
            }))
            .exec(&txn)
            .await
            .map_err(classify)?;
        }
        txn.commit().await.map_err(classify)?;
        Ok(tokens)
    }
}
