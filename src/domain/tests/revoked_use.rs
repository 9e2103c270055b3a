//! Use after revoke: presenting a revoked token (AuthenticateToken, or the
//! metrics endpoint's scrape-token check) writes `revoked_token_used` in
//! the token's organisation at most once a minute per token, off the
//! request path: a failed write changes no answer.

use super::*;

const INTROSPECTOR: &str = "gateway";

fn introspector() -> Caller {
    caller(EVIL, INTROSPECTOR, &[], &["tokens_introspect"])
}

/// Starts the fixture's background writer.
fn run_writer(fx: &mut Fixture) -> Option<tokio::task::JoinHandle<()>> {
    fx.writer
        .take()
        .map(|writer| tokio::spawn(writer.run(fx.repository.clone())))
}

/// How often the writer was asked to record a revoked use.
fn record_calls(repository: &MemoryRepository) -> usize {
    repository
        .calls()
        .into_iter()
        .filter(|call| *call == RepositoryCall::RecordRevokedUse)
        .count()
}

/// Lets the writer drain its queue until `done` (a bounded wait).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// The `revoked_token_used` events of every organisation.
fn used_events(repository: &MemoryRepository) -> Vec<AuditEvent> {
    repository
        .audit_events()
        .into_iter()
        .filter(|e| e.event_type == AuditEventType::RevokedTokenUsed)
        .collect()
}

async fn authenticate(fx: &Fixture, secret: &TokenSecret) -> Result<Token, ServiceError> {
    let who = introspector();
    fx.core
        .authenticate_token(
            &who,
            &fx.audit(&who),
            AuthenticateInput::secret(secret.expose()),
        )
        .await
}

fn rejection(result: Result<Token, ServiceError>) -> TokenRejection {
    match result {
        Err(ServiceError::TokenRejected(why)) => why,
        other => panic!("expected a rejected token, got {other:?}"),
    }
}

/// A revoked scrape token of `acme` and its secret.
async fn revoked_scrape_token(fx: &Fixture) -> (Token, TokenSecret) {
    let root = admin(ACME);
    let (token, secret) = fx.made(&root, TokenKind::Scrape, "leaked").await;
    if let Err(error) = fx.revoke(&root, revoke_input(&token, "leaked")).await {
        panic!("set-up: {error:?}");
    }
    (token, secret)
}

/// One event per token per minute: the first presentation writes it (in
/// the token's organisation, naming the presenter and the request), the
/// next ones within the minute reach neither the writer nor the database,
/// and a minute later there is a second one.
#[tokio::test]
async fn a_revoked_token_presented_again_and_again_writes_one_event_a_minute() {
    let mut fx = Fixture::new();
    let _writer = run_writer(&mut fx);
    let (token, secret) = revoked_scrape_token(&fx).await;

    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| !used_events(&fx.repository).is_empty()).await;
    let events = used_events(&fx.repository);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.org_id, ACME, "in the token's organisation");
    assert_eq!(event.token_id, token.token_id);
    assert_eq!(event.token_kind, Some(TokenKind::Scrape));
    assert_eq!(event.actor, INTROSPECTOR);
    assert_eq!(event.request_id, format!("req-{INTROSPECTOR}"));
    assert_eq!(event.occurred_at, fx.now());
    assert_eq!(event.reason, None);
    assert_eq!(fx.all_events(ACME).await.last(), Some(event));

    for step in [0, 1, 29, 28] {
        fx.clock.advance(TimeDelta::seconds(step));
        for _ in 0..50 {
            assert_eq!(
                rejection(authenticate(&fx, &secret).await),
                TokenRejection::Revoked
            );
        }
    }
    // 58 s in; then a millisecond short of the minute.
    fx.clock.advance(TimeDelta::milliseconds(1_999));
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| false).await;
    assert_eq!(used_events(&fx.repository).len(), 1);
    assert_eq!(
        record_calls(&fx.repository),
        1,
        "the flood stopped before the database"
    );

    // At the minute itself: not yet (as `last_used_time`).
    fx.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| false).await;
    assert_eq!(used_events(&fx.repository).len(), 1);

    fx.clock.advance(TimeDelta::milliseconds(1));
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| used_events(&fx.repository).len() >= 2).await;
    let events = used_events(&fx.repository);
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].occurred_at,
        start_time() + TimeDelta::milliseconds(60_001)
    );
}

