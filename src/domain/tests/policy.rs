//! Token policies (docs/reference.md, "Token policies"): who may read and
//! replace them, the validation rows, and the arithmetic CreateToken and
//! RotateToken apply (default, maximum, the old lifetime kept, caps).

use chrono::TimeDelta;

use super::*;
use crate::domain::policy::{KindPolicy, TokenPolicy};
use crate::domain::request::{KindPolicyInput, RotateInput, TokenPolicyInput};
use crate::domain::validation::DurationInput;

fn ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("unexpected {error:?}"),
    }
}

fn entry(kind: KindInput, max: Option<TimeDelta>, default: Option<TimeDelta>) -> KindPolicyInput {
    KindPolicyInput {
        kind,
        max_lifetime: max.map(DurationInput::Valid),
        default_lifetime: default.map(DurationInput::Valid),
    }
}

fn policy(entries: Vec<KindPolicyInput>) -> TokenPolicyInput {
    TokenPolicyInput { kinds: entries }
}

const fn hours(n: i64) -> TimeDelta {
    TimeDelta::hours(n)
}

impl Fixture {
    async fn set_policy(&self, entries: Vec<KindPolicyInput>) -> TokenPolicy {
        let root = admin(ACME);
        ok(self
            .core
            .update_token_policy(&root, &self.audit(&root), policy(entries))
            .await)
    }

    async fn create_expiring(
        &self,
        kind: TokenKind,
        expire_in: Option<TimeDelta>,
    ) -> Result<Token, ServiceError> {
        let mut input = create_input(kind, "t");
        input.expire_time = expire_in.map(|span| TimestampInput::Valid(self.now() + span));
        self.create(&admin(ACME), input)
            .await
            .map(|(token, _)| token)
    }
}

mod permissions {
    use super::*;

    async fn get(grant: &str) -> Result<(), String> {
        let fx = Fixture::new();
        let who = match grant {
            "admin" => caller(ACME, "alice", &["admin"], &[]),
            permission => caller(ACME, "alice", &[], &[permission]),
        };
        match fx.core.get_token_policy(&who).await {
            Ok(_) => Ok(()),
            Err(ServiceError::PermissionDenied { permission }) => Err(permission.to_owned()),
            Err(other) => panic!("{other:?}"),
        }
    }

