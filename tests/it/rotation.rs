//! RotateToken and token policies over the wire, on both backends: the old
//! secret stops at the end of the overlap to the instant (on a second
//! replica sharing the database too), the new one works at once, concurrent
//! rotations make one successor, policies are applied and audited, and
//! another organisation's token is NOT_FOUND.

use chrono::{DateTime, TimeDelta, Utc};
use tonic::Code;

use tokend::domain::Clock;
use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, GetTokenPolicyRequest, KindPolicy,
    RotateTokenRequest, RotateTokenResponse, Token, TokenKind, TokenPolicy,
    UpdateTokenPolicyRequest,
};

use crate::support::{
    Backend, TestResult, TestServer, all_events, all_tokens, authed, expect_error, scrape_request,
};

crate::backend_tests!(
    without_overlap_the_old_secret_stops_at_once_on_every_replica,
    with_overlap_the_old_secret_stops_at_its_instant_on_every_replica,
    concurrent_rotations_of_one_token_make_one_successor,
    a_rotated_service_account_token_hands_its_name_over,
    rotating_what_cannot_be_rotated_is_a_failed_precondition,
    another_orgs_token_is_not_found,
    policies_are_applied_to_creates_and_rotations_and_audited,
    a_revoke_during_the_overlap_ends_it_at_once_with_its_event,
);

fn to_time(at: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap()).unwrap()
}

fn duration(span: TimeDelta) -> prost_types::Duration {
    prost_types::Duration {
        seconds: span.num_seconds(),
        nanos: span.subsec_nanos(),
    }
}

fn rotate_request(id: i64, overlap: TimeDelta) -> RotateTokenRequest {
    RotateTokenRequest {
        id,
        overlap: Some(duration(overlap)),
        reason: "routine".to_owned(),
    }
}

async fn create(server: &TestServer, jwt: &str, request: CreateTokenRequest) -> (Token, String) {
    let made = server
        .client()
        .create_token(authed(request, jwt))
        .await
        .unwrap()
        .into_inner();
    (made.token.unwrap(), made.secret)
}

async fn rotate(
    server: &TestServer,
    jwt: &str,
    request: RotateTokenRequest,
) -> Result<RotateTokenResponse, tonic::Status> {
    server
        .client()
        .rotate_token(authed(request, jwt))
        .await
        .map(tonic::Response::into_inner)
}

/// AuthenticateToken of `secret` on `server`: the token's id, or the
/// refusal's reason.
async fn authenticate(server: &TestServer, secret: &str) -> Result<i64, String> {
    let request = AuthenticateTokenRequest {
        secret: secret.to_owned(),
        ..Default::default()
    };
    match server
        .client()
        .authenticate_token(authed(request, &server.introspector()))
        .await
    {
        Ok(response) => Ok(response.into_inner().token.unwrap().id),
        Err(status) => Err(crate::support::details(&status).reason),
    }
}

/// Moves `server`'s clock forward to `at` (it must not be past).
fn set_clock(server: &TestServer, at: DateTime<Utc>) {
    let now = server.clock.now();
    assert!(at >= now, "clocks only move forward");
    server.clock.advance(at - now);
}

async fn without_overlap_the_old_secret_stops_at_once_on_every_replica(
    backend: Backend,
) -> TestResult {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.clone(), &[]).await;
    let admin = a.admin("acme");
    let (old, old_secret) = create(&a, &admin, scrape_request("prom")).await;
    assert_eq!(authenticate(&b, &old_secret).await, Ok(old.id));

    let rotated = rotate(&a, &admin, rotate_request(old.id, TimeDelta::zero())).await?;
    let (new, previous) = (rotated.token.unwrap(), rotated.previous.unwrap());
    assert_eq!(previous.replaced_by, new.token_id);
    assert_eq!(
        previous.rotate_time, previous.revoke_time,
        "revoked at once"
    );
    assert_eq!(previous.revoke_reason, "routine");
    assert_eq!((new.kind, &new.name), (old.kind, &old.name));
    for replica in [&a, &b] {
        assert_eq!(
            authenticate(replica, &old_secret).await,
            Err("TOKEN_REVOKED".to_owned())
        );
        assert_eq!(authenticate(replica, &rotated.secret).await, Ok(new.id));
    }
    Ok(())
}

