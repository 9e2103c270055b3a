//! A `grpc-timeout` of 1 ms on creates and revokes; 10 000 cancelled calls
//! against file descriptors and the pool.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Endpoint;

use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, ListTokensRequest, RevokeScrapeTokenRequest,
    TokenKind,
};

use crate::backend_tests;
use crate::support::scrape_request;
use crate::support::{
    Backend, TestResult, TestServer, all_tokens, assert_tokens_and_events_agree, authed, details,
};

backend_tests!(
    a_1ms_deadline_on_writes_fails_cleanly_and_tokens_and_events_agree,
    ten_thousand_cancelled_calls_leave_descriptors_and_pool_at_baseline,
);

// ---------------------------------------------------------------------------
// grpc-timeout of 1 ms on creates and revokes.
// ---------------------------------------------------------------------------

async fn a_1ms_deadline_on_writes_fails_cleanly_and_tokens_and_events_agree(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut ids = Vec::new();
    for i in 0..20 {
        let created = server
            .client()
            .create_token(authed(scrape_request(&format!("pre{i}")), &admin))
            .await?;
        ids.push(created.into_inner().token.expect("token").id);
    }
    // Ten at a time on a connection of their own: enough to queue past 1 ms,
    // few enough that the resets stay under HTTP/2's rapid-reset limit (20
    // reset streams not yet accepted per connection; beyond it the server
    // sends GOAWAY ENHANCE_YOUR_CALM and every call on that connection
    // fails: see broken_grpc_frames_… and ten_thousand_cancelled_calls_…).
    let (mut created, mut revoked, mut timed_out) = (Vec::new(), Vec::new(), 0);
    for batch in 0..20usize {
        let channel = Endpoint::from_shared(format!("http://{}", server.grpc_addr))?
            .connect()
            .await?;
        let mut calls = Vec::new();
        for i in batch * 10..batch * 10 + 10 {
            let mut client = TokenServiceClient::new(channel.clone());
            let admin = admin.clone();
            let id = ids[i % ids.len()];
            calls.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let mut request = authed(scrape_request(&format!("d{i}")), &admin);
                    request.set_timeout(Duration::from_millis(1));
                    (
                        true,
                        client
                            .create_token(request)
                            .await
                            .map(|r| r.into_inner().token.expect("token")),
                    )
                } else {
                    let mut request = authed(
                        RevokeScrapeTokenRequest {
                            id,
                            reason: "deadline".into(),
                        },
                        &admin,
                    );
                    request.set_timeout(Duration::from_millis(1));
                    (
                        false,
                        client
                            .revoke_scrape_token(request)
                            .await
                            .map(|r| r.into_inner().token.expect("token")),
                    )
                }
            }));
        }
        for call in calls {
            match call.await? {
                (true, Ok(token)) => created.push(token.id),
                (false, Ok(token)) => revoked.push(token.id),
                (_, Err(status)) => {
                    assert!(
                        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
                        "a deadline ends a call with DEADLINE_EXCEEDED or CANCELLED: {status:?}"
                    );
                    timed_out += 1;
                }
            }
        }
    }
    eprintln!(
        "1 ms deadline: {} creates and {} revokes answered OK, {timed_out} cut",
        created.len(),
        revoked.len()
    );
    assert!(timed_out > 0, "the 1 ms deadline was hit");
    // Let handlers of cancelled calls unwind, then check nothing is torn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_tokens_and_events_agree(&server, &admin).await?;
    let tokens = all_tokens(&server, &admin).await?;
    for id in &created {
        assert!(tokens.iter().any(|t| t.id == *id), "created {id} exists");
    }
    for id in &revoked {
        let token = tokens.iter().find(|t| t.id == *id).expect("revoked exists");
        assert!(token.revoke_time.is_some(), "revoked {id} is revoked");
    }
    server
        .client()
        .create_token(authed(scrape_request("after"), &admin))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 10 000 cancelled calls: descriptors and pool at baseline.
// ---------------------------------------------------------------------------

/// Socket inodes of TCP connections with an end on one of `ports`.
fn socket_inodes_on(ports: &[u16]) -> HashSet<String> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |field: &str| {
                field
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let on_port = [fields[1], fields[2]]
                .iter()
                .any(|f| port(f).is_some_and(|p| ports.contains(&p)));
            if on_port && fields[9] != "0" {
                inodes.insert(fields[9].to_owned());
            }
        }
    }
    inodes
}

/// Open descriptors of this process.
#[derive(Debug, Clone, Copy)]
struct Descriptors {
    /// All of them (meaningful only when the test has the process alone).
    total: usize,
    /// TCP sockets with an end on this test's server's ports.
    sockets: usize,
    /// Files in this test's data folder (SQLite database, WAL, shm).
    files: usize,
}

fn descriptors(server: &TestServer) -> Descriptors {
    let inodes = socket_inodes_on(&[server.grpc_addr.port(), server.http_addr.port()]);
    let data_dir = server.db.dir.path().to_path_buf();
    let mut counted = Descriptors {
        total: 0,
        sockets: 0,
        files: 0,
    };
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        counted.total += 1;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let socket = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'));
        if socket.is_some_and(|inode| inodes.contains(inode)) {
            counted.sockets += 1;
        } else if std::path::Path::new(&target).starts_with(&data_dir) {
            counted.files += 1;
        }
    }
    counted
}