    async fn update(grant: &str) -> Result<(), String> {
        let fx = Fixture::new();
        let who = match grant {
            "admin" => caller(ACME, "alice", &["admin"], &[]),
            permission => caller(ACME, "alice", &[], &[permission]),
        };
        let input = policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(2)),
            None,
        )]);
        match fx
            .core
            .update_token_policy(&who, &fx.audit(&who), input)
            .await
        {
            Ok(_) => Ok(()),
            Err(ServiceError::PermissionDenied { permission }) => {
                assert!(fx.repository.audit_events().is_empty(), "no event");
                assert_eq!(
                    ok(fx.core.get_token_policy(&admin(ACME)).await),
                    TokenPolicy::default()
                );
                Err(permission.to_owned())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn get_as_admin() {
        assert_eq!(get("admin").await, Ok(()));
    }
    #[tokio::test]
    async fn get_as_org_app_keys_read() {
        assert_eq!(get("org_app_keys_read").await, Ok(()));
    }
    #[tokio::test]
    async fn get_as_user_app_keys() {
        assert_eq!(
            get("user_app_keys").await,
            Err("org_app_keys_read".to_owned())
        );
    }
    #[tokio::test]
    async fn update_as_admin() {
        assert_eq!(update("admin").await, Ok(()));
    }
    #[tokio::test]
    async fn update_as_org_app_keys_write() {
        assert_eq!(update("org_app_keys_write").await, Err("admin".to_owned()));
    }
    #[tokio::test]
    async fn update_as_org_app_keys_read() {
        assert_eq!(update("org_app_keys_read").await, Err("admin".to_owned()));
    }
}

/// One row per rule of the validation table's policy lines.
mod validation {
    use super::*;

    async fn locations(entries: Vec<KindPolicyInput>) -> Vec<String> {
        let fx = Fixture::new();
        let root = admin(ACME);
        let result = fx
            .core
            .update_token_policy(&root, &fx.audit(&root), policy(entries))
            .await;
        assert!(fx.repository.calls().is_empty(), "no storage reached");
        ok(violations(result))
    }

    const SCRAPE: KindInput = KindInput::Known(TokenKind::Scrape);

    #[tokio::test]
    async fn unspecified_kind() {
        let got = locations(vec![entry(KindInput::Unspecified, None, None)]).await;
        assert_eq!(got, ["policy.kinds[0].kind"]);
    }
    #[tokio::test]
    async fn unknown_kind() {
        let got = locations(vec![entry(KindInput::Unknown(9), None, None)]).await;
        assert_eq!(got, ["policy.kinds[0].kind"]);
    }
    #[tokio::test]
    async fn repeated_kind() {
        let got = locations(vec![entry(SCRAPE, None, None), entry(SCRAPE, None, None)]).await;
        assert_eq!(got, ["policy.kinds[1].kind"]);
    }
    #[tokio::test]
    async fn max_under_an_hour() {
        let got = locations(vec![entry(
            SCRAPE,
            Some(hours(1) - TimeDelta::nanoseconds(1)),
            None,
        )])
        .await;
        assert_eq!(got, ["policy.kinds[0].max_lifetime"]);
    }
    #[tokio::test]
    async fn default_over_ten_years() {
        let got = locations(vec![entry(SCRAPE, None, Some(TimeDelta::days(3654)))]).await;
        assert_eq!(got, ["policy.kinds[0].default_lifetime"]);
    }
    #[tokio::test]
    async fn malformed_duration() {
        let got = locations(vec![KindPolicyInput {
            kind: SCRAPE,
            max_lifetime: Some(DurationInput::OutOfRange),
            default_lifetime: None,
        }])
        .await;
        assert_eq!(got, ["policy.kinds[0].max_lifetime"]);
    }
    #[tokio::test]
    async fn default_above_max() {
        let got = locations(vec![entry(SCRAPE, Some(hours(2)), Some(hours(3)))]).await;
        assert_eq!(got, ["policy.kinds[0].default_lifetime"]);
    }
    #[tokio::test]
    async fn every_bad_entry_at_once() {
        let got = locations(vec![
            entry(KindInput::Unspecified, Some(hours(0)), None),
            entry(SCRAPE, None, Some(TimeDelta::seconds(-1))),
        ])
        .await;
        assert_eq!(
            got,
            [
                "policy.kinds[0].kind",
                "policy.kinds[0].max_lifetime",
                "policy.kinds[1].default_lifetime"
            ]
        );
    }
    #[tokio::test]
    async fn the_bounds_themselves_are_accepted() {
        let fx = Fixture::new();
        let stored = fx
            .set_policy(vec![entry(
                SCRAPE,
                Some(TimeDelta::days(3653)),
                Some(hours(1)),
            )])
            .await;
        assert_eq!(stored.kinds().len(), 1);
    }
}

#[tokio::test]
async fn update_replaces_the_whole_policy_and_writes_its_event() {
    let fx = Fixture::new();
    fx.set_policy(vec![
        entry(KindInput::Known(TokenKind::Scrape), Some(hours(5)), None),
        entry(
            KindInput::Known(TokenKind::PersonalAccess),
            None,
            Some(hours(2)),
        ),
    ])
    .await;
    fx.set_policy(vec![entry(
        KindInput::Known(TokenKind::WorkspaceApiKey),
        Some(hours(9)),
        Some(hours(3)),
    )])
    .await;
    let read = ok(fx.core.get_token_policy(&admin(ACME)).await);
    assert_eq!(
        read.kinds(),
        [KindPolicy {
            kind: TokenKind::WorkspaceApiKey,
            max_lifetime: Some(hours(9)),
            default_lifetime: Some(hours(3)),
        }]
    );
    let events = fx.all_events(ACME).await;
    assert_eq!(events.len(), 2);
    let event = &events[1];
    assert_eq!(event.event_type, AuditEventType::TokenPolicyUpdated);
    assert_eq!(
        (event.token_id, event.token_numeric_id, event.token_kind),
        (uuid::Uuid::nil(), 0, None)
    );
    assert!(
        fx.all_events(EVIL).await.is_empty(),
        "another org sees nothing"
    );
    assert_eq!(
        ok(fx.core.get_token_policy(&admin(EVIL)).await),
        TokenPolicy::default()
    );
}

mod create {
    use super::*;

    #[tokio::test]
    async fn without_expire_time_the_default_applies() {
        let fx = Fixture::new();
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(48)),
            Some(hours(24)),
        )])
        .await;
        let token = ok(fx.create_expiring(TokenKind::Scrape, None).await);
        assert_eq!(token.expires_at, Some(fx.now() + hours(24)));
    }

    #[tokio::test]
    async fn with_only_a_maximum_the_maximum_applies() {
        let fx = Fixture::new();
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(48)),
            None,
        )])
        .await;
        let token = ok(fx.create_expiring(TokenKind::Scrape, None).await);
        assert_eq!(token.expires_at, Some(fx.now() + hours(48)));
    }

    #[tokio::test]
    async fn another_kind_is_unbounded() {
        let fx = Fixture::new();
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(48)),
            Some(hours(1)),
        )])
        .await;
        let token = ok(fx.create_expiring(TokenKind::ServiceAccount, None).await);
        assert_eq!(token.expires_at, None);
    }

    #[tokio::test]
    async fn an_expiry_at_the_maximum_is_accepted() {
        let fx = Fixture::new();
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(48)),
            None,
        )])
        .await;
        let token = ok(fx.create_expiring(TokenKind::Scrape, Some(hours(48))).await);
        assert_eq!(token.expires_at, Some(fx.now() + hours(48)));
    }

    #[tokio::test]
    async fn an_expiry_beyond_the_maximum_is_refused_naming_the_limit() {
        let fx = Fixture::new();
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(48)),
            None,
        )])
        .await;
        let before = fx.repository.tokens().len();
        let result = fx
            .create_expiring(TokenKind::Scrape, Some(hours(48) + TimeDelta::seconds(1)))
            .await;
        match result {
            Err(ServiceError::InvalidArgument(fields)) => {
                assert_eq!(fields.listed.len(), 1);
                assert_eq!(fields.listed[0].location, "expire_time");
                assert!(
                    fields.listed[0].message.contains("max_lifetime 172800s"),
                    "{}",
                    fields.listed[0].message
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fx.repository.tokens().len(), before, "nothing created");
    }

    #[tokio::test]
    async fn existing_tokens_are_not_changed() {
        let fx = Fixture::new();
        let token = ok(fx.create_expiring(TokenKind::Scrape, None).await);
        fx.set_policy(vec![entry(
            KindInput::Known(TokenKind::Scrape),
            Some(hours(2)),
            Some(hours(1)),
        )])
        .await;
        assert_eq!(ok(fx.core.get_token(&admin(ACME), token.id).await), token);
    }
}

