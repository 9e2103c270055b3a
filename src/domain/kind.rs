//! The four token families and what differs between them.

use crate::domain::audit::AuditEventType;

/// A token family. Each has its own secret prefix, audit event types and
/// revoke RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A Prometheus scrape token.
    Scrape,
    /// A personal access token, owned by one user.
    PersonalAccess,
    /// A service-account token, named by a slug within its service account.
    ServiceAccount,
    /// A workspace API key, named within its workspace.
    WorkspaceApiKey,
}

impl TokenKind {
    /// Every kind, in a stable order (used for metrics and tests).
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Scrape,
        TokenKind::PersonalAccess,
        TokenKind::ServiceAccount,
        TokenKind::WorkspaceApiKey,
    ];

    /// The prefix of this family's secrets. Distinct per family so that secret
    /// scanners can tell what leaked, and so that a secret presented to the
    /// wrong family is caught before any database read.
    pub const fn secret_prefix(self) -> &'static str {
        match self {
            TokenKind::Scrape => "tkd_scrape_",
            TokenKind::PersonalAccess => "tkd_pat_",
            TokenKind::ServiceAccount => "tkd_sat_",
            TokenKind::WorkspaceApiKey => "tkd_wak_",
        }
    }

    /// The value stored in the database and used as a metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Scrape => "scrape",
            TokenKind::PersonalAccess => "personal_access",
            TokenKind::ServiceAccount => "service_account",
            TokenKind::WorkspaceApiKey => "workspace_api_key",
        }
    }

    /// Parses [`TokenKind::as_str`] back.
    pub fn from_db_str(value: &str) -> Option<TokenKind> {
        TokenKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }

    /// The audit event written when a token of this family is created.
    pub const fn created_event(self) -> AuditEventType {
        match self {
            TokenKind::Scrape => AuditEventType::ScrapeTokenCreated,
            TokenKind::PersonalAccess => AuditEventType::PersonalAccessTokenCreated,
            TokenKind::ServiceAccount => AuditEventType::ServiceAccountTokenCreated,
            TokenKind::WorkspaceApiKey => AuditEventType::WorkspaceApiKeyCreated,
        }
    }

    /// The audit event written when a token of this family is revoked.
    pub const fn revoked_event(self) -> AuditEventType {
        match self {
            TokenKind::Scrape => AuditEventType::ScrapeTokenRevoked,
            TokenKind::PersonalAccess => AuditEventType::PersonalAccessTokenRevoked,
            TokenKind::ServiceAccount => AuditEventType::ServiceAccountTokenRevoked,
            TokenKind::WorkspaceApiKey => AuditEventType::WorkspaceApiKeyDeleted,
        }
    }
}
