//! Load generator for tokend (issue 7).
//!
//! Starts a release `tokend` (or targets a running one), seeds N tokens
//! straight into the database in bulk, then drives a fixed number of gRPC
//! calls in flight for a fixed time after a warm-up, workload after
//! workload, and prints one Markdown table: throughput, p50/p90/p99/p99.9
//! (HDR histogram), every non-OK status, the server's RSS, and ratios against
//! `grpc.health.v1.Health/Check` measured on the same server in the same run.
//! On PostgreSQL it also runs `pgbench -M prepared` with the equivalent point
//! lookup and revoke transaction on the same database.
//!
//! ```sh
//! cargo bench --bench load -- --backend sqlite --tokens 10000
//! cargo bench --bench load -- --backend postgres --tokens 1000000
//! cargo bench --bench load -- --help
//! ```
//!
//! A run with an unexpected status is INVALID: it says so and exits 1.
//! docs/benchmarks.md explains the workloads and records the figures.

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use sea_orm::{
    ActiveValue, ConnectionTrait, Database, DatabaseConnection, EntityTrait, TransactionTrait,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use tokend::domain::TokenSecret;
use tokend::domain::kind::TokenKind;
use tokend::grpc::proto;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::identity::{MintRequest, mint_hs256};
use tokend::store::entity::token;

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const HS_SECRET: &str = "bench-secret-0123456789abcdef0123456789";
const ORG: &str = "bench";
const METRICS_ORG: &str = "bench-metrics";
const READINESS: &str = "tokend.v1.TokenService";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// grpc.health.v1.Health/Check of the readiness service: the ceiling.
    Health,
    /// AuthenticateToken of active tokens drawn uniformly from the hit pool.
    AuthHit,
    /// AuthenticateToken of well-formed, checksum-valid, unknown secrets.
    AuthMiss,
    /// 80 % hits, 10 % revoked tokens, 10 % unknown secrets.
    AuthMix,
    /// AuthenticateToken of never-used tokens: each call also writes
    /// `last_used_at` (the once-a-minute touch).
    AuthFirstUse,
    /// RevokeScrapeToken of distinct active tokens.
    RevokeScrape,
    /// RevokePersonalAccessToken of distinct active tokens.
    RevokePat,
    /// RevokeServiceAccountToken of distinct active tokens.
    RevokeSat,
    /// DeleteWorkspaceApiKey of distinct active tokens.
    RevokeWak,
    /// CreateToken, the four kinds in turn.
    Create,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Health => "health-check",
            Workload::AuthHit => "auth-hit",
            Workload::AuthMiss => "auth-miss",
            Workload::AuthMix => "auth-mix",
            Workload::AuthFirstUse => "auth-first-use",
            Workload::RevokeScrape => "revoke-scrape",
            Workload::RevokePat => "revoke-pat",
            Workload::RevokeSat => "revoke-sat",
            Workload::RevokeWak => "revoke-wak",
            Workload::Create => "create",
        }
    }

    /// The method label of tokend's `tokend_grpc_requests_total`.
    fn method(self) -> &'static str {
        match self {
            Workload::Health => "/grpc.health.v1.Health/Check",
            Workload::AuthHit | Workload::AuthMiss | Workload::AuthMix | Workload::AuthFirstUse => {
                "/tokend.v1.TokenService/AuthenticateToken"
            }
            Workload::RevokeScrape => "/tokend.v1.TokenService/RevokeScrapeToken",
            Workload::RevokePat => "/tokend.v1.TokenService/RevokePersonalAccessToken",
            Workload::RevokeSat => "/tokend.v1.TokenService/RevokeServiceAccountToken",
            Workload::RevokeWak => "/tokend.v1.TokenService/DeleteWorkspaceApiKey",
            Workload::Create => "/tokend.v1.TokenService/CreateToken",
        }
    }
}

/// tokend load generator; see docs/benchmarks.md.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Database backend of the tokend started by the harness.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// Tokens seeded (the whole `tokens` table; see docs for the pools).
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Warm-up per workload (not measured).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Measured time per workload.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Workloads, in order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "health,auth-hit,auth-miss,auth-mix,auth-first-use,revoke-scrape,revoke-pat,revoke-sat,revoke-wak,create"
    )]
    workloads: Vec<Workload>,
    /// PostgreSQL server; each run creates (and drops) a fresh database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pg_server: String,
    /// pgbench -T seconds for each pgbench script (PostgreSQL only; 0: skip).
    #[arg(long, default_value_t = 20)]
    pgbench_seconds: u32,
    /// Keep the database and data folder (printed) instead of removing them.
    #[arg(long)]
    keep: bool,
    /// Extra argument for `tokend serve` (repeatable), e.g. `--serve-arg=--db-max-connections=32`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// RUST_LOG for the server (its default is `info`: one line per call).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Target a running tokend at this gRPC address instead of starting one
    /// (needs --database-url, and that server must trust --jwt-hs256-secret).
    #[arg(long)]
    target: Option<SocketAddr>,
    /// With --target: its HTTP (metrics) address, for the server counters.
    #[arg(long)]
    target_http: Option<SocketAddr>,
    /// With --target: its process id, for RSS figures.
    #[arg(long)]
    target_pid: Option<u32>,
    /// With --target: the (migrated) database the server uses; it is seeded.
    #[arg(long)]
    database_url: Option<String>,
    /// HS256 secret the caller JWTs are signed with.
    #[arg(long, default_value = HS_SECRET)]
    jwt_hs256_secret: String,
    /// Write the secret of one seeded hit token, one unknown secret and the
    /// gateway JWT to this file (for h2load and profiling).
    #[arg(long)]
    export: Option<PathBuf>,
    /// Seed, start, print start-up and idle figures, then wait this long
    /// before the workloads (e.g. to attach a profiler).
    #[arg(long, value_parser = humantime::parse_duration)]
    pause: Option<Duration>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

