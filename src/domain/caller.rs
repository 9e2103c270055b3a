//! The authenticated caller and the permission names of docs/reference.md.

use std::collections::BTreeSet;

/// A permission named in the permission table of docs/reference.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// The `admin` role: every permission within the caller's organisation.
    Admin,
    /// Create, see and revoke one's own personal access tokens.
    UserAppKeys,
    /// See every token of the organisation.
    OrgAppKeysRead,
    /// Revoke any personal access token of the organisation.
    OrgAppKeysWrite,
    /// Revoke service-account tokens.
    ServiceAccountTokensWrite,
    /// Delete workspace API keys.
    WorkspaceApiKeysWrite,
    /// Authenticate presented secrets of any organisation (a platform
    /// permission for internal services; `admin` does not imply it, since an
    /// organisation's admin must not reach into other organisations).
    TokensIntrospect,
}

impl Permission {
    /// The name used in JWT claims and in error details.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::UserAppKeys => "user_app_keys",
            Permission::OrgAppKeysRead => "org_app_keys_read",
            Permission::OrgAppKeysWrite => "org_app_keys_write",
            Permission::ServiceAccountTokensWrite => "service_account_tokens_write",
            Permission::WorkspaceApiKeysWrite => "workspace_api_keys_write",
            Permission::TokensIntrospect => "tokens_introspect",
        }
    }
}

/// Who is calling: made once per request from the verified JWT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The organisation (`org_id` claim); every read and write is confined to it.
    pub org_id: String,
    /// The caller (`sub` claim): a user id or a service name.
    pub subject: String,
    /// Roles (`roles` claim).
    pub roles: BTreeSet<String>,
    /// Permissions (`permissions` claim merged with the OAuth `scope` string).
    pub permissions: BTreeSet<String>,
}

impl Caller {
    /// Whether the caller has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.contains(Permission::Admin.as_str())
    }

    /// Whether the caller holds `permission`. The `admin` role grants every
    /// organisation permission, but not the platform permission
    /// `tokens_introspect`.
    pub fn has(&self, permission: Permission) -> bool {
        match permission {
            Permission::Admin => self.is_admin(),
            Permission::TokensIntrospect => self.permissions.contains(permission.as_str()),
            Permission::UserAppKeys
            | Permission::OrgAppKeysRead
            | Permission::OrgAppKeysWrite
            | Permission::ServiceAccountTokensWrite
            | Permission::WorkspaceApiKeysWrite => {
                self.is_admin() || self.permissions.contains(permission.as_str())
            }
        }
    }
}
