//! Revocation stays immediate while lookups are coalesced: under hundreds of
//! AuthenticateToken calls in flight (so that lookups really share
//! statements), a revoke acknowledged by one replica is seen by the very
//! next AuthenticateToken sent to another replica on the same database (on
//! SQLite, the same server), round after round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use tokend::domain::token::NewToken;
use tokend::domain::{TokenKind, TokenSecret};
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::grpc::proto::{AuthenticateTokenRequest, RevokeScrapeTokenRequest};
use tokend::store::{SeaStore, SeedHistory};

use crate::support::{Backend, TestResult, TestServer, authed, details};

crate::backend_tests!(a_revoke_acknowledged_is_seen_by_the_next_call_under_load);

const ORG: &str = "fresh";
/// Revoke → authenticate rounds.
const ROUNDS: usize = 2_000;
/// Rounds run at once (each runner's own rounds one after another): their
/// calls are in flight together with the background load.
const ROUND_RUNNERS: usize = 64;
/// Background AuthenticateToken calls kept in flight throughout.
const BACKGROUND_IN_FLIGHT: usize = 192;
/// Connections the background calls are spread over, per server.
const CONNECTIONS: usize = 4;
/// Active tokens the background calls present (never revoked).
const BACKGROUND_TOKENS: usize = 500;

/// Scrape tokens of `ORG`, seeded in bulk: (ids, secrets).
async fn seed(url: &str, prefix: &str, count: usize) -> (Vec<i64>, Vec<String>) {
    let now = Utc::now();
    let mut tokens = Vec::with_capacity(count);
    let mut secrets = Vec::with_capacity(count);
    for i in 0..count {
        let secret = TokenSecret::generate(TokenKind::Scrape).expect("random source");
        tokens.push(NewToken {
            token_id: uuid::Uuid::new_v4(),
            kind: TokenKind::Scrape,
            org_id: ORG.to_owned(),
            name: format!("{prefix}-{i}"),
            owner_user_id: "admin-user".to_owned(),
            service_account_slug: None,
            workspace_id: None,
            scopes: vec![],
            secret_hash: secret.hash(),
            created_at: now - TimeDelta::days(1),
            expires_at: None,
            created_by: "seeder".to_owned(),
        });
        secrets.push(secret.expose().to_owned());
    }
    let store = SeaStore::connect_for_seeding(url).await.expect("connect");
    let history = SeedHistory {
        // Ahead of the clock: authenticating writes no `last_used_at`.
        last_used_at: Some(now + TimeDelta::days(1)),
        revoked: None,
    };
    let ids = store.seed_tokens(tokens, &history).await.expect("seed");
    store.close().await.expect("close");
    (ids, secrets)
}

fn clients(server: &TestServer) -> Vec<TokenServiceClient<Channel>> {
    (0..CONNECTIONS)
        .map(|_| {
            let channel = Endpoint::from_shared(format!("http://{}", server.grpc_addr))
                .expect("endpoint")
                .connect_lazy();
            TokenServiceClient::new(channel)
        })
        .collect()
}

