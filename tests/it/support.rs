//! Test harness: databases, servers, JWTs and error-detail decoding.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use prost::Message;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tonic_types::StatusExt;

use tokend::config::{Cli, ServeArgs, ServerConfig};
use tokend::domain::ManualClock;
use tokend::grpc::proto::Problem;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::identity::{HsSecret, MintRequest, mint_hs256};
use tokend::server::{self, ServerHandle};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The HS256 secret every test server trusts.
pub const HS_SECRET: &str = "test-secret-0123456789abcdef0123456789";
/// The environment variable naming a PostgreSQL server for the suite.
pub const PG_URL_VAR: &str = "TOKEND_TEST_DATABASE_URL";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares backend-parametrised tests: each `async fn name(backend:
/// Backend) -> TestResult` in the calling module runs once per backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> $crate::support::TestResult {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> $crate::support::TestResult {
                    if !$crate::support::postgres_available() {
                        return Ok(());
                    }
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Whether PostgreSQL tests should run. Under `CI=true` a missing
/// `TOKEND_TEST_DATABASE_URL` is a failure, never a silent skip.
pub fn postgres_available() -> bool {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => true,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "{PG_URL_VAR} must be set when CI=true: PostgreSQL tests may not be skipped"
                );
            }
            eprintln!("skipping PostgreSQL variant: {PG_URL_VAR} is not set");
            false
        }
    }
}

/// A fresh database for one test: an SQLite file in a temporary folder, or a
/// new PostgreSQL database dropped when the test ends.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    pg_name: Option<String>,
}

fn pg_admin_url() -> String {
    std::env::var(PG_URL_VAR).unwrap_or_default()
}

/// `postgres://user@host:port/db?x` → the same URL naming `database`.
pub fn pg_url_with_database(admin: &str, database: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..authority_end])
}

async fn pg_admin_exec(sql: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let mut options = sea_orm::ConnectOptions::new(pg_admin_url());
    options.sqlx_logging(false).max_connections(1);
    let db = sea_orm::Database::connect(options).await?;
    db.execute_unprepared(sql).await?;
    db.close().await
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("tokend.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!("tokend_test_{}", uuid::Uuid::new_v4().simple());
                pg_admin_exec(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                TestDb {
                    url: pg_url_with_database(&pg_admin_url(), &name),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside async context: a short-lived runtime on its
            // own thread removes the database.
            let _ = std::thread::spawn(move || {
                if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    let _ = runtime.block_on(pg_admin_exec(&format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )));
                }
            })
            .join();
        }
    }
}

/// A tokend running in this process on port 0, with a manual clock.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub channel: Channel,
    pub db: Arc<TestDb>,
}

