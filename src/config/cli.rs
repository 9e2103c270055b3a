//! The command line (clap). Every setting of `serve` and `migrate` is a flag
//! with an environment fallback (docs/reference.md, "Settings"); their names
//! come from [`Setting`], so an error message names a setting exactly as the
//! command line spells it. What parses here is only well-formed; whether it
//! makes sense is [`crate::config::ServerConfig`]'s business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Setting;

fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (use e.g. 500ms, 20s, 5m, 1h)"))
}

fn positive_duration(value: &str) -> Result<Duration, String> {
    match duration(value)? {
        zero if zero.is_zero() => Err("must be more than zero".to_owned()),
        positive => Ok(positive),
    }
}

/// The `--jwt-hs256-secret` text as given; its Debug prints nothing, so no
/// Debug of the command line shows the secret. Its length is checked where it
/// becomes an [`crate::identity::HsSecret`], to name the setting in the error.
#[derive(Clone)]
pub struct HsSecretText(String);

impl HsSecretText {
    /// The secret as given.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for HsSecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HsSecretText(..)")
    }
}

fn hs_secret_text(value: &str) -> Result<HsSecretText, String> {
    Ok(HsSecretText(value.to_owned()))
}

/// tokend: issues, verifies and revokes API tokens over gRPC.
#[derive(Debug, Parser)]
#[command(
    name = "tokend",
    version,
    about,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
// Parsed once per process: the size difference between variants is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the gRPC server and the HTTP metrics listener (the default);
    /// applies pending migrations first.
    Serve(ServeArgs),
    /// Applies pending migrations and exits.
    Migrate(MigrateArgs),
    /// Prints a JWT signed with the configured HS256 secret (development).
    MintJwt(MintJwtArgs),
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for collectors.
    Json,
}

/// Where data lives.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://…` or `postgres://…`. Default: an SQLite file
    /// in the data folder.
    #[arg(long = Setting::DatabaseUrl.long(), env = Setting::DatabaseUrl.env())]
    pub database_url: Option<String>,
    /// Folder for the default SQLite file and the zero-config JWT secret.
    #[arg(long = Setting::DataDir.long(), env = Setting::DataDir.env(), default_value = "./data")]
    pub data_dir: PathBuf,
    /// Most pooled database connections.
    #[arg(long = Setting::DbMaxConnections.long(), env = Setting::DbMaxConnections.env(), default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// How long a call waits for a pooled connection before UNAVAILABLE.
    #[arg(long = Setting::DbAcquireTimeout.long(), env = Setting::DbAcquireTimeout.env(), default_value = "2s", value_parser = duration)]
    pub db_acquire_timeout: Duration,
    /// How long opening a database connection may take.
    #[arg(long = Setting::DbConnectTimeout.long(), env = Setting::DbConnectTimeout.env(), default_value = "3s", value_parser = duration)]
    pub db_connect_timeout: Duration,
    /// PostgreSQL statement timeout; SQLite busy timeout.
    #[arg(long = Setting::DbStatementTimeout.long(), env = Setting::DbStatementTimeout.env(), default_value = "5s", value_parser = duration)]
    pub db_statement_timeout: Duration,
    /// Idle pooled connections are closed after this long.
    #[arg(long = Setting::DbIdleTimeout.long(), env = Setting::DbIdleTimeout.env(), default_value = "5m", value_parser = duration)]
    pub db_idle_timeout: Duration,
    /// Pooled connections are recycled after this long.
    #[arg(long = Setting::DbMaxLifetime.long(), env = Setting::DbMaxLifetime.env(), default_value = "30m", value_parser = duration)]
    pub db_max_lifetime: Duration,
}

impl DatabaseArgs {
    /// The database URL, defaulting to `<data_dir>/tokend.db`.
    pub fn url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("tokend.db").display()),
        }
    }
}