// ---------------------------------------------------------------- seeding

/// What a revoke call needs to name one token.
#[derive(Clone, Debug)]
struct Target {
    id: i64,
    token_id: String,
    slug_or_workspace: String,
    name: String,
}

/// The seeded tokens the workloads draw from. Ids are contiguous per pool:
/// hits first, then revoked, the four revoke pools, the never-used pool and
/// the pgbench revoke pool.
#[derive(Default)]
struct Seeded {
    hits: Vec<(i64, String)>,
    revoked: Vec<String>,
    cold: Vec<String>,
    revoke: BTreeMap<&'static str, Vec<Target>>,
    unknown: Vec<String>,
    pgbench_revoke: (i64, i64),
    hit_ids: (i64, i64),
    metrics_secret: String,
    total_rows: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pool {
    Hit,
    Revoked,
    Revoke(TokenKind),
    Cold,
    PgbenchRevoke,
    Metrics,
}

fn layout(n: usize) -> Vec<(Pool, usize)> {
    let pct = |p: usize| (n * p / 100).max(1);
    let revoked = pct(5);
    let per_kind = pct(5);
    let cold = pct(10);
    let pgbench = pct(10);
    let fixed = revoked + 4 * per_kind + cold + pgbench;
    let hits = n.saturating_sub(fixed).max(1);
    vec![
        (Pool::Hit, hits),
        (Pool::Revoked, revoked),
        (Pool::Revoke(TokenKind::Scrape), per_kind),
        (Pool::Revoke(TokenKind::PersonalAccess), per_kind),
        (Pool::Revoke(TokenKind::ServiceAccount), per_kind),
        (Pool::Revoke(TokenKind::WorkspaceApiKey), per_kind),
        (Pool::Cold, cold),
        (Pool::PgbenchRevoke, pgbench),
        (Pool::Metrics, 1),
    ]
}

fn kind_label(kind: TokenKind) -> &'static str {
    kind.as_str()
}

