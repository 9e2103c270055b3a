//! Token policies in SQL: one `token_policies` row per organisation and
//! kind that has limits, lifetimes in nanoseconds.

use chrono::TimeDelta;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, ActiveValue, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::kind::TokenKind;
use crate::domain::policy::{KindPolicy, TokenPolicy};
use crate::domain::repository::StoreError;
use crate::store::entity::{audit_event, token_policy};
use crate::store::queries::corrupt;
use crate::store::{SeaStore, classify};

fn to_nanos(span: Option<TimeDelta>) -> Result<Option<i64>, StoreError> {
    span.map(|span| {
        span.num_nanoseconds()
            .ok_or_else(|| StoreError::Other("policy lifetime beyond i64 nanoseconds".into()))
    })
    .transpose()
}

fn to_kind_policy(row: token_policy::Model) -> Result<KindPolicy, StoreError> {
    Ok(KindPolicy {
        kind: TokenKind::from_db_str(&row.kind).ok_or_else(|| corrupt("token_policies.kind"))?,
        max_lifetime: row.max_lifetime_nanos.map(TimeDelta::nanoseconds),
        default_lifetime: row.default_lifetime_nanos.map(TimeDelta::nanoseconds),
    })
}

impl SeaStore {
    /// [`crate::domain::repository::TokenRepository::token_policy`].
    pub(crate) async fn read_token_policy(&self, org_id: &str) -> Result<TokenPolicy, StoreError> {
        let rows = token_policy::Entity::find()
            .filter(token_policy::Column::OrgId.eq(org_id))
            .all(self.connection())
            .await
            .map_err(classify)?;
        let kinds = rows
            .into_iter()
            .map(to_kind_policy)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TokenPolicy::from_kinds(kinds))
    }

    /// [`crate::domain::repository::TokenRepository::replace_token_policy`]:
    /// the kinds the policy leaves out are deleted, the others upserted (so
    /// two concurrent updates cannot clash on the primary key), and the
    /// event is written, in one transaction.
    pub(crate) async fn write_token_policy(
        &self,
        org_id: &str,
        policy: &TokenPolicy,
        audit: &AuditContext,
    ) -> Result<TokenPolicy, StoreError> {
        let rows = policy
            .kinds()
            .iter()
            .map(|entry| {
                Ok(token_policy::ActiveModel {
                    org_id: ActiveValue::Set(org_id.to_owned()),
                    kind: ActiveValue::Set(entry.kind.as_str().to_owned()),
                    max_lifetime_nanos: ActiveValue::Set(to_nanos(entry.max_lifetime)?),
                    default_lifetime_nanos: ActiveValue::Set(to_nanos(entry.default_lifetime)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let kept: Vec<&str> = policy.kinds().iter().map(|e| e.kind.as_str()).collect();

        let txn = self.begin_write().await?;
        token_policy::Entity::delete_many()
            .filter(token_policy::Column::OrgId.eq(org_id))
            .filter(token_policy::Column::Kind.is_not_in(kept))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if !rows.is_empty() {
            token_policy::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([token_policy::Column::OrgId, token_policy::Column::Kind])
                        .update_columns([
                            token_policy::Column::MaxLifetimeNanos,
                            token_policy::Column::DefaultLifetimeNanos,
                        ])
                        .to_owned(),
                )
                .exec(&txn)
                .await
                .map_err(classify)?;
        }
        // The event concerns no token: nil UUID, numeric id 0, no kind.
        audit_event::ActiveModel {
            id: ActiveValue::NotSet,
            event_type: ActiveValue::Set(AuditEventType::TokenPolicyUpdated.as_str().to_owned()),
            org_id: ActiveValue::Set(org_id.to_owned()),
            actor: ActiveValue::Set(audit.actor.clone()),
            token_id: ActiveValue::Set(Uuid::nil().to_string()),
            token_numeric_id: ActiveValue::Set(0),
            token_kind: ActiveValue::Set(String::new()),
            request_id: ActiveValue::Set(audit.request_id.clone()),
            occurred_at: ActiveValue::Set(audit.now),
            reason: ActiveValue::Set(None),
            replaced_by: ActiveValue::Set(None),
        }
        .insert(&txn)
        .await
        .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(policy.clone())
    }
}
