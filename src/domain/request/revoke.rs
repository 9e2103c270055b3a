//! The four revoke RPCs' request.

use crate::domain::error::InvalidFields;
use crate::domain::token::RevokeTarget;
use crate::domain::validation::{self, Violations};

/// The four revoke RPCs' fields as received.
#[derive(Clone, Debug)]
pub enum RevokeInput {
    /// RevokeScrapeToken.
    Scrape {
        /// `id`.
        id: i64,
        /// `reason`.
        reason: String,
    },
    /// RevokePersonalAccessToken.
    PersonalAccess {
        /// `token_id`.
        token_id: String,
        /// `reason`.
        reason: String,
    },
    /// RevokeServiceAccountToken.
    ServiceAccount {
        /// `service_account_slug`.
        service_account_slug: String,
        /// `token_slug`.
        token_slug: String,
        /// `reason`.
        reason: String,
    },
    /// DeleteWorkspaceApiKey.
    WorkspaceApiKey {
        /// `workspace_id`.
        workspace_id: String,
        /// `key_name`.
        key_name: String,
        /// `reason`.
        reason: String,
    },
}

/// A valid revoke request of any of the four revoke RPCs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRevoke {
    target: RevokeTarget,
    reason: Option<String>,
}

impl ValidRevoke {
    /// The token the request names (a personal access token of any owner).
    pub fn target(&self) -> &RevokeTarget {
        &self.target
    }

    /// The reason to store, `None` when empty.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The target and the reason.
    pub fn into_parts(self) -> (RevokeTarget, Option<String>) {
        (self.target, self.reason)
    }
}

/// The revoke RPCs: each names its token by its own fields, checked by the
/// rule of that field; `reason` is optional free text.
pub fn parse_revoke(input: RevokeInput) -> Result<ValidRevoke, InvalidFields> {
    let mut violations = Violations::default();
    let (target, reason) = match input {
        RevokeInput::Scrape { id, reason } => {
            validation::check_id(&mut violations, id);
            (Ok(RevokeTarget::Scrape { id }), reason)
        }
        RevokeInput::PersonalAccess { token_id, reason } => {
            let target = validation::check_token_id(&mut violations, &token_id).map(|token_id| {
                RevokeTarget::PersonalAccess {
                    token_id,
                    owner_user_id: None,
                }
            });
            (target, reason)
        }
        RevokeInput::ServiceAccount {
            service_account_slug,
            token_slug,
            reason,
        } => {
            validation::check_slug(
                &mut violations,
                "service_account_slug",
                &service_account_slug,
            );
            validation::check_slug(&mut violations, "token_slug", &token_slug);
            let target = RevokeTarget::ServiceAccount {
                service_account_slug,
                token_slug,
            };
            (Ok(target), reason)
        }
        RevokeInput::WorkspaceApiKey {
            workspace_id,
            key_name,
            reason,
        } => {
            validation::check_workspace_id(&mut violations, "workspace_id", &workspace_id);
            validation::check_name(&mut violations, "key_name", &key_name);
            let target = RevokeTarget::WorkspaceApiKey {
                workspace_id,
                key_name,
            };
            (Ok(target), reason)
        }
    };
    let reason = validation::check_reason(&mut violations, &reason);
    let target = violations.finish(target)?;
    Ok(ValidRevoke { target, reason })
}