async fn seed(db: &DatabaseConnection, backend: Backend, n: usize) -> Res<Seeded> {
    let now = Utc::now();
    let created = now - chrono::Duration::days(1);
    // "Used recently" so that the once-a-minute last_used_at touch does not
    // fire during the auth-hit/auth-mix workloads (it is measured on its own
    // by auth-first-use, whose tokens were never used).
    let recently = now + chrono::Duration::days(365);
    let mut seeded = Seeded::default();
    let mut batch: Vec<token::ActiveModel> = Vec::with_capacity(1000);
    let mut id: i64 = 0;
    let started = Instant::now();
    // One transaction: each index page is written once, not once per batch.
    let txn = db.begin().await?;
    for (pool, count) in layout(n) {
        let first = id + 1;
        for i in 0..count {
            id += 1;
            let kind = match pool {
                Pool::Revoke(kind) => kind,
                Pool::PgbenchRevoke | Pool::Metrics => TokenKind::Scrape,
                _ => TokenKind::ALL[i % 4],
            };
            let secret = TokenSecret::generate(kind)?;
            let hash = secret.hash().as_bytes().to_vec();
            let token_id = uuid::Uuid::new_v4().to_string();
            let (slug, workspace, name, owner) = match kind {
                TokenKind::Scrape => (None, None, format!("scrape-{id}"), "bench-admin".to_owned()),
                TokenKind::PersonalAccess => (
                    None,
                    None,
                    format!("pat-{id}"),
                    format!("user-{}", id % 1000),
                ),
                TokenKind::ServiceAccount => (
                    Some(format!("sa-{}", id % 1000)),
                    None,
                    format!("t{id}"),
                    "bench-admin".to_owned(),
                ),
                TokenKind::WorkspaceApiKey => (
                    None,
                    Some(format!("g-{:010x}", id % 1000)),
                    format!("key-{id}"),
                    "bench-admin".to_owned(),
                ),
            };
            let revoked = pool == Pool::Revoked;
            match pool {
                Pool::Hit => seeded.hits.push((id, secret.expose().to_owned())),
                Pool::Revoked => seeded.revoked.push(secret.expose().to_owned()),
                Pool::Cold => seeded.cold.push(secret.expose().to_owned()),
                Pool::Metrics => seeded.metrics_secret = secret.expose().to_owned(),
                Pool::Revoke(kind) => {
                    seeded
                        .revoke
                        .entry(kind_label(kind))
                        .or_default()
                        .push(Target {
                            id,
                            token_id: token_id.clone(),
                            slug_or_workspace: slug
                                .clone()
                                .or_else(|| workspace.clone())
                                .unwrap_or_default(),
                            name: name.clone(),
                        })
                }
                Pool::PgbenchRevoke => {}
            }
            batch.push(token::ActiveModel {
                id: ActiveValue::Set(id),
                token_id: ActiveValue::Set(token_id),
                kind: ActiveValue::Set(kind.as_str().to_owned()),
                org_id: ActiveValue::Set(
                    if pool == Pool::Metrics {
                        METRICS_ORG
                    } else {
                        ORG
                    }
                    .to_owned(),
                ),
                name: ActiveValue::Set(name),
                owner_user_id: ActiveValue::Set(owner),
                service_account_slug: ActiveValue::Set(slug),
                workspace_id: ActiveValue::Set(workspace),
                scopes: ActiveValue::Set("repo:read metrics:read".to_owned()),
                secret_hash: ActiveValue::Set(hash),
                created_at: ActiveValue::Set(created),
                expires_at: ActiveValue::Set(None),
                revoked_at: ActiveValue::Set(revoked.then_some(created)),
                last_used_at: ActiveValue::Set(if pool == Pool::Cold {
                    None
                } else {
                    Some(recently)
                }),
                created_by: ActiveValue::Set("bench-admin".to_owned()),
                revoked_by: ActiveValue::Set(revoked.then(|| "bench-admin".to_owned())),
                revoke_reason: ActiveValue::Set(revoked.then(|| "seeded as revoked".to_owned())),
            });
            if batch.len() == 1000 {
                insert_batch(&txn, &mut batch).await?;
            }
        }
        let last = id;
        match pool {
            Pool::Hit => seeded.hit_ids = (first, last),
            Pool::PgbenchRevoke => seeded.pgbench_revoke = (first, last),
            _ => {}
        }
    }
    insert_batch(&txn, &mut batch).await?;
    txn.commit().await?;
    seeded.total_rows = usize::try_from(id)?;
    match backend {
        Backend::Postgres => {
            db.execute_unprepared(
                "SELECT setval(pg_get_serial_sequence('tokens', 'id'), (SELECT max(id) FROM tokens))",
            )
            .await?;
            // As autovacuum would after a bulk load, but now rather than
            // in the middle of a measurement.
            db.execute_unprepared("VACUUM (ANALYZE) tokens").await?;
            db.execute_unprepared("CHECKPOINT").await?;
        }
        Backend::Sqlite => {
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
    }
    for _ in 0..20_000 {
        let kind = TokenKind::ALL[seeded.unknown.len() % 4];
        seeded
            .unknown
            .push(TokenSecret::generate(kind)?.expose().to_owned());
    }
    println!(
        "seeded {} tokens in {:.1} s",
        seeded.total_rows,
        started.elapsed().as_secs_f64()
    );
    Ok(seeded)
}

/// One connection, tuned for a bulk load: no fsync per batch, a large page
/// cache. The server's own connections are not affected.
async fn connect_for_seeding(url: &str, backend: Backend) -> Res<DatabaseConnection> {
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    match backend {
        Backend::Sqlite => {
            db.execute_unprepared("PRAGMA synchronous = OFF").await?;
            db.execute_unprepared("PRAGMA cache_size = -1048576")
                .await?;
        }
        Backend::Postgres => {
            db.execute_unprepared("SET synchronous_commit = off")
                .await?;
        }
    }
    Ok(db)
}

async fn insert_batch(
    txn: &sea_orm::DatabaseTransaction,
    batch: &mut Vec<token::ActiveModel>,
) -> Res<()> {
    if batch.is_empty() {
        return Ok(());
    }
    token::Entity::insert_many(std::mem::take(batch))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------- server

struct Server {
    child: Option<Child>,
    pid: Option<u32>,
    grpc: SocketAddr,
    http: Option<SocketAddr>,
    log_tail: Arc<Mutex<Vec<String>>>,
}

fn tokend_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tokend"))
}

fn run_tokend(args: &[&str]) -> Res<()> {
    let output = Command::new(tokend_bin()).args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "tokend {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn start_server(args: &Args, url: &str, data_dir: &str) -> Res<(Server, Instant)> {
    let spawned = Instant::now();
    let mut child = Command::new(tokend_bin())
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--database-url",
            url,
            "--log-format",
            "json",
            "--rate-limit-per-second",
            "0",
            "--jwt-hs256-secret",
            &args.jwt_hs256_secret,
        ])
        .args(&args.serve_args)
        .env("RUST_LOG", &args.server_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    let log_tail = Arc::new(Mutex::new(Vec::new()));
    let tail = Arc::clone(&log_tail);
    // Like a log collector: read every line (one per call at `info`), keep
    // the last few for error reports.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("tokend listening")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.clone());
            }
            if let Ok(mut tail) = tail.lock() {
                if tail.len() >= 20 {
                    tail.remove(0);
                }
                tail.push(line);
            }
        }
    });
    let pid = child.id();
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let tail = log_tail.lock().map(|t| t.join("\n")).unwrap_or_default();
            return Err(format!("tokend did not start:\n{tail}").into());
        }
    };
    let value: serde_json::Value = serde_json::from_str(&line)?;
    let addr = |key: &str| -> Res<SocketAddr> {
        let text = value
            .get(key)
            .or_else(|| value.get("fields").and_then(|f| f.get(key)))
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no {key} in {line}"))?;
        Ok(text.parse()?)
    };
    let server = Server {
        grpc: addr("grpc_addr")?,
        http: Some(addr("http_addr")?),
        child: Some(child),
        pid: Some(pid),
        log_tail,
    };
    Ok((server, spawned))
}

