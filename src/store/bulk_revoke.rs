//! The statements behind RevokeTokenBySecret and RevokeTokens. A token is
//! revoked at an instant as `Token::is_revoked_at` says (a rotated token's
//! revocation may lie ahead, `revoke_scheduled`). Both revoke with a compare-and-set on the
//! `revoked_at` they read, rather than with a comparison against their own
//! `now`: a token that another call revoked meanwhile, perhaps on a
//! replica whose clock runs a little ahead (its `revoked_at` then looks
//! like a revocation still to come), is left alone and gets no second
//! event. Each `*_revoked` event is written in the same transaction.

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

/// The rows of `selected` whose `revoked_at` is still the one read: for
/// most, `IS NULL` over an `IN` list; for a revocation still ahead, that
/// very instant.
fn revocation_unchanged(selected: &[Token]) -> Condition {
    let never_revoked: Vec<i64> = selected
        .iter()
        .filter(|token| token.revoked_at.is_none())
        .map(|token| token.id)
        .collect();
    let mut condition = Condition::any();
    if !never_revoked.is_empty() {
        condition = condition.add(
            Condition::all()
                .add(token::Column::Id.is_in(never_revoked))
                .add(token::Column::RevokedAt.is_null()),
        );
    }
    for token in selected {
        if let Some(at) = token.revoked_at {
            condition = condition.add(
                Condition::all()
                    .add(token::Column::Id.eq(token.id))
                    .add(token::Column::RevokedAt.eq(at)),
            );
        }
    }
    condition
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
        .col_expr(token::Column::RevokeScheduled, Expr::value(false))
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
        let txn = self.begin_write().await?;
        let Some(row) = token::Entity::find()
            .filter(token::Column::SecretHash.eq(hash.as_bytes().to_vec()))
            .all(&txn)
            .await
            .map_err(classify)?
            .into_iter()
            .next()
        else {
            txn.commit().await.map_err(classify)?;
            return Ok(RevokeOutcome::NotFound);
        };
        let seen = to_token(row)?;
        if seen.is_revoked_at(audit.now) {
            txn.commit().await.map_err(classify)?;
            return Ok(RevokeOutcome::AlreadyRevoked(seen));
        }
        let updated = revoke_statement(revocation, audit)
            .filter(revocation_unchanged(std::slice::from_ref(&seen)))
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        let Some(row) = updated.into_iter().next() else {
            // Revoked by another call between the read and the update (on
            // PostgreSQL the update waited for it): answer that revocation.
            let current = token::Entity::find_by_id(seen.id)
                .all(&txn)
                .await
                .map_err(classify)?
                .into_iter()
                .next();
            txn.commit().await.map_err(classify)?;
            return match current {
                Some(row) => Ok(RevokeOutcome::AlreadyRevoked(to_token(row)?)),
                None => Ok(RevokeOutcome::NotFound),
            };
        };
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
        Ok(RevokeOutcome::Revoked(token))
    }

    /// [`TokenRepository::revoke_active`]: one UPDATE of the rows of
    /// `org_id` among `selected` whose revocation is unchanged and that
    /// have not expired at `audit.now`, one multi-row
    /// INSERT of their events (at most 1000 rows of 9 values: within both
    /// backends' bind limits), one transaction.
    ///
    /// [`TokenRepository::revoke_active`]: crate::domain::repository::TokenRepository::revoke_active
    pub(super) async fn revoke_unchanged(
        &self,
        org_id: &str,
        selected: &[Token],
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Vec<Token>, StoreError> {
        let txn = self.begin_write().await?;
        let rows = revoke_statement(revocation, audit)
            .filter(token::Column::OrgId.eq(org_id))
            .filter(revocation_unchanged(selected))
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