async fn with_overlap_the_old_secret_stops_at_its_instant_on_every_replica(
    backend: Backend,
) -> TestResult {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.clone(), &[]).await;
    let admin = a.admin("acme");
    let (old, old_secret) = create(&a, &admin, scrape_request("prom")).await;

    let overlap = TimeDelta::minutes(10);
    let rotated = rotate(&a, &admin, rotate_request(old.id, overlap)).await?;
    let (new, previous) = (rotated.token.unwrap(), rotated.previous.unwrap());
    let rotate_time = to_time(previous.rotate_time.as_ref().unwrap());
    let end = to_time(previous.revoke_time.as_ref().unwrap());
    // To the database's precision (microseconds on PostgreSQL).
    assert!((end - (rotate_time + overlap)).abs() < TimeDelta::microseconds(1));

    // Both secrets work during the overlap, on both replicas; the old token
    // lists as active.
    for replica in [&a, &b] {
        assert_eq!(authenticate(replica, &old_secret).await, Ok(old.id));
        assert_eq!(authenticate(replica, &rotated.secret).await, Ok(new.id));
    }
    let listed = all_tokens(&b, &b.admin("acme")).await?;
    assert_eq!(listed.len(), 2);
    let active = b
        .client()
        .list_tokens(authed(
            tokend::grpc::proto::ListTokensRequest {
                state: tokend::grpc::proto::TokenState::Active as i32,
                ..Default::default()
            },
            &b.admin("acme"),
        ))
        .await?
        .into_inner()
        .tokens;
    assert_eq!(
        active.len(),
        2,
        "the old token is active during its overlap"
    );

    // The last instant before the end: still accepted; at the end: revoked.
    for replica in [&a, &b] {
        set_clock(replica, end - TimeDelta::microseconds(1));
        assert_eq!(authenticate(replica, &old_secret).await, Ok(old.id));
        set_clock(replica, end);
        assert_eq!(
            authenticate(replica, &old_secret).await,
            Err("TOKEN_REVOKED".to_owned())
        );
        assert_eq!(authenticate(replica, &rotated.secret).await, Ok(new.id));
    }
    // ListTokens hides it now (revoked), as its default does.
    let jwt = b.admin("acme");
    let visible = b
        .client()
        .list_tokens(authed(
            tokend::grpc::proto::ListTokensRequest::default(),
            &jwt,
        ))
        .await?
        .into_inner()
        .tokens;
    assert_eq!(visible.iter().map(|t| t.id).collect::<Vec<_>>(), [new.id]);
    Ok(())
}

async fn concurrent_rotations_of_one_token_make_one_successor(backend: Backend) -> TestResult {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.clone(), &[]).await;
    let admin = a.admin("acme");
    let (old, _) = create(&a, &admin, scrape_request("hot")).await;
    let mut calls = Vec::new();
    for i in 0..20 {
        let mut client = if i % 2 == 0 { a.client() } else { b.client() };
        let jwt = admin.clone();
        calls.push(tokio::spawn(async move {
            client
                .rotate_token(authed(rotate_request(old.id, TimeDelta::zero()), &jwt))
                .await
        }));
    }
    let mut won = 0;
    for call in calls {
        match call.await? {
            Ok(_) => won += 1,
            Err(status) => {
                expect_error(
                    Err::<(), _>(status),
                    Code::FailedPrecondition,
                    "TOKEN_NOT_ROTATABLE",
                );
            }
        }
    }
    assert_eq!(won, 1, "exactly one rotation wins");
    assert_eq!(all_tokens(&a, &admin).await?.len(), 2);
    let rotations = all_events(&a, &admin)
        .await?
        .iter()
        .filter(|e| e.event_type == "token_rotated")
        .count();
    assert_eq!(rotations, 1);
    Ok(())
}

async fn a_rotated_service_account_token_hands_its_name_over(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let request = CreateTokenRequest {
        kind: TokenKind::ServiceAccount as i32,
        name: "deploy".into(),
        service_account_slug: "ci".into(),
        scopes: vec!["deploy:write".into()],
        ..Default::default()
    };
    let (old, _) = create(&server, &admin, request.clone()).await;
    let writer = server.jwt("acme", "ops", &[], &["service_account_tokens_write"]);
    let rotated = rotate(
        &server,
        &writer,
        rotate_request(old.id, TimeDelta::hours(1)),
    )
    .await?;
    let new = rotated.token.unwrap();
    assert_eq!(
        (
            &new.name,
            &new.service_account_slug,
            &new.scopes,
            &new.created_by
        ),
        (
            &old.name,
            &old.service_account_slug,
            &old.scopes,
            &"ops".to_owned()
        )
    );
    // The successor holds the name now.
    expect_error(
        server.client().create_token(authed(request, &admin)).await,
        Code::AlreadyExists,
        "TOKEN_ALREADY_EXISTS",
    );
    let events: Vec<(String, String, String)> = all_events(&server, &admin)
        .await?
        .into_iter()
        .map(|e| (e.event_type, e.token_id, e.replaced_by))
        .collect();
    assert_eq!(
        events[1..],
        [
            (
                "token_rotated".to_owned(),
                old.token_id.clone(),
                new.token_id.clone()
            ),
            (
                "service_account_token_created".to_owned(),
                new.token_id.clone(),
                String::new()
            ),
        ]
    );
    Ok(())
}

