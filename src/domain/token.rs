//! Tokens as the core sees them, and the requests that make and name them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::kind::TokenKind;
use crate::domain::secret::TokenHash;

/// An issued token. It holds no secret and no hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// Numeric id, ≥ 1.
    pub id: i64,
    /// UUID.
    pub token_id: Uuid,
    /// Family.
    pub kind: TokenKind,
    /// Organisation.
    pub org_id: String,
    /// Display name, slug or key name.
    pub name: String,
    /// Owner of a personal access token; the creator otherwise.
    pub owner_user_id: String,
    /// Service account of a service-account token.
    pub service_account_slug: Option<String>,
    /// Workspace of a workspace API key.
    pub workspace_id: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful authentication (at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// The `sub` that created it.
    pub created_by: String,
    /// The `sub` that revoked it.
    pub revoked_by: Option<String>,
    /// The reason given at revocation.
    pub revoke_reason: Option<String>,
    /// When it was rotated (RotateToken), if it was.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The `token_id` of the token that replaced it, once rotated.
    pub replaced_by: Option<Uuid>,
    /// `revoked_at` is the end of a rotation's overlap, still to take
    /// effect at that instant, rather than a revoke that happened (which
    /// counts at once on every replica, whatever their clocks say).
    pub revoke_scheduled: bool,
}

/// The state of a token at an instant, for metrics and authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenState {
    /// Authenticates.
    Active,
    /// Past its expiry.
    Expired,
    /// Revoked (whatever its expiry).
    Revoked,
}

impl TokenState {
    /// Every state, in a stable order.
    pub const ALL: [TokenState; 3] = [TokenState::Active, TokenState::Expired, TokenState::Revoked];

    /// The metrics label.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl Token {
    /// Whether the token is revoked at `now`: a revoke happened, or the
    /// revocation a rotation scheduled at the end of its overlap is due
    /// (`revoked_at <= now`); it takes effect by itself, with no background
    /// task. The store's `revoked_condition` says the same in SQL.
    pub fn is_revoked_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at
            .is_some_and(|at| !self.revoke_scheduled || at <= now)
    }

    /// The token's state at `now`. Revocation wins over expiry.
    pub fn state_at(&self, now: DateTime<Utc>) -> TokenState {
        if self.is_revoked_at(now) {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

/// A validated token to insert.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// UUID, made by the core.
    pub token_id: Uuid,
    /// Family.
    pub kind: TokenKind,
    /// Organisation (the caller's).
    pub org_id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner_user_id: String,
    /// Service account, for that kind only.
    pub service_account_slug: Option<String>,
    /// Workspace, for that kind only.
    pub workspace_id: Option<String>,
    /// Scopes.
    pub scopes: Vec<String>,
    /// The secret's hash.
    pub secret_hash: TokenHash,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Creator.
    pub created_by: String,
}

/// Which tokens of the organisation a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Every token of the organisation.
    WholeOrg,
    /// Only the personal access tokens this user owns.
    OwnPersonalTokens {
        /// The owner (the caller's `sub`).
        owner_user_id: String,
    },
}

/// How a revoke RPC names its token. Each variant fixes the family, so a
/// revoke RPC can never revoke a token of another family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A scrape token by numeric id.
    Scrape {
        /// Numeric id.
        id: i64,
    },
    /// A personal access token by UUID, optionally only if the caller owns it.
    PersonalAccess {
        /// UUID.
        token_id: Uuid,
        /// When set, only this owner's token matches.
        owner_user_id: Option<String>,
    },
    /// A service-account token by slugs.
    ServiceAccount {
        /// Service account.
        service_account_slug: String,
        /// Token slug (its name).
        token_slug: String,
    },
    /// A workspace API key by workspace and name.
    WorkspaceApiKey {
        /// Workspace.
        workspace_id: String,
        /// Key name.
        key_name: String,
    },
}

impl RevokeTarget {
    /// The family the target names.
    pub fn kind(&self) -> TokenKind {
        match self {
            RevokeTarget::Scrape { .. } => TokenKind::Scrape,
            RevokeTarget::PersonalAccess { .. } => TokenKind::PersonalAccess,
            RevokeTarget::ServiceAccount { .. } => TokenKind::ServiceAccount,
            RevokeTarget::WorkspaceApiKey { .. } => TokenKind::WorkspaceApiKey,
        }
    }