/// Builds serve settings from flags, as the binary would.
pub fn serve_args(db: &TestDb, extra: &[&str]) -> ServeArgs {
    let data_dir = db.dir.path().display().to_string();
    let mut argv: Vec<String> = vec![
        "tokend".into(),
        "--database-url".into(),
        db.url.clone(),
        "--data-dir".into(),
        data_dir,
        "--jwt-hs256-secret".into(),
        HS_SECRET.into(),
        "--health-check-interval".into(),
        "100ms".into(),
        "--shutdown-grace".into(),
        "5s".into(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::try_parse_from(argv).expect("valid test flags").serve
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_on(Arc::new(TestDb::new(backend).await), &[]).await
    }

    pub async fn start_with(backend: Backend, extra: &[&str]) -> TestServer {
        TestServer::start_on(Arc::new(TestDb::new(backend).await), extra).await
    }

    /// Starts a server on an existing database (a second replica).
    pub async fn start_on(db: Arc<TestDb>, extra: &[&str]) -> TestServer {
        let server = TestServer::spawn(db, extra).await;
        server.wait_ready().await;
        server
    }

    /// Starts without waiting for readiness.
    pub async fn spawn(db: Arc<TestDb>, extra: &[&str]) -> TestServer {
        let args = serve_args(&db, extra);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let config = ServerConfig::from_args(&args).expect("valid test settings");
        let handle = server::start(config, clock.clone(), grpc, http)
            .await
            .expect("server starts");
        let channel = Endpoint::from_shared(format!("http://{}", handle.grpc_addr))
            .expect("endpoint")
            .connect_lazy();
        TestServer {
            grpc_addr: handle.grpc_addr,
            http_addr: handle.http_addr,
            handle: Some(handle),
            clock,
            channel,
            db,
        }
    }

    pub fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// The readiness status right now.
    pub async fn readiness(&self) -> Option<ServingStatus> {
        health_status(&self.channel, "tokend.v1.TokenService").await
    }

    /// Polls readiness until SERVING (bounded).
    pub async fn wait_ready(&self) {
        wait_for_status(
            &self.channel,
            "tokend.v1.TokenService",
            ServingStatus::Serving,
            Duration::from_secs(20),
        )
        .await;
    }

    /// A JWT for `org`/`sub` with roles and permissions, valid for an hour
    /// from the server's clock.
    pub fn jwt(&self, org: &str, sub: &str, roles: &[&str], permissions: &[&str]) -> String {
        let now = tokend::domain::Clock::now(self.clock.as_ref()).timestamp();
        mint(org, sub, roles, permissions, now, now + 3600)
    }

    pub fn admin(&self, org: &str) -> String {
        self.jwt(org, "admin-user", &["admin"], &[])
    }

    pub fn introspector(&self) -> String {
        self.jwt("platform", "gateway", &[], &["tokens_introspect"])
    }

    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.begin_shutdown();
        }
    }
}

