//! RevokeTokens' request: which active tokens of the caller's organisation
//! to revoke in bulk.

use chrono::{DateTime, Utc};

use super::non_empty;
use super::read::check_kind_filters;
use crate::domain::error::InvalidFields;
use crate::domain::kind::TokenKind;
use crate::domain::token::{StateFilter, TokenFilter};
use crate::domain::validation::{self, KindInput, Violations};

/// Most tokens one RevokeTokens call revokes (or, with `dry_run`, lists).
pub const MAX_REVOKED_PER_CALL: u64 = 1000;

/// The field named when a RevokeTokens request gives no selector.
pub const MISSING_SELECTOR_FIELD: &str = "kind";

/// RevokeTokens' fields as received.
#[derive(Clone, Debug)]
pub struct RevokeTokensInput {
    /// `kind`.
    pub kind: KindInput,
    /// `owner_user_id`.
    pub owner_user_id: String,
    /// `service_account_slug`.
    pub service_account_slug: String,
    /// `workspace_id`.
    pub workspace_id: String,
    /// `reason`.
    pub reason: String,
    /// `dry_run`.
    pub dry_run: bool,
}

/// What a RevokeTokens request selects: at least one is set, and a token
/// must match every one that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeSelectors {
    kind: Option<TokenKind>,
    owner_user_id: Option<String>,
    service_account_slug: Option<String>,
    workspace_id: Option<String>,
}

impl RevokeSelectors {
    /// The active tokens (not revoked, not expired at `now`) the selectors
    /// match, as a ListTokens filter.
    pub fn active_at(&self, now: DateTime<Utc>) -> TokenFilter {
        TokenFilter {
            kind: self.kind,
            service_account_slug: self.service_account_slug.clone(),
            workspace_id: self.workspace_id.clone(),
            state: StateFilter::Active,
            at: now,
            owner_user_id: self.owner_user_id.clone(),
            ..TokenFilter::default()
        }
    }
}

/// A valid RevokeTokens request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRevokeTokens {
    selectors: RevokeSelectors,
    reason: Option<String>,
    dry_run: bool,
}

impl ValidRevokeTokens {
    /// What to revoke.
    pub fn selectors(&self) -> &RevokeSelectors {
        &self.selectors
    }

    /// The reason every revoked token gets, `None` when empty.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Count and list only.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }
}

/// RevokeTokens: the selectors follow ListTokens' filter rules (a slug, a
/// workspace id, a `sub`; `service_account_slug` only with the
/// service-account kind or none, `workspace_id` only with the workspace
/// kind or none), and at least one must be given: with none, the violation
/// names [`MISSING_SELECTOR_FIELD`]. `reason` is optional free text.
pub fn parse_revoke_tokens(input: RevokeTokensInput) -> Result<ValidRevokeTokens, InvalidFields> {
    let mut violations = Violations::default();
    let kind = validation::check_optional_kind(&mut violations, input.kind);
    if !input.owner_user_id.is_empty() {
        validation::check_subject(&mut violations, "owner_user_id", &input.owner_user_id);
    }
    check_kind_filters(
        &mut violations,
        kind,
        &input.service_account_slug,
        &input.workspace_id,
    );
    let no_selector = input.kind == KindInput::Unspecified
        && input.owner_user_id.is_empty()
        && input.service_account_slug.is_empty()
        && input.workspace_id.is_empty();
    if no_selector {
        violations.push(
            MISSING_SELECTOR_FIELD,
            "give at least one selector: kind, owner_user_id, service_account_slug or workspace_id",
            "TOKEN_KIND_UNSPECIFIED",
        );
    }
    let reason = validation::check_reason(&mut violations, &input.reason);
    violations.into_result()?;
    Ok(ValidRevokeTokens {
        selectors: RevokeSelectors {
            kind,
            owner_user_id: non_empty(input.owner_user_id),
            service_account_slug: non_empty(input.service_account_slug),
            workspace_id: non_empty(input.workspace_id),
        },
        reason,
        dry_run: input.dry_run,
    })
}
