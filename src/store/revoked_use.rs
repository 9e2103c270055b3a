//! The statement behind `revoked_token_used`: a conditional update of the
//! token's `revoked_use_recorded_at` and, only if it changed the row, the
//! event, in one transaction, so that replicas presenting the same revoked
//! token at once write one event a minute between them.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter};

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::repository::StoreError;
use crate::domain::token::Token;
use crate::store::entity::token;
use crate::store::queries::{audit_row, to_token};
use crate::store::{SeaStore, classify};

impl SeaStore {
    /// [`TokenRepository::record_revoked_use`].
    ///
    /// [`TokenRepository::record_revoked_use`]: crate::domain::repository::TokenRepository::record_revoked_use
    pub(super) async fn write_revoked_use(
        &self,
        id: i64,
        audit: &AuditContext,
        recorded_before: DateTime<Utc>,
    ) -> Result<Option<Token>, StoreError> {
        let txn = self.begin_write().await?;
        let updated = token::Entity::update_many()
            .col_expr(token::Column::RevokedUseRecordedAt, Expr::value(audit.now))
            .filter(token::Column::Id.eq(id))
            .filter(
                Condition::any()
                    .add(token::Column::RevokedUseRecordedAt.is_null())
                    .add(token::Column::RevokedUseRecordedAt.lt(recorded_before)),
            )
            .exec_with_returning(&txn)
            .await
            .map_err(classify)?;
        let Some(row) = updated.into_iter().next() else {
            txn.commit().await.map_err(classify)?;
            return Ok(None);
        };
        let token = to_token(row)?;
        audit_row(AuditEventType::RevokedTokenUsed, &token, audit, None)
            .insert(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(Some(token))
    }
}