async fn rotating_what_cannot_be_rotated_is_a_failed_precondition(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let (rotated_once, _) = create(&server, &admin, scrape_request("a")).await;
    rotate(
        &server,
        &admin,
        rotate_request(rotated_once.id, TimeDelta::days(7)),
    )
    .await?;
    let (revoked, _) = create(&server, &admin, scrape_request("b")).await;
    server
        .client()
        .revoke_scrape_token(authed(
            tokend::grpc::proto::RevokeScrapeTokenRequest {
                id: revoked.id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    let mut expiring = scrape_request("c");
    let soon = server.clock.now() + TimeDelta::seconds(30);
    expiring.expire_time = Some(prost_types::Timestamp {
        seconds: soon.timestamp(),
        nanos: 0,
    });
    let (expired, _) = create(&server, &admin, expiring).await;
    server.clock.advance(TimeDelta::minutes(1));
    for token in [&rotated_once, &revoked, &expired] {
        let details = expect_error(
            rotate(&server, &admin, rotate_request(token.id, TimeDelta::zero())).await,
            Code::FailedPrecondition,
            "TOKEN_NOT_ROTATABLE",
        );
        assert_eq!(details.problem.status, 409);
        assert_eq!(
            details.resource_name.as_deref(),
            Some(format!("tokens/{}", token.id).as_str())
        );
    }
    let over = RotateTokenRequest {
        id: rotated_once.id,
        overlap: Some(duration(TimeDelta::days(7) + TimeDelta::seconds(1))),
        reason: String::new(),
    };
    let details = expect_error(
        rotate(&server, &admin, over).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(details.field_violations[0].0, "overlap");
    Ok(())
}

async fn another_orgs_token_is_not_found(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let (token, secret) = create(&server, &admin, scrape_request("prom")).await;
    expect_error(
        rotate(
            &server,
            &server.admin("evil"),
            rotate_request(token.id, TimeDelta::zero()),
        )
        .await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    // Another user's personal token is NOT_FOUND as well.
    let bob = server.jwt("acme", "bob", &[], &["user_app_keys"]);
    let pat = CreateTokenRequest {
        kind: TokenKind::PersonalAccess as i32,
        name: "laptop".into(),
        ..Default::default()
    };
    let (bobs, _) = create(&server, &bob, pat).await;
    let alice = server.jwt("acme", "alice", &[], &["user_app_keys"]);
    expect_error(
        rotate(&server, &alice, rotate_request(bobs.id, TimeDelta::zero())).await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    assert_eq!(
        authenticate(&server, &secret).await,
        Ok(token.id),
        "unchanged"
    );
    assert_eq!(
        all_events(&server, &admin).await?.len(),
        2,
        "no event written"
    );
    Ok(())
}

/// `at` is `expected`, to the database's precision (microseconds on
/// PostgreSQL).
fn assert_at(at: Option<&prost_types::Timestamp>, expected: DateTime<Utc>) {
    let at = to_time(at.expect("a timestamp"));
    assert!(
        (at - expected).abs() < TimeDelta::microseconds(1),
        "{at} ≠ {expected}"
    );
}

fn hours(n: i64) -> Option<prost_types::Duration> {
    Some(duration(TimeDelta::hours(n)))
}

async fn policies_are_applied_to_creates_and_rotations_and_audited(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let (before, _) = create(&server, &admin, scrape_request("old")).await;

    let policy = TokenPolicy {
        kinds: vec![KindPolicy {
            kind: TokenKind::Scrape as i32,
            max_lifetime: hours(48),
            default_lifetime: hours(24),
        }],
    };
    let stored = client
        .update_token_policy(authed(
            UpdateTokenPolicyRequest {
                policy: Some(policy.clone()),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .policy;
    assert_eq!(stored.as_ref(), Some(&policy));
    let reader = server.jwt("acme", "auditor", &[], &["org_app_keys_read"]);
    let read = client
        .get_token_policy(authed(GetTokenPolicyRequest {}, &reader))
        .await?
        .into_inner()
        .policy;
    assert_eq!(read.as_ref(), Some(&policy));
    let evil = client
        .get_token_policy(authed(GetTokenPolicyRequest {}, &server.admin("evil")))
        .await?
        .into_inner()
        .policy;
    assert_eq!(evil, Some(TokenPolicy::default()), "another org has none");
    expect_error(
        client
            .update_token_policy(authed(UpdateTokenPolicyRequest { policy: None }, &reader))
            .await,
        Code::PermissionDenied,
        "PERMISSION_DENIED",
    );

    let now = server.clock.now();
    let (defaulted, _) = create(&server, &admin, scrape_request("new")).await;
    assert_at(defaulted.expire_time.as_ref(), now + TimeDelta::hours(24));
    let mut too_long = scrape_request("long");
    let beyond = now + TimeDelta::hours(48) + TimeDelta::seconds(1);
    too_long.expire_time = Some(prost_types::Timestamp {
        seconds: beyond.timestamp(),
        nanos: 0,
    });
    let details = expect_error(
        client.create_token(authed(too_long, &admin)).await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(details.field_violations.len(), 1);
    assert_eq!(details.field_violations[0].0, "expire_time");
    assert!(
        details.field_violations[0]
            .1
            .contains("max_lifetime 172800s")
    );

    // The token made before the policy is unchanged; its successor follows
    // the policy.
    let unchanged = client
        .get_token(authed(
            tokend::grpc::proto::GetTokenRequest { id: before.id },
            &admin,
        ))
        .await?
        .into_inner()
        .token
        .unwrap();
    assert_eq!(unchanged.expire_time, None);
    let rotated = rotate(
        &server,
        &admin,
        rotate_request(before.id, TimeDelta::zero()),
    )
    .await?;
    assert_at(
        rotated.token.unwrap().expire_time.as_ref(),
        now + TimeDelta::hours(24),
    );

    let events = all_events(&server, &admin).await?;
    let updated: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "token_policy_updated")
        .collect();
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].token_id, uuid::Uuid::nil().to_string());
    assert_eq!(updated[0].token_kind, TokenKind::Unspecified as i32);
    assert_eq!(updated[0].actor, "admin-user");

    // Invalid policies change nothing.
    let bad = TokenPolicy {
        kinds: vec![KindPolicy {
            kind: TokenKind::Scrape as i32,
            max_lifetime: hours(2),
            default_lifetime: hours(3),
        }],
    };
    let details = expect_error(
        client
            .update_token_policy(authed(
                UpdateTokenPolicyRequest { policy: Some(bad) },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(
        details.field_violations[0].0,
        "policy.kinds[0].default_lifetime"
    );
    let read = client
        .get_token_policy(authed(GetTokenPolicyRequest {}, &admin))
        .await?
        .into_inner()
        .policy;
    assert_eq!(read.as_ref(), Some(&policy));
    Ok(())
}

/// An explicit revoke of a rotated token during its overlap brings its
/// revocation forward to now and writes the family's `*_revoked` event
/// (on PostgreSQL the one-statement revoke finds no active row and the
/// transaction decides); a second revoke is idempotent.
async fn a_revoke_during_the_overlap_ends_it_at_once_with_its_event(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let (old, old_secret) = create(&server, &admin, scrape_request("prom")).await;
    rotate(&server, &admin, rotate_request(old.id, TimeDelta::hours(1))).await?;
    assert_eq!(authenticate(&server, &old_secret).await, Ok(old.id));

    let revoke = || tokend::grpc::proto::RevokeScrapeTokenRequest {
        id: old.id,
        reason: "ended early".to_owned(),
    };
    let revoked = server
        .client()
        .revoke_scrape_token(authed(revoke(), &admin))
        .await?
        .into_inner()
        .token
        .unwrap();
    let now = server.clock.now();
    let at = to_time(revoked.revoke_time.as_ref().unwrap());
    assert!(
        (at - now).abs() < TimeDelta::microseconds(1),
        "{at} vs {now}"
    );
    assert_eq!(
        authenticate(&server, &old_secret).await,
        Err("TOKEN_REVOKED".to_owned())
    );
    let again = server
        .client()
        .revoke_scrape_token(authed(revoke(), &admin))
        .await?
        .into_inner()
        .token
        .unwrap();
    assert_eq!(again.revoke_time, revoked.revoke_time);
    let events: Vec<_> = all_events(&server, &admin)
        .await?
        .into_iter()
        .filter(|e| e.event_type == "scrape_token_revoked")
        .map(|e| e.token_id)
        .collect();
    assert_eq!(events, vec![old.token_id.clone()]);
    Ok(())
}
