//! RotateToken's rules (docs/reference.md, "Rotation"): who may rotate
//! which family (one test per cell), which states rotate, what the new
//! token copies, the overlap on the manual clock, the freed name, the
//! events, an explicit revoke during the overlap, and concurrent rotations.

use chrono::TimeDelta;

use super::*;
use crate::domain::request::RotateInput;
use crate::domain::rotation::Rotated;
use crate::domain::token::TokenState;
use crate::domain::validation::DurationInput;

fn rotate_input(id: i64, overlap: Option<TimeDelta>, reason: &str) -> RotateInput {
    RotateInput {
        id,
        overlap: overlap.map(DurationInput::Valid),
        reason: reason.to_owned(),
    }
}

impl Fixture {
    async fn rotate(&self, caller: &Caller, input: RotateInput) -> Result<Rotated, ServiceError> {
        self.core
            .rotate_token(caller, &self.audit(caller), input)
            .await
    }

    async fn rotated(&self, caller: &Caller, id: i64, overlap: TimeDelta) -> Rotated {
        match self
            .rotate(caller, rotate_input(id, Some(overlap), "routine"))
            .await
        {
            Ok(rotated) => rotated,
            Err(error) => panic!("rotating {id}: {error:?}"),
        }
    }

    async fn authenticates(&self, secret: &TokenSecret) -> Result<Token, ServiceError> {
        self.core
            .authenticate_secret(&self.scraper(), secret.expose(), AcceptedFamilies::Any)
            .await
    }
}

fn ok<T, E: std::fmt::Debug>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("unexpected {error:?}"),
    }
}

/// What one permission cell does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Allowed,
    Denied(&'static str),
    NotFound,
}

/// Rotates a token of `kind` (a personal one owned by `owner`) of `acme`
/// as `alice` of `org_id` holding `grant`; a refusal changes nothing.
async fn attempt(kind: TokenKind, owner: &str, org_id: &str, grant: &str) -> Expected {
    let fx = Fixture::new();
    let maker = match kind {
        TokenKind::PersonalAccess => user(ACME, owner),
        TokenKind::Scrape | TokenKind::ServiceAccount | TokenKind::WorkspaceApiKey => admin(ACME),
    };
    let (token, _) = fx.made(&maker, kind, "target").await;
    let who = match grant {
        "admin" => caller(org_id, "alice", &["admin"], &[]),
        "" => caller(org_id, "alice", &[], &[]),
        permission => caller(org_id, "alice", &[], &[permission]),
    };
    let tokens_before = fx.repository.tokens();
    let events_before = fx.repository.audit_events();
    let outcome = match fx.rotate(&who, rotate_input(token.id, None, "")).await {
        Ok(_) => return Allowed,
        Err(ServiceError::PermissionDenied { permission }) => Denied(permission),
        Err(ServiceError::NotFound(_)) => NotFound,
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        fx.repository.tokens(),
        tokens_before,
        "a refusal changes no token"
    );
    assert_eq!(
        fx.repository.audit_events(),
        events_before,
        "and writes no event"
    );
    outcome
}

macro_rules! cells {
    ($($name:ident: $kind:ident owned by $owner:literal, $org:ident, $grant:literal => $expected:expr;)*) => {
        mod permissions {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    assert_eq!(
                        attempt(TokenKind::$kind, $owner, $org, $grant).await,
                        $expected
                    );
                }
            )*
        }
    };
}

use Expected::{Allowed, Denied, NotFound};

