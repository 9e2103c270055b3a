//! The validated configuration of `serve`, built ONCE from [`ServeArgs`]
//! before anything listens: every check of a setting (the database URL's
//! scheme, the data folder, the JWT keys and the HS secret's length, the
//! HTTP limits) happens here and fails with a [`StartupError`] naming the
//! setting. The server then only wires what it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::cli::{DatabaseArgs, JwtArgs, ServeArgs};
use crate::config::setting::{Invalid, Setting, StartupError};
use crate::http_listener::HttpLimits;
use crate::identity::secret_file::{self, SecretOrigin};
use crate::identity::{HsSecret, JwksUrl, JwtVerifier, KeyRing, RemoteKeyRing};
use crate::store::DatabaseSettings;
use crate::telemetry::OtlpEndpoint;

/// The schemes tokend's store speaks.
const DATABASE_SCHEMES: [&str; 3] = ["sqlite:", "postgres://", "postgresql://"];

/// How callers' JWTs are verified.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The verifier: an explicit HS secret, a JWKS file, or else the
    /// zero-config secret file.
    pub verifier: Arc<JwtVerifier>,
    /// The JWKS key ring, re-read every `reload_interval`, if one is used.
    pub key_ring: Option<Arc<KeyRing>>,
    /// How often the JWKS file is checked for changes.
    pub reload_interval: Duration,
    /// The JWKS URL's keys, fetched and refreshed by a task of the server.
    pub remote_keys: Option<Arc<RemoteKeyRing>>,
}

/// The gRPC listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct GrpcLimits {
    /// Largest decoded request message, in bytes.
    pub max_message_size: usize,
    /// Server-side deadline of one call.
    pub request_timeout: Duration,
    /// Calls in flight per connection before new ones are shed.
    pub max_concurrent_requests: usize,
    /// Connections are closed gracefully after this long.
    pub max_connection_age: Duration,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive ping timeout.
    pub keepalive_timeout: Duration,
}

/// The admission budgets (src/admission).
#[derive(Clone, Copy, Debug)]
pub struct AdmissionLimits {
    /// Calls per second per caller (0: off).
    pub calls_per_second: u32,
    /// Burst per caller.
    pub call_burst: u32,
    /// Failed authentications per minute per peer address (0: off).
    pub auth_failures_per_minute: u32,
    /// Failed authentications a peer may make in a row.
    pub auth_failure_burst: u32,
}

/// Everything `serve` needs, checked.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the HTTP (metrics) listener listens.
    pub http_addr: SocketAddr,
    /// The database and its pool.
    pub database: DatabaseSettings,
    /// Callers' JWTs.
    pub jwt: JwtConfig,
    /// The gRPC listener's limits.
    pub grpc: GrpcLimits,
    /// The HTTP listener's limits.
    pub http: HttpLimits,
    /// The per-caller and per-address budgets.
    pub admission: AdmissionLimits,
    /// How often readiness checks the database.
    pub health_check_interval: Duration,
    /// How long in-flight calls may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Checks `args`. Side effects are the ones the settings ask for: the
    /// data folder is created (0700) when tokend keeps files in it, and the
    /// zero-config secret file is read or made when no JWT key is set.
    pub fn from_args(args: &ServeArgs) -> Result<ServerConfig, StartupError> {
        let jwt = jwt_config(&args.jwt, &args.database)?;
        let database = database_settings(&args.database)?;
        let http = HttpLimits {
            header_read_timeout: args.http_header_read_timeout,
            max_connections: usize::try_from(args.http_max_connections).map_err(|_| {
                StartupError::setting(Setting::HttpMaxConnections, Invalid("too large"))
            })?,
            max_body_bytes: args.http_max_body_size,
            request_timeout: args.request_timeout,
        };
        Ok(ServerConfig {
            grpc_addr: args.grpc_addr,
            http_addr: args.http_addr,
            database,
            jwt,
            grpc: GrpcLimits {
                max_message_size: args.max_message_size,
                request_timeout: args.request_timeout,
                max_concurrent_requests: args.max_concurrent_requests,
                max_connection_age: args.max_connection_age,
                keepalive_interval: args.http2_keepalive_interval,
                keepalive_timeout: args.http2_keepalive_timeout,
            },
            http,
            admission: AdmissionLimits {
                calls_per_second: args.rate_limit_per_second,
                call_burst: args.rate_limit_burst,
                auth_failures_per_minute: args.auth_failures_per_minute,
                auth_failure_burst: args.auth_failure_burst,
            },
            health_check_interval: args.health_check_interval,
            shutdown_grace: args.shutdown_grace,
        })
    }
}

/// The database settings of `serve` and `migrate`: the URL must be one the
/// store speaks; the default SQLite file's folder is created.
pub fn database_settings(args: &DatabaseArgs) -> Result<DatabaseSettings, StartupError> {
    let url = args.url();
    if args.database_url.is_none() {
        crate::data_dir::create(&args.data_dir)
            .map_err(|e| StartupError::setting(Setting::DataDir, e))?;
    }
    if !DATABASE_SCHEMES
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        return Err(StartupError::setting(
            Setting::DatabaseUrl,
            Invalid("must start with sqlite:// or postgres://"),
        ));
    }
    Ok(DatabaseSettings {
        url,
        max_connections: args.db_max_connections,
        acquire_timeout: args.db_acquire_timeout,
        connect_timeout: args.db_connect_timeout,
        statement_timeout: args.db_statement_timeout,
        idle_timeout: args.db_idle_timeout,
        max_lifetime: args.db_max_lifetime,
    })
}