impl Server {
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(25);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// (VmRSS, VmHWM) in MiB.
fn memory(pid: Option<u32>) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

async fn wait_ready(addr: SocketAddr, since: Instant) -> Res<Duration> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    loop {
        if since.elapsed() > Duration::from_secs(60) {
            return Err("tokend not ready after 60 s".into());
        }
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel);
            loop {
                let answer = health
                    .check(HealthCheckRequest {
                        service: READINESS.to_owned(),
                    })
                    .await;
                if let Ok(answer) = answer
                    && answer.get_ref().status == ServingStatus::Serving as i32
                {
                    return Ok(since.elapsed());
                }
                if since.elapsed() > Duration::from_secs(60) {
                    return Err("tokend not ready after 60 s".into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `tokend_grpc_requests_total` by (method, code), read over plain HTTP/1.1
/// from the operator figures (`/metrics`, which ignore the bearer token).
async fn server_counters(http: SocketAddr, secret: &str) -> Res<BTreeMap<(String, String), u64>> {
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(format!("metrics: {}", body.lines().next().unwrap_or_default()).into());
    }
    let mut counters = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("tokend_grpc_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let mut code = String::new();
        let mut method = String::new();
        for pair in labels.split(',') {
            if let Some((key, val)) = pair.split_once('=') {
                let val = val.trim_matches('"').to_owned();
                match key {
                    "code" => code = val,
                    "method" => method = val,
                    _ => {}
                }
            }
        }
        counters.insert((method, code), value.trim().parse::<f64>()? as u64);
    }
    Ok(counters)
}

// ---------------------------------------------------------------- load

struct Shared {
    seeded: Seeded,
    gateway: MetadataValue<tonic::metadata::Ascii>,
    admin: MetadataValue<tonic::metadata::Ascii>,
    cursor: AtomicUsize,
    exhausted: AtomicBool,
}

enum Outcome {
    Ok,
    /// A non-OK status the workload asked for (unknown/revoked secrets).
    Expected(Code),
    Unexpected(Code, String),
    /// The workload's pool of single-use tokens ran out.
    Exhausted,
}

fn check<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    expected: Code,
    verify: impl FnOnce(&T) -> Result<(), String>,
) -> Outcome {
    match result {
        Ok(response) => {
            if expected != Code::Ok {
                return Outcome::Unexpected(Code::Ok, "OK where an error was expected".into());
            }
            match verify(response.get_ref()) {
                Ok(()) => Outcome::Ok,
                Err(why) => Outcome::Unexpected(Code::Ok, why),
            }
        }
        Err(status) if status.code() == expected => Outcome::Expected(status.code()),
        Err(status) => Outcome::Unexpected(status.code(), status.message().to_owned()),
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n.max(1) as u64)) as usize
    }
}

fn with_auth<T>(message: T, auth: &MetadataValue<tonic::metadata::Ascii>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", auth.clone());
    request
}

struct Clients {
    tokens: TokenServiceClient<Channel>,
    health: HealthClient<Channel>,
}

async fn one_call(
    workload: Workload,
    shared: &Shared,
    clients: &mut Clients,
    rng: &mut Rng,
    worker: usize,
    seq: u64,
) -> Outcome {
    let s = &shared.seeded;
    let next_single_use = |len: usize| -> Option<usize> {
        let i = shared.cursor.fetch_add(1, Ordering::Relaxed);
        (i < len).then_some(i)
    };
    let authenticate = |secret: &str| {
        with_auth(
            proto::AuthenticateTokenRequest {
                secret: secret.to_owned(),
            },
            &shared.gateway,
        )
    };
    match workload {
        Workload::Health => {
            let result = clients
                .health
                .check(HealthCheckRequest {
                    service: READINESS.to_owned(),
                })
                .await;
            check(result, Code::Ok, |r| {
                (r.status == ServingStatus::Serving as i32)
                    .then_some(())
                    .ok_or_else(|| "not SERVING".to_owned())
            })
        }
        Workload::AuthHit => {
            let (id, secret) = &s.hits[rng.below(s.hits.len())];
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, Code::Ok, |r| {
                (r.token.as_ref().map(|t| t.id) == Some(*id))
                    .then_some(())
                    .ok_or_else(|| "wrong token returned".to_owned())
            })
        }
        Workload::AuthMiss => {
            let secret = &s.unknown[rng.below(s.unknown.len())];
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, Code::Unauthenticated, |_| Ok(()))
        }
        Workload::AuthMix => {
            let roll = rng.below(100);
            let (secret, expected) = if roll < 80 {
                (&s.hits[rng.below(s.hits.len())].1, Code::Ok)
            } else if roll < 90 {
                (
                    &s.revoked[rng.below(s.revoked.len())],
                    Code::Unauthenticated,
                )
            } else {
                (
                    &s.unknown[rng.below(s.unknown.len())],
                    Code::Unauthenticated,
                )
            };
            let result = clients
                .tokens
                .authenticate_token(authenticate(secret))
                .await;
            check(result, expected, |_| Ok(()))
        }
        Workload::AuthFirstUse => {
            let Some(i) = next_single_use(s.cold.len()) else {
                return Outcome::Exhausted;
            };
            let result = clients
                .tokens
                .authenticate_token(authenticate(&s.cold[i]))
                .await;
            check(result, Code::Ok, |_| Ok(()))
        }
        Workload::RevokeScrape
        | Workload::RevokePat
        | Workload::RevokeSat
        | Workload::RevokeWak => {
            let kind = match workload {
                Workload::RevokeScrape => TokenKind::Scrape,
                Workload::RevokePat => TokenKind::PersonalAccess,
                Workload::RevokeSat => TokenKind::ServiceAccount,
                _ => TokenKind::WorkspaceApiKey,
            };
            let pool = s
                .revoke
                .get(kind_label(kind))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let Some(i) = next_single_use(pool.len()) else {
                return Outcome::Exhausted;
            };
            let t = &pool[i];
            let reason = "load test".to_owned();
            let revoked = |token: Option<&proto::Token>| -> Result<(), String> {
                match token {
                    Some(token) if token.id == t.id && token.revoke_time.is_some() => Ok(()),
                    _ => Err("revoke returned the wrong token or no revoke_time".to_owned()),
                }
            };
            match kind {
                TokenKind::Scrape => {
                    let request = proto::RevokeScrapeTokenRequest { id: t.id, reason };
                    let result = clients
                        .tokens
                        .revoke_scrape_token(with_auth(request, &shared.admin))
                        .await;
                    check(result, Code::Ok, |r| revoked(r.token.as_ref()))
                }
                TokenKind::PersonalAccess => {
                    let request = proto::RevokePersonalAccessTokenRequest {
                        token_id: t.token_id.clone(),
                        reason,
                    };
                    let result = clients
                        .tokens
                        .revoke_personal_access_token(with_auth(request, &shared.admin))
                        .await;
                    check(result, Code::Ok, |r| revoked(r.token.as_ref()))
                }
                TokenKind::ServiceAccount => {
                    let request = proto::RevokeServiceAccountTokenRequest {
                        service_account_slug: t.slug_or_workspace.clone(),
                        token_slug: t.name.clone(),
                        reason,
                    };
                    let result = clients
                        .tokens
                        .revoke_service_account_token(with_auth(request, &shared.admin))
                        .await;
                    check(result, Code::Ok, |r| revoked(r.token.as_ref()))
                }
                TokenKind::WorkspaceApiKey => {
                    let request = proto::DeleteWorkspaceApiKeyRequest {
                        workspace_id: t.slug_or_workspace.clone(),
                        key_name: t.name.clone(),
                        reason,
                    };
                    let result = clients
                        .tokens
                        .delete_workspace_api_key(with_auth(request, &shared.admin))
                        .await;
                    check(result, Code::Ok, |r| revoked(r.token.as_ref()))
                }
            }
        }
        Workload::Create => {
            let kind = TokenKind::ALL[(seq as usize + worker) % 4];
            let mut request = proto::CreateTokenRequest {
                name: format!("c{worker}-{seq}"),
                scopes: vec!["repo:read".to_owned()],
                ..Default::default()
            };
            match kind {
                TokenKind::Scrape => request.set_kind(proto::TokenKind::Scrape),
                TokenKind::PersonalAccess => request.set_kind(proto::TokenKind::PersonalAccess),
                TokenKind::ServiceAccount => {
                    request.set_kind(proto::TokenKind::ServiceAccount);
                    request.service_account_slug = "bench-sa".to_owned();
                }
                TokenKind::WorkspaceApiKey => {
                    request.set_kind(proto::TokenKind::WorkspaceApiKey);
                    request.workspace_id = "g-00000000ff".to_owned();
                }
            }
            let result = clients
                .tokens
                .create_token(with_auth(request, &shared.admin))
                .await;
            check(result, Code::Ok, |r| {
                (!r.secret.is_empty() && r.token.is_some())
                    .then_some(())
                    .ok_or_else(|| "no secret or token".to_owned())
            })
        }
    }
}

