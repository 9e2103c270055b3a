//! The validation table of docs/reference.md as pure functions. Each check
//! appends one [`FieldViolation`] per bad field, so a request with several bad
//! fields learns about all of them at once, and nothing is written.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::error::FieldViolation;
use crate::domain::kind::TokenKind;

/// A `kind` field as received: the core decides what is acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindInput {
    /// `TOKEN_KIND_UNSPECIFIED` (0).
    Unspecified,
    /// One of the four kinds.
    Known(TokenKind),
    /// A number that is no kind at all.
    Unknown(i32),
}

/// A timestamp field as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampInput {
    /// A representable instant.
    Valid(DateTime<Utc>),
    /// Seconds or nanos out of range.
    OutOfRange,
}

/// Most violations reported for one request. Each appears three times in
/// the details (Problem.errors, the legacy map, BadRequest), and the details
/// ride in HTTP/2 trailers that clients cap at 16 KiB; the rest are counted
/// in one final entry.
pub const MAX_REPORTED_VIOLATIONS: usize = 20;

/// Collects violations across the fields of one request.
#[derive(Debug, Default)]
pub struct Violations {
    reported: Vec<FieldViolation>,
    omitted: usize,
}

impl Violations {
    /// Records one bad field.
    pub fn push(&mut self, location: &str, message: &str, value: &str) {
        if self.reported.len() < MAX_REPORTED_VIOLATIONS {
            self.reported
                .push(FieldViolation::new(location, message, value));
        } else {
            self.omitted += 1;
        }
    }

    /// The violations, or `Ok(())` if there are none.
    pub fn into_result(mut self) -> Result<(), Vec<FieldViolation>> {
        if self.reported.is_empty() {
            return Ok(());
        }
        if self.omitted > 0 {
            self.reported.push(FieldViolation::new(
                "request",
                format!("{} more invalid field(s) not listed", self.omitted),
                "",
            ));
        }
        Err(self.reported)
    }
}

/// Longest display name, key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest revoke reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most scopes on one token.
pub const MAX_SCOPES: usize = 50;
/// Longest scope, in characters.
pub const MAX_SCOPE_CHARS: usize = 64;
/// Largest page.
pub const MAX_PAGE_SIZE: i32 = 1000;
/// Page size used when the request says 0.
pub const DEFAULT_PAGE_SIZE: u64 = 100;

/// `service_account_slug`, `token_slug`, a service-account token's `name`:
/// 1–63 of `a-z 0-9 -`, no leading or trailing `-`.
pub fn check_slug(violations: &mut Violations, location: &str, value: &str) {
    let well_formed = (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !well_formed {
        violations.push(
            location,
            "must be 1–63 characters of a-z, 0-9 and '-', not starting or ending with '-'",
            value,
        );
    }
}

/// `workspace_id`: `^g-[0-9a-f]{10}$`.
pub fn check_workspace_id(violations: &mut Violations, location: &str, value: &str) {
    let well_formed = value.len() == 12
        && value.starts_with("g-")
        && value[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        violations.push(
            location,
            "must be 'g-' followed by 10 lowercase hexadecimal digits",
            value,
        );
    }
}

/// `key_name`, `name`: 1–100 characters, no control characters.
pub fn check_name(violations: &mut Violations, location: &str, value: &str) {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || value.chars().any(char::is_control) {
        violations.push(
            location,
            "must be 1–100 characters with no control characters",
            value,
        );
    }
}

/// `reason`: optional, at most 500 characters, no control characters but
/// newline. Returns the reason to store (`None` when empty).
pub fn check_reason(violations: &mut Violations, value: &str) -> Option<String> {
    if value.chars().count() > MAX_REASON_CHARS
        || value.chars().any(|c| c.is_control() && c != '\n')
    {
        violations.push(
            "reason",
            "must be at most 500 characters with no control characters other than newline",
            value,
        );
    }
    (!value.is_empty()).then(|| value.to_owned())
}

/// `scopes`: at most 50, each 1–64 of `a-z 0-9 _ : . -`.
pub fn check_scopes(violations: &mut Violations, scopes: &[String]) {
    if scopes.len() > MAX_SCOPES {
        violations.push(
            "scopes",
            "must hold at most 50 scopes",
            &scopes.len().to_string(),
        );
        // Do not go on to report up to thousands of entries one by one.
        return;
    }
    for (index, scope) in scopes.iter().enumerate() {
        let well_formed = (1..=MAX_SCOPE_CHARS).contains(&scope.len())
            && scope.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b':' | b'.' | b'-')
            });
        if !well_formed {
            violations.push(
                &format!("scopes[{index}]"),
                "must be 1–64 characters of a-z, 0-9, '_', ':', '.' and '-'",
                scope,
            );
        }
    }
}

