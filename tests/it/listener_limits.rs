//! Limits of both listeners against hostile peers: the HTTP listener's
//! header read timeout, connection cap and body limit, and the per-address
//! limit on failed authentications (bad JWTs on gRPC, 401s on the metrics
//! endpoint), which refuses a failing peer before any database read while
//! another address is served.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::transport::Endpoint;

use tokend::grpc::proto::ListTokensRequest;
use tokend::grpc::proto::token_service_client::TokenServiceClient;

use crate::http_client::{SECOND_PEER, connect, get, get_from, parse, sample, send};
use crate::support::{
    Backend, TestResult, TestServer, authed, details, expect_error, scrape_request,
};

/// Reads until the server closes the connection (or resets it); the time
/// that took. Panics after `limit`.
async fn closed_within(mut stream: TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// 300 requests cut off in their headers, and 50 connections that send
/// nothing, are all closed once the header read timeout passes; a complete
/// request is served meanwhile and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_within_the_header_read_timeout() -> TestResult {
    let server =
        TestServer::start_with(Backend::Sqlite, &["--http-header-read-timeout", "1s"]).await;
    let mut open = Vec::new();
    for i in 0..350 {
        let mut stream = connect(None, server.http_addr).await;
        if i < 300 {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: tokend\r\nX-Slow: ")
                .await?;
        }
        open.push(stream);
    }
    let started = Instant::now();
    assert_eq!(get(server.http_addr, "/metrics", &[]).await.status, 200);
    let mut closing = JoinSet::new();
    for stream in open {
        closing.spawn(closed_within(stream, Duration::from_secs(30)));
    }
    let mut slowest = Duration::ZERO;
    while let Some(took) = closing.join_next().await {
        slowest = slowest.max(took?);
    }
    // Generous: a loaded machine schedules late; what matters is that every
    // connection is closed at all, and not before the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "all closed after the 1 s timeout (plus scheduling): {:?}",
        started.elapsed()
    );
    assert!(
        slowest >= Duration::from_millis(500),
        "not closed before the timeout"
    );
    assert_eq!(get(server.http_addr, "/metrics", &[]).await.status, 200);
    Ok(())
}

/// A body over `--http-max-body-size` is refused with 413 before the
/// handler; beyond `--http-max-connections` a connection waits until
/// another closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_connections_are_capped() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &[
            "--http-max-body-size",
            "1024",
            "--http-max-connections",
            "3",
        ],
    )
    .await;
    let request = |length: usize| {
        let mut raw = format!(
            "GET /metrics HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
        )
        .into_bytes();
        raw.extend(std::iter::repeat_n(b'x', length));
        raw
    };
    assert_eq!(
        send(None, server.http_addr, &request(1024)).await.status,
        200
    );
    assert_eq!(
        send(None, server.http_addr, &request(1025)).await.status,
        413
    );
    let announced = b"GET /metrics HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\nContent-Length: 1000000000\r\n\r\n";
    assert_eq!(send(None, server.http_addr, announced).await.status, 413);

    // Two silent connections and a kept-alive one fill the listener (the
    // kept-alive one has been served, so all three are accepted)...
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(connect(None, server.http_addr).await);
    }
    let mut kept_alive = connect(None, server.http_addr).await;
    head_round_trip(&mut kept_alive).await;
    // ...so a fourth connection's request is not served: the server answers
    // later requests on the kept-alive connection meanwhile, which it would
    // not do before serving the fourth if that one had been accepted.
    let mut fourth = connect(None, server.http_addr).await;
    fourth
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n\r\n")
        .await?;
    for _ in 0..5 {
        head_round_trip(&mut kept_alive).await;
    }
    let mut byte = [0u8; 1];
    assert!(
        matches!(fourth.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served beyond the connection cap"
    );
    // ...until one of them goes away.
    drop(silent.pop());
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), fourth.read_to_end(&mut response)).await??;
    assert_eq!(parse(&response).status, 200);
    Ok(())
}

