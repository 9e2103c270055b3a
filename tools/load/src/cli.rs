//! The command line: backend, sizes, timings, workloads, and the flags for
//! driving a tokend that is already running.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// The HS256 secret the caller JWTs are signed with (and the started server
/// trusts) unless `--jwt-hs256-secret` says otherwise.
const HS_SECRET: &str = "bench-secret-0123456789abcdef0123456789";

/// The database the started tokend uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// One kind of call, measured on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
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
    /// The name in the table (and on the command line).
    pub(crate) fn label(self) -> &'static str {
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
    pub(crate) fn method(self) -> &'static str {
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
pub(crate) struct Args {
    /// Database backend of the tokend started by the harness.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub(crate) backend: Backend,
    /// Tokens seeded (the whole `tokens` table; see docs for the pools).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) tokens: usize,
    /// Calls in flight.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// HTTP/2 connections the calls are spread over.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Warm-up per workload (not measured).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,
    /// Measured time per workload.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Workloads, in order (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "health,auth-hit,auth-miss,auth-mix,auth-first-use,revoke-scrape,revoke-pat,revoke-sat,revoke-wak,create"
    )]
    pub(crate) workloads: Vec<Workload>,
    /// PostgreSQL server; each run creates (and drops) a fresh database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub(crate) pg_server: String,
    /// pgbench -T seconds for each pgbench script (PostgreSQL only; 0: skip).
    #[arg(long, default_value_t = 20)]
    pub(crate) pgbench_seconds: u32,
    /// Keep the database and data folder (printed) instead of removing them.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Extra argument for `tokend serve` (repeatable), e.g. `--serve-arg=--db-max-connections=32`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub(crate) serve_args: Vec<String>,
    /// RUST_LOG for the server (its default is `info`: one line per call).
    #[arg(long, default_value = "info")]
    pub(crate) server_log: String,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 2)]
    pub(crate) client_threads: usize,
    /// Target a running tokend at this gRPC address instead of starting one
    /// (needs --database-url, and that server must trust --jwt-hs256-secret).
    #[arg(long)]
    pub(crate) target: Option<SocketAddr>,
    /// With --target: its HTTP (metrics) address, for the server counters.
    #[arg(long)]
    pub(crate) target_http: Option<SocketAddr>,
    /// With --target: its process id, for RSS figures.
    #[arg(long)]
    pub(crate) target_pid: Option<u32>,
    /// With --target: the (migrated) database the server uses; it is seeded.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    /// HS256 secret the caller JWTs are signed with.
    #[arg(long, default_value = HS_SECRET)]
    pub(crate) jwt_hs256_secret: String,
    /// Write the secret of one seeded hit token, one unknown secret and the
    /// gateway JWT to this file (for h2load and profiling).
    #[arg(long)]
    pub(crate) export: Option<PathBuf>,
    /// Seed, start, print start-up and idle figures, then wait this long
    /// before the workloads (e.g. to attach a profiler).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) pause: Option<Duration>,
    /// Accepted and ignored: `cargo bench` passed it when this tool was a
    /// bench target, and old scripts may still do.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}
