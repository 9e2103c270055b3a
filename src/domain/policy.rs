//! Token policies: per organisation and kind, the longest lifetime a new
//! token may get and the lifetime it gets when none is asked for. CreateToken
//! and RotateToken apply them; tokens that exist are never changed.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::audit::AuditContext;
use crate::domain::audit_log::log_policy_update;
use crate::domain::caller::{Caller, Permission, Role};
use crate::domain::error::{FieldViolation, InvalidFields, ServiceError};
use crate::domain::kind::TokenKind;
use crate::domain::lifecycle::TokenLifecycle;
use crate::domain::repository::TokenRepository;
use crate::domain::request::{self, TokenPolicyInput};
use crate::domain::token::Token;
use crate::domain::validation::describe_duration;

/// Shortest lifetime a policy may set.
pub const MIN_POLICY_LIFETIME: TimeDelta = TimeDelta::hours(1);

/// Longest lifetime a policy may set: ten calendar years (3653 days, the
/// most that ten years can hold with their leap days).
pub const MAX_POLICY_LIFETIME: TimeDelta = TimeDelta::days(3653);

/// One kind's limits. Parsing guarantees both lifetimes lie within
/// [`MIN_POLICY_LIFETIME`]..=[`MAX_POLICY_LIFETIME`] and that
/// `default_lifetime <= max_lifetime` when both are set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindPolicy {
    /// The kind it applies to.
    pub kind: TokenKind,
    /// Longest lifetime of a new token, if limited.
    pub max_lifetime: Option<TimeDelta>,
    /// Lifetime of a new token created without `expire_time`, if any.
    pub default_lifetime: Option<TimeDelta>,
}

/// An organisation's policy: at most one entry per kind, in kind order; a
/// kind without an entry has no limits. The empty policy limits nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenPolicy {
    kinds: Vec<KindPolicy>,
}

impl TokenPolicy {
    /// A policy from entries whose kinds are distinct (the request parser
    /// and the store guarantee it); sorted by kind.
    pub fn from_kinds(mut kinds: Vec<KindPolicy>) -> TokenPolicy {
        kinds.sort_by_key(|entry| TokenKind::ALL.iter().position(|k| *k == entry.kind));
        kinds.dedup_by_key(|entry| entry.kind);
        TokenPolicy { kinds }
    }

    /// The entries, in kind order.
    pub fn kinds(&self) -> &[KindPolicy] {
        &self.kinds
    }

    /// The entry for `kind`, if the policy has one.
    pub fn for_kind(&self, kind: TokenKind) -> Option<&KindPolicy> {
        self.kinds.iter().find(|entry| entry.kind == kind)
    }

    /// The expiry of a token CreateToken makes at `now` with the requested
    /// `expire_time` (already checked to be in the future): the request's
    /// if within `max_lifetime`, else a violation on `expire_time` naming
    /// the limit. Without one: `now + default_lifetime`; with no default
    /// but a maximum, `now + max_lifetime` (a token that never expires
    /// would break the maximum); with neither, never.
    pub fn create_expiry(
        &self,
        kind: TokenKind,
        requested: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, InvalidFields> {
        let entry = self.for_kind(kind);
        let max = entry.and_then(|e| e.max_lifetime);
        match requested {
            Some(at) => match max {
                Some(max) if at > after(now, max) => Err(InvalidFields::one(FieldViolation::new(
                    "expire_time",
                    format!(
                        "must be at most max_lifetime {} from now ({}), the organisation's token policy for {}",
                        describe_duration(max),
                        after(now, max).to_rfc3339(),
                        kind.as_str()
                    ),
                    &at.to_rfc3339(),
                ))),
                Some(_) | None => Ok(Some(at)),
            },
            None => Ok(entry
                .and_then(|e| e.default_lifetime.or(e.max_lifetime))
                .map(|lifetime| after(now, lifetime))),
        }
    }

    /// The expiry of the token that replaces `old` at `now`: `now +
    /// default_lifetime` when the kind has a default; else the old token's
    /// lifetime (its expiry minus its creation) from `now`, a token that
    /// never expired being replaced by one that never expires; either way
    /// capped at `now + max_lifetime`.
    pub fn rotation_expiry(&self, old: &Token, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let entry = self.for_kind(old.kind);
        let lifetime = entry
            .and_then(|e| e.default_lifetime)
            .or_else(|| old.expires_at.map(|at| at - old.created_at));
        let max = entry.and_then(|e| e.max_lifetime);
        let lifetime = match (lifetime, max) {
            (Some(lifetime), Some(max)) => Some(lifetime.min(max)),
            (Some(lifetime), None) => Some(lifetime),
            (None, max) => max,
        };
        lifetime.map(|lifetime| after(now, lifetime))
    }
}

/// `now + span`, saturating (spans here are at most ten years).
fn after(now: DateTime<Utc>, span: TimeDelta) -> DateTime<Utc> {
    now.checked_add_signed(span)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl<R: TokenRepository> TokenLifecycle<R> {
    /// GetTokenPolicy: the caller's organisation's policy (empty if none
    /// was ever set). Needs `admin` or `org_app_keys_read`.
    pub async fn get_token_policy(&self, caller: &Caller) -> Result<TokenPolicy, ServiceError> {
        if !caller.has(Permission::OrgAppKeysRead) {
            return Err(ServiceError::PermissionDenied {
                permission: Permission::OrgAppKeysRead.as_str(),
            });
        }
        Ok(self.repository().token_policy(&caller.org_id).await?)
    }

    /// UpdateTokenPolicy: replaces the caller's organisation's whole policy
    /// and writes `token_policy_updated` in the same transaction. Needs
    /// `admin`.
    pub async fn update_token_policy(
        &self,
        caller: &Caller,
        audit: &AuditContext,
        input: TokenPolicyInput,
    ) -> Result<TokenPolicy, ServiceError> {
        let policy = request::parse_token_policy(input).map_err(ServiceError::InvalidArgument)?;
        if !caller.has_role(Role::Admin) {
            return Err(ServiceError::PermissionDenied {
                permission: Role::Admin.as_str(),
            });
        }
        let stored = self
            .repository()
            .replace_token_policy(&caller.org_id, &policy, audit)
            .await?;
        log_policy_update(&caller.org_id, audit);
        Ok(stored)
    }
}