/// What one workload measured.
#[derive(Default)]
struct Measured {
    calls: u64,
    seconds: f64,
    histogram: Option<Histogram<u64>>,
    expected: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, (u64, String)>,
    /// Client-side codes over warm-up and measurement, for the cross-check.
    all_codes: BTreeMap<String, u64>,
    exhausted_after: Option<f64>,
    rss: Option<(f64, f64)>,
    server_check: String,
}

impl Measured {
    fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.calls as f64 / self.seconds
        } else {
            0.0
        }
    }
    fn unexpected_total(&self) -> u64 {
        self.unexpected.values().map(|(n, _)| n).sum()
    }
}

struct WorkerResult {
    histogram: Histogram<u64>,
    calls: u64,
    last_completion: Option<Instant>,
    expected: BTreeMap<String, u64>,
    unexpected: BTreeMap<String, (u64, String)>,
    all_codes: BTreeMap<String, u64>,
    exhausted_at: Option<Instant>,
}

async fn run_workload(
    workload: Workload,
    args: &Args,
    shared: &Arc<Shared>,
    channels: &[Channel],
) -> Res<Measured> {
    shared.cursor.store(0, Ordering::Relaxed);
    shared.exhausted.store(false, Ordering::Relaxed);
    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::with_capacity(args.concurrency);
    for worker in 0..args.concurrency {
        let channel = channels[worker % channels.len()].clone();
        let shared = Arc::clone(shared);
        tasks.push(tokio::spawn(async move {
            let mut clients = Clients {
                tokens: TokenServiceClient::new(channel.clone()),
                health: HealthClient::new(channel),
            };
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((worker as u64 + 1) * 0x1000_0001));
            let mut result = WorkerResult {
                histogram: Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
                calls: 0,
                last_completion: None,
                expected: BTreeMap::new(),
                unexpected: BTreeMap::new(),
                all_codes: BTreeMap::new(),
                exhausted_at: None,
            };
            let mut seq = 0u64;
            while Instant::now() < end && !shared.exhausted.load(Ordering::Relaxed) {
                seq += 1;
                let began = Instant::now();
                let outcome =
                    one_call(workload, &shared, &mut clients, &mut rng, worker, seq).await;
                let done = Instant::now();
                let code = match &outcome {
                    Outcome::Exhausted => {
                        shared.exhausted.store(true, Ordering::Relaxed);
                        result.exhausted_at = Some(done);
                        break;
                    }
                    Outcome::Ok => Code::Ok,
                    Outcome::Expected(code) | Outcome::Unexpected(code, _) => *code,
                };
                *result.all_codes.entry(format!("{code:?}")).or_default() += 1;
                if done < measure_from || done >= end {
                    continue;
                }
                result.calls += 1;
                result.last_completion = Some(done);
                let micros =
                    u64::try_from(done.duration_since(began).as_micros()).unwrap_or(u64::MAX);
                result.histogram.saturating_record(micros.max(1));
                match outcome {
                    Outcome::Expected(code) => {
                        *result.expected.entry(format!("{code:?}")).or_default() += 1
                    }
                    Outcome::Unexpected(code, message) => {
                        let entry = result
                            .unexpected
                            .entry(format!("{code:?}"))
                            .or_insert((0, message));
                        entry.0 += 1;
                    }
                    _ => {}
                }
            }
            Ok::<WorkerResult, BoxError>(result)
        }));
    }
    let mut measured = Measured {
        histogram: Some(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?),
        ..Measured::default()
    };
    let mut last_completion: Option<Instant> = None;
    let mut exhausted_at: Option<Instant> = None;
    for task in tasks {
        let result = task.await??;
        if let Some(histogram) = measured.histogram.as_mut() {
            histogram.add(&result.histogram)?;
        }
        measured.calls += result.calls;
        last_completion = last_completion.max(result.last_completion);
        exhausted_at = match (exhausted_at, result.exhausted_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (code, n) in result.expected {
            *measured.expected.entry(code).or_default() += n;
        }
        for (code, (n, message)) in result.unexpected {
            measured.unexpected.entry(code).or_insert((0, message)).0 += n;
        }
        for (code, n) in result.all_codes {
            *measured.all_codes.entry(code).or_default() += n;
        }
    }
    measured.seconds = args.duration.as_secs_f64();
    if let Some(at) = exhausted_at {
        measured.exhausted_after = Some(at.duration_since(start).as_secs_f64());
        measured.seconds = last_completion
            .map(|last| last.saturating_duration_since(measure_from).as_secs_f64())
            .unwrap_or(0.0);
    }
    Ok(measured)
}

