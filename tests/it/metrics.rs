//! The two metrics endpoints: operator figures on `/metrics` with labels
//! from a fixed set, tenant figures on `/api/metrics/prometheus` holding one
//! organisation's figures only, read in one statement, and refusals in the
//! problem+json envelope with the caller's request id.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use tokio::task::JoinSet;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use tokend::domain::Clock;
use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, DeleteWorkspaceApiKeyRequest,
    RevokeScrapeTokenRequest, RevokeServiceAccountTokenRequest, TokenKind,
};

use crate::http_client::{get, sample, samples};
use crate::support::{Backend, TestResult, TestServer, authed, scrape_request, spawn_binary};

const OPERATOR: &str = "/metrics";
const TENANT: &str = "/api/metrics/prometheus";

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The `tokend_grpc_requests_total` series: (method, code) pairs.
fn rpc_series(text: &str) -> BTreeSet<String> {
    samples(text)
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("tokend_grpc_"))
        .map(|(name, labels, _)| format!("{name}{{{labels}}}"))
        .collect()
}

/// The `method` label values in a body.
fn methods(text: &str) -> BTreeSet<String> {
    samples(text)
        .into_iter()
        .filter_map(|(_, labels, _)| {
            let start = labels.find("method=\"")? + "method=\"".len();
            let end = labels[start..].find('"')? + start;
            Some(labels[start..end].to_owned())
        })
        .collect()
}

/// 10 000 calls to made-up methods, without a JWT, under every served
/// prefix and none: the operator endpoint gains a handful of series at most
/// (the `unknown` method's), and the server's memory does not grow with
/// them. Runs the real binary so that its memory is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_unknown_methods_add_no_series_and_no_memory() -> TestResult {
    let dir = tempfile::tempdir()?;
    let binary = spawn_binary(dir.path(), &[], "warn,tokend=info").await;
    let channel = binary.ready_channel().await;
    let pid = binary.child.id().expect("pid");
    let http = binary.http_addr;

    // Warm up every served path once, so the baseline holds their series.
    let _ = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await;
    let before_text = get(http, OPERATOR, &[]).await.body;
    let before = rpc_series(&before_text);
    let rss_before = rss_bytes(pid);

    let prefixes = [
        "/grpc.health.v1.Health/",
        "/tokend.v1.TokenService/",
        "/grpc.reflection.v1.ServerReflection/",
        "/grpc.reflection.v1alpha.ServerReflection/",
        "/x",
    ];
    // Each worker has its own connection. A call refused before its request
    // body arrives leaks a little of h2's per-connection DATA-frame budget,
    // and after about a hundred such calls the server's h2 closes the
    // connection (GOAWAY ENHANCE_YOUR_CALM): that call is retried on a new
    // connection, since only what the server counted matters here.
    let mut calls = JoinSet::new();
    for worker in 0..50u32 {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", binary.grpc_addr))?;
        calls.spawn(async move {
            let mut grpc = tonic::client::Grpc::new(endpoint.connect_lazy());
            for i in 0..200u32 {
                let n = worker * 200 + i;
                let path = format!(
                    "{}{}",
                    prefixes[(n % 5) as usize],
                    uuid::Uuid::new_v4().simple()
                );
                for attempt in 0.. {
                    grpc.ready().await.expect("ready");
                    let codec =
                        tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default(
                        );
                    let status = grpc
                        .unary(
                            tonic::Request::new(HealthCheckRequest::default()),
                            PathAndQuery::try_from(path.clone()).expect("a path"),
                            codec,
                        )
                        .await
                        .expect_err("no such method");
                    if matches!(
                        status.code(),
                        Code::Unimplemented | Code::Unauthenticated | Code::ResourceExhausted
                    ) {
                        break;
                    }
                    assert!(
                        std::error::Error::source(&status).is_some() && attempt < 5,
                        "{status:?}"
                    );
                }
            }
        });
    }
    while let Some(done) = calls.join_next().await {
        done?;
    }

    let after_text = get(http, OPERATOR, &[]).await.body;
    let after = rpc_series(&after_text);
    // The `unknown` method's series: a counter per code it was answered
    // with, and one histogram (16 sample lines).
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.len() <= 25,
        "10 000 unknown methods added {} series, e.g. {:?}",
        added.len(),
        &added[..10]
    );
    let methods = methods(&after_text);
    for method in &methods {
        assert!(
            method == "unknown"
                || method.starts_with("/tokend.v1.TokenService/")
                || method.starts_with("/grpc.health.v1.Health/")
                || method.starts_with("/grpc.reflection."),
            "label value {method:?} is not a served method"
        );
    }
    assert!(methods.contains("unknown"));
    assert!(methods.len() <= 16, "{methods:?}");
    assert!(
        after_text.len() < before_text.len() + 8 * 1024,
        "the scrape grew from {} to {} bytes",
        before_text.len(),
        after_text.len()
    );
    let rss_after = rss_bytes(pid);
    eprintln!(
        "series added: {}; scrape {} -> {} bytes; RSS {} -> {} KiB",
        added.len(),
        before_text.len(),
        after_text.len(),
        rss_before >> 10,
        rss_after >> 10
    );
    assert!(
        rss_after < rss_before + 16 * 1024 * 1024,
        "RSS grew from {} MiB to {} MiB",
        rss_before >> 20,
        rss_after >> 20
    );
    Ok(())
}