pub fn mint(
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
    iat: i64,
    exp: i64,
) -> String {
    mint_hs256(
        &HsSecret::new(HS_SECRET).expect("a long enough test secret"),
        &MintRequest {
            sub: sub.into(),
            org_id: org.into(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            iat,
            exp,
            iss: None,
            aud: None,
        },
    )
    .expect("mint")
}

pub async fn health_status(channel: &Channel, service: &str) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel.clone());
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls a health status until it equals `want`; panics after `limit`.
/// Returns how long it took.
pub async fn wait_for_status(
    channel: &Channel,
    service: &str,
    want: ServingStatus,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if health_status(channel, service).await == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{service:?} did not become {want:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Wraps a message with a bearer JWT and an optional request id.
pub fn authed<T>(message: T, jwt: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {jwt}").parse().expect("ascii JWT"),
    );
    request
}

/// Decoded error details of a status.
#[derive(Debug)]
pub struct Details {
    pub code: Code,
    pub message: String,
    pub problem: Problem,
    pub reason: String,
    pub domain: String,
    pub metadata: std::collections::HashMap<String, String>,
    pub request_id: String,
    pub field_violations: Vec<(String, String)>,
    pub resource_name: Option<String>,
    pub retry_delay: Option<Duration>,
    pub quota_subjects: Vec<String>,
}

/// Decodes the details of `status` with tonic-types (standard details) and
/// prost (the Problem), asserting the invariants every error must keep.
pub fn details(status: &Status) -> Details {
    let standard = status.get_error_details();
    let raw =
        tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status in details");
    assert_eq!(
        raw.code,
        status.code() as i32,
        "google.rpc.Status code equals the gRPC code"
    );
    assert_eq!(
        raw.message,
        status.message(),
        "google.rpc.Status message equals the gRPC message"
    );
    let problems: Vec<Problem> = raw
        .details
        .iter()
        .filter(|any| any.type_url == "type.googleapis.com/tokend.v1.Problem")
        .map(|any| Problem::decode(any.value.as_slice()).expect("Problem decodes"))
        .collect();
    assert_eq!(problems.len(), 1, "exactly one Problem: {raw:?}");
    let mut seen = std::collections::HashSet::new();
    for any in &raw.details {
        assert!(
            seen.insert(any.type_url.clone()),
            "detail type {} appears twice",
            any.type_url
        );
    }
    let problem = problems.into_iter().next().expect("one problem");
    let info = standard.error_info().expect("ErrorInfo present");
    let request_info = standard.request_info().expect("RequestInfo present");
    assert_eq!(
        problem.detail,
        status.message(),
        "Problem.detail equals the status message"
    );
    assert_eq!(problem.request_id, request_info.request_id);
    let field_violations: Vec<(String, String)> = standard
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default();
    let problem_errors: Vec<(String, String)> = problem
        .errors
        .iter()
        .map(|e| (e.location.clone(), e.message.clone()))
        .collect();
    assert_eq!(
        field_violations, problem_errors,
        "BadRequest matches Problem.errors one to one"
    );
    Details {
        code: status.code(),
        message: status.message().to_owned(),
        reason: info.reason.clone(),
        domain: info.domain.clone(),
        metadata: info.metadata.clone(),
        request_id: request_info.request_id.clone(),
        field_violations,
        resource_name: standard.resource_info().map(|r| r.resource_name.clone()),
        retry_delay: standard.retry_info().and_then(|r| r.retry_delay),
        quota_subjects: standard
            .quota_failure()
            .map(|q| q.violations.iter().map(|v| v.subject.clone()).collect())
            .unwrap_or_default(),
        problem,
    }
}

/// Asserts `result` failed with `code` and `reason`; returns the details.
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Details {
    let status = match result {
        Ok(value) => panic!("expected {code:?}/{reason}, got OK: {value:?}"),
        Err(status) => status,
    };
    let details = details(&status);
    assert_eq!(details.code, code, "code of {status:?}");
    assert_eq!(details.reason, reason, "reason of {status:?}");
    assert_eq!(details.domain, "tokend");
    details
}

/// Every token of the caller's org, all pages.
pub async fn all_tokens(
    server: &TestServer,
    admin: &str,
) -> Result<Vec<tokend::grpc::proto::Token>, Status> {
    let (mut tokens, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = tokend::grpc::proto::ListTokensRequest {
            show_revoked: true,
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = server
            .client()
            .list_tokens(authed(request, admin))
            .await?
            .into_inner();
        tokens.extend(page.tokens);
        if page.next_page_token.is_empty() {
            return Ok(tokens);
        }
        page_token = page.next_page_token;
    }
}

/// Every audit event of the caller's org, all pages.
pub async fn all_events(
    server: &TestServer,
    admin: &str,
) -> Result<Vec<tokend::grpc::proto::AuditEvent>, Status> {
    let (mut events, mut page_token) = (Vec::new(), String::new());
    loop {
        let request = tokend::grpc::proto::ListAuditEventsRequest {
            page_size: 1000,
            page_token,
            ..Default::default()
        };
        let page = server
            .client()
            .list_audit_events(authed(request, admin))
            .await?
            .into_inner();
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            return Ok(events);
        }
        page_token = page.next_page_token;
    }
}

/// The audit event types of a token kind: (created, revoked).
pub fn audit_event_types(kind: i32) -> (&'static str, &'static str) {
    use tokend::grpc::proto::TokenKind;
    match TokenKind::try_from(kind).unwrap_or(TokenKind::Unspecified) {
        TokenKind::Scrape => ("scrape_token_created", "scrape_token_revoked"),
        TokenKind::PersonalAccess => (
            "personal_access_token_created",
            "personal_access_token_revoked",
        ),
        TokenKind::ServiceAccount => (
            "service_account_token_created",
            "service_account_token_revoked",
        ),
        TokenKind::WorkspaceApiKey => ("workspace_api_key_created", "workspace_api_key_deleted"),
        TokenKind::Unspecified => panic!("a token without a kind"),
    }
}

/// Asserts the org's tokens and audit events agree (any token kind): each
/// token has its created event, a revoked one its revoked event, and no event lacks its
/// change. Returns the number of tokens.
pub async fn assert_tokens_and_events_agree(
    server: &TestServer,
    admin: &str,
) -> Result<usize, Status> {
    let all = all_tokens(server, admin).await?;
    let events = all_events(server, admin).await?;
    for token in &all {
        let of_token: Vec<&str> = events
            .iter()
            .filter(|e| e.token_id == token.token_id)
            .map(|e| e.event_type.as_str())
            .collect();
        let (created, revoked) = audit_event_types(token.kind);
        let expected: &[&str] = if token.revoke_time.is_some() {
            &[created, revoked]
        } else {
            &[created]
        };
        assert_eq!(
            of_token, expected,
            "token {} and its audit events agree",
            token.token_id
        );
    }
    assert_eq!(
        events.len(),
        all.len() + all.iter().filter(|t| t.revoke_time.is_some()).count(),
        "no event without its change"
    );
    Ok(all.len())
}

/// The real `tokend` binary, started by [`spawn_binary`].
pub struct Binary {
    pub child: tokio::process::Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Every stderr line; complete once the process has exited.
    pub log: tokio::task::JoinHandle<Vec<String>>,
}

/// `tokend serve` on port 0 (gRPC and HTTP) with JSON logs and `dir` as its
/// data folder, ignoring any `DATABASE_URL` of the test's environment.
pub fn serve_command(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokend"));
    command
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("DATABASE_URL");
    command
}

/// Starts the real binary on port 0 (gRPC and HTTP) in `dir` with JSON logs
/// filtered by `filter`, and reads its gRPC address from the log line
/// "tokend listening": no port probing, no sleeps.
pub async fn spawn_binary(dir: &std::path::Path, extra: &[&str], filter: &str) -> Binary {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = serve_command(dir)
        .args(extra)
        .env("RUST_LOG", filter)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tokend");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut kept = Vec::new();
    let (grpc_addr, http_addr) = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            kept.push(line);
            if value["message"] == "tokend listening" {
                let address = |field: &str| -> SocketAddr {
                    value[field]
                        .as_str()
                        .expect(field)
                        .parse()
                        .expect("an address")
                };
                return (address("grpc_addr"), address("http_addr"));
            }
        }
        panic!("tokend exited before listening: {kept:?}");
    })
    .await
    .expect("tokend listens");
    // Keep draining the log so the child never blocks on a full pipe.
    let log = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.push(line);
        }
        kept
    });
    Binary {
        child,
        grpc_addr,
        http_addr,
        log,
    }
}

