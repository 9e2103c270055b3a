//! The lifecycle rules of docs/reference.md ("Semantics" and the choices of
//! the permission table): idempotent revoke, active names, expiry, last use,
//! visibility, organisation confinement, families, pagination and storage
//! failures.

use super::*;

fn expect_not_found<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> String {
    match result {
        Err(error @ ServiceError::NotFound(_)) => error.to_string(),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}

fn expect_rejection<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> TokenRejection {
    match result {
        Err(ServiceError::TokenRejected(why)) => why,
        other => panic!("expected a rejected token, got {other:?}"),
    }
}

fn ok<T>(result: Result<T, ServiceError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{error:?}"),
    }
}

fn events_of(events: &[AuditEvent], event_type: AuditEventType) -> usize {
    events.iter().filter(|e| e.event_type == event_type).count()
}

/// Revoking a revoked token answers OK with the original revoke time and
/// writes no second event, for every family.
#[tokio::test]
async fn revoke_is_idempotent_with_the_original_time_and_one_event() {
    for kind in TokenKind::ALL {
        let fx = Fixture::new();
        let who = admin(ACME);
        let (token, _) = fx.made(&who, kind, "twice").await;
        let first = ok(fx.revoke(&who, revoke_input(&token, "first")).await);
        assert!(first.newly_revoked, "{kind:?}");
        let revoked_at = first.token.revoked_at;
        assert_eq!(revoked_at, Some(start_time()), "{kind:?}");
        assert_eq!(first.token.revoke_reason.as_deref(), Some("first"));
        fx.clock.advance(TimeDelta::minutes(5));
        let second = ok(fx.revoke(&who, revoke_input(&token, "second")).await);
        assert!(!second.newly_revoked, "{kind:?}");
        assert_eq!(
            second.token.revoked_at, revoked_at,
            "{kind:?}: original time"
        );
        assert_eq!(second.token.revoke_reason.as_deref(), Some("first"));
        let events = fx.all_events(ACME).await;
        assert_eq!(events_of(&events, kind.revoked_event()), 1, "{kind:?}");
        let event = &events[1];
        assert_eq!(event.token_numeric_id, token.id);
        assert_eq!(event.reason.as_deref(), Some("first"));
        assert_eq!(event.request_id, "req-root");
        assert_eq!(event.occurred_at, start_time());
    }
}

/// Every create writes its `*_created` event with the caller and the
/// request id; the owner is the caller.
#[tokio::test]
async fn a_create_writes_its_event_and_owns_the_token_to_the_caller() {
    for kind in TokenKind::ALL {
        let fx = Fixture::new();
        let who = admin(ACME);
        let (token, secret) = fx.made(&who, kind, "made").await;
        assert_eq!(token.owner_user_id, "root");
        assert_eq!(token.created_by, "root");
        assert_eq!(token.org_id, ACME);
        assert_eq!(secret.kind(), kind);
        let events = fx.all_events(ACME).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, kind.created_event());
        assert_eq!(events[0].actor, "root");
        assert_eq!(events[0].token_id, token.token_id);
        assert_eq!(events[0].token_kind, Some(kind));
    }
}