    /// The resource name used in NOT_FOUND details.
    pub fn resource_name(&self) -> String {
        match self {
            RevokeTarget::Scrape { id } => format!("tokens/{id}"),
            RevokeTarget::PersonalAccess { token_id, .. } => {
                format!("personalAccessTokens/{token_id}")
            }
            RevokeTarget::ServiceAccount {
                service_account_slug,
                token_slug,
            } => format!("serviceAccounts/{service_account_slug}/tokens/{token_slug}"),
            RevokeTarget::WorkspaceApiKey {
                workspace_id,
                key_name,
            } => format!("workspaces/{workspace_id}/apiKeys/{key_name}"),
        }
    }
}

/// Who revokes, when and why.
#[derive(Clone, Debug)]
pub struct Revocation {
    /// The caller's `sub`.
    pub revoked_by: String,
    /// The reason, if given.
    pub reason: Option<String>,
}

/// What a revoke did.
#[derive(Clone, Debug, PartialEq)]
pub enum RevokeOutcome {
    /// This call revoked the token (and wrote its audit event).
    Revoked(Token),
    /// The token was already revoked; nothing changed.
    AlreadyRevoked(Token),
    /// No such token in the organisation.
    NotFound,
}

/// Which states ListTokens lists (`state`, or `show_revoked`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StateFilter {
    /// Active and expired: every token not revoked (the default).
    #[default]
    NotRevoked,
    /// Active only: not revoked and not expired at the filter's instant.
    Active,
    /// Expired only: not revoked, `expires_at` at or before the instant.
    Expired,
    /// Revoked only.
    Revoked,
    /// Every state.
    Any,
}

impl StateFilter {
    /// The stable name a page token binds.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::NotRevoked => "not_revoked",
            StateFilter::Active => "active",
            StateFilter::Expired => "expired",
            StateFilter::Revoked => "revoked",
            StateFilter::Any => "any",
        }
    }

    /// Whether a token in `state` is listed.
    pub fn admits(self, state: TokenState) -> bool {
        match self {
            StateFilter::NotRevoked => state != TokenState::Revoked,
            StateFilter::Active => state == TokenState::Active,
            StateFilter::Expired => state == TokenState::Expired,
            StateFilter::Revoked => state == TokenState::Revoked,
            StateFilter::Any => true,
        }
    }
}

/// Filters of ListTokens. Every filter set must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// Only this family.
    pub kind: Option<TokenKind>,
    /// Only this service account.
    pub service_account_slug: Option<String>,
    /// Only this workspace.
    pub workspace_id: Option<String>,
    /// Which states.
    pub state: StateFilter,
    /// The instant `state` is judged at (active or expired): the call's
    /// `now`. Not part of a page token's binding.
    pub at: DateTime<Utc>,
    /// Only tokens of this owner (`owner_user_id`).
    pub owner_user_id: Option<String>,
    /// Only tokens whose name starts with this (exactly, case-sensitive).
    pub name_prefix: Option<String>,
    /// Only tokens with an `expires_at` strictly before this.
    pub expire_before: Option<DateTime<Utc>>,
    /// Only tokens never used, or last used strictly before this.
    pub last_used_before: Option<DateTime<Utc>>,
}

impl TokenFilter {
    /// Whether `token` matches every filter (the in-memory repository's
    /// rule; the store's statement says the same in SQL).
    pub fn matches(&self, token: &Token) -> bool {
        self.kind.is_none_or(|kind| token.kind == kind)
            && self
                .service_account_slug
                .as_ref()
                .is_none_or(|slug| token.service_account_slug.as_ref() == Some(slug))
            && self
                .workspace_id
                .as_ref()
                .is_none_or(|workspace| token.workspace_id.as_ref() == Some(workspace))
            && self.state.admits(token.state_at(self.at))
            && self
                .owner_user_id
                .as_ref()
                .is_none_or(|owner| &token.owner_user_id == owner)
            && self
                .name_prefix
                .as_ref()
                .is_none_or(|prefix| token.name.starts_with(prefix.as_str()))
            && self
                .expire_before
                .is_none_or(|before| token.expires_at.is_some_and(|at| at < before))
            && self
                .last_used_before
                .is_none_or(|before| token.last_used_at.is_none_or(|at| at < before))
    }
}

/// How far ahead an active token counts as expiring soon (in the
/// organisation's metrics).
pub const EXPIRING_SOON: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Token counts of one organisation by kind and state, for metrics, all
/// read at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenCounts {
    /// (kind, state, count) for every combination.
    pub counts: Vec<(TokenKind, TokenState, u64)>,
    /// (kind, count) of active tokens expiring within [`EXPIRING_SOON`],
    /// for every kind.
    pub expiring_soon: Vec<(TokenKind, u64)>,
}
