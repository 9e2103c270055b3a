//! UpdateTokenPolicy's request.

use crate::domain::error::InvalidFields;
use crate::domain::kind::TokenKind;
use crate::domain::policy::{KindPolicy, MAX_POLICY_LIFETIME, MIN_POLICY_LIFETIME, TokenPolicy};
use crate::domain::validation::{self, DurationInput, KindInput, Violations, describe_duration};

/// One `KindPolicy` as received.
#[derive(Clone, Debug)]
pub struct KindPolicyInput {
    /// `kind`.
    pub kind: KindInput,
    /// `max_lifetime`; `None` when unset.
    pub max_lifetime: Option<DurationInput>,
    /// `default_lifetime`; `None` when unset.
    pub default_lifetime: Option<DurationInput>,
}

/// UpdateTokenPolicy's `policy` as received (absent: the empty policy).
#[derive(Clone, Debug, Default)]
pub struct TokenPolicyInput {
    /// `policy.kinds`.
    pub kinds: Vec<KindPolicyInput>,
}

const LIFETIME_LIMITS: &str = "3600s (1 hour) and 315619200s (3653 days, 10 years)";

/// UpdateTokenPolicy: each entry names one of the four kinds, no kind
/// twice; each lifetime, when set, lies within 1 hour – 10 years; a
/// default is at most the maximum. Locations read
/// `policy.kinds[i].field`.
pub fn parse_token_policy(input: TokenPolicyInput) -> Result<TokenPolicy, InvalidFields> {
    let mut violations = Violations::default();
    let mut seen: Vec<TokenKind> = Vec::new();
    let mut kinds = Vec::with_capacity(input.kinds.len());
    for (i, entry) in input.kinds.into_iter().enumerate() {
        let at = |field: &str| format!("policy.kinds[{i}].{field}");
        let kind = match entry.kind {
            KindInput::Known(kind) if seen.contains(&kind) => {
                violations.push(&at("kind"), "appears more than once", kind.as_str());
                None
            }
            KindInput::Known(kind) => {
                seen.push(kind);
                Some(kind)
            }
            KindInput::Unspecified => {
                violations.push(
                    &at("kind"),
                    "must be one of the four token kinds",
                    "TOKEN_KIND_UNSPECIFIED",
                );
                None
            }
            KindInput::Unknown(number) => {
                violations.push(
                    &at("kind"),
                    "must be one of the four token kinds",
                    &number.to_string(),
                );
                None
            }
        };
        let lifetime = |violations: &mut Violations, field: &str, value: Option<DurationInput>| {
            value.and_then(|value| {
                validation::check_duration(
                    violations,
                    &at(field),
                    value,
                    MIN_POLICY_LIFETIME,
                    MAX_POLICY_LIFETIME,
                    LIFETIME_LIMITS,
                )
            })
        };
        let max_given = entry.max_lifetime.is_some();
        let default_given = entry.default_lifetime.is_some();
        let max_lifetime = lifetime(&mut violations, "max_lifetime", entry.max_lifetime);
        let default_lifetime =
            lifetime(&mut violations, "default_lifetime", entry.default_lifetime);
        if let (Some(default), Some(max)) = (default_lifetime, max_lifetime)
            && default > max
        {
            violations.push(
                &at("default_lifetime"),
                &format!("must be at most max_lifetime ({})", describe_duration(max)),
                &describe_duration(default),
            );
        }
        let lifetimes_valid =
            max_given == max_lifetime.is_some() && default_given == default_lifetime.is_some();
        if let Some(kind) = kind
            && lifetimes_valid
        {
            kinds.push(KindPolicy {
                kind,
                max_lifetime,
                default_lifetime,
            });
        }
    }
    violations.into_result()?;
    Ok(TokenPolicy::from_kinds(kinds))
}