/// An active name is unique per service account and per workspace, taken
/// while the token is active or expired, free again once it is revoked.
#[tokio::test]
async fn active_names_are_unique_until_revoked() {
    for kind in [TokenKind::ServiceAccount, TokenKind::WorkspaceApiKey] {
        let fx = Fixture::new();
        let who = admin(ACME);
        let mut expiring = create_input(kind, "deploy");
        expiring.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::seconds(5)));
        let (first, _) = ok(fx.create(&who, expiring).await);
        fx.clock.advance(TimeDelta::seconds(10));
        assert_eq!(
            first.state_at(fx.now()),
            crate::domain::token::TokenState::Expired
        );
        match fx.create(&who, create_input(kind, "deploy")).await {
            Err(ServiceError::AlreadyExists(resource)) => {
                let expected = match kind {
                    TokenKind::ServiceAccount => "serviceAccounts/ci/tokens/deploy",
                    _ => "workspaces/g-00000000aa/apiKeys/deploy",
                };
                assert_eq!(resource.name, expected);
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert_eq!(fx.repository.tokens().len(), 1, "{kind:?}: nothing written");
        assert_eq!(fx.repository.audit_events().len(), 1, "{kind:?}");

        // Another service account or workspace, or another organisation:
        // the name is free there.
        let mut elsewhere = create_input(kind, "deploy");
        match kind {
            TokenKind::ServiceAccount => elsewhere.service_account_slug = "other".into(),
            _ => elsewhere.workspace_id = "g-00000000bb".into(),
        }
        ok(fx.create(&who, elsewhere).await);
        ok(fx.create(&admin(EVIL), create_input(kind, "deploy")).await);

        // Revoked, the name is free; the new token is what the name
        // revokes next, and then the latest revocation answers.
        ok(fx.revoke(&who, revoke_input(&first, "")).await);
        let (second, _) = ok(fx.create(&who, create_input(kind, "deploy")).await);
        fx.clock.advance(TimeDelta::seconds(10));
        let revoked = ok(fx.revoke(&who, revoke_input(&second, "")).await);
        assert!(revoked.newly_revoked);
        assert_eq!(revoked.token.id, second.id);
        let again = ok(fx.revoke(&who, revoke_input(&second, "")).await);
        assert!(!again.newly_revoked);
        assert_eq!(again.token.id, second.id, "{kind:?}: the latest revoked");
    }
}

/// Scrape and personal access token names need not be unique.
#[tokio::test]
async fn scrape_and_personal_names_may_repeat() {
    let fx = Fixture::new();
    let who = admin(ACME);
    for kind in [TokenKind::Scrape, TokenKind::PersonalAccess] {
        fx.made(&who, kind, "same").await;
        fx.made(&who, kind, "same").await;
    }
    assert_eq!(fx.repository.tokens().len(), 4);
}

/// A token expires when the clock reaches its expire time; revoked wins
/// over expired.
#[tokio::test]
async fn expiry_follows_the_clock_and_revocation_wins() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let introspector = caller(EVIL, "gateway", &[], &["tokens_introspect"]);
    let mut input = create_input(TokenKind::Scrape, "short");
    input.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::seconds(10)));
    let (token, secret) = ok(fx.create(&who, input).await);
    let authenticate = || async {
        fx.core
            .authenticate_token(
                &introspector,
                &fx.audit(&introspector),
                AuthenticateInput::secret(secret.expose()),
            )
            .await
    };
    ok(authenticate().await);
    fx.clock.advance(TimeDelta::seconds(9));
    ok(authenticate().await);
    fx.clock.advance(TimeDelta::seconds(1));
    assert_eq!(
        expect_rejection(authenticate().await),
        TokenRejection::Expired
    );
    // An expired token can be revoked, and then it is revoked.
    ok(fx.revoke(&who, revoke_input(&token, "")).await);
    assert_eq!(
        expect_rejection(authenticate().await),
        TokenRejection::Revoked
    );
}

