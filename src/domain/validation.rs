//! The validation table of docs/reference.md as pure functions. Each check
//! appends one [`FieldViolation`] per bad field, so a request with several bad
//! fields learns about all of them at once, and nothing is written.

use chrono::{DateTime, TimeDelta, Utc};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use uuid::Uuid;

use crate::domain::error::{FieldViolation, InvalidFields};
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

/// Most violations reported for one request; the rest are counted in one
/// final entry. Each appears three times in the details (Problem.errors, the
/// legacy map, BadRequest), and the details ride in HTTP/2 trailers: grpc-core
/// clients start refusing received metadata past a soft limit of 8 KiB (with
/// a probability that reaches 1 at 16 KiB), and 20 worst-case violations
/// made about 10 KiB. Ten keep the worst case below the soft limit.
pub const MAX_REPORTED_VIOLATIONS: usize = 10;

/// Collects violations across the fields of one request.
#[derive(Debug, Default)]
pub struct Violations {
    reported: Vec<FieldViolation>,
    omitted: usize,
}

/// Proof that a violation was recorded: only [`Violations::push`] makes
/// one. A check that cannot produce its value returns this instead, so that
/// [`Violations::finish`] refuses the request without having to trust that
/// a missing value came with a violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected(());

impl Violations {
    /// Records one bad field.
    pub fn push(&mut self, location: &str, message: &str, value: &str) -> Rejected {
        if self.reported.len() < MAX_REPORTED_VIOLATIONS {
            self.reported
                .push(FieldViolation::new(location, message, value));
        } else {
            self.omitted += 1;
        }
        Rejected(())
    }

    /// The violations, or `Ok(())` if there are none.
    pub fn into_result(self) -> Result<(), InvalidFields> {
        if self.reported.is_empty() {
            return Ok(());
        }
        Err(self.into_invalid_fields())
    }

    /// `value` if no field was bad, else every violation. A rejected value
    /// carries the proof that at least one violation was recorded.
    pub fn finish<T>(self, value: Result<T, Rejected>) -> Result<T, InvalidFields> {
        match value {
            Ok(value) => self.into_result().map(|()| value),
            Err(Rejected(())) => Err(self.into_invalid_fields()),
        }
    }

    fn into_invalid_fields(self) -> InvalidFields {
        InvalidFields {
            listed: self.reported,
            unlisted: self.omitted,
        }
    }
}