mod rotate {
    use super::*;

    async fn rotated_expiry(
        policy: Vec<KindPolicyInput>,
        old_lifetime: Option<TimeDelta>,
    ) -> Option<TimeDelta> {
        let fx = Fixture::new();
        let old = ok(fx.create_expiring(TokenKind::Scrape, old_lifetime).await);
        fx.set_policy(policy).await;
        fx.clock.advance(hours(5));
        let root = admin(ACME);
        let input = RotateInput {
            id: old.id,
            overlap: None,
            reason: String::new(),
        };
        let rotated = ok(fx.core.rotate_token(&root, &fx.audit(&root), input).await);
        rotated.token.expires_at.map(|at| at - fx.now())
    }

    const SCRAPE: KindInput = KindInput::Known(TokenKind::Scrape);

    #[tokio::test]
    async fn the_default_lifetime_from_now() {
        let got =
            rotated_expiry(vec![entry(SCRAPE, None, Some(hours(24)))], Some(hours(100))).await;
        assert_eq!(got, Some(hours(24)));
    }

    #[tokio::test]
    async fn without_a_default_the_old_lifetime_from_now() {
        assert_eq!(
            rotated_expiry(vec![], Some(hours(100))).await,
            Some(hours(100))
        );
    }

    #[tokio::test]
    async fn the_old_lifetime_capped_by_the_maximum() {
        let got =
            rotated_expiry(vec![entry(SCRAPE, Some(hours(30)), None)], Some(hours(100))).await;
        assert_eq!(got, Some(hours(30)));
    }

    #[tokio::test]
    async fn never_expiring_stays_never_expiring() {
        assert_eq!(rotated_expiry(vec![], None).await, None);
    }

    #[tokio::test]
    async fn never_expiring_gets_the_maximum_when_there_is_one() {
        let got = rotated_expiry(vec![entry(SCRAPE, Some(hours(30)), None)], None).await;
        assert_eq!(got, Some(hours(30)));
    }
}