/// The operator figures (`GET /metrics`, which takes no bearer token); the
/// body.
async fn scrape_metrics(server: &TestServer) -> String {
    let mut stream = TcpStream::connect(server.http_addr).await.expect("connect");
    let request = "GET /metrics HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// `tokend_db_pool_connections` by state.
fn pool_gauges(metrics: &str) -> BTreeMap<String, i64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("tokend_db_pool_connections{state=\""))
        .filter_map(|rest| {
            let (state, value) = rest.split_once("\"} ")?;
            Some((state.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The pool once it is quiet again: (open, idle); waits up to 5 s for every
/// connection to be back in the pool.
async fn settled_pool(server: &TestServer) -> (i64, i64) {
    let started = Instant::now();
    loop {
        let gauges = pool_gauges(&scrape_metrics(server).await);
        let open = gauges.get("open").copied().expect("open gauge");
        let idle = gauges.get("idle").copied().expect("idle gauge");
        // The scrape itself may hold one connection while it reads the pool.
        if open - idle <= 1 || started.elapsed() > Duration::from_secs(5) {
            return (open, idle);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const MAX_POOL: i64 = 4;

async fn ten_thousand_cancelled_calls_leave_descriptors_and_pool_at_baseline(
    backend: Backend,
) -> TestResult {
    let server =
        TestServer::start_with(backend, &["--db-max-connections", &MAX_POOL.to_string()]).await;
    let admin = server.admin("acme");
    let introspector = server.introspector();
    let mut client = server.client();
    let pat_secret = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "laptop".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .secret;
    for i in 0..20 {
        client
            .create_token(authed(scrape_request(&format!("row{i}")), &admin))
            .await?;
    }
    // Baseline: the client connection is up, the pool has been used.
    client
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    let (open_before, _) = settled_pool(&server).await;
    let before = descriptors(&server);

    let started = Instant::now();
    let (mut cancelled, mut completed) = (0u32, 0u32);
    // Failures of calls that did finish within their patience, by kind.
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    for batch in 0..200u64 {
        let mut calls = Vec::new();
        for j in 0..50u64 {
            let i = batch * 50 + j;
            let mut client = server.client();
            let admin = admin.clone();
            let introspector = introspector.clone();
            let secret = pat_secret.clone();
            // 0–1.5 ms of patience: some are dropped before a byte is
            // sent, some mid-query, some after the answer.
            let patience = Duration::from_micros((i * 7919) % 1500);
            calls.push(tokio::spawn(async move {
                let call = async {
                    if i % 2 == 0 {
                        client
                            .authenticate_token(authed(
                                AuthenticateTokenRequest {
                                    secret,
                                    ..Default::default()
                                },
                                &introspector,
                            ))
                            .await
                            .map(|_| ())
                    } else {
                        client
                            .list_tokens(authed(
                                ListTokensRequest {
                                    show_revoked: true,
                                    page_size: 1000,
                                    ..Default::default()
                                },
                                &admin,
                            ))
                            .await
                            .map(|_| ())
                    }
                };
                tokio::time::timeout(patience, call).await
            }));
        }
        for call in calls {
            match call.await? {
                Err(_elapsed) => cancelled += 1,
                Ok(Ok(())) => completed += 1,
                Ok(Err(status)) => {
                    // So many resets on one connection cross HTTP/2's
                    // rapid-reset limit: the server sends GOAWAY
                    // ENHANCE_YOUR_CALM and the connection's other calls
                    // fail in the transport (no tokend details); the
                    // channel reconnects. An answer from tokend itself
                    // must never be INTERNAL or a starved pool.
                    if !status.details().is_empty() {
                        let decoded = details(&status);
                        assert!(
                            !matches!(decoded.code, Code::Internal | Code::Unavailable),
                            "{status:?}"
                        );
                    }
                    *failures
                        .entry(format!("{:?}: {}", status.code(), status.message()))
                        .or_default() += 1;
                }
            }
        }
    }
    eprintln!(
        "10 000 calls in {:?}: {cancelled} cancelled by the client, {completed} completed, failed in the transport: {failures:?}",
        started.elapsed()
    );
    assert!(cancelled >= 5000, "most of the calls were cut: {cancelled}");

    // Served again at once (a starved pool would answer UNAVAILABLE).
    let quick = Instant::now();
    let mut fresh = server.client();
    let mut served = false;
    for _ in 0..20 {
        if fresh
            .list_tokens(authed(ListTokensRequest::default(), &admin))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served && quick.elapsed() < Duration::from_secs(5),
        "served after the storm"
    );
    let (open_after, idle_after) = settled_pool(&server).await;
    assert!(
        open_after <= MAX_POOL,
        "pool open {open_after} ≤ --db-max-connections {MAX_POOL}"
    );
    assert!(
        open_after - idle_after <= 1,
        "no connection is held by a cancelled call: open {open_after}, idle {idle_after}"
    );
    // Let connections that went away finish closing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = descriptors(&server);
    eprintln!("descriptors {before:?} → {after:?}; pool open {open_before} → {open_after}");
    // Sockets: the two listeners and one client connection (both ends),
    // before and after; a reconnect in flight may add one pair.
    assert!(
        after.sockets <= before.sockets + 2,
        "sockets at baseline: {} → {}",
        before.sockets,
        after.sockets
    );
    // Database files: each pooled SQLite connection holds the database and
    // its WAL, plus one shared-memory file for all; SQLite defers closing a
    // closed connection's descriptor while others hold locks on the file.
    // Bounded by the pool size, not by the number of calls.
    let file_bound = 4 * usize::try_from(MAX_POOL)? + 2;
    assert!(
        after.files <= file_bound,
        "database descriptors bounded by the pool: {} → {} (bound {file_bound})",
        before.files,
        after.files
    );
    // The process-wide count means something only when this test has the
    // process to itself (nextest); `cargo test` runs tests side by side.
    if std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test") {
        let allowance = 2 + file_bound.saturating_sub(before.files) + 4;
        assert!(
            after.total <= before.total + allowance,
            "process descriptors at baseline: {} → {} (allowance {allowance})",
            before.total,
            after.total
        );
    }
    Ok(())
}