/// A secret's use is recorded at most once a minute: within the minute the
/// core only reads, and the background writer moves `last_used` on.
#[tokio::test]
async fn last_use_is_recorded_at_most_once_a_minute() {
    let mut fx = Fixture::new();
    let writer = fx
        .writer
        .take()
        .map(|writer| tokio::spawn(writer.run(fx.repository.clone())));
    let introspector = caller(ACME, "gateway", &[], &["tokens_introspect"]);
    let (token, secret) = fx
        .made(&admin(ACME), TokenKind::PersonalAccess, "used")
        .await;
    let stored_last_use = |fx: &Fixture| {
        fx.repository
            .tokens()
            .into_iter()
            .find(|t| t.id == token.id)
            .and_then(|t| t.last_used_at)
    };
    let touches = |fx: &Fixture| {
        fx.repository
            .calls()
            .into_iter()
            .filter(|call| *call == RepositoryCall::TouchLastUsed)
            .count()
    };
    // Lets the writer drain the queue (a bounded wait).
    async fn settle(fx: &Fixture, touches_wanted: usize, touches: impl Fn(&Fixture) -> usize) {
        for _ in 0..1000 {
            if touches(fx) >= touches_wanted {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    let first = ok(fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(secret.expose()),
        )
        .await);
    assert_eq!(first.last_used_at, Some(start_time()));
    settle(&fx, 1, touches).await;
    assert_eq!(stored_last_use(&fx), Some(start_time()));

    fx.clock.advance(TimeDelta::seconds(59));
    let within = ok(fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(secret.expose()),
        )
        .await);
    assert_eq!(
        within.last_used_at,
        Some(start_time()),
        "within the minute: only read"
    );
    fx.clock.advance(TimeDelta::seconds(1));
    let at_the_minute = ok(fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(secret.expose()),
        )
        .await);
    assert_eq!(
        at_the_minute.last_used_at,
        Some(start_time()),
        "not yet stale"
    );
    settle(&fx, 2, touches).await;
    assert_eq!(touches(&fx), 1, "nothing queued within the minute");

    fx.clock.advance(TimeDelta::seconds(1));
    let later = fx.now();
    let after = ok(fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(secret.expose()),
        )
        .await);
    assert_eq!(after.last_used_at, Some(later));
    settle(&fx, 2, touches).await;
    assert_eq!(touches(&fx), 2);
    assert_eq!(stored_last_use(&fx), Some(later));
    assert_eq!(fx.core.last_use().stats().dropped(), 0);
    if let Some(writer) = writer {
        writer.abort();
    }
}

/// With `user_app_keys` only, another user's personal token does not exist:
/// NOT_FOUND to read and revoke, absent from lists, and left unchanged.
#[tokio::test]
async fn another_users_personal_token_is_not_found() {
    let fx = Fixture::new();
    let alice = user(ACME, "alice");
    let bob = user(ACME, "bob");
    let (bobs, _) = fx.made(&bob, TokenKind::PersonalAccess, "bobs").await;
    let (own, _) = fx.made(&alice, TokenKind::PersonalAccess, "mine").await;
    fx.made(&admin(ACME), TokenKind::Scrape, "not personal")
        .await;
    expect_not_found(fx.core.get_token(&alice, bobs.id).await);
    expect_not_found(fx.revoke(&alice, revoke_input(&bobs, "")).await);
    let listed = ok(fx.core.list_tokens(&alice, fx.now(), list_all()).await);
    let ids: Vec<i64> = listed.items.iter().map(|t| t.id).collect();
    assert_eq!(ids, [own.id], "only the caller's own personal tokens");
    assert_eq!(fx.repository.audit_events().len(), 3, "no revoke event");
    assert!(fx.no_token_revoked());
}

/// Another organisation's admin finds nothing: every RPC that names a token
/// is NOT_FOUND with the very message a missing token gets, lists are
/// empty, and nothing changes.
#[tokio::test]
async fn another_organisation_gets_not_found_for_every_rpc() {
    let fx = Fixture::new();
    let owner = admin(ACME);
    let intruder = admin(EVIL);
    let mut tokens = Vec::new();
    for kind in TokenKind::ALL {
        tokens.push(fx.made(&owner, kind, "shared-name").await.0);
    }
    let before = (fx.repository.tokens(), fx.repository.audit_events());
    for token in &tokens {
        let foreign = expect_not_found(fx.core.get_token(&intruder, token.id).await);
        let missing = expect_not_found(fx.core.get_token(&intruder, token.id + 1000).await);
        assert_eq!(
            foreign.replace(&token.id.to_string(), "N"),
            missing.replace(&(token.id + 1000).to_string(), "N")
        );
        expect_not_found(fx.revoke(&intruder, revoke_input(token, "attack")).await);
    }
    assert!(
        ok(fx.core.list_tokens(&intruder, fx.now(), list_all()).await)
            .items
            .is_empty()
    );
    assert!(
        ok(fx.core.list_audit_events(&intruder, all_events()).await)
            .items
            .is_empty()
    );
    assert_eq!(
        (fx.repository.tokens(), fx.repository.audit_events()),
        before
    );
}

