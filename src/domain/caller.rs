//! The authenticated caller, and the role and permission names of
//! docs/reference.md.

use std::collections::BTreeSet;

/// A role named in the permission table of docs/reference.md: a bundle of
/// permissions, carried in the JWT's `roles` claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every permission within the caller's organisation (but not the
    /// platform permissions `tokens_introspect` and `tokens_revoke_leaked`).
    Admin,
}

impl Role {
    /// The name used in JWT claims and in error details.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
        }
    }
}

/// A permission named in the permission table of docs/reference.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
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
    /// Revoke the token a leaked secret belongs to, in any organisation (a
    /// platform permission for the secret scanner and the incident desk;
    /// `admin` does not imply it, for the same reason as
    /// `tokens_introspect`).
    TokensRevokeLeaked,
}

impl Permission {
    /// The name used in JWT claims and in error details.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::UserAppKeys => "user_app_keys",
            Permission::OrgAppKeysRead => "org_app_keys_read",
            Permission::OrgAppKeysWrite => "org_app_keys_write",
            Permission::ServiceAccountTokensWrite => "service_account_tokens_write",
            Permission::WorkspaceApiKeysWrite => "workspace_api_keys_write",
            Permission::TokensIntrospect => "tokens_introspect",
            Permission::TokensRevokeLeaked => "tokens_revoke_leaked",
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
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(role.as_str())
    }

    /// Whether the caller has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role(Role::Admin)
    }

    /// Whether the caller holds `permission`. The `admin` role grants every
    /// organisation permission, but neither platform permission
    /// (`tokens_introspect`, `tokens_revoke_leaked`).
    pub fn has(&self, permission: Permission) -> bool {
        match permission {
            Permission::TokensIntrospect | Permission::TokensRevokeLeaked => {
                self.permissions.contains(permission.as_str())
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str], permissions: &[&str]) -> Caller {
        Caller {
            org_id: "org".to_owned(),
            subject: "alice".to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    const ORG_PERMISSIONS: [Permission; 5] = [
        Permission::UserAppKeys,
        Permission::OrgAppKeysRead,
        Permission::OrgAppKeysWrite,
        Permission::ServiceAccountTokensWrite,
        Permission::WorkspaceApiKeysWrite,
    ];

    #[test]
    fn the_admin_role_grants_every_organisation_permission_but_introspection() {
        let admin = caller(&["admin"], &[]);
        assert!(admin.has_role(Role::Admin) && admin.is_admin());
        for permission in ORG_PERMISSIONS {
            assert!(admin.has(permission), "{permission:?}");
        }
        assert!(!admin.has(Permission::TokensIntrospect));
        assert!(!admin.has(Permission::TokensRevokeLeaked));
    }

    #[test]
    fn an_admin_permission_is_not_the_admin_role() {
        // `admin` in `permissions` (or a permission named like the role)
        // grants nothing: roles come from the `roles` claim only.
        let impostor = caller(&[], &["admin"]);
        assert!(!impostor.has_role(Role::Admin));
        for permission in ORG_PERMISSIONS {
            assert!(!impostor.has(permission), "{permission:?}");
        }
        let introspector = caller(&[], &["tokens_introspect"]);
        assert!(introspector.has(Permission::TokensIntrospect));
        assert!(!introspector.has(Permission::OrgAppKeysRead));
        assert!(!introspector.has(Permission::TokensRevokeLeaked));
        let incident_desk = caller(&[], &["tokens_revoke_leaked"]);
        assert!(incident_desk.has(Permission::TokensRevokeLeaked));
        assert!(!incident_desk.has(Permission::TokensIntrospect));
    }
}