crate::backend_tests!(
    operators_and_tenants_see_separate_figures,
    token_counts_are_one_statement_and_one_snapshot,
    metrics_refusals_carry_the_legacy_members_and_the_callers_request_id,
);

fn create(kind: TokenKind, name: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        kind: kind as i32,
        name: name.into(),
        ..Default::default()
    }
}

fn in_days(server: &TestServer, days: i64) -> prost_types::Timestamp {
    let at = server.clock.now() + TimeDelta::days(days);
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: 0,
    }
}

async fn operators_and_tenants_see_separate_figures(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let acme = server.admin("acme-org");
    let other = server.admin("globex-org");
    let gateway = server.introspector();
    let mut client = server.client();
    let acme_scrape = client
        .create_token(authed(scrape_request("prom"), &acme))
        .await?
        .into_inner();
    let mut soon = create(TokenKind::PersonalAccess, "soon");
    soon.expire_time = Some(in_days(&server, 3));
    let pat = client.create_token(authed(soon, &acme)).await?.into_inner();
    let mut later = create(TokenKind::ServiceAccount, "deploy");
    later.service_account_slug = "ci".into();
    later.expire_time = Some(in_days(&server, 30));
    let sat = client
        .create_token(authed(later, &acme))
        .await?
        .into_inner();
    let other_scrape = client
        .create_token(authed(scrape_request("prom"), &other))
        .await?
        .into_inner();
    let other_pat = client
        .create_token(authed(create(TokenKind::PersonalAccess, "o"), &other))
        .await?
        .into_inner();
    client
        .revoke_service_account_token(authed(
            RevokeServiceAccountTokenRequest {
                service_account_slug: "ci".into(),
                token_slug: "deploy".into(),
                reason: String::new(),
            },
            &acme,
        ))
        .await?;
    let authenticate = |secret: &str| {
        authed(
            AuthenticateTokenRequest {
                secret: secret.to_owned(),
                ..Default::default()
            },
            &gateway,
        )
    };
    for _ in 0..2 {
        client.authenticate_token(authenticate(&pat.secret)).await?;
    }
    let revoked = client.authenticate_token(authenticate(&sat.secret)).await;
    assert_eq!(revoked.unwrap_err().code(), Code::Unauthenticated);
    for _ in 0..5 {
        client
            .authenticate_token(authenticate(&other_pat.secret))
            .await?;
    }

    // Operators: no credentials, service-wide figures, no tenant in sight.
    let operator = get(server.http_addr, OPERATOR, &[]).await;
    assert_eq!(operator.status, 200, "{}", operator.body);
    assert!(
        operator
            .header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let text = &operator.body;
    assert_eq!(
        sample(
            text,
            "tokend_grpc_requests_total",
            "code=\"Ok\",method=\"/tokend.v1.TokenService/CreateToken\""
        ),
        Some(5.0)
    );
    assert!(text.contains("tokend_grpc_request_duration_seconds_bucket{"));
    assert_eq!(
        sample(text, "tokend_authentications_total", "result=\"ok\""),
        Some(7.0)
    );
    assert!(sample(text, "tokend_db_pool_connections", "state=\"open\"").is_some());
    assert!(
        sample(
            text,
            "tokend_db_statements_total",
            "operation=\"select\",outcome=\"ok\""
        )
        .is_some_and(|n| n > 0.0)
    );
    assert!(
        sample(
            text,
            "tokend_db_statements_total",
            "operation=\"insert\",outcome=\"ok\""
        )
        .is_some_and(|n| n >= 5.0)
    );
    assert!(text.contains("tokend_db_statement_duration_seconds_bucket{"));
    assert!(text.contains("process_resident_memory_bytes"));
    for (name, _, _) in samples(text) {
        assert!(
            name.starts_with("tokend_") || name.starts_with("process_"),
            "{name}"
        );
    }
    assert!(!text.contains("acme-org") && !text.contains("globex-org"));
    assert!(!text.contains("tokend_tokens"));

    // A tenant: its own organisation's figures, nothing service-wide.
    let tenant = get(
        server.http_addr,
        TENANT,
        &[("Authorization", &bearer(&acme_scrape.secret))],
    )
    .await;
    assert_eq!(tenant.status, 200, "{}", tenant.body);
    let text = &tenant.body;
    let expect = [
        ("tokend_tokens", "kind=\"scrape\",state=\"active\"", 1.0),
        (
            "tokend_tokens",
            "kind=\"personal_access\",state=\"active\"",
            1.0,
        ),
        (
            "tokend_tokens",
            "kind=\"service_account\",state=\"revoked\"",
            1.0,
        ),
        (
            "tokend_tokens",
            "kind=\"service_account\",state=\"active\"",
            0.0,
        ),
        (
            "tokend_tokens",
            "kind=\"workspace_api_key\",state=\"active\"",
            0.0,
        ),
        (
            "tokend_tokens_expiring_within_7d",
            "kind=\"personal_access\"",
            1.0,
        ),
        (
            "tokend_tokens_expiring_within_7d",
            "kind=\"service_account\"",
            0.0,
        ),
        ("tokend_tokens_expiring_within_7d", "kind=\"scrape\"", 0.0),
        // Two of the PAT, one of this very scrape.
        ("tokend_org_authentications_total", "result=\"ok\"", 3.0),
        (
            "tokend_org_authentications_total",
            "result=\"revoked\"",
            1.0,
        ),
        (
            "tokend_org_authentications_total",
            "result=\"expired\"",
            0.0,
        ),
    ];
    for (name, labels, value) in expect {
        assert_eq!(
            sample(text, name, labels),
            Some(value),
            "{name}{{{labels}}}"
        );
    }
    let names: BTreeSet<String> = samples(text).into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "tokend_tokens".to_owned(),
            "tokend_tokens_expiring_within_7d".to_owned(),
            "tokend_org_authentications_total".to_owned(),
        ]),
        "nothing service-wide for a tenant"
    );
    assert!(!text.contains("method=") && !text.contains("process_"));

    // The other tenant sees its own.
    let tenant = get(
        server.http_addr,
        TENANT,
        &[("Authorization", &bearer(&other_scrape.secret))],
    )
    .await;
    assert_eq!(
        sample(
            &tenant.body,
            "tokend_tokens",
            "kind=\"personal_access\",state=\"active\""
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &tenant.body,
            "tokend_org_authentications_total",
            "result=\"ok\""
        ),
        Some(6.0)
    );
    assert_eq!(
        sample(
            &tenant.body,
            "tokend_org_authentications_total",
            "result=\"revoked\""
        ),
        Some(0.0)
    );

    // Expiry follows the clock: in 8 days the PAT is expired.
    server.clock.advance(TimeDelta::days(8));
    let tenant = get(
        server.http_addr,
        TENANT,
        &[("Authorization", &bearer(&acme_scrape.secret))],
    )
    .await;
    assert_eq!(
        sample(
            &tenant.body,
            "tokend_tokens",
            "kind=\"personal_access\",state=\"expired\""
        ),
        Some(1.0),
        "{}",
        tenant.body
    );
    assert_eq!(
        sample(
            &tenant.body,
            "tokend_tokens_expiring_within_7d",
            "kind=\"personal_access\""
        ),
        Some(0.0)
    );
    Ok(())
}

