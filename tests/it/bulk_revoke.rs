//! RevokeTokens, RevokeTokenBySecret and `revoked_token_used` over the wire
//! on both databases: bulk revokes in pages of 1000 with one event per
//! token (also when two calls race), dry runs that change nothing, a leaked
//! secret revoked from another organisation, and use after revoke recorded
//! once a minute per token, from AuthenticateToken and the metrics endpoint,
//! across replicas.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use tonic::Code;

use tokend::domain::token::{NewToken, Revocation};
use tokend::domain::{Clock, TokenKind, TokenSecret};
use tokend::grpc::proto::{
    self, AuthenticateTokenRequest, CreateTokenRequest, RevokeTokenBySecretRequest,
    RevokeTokensRequest, RevokeTokensResponse, RotateTokenRequest, TokenKind as ProtoKind,
};
use tokend::store::{SeaStore, SeedHistory, SeededRevocation};

use crate::backend_tests;
use crate::http_client::get;
use crate::support::{
    Backend, TestResult, TestServer, all_events, all_tokens, authed, expect_error, scrape_request,
};

backend_tests!(
    bulk_revoke_pages_through_thousands_with_one_event_each,
    racing_bulk_revokes_write_one_event_per_token,
    a_leaked_secret_is_revoked_in_its_own_organisation,
    malformed_and_unknown_secrets_are_refused_without_echo,
    a_revocation_still_ahead_is_brought_forward_by_secret,
    a_revoked_token_in_use_is_reported_once_a_minute,
);

const ORG: &str = "bulk";
const LEAVER: &str = "leaver";
const TENANT_METRICS: &str = "/api/metrics/prometheus";

/// `count` personal access tokens of `owner` in `ORG`, made a day ago.
fn personal_tokens(owner: &str, count: usize) -> Vec<NewToken> {
    let now = Utc::now();
    (0..count)
        .map(|i| {
            let secret = TokenSecret::generate(TokenKind::PersonalAccess).expect("random source");
            NewToken {
                token_id: uuid::Uuid::new_v4(),
                kind: TokenKind::PersonalAccess,
                org_id: ORG.to_owned(),
                name: format!("{owner}-{i}"),
                owner_user_id: owner.to_owned(),
                service_account_slug: None,
                workspace_id: None,
                scopes: vec!["repo:read".to_owned()],
                secret_hash: secret.hash(),
                created_at: now - TimeDelta::days(1),
                expires_at: None,
                created_by: owner.to_owned(),
            }
        })
        .collect()
}

/// Seeds `tokens` with `history`; their UUIDs in seeding (id) order.
async fn seed(server: &TestServer, tokens: Vec<NewToken>, history: SeedHistory) -> Vec<String> {
    let store = SeaStore::connect_for_seeding(&server.db.url)
        .await
        .expect("seeding connection");
    let uuids: Vec<String> = tokens.iter().map(|t| t.token_id.to_string()).collect();
    let ids = store.seed_tokens(tokens, &history).await.expect("seeded");
    store.close().await.expect("closed");
    // `seed_tokens` answers in input order; ids grow with it.
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    uuids
}

fn revoke_leaver(dry_run: bool) -> RevokeTokensRequest {
    RevokeTokensRequest {
        owner_user_id: LEAVER.to_owned(),
        kind: proto::TokenKind::PersonalAccess as i32,
        reason: "left the company".to_owned(),
        dry_run,
        ..RevokeTokensRequest::default()
    }
}

async fn revoke_tokens(
    server: &TestServer,
    jwt: &str,
    request: RevokeTokensRequest,
) -> Result<RevokeTokensResponse, tonic::Status> {
    server
        .client()
        .revoke_tokens(authed(request, jwt))
        .await
        .map(tonic::Response::into_inner)
}

/// The `token_id`s of `ORG`'s events of `event_type`, in event order.
async fn events_of(server: &TestServer, admin: &str, event_type: &str) -> Vec<String> {
    all_events(server, admin)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .map(|e| e.token_id)
        .collect()
}

