//! The `audit_events` table: append-only.

use sea_orm::entity::prelude::*;

/// One audit event row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// Increasing id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `AuditEventType::as_str`.
    pub event_type: String,
    /// Organisation.
    pub org_id: String,
    /// The caller's `sub`.
    pub actor: String,
    /// The token's UUID.
    pub token_id: String,
    /// The token's numeric id.
    pub token_numeric_id: i64,
    /// The token's kind; empty for an event about no token
    /// (`token_policy_updated`).
    pub token_kind: String,
    /// Request id.
    pub request_id: String,
    /// When.
    pub occurred_at: DateTimeUtc,
    /// Revoke reason.
    pub reason: Option<String>,
    /// In `token_rotated`: the successor's `token_id`.
    pub replaced_by: Option<String>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