cells! {
    scrape_admin: Scrape owned by "root", ACME, "admin" => Allowed;
    scrape_org_write: Scrape owned by "root", ACME, "org_app_keys_write" => Denied("admin");
    scrape_user: Scrape owned by "root", ACME, "user_app_keys" => Denied("admin");
    scrape_other_org_admin: Scrape owned by "root", EVIL, "admin" => NotFound;
    own_personal_user: PersonalAccess owned by "alice", ACME, "user_app_keys" => Allowed;
    others_personal_user: PersonalAccess owned by "bob", ACME, "user_app_keys" => NotFound;
    others_personal_org_write: PersonalAccess owned by "bob", ACME, "org_app_keys_write" => Allowed;
    others_personal_admin: PersonalAccess owned by "bob", ACME, "admin" => Allowed;
    own_personal_no_grant: PersonalAccess owned by "alice", ACME, "" => Denied("user_app_keys");
    own_personal_read_only: PersonalAccess owned by "alice", ACME, "org_app_keys_read" => Denied("user_app_keys");
    personal_other_org_write: PersonalAccess owned by "bob", EVIL, "org_app_keys_write" => NotFound;
    service_account_admin: ServiceAccount owned by "root", ACME, "admin" => Allowed;
    service_account_write: ServiceAccount owned by "root", ACME, "service_account_tokens_write" => Allowed;
    service_account_workspace_write: ServiceAccount owned by "root", ACME, "workspace_api_keys_write" => Denied("service_account_tokens_write");
    service_account_other_org: ServiceAccount owned by "root", EVIL, "service_account_tokens_write" => NotFound;
    workspace_admin: WorkspaceApiKey owned by "root", ACME, "admin" => Allowed;
    workspace_write: WorkspaceApiKey owned by "root", ACME, "workspace_api_keys_write" => Allowed;
    workspace_user: WorkspaceApiKey owned by "root", ACME, "user_app_keys" => Denied("workspace_api_keys_write");
    workspace_other_org: WorkspaceApiKey owned by "root", EVIL, "admin" => NotFound;
}

/// Validation rows: each bad field is named, nothing is read.
mod validation {
    use super::*;

    async fn locations(input: RotateInput) -> Vec<String> {
        let fx = Fixture::new();
        let result = fx.rotate(&admin(ACME), input).await;
        assert!(fx.repository.calls().is_empty(), "no storage reached");
        ok(violations(result))
    }

    #[tokio::test]
    async fn id_zero() {
        assert_eq!(locations(rotate_input(0, None, "")).await, ["id"]);
    }

    #[tokio::test]
    async fn negative_overlap() {
        let input = rotate_input(1, Some(TimeDelta::seconds(-1)), "");
        assert_eq!(locations(input).await, ["overlap"]);
    }

    #[tokio::test]
    async fn overlap_past_seven_days() {
        let input = rotate_input(1, Some(TimeDelta::days(7) + TimeDelta::nanoseconds(1)), "");
        assert_eq!(locations(input).await, ["overlap"]);
    }

    #[tokio::test]
    async fn malformed_overlap() {
        let input = RotateInput {
            id: 1,
            overlap: Some(DurationInput::OutOfRange),
            reason: String::new(),
        };
        assert_eq!(locations(input).await, ["overlap"]);
    }

    #[tokio::test]
    async fn control_character_in_reason() {
        assert_eq!(locations(rotate_input(1, None, "a\u{7}")).await, ["reason"]);
    }

    #[tokio::test]
    async fn every_bad_field_at_once() {
        let input = rotate_input(-4, Some(TimeDelta::days(8)), "\u{202e}");
        assert_eq!(locations(input).await, ["id", "overlap", "reason"]);
    }

    #[tokio::test]
    async fn seven_days_exactly_is_accepted() {
        let fx = Fixture::new();
        let root = admin(ACME);
        let (token, _) = fx.made(&root, TokenKind::Scrape, "s").await;
        let rotated = fx.rotated(&root, token.id, TimeDelta::days(7)).await;
        assert_eq!(
            rotated.previous.revoked_at,
            Some(fx.now() + TimeDelta::days(7))
        );
    }
}

/// Which states rotate.
mod states {
    use super::*;

    async fn rotating_after(prepare: impl AsyncFnOnce(&Fixture, &Token)) -> Result<(), String> {
        let fx = Fixture::new();
        let root = admin(ACME);
        let mut input = create_input(TokenKind::ServiceAccount, "deploy");
        input.expire_time = Some(TimestampInput::Valid(fx.now() + TimeDelta::hours(1)));
        let (token, _) = ok(fx.create(&root, input).await);
        prepare(&fx, &token).await;
        let before = fx.repository.audit_events().len();
        match fx.rotate(&root, rotate_input(token.id, None, "")).await {
            Ok(_) => Ok(()),
            Err(ServiceError::NotRotatable(resource)) => {
                assert_eq!(resource.name, format!("tokens/{}", token.id));
                assert_eq!(fx.repository.audit_events().len(), before, "no event");
                Err("not rotatable".to_owned())
            }
            Err(other) => Err(format!("{other:?}")),
        }
    }

