//! `--jwt-jwks-url` against an identity provider played by a local HTTP
//! server whose JWKS, status and body the test controls and whose requests
//! it counts: the keys are fetched at start, a rotated-in `kid` is fetched
//! at once (at most once per 10 s on the server's clock, one fetch for any
//! number of concurrent JWTs) and the call that named it waits for that
//! fetch (at most 2 s), on gRPC and REST alike, a dropped `kid` is refused after the refresh,
//! an outage or a garbage answer keeps the last good keys, and readiness
//! (with the `tokend_ready` gauge) waits for the first key, then never
//! drops for the provider.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic_health::pb::health_check_response::ServingStatus;

use tokend::grpc::proto::ListTokensRequest;

use crate::http_client::{get, sample};
use crate::support::{Backend, TestDb, TestResult, TestServer, authed, serve_command};

/// What the provider answers.
#[derive(Clone)]
enum Answer {
    /// A JWKS holding these keys, by `kid`.
    Keys(Vec<(&'static str, Arc<Ed25519KeyPair>)>),
    /// 503.
    Unavailable,
    /// 200 with a body that is not a JWKS.
    Garbage,
    /// 503 after [`STALL`]: a provider too slow for a waiting call.
    Stall,
}

/// How long a stalling provider takes to answer: longer than a call waits
/// for a refresh.
const STALL: Duration = Duration::from_secs(4);

/// The identity provider: one route serving the current [`Answer`].
struct Provider {
    addr: SocketAddr,
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct ProviderState {
    answer: Arc<Mutex<Answer>>,
    requests: Arc<AtomicUsize>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

async fn jwks(State(state): State<ProviderState>) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let answer = state.answer.lock().unwrap().clone();
    match answer {
        Answer::Keys(keys) => {
            let keys: Vec<Value> = keys
                .iter()
                .map(|(kid, key)| {
                    json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid,
                        "x": b64(key.public_key().as_ref())})
                })
                .collect();
            (
                [
                    ("content-type", "application/json"),
                    ("cache-control", "public, max-age=3600"),
                ],
                json!({ "keys": keys }).to_string(),
            )
                .into_response()
        }
        Answer::Unavailable => {
            (http::StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response()
        }
        Answer::Stall => {
            tokio::time::sleep(STALL).await;
            (http::StatusCode::SERVICE_UNAVAILABLE, "slow").into_response()
        }
        Answer::Garbage => (
            [("content-type", "text/html")],
            "<html><body>Sign in</body></html>",
        )
            .into_response(),
    }
}

impl Provider {
    async fn start(answer: Answer) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let addr = listener.local_addr().expect("provider address");
        let state = ProviderState {
            answer: Arc::new(Mutex::new(answer)),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let router = axum::Router::new()
            .route("/realms/acme/certs", axum::routing::get(jwks))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Provider {
            addr,
            answer: state.answer,
            requests: state.requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/realms/acme/certs", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the provider has been asked `count` times.
    async fn wait_for_requests(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.requests() < count {
            assert!(
                Instant::now() < deadline,
                "provider asked {} times, expected {count}",
                self.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn key() -> Arc<Ed25519KeyPair> {
    Arc::new(Ed25519KeyPair::generate().expect("an Ed25519 key"))
}

/// A JWT for `sub` in org "acme", signed by `key` under `kid`, valid for
/// ten minutes from the server's clock.
fn jwt(server: &TestServer, kid: &str, key: &Ed25519KeyPair, sub: &str) -> String {
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let claims =
        json!({"sub": sub, "org_id": "acme", "roles": ["admin"], "iat": now, "exp": now + 600});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}

/// Whether the REST face accepts `jwt` (401 otherwise).
async fn accepted_over_rest(server: &TestServer, jwt: &str) -> bool {
    let bearer = format!("Bearer {jwt}");
    let response = get(
        server.http_addr,
        "/v1/tokens",
        &[("authorization", bearer.as_str())],
    )
    .await;
    match response.status {
        200 => true,
        401 => false,
        other => panic!("REST answered {other}: {}", response.body),
    }
}

async fn accepted(server: &TestServer, jwt: &str) -> bool {
    match server
        .client()
        .list_tokens(authed(ListTokensRequest::default(), jwt))
        .await
    {
        Ok(_) => true,
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            false
        }
    }
}

/// Calls with `jwt` until it is accepted (bounded): a server not ready yet
/// refuses with UNAVAILABLE, and one whose provider was down may still be
/// waiting out its retry.
async fn eventually_accepted(server: &TestServer, jwt: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .client()
            .list_tokens(authed(ListTokensRequest::default(), jwt))
            .await
        {
            Ok(_) => return,
            // Unavailable: migrations still running on a server not yet ready.
            Err(status) => assert!(
                matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::Unavailable
                ),
                "{status:?}"
            ),
        }
        assert!(Instant::now() < deadline, "never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Past the unknown-kid throttle on the server's clock.
fn past_the_throttle(server: &TestServer) {
    server.clock.advance(TimeDelta::seconds(11));
}

/// The flags of a server trusting the provider's keys (and, as every test
/// server, the HS secret). These tests send refused JWTs on purpose, so the
/// per-address budget of failed authentications is off.
fn flags(url: &str) -> [&str; 4] {
    ["--jwt-jwks-url", url, "--auth-failures-per-minute", "0"]
}

/// A server trusting the provider's keys, started once the first fetch
/// answered.
async fn start(backend: Backend, provider: &Provider) -> TestServer {
    let url = provider.url();
    let server = TestServer::start_on(Arc::new(TestDb::new(backend).await), &flags(&url)).await;
    provider.wait_for_requests(1).await;
    server
}

async fn a_jwt_signed_by_the_providers_key_is_accepted(backend: Backend) -> TestResult {
    let k1 = key();
    let provider = Provider::start(Answer::Keys(vec![("k1", k1.clone())])).await;
    let server = start(backend, &provider).await;
    assert!(accepted(&server, &jwt(&server, "k1", &k1, "svc")).await);
    let stranger = key();
    assert!(
        !accepted(&server, &jwt(&server, "k1", &stranger, "svc")).await,
        "another key under the same kid"
    );
    assert!(
        accepted(&server, &server.admin("acme")).await,
        "the HS secret still verifies a JWT without kid"
    );
    server.shutdown().await;
    Ok(())
}

async fn a_rotated_in_kid_is_fetched_at_once_and_a_dropped_kid_is_refused_after(
    backend: Backend,
) -> TestResult {
    let (k1, k2) = (key(), key());
    let provider = Provider::start(Answer::Keys(vec![("k1", k1.clone())])).await;
    let server = start(backend, &provider).await;
    let old = jwt(&server, "k1", &k1, "svc");
    assert!(accepted(&server, &old).await);

    provider.answer(Answer::Keys(vec![("k2", k2.clone())]));
    past_the_throttle(&server);
    let new = jwt(&server, "k2", &k2, "svc");
    assert!(
        accepted(&server, &new).await,
        "the first call with the rotated-in kid waits for the refresh it asked for"
    );
    assert_eq!(provider.requests(), 2, "one refresh, not the max-age's");
    assert!(
        !accepted(&server, &old).await,
        "k1 left the provider's set: a JWT verified before is refused now"
    );
    assert!(!accepted(&server, &jwt(&server, "k1", &k1, "other")).await);

    // The same over REST.
    let k3 = key();
    provider.answer(Answer::Keys(vec![("k3", k3.clone())]));
    past_the_throttle(&server);
    assert!(
        accepted_over_rest(&server, &jwt(&server, "k3", &k3, "svc")).await,
        "the first REST call with the rotated-in kid waits for the refresh"
    );
    assert!(!accepted_over_rest(&server, &new).await, "k2 left the set");
    server.shutdown().await;
    Ok(())
}

/// A `kid` the provider does not have either is refused once the fetch
/// answered, or, when the provider is slower than that, after the 2 s wait.
async fn an_unknown_kid_is_refused_after_at_most_two_seconds(backend: Backend) -> TestResult {
    let k1 = key();
    let provider = Provider::start(Answer::Keys(vec![("k1", k1.clone())])).await;
    let server = start(backend, &provider).await;
    let stranger = key();
    let unknown = |kid: &str| jwt(&server, kid, &stranger, "svc");

    past_the_throttle(&server);
    let started = Instant::now();
    assert!(!accepted(&server, &unknown("nope-1")).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the fetch answered"
    );
    assert_eq!(provider.requests(), 2);

    provider.answer(Answer::Stall);
    past_the_throttle(&server);
    let started = Instant::now();
    assert!(!accepted(&server, &unknown("nope-2")).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(3),
        "waited {waited:?} for a stalled provider"
    );
    // The fetch is still under way: a REST call waits for it, as long.
    let started = Instant::now();
    assert!(!accepted_over_rest(&server, &unknown("nope-3")).await);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "waited {waited:?} for a stalled provider over REST"
    );
    assert_eq!(provider.requests(), 3, "one fetch for both");
    // Within the throttle a call does not wait for anything.
    provider.answer(Answer::Keys(vec![("k1", k1.clone())]));
    tokio::time::sleep(STALL).await;
    let started = Instant::now();
    assert!(!accepted(&server, &unknown("nope-4")).await);
    assert!(!accepted_over_rest(&server, &unknown("nope-5")).await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "throttled: refused at once"
    );
    assert_eq!(provider.requests(), 3);
    server.shutdown().await;
    Ok(())
}

async fn unknown_kids_fetch_at_most_once_per_ten_seconds(backend: Backend) -> TestResult {
    let k1 = key();
    let provider = Provider::start(Answer::Keys(vec![("k1", k1.clone())])).await;
    let server = start(backend, &provider).await;
    let stranger = key();
    let unknown = |n: usize| jwt(&server, &format!("nope-{n}"), &stranger, "svc");

    // Within 10 s of the start-up fetch: no fetch at all.
    for n in 0..5 {
        assert!(!accepted(&server, &unknown(n)).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.requests(), 1, "throttled since the start-up fetch");

    // Past it: twenty concurrent unknown kids make one fetch.
    past_the_throttle(&server);
    let calls: Vec<_> = (0..20)
        .map(|n| {
            let client = server.client();
            let jwt = unknown(100 + n);
            tokio::spawn(async move {
                client
                    .clone()
                    .list_tokens(authed(ListTokensRequest::default(), &jwt))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await?.map_err(|s| s.code()),
            Err(tonic::Code::Unauthenticated)
        );
    }
    provider.wait_for_requests(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        provider.requests(),
        2,
        "one fetch for twenty concurrent JWTs"
    );
    for n in 0..5 {
        assert!(!accepted(&server, &unknown(200 + n)).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.requests(), 2, "and none more within 10 s");

    past_the_throttle(&server);
    assert!(!accepted(&server, &unknown(300)).await);
    provider.wait_for_requests(3).await;
    assert!(accepted(&server, &jwt(&server, "k1", &k1, "svc")).await);
    server.shutdown().await;
    Ok(())
}

async fn an_outage_or_a_garbage_answer_keeps_the_last_good_keys(backend: Backend) -> TestResult {
    let k1 = key();
    let provider = Provider::start(Answer::Keys(vec![("k1", k1.clone())])).await;
    let server = start(backend, &provider).await;
    let stranger = key();
    let mut fetches = 1;
    for (round, answer) in [Answer::Unavailable, Answer::Garbage]
        .into_iter()
        .enumerate()
    {
        provider.answer(answer);
        past_the_throttle(&server);
        assert!(!accepted(&server, &jwt(&server, "unknown", &stranger, "svc")).await);
        fetches += 1;
        provider.wait_for_requests(fetches).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        // A JWT never seen before, so its signature is checked against the
        // ring as it is now.
        let fresh = jwt(&server, "k1", &k1, &format!("after-{round}"));
        assert!(accepted(&server, &fresh).await, "round {round}");
    }

    // The provider gone altogether (connection refused).
    provider.task.abort();
    let _ = provider.task.await;
    past_the_throttle(&server);
    assert!(!accepted(&server, &jwt(&server, "unknown", &stranger, "svc")).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(accepted(&server, &jwt(&server, "k1", &k1, "after-down")).await);
    assert_eq!(server.readiness().await, Some(ServingStatus::Serving));
    server.shutdown().await;
    Ok(())
}

async fn ready_gauge(server: &TestServer) -> Option<f64> {
    sample(
        &get(server.http_addr, "/metrics", &[]).await.body,
        "tokend_ready",
        "",
    )
}

async fn readiness_waits_for_the_first_key_then_ignores_the_provider(
    backend: Backend,
) -> TestResult {
    let k1 = key();
    let provider = Provider::start(Answer::Unavailable).await;
    let url = provider.url();
    let db = Arc::new(TestDb::new(backend).await);
    let server = TestServer::spawn(db, &flags(&url)).await;
    provider.wait_for_requests(1).await;
    // Several health-check intervals (100 ms) with the database ready.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(server.readiness().await, Some(ServingStatus::NotServing));
    assert_eq!(ready_gauge(&server).await, Some(0.0));

    provider.answer(Answer::Keys(vec![("k1", k1.clone())]));
    past_the_throttle(&server);
    eventually_accepted(&server, &jwt(&server, "k1", &k1, "svc")).await;
    server.wait_ready().await;
    assert_eq!(ready_gauge(&server).await, Some(1.0));

    provider.answer(Answer::Unavailable);
    let before = provider.requests();
    past_the_throttle(&server);
    assert!(!accepted(&server, &jwt(&server, "unknown", &key(), "svc")).await);
    provider.wait_for_requests(before + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.readiness().await, Some(ServingStatus::Serving));
    assert_eq!(ready_gauge(&server).await, Some(1.0));
    server.shutdown().await;
    Ok(())
}

crate::backend_tests!(
    a_jwt_signed_by_the_providers_key_is_accepted,
    a_rotated_in_kid_is_fetched_at_once_and_a_dropped_kid_is_refused_after,
    an_unknown_kid_is_refused_after_at_most_two_seconds,
    unknown_kids_fetch_at_most_once_per_ten_seconds,
    an_outage_or_a_garbage_answer_keeps_the_last_good_keys,
    readiness_waits_for_the_first_key_then_ignores_the_provider,
);

/// A JWKS URL that would carry keys in clear, or is no URL, stops `serve`
/// with one line naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_remote_host_stops_start_up() -> TestResult {
    let root = tempfile::tempdir()?;
    for (url, why) in [
        ("http://idp.example.com/realms/acme/certs", "loopback"),
        ("ftp://idp.example.com/certs", "https://"),
        ("idp.example.com/certs", "not a URL"),
    ] {
        let output = serve_command(&root.path().join("data"))
            .args(["--jwt-jwks-url", url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output();
        // A server that accepted the URL would run until killed (on drop).
        let output = tokio::time::timeout(Duration::from_secs(30), output)
            .await
            .map_err(|_| format!("{url} accepted: still running"))??;
        assert!(!output.status.success(), "{url} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with("tokend:"))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains("--jwt-jwks-url (TOKEND_JWT_JWKS_URL)") && lines[0].contains(why),
            "{url}: {}",
            lines[0]
        );
    }
    Ok(())
}