/// `expire_time`: optional, in the future.
pub fn check_expire_time(
    violations: &mut Violations,
    value: Option<TimestampInput>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match value {
        None => None,
        Some(TimestampInput::OutOfRange) => {
            violations.push("expire_time", "is not a valid timestamp", "");
            None
        }
        Some(TimestampInput::Valid(at)) if at <= now => {
            violations.push("expire_time", "must be in the future", &at.to_rfc3339());
            None
        }
        Some(TimestampInput::Valid(at)) => Some(at),
    }
}

/// `id`: ≥ 1.
pub fn check_id(violations: &mut Violations, value: i64) {
    if value < 1 {
        violations.push("id", "must be at least 1", &value.to_string());
    }
}

/// `token_id`: a UUID in its canonical hyphenated form.
pub fn check_token_id(violations: &mut Violations, value: &str) -> Option<Uuid> {
    match Uuid::try_parse(value) {
        Ok(uuid) if value.len() == 36 => Some(uuid),
        _ => {
            violations.push(
                "token_id",
                "must be a UUID such as 0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e",
                value,
            );
            None
        }
    }
}

/// `page_size`: 0–1000, 0 meaning the default. Returns the effective size.
pub fn check_page_size(violations: &mut Violations, value: i32) -> u64 {
    match u64::try_from(value) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) if value <= MAX_PAGE_SIZE => size,
        _ => {
            violations.push(
                "page_size",
                "must be between 0 and 1000",
                &value.to_string(),
            );
            DEFAULT_PAGE_SIZE
        }
    }
}

/// `kind` where one of the four kinds is required.
pub fn check_required_kind(violations: &mut Violations, kind: KindInput) -> Option<TokenKind> {
    match kind {
        KindInput::Known(kind) => Some(kind),
        KindInput::Unspecified => {
            violations.push(
                "kind",
                "must be one of the four token kinds",
                "TOKEN_KIND_UNSPECIFIED",
            );
            None
        }
        KindInput::Unknown(number) => {
            violations.push(
                "kind",
                "must be one of the four token kinds",
                &number.to_string(),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations_of(check: impl FnOnce(&mut Violations)) -> usize {
        let mut violations = Violations::default();
        check(&mut violations);
        violations.into_result().err().map_or(0, |v| v.len())
    }

    #[test]
    fn slugs() {
        for good in ["a", "ci-deploy", "a1", &"a".repeat(63)] {
            assert_eq!(violations_of(|v| check_slug(v, "s", good)), 0, "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", &"a".repeat(64), "é"] {
            assert_eq!(violations_of(|v| check_slug(v, "s", bad)), 1, "{bad}");
        }
    }

    #[test]
    fn workspace_ids() {
        assert_eq!(
            violations_of(|v| check_workspace_id(v, "w", "g-0123456789")),
            0
        );
        for bad in [
            "",
            "g-012345678",
            "g-0123456789a",
            "g-ABCDEF0123",
            "x-0123456789",
            "g-012345678g",
        ] {
            assert_eq!(
                violations_of(|v| check_workspace_id(v, "w", bad)),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn names_reasons_scopes() {
        assert_eq!(violations_of(|v| check_name(v, "n", &"é".repeat(100))), 0);
        assert_eq!(violations_of(|v| check_name(v, "n", &"é".repeat(101))), 1);
        assert_eq!(violations_of(|v| check_name(v, "n", "a\tb")), 1);
        assert_eq!(
            violations_of(|v| {
                check_reason(v, "line\nline");
            }),
            0
        );
        assert_eq!(
            violations_of(|v| {
                check_reason(v, "bell\u{7}");
            }),
            1
        );
        assert_eq!(
            violations_of(|v| {
                check_reason(v, &"r".repeat(501));
            }),
            1
        );
        let scopes = vec!["read:tokens".to_owned(), "BAD".to_owned(), String::new()];
        assert_eq!(violations_of(|v| check_scopes(v, &scopes)), 2);
        let many = vec!["a".to_owned(); 51];
        assert_eq!(violations_of(|v| check_scopes(v, &many)), 1);
    }
}
