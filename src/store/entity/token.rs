//! The `tokens` table. Revocation is a soft delete: `revoked_at` is set and
//! the row stays. A rotated token's `revoked_at` may be the end of its
//! overlap (`revoke_scheduled`): it counts as revoked from that instant.

use sea_orm::entity::prelude::*;

/// One token row. `secret_hash` is the SHA-256 of the secret; the secret
/// itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    /// Numeric id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// UUID, as canonical text (portable across SQLite and PostgreSQL).
    #[sea_orm(unique)]
    pub token_id: String,
    /// `TokenKind::as_str`.
    pub kind: String,
    /// Organisation.
    pub org_id: String,
    /// Name.
    pub name: String,
    /// Owner.
    pub owner_user_id: String,
    /// Service account.
    pub service_account_slug: Option<String>,
    /// Workspace.
    pub workspace_id: Option<String>,
    /// Scopes, space-separated (scopes cannot contain spaces).
    pub scopes: String,
    /// SHA-256 of the secret.
    #[sea_orm(unique)]
    pub secret_hash: Vec<u8>,
    /// Creation time.
    pub created_at: DateTimeUtc,
    /// Expiry.
    pub expires_at: Option<DateTimeUtc>,
    /// Revocation time.
    pub revoked_at: Option<DateTimeUtc>,
    /// Last use (coarse).
    pub last_used_at: Option<DateTimeUtc>,
    /// Creator.
    pub created_by: String,
    /// Revoker.
    pub revoked_by: Option<String>,
    /// Revoke reason.
    pub revoke_reason: Option<String>,
    /// When the token was rotated.
    pub rotated_at: Option<DateTimeUtc>,
    /// The `token_id` of the token that replaced it.
    pub replaced_by: Option<String>,
    /// `revoked_at` is the end of a rotation's overlap (it takes effect at
    /// that instant), not a revoke that happened.
    pub revoke_scheduled: bool,
    /// When a use of this token after its revocation was last written as a
    /// `revoked_token_used` event.
    pub revoked_use_recorded_at: Option<DateTimeUtc>,
}

/// No relations are navigated.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
