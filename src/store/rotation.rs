//! RotateToken in SQL, and the one condition that says "revoked at `now`":
//! a rotated token's `revoked_at` is the end of its overlap
//! (`revoke_scheduled`), possibly in the future, so every statement that
//! judges revocation (listing by state, counting) goes through
//! [`revoked_condition`] / [`not_revoked_condition`], the SQL twin of
//! `Token::is_revoked_at`. A revoke that happened counts at once, whatever
//! the replicas' clocks say. The partial unique indexes on active names keep
//! `revoked_at IS NULL`: a rotated token's name is free at once.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, Condition, DatabaseTransaction, EntityTrait,
    QueryFilter,
};

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::repository::StoreError;
use crate::domain::rotation::{RotateOutcome, Rotation};
use crate::domain::token::{NewToken, Revocation};
use crate::store::entity::token;
use crate::store::queries::{audit_row, new_token_row, to_token};
use crate::store::{SeaStore, classify};

/// Rows revoked at `now`: revoked, unless the revocation is a rotation's
/// scheduled one still to come.
pub(crate) fn revoked_condition(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(token::Column::RevokedAt.is_not_null())
        .add(
            Condition::any()
                .add(token::Column::RevokeScheduled.eq(false))
                .add(token::Column::RevokedAt.lte(now)),
        )
}

/// Rows not revoked at `now`: no `revoked_at`, or a scheduled one still to
/// come. An `all` around the `any`, so that conditions the caller adds
/// narrow it instead of joining the alternatives.
pub(crate) fn not_revoked_condition(now: DateTime<Utc>) -> Condition {
    Condition::all().add(
        Condition::any()
            .add(token::Column::RevokedAt.is_null())
            .add(
                Condition::all()
                    .add(token::Column::RevokeScheduled.eq(true))
                    .add(token::Column::RevokedAt.gt(now)),
            ),
    )
}

/// Rows RotateToken may replace at `now`: never rotated, no revocation
/// (not even a scheduled one), not expired. The same as
/// `Token::is_rotatable_at`.
fn rotatable_condition(now: DateTime<Utc>) -> Condition {
    Condition::all()
        .add(token::Column::RotatedAt.is_null())
        .add(token::Column::RevokedAt.is_null())
        .add(
            Condition::any()
                .add(token::Column::ExpiresAt.is_null())
                .add(token::Column::ExpiresAt.gt(now)),
        )
}

impl SeaStore {
    /// Brings the scheduled revocations of the rows `target` matches
    /// forward to `audit.now`; returns the rows changed.
    pub(crate) async fn revoke_scheduled(
        &self,
        txn: &DatabaseTransaction,
        target: Condition,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Vec<token::Model>, StoreError> {
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
            .col_expr(token::Column::RevokeScheduled, Expr::value(false))
            .filter(target)
            .filter(token::Column::RevokeScheduled.eq(true))
            .filter(token::Column::RevokedAt.gt(audit.now))
            .exec_with_returning(txn)
            .await
            .map_err(classify)
    }

    /// [`crate::domain::repository::TokenRepository::rotate_token`]. The
    /// old row is changed first, by an UPDATE that carries the rotatable
    /// condition: PostgreSQL re-checks it once a concurrent rotation
    /// commits, SQLite serialises writers (`BEGIN IMMEDIATE`), so exactly
    /// one rotation sees the row. Changing it first also frees its name
    /// before the new row is inserted under the same name.
    pub(crate) async fn rotate(
        &self,
        rotation: &Rotation,
        new: NewToken,
        audit: &AuditContext,
    ) -> Result<RotateOutcome, StoreError> {
        let txn = self.begin_write().await?;
        let updated = token::Entity::update_many()
            .col_expr(token::Column::RotatedAt, Expr::value(rotation.rotated_at))
            .col_expr(
                token::Column::ReplacedBy,
                Expr::value(new.token_id.to_string()),
            )
            .col_expr(token::Column::RevokedAt, Expr::value(rotation.revoke_at))
            .col_expr(
                token::Column::RevokeScheduled,
                Expr::value(rotation.revoke_at > rotation.rotated_at),
            )
            .col_expr(
                token::Column::RevokedBy,
                Expr::value(rotation.revoked_by.clone()),
            )
            .col_expr(
                token::Column::RevokeReason,
                Expr::value(rotation.reason.clone()),
            )
            .filter(token::Column::OrgId.eq(rotation.org_id.as_str()))
            .filter(token::Column::Id.eq(rotation.id))
            .filter(rotatable_condition(rotation.rotated_at))
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        let Some(old) = updated.into_iter().next() else {
            txn.rollback().await.map_err(classify)?;
            return Ok(RotateOutcome::NotRotatable);
        };
        let previous = to_token(old)?;
        let mut rotated_event = audit_row(
            AuditEventType::TokenRotated,
            &previous,
            audit,
            rotation.reason.clone(),
        );
        rotated_event.replaced_by = ActiveValue::Set(Some(new.token_id.to_string()));
        rotated_event.insert(&txn).await.map_err(classify)?;
        let row = new_token_row(new).insert(&txn).await.map_err(classify)?;
        let token = to_token(row)?;
        audit_row(token.kind.created_event(), &token, audit, None)
            .insert(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(RotateOutcome::Rotated {
            token: Box::new(token),
            previous: Box::new(previous),
        })
    }
}