// ---------------------------------------------------------------- pgbench

struct PgbenchResult {
    name: &'static str,
    tps: f64,
    latency_ms: f64,
    note: String,
}

fn pgbench(
    url: &str,
    name: &'static str,
    script: &str,
    clients: usize,
    seconds: u32,
    defines: &[&str],
) -> Res<PgbenchResult> {
    let path = std::env::temp_dir().join(format!("tokend-bench-{}-{name}.sql", std::process::id()));
    std::fs::write(&path, script)?;
    let mut command = Command::new("pgbench");
    command.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &clients.to_string(),
        "-j",
        "2",
        "-T",
        &seconds.to_string(),
        "-f",
    ]);
    command.arg(&path);
    for define in defines {
        command.args(["-D", define]);
    }
    command.arg(url);
    let output = command.output()?;
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "pgbench {name}: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let find = |prefix: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(prefix))?;
        line.split_once(" = ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let failed = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .unwrap_or_default()
        .to_owned();
    Ok(PgbenchResult {
        name,
        tps: find("tps").ok_or_else(|| format!("pgbench {name}: no tps in {text}"))?,
        latency_ms: find("latency average").unwrap_or(0.0),
        note: failed,
    })
}

async fn run_pgbench(
    args: &Args,
    url: &str,
    db: &DatabaseConnection,
    seeded: &Seeded,
) -> Res<Vec<PgbenchResult>> {
    let (lo, hi) = seeded.hit_ids;
    db.execute_unprepared(&format!(
        "CREATE TABLE bench_hashes (i bigint PRIMARY KEY, h bytea NOT NULL); \
         INSERT INTO bench_hashes SELECT id, secret_hash FROM tokens WHERE id BETWEEN {lo} AND {hi}; \
         ANALYZE bench_hashes"
    ))
    .await?;
    let seconds = args.pgbench_seconds;
    let c = args.concurrency;
    let mut results = Vec::new();
    let by_id = format!("\\set id random({lo}, {hi})\nSELECT * FROM tokens WHERE id = :id;\n");
    results.push(pgbench(
        url,
        "pgbench lookup by id",
        &by_id,
        c,
        seconds,
        &[],
    )?);
    let by_hash = format!(
        "\\set i random({lo}, {hi})\nSELECT t.* FROM tokens t WHERE t.secret_hash = (SELECT h FROM bench_hashes WHERE i = :i) LIMIT 1;\n"
    );
    results.push(pgbench(
        url,
        "pgbench lookup by hash",
        &by_hash,
        c,
        seconds,
        &[],
    )?);
    let (rlo, rhi) = seeded.pgbench_revoke;
    let revoke = format!(
        "\\set n :n + 1\n\\set id {rlo} + :client_id + {c} * (:n - 1)\nBEGIN;\n\
         UPDATE tokens SET revoked_at = now(), revoked_by = 'pgbench', revoke_reason = 'load test' \
         WHERE org_id = '{ORG}' AND kind = 'scrape' AND id = :id AND revoked_at IS NULL RETURNING *;\n\
         INSERT INTO audit_events (event_type, org_id, actor, token_id, token_numeric_id, token_kind, request_id, occurred_at, reason) \
         VALUES ('scrape_token_revoked', '{ORG}', 'pgbench', '00000000-0000-4000-8000-000000000000', :id, 'scrape', 'pgbench', now(), 'load test');\n\
         COMMIT;\n"
    );
    let mut result = pgbench(url, "pgbench revoke txn", &revoke, c, seconds, &["n=0"])?;
    let revoked = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*)::bigint AS n FROM tokens WHERE id BETWEEN {rlo} AND {rhi} AND revoked_by = 'pgbench'"),
        ))
        .await?
        .map(|row| row.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    let pool = rhi - rlo + 1;
    let _ = write!(result.note, "; {revoked} of the {pool} pool revoked");
    if revoked + c as i64 >= pool {
        let _ = write!(
            result.note,
            " (EXHAUSTED: later transactions updated no row)"
        );
    }
    Ok(results.into_iter().chain(std::iter::once(result)).collect())
}

// ---------------------------------------------------------------- main

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(error) => {
            eprintln!("load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores, {cpu}, {mem:.1} GiB")
}

