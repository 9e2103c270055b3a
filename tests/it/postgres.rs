//! What a shared server brings: replicas on one database, concurrent
//! writers, and outages (through a TCP proxy written here, cut and restored
//! while calls run), plus start-up with the database down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, ListAuditEventsRequest, ListTokensRequest,
    RevokeScrapeTokenRequest, RevokeServiceAccountTokenRequest, TokenKind,
};

use crate::support::scrape_request;
use crate::support::{
    Backend, PG_URL_VAR, TestDb, TestResult, TestServer, all_tokens,
    assert_tokens_and_events_agree, authed, details, expect_error, pg_url_with_database,
    postgres_available, wait_for_status,
};

crate::backend_tests!(
    two_replicas_on_one_database_behave_as_one_service,
    concurrent_revokes_of_one_token_make_one_revocation,
    concurrent_creates_of_one_name_make_one_token,
    calls_cancelled_mid_write_leave_no_partial_state,
);

async fn two_replicas_on_one_database_behave_as_one_service(backend: Backend) -> TestResult {
    let a = TestServer::start(backend).await;
    let b = TestServer::start_on(a.db.clone(), &[]).await;
    let admin = a.admin("acme");
    let introspector = b.introspector();
    let (mut on_a, mut on_b) = (a.client(), b.client());
    for round in 0..100 {
        let created = on_a
            .create_token(authed(scrape_request(&format!("r{round}")), &admin))
            .await?
            .into_inner();
        let auth = AuthenticateTokenRequest {
            secret: created.secret,
            ..Default::default()
        };
        on_b.authenticate_token(authed(auth.clone(), &introspector))
            .await?;
        on_a.revoke_scrape_token(authed(
            RevokeScrapeTokenRequest {
                id: created.token.unwrap().id,
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
        // The very next call on the other replica rejects it.
        expect_error(
            on_b.authenticate_token(authed(auth, &introspector)).await,
            Code::Unauthenticated,
            "TOKEN_REVOKED",
        );
    }
    Ok(())
}

async fn concurrent_revokes_of_one_token_make_one_revocation(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let token = server
        .client()
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::Scrape as i32,
                name: "hot".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .token
        .unwrap();
    let mut calls = Vec::new();
    for i in 0..50 {
        let mut client = server.client();
        let admin = server.jwt("acme", &format!("admin-{i}"), &["admin"], &[]);
        calls.push(tokio::spawn(async move {
            client
                .revoke_scrape_token(authed(
                    RevokeScrapeTokenRequest {
                        id: token.id,
                        reason: format!("by {i}"),
                    },
                    &admin,
                ))
                .await
        }));
    }
    let mut times = std::collections::HashSet::new();
    for call in calls {
        let token = call
            .await?
            .map_err(|s| format!("revoke failed: {s:?}"))?
            .into_inner()
            .token
            .unwrap();
        times.insert(token.revoke_time.map(|t| (t.seconds, t.nanos)));
    }
    assert_eq!(times.len(), 1, "one revoke_time: {times:?}");
    let events = server
        .client()
        .list_audit_events(authed(
            ListAuditEventsRequest {
                event_type: "scrape_token_revoked".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner();
    assert_eq!(events.audit_events.len(), 1, "one audit event");
    Ok(())
}

async fn concurrent_creates_of_one_name_make_one_token(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut calls = Vec::new();
    for _ in 0..24 {
        let mut client = server.client();
        let admin = admin.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_token(authed(
                    CreateTokenRequest {
                        kind: TokenKind::ServiceAccount as i32,
                        name: "deploy".into(),
                        service_account_slug: "ci".into(),
                        ..Default::default()
                    },
                    &admin,
                ))
                .await
        }));
    }
    let (mut ok, mut exists) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(_) => ok += 1,
            Err(status) => {
                let decoded = details(&status);
                assert_eq!(
                    (decoded.code, decoded.reason.as_str()),
                    (Code::AlreadyExists, "TOKEN_ALREADY_EXISTS"),
                    "{status:?}"
                );
                exists += 1;
            }
        }
    }
    assert_eq!((ok, exists), (1, 23));
    let events = server
        .client()
        .list_audit_events(authed(ListAuditEventsRequest::default(), &admin))
        .await?
        .into_inner();
    assert_eq!(
        events.audit_events.len(),
        1,
        "one create event, none for the refused creates"
    );
    // The name is free again once revoked.
    server
        .client()
        .revoke_service_account_token(authed(
            RevokeServiceAccountTokenRequest {
                service_account_slug: "ci".into(),
                token_slug: "deploy".into(),
                reason: String::new(),
            },
            &admin,
        ))
        .await?;
    server
        .client()
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::ServiceAccount as i32,
                name: "deploy".into(),
                service_account_slug: "ci".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?;
    Ok(())
}

/// A TCP proxy between tokend and PostgreSQL that can cut every connection
/// and refuse new ones, then let them through again.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String, up: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(up));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let up = up.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().await.push(task);
                }
            }
        });
        Proxy {
            addr,
            up,
            connections,
            accept,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn pg_host_port() -> String {
    let url = std::env::var(PG_URL_VAR).unwrap_or_default();
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

/// A fresh PostgreSQL database reached through a proxy.
async fn proxied_database(up: bool) -> (Arc<TestDb>, Proxy) {
    let mut db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(pg_host_port(), up).await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let user = std::env::var(PG_URL_VAR).unwrap_or_default();
    let user = user
        .split_once("://")
        .map(|(_, r)| r)
        .and_then(|r| r.split_once('@'))
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    db.url = pg_url_with_database(&format!("postgres://{user}{}/postgres", proxy.addr), &name);
    (Arc::new(db), proxy)
}

const OUTAGE_FLAGS: &[&str] = &[
    "--db-acquire-timeout",
    "1s",
    "--db-connect-timeout",
    "1s",
    "--db-statement-timeout",
    "2s",
    "--health-check-interval",
    "250ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_flips_readiness_and_loses_nothing() -> TestResult {
    if !postgres_available() {
        return Ok(());
    }
    let (db, proxy) = proxied_database(true).await;
    let server = TestServer::start_on(db, OUTAGE_FLAGS).await;
    let admin = server.admin("acme");

    // Writers run throughout; every acknowledged create and revoke is kept.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut client = server.client();
        let admin = admin.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let (mut created, mut revoked, mut unavailable) = (Vec::new(), Vec::new(), 0u32);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let request = scrape_request(&format!("w{w}-{i}"));
                match client.create_token(authed(request, &admin)).await {
                    Ok(response) => {
                        let token = response.into_inner().token.unwrap();
                        created.push(token.token_id.clone());
                        if i % 2 == 0 {
                            match client
                                .revoke_scrape_token(authed(
                                    RevokeScrapeTokenRequest {
                                        id: token.id,
                                        reason: String::new(),
                                    },
                                    &admin,
                                ))
                                .await
                            {
                                Ok(_) => revoked.push(token.token_id),
                                Err(status) => {
                                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                                    unavailable += 1;
                                }
                            }
                        }
                    }
                    Err(status) => {
                        let decoded = details(&status);
                        assert_eq!(
                            (decoded.code, decoded.reason.as_str()),
                            (Code::Unavailable, "DATABASE_UNAVAILABLE"),
                            "{status:?}"
                        );
                        assert!(decoded.retry_delay.is_some());
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (created, revoked, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.cut().await;
    let cut_at = Instant::now();
    let detected = wait_for_status(
        &server.channel,
        "tokend.v1.TokenService",
        ServingStatus::NotServing,
        Duration::from_secs(5),
    )
    .await;
    // A call during the outage fails fast.
    let started = Instant::now();
    let during = server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await;
    let failed_in = started.elapsed();
    expect_error(during, Code::Unavailable, "DATABASE_UNAVAILABLE");
    assert!(
        failed_in < Duration::from_secs(3),
        "failed in {failed_in:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    proxy.restore();
    let recovered = wait_for_status(
        &server.channel,
        "tokend.v1.TokenService",
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut created, mut revoked, mut unavailable) = (Vec::new(), Vec::new(), 0);
    for writer in writers {
        let (c, r, u) = writer.await?;
        created.extend(c);
        revoked.extend(r);
        unavailable += u;
    }
    eprintln!(
        "outage: NOT_SERVING {detected:?} after the cut ({:?} total), a call failed in {failed_in:?}, SERVING {recovered:?} after restore; {} creates and {} revokes acknowledged, {unavailable} refused",
        cut_at.elapsed(),
        created.len(),
        revoked.len()
    );
    assert!(unavailable > 0, "the outage was felt");

    // Nothing lost, nothing partial.
    let all = all_tokens(&server, &admin).await?;
    for token_id in &created {
        assert!(
            all.iter().any(|t| &t.token_id == token_id),
            "acknowledged create {token_id} is durable"
        );
    }
    for token_id in &revoked {
        assert!(
            all.iter()
                .any(|t| &t.token_id == token_id && t.revoke_time.is_some()),
            "acknowledged revoke {token_id} is durable"
        );
    }
    assert_tokens_and_events_agree(&server, &admin).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_with_the_database_down_then_up() -> TestResult {
    if !postgres_available() {
        return Ok(());
    }
    let (db, proxy) = proxied_database(false).await;
    let server = TestServer::spawn(db, OUTAGE_FLAGS).await;
    let admin = server.admin("acme");
    // It serves (liveness), is not ready, and refuses calls cleanly.
    assert_eq!(
        crate::support::health_status(&server.channel, "").await,
        Some(ServingStatus::Serving)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server.readiness().await, Some(ServingStatus::NotServing));
    expect_error(
        server
            .client()
            .list_tokens(authed(ListTokensRequest::default(), &admin))
            .await,
        Code::Unavailable,
        "DATABASE_UNAVAILABLE",
    );
    proxy.restore();
    let ready_in = wait_for_status(
        &server.channel,
        "tokend.v1.TokenService",
        ServingStatus::Serving,
        Duration::from_secs(5),
    )
    .await;
    eprintln!("start-up with the database down: SERVING {ready_in:?} after it appeared");
    server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    Ok(())
}

async fn calls_cancelled_mid_write_leave_no_partial_state(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut ids = Vec::new();
    for i in 0..40 {
        let request = scrape_request(&format!("pre{i}"));
        ids.push(
            server
                .client()
                .create_token(authed(request, &admin))
                .await?
                .into_inner()
                .token
                .unwrap()
                .id,
        );
    }
    // Creates and revokes whose client gives up after 0–4 ms: some finish,
    // some are cancelled before, during or after their transaction.
    let mut calls = Vec::new();
    for i in 0..200u64 {
        let mut client = server.client();
        let admin = admin.clone();
        let id = ids[(i % 40) as usize];
        calls.push(tokio::spawn(async move {
            let patience = Duration::from_micros((i * 397) % 4000);
            if i % 2 == 0 {
                let request = scrape_request(&format!("c{i}"));
                let _ =
                    tokio::time::timeout(patience, client.create_token(authed(request, &admin)))
                        .await;
            } else {
                let request = RevokeScrapeTokenRequest {
                    id,
                    reason: String::new(),
                };
                let _ = tokio::time::timeout(
                    patience,
                    client.revoke_scrape_token(authed(request, &admin)),
                )
                .await;
            }
        }));
    }
    for call in calls {
        call.await?;
    }
    // Let cancelled handlers unwind, then check; the server still serves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = assert_tokens_and_events_agree(&server, &admin).await?;
    assert!(count >= 40);
    server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    Ok(())
}