/// The OTLP endpoint spans are exported to, if one is set: an `http://`
/// URL with a host. Checked before logging starts (the exporter is part of
/// the log set-up), so its error is printed as the one start-up line.
pub fn otlp_endpoint(args: &ServeArgs) -> Result<Option<OtlpEndpoint>, StartupError> {
    args.otlp_endpoint
        .as_deref()
        .map(OtlpEndpoint::parse)
        .transpose()
        .map_err(|e| StartupError::setting(Setting::OtlpEndpoint, e))
}

/// The HS secret given on the command line, checked for length.
pub fn hs_secret(secret: &str) -> Result<HsSecret, StartupError> {
    HsSecret::new(secret.as_bytes())
        .map_err(|short| StartupError::setting(Setting::JwtHs256Secret, short))
}

/// The JWT keys: an explicit HS secret, a JWKS file, or else the
/// zero-config secret file in the data folder.
fn jwt_config(jwt: &JwtArgs, database: &DatabaseArgs) -> Result<JwtConfig, StartupError> {
    let key_ring = match &jwt.jwt_jwks_file {
        Some(path) => {
            Some(Arc::new(KeyRing::load(path).map_err(|e| {
                StartupError::setting(Setting::JwtJwksFile, e)
            })?))
        }
        None => None,
    };
    let remote_keys = match &jwt.jwt_jwks_url {
        Some(url) => Some(Arc::new(
            JwksUrl::parse(url)
                .and_then(RemoteKeyRing::new)
                .map_err(|e| StartupError::setting(Setting::JwtJwksUrl, e))?,
        )),
        None => None,
    };
    let hs_secret = match (
        &jwt.jwt_hs256_secret,
        key_ring.is_some() || remote_keys.is_some(),
    ) {
        (Some(secret), _) => Some(hs_secret(secret.expose())?),
        (None, true) => None,
        (None, false) => Some(zero_config_secret(database)?),
    };
    let verifier = Arc::new(
        JwtVerifier::new(
            hs_secret.as_ref(),
            key_ring.clone(),
            jwt.jwt_issuer.clone(),
            jwt.jwt_audience.clone(),
        )
        .with_remote_keys(remote_keys.clone()),
    );
    Ok(JwtConfig {
        verifier,
        key_ring,
        reload_interval: jwt.jwt_jwks_reload_interval,
        remote_keys,
    })
}

fn zero_config_secret(database: &DatabaseArgs) -> Result<HsSecret, StartupError> {
    let (secret, origin, path) = secret_file::load_or_create(&database.data_dir)
        .map_err(|e| StartupError::setting(Setting::DataDir, e))?;
    match origin {
        SecretOrigin::Created => {
            tracing::info!(path = %path.display(), "no JWT key configured: generated a random HS256 secret (mode 0600); `tokend mint-jwt` uses it");
        }
        SecretOrigin::Existing => {
            tracing::info!(path = %path.display(), "no JWT key configured: using the HS256 secret file");
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Cli;

    fn config(extra: &[&str]) -> Result<ServerConfig, StartupError> {
        let dir = tempfile::tempdir().map_err(|e| StartupError::part("test", e))?;
        let mut argv = vec![
            "tokend".to_owned(),
            "--data-dir".to_owned(),
            dir.path().join("data").display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        let cli = Cli::try_parse_from(argv).map_err(|e| StartupError::part("test", e))?;
        ServerConfig::from_args(&cli.serve)
    }

    #[test]
    fn each_bad_setting_is_named_once_checked() {
        let cases: [(&[&str], Setting); 6] = [
            (&["--database-url", "mysql://x"], Setting::DatabaseUrl),
            (&["--jwt-hs256-secret", "short"], Setting::JwtHs256Secret),
            (
                &["--jwt-jwks-file", "/nonexistent/jwks.json"],
                Setting::JwtJwksFile,
            ),
            (
                &["--data-dir", "/proc/tokend-cannot-be-here"],
                Setting::DataDir,
            ),
            (
                &["--jwt-jwks-url", "http://idp.example.com/jwks"],
                Setting::JwtJwksUrl,
            ),
            (&["--jwt-jwks-url", "idp.example.com"], Setting::JwtJwksUrl),
        ];
        for (args, setting) in cases {
            let error = config(args).expect_err("refused");
            assert_eq!(error.setting_at_fault(), Some(setting), "{args:?}: {error}");
            assert!(
                error.to_string().starts_with(&setting.to_string()),
                "{error}"
            );
        }
        let error = config(&["--database-url", "mysql://x"]).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "--database-url (DATABASE_URL): must start with sqlite:// or postgres://"
        );
    }

    #[test]
    fn a_bad_otlp_endpoint_is_named() {
        let parse = |value: &str| {
            let cli = Cli::try_parse_from(["tokend", "--otlp-endpoint", value]).expect("parses");
            otlp_endpoint(&cli.serve)
        };
        let error = parse("collector:4317").expect_err("refused");
        assert_eq!(error.setting_at_fault(), Some(Setting::OtlpEndpoint));
        assert!(
            error
                .to_string()
                .starts_with("--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): must be http://"),
            "{error}"
        );
        assert!(!error.to_string().contains('\n'));
        assert!(parse("http://collector:4317").expect("valid").is_some());
    }

    #[test]
    fn good_settings_make_a_config() {
        let config =
            config(&["--jwt-hs256-secret", "0123456789abcdef0123456789abcdef"]).expect("valid");
        assert!(config.database.url.starts_with("sqlite://"));
        assert!(config.jwt.key_ring.is_none());
        assert_eq!(config.http.max_connections, 1024);
    }
}