async fn run(args: Args) -> Res<bool> {
    let work = std::env::temp_dir().join(format!(
        "tokend-bench-{}-{}",
        std::process::id(),
        Utc::now().timestamp()
    ));
    std::fs::create_dir_all(&work)?;
    let data_dir = work.display().to_string();
    let mut pg_database: Option<String> = None;
    let url = match (&args.target, &args.database_url, args.backend) {
        (Some(_), Some(url), _) => url.clone(),
        (Some(_), None, _) => return Err("--target needs --database-url".into()),
        (None, _, Backend::Sqlite) => format!("sqlite://{}/tokend.db", work.display()),
        (None, _, Backend::Postgres) => {
            let name = format!(
                "tokend_bench_{}_{}",
                std::process::id(),
                Utc::now().timestamp()
            );
            let admin = Database::connect(format!("{}/postgres", args.pg_server)).await?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await?;
            admin.close().await?;
            pg_database = Some(name.clone());
            format!("{}/{name}", args.pg_server)
        }
    };
    let outcome = run_with(&args, &url, &data_dir).await;
    if args.keep {
        println!("kept: data folder {data_dir}, database {url}");
    } else {
        let _ = std::fs::remove_dir_all(&work);
        if let Some(name) = pg_database {
            let admin = Database::connect(format!("{}/postgres", args.pg_server)).await?;
            admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            admin.close().await?;
        }
    }
    outcome
}

async fn run_with(args: &Args, url: &str, data_dir: &str) -> Res<bool> {
    println!(
        "tokend load: backend {:?}, {} tokens, {} in flight over {} connections, warm-up {:?} + {:?} per workload; {}",
        args.backend,
        args.tokens,
        args.concurrency,
        args.connections,
        args.warmup,
        args.duration,
        machine()
    );
    if args.target.is_none() {
        run_tokend(&["migrate", "--database-url", url, "--data-dir", data_dir])?;
    }
    let db = connect_for_seeding(url, args.backend).await?;
    let seeded = seed(&db, args.backend, args.tokens).await?;

    let mut report = String::new();
    let (mut server, startup) = match args.target {
        None => {
            let (server, spawned) = start_server(args, url, data_dir)?;
            let ready = wait_ready(server.grpc, spawned).await?;
            (server, Some(ready))
        }
        Some(grpc) => (
            Server {
                child: None,
                pid: args.target_pid,
                grpc,
                http: args.target_http,
                log_tail: Arc::new(Mutex::new(Vec::new())),
            },
            None,
        ),
    };
    let result = drive(args, url, &db, seeded, &server, startup, &mut report).await;
    if result.is_err()
        && let Ok(tail) = server.log_tail.lock()
    {
        eprintln!("last server log lines:\n{}", tail.join("\n"));
    }
    server.stop();
    db.close().await?;
    let valid = result?;
    print!("{report}");
    let _ = std::io::stdout().flush();
    Ok(valid)
}

