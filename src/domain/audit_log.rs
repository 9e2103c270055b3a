//! The audit log line: each audit event, once its transaction committed,
//! also goes to the log under the stable target `tokend::audit`, written so
//! that no caller-chosen string can forge or hide an entry.

use crate::domain::audit::{AuditContext, AuditEventType};
use crate::domain::token::Token;

/// Logs an audit event as a structured event with the stable target
/// `tokend::audit`, after its transaction committed. No secret or hash is in
/// it: the token carries neither.
///
/// Every string a caller chose (the JWT's `sub` and `org_id`, the request
/// id, the token's name, the reason) is recorded as a `&str` value, never
/// with `%` (Display, which would print it raw): the text format prints such
/// values with `Debug`, quoted and with newlines, control and invisible
/// characters escaped, and the JSON format as JSON strings. Either way a
/// value cannot end the line, forge a field or another entry, or recolour a
/// terminal.
pub(crate) fn log_audit_event(
    event: AuditEventType,
    token: &Token,
    audit: &AuditContext,
    reason: Option<&str>,
) {
    tracing::info!(
        target: "tokend::audit",
        event_type = event.as_str(),
        org_id = token.org_id.as_str(),
        actor = audit.actor.as_str(),
        token_id = %token.token_id,
        token_numeric_id = token.id,
        token_kind = token.kind.as_str(),
        token_name = token.name.as_str(),
        request_id = audit.request_id.as_str(),
        reason = reason.unwrap_or(""),
        "audit event"
    );
}

/// Logs `token_policy_updated` like [`log_audit_event`]; it concerns no
/// token, so the token fields are left out.
pub(crate) fn log_policy_update(org_id: &str, audit: &AuditContext) {
    tracing::info!(
        target: "tokend::audit",
        event_type = AuditEventType::TokenPolicyUpdated.as_str(),
        org_id,
        actor = audit.actor.as_str(),
        request_id = audit.request_id.as_str(),
        "audit event"
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::domain::kind::TokenKind;

    /// A `MakeWriter` that keeps everything written, for reading back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn token(org_id: &str, name: &str) -> Token {
        Token {
            id: 7,
            token_id: Uuid::nil(),
            kind: TokenKind::Scrape,
            org_id: org_id.to_owned(),
            name: name.to_owned(),
            owner_user_id: "owner".to_owned(),
            service_account_slug: None,
            workspace_id: None,
            scopes: Vec::new(),
            created_at: DateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            created_by: "owner".to_owned(),
            revoked_by: None,
            revoke_reason: None,
            rotated_at: None,
            replaced_by: None,
            revoke_scheduled: false,
        }
    }

    const HOSTILE: &str =
        "mallory\n2026-01-01T00:00:00Z INFO audit event actor=admin \u{1b}[2K\u{202e}nimda\u{200b}";

    const CALLER_FIELDS: [&str; 5] = ["actor", "org_id", "request_id", "reason", "token_name"];

    /// The audit log line for an event whose every caller string is `HOSTILE`,
    /// as a subscriber built by `subscriber` writes it.
    fn audit_line<S>(subscriber: impl FnOnce(Captured) -> S) -> String
    where
        S: tracing::Subscriber + Send + Sync + 'static,
    {
        let captured = Captured::default();
        tracing::subscriber::with_default(subscriber(captured.clone()), || {
            log_audit_event(
                AuditEventType::ScrapeTokenRevoked,
                &token(HOSTILE, HOSTILE),
                &AuditContext {
                    actor: HOSTILE.to_owned(),
                    request_id: HOSTILE.to_owned(),
                    now: DateTime::UNIX_EPOCH,
                },
                Some(HOSTILE),
            );
        });
        let bytes = captured
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// In the JSON format every caller string is one JSON string that
    /// decodes to exactly what the caller sent, on one line.
    #[test]
    fn the_json_audit_log_line_holds_caller_strings_as_json_strings() {
        let text = audit_line(|writer| {
            tracing_subscriber::fmt()
                .json()
                .with_writer(writer)
                .finish()
        });
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        for field in CALLER_FIELDS {
            assert_eq!(value["fields"][field], HOSTILE, "{field}: {text:?}");
        }
    }

    /// Every caller-chosen string reaches a text log escaped: a newline
    /// cannot start a forged entry, an ANSI sequence cannot recolour the
    /// terminal, a bidi override cannot reorder what an operator reads.
    #[test]
    fn the_audit_log_line_escapes_every_caller_string() {
        let text = audit_line(|writer| {
            tracing_subscriber::fmt()
                .with_writer(writer)
                .with_ansi(false)
                .finish()
        });
        assert!(text.contains("audit event"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
        assert!(text.ends_with('\n'));
        for raw in ['\u{1b}', '\u{202e}', '\u{200b}'] {
            assert!(!text.contains(raw), "{raw:?} unescaped in {text:?}");
        }
        for field in CALLER_FIELDS {
            assert!(
                text.contains(&format!("{field}=\"mallory\\n2026")),
                "{field} not escaped: {text:?}"
            );
        }
        assert!(text.contains("\\u{202e}nimda\\u{200b}"), "{text:?}");
    }
}