/// The metrics endpoint's check (scrape tokens only) records the use too,
/// with no actor; the two paths share the once-a-minute budget.
#[tokio::test]
async fn the_metrics_endpoint_path_records_the_use_too() {
    let mut fx = Fixture::new();
    let _writer = run_writer(&mut fx);
    let (token, secret) = revoked_scrape_token(&fx).await;
    let scrape_only = AcceptedFamilies::Only(TokenKind::Scrape);
    let refused = fx
        .core
        .authenticate_secret(&fx.scraper(), secret.expose(), scrape_only)
        .await;
    assert_eq!(rejection(refused), TokenRejection::Revoked);
    settle(|| !used_events(&fx.repository).is_empty()).await;
    let events = used_events(&fx.repository);
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].actor.as_str(), events[0].token_id),
        ("", token.token_id)
    );
    assert_eq!(events[0].request_id, "req-scrape");

    fx.clock.advance(TimeDelta::seconds(30));
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| false).await;
    assert_eq!(used_events(&fx.repository).len(), 1);
}

/// Active, expired and unknown tokens write no such event.
#[tokio::test]
async fn only_revoked_tokens_are_recorded() {
    let mut fx = Fixture::new();
    let _writer = run_writer(&mut fx);
    let root = admin(ACME);
    let (_, active) = fx.made(&root, TokenKind::PersonalAccess, "active").await;
    let mut short = create_input(TokenKind::PersonalAccess, "short");
    short.expire_time = Some(TimestampInput::Valid(start_time() + TimeDelta::seconds(1)));
    let (_, expiring) = match fx.create(&root, short).await {
        Ok(made) => made,
        Err(error) => panic!("{error:?}"),
    };
    fx.clock.advance(TimeDelta::seconds(2));
    assert!(authenticate(&fx, &active).await.is_ok());
    assert_eq!(
        rejection(authenticate(&fx, &expiring).await),
        TokenRejection::Expired
    );
    settle(|| false).await;
    assert_eq!(record_calls(&fx.repository), 0);
    assert!(used_events(&fx.repository).is_empty());
}

/// Two replicas (two cores, each with its own pre-check and writer, over
/// one store) presenting the same revoked token within a minute: both ask
/// the store, which writes one event.
#[tokio::test]
async fn replicas_share_the_once_a_minute_rule_through_the_store() {
    let mut fx = Fixture::new();
    let _writer = run_writer(&mut fx);
    let (recorder, writer) = LastUseRecorder::new(LAST_USE_QUEUE_CAPACITY);
    let other_replica = new_lifecycle(fx.repository.clone(), recorder);
    let _other_writer = tokio::spawn(writer.run(fx.repository.clone()));
    let (_, secret) = revoked_scrape_token(&fx).await;

    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    fx.clock.advance(TimeDelta::seconds(20));
    let who = introspector();
    let refused = other_replica
        .authenticate_token(
            &who,
            &fx.audit(&who),
            AuthenticateInput::secret(secret.expose()),
        )
        .await;
    assert_eq!(rejection(refused), TokenRejection::Revoked);
    settle(|| record_calls(&fx.repository) >= 2).await;
    assert_eq!(record_calls(&fx.repository), 2, "each replica asked once");
    assert_eq!(used_events(&fx.repository).len(), 1, "the store wrote once");
}

/// A failed write is counted and logged; the answer was TOKEN_REVOKED all
/// the same, and the next minute's presentation is recorded.
#[tokio::test]
async fn a_failed_write_changes_no_answer() {
    let mut fx = Fixture::new();
    let (_, secret) = revoked_scrape_token(&fx).await;
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    // The writer starts after the answer, and its first write fails.
    fx.repository
        .fail_next_with(StoreError::Unavailable("read-only standby".into()));
    let stats = fx.core.last_use().shared_stats();
    let _writer = run_writer(&mut fx);
    settle(|| stats.failed() >= 1).await;
    assert_eq!(stats.failed(), 1);
    assert!(used_events(&fx.repository).is_empty());

    fx.clock.advance(TimeDelta::seconds(61));
    assert_eq!(
        rejection(authenticate(&fx, &secret).await),
        TokenRejection::Revoked
    );
    settle(|| !used_events(&fx.repository).is_empty()).await;
    assert_eq!(used_events(&fx.repository).len(), 1);
}