    #[tokio::test]
    async fn active_rotates() {
        assert_eq!(rotating_after(async |_, _| {}).await, Ok(()));
    }

    #[tokio::test]
    async fn revoked_does_not() {
        let got = rotating_after(async |fx, token| {
            ok(fx.revoke(&admin(ACME), revoke_input(token, "")).await);
        })
        .await;
        assert_eq!(got, Err("not rotatable".to_owned()));
    }

    #[tokio::test]
    async fn expired_does_not() {
        let got = rotating_after(async |fx, _| fx.clock.advance(TimeDelta::hours(1))).await;
        assert_eq!(got, Err("not rotatable".to_owned()));
    }

    #[tokio::test]
    async fn rotated_does_not_even_during_its_overlap() {
        let got = rotating_after(async |fx, token| {
            fx.rotated(&admin(ACME), token.id, TimeDelta::minutes(5))
                .await;
        })
        .await;
        assert_eq!(got, Err("not rotatable".to_owned()));
    }

    #[tokio::test]
    async fn unknown_id_is_not_found() {
        let fx = Fixture::new();
        let got = fx.rotate(&admin(ACME), rotate_input(99, None, "")).await;
        assert!(matches!(got, Err(ServiceError::NotFound(_))), "{got:?}");
    }
}

#[tokio::test]
async fn the_new_token_copies_the_old_one_and_the_old_one_points_to_it() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, old_secret) = fx.made(&root, TokenKind::WorkspaceApiKey, "ci key").await;
    fx.clock.advance(TimeDelta::minutes(3));
    let writer = caller(ACME, "wk", &[], &["workspace_api_keys_write"]);
    let rotated = fx.rotated(&writer, old.id, TimeDelta::zero()).await;
    let (new, previous) = (&rotated.token, &rotated.previous);
    assert_ne!(rotated.secret.expose(), old_secret.expose());
    assert_eq!(
        (
            &new.kind,
            &new.name,
            &new.owner_user_id,
            &new.service_account_slug,
            &new.workspace_id,
            &new.scopes
        ),
        (
            &old.kind,
            &old.name,
            &old.owner_user_id,
            &old.service_account_slug,
            &old.workspace_id,
            &old.scopes
        )
    );
    assert_eq!(
        (new.created_at, &new.created_by),
        (fx.now(), &"wk".to_owned())
    );
    assert_ne!(new.token_id, old.token_id);
    assert_eq!(previous.replaced_by, Some(new.token_id));
    assert_eq!(previous.rotated_at, Some(fx.now()));
    assert_eq!(
        previous.revoked_at,
        Some(fx.now()),
        "overlap 0: revoked at once"
    );
    assert_eq!(previous.revoked_by.as_deref(), Some("wk"));
    assert_eq!(previous.revoke_reason.as_deref(), Some("routine"));
    assert_eq!(new.rotated_at, None);
    assert_eq!(new.replaced_by, None);
}

#[tokio::test]
async fn without_overlap_the_old_secret_stops_at_once_and_the_new_one_works() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, old_secret) = fx.made(&root, TokenKind::Scrape, "s").await;
    let rotated = fx.rotated(&root, old.id, TimeDelta::zero()).await;
    assert!(matches!(
        fx.authenticates(&old_secret).await,
        Err(ServiceError::TokenRejected(TokenRejection::Revoked))
    ));
    assert_eq!(
        ok(fx.authenticates(&rotated.secret).await).id,
        rotated.token.id
    );
}

#[tokio::test]
async fn the_old_secret_works_until_the_end_of_the_overlap_exactly() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, old_secret) = fx.made(&root, TokenKind::Scrape, "s").await;
    let overlap = TimeDelta::minutes(10);
    let rotated = fx.rotated(&root, old.id, overlap).await;
    assert_eq!(
        ok(fx.authenticates(&rotated.secret).await).id,
        rotated.token.id
    );
    assert_eq!(ok(fx.authenticates(&old_secret).await).id, old.id);
    fx.clock.advance(overlap - TimeDelta::nanoseconds(1));
    assert_eq!(ok(fx.authenticates(&old_secret).await).id, old.id);
    assert_eq!(
        ok(fx.core.get_token(&root, old.id).await).state_at(fx.now()),
        TokenState::Active
    );
    fx.clock.advance(TimeDelta::nanoseconds(1));
    assert!(matches!(
        fx.authenticates(&old_secret).await,
        Err(ServiceError::TokenRejected(TokenRejection::Revoked))
    ));
    assert_eq!(
        ok(fx.authenticates(&rotated.secret).await).id,
        rotated.token.id
    );
}