/// One `HEAD /metrics` on a kept-alive connection, read up to the end of
/// its head (a HEAD response has no body, so the next one starts clean).
async fn head_round_trip(stream: &mut TcpStream) {
    stream
        .write_all(b"HEAD /metrics HTTP/1.1\r\nHost: tokend\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("a HEAD answer within 20 s")
            .expect("read");
        assert!(read > 0, "the kept-alive connection was closed");
        head.extend_from_slice(&buffer[..read]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
}

fn client_from(
    server: &TestServer,
    source: IpAddr,
) -> TokenServiceClient<tonic::transport::Channel> {
    let channel = Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .expect("endpoint")
        .local_address(Some(source))
        .connect_lazy();
    TokenServiceClient::new(channel)
}

/// A flood of bad JWTs from one address: the first `burst` are
/// UNAUTHENTICATED, then the address is refused with RESOURCE_EXHAUSTED
/// `RATE_LIMITED` (with RetryInfo) before its JWT is looked at, even a
/// valid one. Another address is served throughout. The budget refills
/// with the clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_jwts_is_throttled_per_address() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &[
            "--auth-failures-per-minute",
            "60",
            "--auth-failure-burst",
            "10",
        ],
    )
    .await;
    let admin = server.admin("acme");
    let mut flooder = server.client();
    let mut other = client_from(&server, SECOND_PEER);
    let list = || ListTokensRequest::default();

    let mut refused = 0;
    for i in 0..200 {
        let result = flooder.list_tokens(authed(list(), "not.a.jwt")).await;
        if i < 10 {
            expect_error(result, Code::Unauthenticated, "JWT_INVALID");
        } else {
            let decoded = expect_error(result, Code::ResourceExhausted, "RATE_LIMITED");
            let delay = decoded.retry_delay.expect("RetryInfo");
            assert!(delay > Duration::ZERO && delay <= Duration::from_secs(1));
            assert!(
                decoded
                    .quota_subjects
                    .iter()
                    .any(|s| s.contains("127.0.0.1")),
                "{:?}",
                decoded.quota_subjects
            );
            refused += 1;
        }
        if i % 20 == 0 {
            // The other address is served, and its own failures are its own.
            other.list_tokens(authed(list(), &admin)).await?;
        }
    }
    assert_eq!(refused, 190);
    // No JWT at all counts as a failure too; a valid JWT from the throttled
    // address is refused before it is verified.
    expect_error(
        flooder.list_tokens(list()).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    let status = flooder
        .list_tokens(authed(list(), &admin))
        .await
        .expect_err("throttled");
    assert_eq!(details(&status).reason, "RATE_LIMITED");
    expect_error(
        other.list_tokens(authed(list(), "not.a.jwt")).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );
    other.list_tokens(authed(list(), &admin)).await?;

    // One failure refills per second.
    server.clock.advance(TimeDelta::seconds(1));
    flooder.list_tokens(authed(list(), &admin)).await?;
    expect_error(
        flooder.list_tokens(authed(list(), "not.a.jwt")).await,
        Code::Unauthenticated,
        "JWT_INVALID",
    );
    expect_error(
        flooder.list_tokens(authed(list(), &admin)).await,
        Code::ResourceExhausted,
        "RATE_LIMITED",
    );
    Ok(())
}

crate::backend_tests!(metrics_401s_are_throttled_per_address_before_any_database_read);

/// Statements the store has run, by the operator figures.
async fn statements(http: SocketAddr) -> f64 {
    let text = get(http, "/metrics", &[]).await.body;
    crate::http_client::samples(&text)
        .into_iter()
        .filter(|(name, _, _)| name == "tokend_db_statements_total")
        .map(|(_, _, value)| value)
        .sum()
}

/// Well-formed but unknown scrape secrets cost a database read each: after
/// `burst` of them an address gets 429 with Retry-After and its requests
/// reach the database no more, while another address still authenticates.
async fn metrics_401s_are_throttled_per_address_before_any_database_read(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start_with(
        backend,
        &[
            "--auth-failures-per-minute",
            "6",
            "--auth-failure-burst",
            "5",
            "--health-check-interval",
            "1h",
        ],
    )
    .await;
    let admin = server.admin("acme");
    let secret = server
        .client()
        .create_token(authed(scrape_request("prometheus"), &admin))
        .await?
        .into_inner()
        .secret;
    let good = format!("Bearer {secret}");
    let path = "/api/metrics/prometheus";
    let fake = || {
        let fake = tokend::domain::TokenSecret::generate(tokend::domain::TokenKind::Scrape)
            .expect("a secret");
        format!("Bearer {}", fake.expose())
    };

    for _ in 0..5 {
        let response = get(server.http_addr, path, &[("Authorization", &fake())]).await;
        assert_eq!(response.status, 401);
        assert_eq!(response.json()["reason"], "TOKEN_UNKNOWN");
    }
    let before = statements(server.http_addr).await;
    for _ in 0..50 {
        let response = get(server.http_addr, path, &[("Authorization", &fake())]).await;
        assert_eq!(response.status, 429, "{}", response.body);
        let retry_after: u64 = response
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=10).contains(&retry_after), "{retry_after}");
        let problem = response.json();
        assert_eq!(problem["reason"], "RATE_LIMITED");
        assert_eq!(problem["status"], 429);
    }
    // Even the real token waits: the address is refused before anything is
    // looked up.
    let response = get(server.http_addr, path, &[("Authorization", &good)]).await;
    assert_eq!(response.status, 429);
    assert_eq!(
        statements(server.http_addr).await,
        before,
        "a throttled request reads nothing from the database"
    );

    // Another address is served, and fails on its own budget.
    let response = get_from(
        Some(SECOND_PEER),
        server.http_addr,
        path,
        &[("Authorization", &good)],
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        sample(
            &response.body,
            "tokend_tokens",
            "kind=\"scrape\",state=\"active\""
        )
        .is_some()
    );
    let response = get_from(
        Some(SECOND_PEER),
        server.http_addr,
        path,
        &[("Authorization", &fake())],
    )
    .await;
    assert_eq!(response.status, 401);

    // The budget refills with the clock: one failure per 10 s.
    server.clock.advance(TimeDelta::seconds(10));
    let response = get(server.http_addr, path, &[("Authorization", &good)]).await;
    assert_eq!(response.status, 200);
    Ok(())
}
