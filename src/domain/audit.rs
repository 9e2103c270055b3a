//! Audit events: one per create, per effective revoke, per rotation and per
//! policy update, written in the same transaction as the change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::kind::TokenKind;

/// The audit event types of docs/reference.md ("Semantics").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditEventType {
    /// A scrape token was created.
    ScrapeTokenCreated,
    /// A scrape token was revoked.
    ScrapeTokenRevoked,
    /// A personal access token was created.
    PersonalAccessTokenCreated,
    /// A personal access token was revoked.
    PersonalAccessTokenRevoked,
    /// A service-account token was created.
    ServiceAccountTokenCreated,
    /// A service-account token was revoked.
    ServiceAccountTokenRevoked,
    /// A workspace API key was created.
    WorkspaceApiKeyCreated,
    /// A workspace API key was deleted (revoked).
    WorkspaceApiKeyDeleted,
    /// A token was rotated: the event is about the old token, its successor
    /// is in `replaced_by`.
    TokenRotated,
    /// The organisation's token policy was replaced. It concerns no token:
    /// `token_id` is the nil UUID, `token_numeric_id` 0, no kind.
    TokenPolicyUpdated,
    /// A revoked token's secret was presented (AuthenticateToken or the
    /// metrics endpoint); written at most once a minute per token.
    RevokedTokenUsed,
}

impl AuditEventType {
    /// Every event type.
    pub const ALL: [AuditEventType; 11] = [
        AuditEventType::ScrapeTokenCreated,
        AuditEventType::ScrapeTokenRevoked,
        AuditEventType::PersonalAccessTokenCreated,
        AuditEventType::PersonalAccessTokenRevoked,
        AuditEventType::ServiceAccountTokenCreated,
        AuditEventType::ServiceAccountTokenRevoked,
        AuditEventType::WorkspaceApiKeyCreated,
        AuditEventType::WorkspaceApiKeyDeleted,
        AuditEventType::TokenRotated,
        AuditEventType::TokenPolicyUpdated,
        AuditEventType::RevokedTokenUsed,
    ];

    /// The stable name clients filter by and the database stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditEventType::ScrapeTokenCreated => "scrape_token_created",
            AuditEventType::ScrapeTokenRevoked => "scrape_token_revoked",
            AuditEventType::PersonalAccessTokenCreated => "personal_access_token_created",
            AuditEventType::PersonalAccessTokenRevoked => "personal_access_token_revoked",
            AuditEventType::ServiceAccountTokenCreated => "service_account_token_created",
            AuditEventType::ServiceAccountTokenRevoked => "service_account_token_revoked",
            AuditEventType::WorkspaceApiKeyCreated => "workspace_api_key_created",
            AuditEventType::WorkspaceApiKeyDeleted => "workspace_api_key_deleted",
            AuditEventType::TokenRotated => "token_rotated",
            AuditEventType::TokenPolicyUpdated => "token_policy_updated",
            AuditEventType::RevokedTokenUsed => "revoked_token_used",
        }
    }

    /// Parses [`AuditEventType::as_str`] back.
    pub fn parse(value: &str) -> Option<AuditEventType> {
        AuditEventType::ALL
            .into_iter()
            .find(|event| event.as_str() == value)
    }
}

/// What the caller's request contributes to an audit event.
#[derive(Clone, Debug)]
pub struct AuditContext {
    /// The JWT `sub` of the caller.
    pub actor: String,
    /// The request id of the call.
    pub request_id: String,
    /// When the change happens.
    pub now: DateTime<Utc>,
}

/// An audit event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// Increasing numeric id.
    pub id: i64,
    /// What happened.
    pub event_type: AuditEventType,
    /// The organisation of the token.
    pub org_id: String,
    /// The JWT `sub` of the caller.
    pub actor: String,
    /// The UUID of the token concerned (nil for a policy update).
    pub token_id: Uuid,
    /// The numeric id of the token concerned (0 for a policy update).
    pub token_numeric_id: i64,
    /// The family of the token concerned (none for a policy update).
    pub token_kind: Option<TokenKind>,
    /// The request id of the call that made the change.
    pub request_id: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// For a revoke or a rotation: the reason given.
    pub reason: Option<String>,
    /// For a rotation: the successor's `token_id`.
    pub replaced_by: Option<Uuid>,
}