/// The `select` statements run so far.
async fn selects(server: &TestServer) -> f64 {
    let text = get(server.http_addr, OPERATOR, &[]).await.body;
    sample(
        &text,
        "tokend_db_statements_total",
        "operation=\"select\",outcome=\"ok\"",
    )
    .unwrap_or(0.0)
}

/// A scrape reads the token counts in one statement (besides the one that
/// looks up the scrape token), so every figure comes from one snapshot:
/// while scrape tokens and workspace keys are revoked in pairs (the key
/// first), no scrape ever sees more keys revoked than scrape tokens plus one.
async fn token_counts_are_one_statement_and_one_snapshot(backend: Backend) -> TestResult {
    // Readiness pings would not count (they are not statements of the
    // store), but a long interval keeps the figures quiet all the same.
    let server = TestServer::start_with(backend, &["--health-check-interval", "1h"]).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    let scraper = client
        .create_token(authed(scrape_request("prometheus"), &admin))
        .await?
        .into_inner()
        .secret;
    let auth = [("Authorization", bearer(&scraper))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    // The first scrape also records the scrape token's last use.
    assert_eq!(get(server.http_addr, TENANT, &auth).await.status, 200);

    let before = selects(&server).await;
    let scrape = get(server.http_addr, TENANT, &auth).await;
    assert_eq!(scrape.status, 200);
    assert_eq!(
        selects(&server).await - before,
        2.0,
        "one SELECT finds the scrape token, one counts everything"
    );

    const PAIRS: usize = 60;
    let mut ids = Vec::new();
    for i in 0..PAIRS {
        let scrape_token = client
            .create_token(authed(scrape_request(&format!("s{i}")), &admin))
            .await?
            .into_inner();
        ids.push(scrape_token.token.expect("token").id);
        let mut key = create(TokenKind::WorkspaceApiKey, &format!("w{i}"));
        key.workspace_id = "g-0123456789".into();
        client.create_token(authed(key, &admin)).await?;
    }
    let revoker = {
        let mut client = server.client();
        let admin = admin.clone();
        tokio::spawn(async move {
            for (i, id) in ids.into_iter().enumerate() {
                client
                    .delete_workspace_api_key(authed(
                        DeleteWorkspaceApiKeyRequest {
                            workspace_id: "g-0123456789".into(),
                            key_name: format!("w{i}"),
                            reason: String::new(),
                        },
                        &admin,
                    ))
                    .await
                    .expect("delete key");
                client
                    .revoke_scrape_token(authed(
                        RevokeScrapeTokenRequest {
                            id,
                            reason: String::new(),
                        },
                        &admin,
                    ))
                    .await
                    .expect("revoke scrape token");
            }
        })
    };
    let started = Instant::now();
    let mut scrapes = 0;
    loop {
        let done = revoker.is_finished();
        let text = get(server.http_addr, TENANT, &auth).await.body;
        let revoked = |kind: &str| {
            sample(
                &text,
                "tokend_tokens",
                &format!("kind=\"{kind}\",state=\"revoked\""),
            )
            .expect("a revoked count")
        };
        let active = |kind: &str| {
            sample(
                &text,
                "tokend_tokens",
                &format!("kind=\"{kind}\",state=\"active\""),
            )
            .expect("an active count")
        };
        let (keys, scrape_tokens) = (revoked("workspace_api_key"), revoked("scrape"));
        assert!(
            keys - scrape_tokens == 0.0 || keys - scrape_tokens == 1.0,
            "scrape {scrapes}: {keys} keys and {scrape_tokens} scrape tokens revoked"
        );
        assert_eq!(
            active("scrape") + scrape_tokens,
            (PAIRS + 1) as f64,
            "every scrape token counted once"
        );
        scrapes += 1;
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60));
    }
    revoker.await?;
    assert!(scrapes > 10, "the scrapes overlapped the revocations");
    Ok(())
}