/// A revoke RPC finds only tokens of its own family: a personal access
/// token's id given to RevokeScrapeToken is NOT_FOUND.
#[tokio::test]
async fn a_revoke_rpc_finds_only_its_own_family() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let (personal, _) = fx.made(&who, TokenKind::PersonalAccess, "p").await;
    expect_not_found(
        fx.revoke(
            &who,
            RevokeInput::Scrape {
                id: personal.id,
                reason: String::new(),
            },
        )
        .await,
    );
    let (service, _) = fx.made(&who, TokenKind::ServiceAccount, "same").await;
    expect_not_found(
        fx.revoke(
            &who,
            RevokeInput::WorkspaceApiKey {
                workspace_id: WORKSPACE.into(),
                key_name: service.name.clone(),
                reason: String::new(),
            },
        )
        .await,
    );
    assert!(fx.no_token_revoked());
}

/// The metrics endpoint accepts scrape tokens only: a secret of another
/// family is Unknown whatever its state, decided before any read, and
/// nothing is written.
#[tokio::test]
async fn the_metrics_endpoint_accepts_only_scrape_tokens() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let scrape_only = AcceptedFamilies::Only(TokenKind::Scrape);
    let (_, scrape) = fx.made(&who, TokenKind::Scrape, "prometheus").await;
    for kind in [
        TokenKind::PersonalAccess,
        TokenKind::ServiceAccount,
        TokenKind::WorkspaceApiKey,
    ] {
        let (token, secret) = fx.made(&who, kind, "other").await;
        fx.repository.clear_calls();
        let refused = fx
            .core
            .authenticate_secret(&fx.scraper(), secret.expose(), scrape_only)
            .await;
        assert_eq!(
            expect_rejection(refused),
            TokenRejection::Unknown,
            "{kind:?}"
        );
        assert_eq!(fx.repository.calls(), [], "{kind:?}: no read, no write");
        ok(fx.revoke(&who, revoke_input(&token, "")).await);
        fx.repository.clear_calls();
        let revoked = fx
            .core
            .authenticate_secret(&fx.scraper(), secret.expose(), scrape_only)
            .await;
        assert_eq!(
            expect_rejection(revoked),
            TokenRejection::Unknown,
            "{kind:?} revoked"
        );
        assert_eq!(fx.repository.calls(), [], "{kind:?}: no read, no write");
    }
    let accepted = ok(fx
        .core
        .authenticate_secret(&fx.scraper(), scrape.expose(), scrape_only)
        .await);
    assert_eq!(accepted.kind, TokenKind::Scrape);
}

/// AuthenticateToken: the permission first, then the secret; a malformed
/// secret costs no read, an unknown one a single read, and neither writes.
#[tokio::test]
async fn authenticate_token_checks_the_permission_then_the_secret() {
    let fx = Fixture::new();
    let introspector = caller(ACME, "gateway", &[], &["tokens_introspect"]);
    match fx
        .core
        .authenticate_token(
            &admin(ACME),
            &fx.audit(&admin(ACME)),
            AuthenticateInput::secret("hunter2"),
        )
        .await
    {
        Err(ServiceError::PermissionDenied { permission }) => {
            assert_eq!(permission, "tokens_introspect");
        }
        other => panic!("{other:?}"),
    }
    let malformed = fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret("hunter2"),
        )
        .await;
    assert!(matches!(
        expect_rejection(malformed),
        TokenRejection::Malformed(_)
    ));
    assert_eq!(fx.repository.calls(), []);
    let unknown =
        ok(TokenSecret::generate(TokenKind::Scrape).map_err(|e| ServiceError::Internal(e.into())));
    let refused = fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(unknown.expose()),
        )
        .await;
    assert_eq!(expect_rejection(refused), TokenRejection::Unknown);
    assert_eq!(fx.repository.calls(), [RepositoryCall::FindByHash]);
}

/// Fields are checked before the permission: a caller without it still
/// learns about a malformed request, and storage is never reached.
#[tokio::test]
async fn fields_are_checked_before_the_permission() {
    let fx = Fixture::new();
    let nobody = caller(ACME, "nobody", &[], &[]);
    let result = fx.core.get_token(&nobody, 0).await;
    assert_eq!(violations(result), Ok(vec!["id".to_owned()]));
    let denied = fx.core.get_token(&nobody, 1).await;
    assert!(
        matches!(denied, Err(ServiceError::PermissionDenied { .. })),
        "{denied:?}"
    );
    assert_eq!(fx.repository.calls(), []);
}

