//! RevokeTokenBySecret: the platform permission `tokens_revoke_leaked`
//! (which `admin` does not imply), a secret of any organisation, the event
//! in the token's organisation, idempotency, and a malformed or unknown
//! secret refused without echoing it.

use super::*;
use crate::domain::request::RevokeBySecretInput;

/// The incident desk: `tokens_revoke_leaked`, in an organisation of its own.
fn incident_desk() -> Caller {
    caller("platform", "incident-desk", &[], &["tokens_revoke_leaked"])
}

fn by_secret(secret: &str, reason: &str) -> RevokeBySecretInput {
    RevokeBySecretInput {
        secret: secret.to_owned(),
        reason: reason.to_owned(),
    }
}

impl Fixture {
    async fn revoke_leaked(
        &self,
        caller: &Caller,
        input: RevokeBySecretInput,
    ) -> Result<Revoked, ServiceError> {
        self.core
            .revoke_token_by_secret(caller, &self.audit(caller), input)
            .await
    }
}

fn ok<T>(result: Result<T, ServiceError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{error:?}"),
    }
}

mod permissions {
    use super::*;

    /// RevokeTokenBySecret of an `acme` token's secret by `alice` of
    /// `org_id` holding `grant`; `Err(permission named)` on a refusal,
    /// which changes nothing.
    async fn attempt(org_id: &str, grant: &str) -> Result<(), String> {
        let fx = Fixture::new();
        let (_, secret) = fx.made(&admin(ACME), TokenKind::Scrape, "scraper").await;
        let who = match grant {
            "admin" => caller(org_id, "alice", &["admin"], &[]),
            "" => caller(org_id, "alice", &[], &[]),
            permission => caller(org_id, "alice", &[], &[permission]),
        };
        let events_before = fx.repository.audit_events();
        fx.repository.clear_calls();
        match fx.revoke_leaked(&who, by_secret(secret.expose(), "")).await {
            Ok(revoked) => {
                assert!(revoked.newly_revoked);
                Ok(())
            }
            Err(ServiceError::PermissionDenied { permission }) => {
                assert!(fx.no_token_revoked());
                assert_eq!(fx.repository.audit_events(), events_before);
                assert_eq!(fx.repository.calls(), [], "refused before any read");
                Err(permission.to_owned())
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    fn denied() -> Result<(), String> {
        Err("tokens_revoke_leaked".to_owned())
    }

    macro_rules! cells {
        ($($name:ident: $org:expr, $grant:literal => $expected:expr;)*) => {
            $(
                #[tokio::test]
                async fn $name() {
                    assert_eq!(attempt($org, $grant).await, $expected, "{} as {:?}", $org, $grant);
                }
            )*
        };
    }

    // A platform permission: found in any organisation; no organisation
    // role or permission implies it, not even `admin` of the token's own.
    cells! {
        tokens_revoke_leaked: ACME, "tokens_revoke_leaked" => Ok(());
        other_org_tokens_revoke_leaked: EVIL, "tokens_revoke_leaked" => Ok(());
        admin_role_is_not_enough: ACME, "admin" => denied();
        other_org_admin_role: EVIL, "admin" => denied();
        tokens_introspect: ACME, "tokens_introspect" => denied();
        org_app_keys_write: ACME, "org_app_keys_write" => denied();
        user_app_keys: ACME, "user_app_keys" => denied();
        service_account_tokens_write: ACME, "service_account_tokens_write" => denied();
        workspace_api_keys_write: ACME, "workspace_api_keys_write" => denied();
        no_permission: ACME, "" => denied();
    }
}

/// Another organisation's token: revoked with its family's event in the
/// token's organisation, the caller as actor, the reason stored; the
/// caller's organisation gets nothing.
#[tokio::test]
async fn a_secret_of_another_organisation_is_revoked_with_the_event_in_its_organisation() {
    for kind in TokenKind::ALL {
        let fx = Fixture::new();
        let owner = admin(ACME);
        let (token, secret) = fx.made(&owner, kind, "leaked").await;
        let desk = incident_desk();
        let revoked = ok(fx
            .revoke_leaked(&desk, by_secret(secret.expose(), "found on a paste site"))
            .await);
        assert!(revoked.newly_revoked);
        assert_eq!(revoked.token.id, token.id);
        assert_eq!(revoked.token.org_id, ACME);
        assert_eq!(revoked.token.revoked_at, Some(fx.now()));
        assert_eq!(revoked.token.revoked_by.as_deref(), Some("incident-desk"));
        assert_eq!(
            revoked.token.revoke_reason.as_deref(),
            Some("found on a paste site")
        );
        let events = fx.all_events(ACME).await;
        let last = events.last().map(|e| {
            (
                e.event_type,
                e.actor.as_str(),
                e.reason.as_deref(),
                e.token_id,
            )
        });
        assert_eq!(
            last,
            Some((
                kind.revoked_event(),
                "incident-desk",
                Some("found on a paste site"),
                token.token_id
            )),
            "{kind:?}"
        );
        assert!(fx.all_events("platform").await.is_empty());
    }
}

/// Idempotent: a second call (or one for a token revoked otherwise) is OK
/// with the original revocation and writes no second event.
#[tokio::test]
async fn an_already_revoked_token_answers_its_original_revocation() {
    let fx = Fixture::new();
    let owner = admin(ACME);
    let (_, secret) = fx.made(&owner, TokenKind::PersonalAccess, "leaked").await;
    let desk = incident_desk();
    let first = ok(fx
        .revoke_leaked(&desk, by_secret(secret.expose(), "first"))
        .await);
    let events = fx.repository.audit_events().len();
    fx.clock.advance(TimeDelta::minutes(5));
    let again = ok(fx
        .revoke_leaked(&desk, by_secret(secret.expose(), "second"))
        .await);
    assert!(!again.newly_revoked);
    assert_eq!(again.token.revoked_at, first.token.revoked_at);
    assert_eq!(again.token.revoke_reason.as_deref(), Some("first"));
    assert_eq!(fx.repository.audit_events().len(), events);

    let (other, other_secret) = fx.made(&owner, TokenKind::Scrape, "by-hand").await;
    let by_hand = ok(fx.revoke(&owner, revoke_input(&other, "rotated")).await);
    fx.clock.advance(TimeDelta::minutes(5));
    let events = fx.repository.audit_events().len();
    let later = ok(fx
        .revoke_leaked(&desk, by_secret(other_secret.expose(), ""))
        .await);
    assert!(!later.newly_revoked);
    assert_eq!(later.token.revoked_at, by_hand.token.revoked_at);
    assert_eq!(later.token.revoked_by.as_deref(), Some("root"));
    assert_eq!(fx.repository.audit_events().len(), events);
}

/// A well-formed secret that matches nothing is NOT_FOUND, named by the
/// field and not by the value.
#[tokio::test]
async fn an_unknown_secret_is_not_found_and_not_echoed() {
    let fx = Fixture::new();
    let (_, secret) = fx.made(&admin(ACME), TokenKind::Scrape, "real").await;
    let unknown = match TokenSecret::generate_from(TokenKind::Scrape, &SeededEntropy::new(99)) {
        Ok(unknown) => unknown,
        Err(error) => panic!("{error:?}"),
    };
    assert_ne!(unknown.expose(), secret.expose());
    match fx
        .revoke_leaked(&incident_desk(), by_secret(unknown.expose(), ""))
        .await
    {
        Err(ServiceError::NotFound(resource)) => {
            assert_eq!(resource.name, "secret");
            assert!(!resource.name.contains(unknown.expose()));
        }
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    assert!(fx.no_token_revoked());
}

/// A malformed secret (prefix, length, alphabet, checksum) or reason is
/// INVALID_ARGUMENT, decided without any database read; the violation
/// describes the secret and never echoes it.
#[tokio::test]
async fn a_malformed_secret_is_invalid_without_a_read_and_never_echoed() {
    let fx = Fixture::new();
    let (_, secret) = fx
        .made(&admin(ACME), TokenKind::PersonalAccess, "real")
        .await;
    let real = secret.expose().to_owned();
    let mut typo = real.clone();
    let last = typo.pop().map_or('0', |c| if c == '0' { '1' } else { '0' });
    typo.push(last);
    let cases: [(&str, String, &str, &[&str]); 8] = [
        ("empty", String::new(), "", &["secret"]),
        (
            "no prefix",
            "hunter2hunter2hunter2".to_owned(),
            "",
            &["secret"],
        ),
        (
            "truncated",
            real[..real.len() - 1].to_owned(),
            "",
            &["secret"],
        ),
        ("checksum", typo, "", &["secret"]),
        ("oversized", "x".repeat(10_000), "", &["secret"]),
        (
            "bad alphabet",
            format!("{}!", &real[..real.len() - 1]),
            "",
            &["secret"],
        ),
        ("bad reason", real.clone(), "\u{202e}", &["reason"]),
        ("both", "nope".to_owned(), "\u{0}", &["secret", "reason"]),
    ];
    for (what, presented, reason, expected) in cases {
        fx.repository.clear_calls();
        let result = fx
            .revoke_leaked(&incident_desk(), by_secret(&presented, reason))
            .await;
        match result {
            Err(ServiceError::InvalidArgument(fields)) => {
                let locations: Vec<&str> =
                    fields.listed.iter().map(|v| v.location.as_str()).collect();
                assert_eq!(locations, expected, "{what}");
                for violation in fields.listed.iter().filter(|v| v.location == "secret") {
                    assert_eq!(violation.value, "", "{what}: the value is never echoed");
                    assert!(
                        violation.message.starts_with("must be a tokend secret: "),
                        "{what}"
                    );
                    if presented.len() > 3 {
                        assert!(!violation.message.contains(&presented), "{what}");
                    }
                }
            }
            other => panic!("{what}: expected INVALID_ARGUMENT, got {other:?}"),
        }
        assert_eq!(fx.repository.calls(), [], "{what}: no database read");
    }
    assert!(fx.no_token_revoked());
}

/// The input's `Debug` does not print the secret.
#[test]
fn the_input_does_not_print_its_secret() {
    let printed = format!("{:?}", by_secret("tkd_pat_supersecretvalue", "why"));
    assert!(!printed.contains("supersecret"), "{printed}");
    assert!(printed.contains("why"));
}