/// Is `text` a URI reference made only of characters RFC 3986 allows, with
/// every `%` starting an escape?
fn is_uri(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(i, b)| match b {
        b'%' => {
            bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        }
        b => b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(b),
    })
}

async fn metrics_refusals_carry_the_legacy_members_and_the_callers_request_id(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let unknown = tokend::domain::TokenSecret::generate(tokend::domain::TokenKind::Scrape)?;
    let unknown = bearer(unknown.expose());
    let odd_id = "scrape 42/<\"x\">%";
    for (name, headers, reason) in [
        ("no token", vec![("x-request-id", odd_id)], "TOKEN_MISSING"),
        (
            "garbage",
            vec![
                ("x-request-id", "abc-1"),
                ("Authorization", "Bearer hunter2"),
            ],
            "TOKEN_MALFORMED",
        ),
        (
            "unknown",
            vec![
                ("x-request-id", "abc-2"),
                ("Authorization", unknown.as_str()),
            ],
            "TOKEN_UNKNOWN",
        ),
    ] {
        let response = get(server.http_addr, TENANT, &headers).await;
        assert_eq!(response.status, 401, "{name}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer realm=\"tokend-metrics\"")
        );
        let sent_id = headers[0].1;
        assert_eq!(response.header("x-request-id"), Some(sent_id), "{name}");
        let problem = response.json();
        let type_uri = format!(
            "urn:tokend:problem:{}",
            reason.to_ascii_lowercase().replace('_', "-")
        );
        assert_eq!(problem["type"], type_uri.as_str());
        assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(problem["status"], 401);
        let detail = problem["detail"].as_str().expect("detail");
        assert!(!detail.is_empty());
        assert_eq!(problem["error"], detail, "legacy error = detail");
        assert!(problem["details"].is_object(), "legacy details object");
        assert_eq!(problem["requestId"], sent_id);
        assert_eq!(problem["reason"], reason);
        let instance = problem["instance"].as_str().expect("instance");
        assert!(is_uri(instance), "{instance:?} is not a URI");
        assert!(instance.starts_with("urn:tokend:request:"));
    }
    let response = get(server.http_addr, TENANT, &[("x-request-id", odd_id)]).await;
    assert_eq!(
        response.json()["instance"],
        "urn:tokend:request:scrape%2042%2F%3C%22x%22%3E%25"
    );

    // An unacceptable id (too long, or not printable) is replaced.
    let too_long = "a".repeat(129);
    for bad in [too_long.as_str(), "tab\there"] {
        let response = get(server.http_addr, TENANT, &[("x-request-id", bad)]).await;
        assert_eq!(response.status, 401);
        let problem = response.json();
        let id = problem["requestId"].as_str().expect("requestId");
        assert_ne!(id, bad);
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
        assert_eq!(response.header("x-request-id"), Some(id));
        assert_eq!(problem["instance"], format!("urn:tokend:request:{id}"));
    }
    // Exactly 128 printable characters are kept.
    let longest = "b".repeat(128);
    let response = get(server.http_addr, TENANT, &[("x-request-id", &longest)]).await;
    assert_eq!(response.json()["requestId"], longest.as_str());
    Ok(())
}
