//! Writes in one round trip on PostgreSQL: the token change and its audit
//! event as ONE statement, a data-modifying CTE in autocommit, instead of
//! `BEGIN`, the change, the event, `COMMIT` (four round trips). One
//! statement is one transaction: both rows are written or neither, and a
//! unique violation aborts the whole statement, event included.
//!
//! SQLite keeps its `BEGIN IMMEDIATE` transactions (queries.rs): a round
//! trip there is a hop to a local thread, not a network exchange, and taking
//! the write lock up front is what queues its writers.

use sea_orm::sea_query::{Expr, Value};
use sea_orm::sea_query::{PostgresQueryBuilder, Values};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement};

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::repository::StoreError;
use crate::domain::token::{NewToken, Revocation, RevokeTarget, Token};
use crate::store::entity::token;
use crate::store::queries::{new_token_row, target_condition, to_token};
use crate::store::{SeaStore, classify};

/// `INSERT INTO audit_events … SELECT … FROM <source>`: the event of the
/// row the CTE `source` returned (none if it returned none). Its values are
/// bound after the `bound` parameters the statement already has.
fn audit_insert_from(
    source: &str,
    event_type: AuditEventType,
    audit: &AuditContext,
    reason: Option<String>,
    values: &mut Vec<Value>,
) -> String {
    let mut param = |value: Value| {
        values.push(value);
        format!("${}", values.len())
    };
    let event_type = param(event_type.as_str().into());
    let actor = param(audit.actor.clone().into());
    let request_id = param(audit.request_id.clone().into());
    let occurred_at = param(audit.now.into());
    let reason = param(reason.into());
    format!(
        "INSERT INTO audit_events \
         (event_type, org_id, actor, token_id, token_numeric_id, token_kind, request_id, occurred_at, reason) \
         SELECT {event_type}, org_id, {actor}, token_id, id, kind, {request_id}, {occurred_at}, {reason} \
         FROM {source}"
    )
}

/// `WITH changed AS (<change>), event AS (<audit insert>) SELECT * FROM changed`.
fn with_audit_event(
    (change, Values(mut values)): (String, Values),
    event_type: AuditEventType,
    audit: &AuditContext,
    reason: Option<String>,
) -> Statement {
    let event = audit_insert_from("changed", event_type, audit, reason, &mut values);
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("WITH changed AS ({change}), event AS ({event}) SELECT * FROM changed"),
        values,
    )
}

impl SeaStore {
    /// CreateToken on PostgreSQL: the row and its `*_created` event in one
    /// statement. A taken active name is `Conflict` (the unique index aborts
    /// the statement, so no event is written either).
    pub(super) async fn create_in_one_statement(
        &self,
        new: NewToken,
        audit: &AuditContext,
    ) -> Result<Token, StoreError> {
        let event_type = new.kind.created_event();
        let mut insert = token::Entity::insert(new_token_row(new)).into_query();
        insert.returning_all();
        let statement =
            with_audit_event(insert.build(PostgresQueryBuilder), event_type, audit, None);
        let row = token::Entity::find()
            .from_raw_sql(statement)
            .all(self.connection())
            .await
            .map_err(classify)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Other("the insert returned no row".into()))?;
        to_token(row)
    }

    /// A revoke on PostgreSQL: the update and its `*_revoked` event in one
    /// statement. `None` if no active token matched (already revoked, or
    /// none): the caller then reads what is there. `revoked_at IS NULL` in
    /// the update makes concurrent revokes race safely: PostgreSQL re-checks
    /// it on the locked row after the first writer commits, so exactly one
    /// statement updates the row and inserts the event.
    pub(super) async fn revoke_in_one_statement(
        &self,
        org_id: &str,
        target: &RevokeTarget,
        revocation: &Revocation,
        audit: &AuditContext,
    ) -> Result<Option<Token>, StoreError> {
        let mut update = token::Entity::update_many()
            .col_expr(token::Column::RevokedAt, Expr::value(audit.now))
            .col_expr(
                token::Column::RevokedBy,
                Expr::value(revocation.revoked_by.clone()),
            )
            .col_expr(
                token::Column::RevokeReason,
                Expr::value(revocation.reason.clone()),
            )
            .filter(target_condition(org_id, target))
            .filter(token::Column::RevokedAt.is_null())
            .into_query();
        update.returning_all();
        let statement = with_audit_event(
            update.build(PostgresQueryBuilder),
            target.kind().revoked_event(),
            audit,
            revocation.reason.clone(),
        );
        token::Entity::find()
            .from_raw_sql(statement)
            .all(self.connection())
            .await
            .map_err(classify)?
            .into_iter()
            .next()
            .map(to_token)
            .transpose()
    }
}