/// Pages visit every token once, oldest first, and hide revoked tokens
/// unless asked.
#[tokio::test]
async fn pages_visit_every_token_once_in_id_order() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(fx.made(&who, TokenKind::Scrape, &format!("t{n}")).await.0);
        fx.made(&admin(EVIL), TokenKind::Scrape, "elsewhere").await;
    }
    ok(fx.revoke(&who, revoke_input(&made[2], "")).await);
    for show_revoked in [false, true] {
        let mut seen = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let input = ListTokensInput {
                page_size: 2,
                page_token,
                show_revoked,
                ..list_all()
            };
            let page: Page<Token> = ok(fx.core.list_tokens(&who, fx.now(), input).await);
            pages += 1;
            seen.extend(page.items.iter().map(|t| t.id));
            match page.next_page_token {
                Some(next) => page_token = next,
                None => break,
            }
        }
        let expected: Vec<i64> = made
            .iter()
            .filter(|t| show_revoked || t.id != made[2].id)
            .map(|t| t.id)
            .collect();
        assert_eq!(seen, expected, "show_revoked {show_revoked}");
        assert!(pages <= 3, "{pages} pages");
    }
}

/// A page token is valid only for the listing, organisation and filters it
/// was returned for.
#[tokio::test]
async fn page_tokens_are_bound_to_their_listing() {
    let fx = Fixture::new();
    let who = admin(ACME);
    for n in 0..3 {
        fx.made(&who, TokenKind::Scrape, &format!("t{n}")).await;
    }
    let first = ok(fx
        .core
        .list_tokens(
            &who,
            fx.now(),
            ListTokensInput {
                page_size: 1,
                ..list_all()
            },
        )
        .await);
    let Some(next) = first.next_page_token else {
        panic!("a second page");
    };
    let reuse = |show_revoked: bool| ListTokensInput {
        page_size: 1,
        page_token: next.clone(),
        show_revoked,
        ..list_all()
    };
    ok(fx.core.list_tokens(&who, fx.now(), reuse(true)).await);
    fx.repository.clear_calls();
    let other_filter = fx.core.list_tokens(&who, fx.now(), reuse(false)).await;
    assert_eq!(violations(other_filter), Ok(vec!["page_token".to_owned()]));
    let other_org = fx
        .core
        .list_tokens(&admin(EVIL), fx.now(), reuse(true))
        .await;
    assert_eq!(violations(other_org), Ok(vec!["page_token".to_owned()]));
    let audit = ListAuditEventsInput {
        page_token: next.clone(),
        ..all_events()
    };
    let other_listing = fx.core.list_audit_events(&who, audit).await;
    assert_eq!(violations(other_listing), Ok(vec!["page_token".to_owned()]));
    assert_eq!(fx.repository.calls(), []);
}

/// Until the page-token key is loaded, lists are UNAVAILABLE.
#[tokio::test]
async fn lists_wait_for_the_page_token_key() {
    let fx = Fixture::without_page_token_key();
    let listed = fx
        .core
        .list_tokens(&admin(ACME), fx.now(), list_all())
        .await;
    assert!(
        matches!(listed, Err(ServiceError::Unavailable { .. })),
        "{listed:?}"
    );
    let events = fx.core.list_audit_events(&admin(ACME), all_events()).await;
    assert!(
        matches!(events, Err(ServiceError::Unavailable { .. })),
        "{events:?}"
    );
    assert!(
        fx.core
            .install_page_token_key(fx.repository.load_page_token_key())
    );
    assert!(
        !fx.core
            .install_page_token_key(fx.repository.load_page_token_key())
    );
    ok(fx
        .core
        .list_tokens(&admin(ACME), fx.now(), list_all())
        .await);
}