impl Binary {
    /// A channel to the binary, once it reports readiness.
    pub async fn ready_channel(&self) -> Channel {
        let channel = Endpoint::from_shared(format!("http://{}", self.grpc_addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        wait_for_status(
            &channel,
            "tokend.v1.TokenService",
            ServingStatus::Serving,
            Duration::from_secs(20),
        )
        .await;
        channel
    }
}

/// A JWT signed with the zero-config secret a binary made in `dir`.
pub fn mint_from_data_dir(
    dir: &std::path::Path,
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
) -> String {
    let secret = std::fs::read_to_string(dir.join("jwt-hs256.secret")).expect("secret file");
    let now = Utc::now().timestamp();
    mint_hs256(
        &HsSecret::new(secret.trim()).expect("a long enough secret file"),
        &MintRequest {
            sub: sub.into(),
            org_id: org.into(),
            roles: roles.iter().map(|s| (*s).to_owned()).collect(),
            permissions: permissions.iter().map(|s| (*s).to_owned()).collect(),
            iat: now,
            exp: now + 600,
            iss: None,
            aud: None,
        },
    )
    .expect("mint")
}

/// A CreateToken request for a scrape token named `name`: the simplest token,
/// used wherever a test needs one of no particular family.
pub fn scrape_request(name: &str) -> tokend::grpc::proto::CreateTokenRequest {
    tokend::grpc::proto::CreateTokenRequest {
        kind: tokend::grpc::proto::TokenKind::Scrape as i32,
        name: name.to_owned(),
        ..Default::default()
    }
}