/// Whether `c` may not appear in any text field, nor in a caller's identity
/// (the JWT's `sub` and `org_id`): a control character
/// (general category Cc: C0, DEL, C1) or a format character (Cf: bidi
/// overrides and isolates such as U+202E, zero-width characters such as
/// U+200B and U+FEFF, the soft hyphen, tag characters). Such characters
/// are invisible or reorder what is displayed, so a name that contains them
/// can look like another name, and a log line can be made to lie.
///
/// The Cf table comes from `unicode-properties` (unicode-rs, already built
/// as part of the PostgreSQL driver), which follows each Unicode release;
/// a hand-kept list would silently age.
pub fn is_control_or_format(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// Earliest instant accepted in a timestamp field, exclusive: the Unix
/// epoch.
pub const MIN_TIMESTAMP: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// Seconds from the epoch to 10000-01-01T00:00:00Z.
const YEAR_10000_SECONDS: i64 = 253_402_300_800;

/// First instant not accepted in a timestamp field: 10000-01-01T00:00:00Z.
/// Timestamps are stored on SQLite as RFC 3339 text and compared as text;
/// within years 1970–9999 that order is the order of time, beyond it
/// (`+10000-…`) it is not.
pub fn max_timestamp_exclusive() -> DateTime<Utc> {
    DateTime::from_timestamp(YEAR_10000_SECONDS, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A timestamp field: strictly after 1970-01-01T00:00:00Z and strictly
/// before 10000-01-01T00:00:00Z. Returns the instant if it is in range.
pub fn check_timestamp(
    violations: &mut Violations,
    location: &str,
    value: TimestampInput,
) -> Option<DateTime<Utc>> {
    match value {
        TimestampInput::Valid(at) if at > MIN_TIMESTAMP && at < max_timestamp_exclusive() => {
            Some(at)
        }
        TimestampInput::Valid(at) => {
            violations.push(
                location,
                "must be after 1970-01-01T00:00:00Z and before 10000-01-01T00:00:00Z",
                &at.to_rfc3339(),
            );
            None
        }
        TimestampInput::OutOfRange => {
            violations.push(location, "is not a valid timestamp", "");
            None
        }
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

/// `key_name`, `name`: 1–100 characters, no control or format characters.
pub fn check_name(violations: &mut Violations, location: &str, value: &str) {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || value.chars().any(is_control_or_format) {
        violations.push(
            location,
            "must be 1–100 characters with no control or format characters",
            value,
        );
    }
}

/// Longest `owner_user_id` filter, in bytes: the longest JWT `sub` accepted.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// `owner_user_id` (a filter): what a JWT's `sub` may be, 1–256 bytes with
/// no control or format characters.
pub fn check_subject(violations: &mut Violations, location: &str, value: &str) {
    if value.is_empty()
        || value.len() > MAX_SUBJECT_BYTES
        || value.chars().any(is_control_or_format)
    {
        violations.push(
            location,
            "must be 1–256 bytes with no control or format characters",
            value,
        );
    }
}

/// `reason`: optional, at most 500 characters, no control or format
/// characters but newline. Returns the reason to store (`None` when empty).
pub fn check_reason(violations: &mut Violations, value: &str) -> Option<String> {
    if value.chars().count() > MAX_REASON_CHARS
        || value.chars().any(|c| c != '\n' && is_control_or_format(c))
    {
        violations.push(
            "reason",
            "must be at most 500 characters with no control or format characters other than newline",
            value,
        );
    }
    (!value.is_empty()).then(|| value.to_owned())
}

/// `scopes` (and `required_scopes`, named by `location`): at most 50, each
/// 1–64 of `a-z 0-9 _ : . -`.
pub fn check_scopes(violations: &mut Violations, location: &str, scopes: &[String]) {
    if scopes.len() > MAX_SCOPES {
        violations.push(
            location,
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
                &format!("{location}[{index}]"),
                "must be 1–64 characters of a-z, 0-9, '_', ':', '.' and '-'",
                scope,
            );
        }
    }
}

/// `expire_time`: optional, a timestamp in range (see [`check_timestamp`])
/// and in the future.
pub fn check_expire_time(
    violations: &mut Violations,
    value: Option<TimestampInput>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let at = check_timestamp(violations, "expire_time", value?)?;
    if at <= now {
        violations.push("expire_time", "must be in the future", &at.to_rfc3339());
        return None;
    }
    Some(at)
}

/// `id`: ≥ 1.
pub fn check_id(violations: &mut Violations, value: i64) {
    if value < 1 {
        violations.push("id", "must be at least 1", &value.to_string());
    }
}

/// `token_id`: a UUID in its canonical hyphenated form.
pub fn check_token_id(violations: &mut Violations, value: &str) -> Result<Uuid, Rejected> {
    match Uuid::try_parse(value) {
        Ok(uuid) if value.len() == 36 => Ok(uuid),
        _ => Err(violations.push(
            "token_id",
            "must be a UUID such as 0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e",
            value,
        )),
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
pub fn check_required_kind(
    violations: &mut Violations,
    kind: KindInput,
) -> Result<TokenKind, Rejected> {
    match kind {
        KindInput::Known(kind) => Ok(kind),
        KindInput::Unspecified => Err(violations.push(
            "kind",
            "must be one of the four token kinds",
            "TOKEN_KIND_UNSPECIFIED",
        )),
        KindInput::Unknown(number) => Err(violations.push(
            "kind",
            "must be one of the four token kinds",
            &number.to_string(),
        )),
    }
}

/// `kind` where unspecified means "any kind".
pub fn check_optional_kind(violations: &mut Violations, kind: KindInput) -> Option<TokenKind> {
    match kind {
        KindInput::Unspecified => None,
        KindInput::Known(kind) => Some(kind),
        KindInput::Unknown(number) => {
            violations.push(
                "kind",
                "must be a token kind or unspecified",
                &number.to_string(),
            );
            None
        }
    }
}

/// A google.protobuf.Duration field as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurationInput {
    /// A representable span (possibly negative).
    Valid(TimeDelta),
    /// Seconds and nanos of opposite signs, nanos beyond ±999,999,999, or
    /// seconds beyond what a span holds.
    OutOfRange,
}

/// A duration field that must lie within `min..=max` (`limits` describes
/// the range for the message, e.g. `0 to 7 days`). Returns the span if it
/// does.
pub fn check_duration(
    violations: &mut Violations,
    location: &str,
    value: DurationInput,
    min: TimeDelta,
    max: TimeDelta,
    limits: &str,
) -> Option<TimeDelta> {
    match value {
        DurationInput::Valid(span) if span >= min && span <= max => Some(span),
        DurationInput::Valid(span) => {
            violations.push(
                location,
                &format!("must be between {limits} inclusive"),
                &describe_duration(span),
            );
            None
        }
        DurationInput::OutOfRange => {
            violations.push(location, "is not a valid duration", "");
            None
        }
    }
}

/// A span as the proto3 JSON mapping writes a Duration (`3600s`,
/// `1.5s`), for messages and echoed values.
pub fn describe_duration(span: TimeDelta) -> String {
    let nanos = span.subsec_nanos();
    if nanos == 0 {
        format!("{}s", span.num_seconds())
    } else {
        let sign = if span < TimeDelta::zero() && span.num_seconds() == 0 {
            "-"
        } else {
            ""
        };
        let fraction = format!("{:09}", nanos.unsigned_abs());
        format!(
            "{sign}{}.{}s",
            span.num_seconds(),
            fraction.trim_end_matches('0')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations_of(check: impl FnOnce(&mut Violations)) -> usize {
        let mut violations = Violations::default();
        check(&mut violations);
        violations.into_result().err().map_or(0, |v| v.count())
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
        assert_eq!(violations_of(|v| check_scopes(v, "scopes", &scopes)), 2);
        let many = vec!["a".to_owned(); 51];
        assert_eq!(violations_of(|v| check_scopes(v, "scopes", &many)), 1);
    }

    #[test]
    fn control_and_format_characters_are_refused_in_every_free_text_field() {
        // Cc: C0, DEL, C1 (NEL); Cf: soft hyphen, Arabic number sign,
        // zero-width space and joiner, LRM, bidi embeddings and overrides,
        // word joiner, isolates, BOM, interlinear annotation, tag characters.
        let refused = [
            '\u{0}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{ad}',
            '\u{600}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{fff9}',
            '\u{e0001}',
            '\u{e0041}',
        ];
        for c in refused {
            assert!(is_control_or_format(c), "{c:?}");
            let text = format!("a{c}b");
            assert_eq!(violations_of(|v| check_name(v, "n", &text)), 1, "{c:?}");
            assert_eq!(
                violations_of(|v| {
                    check_reason(v, &text);
                }),
                1,
                "{c:?}"
            );
        }
        // Newline and tab are control characters too (a reason may hold a
        // newline, a name or a JWT identity may not), as is ZWNJ format.
        for c in ['\n', '\t', '\u{200c}'] {
            assert!(is_control_or_format(c), "{c:?}");
        }
        // Letters, digits, marks, spaces and symbols of every script stay
        // allowed.
        for c in [
            'a',
            'Z',
            '0',
            '-',
            '_',
            'é',
            '\u{301}',
            ' ',
            '\u{a0}',
            '—',
            '日',
            '中',
            'Ж',
            '\u{1f600}',
            'ß',
            'א',
        ] {
            assert!(!is_control_or_format(c), "{c:?}");
        }
        assert_eq!(violations_of(|v| check_name(v, "n", "a\nb")), 1);
    }

    #[test]
    fn timestamps_must_lie_between_1970_and_the_year_10000() {
        let at = |seconds: i64, nanos: u32| {
            DateTime::from_timestamp(seconds, nanos)
                .map_or(TimestampInput::OutOfRange, TimestampInput::Valid)
        };
        let check = |input| {
            let mut violations = Violations::default();
            let accepted = check_timestamp(&mut violations, "t", input);
            (accepted.is_some(), violations_of(|v| *v = violations))
        };
        assert_eq!(check(at(0, 0)), (false, 1), "the epoch itself");
        assert_eq!(check(at(-1, 0)), (false, 1), "before the epoch");
        assert_eq!(check(at(0, 1)), (true, 0), "just after the epoch");
        assert_eq!(
            check(at(YEAR_10000_SECONDS - 1, 999_999_999)),
            (true, 0),
            "the last instant of 9999"
        );
        assert_eq!(check(at(YEAR_10000_SECONDS, 0)), (false, 1), "year 10000");
        assert_eq!(check(at(YEAR_10000_SECONDS * 10, 0)), (false, 1));
        assert_eq!(check(TimestampInput::OutOfRange), (false, 1));
        assert_eq!(
            max_timestamp_exclusive().to_rfc3339(),
            "+10000-01-01T00:00:00+00:00"
        );
    }
}