fn mint(
    secret: &str,
    org: &str,
    sub: &str,
    roles: &[&str],
    permissions: &[&str],
) -> Res<MetadataValue<tonic::metadata::Ascii>> {
    let now = Utc::now().timestamp();
    let jwt = mint_hs256(
        secret.as_bytes(),
        &MintRequest {
            sub: sub.to_owned(),
            org_id: org.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            iat: now,
            exp: now + 86_400,
            iss: None,
            aud: None,
        },
    )?;
    Ok(format!("Bearer {jwt}").parse()?)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &Args,
    url: &str,
    db: &DatabaseConnection,
    seeded: Seeded,
    server: &Server,
    startup: Option<Duration>,
    report: &mut String,
) -> Res<bool> {
    let gateway = mint(
        &args.jwt_hs256_secret,
        "platform",
        "api-gateway",
        &[],
        &["tokens_introspect"],
    )?;
    let admin = mint(&args.jwt_hs256_secret, ORG, "bench-admin", &["admin"], &[])?;
    if let Some(path) = &args.export {
        let hit = seeded
            .hits
            .first()
            .map(|(_, s)| s.as_str())
            .unwrap_or_default();
        let unknown = seeded
            .unknown
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        std::fs::write(
            path,
            format!(
                "GRPC_ADDR={}\nHTTP_ADDR={}\nHIT_SECRET={hit}\nUNKNOWN_SECRET={unknown}\nMETRICS_SECRET={}\nGATEWAY_AUTH='{}'\n",
                server.grpc,
                server.http.map(|a| a.to_string()).unwrap_or_default(),
                seeded.metrics_secret,
                gateway.to_str()?,
            ),
        )?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory(server.pid);
    if let Some(ready) = startup {
        println!(
            "start-up to readiness: {:.0} ms",
            ready.as_secs_f64() * 1000.0
        );
    }
    if let Some((rss, _)) = idle {
        println!("idle RSS: {rss:.1} MiB");
    }
    if let Some(pause) = args.pause {
        println!(
            "pausing {pause:?} (server pid {:?}, grpc {})",
            server.pid, server.grpc
        );
        tokio::time::sleep(pause).await;
    }
    let endpoint = Endpoint::from_shared(format!("http://{}", server.grpc))?;
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        channels.push(endpoint.connect().await?);
    }
    let metrics_secret = seeded.metrics_secret.clone();
    let total_rows = seeded.total_rows;
    let hit_pool = seeded.hits.len();
    let shared = Arc::new(Shared {
        seeded,
        gateway,
        admin,
        cursor: AtomicUsize::new(0),
        exhausted: AtomicBool::new(false),
    });
    let mut rows: Vec<(Workload, Measured)> = Vec::new();
    for &workload in &args.workloads {
        let before = match server.http {
            Some(http) => server_counters(http, &metrics_secret).await.ok(),
            None => None,
        };
        let mut measured = run_workload(workload, args, &shared, &channels).await?;
        measured.rss = memory(server.pid);
        if let (Some(before), Some(http)) = (before, server.http) {
            let after = server_counters(http, &metrics_secret).await?;
            let mut server_codes: BTreeMap<String, u64> = BTreeMap::new();
            for ((method, code), n) in &after {
                if method == workload.method() {
                    let delta = n - before
                        .get(&(method.clone(), code.clone()))
                        .copied()
                        .unwrap_or(0);
                    if delta > 0 {
                        server_codes.insert(code.clone(), delta);
                    }
                }
            }
            measured.server_check = if server_codes == measured.all_codes {
                "server counters agree".to_owned()
            } else {
                format!(
                    "server counters {server_codes:?} vs client {:?}",
                    measured.all_codes
                )
            };
        }
        println!(
            "{:<15} {:>9.0} calls/s  p99 {:>7.2} ms  unexpected {}{}",
            workload.label(),
            measured.rps(),
            measured
                .histogram
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0),
            measured.unexpected_total(),
            measured
                .exhausted_after
                .map(|s| format!("  (pool exhausted after {s:.1} s)"))
                .unwrap_or_default()
        );
        rows.push((workload, measured));
    }
    let hwm = memory(server.pid).map(|(_, hwm)| hwm);
    let pgbench_results = if args.backend == Backend::Postgres && args.pgbench_seconds > 0 {
        println!("running pgbench ({} s per script)...", args.pgbench_seconds);
        run_pgbench(args, url, db, &shared.seeded).await?
    } else {
        Vec::new()
    };

    // ---- the table
    let health = rows
        .iter()
        .find(|(w, _)| *w == Workload::Health)
        .map(|(_, m)| m.rps());
    let _ = writeln!(
        report,
        "\n### {:?}, {} tokens ({} rows; hit pool {}), {} in flight, {} connections, {:?} warm-up + {:?}\n",
        args.backend,
        args.tokens,
        total_rows,
        hit_pool,
        args.concurrency,
        args.connections,
        args.warmup,
        args.duration
    );
    let _ = writeln!(
        report,
        "| workload | calls | calls/s | × health | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | expected non-OK | unexpected | RSS MiB | notes |"
    );
    let _ = writeln!(
        report,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|"
    );
    let mut valid = true;
    for (workload, m) in &rows {
        let q = |q: f64| {
            m.histogram
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        let max = m
            .histogram
            .as_ref()
            .map_or(0.0, |h| h.max() as f64 / 1000.0);
        let ratio = health
            .filter(|h| *h > 0.0)
            .map_or("".to_owned(), |h| format!("{:.2}", m.rps() / h));
        let expected = if m.expected.is_empty() {
            "0".to_owned()
        } else {
            m.expected
                .iter()
                .map(|(c, n)| format!("{n} {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unexpected = if m.unexpected.is_empty() {
            "0".to_owned()
        } else {
            valid = false;
            m.unexpected
                .iter()
                .map(|(c, (n, msg))| format!("**{n} {c}** ({msg})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut notes = m.server_check.clone();
        if let Some(after) = m.exhausted_after {
            let _ = write!(
                notes,
                "; pool exhausted after {after:.1} s, rate over {:.1} s",
                m.seconds
            );
        }
        let _ = writeln!(
            report,
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {} | {} | {} |",
            workload.label(),
            m.calls,
            m.rps(),
            ratio,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            max,
            expected,
            unexpected,
            m.rss.map_or("".to_owned(), |(rss, _)| format!("{rss:.0}")),
            notes
        );
    }
    for p in &pgbench_results {
        let ratio = health
            .filter(|h| *h > 0.0)
            .map_or("".to_owned(), |h| format!("{:.2}", p.tps / h));
        let _ = writeln!(
            report,
            "| {} (-c {} -j 2 -T {}) | | {:.0} | {} | avg {:.2} | | | | | | | | {} |",
            p.name, args.concurrency, args.pgbench_seconds, p.tps, ratio, p.latency_ms, p.note
        );
    }
    let _ = writeln!(report);
    if let Some(ready) = startup {
        let _ = writeln!(
            report,
            "- start-up to readiness (existing database): {:.0} ms",
            ready.as_secs_f64() * 1000.0
        );
    }
    if let Some((rss, _)) = idle {
        let _ = writeln!(
            report,
            "- idle RSS: {rss:.1} MiB; peak RSS (VmHWM) over the run: {:.1} MiB",
            hwm.unwrap_or(0.0)
        );
    }
    let rps = |w: Workload| rows.iter().find(|(x, _)| *x == w).map(|(_, m)| m.rps());
    let by = |name: &str| {
        pgbench_results
            .iter()
            .find(|p| p.name.contains(name))
            .map(|p| p.tps)
    };
    if let (Some(hit), Some(id), Some(hash)) = (rps(Workload::AuthHit), by("by id"), by("by hash"))
    {
        let _ = writeln!(
            report,
            "- auth-hit / pgbench lookup: {:.2} (by id), {:.2} (by hash)",
            hit / id,
            hit / hash
        );
    }
    if let Some(revoke) = by("revoke") {
        let ratios: Vec<String> = [
            Workload::RevokeScrape,
            Workload::RevokePat,
            Workload::RevokeSat,
            Workload::RevokeWak,
        ]
        .iter()
        .filter_map(|w| rps(*w).map(|r| format!("{} {:.2}", w.label(), r / revoke)))
        .collect();
        let _ = writeln!(
            report,
            "- revoke / pgbench revoke txn: {}",
            ratios.join(", ")
        );
    }
    let _ = writeln!(
        report,
        "- run {}",
        if valid {
            "VALID: no unexpected status"
        } else {
            "INVALID: unexpected statuses above"
        }
    );
    Ok(valid)
}
