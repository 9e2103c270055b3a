//! Each RPC's request twice: as received (`…Input`, built by a transport
//! from its message) and as validated (`Valid…`). One `parse_…` function per
//! RPC turns the first into the second, reporting every bad field at once
//! (the field rules live in [`crate::domain::validation`]). A validated
//! request has private fields and no constructor but its parse function, so
//! the lifecycle cannot act on a request that skipped validation, and the
//! fuzz target exercises the very functions the server runs.

mod bulk_revoke;
mod create;
mod leaked;
mod policy;
mod presented;
mod read;
mod revoke;
mod rotate;
#[cfg(test)]
mod tests;

pub use bulk_revoke::{
    MAX_REVOKED_PER_CALL, MISSING_SELECTOR_FIELD, RevokeSelectors, RevokeTokensInput,
    ValidRevokeTokens, parse_revoke_tokens,
};
pub use create::{CreateParts, CreateTokenInput, ValidCreate, parse_create};
pub use leaked::{RevokeBySecretInput, ValidRevokeBySecret, parse_revoke_by_secret};
pub use policy::{KindPolicyInput, TokenPolicyInput, parse_token_policy};
pub use presented::{
    AcceptedFamilies, AuthenticateInput, RequiredScopes, parse_presented_secret,
    parse_required_scopes,
};
pub use read::{
    ListAuditEventsInput, ListTokensInput, StateInput, ValidAuditQuery, ValidGet, ValidList,
    parse_audit_query, parse_get, parse_list,
};
pub use revoke::{RevokeInput, ValidRevoke, parse_revoke};
pub use rotate::{MAX_OVERLAP, RotateInput, ValidRotate, parse_rotate};

/// An optional text field: `None` when empty.
fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}