/// 2,050 active tokens of one owner (seeded), among tokens the selectors
/// must leave alone: another owner's, an already revoked one, an expired
/// one, another organisation's. A dry run lists the first 1000 and changes
/// nothing; three calls revoke 1000, 1000 and 50, oldest first, each token
/// once, with one event each and the same reason; a fourth finds nothing.
async fn bulk_revoke_pages_through_thousands_with_one_event_each(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin(ORG);
    let targets = seed(
        &server,
        personal_tokens(LEAVER, 2_050),
        SeedHistory::default(),
    )
    .await;
    seed(
        &server,
        personal_tokens("stayer", 3),
        SeedHistory::default(),
    )
    .await;
    let revoked_before = Revocation {
        revoked_by: "someone".to_owned(),
        reason: None,
    };
    seed(
        &server,
        personal_tokens(LEAVER, 2),
        SeedHistory {
            last_used_at: None,
            revoked: Some(SeededRevocation {
                revoked_at: Utc::now() - TimeDelta::hours(1),
                revocation: revoked_before,
            }),
        },
    )
    .await;
    let mut expired = personal_tokens(LEAVER, 1);
    expired[0].expires_at = Some(Utc::now() - TimeDelta::hours(1));
    seed(&server, expired, SeedHistory::default()).await;
    let other_org = server.admin("elsewhere");
    let mut theirs = server
        .client()
        .create_token(authed(
            CreateTokenRequest {
                kind: proto::TokenKind::PersonalAccess as i32,
                name: "theirs".to_owned(),
                ..Default::default()
            },
            &server.jwt("elsewhere", LEAVER, &[], &["user_app_keys"]),
        ))
        .await?
        .into_inner();
    let theirs = theirs.token.take().expect("token");

    let tokens_before = all_tokens(&server, &admin).await?;
    let events_before = all_events(&server, &admin).await?;
    let dry = revoke_tokens(&server, &admin, revoke_leaver(true)).await?;
    assert_eq!((dry.revoked_count, dry.more), (1000, true));
    assert_eq!(dry.token_ids, targets[..1000]);
    assert_eq!(
        all_tokens(&server, &admin).await?,
        tokens_before,
        "a dry run changes nothing"
    );
    assert_eq!(
        all_events(&server, &admin).await?,
        events_before,
        "and writes nothing"
    );

    let mut revoked = Vec::new();
    for (expected_count, expected_more) in [(1000, true), (1000, true), (50, false)] {
        let page = revoke_tokens(&server, &admin, revoke_leaver(false)).await?;
        assert_eq!(
            (page.revoked_count, page.more),
            (expected_count, expected_more)
        );
        assert_eq!(page.token_ids.len(), usize::try_from(page.revoked_count)?);
        revoked.extend(page.token_ids);
    }
    assert_eq!(revoked, targets, "every target once, oldest first");
    let last = revoke_tokens(&server, &admin, revoke_leaver(false)).await?;
    assert_eq!(
        (last.revoked_count, last.token_ids.len(), last.more),
        (0, 0, false)
    );

    let events = all_events(&server, &admin).await?;
    let revoke_events: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "personal_access_token_revoked")
        .collect();
    assert_eq!(
        revoke_events
            .iter()
            .map(|e| e.token_id.clone())
            .collect::<Vec<_>>(),
        targets,
        "one event per token, in the order revoked"
    );
    assert!(
        revoke_events
            .iter()
            .all(|e| e.reason == "left the company" && e.actor == "admin-user" && e.org_id == ORG)
    );

    let tokens = all_tokens(&server, &admin).await?;
    let target_set: BTreeSet<&String> = targets.iter().collect();
    for token in &tokens {
        if target_set.contains(&token.token_id) {
            assert!(token.revoke_time.is_some());
            assert_eq!(token.revoked_by, "admin-user");
            assert_eq!(token.revoke_reason, "left the company");
        } else if token.owner_user_id == "stayer" || token.expire_time.is_some() {
            assert!(token.revoke_time.is_none(), "{} left alone", token.name);
        } else {
            assert_eq!(token.revoked_by, "someone", "the earlier revocation stands");
        }
    }
    let still_theirs = all_tokens(&server, &other_org).await?;
    assert_eq!(still_theirs.len(), 1);
    assert!(
        still_theirs[0].revoke_time.is_none(),
        "another organisation's token"
    );
    assert_eq!(still_theirs[0].token_id, theirs.token_id);

    // No selector: INVALID_ARGUMENT naming `kind`; not an admin: refused.
    let details = expect_error(
        revoke_tokens(&server, &admin, RevokeTokensRequest::default()).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(details.field_violations.len(), 1);
    assert_eq!(details.field_violations[0].0, "kind");
    let reader = server.jwt(
        ORG,
        "reader",
        &[],
        &["org_app_keys_write", "tokens_revoke_leaked"],
    );
    expect_error(
        revoke_tokens(&server, &reader, revoke_leaver(true)).await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    server.shutdown().await;
    Ok(())
}

/// Two RevokeTokens calls racing over the same 1,500 tokens: between them
/// every token is revoked once, with one event; the compare-and-set leaves
/// the other call's tokens alone. (One server, so one clock: the race is
/// the databases', not the clocks'.)
async fn racing_bulk_revokes_write_one_event_per_token(backend: Backend) -> TestResult {
    let server = Arc::new(TestServer::start(backend).await);
    let admin = server.admin(ORG);
    let targets = seed(
        &server,
        personal_tokens(LEAVER, 1_500),
        SeedHistory::default(),
    )
    .await;
    let drain = |server: Arc<TestServer>, jwt: String| async move {
        let mut mine = Vec::new();
        loop {
            let page = revoke_tokens(&server, &jwt, revoke_leaver(false)).await?;
            mine.extend(page.token_ids);
            if !page.more {
                return Ok::<_, tonic::Status>(mine);
            }
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(drain(server.clone(), admin.clone())),
        tokio::spawn(drain(server.clone(), admin.clone())),
    );
    let (a, b) = (a??, b??);
    let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
    all.sort();
    let mut expected = targets.clone();
    expected.sort();
    assert!(
        all == expected,
        "each token revoked by exactly one call ({} + {} for {})",
        a.len(),
        b.len(),
        expected.len()
    );
    let mut events = events_of(&server, &admin, "personal_access_token_revoked").await;
    events.sort();
    assert!(
        events == expected,
        "one event per token: {} for {}",
        events.len(),
        expected.len()
    );
    Ok(())
}

/// The incident desk (`tokens_revoke_leaked`, in its own organisation)
/// revokes another organisation's token by its secret: the event lands in
/// that organisation, the secret stops authenticating, a repeat answers the
/// original revocation without a second event, and `admin` of the token's
/// own organisation is not enough.
async fn a_leaked_secret_is_revoked_in_its_own_organisation(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let owner = server.admin("victim");
    let made = server
        .client()
        .create_token(authed(scrape_request("prometheus"), &owner))
        .await?
        .into_inner();
    let token = made.token.expect("token");
    let desk = server.jwt("platform", "incident-desk", &[], &["tokens_revoke_leaked"]);
    let by_secret = |reason: &str| RevokeTokenBySecretRequest {
        secret: made.secret.clone(),
        reason: reason.to_owned(),
    };

    expect_error(
        server
            .client()
            .revoke_token_by_secret(authed(by_secret(""), &owner))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );
    let revoked = server
        .client()
        .revoke_token_by_secret(authed(by_secret("posted in a public repo"), &desk))
        .await?
        .into_inner()
        .token
        .expect("token");
    assert_eq!(revoked.id, token.id);
    assert_eq!(revoked.org_id, "victim");
    assert_eq!(revoked.revoked_by, "incident-desk");
    assert_eq!(revoked.revoke_reason, "posted in a public repo");
    let revoke_time = revoked.revoke_time.expect("revoked");

    let events = all_events(&server, &owner).await?;
    let last = events.last().expect("an event");
    assert_eq!(
        (
            last.event_type.as_str(),
            last.actor.as_str(),
            last.reason.as_str(),
            last.token_id.as_str()
        ),
        (
            "scrape_token_revoked",
            "incident-desk",
            "posted in a public repo",
            token.token_id.as_str()
        )
    );
    assert!(
        all_events(&server, &server.admin("platform"))
            .await?
            .is_empty()
    );
    expect_error(
        server
            .client()
            .authenticate_token(authed(
                AuthenticateTokenRequest {
                    secret: made.secret.clone(),
                    ..Default::default()
                },
                &server.introspector(),
            ))
            .await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );

    server.clock.advance(TimeDelta::minutes(5));
    let again = server
        .client()
        .revoke_token_by_secret(authed(by_secret("again"), &desk))
        .await?
        .into_inner()
        .token
        .expect("token");
    assert_eq!(
        again.revoke_time,
        Some(revoke_time),
        "the original revocation"
    );
    assert_eq!(again.revoke_reason, "posted in a public repo");
    let revoked_events = events_of(&server, &owner, "scrape_token_revoked").await;
    assert_eq!(revoked_events, [token.token_id.as_str()], "no second event");
    server.shutdown().await;
    Ok(())
}

/// A malformed secret is INVALID_ARGUMENT on `secret`, described and never
/// echoed; a well-formed one of no token is NOT_FOUND; neither changes
/// anything.
async fn malformed_and_unknown_secrets_are_refused_without_echo(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let owner = server.admin("victim");
    let made = server
        .client()
        .create_token(authed(scrape_request("prometheus"), &owner))
        .await?
        .into_inner();
    let desk = server.jwt("platform", "incident-desk", &[], &["tokens_revoke_leaked"]);
    let mut typo = made.secret.clone();
    let last = typo.pop().map_or('0', |c| if c == '0' { '1' } else { '0' });
    typo.push(last);
    for presented in [
        typo,
        made.secret[..made.secret.len() - 2].to_owned(),
        "hunter2".to_owned(),
    ] {
        let details = expect_error(
            server
                .client()
                .revoke_token_by_secret(authed(
                    RevokeTokenBySecretRequest {
                        secret: presented.clone(),
                        reason: String::new(),
                    },
                    &desk,
                ))
                .await,
            Code::InvalidArgument,
            "INVALID_FIELD",
        );
        assert_eq!(details.field_violations.len(), 1);
        assert_eq!(details.field_violations[0].0, "secret");
        assert!(!details.field_violations[0].1.contains(&presented));
        assert_eq!(details.problem.errors.len(), 1);
        assert_eq!(details.problem.errors[0].value, "", "never echoed");
        assert!(!details.message.contains(&presented));
    }
    let unknown = TokenSecret::generate(TokenKind::Scrape)?;
    let details = expect_error(
        server
            .client()
            .revoke_token_by_secret(authed(
                RevokeTokenBySecretRequest {
                    secret: unknown.expose().to_owned(),
                    reason: String::new(),
                },
                &desk,
            ))
            .await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    assert_eq!(details.resource_name.as_deref(), Some("secret"));
    assert!(!details.message.contains(unknown.expose()));
    let tokens = all_tokens(&server, &owner).await?;
    assert!(tokens.iter().all(|t| t.revoke_time.is_none()));
    server.shutdown().await;
    Ok(())
}

/// A rotated token in its overlap (its revocation lies ahead) is not
/// revoked yet: RevokeTokenBySecret revokes it now, with its event; the
/// compare-and-set matches the stored future instant on both databases.
async fn a_revocation_still_ahead_is_brought_forward_by_secret(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin(ORG);
    let mut client = server.client();
    let created = client
        .create_token(authed(
            CreateTokenRequest {
                kind: ProtoKind::Scrape as i32,
                name: "overlapping".to_owned(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    let old = created.token.expect("token");
    let rotated = client
        .rotate_token(authed(
            RotateTokenRequest {
                id: old.id,
                overlap: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                reason: "routine".to_owned(),
            },
            &admin,
        ))
        .await?
        .into_inner();
    let previous = rotated.previous.expect("previous");
    assert!(previous.revoke_time.is_some(), "a revocation ahead");
    let desk = server.jwt("platform", "incident-desk", &[], &["tokens_revoke_leaked"]);
    let revoked = client
        .revoke_token_by_secret(authed(
            RevokeTokenBySecretRequest {
                secret: created.secret,
                reason: "leaked during the overlap".to_owned(),
            },
            &desk,
        ))
        .await?
        .into_inner()
        .token
        .expect("token");
    let now = server.clock.now();
    assert_eq!(
        revoked.revoke_time.map(|t| (t.seconds, t.nanos / 1000)),
        Some((
            now.timestamp(),
            i32::try_from(now.timestamp_subsec_micros())?
        )),
        "revoked now, not at the revocation ahead"
    );
    assert_eq!(revoked.revoked_by, "incident-desk");
    assert_eq!(
        events_of(&server, &admin, "scrape_token_revoked").await,
        vec![old.token_id]
    );
    server.shutdown().await;
    Ok(())
}

/// Waits (bounded) until `ORG`'s `revoked_token_used` events number
/// `count`, and returns them.
async fn wait_for_used_events(
    server: &TestServer,
    admin: &str,
    count: usize,
) -> Vec<proto::AuditEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events: Vec<_> = all_events(server, admin)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.event_type == "revoked_token_used")
            .collect();
        if events.len() >= count {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} revoked_token_used events after 20 s",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Presenting a revoked token again and again (AuthenticateToken, the
/// metrics endpoint, a second replica) writes one `revoked_token_used` per
/// minute per token, in the token's organisation; every presentation is
/// still TOKEN_REVOKED (or 401).
async fn a_revoked_token_in_use_is_reported_once_a_minute(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let replica = TestServer::start_on(server.db.clone(), &[]).await;
    let admin = server.admin(ORG);
    let mut secrets = Vec::new();
    for name in ["leaked", "sentinel"] {
        let made = server
            .client()
            .create_token(authed(scrape_request(name), &admin))
            .await?
            .into_inner();
        let token = made.token.expect("token");
        crate::lifecycle::revoke(&server, &admin, &token, "leaked").await?;
        secrets.push((token, made.secret));
    }
    let (leaked, secret) = &secrets[0];
    let (sentinel, sentinel_secret) = &secrets[1];
    let authenticate = |on: &TestServer, secret: &str| {
        let mut client = on.client();
        let jwt = on.introspector();
        let secret = secret.to_owned();
        async move {
            client
                .authenticate_token(authed(
                    AuthenticateTokenRequest {
                        secret,
                        ..Default::default()
                    },
                    &jwt,
                ))
                .await
        }
    };

    for _ in 0..20 {
        expect_error(
            authenticate(&server, secret).await,
            Code::Unauthenticated,
            "TOKEN_REVOKED",
        );
    }
    let events = wait_for_used_events(&server, &admin, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token_id, leaked.token_id);
    assert_eq!(events[0].org_id, ORG);
    assert_eq!(events[0].actor, "gateway");
    assert!(!events[0].request_id.is_empty());

    // The metrics endpoint and the other replica, within the minute: the
    // replica's pre-check lets it through, the store's condition does not.
    let bearer = format!("Bearer {secret}");
    let scrape = get(
        server.http_addr,
        TENANT_METRICS,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(scrape.status, 401);
    replica.clock.advance(TimeDelta::seconds(30));
    expect_error(
        authenticate(&replica, secret).await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );
    // The replica's writer handles its queue in order: once the sentinel's
    // event is in, the leaked token's presentation has been dealt with.
    expect_error(
        authenticate(&replica, sentinel_secret).await,
        Code::Unauthenticated,
        "TOKEN_REVOKED",
    );
    let events = wait_for_used_events(&server, &admin, 2).await;
    assert_eq!(
        events
            .iter()
            .map(|e| e.token_id.as_str())
            .collect::<Vec<_>>(),
        [leaked.token_id.as_str(), sentinel.token_id.as_str()]
    );

    // Over a minute later, the metrics endpoint's check writes the next one,
    // with no actor.
    server.clock.advance(TimeDelta::seconds(61));
    let scrape = get(
        server.http_addr,
        TENANT_METRICS,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(scrape.status, 401);
    let events = wait_for_used_events(&server, &admin, 3).await;
    assert_eq!(
        (events[2].token_id.as_str(), events[2].actor.as_str()),
        (leaked.token_id.as_str(), "")
    );
    assert_eq!(
        events[2].occur_time.map(|t| t.seconds),
        Some(server.clock.now().timestamp())
    );
    server.shutdown().await;
    replica.shutdown().await;
    Ok(())
}