/// Audit events filter by type and page by id within the organisation.
#[tokio::test]
async fn audit_events_filter_by_type() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let (token, _) = fx.made(&who, TokenKind::WorkspaceApiKey, "key").await;
    fx.made(&who, TokenKind::Scrape, "s").await;
    ok(fx.revoke(&who, revoke_input(&token, "rotated")).await);
    let deleted = ok(fx
        .core
        .list_audit_events(
            &who,
            ListAuditEventsInput {
                event_type: "workspace_api_key_deleted".into(),
                ..all_events()
            },
        )
        .await);
    assert_eq!(deleted.items.len(), 1);
    assert_eq!(deleted.items[0].reason.as_deref(), Some("rotated"));
    let ids: Vec<i64> = fx.all_events(ACME).await.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3]);
}

/// Storage failures reach the caller classified: unavailable is
/// UNAVAILABLE (retry), anything else INTERNAL; nothing half-done stays.
#[tokio::test]
async fn storage_failures_are_classified() {
    let fx = Fixture::new();
    let who = admin(ACME);
    let introspector = caller(ACME, "gateway", &[], &["tokens_introspect"]);
    let (token, secret) = fx.made(&who, TokenKind::Scrape, "s").await;

    fx.repository
        .fail_next_with(StoreError::Unavailable("down".into()));
    let created = fx.create(&who, create_input(TokenKind::Scrape, "t")).await;
    assert!(
        matches!(created, Err(ServiceError::Unavailable { .. })),
        "{created:?}"
    );

    fx.repository
        .fail_next_with(StoreError::Other("broken".into()));
    let revoked = fx.revoke(&who, revoke_input(&token, "")).await;
    assert!(
        matches!(revoked, Err(ServiceError::Internal(_))),
        "{revoked:?}"
    );

    fx.repository
        .fail_next_with(StoreError::Unavailable("down".into()));
    let authenticated = fx
        .core
        .authenticate_token(
            &introspector,
            &fx.audit(&introspector),
            AuthenticateInput::secret(secret.expose()),
        )
        .await;
    assert!(
        matches!(authenticated, Err(ServiceError::Unavailable { .. })),
        "{authenticated:?}"
    );

    // A unique violation the core does not expect (here on revoke) is
    // INTERNAL, never ALREADY_EXISTS.
    fx.repository.fail_next_with(StoreError::Conflict);
    let conflict = fx.revoke(&who, revoke_input(&token, "")).await;
    assert!(
        matches!(conflict, Err(ServiceError::Internal(_))),
        "{conflict:?}"
    );

    assert_eq!(fx.repository.tokens().len(), 1);
    assert!(fx.repository.tokens()[0].revoked_at.is_none());
    assert_eq!(fx.repository.audit_events().len(), 1);
}

/// Token counts of one organisation, by kind and state at `now`.
#[tokio::test]
async fn token_counts_are_by_kind_and_state() {
    use crate::domain::token::TokenState;
    let fx = Fixture::new();
    let who = admin(ACME);
    let (revoked, _) = fx.made(&who, TokenKind::Scrape, "a").await;
    fx.made(&who, TokenKind::Scrape, "b").await;
    let mut soon = create_input(TokenKind::Scrape, "c");
    soon.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::days(1)));
    ok(fx.create(&who, soon).await);
    ok(fx.revoke(&who, revoke_input(&revoked, "")).await);
    fx.made(&admin(EVIL), TokenKind::Scrape, "elsewhere").await;
    let counts = ok(fx.core.token_counts(ACME, fx.now()).await);
    let of = |state| {
        counts
            .counts
            .iter()
            .find(|(kind, s, _)| *kind == TokenKind::Scrape && *s == state)
            .map(|(_, _, n)| *n)
    };
    assert_eq!(of(TokenState::Active), Some(2));
    assert_eq!(of(TokenState::Revoked), Some(1));
    assert_eq!(of(TokenState::Expired), Some(0));
    assert!(counts.expiring_soon.contains(&(TokenKind::Scrape, 1)));
    let later = ok(fx
        .core
        .token_counts(ACME, fx.now() + TimeDelta::days(2))
        .await);
    assert!(
        later
            .counts
            .contains(&(TokenKind::Scrape, TokenState::Expired, 1))
    );
}