#[tokio::test]
async fn during_the_overlap_the_old_token_lists_and_counts_as_active() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, _) = fx.made(&root, TokenKind::Scrape, "s").await;
    fx.rotated(&root, old.id, TimeDelta::hours(1)).await;
    let states = |at| {
        let core = &fx.core;
        let root = root.clone();
        async move {
            let mut input = list_all();
            input.show_revoked = false;
            input.state = StateInput::Known(StateFilter::Revoked);
            let revoked = ok(core.list_tokens(&root, at, input).await).items.len();
            let counts = ok(core.token_counts(ACME, at).await);
            let active = counts
                .counts
                .iter()
                .find(|(kind, state, _)| *kind == TokenKind::Scrape && *state == TokenState::Active)
                .map(|(_, _, n)| *n);
            (revoked, active)
        }
    };
    assert_eq!(states(fx.now()).await, (0, Some(2)));
    assert_eq!(states(fx.now() + TimeDelta::hours(1)).await, (1, Some(1)));
}

#[tokio::test]
async fn the_name_is_freed_at_once_and_taken_by_the_new_token() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, _) = fx.made(&root, TokenKind::ServiceAccount, "deploy").await;
    let rotated = fx.rotated(&root, old.id, TimeDelta::days(1)).await;
    assert_eq!(rotated.token.name, "deploy");
    // The new token holds the name: a third "deploy" is refused.
    let again = fx
        .create(&root, create_input(TokenKind::ServiceAccount, "deploy"))
        .await;
    assert!(
        matches!(again, Err(ServiceError::AlreadyExists(_))),
        "{again:?}"
    );
}

#[tokio::test]
async fn one_transaction_writes_token_rotated_and_the_created_event() {
    let fx = Fixture::new();
    let alice = user(ACME, "alice");
    let (old, _) = fx.made(&alice, TokenKind::PersonalAccess, "laptop").await;
    let rotated = fx.rotated(&alice, old.id, TimeDelta::zero()).await;
    let events = fx.all_events(ACME).await;
    let tail: Vec<_> = events[1..]
        .iter()
        .map(|e| (e.event_type, e.token_id, e.replaced_by, e.reason.clone()))
        .collect();
    assert_eq!(
        tail,
        [
            (
                AuditEventType::TokenRotated,
                old.token_id,
                Some(rotated.token.token_id),
                Some("routine".to_owned())
            ),
            (
                AuditEventType::PersonalAccessTokenCreated,
                rotated.token.token_id,
                None,
                None
            ),
        ]
    );
    assert_eq!(events[1].token_kind, Some(TokenKind::PersonalAccess));
    assert_eq!(events[1].token_numeric_id, old.id);
}

#[tokio::test]
async fn a_revoke_during_the_overlap_brings_the_revocation_forward() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, old_secret) = fx.made(&root, TokenKind::Scrape, "s").await;
    fx.rotated(&root, old.id, TimeDelta::days(1)).await;
    fx.clock.advance(TimeDelta::minutes(1));
    let revoked = ok(fx.revoke(&root, revoke_input(&old, "leaked")).await);
    assert!(revoked.newly_revoked);
    assert_eq!(revoked.token.revoked_at, Some(fx.now()));
    assert_eq!(revoked.token.revoke_reason.as_deref(), Some("leaked"));
    assert!(matches!(
        fx.authenticates(&old_secret).await,
        Err(ServiceError::TokenRejected(TokenRejection::Revoked))
    ));
    let last = fx
        .all_events(ACME)
        .await
        .pop()
        .map(|e| (e.event_type, e.token_id));
    assert_eq!(
        last,
        Some((AuditEventType::ScrapeTokenRevoked, old.token_id))
    );
    // Idempotent from then on.
    let again = ok(fx.revoke(&root, revoke_input(&old, "")).await);
    assert!(!again.newly_revoked);
}