/// How callers are authenticated.
#[derive(Clone, Debug, Args)]
pub struct JwtArgs {
    /// HS256 secret for caller JWTs (HS384/HS512 accepted too). Default: a
    /// random secret kept in `<data_dir>/jwt-hs256.secret`, made on first run.
    #[arg(long = Setting::JwtHs256Secret.long(), env = Setting::JwtHs256Secret.env(), hide_env_values = true, value_parser = hs_secret_text)]
    pub jwt_hs256_secret: Option<HsSecretText>,
    /// JWKS JSON file of public keys (RS*, PS*, ES256, ES384, EdDSA), by `kid`.
    #[arg(long = Setting::JwtJwksFile.long(), env = Setting::JwtJwksFile.env())]
    pub jwt_jwks_file: Option<PathBuf>,
    /// JWKS URL of an identity provider (its `jwks_uri`): https, or http to
    /// loopback; refreshed on its `Cache-Control: max-age` and on an unknown
    /// `kid`.
    #[arg(long = Setting::JwtJwksUrl.long(), env = Setting::JwtJwksUrl.env())]
    pub jwt_jwks_url: Option<String>,
    /// How often the JWKS file is checked for changes.
    #[arg(long = Setting::JwtJwksReloadInterval.long(), env = Setting::JwtJwksReloadInterval.env(), default_value = "10s", value_parser = duration)]
    pub jwt_jwks_reload_interval: Duration,
    /// Required `iss`; unset: not checked.
    #[arg(long = Setting::JwtIssuer.long(), env = Setting::JwtIssuer.env())]
    pub jwt_issuer: Option<String>,
    /// Required `aud`; unset: not checked.
    #[arg(long = Setting::JwtAudience.long(), env = Setting::JwtAudience.env())]
    pub jwt_audience: Option<String>,
}