async fn a_revoke_acknowledged_is_seen_by_the_next_call_under_load(backend: Backend) -> TestResult {
    // No caller budget; and generous waits for a pooled connection and the
    // SQLite write lock, so that a slow shared test machine fails no call:
    // this test is about what calls see, not about overload.
    const FLAGS: &[&str] = &[
        "--rate-limit-per-second",
        "0",
        "--db-acquire-timeout",
        "30s",
        "--db-statement-timeout",
        "30s",
    ];
    let a = TestServer::start_with(backend, FLAGS).await;
    // PostgreSQL: a second replica. SQLite: one server (one file, one host).
    let b = match backend {
        Backend::Postgres => Some(TestServer::start_on(a.db.clone(), FLAGS).await),
        Backend::Sqlite => None,
    };
    let b = b.as_ref().unwrap_or(&a);
    let (ids, secrets) = seed(&a.db.url, "revoked", ROUNDS).await;
    let (_, background) = seed(&a.db.url, "busy", BACKGROUND_TOKENS).await;
    let background = Arc::new(background);
    let admin = a.admin(ORG);
    let introspector = a.introspector();
    let (on_a, on_b) = (clients(&a), clients(b));

    // Background load on both servers, so each lookup of a round shares its
    // statement with others.
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..BACKGROUND_IN_FLIGHT {
        let pool = if i % 2 == 0 { &on_a } else { &on_b };
        let mut client = pool[(i / 2) % CONNECTIONS].clone();
        let (stop, completed, background) = (stop.clone(), completed.clone(), background.clone());
        let introspector = introspector.clone();
        load.push(tokio::spawn(async move {
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_mul(31).wrapping_add(7);
                let secret = background[n % background.len()].clone();
                let request = AuthenticateTokenRequest {
                    secret,
                    ..Default::default()
                };
                if let Err(status) = client
                    .authenticate_token(authed(request, &introspector))
                    .await
                {
                    return Err(format!("background call failed: {status:?}"));
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    // Wait until the load is running.
    let deadline = Instant::now() + Duration::from_secs(30);
    while completed.load(Ordering::Relaxed) < BACKGROUND_IN_FLIGHT as u64 {
        assert!(
            Instant::now() < deadline,
            "the background load did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The rounds, ROUND_RUNNERS at a time (each runner's rounds in turn):
    // authenticate on B, revoke on A, wait for the acknowledgement, then
    // authenticate on B again.
    let before = completed.load(Ordering::Relaxed);
    let started = Instant::now();
    let rounds: Arc<Vec<(i64, String)>> = Arc::new(ids.into_iter().zip(secrets).collect());
    let mut runners = Vec::new();
    for r in 0..ROUND_RUNNERS {
        let mut on_a = on_a[r % CONNECTIONS].clone();
        let mut on_b = on_b[r % CONNECTIONS].clone();
        let (rounds, admin, introspector) = (rounds.clone(), admin.clone(), introspector.clone());
        runners.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for round in (r..rounds.len()).step_by(ROUND_RUNNERS) {
                let (id, secret) = &rounds[round];
                // Used first on B (so anything B might keep of it is warm).
                let request = AuthenticateTokenRequest {
                    secret: secret.clone(),
                    ..Default::default()
                };
                if let Err(status) = on_b
                    .authenticate_token(authed(request, &introspector))
                    .await
                {
                    return Err(format!("round {round}: first use failed: {status:?}"));
                }
                let revoke = RevokeScrapeTokenRequest {
                    id: *id,
                    reason: String::new(),
                };
                if let Err(status) = on_a.revoke_scrape_token(authed(revoke, &admin)).await {
                    return Err(format!("round {round}: revoke failed: {status:?}"));
                }
                // Sent only now that the revoke is acknowledged.
                let request = AuthenticateTokenRequest {
                    secret: secret.clone(),
                    ..Default::default()
                };
                match on_b
                    .authenticate_token(authed(request, &introspector))
                    .await
                {
                    Ok(_) => accepted.push(round),
                    Err(status)
                        if status.code() == Code::Unauthenticated
                            && details(&status).reason == "TOKEN_REVOKED" => {}
                    Err(status) => {
                        return Err(format!("round {round}: unexpected answer: {status:?}"));
                    }
                }
            }
            Ok(accepted)
        }));
    }
    let mut accepted = Vec::new();
    for runner in runners {
        accepted.extend(runner.await??);
    }
    let elapsed = started.elapsed();
    let during = completed.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await??;
    }
    println!("{backend:?}: {ROUNDS} rounds in {elapsed:?}, {during} background calls meanwhile");
    assert!(
        accepted.is_empty(),
        "revoked tokens accepted in rounds {accepted:?}"
    );
    // The rounds ran under load: background calls were answered throughout.
    assert!(
        during >= ROUNDS as u64,
        "only {during} background calls during {ROUNDS} rounds"
    );
    Ok(())
}
