//! CreateToken's request.

use chrono::{DateTime, Utc};

use super::non_empty;
use crate::domain::error::InvalidFields;
use crate::domain::kind::TokenKind;
use crate::domain::validation::{self, KindInput, TimestampInput, Violations};

/// CreateToken's fields as received.
#[derive(Clone, Debug)]
pub struct CreateTokenInput {
    /// `kind`.
    pub kind: KindInput,
    /// `name`.
    pub name: String,
    /// `service_account_slug`.
    pub service_account_slug: String,
    /// `workspace_id`.
    pub workspace_id: String,
    /// `scopes`.
    pub scopes: Vec<String>,
    /// `expire_time`.
    pub expire_time: Option<TimestampInput>,
}

/// A valid CreateToken request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidCreate {
    kind: TokenKind,
    name: String,
    service_account_slug: Option<String>,
    workspace_id: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
}

impl ValidCreate {
    /// The family to create.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The display name (a service-account token's slug).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service account, for service-account tokens only.
    pub fn service_account_slug(&self) -> Option<&str> {
        self.service_account_slug.as_deref()
    }

    /// The workspace, for workspace API keys only.
    pub fn workspace_id(&self) -> Option<&str> {
        self.workspace_id.as_deref()
    }

    /// The scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The expiry, in the future when set.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// How the request names the token, for ALREADY_EXISTS details.
    pub fn resource_name(&self) -> String {
        // Parsing made the slug (workspace) present exactly for its kind.
        let slug = self.service_account_slug.as_deref().unwrap_or_default();
        let workspace_id = self.workspace_id.as_deref().unwrap_or_default();
        match self.kind {
            TokenKind::ServiceAccount => format!("serviceAccounts/{slug}/tokens/{}", self.name),
            TokenKind::WorkspaceApiKey => {
                format!("workspaces/{workspace_id}/apiKeys/{}", self.name)
            }
            TokenKind::Scrape | TokenKind::PersonalAccess => format!("tokens/{}", self.name),
        }
    }

    /// The parts the lifecycle stores.
    pub fn into_parts(self) -> CreateParts {
        CreateParts {
            kind: self.kind,
            name: self.name,
            service_account_slug: self.service_account_slug,
            workspace_id: self.workspace_id,
            scopes: self.scopes,
            expires_at: self.expires_at,
        }
    }
}

/// A [`ValidCreate`] taken apart, to build the new token from.
#[derive(Clone, Debug)]
pub struct CreateParts {
    /// The family.
    pub kind: TokenKind,
    /// The display name.
    pub name: String,
    /// The service account (service-account tokens only).
    pub service_account_slug: Option<String>,
    /// The workspace (workspace API keys only).
    pub workspace_id: Option<String>,
    /// The scopes.
    pub scopes: Vec<String>,
    /// The expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// CreateToken: the kind decides which name rule applies and which of
/// `service_account_slug` and `workspace_id` is required (the other must be
/// empty); `expire_time` must be after `now`.
pub fn parse_create(
    input: CreateTokenInput,
    now: DateTime<Utc>,
) -> Result<ValidCreate, InvalidFields> {
    let mut violations = Violations::default();
    let kind = validation::check_required_kind(&mut violations, input.kind);
    match kind {
        Ok(TokenKind::ServiceAccount) => {
            validation::check_slug(&mut violations, "name", &input.name);
            validation::check_slug(
                &mut violations,
                "service_account_slug",
                &input.service_account_slug,
            );
        }
        Ok(TokenKind::WorkspaceApiKey) => {
            validation::check_name(&mut violations, "name", &input.name);
            validation::check_workspace_id(&mut violations, "workspace_id", &input.workspace_id);
        }
        Ok(TokenKind::Scrape | TokenKind::PersonalAccess) | Err(_) => {
            validation::check_name(&mut violations, "name", &input.name);
        }
    }
    if kind != Ok(TokenKind::ServiceAccount) && !input.service_account_slug.is_empty() {
        violations.push(
            "service_account_slug",
            "is only accepted for TOKEN_KIND_SERVICE_ACCOUNT",
            &input.service_account_slug,
        );
    }
    if kind != Ok(TokenKind::WorkspaceApiKey) && !input.workspace_id.is_empty() {
        violations.push(
            "workspace_id",
            "is only accepted for TOKEN_KIND_WORKSPACE_API_KEY",
            &input.workspace_id,
        );
    }
    validation::check_scopes(&mut violations, "scopes", &input.scopes);
    let expires_at = validation::check_expire_time(&mut violations, input.expire_time, now);
    let kind = violations.finish(kind)?;
    Ok(ValidCreate {
        kind,
        name: input.name,
        service_account_slug: non_empty(input.service_account_slug),
        workspace_id: non_empty(input.workspace_id),
        scopes: input.scopes,
        expires_at,
    })
}