#[tokio::test]
async fn revoking_by_name_during_the_overlap_revokes_the_new_token() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, old_secret) = fx.made(&root, TokenKind::ServiceAccount, "deploy").await;
    let rotated = fx.rotated(&root, old.id, TimeDelta::days(1)).await;
    let revoked = ok(fx.revoke(&root, revoke_input(&old, "")).await);
    assert_eq!(
        revoked.token.id, rotated.token.id,
        "the name's current holder"
    );
    assert_eq!(ok(fx.authenticates(&old_secret).await).id, old.id);
    // A second revoke by name ends the overlap too.
    let second = ok(fx.revoke(&root, revoke_input(&old, "")).await);
    assert!(second.newly_revoked);
    assert_eq!(second.token.id, old.id);
}

#[tokio::test]
async fn of_concurrent_rotations_exactly_one_wins() {
    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, _) = fx.made(&root, TokenKind::Scrape, "s").await;
    let rotate = || fx.rotate(&root, rotate_input(old.id, None, ""));
    let (a, b, c) = tokio::join!(rotate(), rotate(), rotate());
    let results = [a, b, c];
    let won = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(ServiceError::NotRotatable(_))))
        .count();
    assert_eq!((won, refused), (1, 2));
    let rotations = fx
        .all_events(ACME)
        .await
        .iter()
        .filter(|e| e.event_type == AuditEventType::TokenRotated)
        .count();
    assert_eq!(rotations, 1);
}

#[tokio::test]
async fn the_stores_conditional_update_refuses_a_stale_rotation() {
    // The core saw the token rotatable; by the time the store looks,
    // another replica rotated it: the repository answers NotRotatable and
    // writes nothing.
    use crate::domain::repository::TokenRepository;
    use crate::domain::rotation::{RotateOutcome, Rotation};
    use crate::domain::token::NewToken;

    let fx = Fixture::new();
    let root = admin(ACME);
    let (old, _) = fx.made(&root, TokenKind::Scrape, "s").await;
    let rotation = Rotation {
        org_id: ACME.to_owned(),
        id: old.id,
        rotated_at: fx.now(),
        revoke_at: fx.now(),
        revoked_by: "root".to_owned(),
        reason: None,
    };
    let new = |seed: u8| NewToken {
        token_id: uuid::Uuid::from_bytes([seed; 16]),
        kind: old.kind,
        org_id: ACME.to_owned(),
        name: old.name.clone(),
        owner_user_id: old.owner_user_id.clone(),
        service_account_slug: None,
        workspace_id: None,
        scopes: Vec::new(),
        secret_hash: crate::domain::secret::TokenHash::from_slice(&[seed; 32]).unwrap(),
        created_at: fx.now(),
        expires_at: None,
        created_by: "root".to_owned(),
    };
    let audit = fx.audit(&root);
    let first = ok(fx.repository.rotate_token(&rotation, new(1), &audit).await);
    assert!(matches!(first, RotateOutcome::Rotated { .. }));
    let events = fx.repository.audit_events().len();
    let second = ok(fx.repository.rotate_token(&rotation, new(2), &audit).await);
    assert_eq!(second, RotateOutcome::NotRotatable);
    assert_eq!(fx.repository.audit_events().len(), events);
    assert_eq!(fx.repository.tokens().len(), 2);
}

#[tokio::test]
async fn a_revoke_counts_at_once_even_on_a_replica_whose_clock_is_behind() {
    // Only a rotation's scheduled revocation waits for its instant; a
    // revoke that happened is revoked on every replica, whatever its clock.
    let fx = Fixture::new();
    let root = admin(ACME);
    let (token, secret) = fx.made(&root, TokenKind::Scrape, "s").await;
    ok(fx.revoke(&root, revoke_input(&token, "")).await);
    let behind = fx.now() - TimeDelta::seconds(2);
    let result = fx
        .core
        .authenticate_secret(
            &AuditContext {
                now: behind,
                ..fx.scraper()
            },
            secret.expose(),
            AcceptedFamilies::Any,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(ServiceError::TokenRejected(TokenRejection::Revoked))
        ),
        "{result:?}"
    );
    // And a second revoke on that replica is idempotent, not a new event.
    let events = fx.repository.audit_events().len();
    let again = fx
        .core
        .revoke_token(
            &root,
            &AuditContext {
                now: behind,
                ..fx.audit(&root)
            },
            revoke_input(&token, ""),
        )
        .await;
    assert!(!ok(again).newly_revoked);
    assert_eq!(fx.repository.audit_events().len(), events);
}