/// Settings of `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// gRPC listen address.
    #[arg(long = Setting::GrpcAddr.long(), env = Setting::GrpcAddr.env(), default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (metrics and the REST face).
    #[arg(long = Setting::HttpAddr.long(), env = Setting::HttpAddr.env(), default_value = "127.0.0.1:9464")]
    pub http_addr: SocketAddr,
    /// Calls per second per caller (0: no limit).
    #[arg(long = Setting::RateLimitPerSecond.long(), env = Setting::RateLimitPerSecond.env(), default_value_t = 10_000)]
    pub rate_limit_per_second: u32,
    /// Burst per caller.
    #[arg(long = Setting::RateLimitBurst.long(), env = Setting::RateLimitBurst.env(), default_value_t = 20_000)]
    pub rate_limit_burst: u32,
    /// Failed authentications (bad or missing JWTs on gRPC, 401s of the
    /// metrics endpoint) per minute per peer address, after the burst; a
    /// peer over it is refused before its credentials are checked (0: no
    /// limit).
    #[arg(long = Setting::AuthFailuresPerMinute.long(), env = Setting::AuthFailuresPerMinute.env(), default_value_t = 60)]
    pub auth_failures_per_minute: u32,
    /// Failed authentications a peer address may make in a row.
    #[arg(long = Setting::AuthFailureBurst.long(), env = Setting::AuthFailureBurst.env(), default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failure_burst: u32,
    /// How long an HTTP client may take to send a request's headers; also
    /// how long an idle keep-alive connection stays open.
    #[arg(long = Setting::HttpHeaderReadTimeout.long(), env = Setting::HttpHeaderReadTimeout.env(), default_value = "5s", value_parser = positive_duration)]
    pub http_header_read_timeout: Duration,
    /// Most connections open at once on the HTTP listener; more wait to be
    /// accepted.
    #[arg(long = Setting::HttpMaxConnections.long(), env = Setting::HttpMaxConnections.env(), default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub http_max_connections: u32,
    /// Largest HTTP request body, in bytes (413 beyond it).
    #[arg(long = Setting::HttpMaxBodySize.long(), env = Setting::HttpMaxBodySize.env(), default_value_t = 64 * 1024)]
    pub http_max_body_size: usize,
    /// How long in-flight calls may take to finish after SIGTERM/SIGINT.
    #[arg(long = Setting::ShutdownGrace.long(), env = Setting::ShutdownGrace.env(), default_value = "20s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// Log format; default `pretty` on a terminal, `json` otherwise.
    #[arg(long = Setting::LogFormat.long(), env = Setting::LogFormat.env())]
    pub log_format: Option<LogFormat>,
    /// Largest decoded request message, in bytes.
    #[arg(long = Setting::MaxMessageSize.long(), env = Setting::MaxMessageSize.env(), default_value_t = 64 * 1024)]
    pub max_message_size: usize,
    /// Server-side deadline for one call (gRPC) or request (HTTP).
    #[arg(long = Setting::RequestTimeout.long(), env = Setting::RequestTimeout.env(), default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
    /// Calls in flight per connection before new ones are shed.
    #[arg(long = Setting::MaxConcurrentRequests.long(), env = Setting::MaxConcurrentRequests.env(), default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Connections are closed (gracefully) after this long, so load spreads
    /// onto new replicas after a scale-out.
    #[arg(long = Setting::MaxConnectionAge.long(), env = Setting::MaxConnectionAge.env(), default_value = "5m", value_parser = duration)]
    pub max_connection_age: Duration,
    /// HTTP/2 keepalive ping interval.
    #[arg(long = Setting::Http2KeepaliveInterval.long(), env = Setting::Http2KeepaliveInterval.env(), default_value = "30s", value_parser = duration)]
    pub http2_keepalive_interval: Duration,
    /// HTTP/2 keepalive ping timeout.
    #[arg(long = Setting::Http2KeepaliveTimeout.long(), env = Setting::Http2KeepaliveTimeout.env(), default_value = "10s", value_parser = duration)]
    pub http2_keepalive_timeout: Duration,
    /// How often readiness checks the database.
    #[arg(long = Setting::HealthCheckInterval.long(), env = Setting::HealthCheckInterval.env(), default_value = "1s", value_parser = duration)]
    pub health_check_interval: Duration,
    /// OTLP/gRPC collector (`http://host:4317`) that spans are exported to;
    /// unset: no export.
    #[arg(long = Setting::OtlpEndpoint.long(), env = Setting::OtlpEndpoint.env())]
    pub otlp_endpoint: Option<String>,
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// JWT settings.
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// Settings of `migrate`.
#[derive(Clone, Debug, Args)]
pub struct MigrateArgs {
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Settings of `mint-jwt`.
#[derive(Clone, Debug, Args)]
pub struct MintJwtArgs {
    /// `org_id` claim.
    #[arg(long = Setting::Org.long())]
    pub org: String,
    /// `sub` claim.
    #[arg(long = Setting::Sub.long())]
    pub sub: String,
    /// A role (repeatable), e.g. `admin`.
    #[arg(long = Setting::Role.long())]
    pub roles: Vec<String>,
    /// A permission (repeatable), e.g. `user_app_keys`.
    #[arg(long = Setting::Permission.long())]
    pub permissions: Vec<String>,
    /// Lifetime.
    #[arg(long = Setting::Ttl.long(), default_value = "1h", value_parser = duration)]
    pub ttl: Duration,
    /// `iss` claim.
    #[arg(long = Setting::Issuer.long())]
    pub issuer: Option<String>,
    /// `aud` claim.
    #[arg(long = Setting::Audience.long())]
    pub audience: Option<String>,
    /// HS256 secret; default: the zero-config file in the data folder.
    #[arg(long = Setting::JwtHs256Secret.long(), env = Setting::JwtHs256Secret.env(), hide_env_values = true, value_parser = hs_secret_text)]
    pub jwt_hs256_secret: Option<HsSecretText>,
    /// Folder holding the zero-config secret.
    #[arg(long = Setting::DataDir.long(), env = Setting::DataDir.env(), default_value = "./data")]
    pub data_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    const SECRET: &str = "hs256-secret-that-must-never-be-printed";

    #[test]
    fn debug_of_the_command_line_never_shows_the_hs_secret() {
        for argv in [
            vec!["tokend", "--jwt-hs256-secret", SECRET],
            vec!["tokend", "serve", "--jwt-hs256-secret", SECRET],
            vec![
                "tokend",
                "mint-jwt",
                "--org",
                "o",
                "--sub",
                "s",
                "--jwt-hs256-secret",
                SECRET,
            ],
        ] {
            let cli = Cli::try_parse_from(&argv).unwrap();
            let shown = format!("{cli:?}");
            assert!(!shown.contains(SECRET), "{argv:?}: {shown}");
            assert!(shown.contains("jwt_hs256_secret"), "{shown}");
        }
    }
}
