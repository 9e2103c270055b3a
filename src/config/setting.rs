//! The settings by name. Each flag and its environment variable are spelled
//! HERE and nowhere else: the command line ([`crate::config::cli`]) takes its
//! names from [`Setting::long`] and [`Setting::env`], and every start-up
//! error names its setting through [`Setting`]'s `Display`
//! ("--grpc-addr (TOKEND_GRPC_ADDR)"), so a message cannot misspell one.

use std::fmt;

/// A setting of the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Setting {
    /// `--database-url` (`DATABASE_URL`).
    DatabaseUrl,
    /// `--data-dir` (`TOKEND_DATA_DIR`).
    DataDir,
    /// `--db-max-connections` (`TOKEND_DB_MAX_CONNECTIONS`).
    DbMaxConnections,
    /// `--db-acquire-timeout` (`TOKEND_DB_ACQUIRE_TIMEOUT`).
    DbAcquireTimeout,
    /// `--db-connect-timeout` (`TOKEND_DB_CONNECT_TIMEOUT`).
    DbConnectTimeout,
    /// `--db-statement-timeout` (`TOKEND_DB_STATEMENT_TIMEOUT`).
    DbStatementTimeout,
    /// `--db-idle-timeout` (`TOKEND_DB_IDLE_TIMEOUT`).
    DbIdleTimeout,
    /// `--db-max-lifetime` (`TOKEND_DB_MAX_LIFETIME`).
    DbMaxLifetime,
    /// `--jwt-hs256-secret` (`TOKEND_JWT_HS256_SECRET`).
    JwtHs256Secret,
    /// `--jwt-jwks-file` (`TOKEND_JWT_JWKS_FILE`).
    JwtJwksFile,
    /// `--jwt-jwks-url` (`TOKEND_JWT_JWKS_URL`).
    JwtJwksUrl,
    /// `--jwt-jwks-reload-interval` (`TOKEND_JWT_JWKS_RELOAD_INTERVAL`).
    JwtJwksReloadInterval,
    /// `--jwt-issuer` (`TOKEND_JWT_ISSUER`).
    JwtIssuer,
    /// `--jwt-audience` (`TOKEND_JWT_AUDIENCE`).
    JwtAudience,
    /// `--grpc-addr` (`TOKEND_GRPC_ADDR`).
    GrpcAddr,
    /// `--http-addr` (`TOKEND_HTTP_ADDR`).
    HttpAddr,
    /// `--rate-limit-per-second` (`TOKEND_RATE_LIMIT_PER_SECOND`).
    RateLimitPerSecond,
    /// `--rate-limit-burst` (`TOKEND_RATE_LIMIT_BURST`).
    RateLimitBurst,
    /// `--auth-failures-per-minute` (`TOKEND_AUTH_FAILURES_PER_MINUTE`).
    AuthFailuresPerMinute,
    /// `--auth-failure-burst` (`TOKEND_AUTH_FAILURE_BURST`).
    AuthFailureBurst,
    /// `--http-header-read-timeout` (`TOKEND_HTTP_HEADER_READ_TIMEOUT`).
    HttpHeaderReadTimeout,
    /// `--http-max-connections` (`TOKEND_HTTP_MAX_CONNECTIONS`).
    HttpMaxConnections,
    /// `--http-max-body-size` (`TOKEND_HTTP_MAX_BODY_SIZE`).
    HttpMaxBodySize,
    /// `--shutdown-grace` (`TOKEND_SHUTDOWN_GRACE`).
    ShutdownGrace,
    /// `--log-format` (`TOKEND_LOG_FORMAT`).
    LogFormat,
    /// `--max-message-size` (`TOKEND_MAX_MESSAGE_SIZE`).
    MaxMessageSize,
    /// `--request-timeout` (`TOKEND_REQUEST_TIMEOUT`).
    RequestTimeout,
    /// `--max-concurrent-requests` (`TOKEND_MAX_CONCURRENT_REQUESTS`).
    MaxConcurrentRequests,
    /// `--max-connection-age` (`TOKEND_MAX_CONNECTION_AGE`).
    MaxConnectionAge,
    /// `--http2-keepalive-interval` (`TOKEND_HTTP2_KEEPALIVE_INTERVAL`).
    Http2KeepaliveInterval,
    /// `--http2-keepalive-timeout` (`TOKEND_HTTP2_KEEPALIVE_TIMEOUT`).
    Http2KeepaliveTimeout,
    /// `--health-check-interval` (`TOKEND_HEALTH_CHECK_INTERVAL`).
    HealthCheckInterval,
    /// `--otlp-endpoint` (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    OtlpEndpoint,
    /// `--org`.
    Org,
    /// `--sub`.
    Sub,
    /// `--role`.
    Role,
    /// `--permission`.
    Permission,
    /// `--ttl`.
    Ttl,
    /// `--issuer`.
    Issuer,
    /// `--audience`.
    Audience,
}

impl Setting {
    /// Every setting.
    pub const ALL: &[Setting] = &[
        Setting::DatabaseUrl,
        Setting::DataDir,
        Setting::DbMaxConnections,
        Setting::DbAcquireTimeout,
        Setting::DbConnectTimeout,
        Setting::DbStatementTimeout,
        Setting::DbIdleTimeout,
        Setting::DbMaxLifetime,
        Setting::JwtHs256Secret,
        Setting::JwtJwksFile,
        Setting::JwtJwksUrl,
        Setting::JwtJwksReloadInterval,
        Setting::JwtIssuer,
        Setting::JwtAudience,
        Setting::GrpcAddr,
        Setting::HttpAddr,
        Setting::RateLimitPerSecond,
        Setting::RateLimitBurst,
        Setting::AuthFailuresPerMinute,
        Setting::AuthFailureBurst,
        Setting::HttpHeaderReadTimeout,
        Setting::HttpMaxConnections,
        Setting::HttpMaxBodySize,
        Setting::ShutdownGrace,
        Setting::LogFormat,
        Setting::MaxMessageSize,
        Setting::RequestTimeout,
        Setting::MaxConcurrentRequests,
        Setting::MaxConnectionAge,
        Setting::Http2KeepaliveInterval,
        Setting::Http2KeepaliveTimeout,
        Setting::HealthCheckInterval,
        Setting::OtlpEndpoint,
        Setting::Org,
        Setting::Sub,
        Setting::Role,
        Setting::Permission,
        Setting::Ttl,
        Setting::Issuer,
        Setting::Audience,
    ];

    /// The flag's name and its environment variable, if it has one.
    const fn names(self) -> (&'static str, Option<&'static str>) {
        match self {
            Setting::DatabaseUrl => ("database-url", Some("DATABASE_URL")),
            Setting::DataDir => ("data-dir", Some("TOKEND_DATA_DIR")),
            Setting::DbMaxConnections => ("db-max-connections", Some("TOKEND_DB_MAX_CONNECTIONS")),
            Setting::DbAcquireTimeout => ("db-acquire-timeout", Some("TOKEND_DB_ACQUIRE_TIMEOUT")),
            Setting::DbConnectTimeout => ("db-connect-timeout", Some("TOKEND_DB_CONNECT_TIMEOUT")),
            Setting::DbStatementTimeout => {
                ("db-statement-timeout", Some("TOKEND_DB_STATEMENT_TIMEOUT"))
            }
            Setting::DbIdleTimeout => ("db-idle-timeout", Some("TOKEND_DB_IDLE_TIMEOUT")),
            Setting::DbMaxLifetime => ("db-max-lifetime", Some("TOKEND_DB_MAX_LIFETIME")),
            Setting::JwtHs256Secret => ("jwt-hs256-secret", Some("TOKEND_JWT_HS256_SECRET")),
            Setting::JwtJwksFile => ("jwt-jwks-file", Some("TOKEND_JWT_JWKS_FILE")),
            Setting::JwtJwksUrl => ("jwt-jwks-url", Some("TOKEND_JWT_JWKS_URL")),
            Setting::JwtJwksReloadInterval => (
                "jwt-jwks-reload-interval",
                Some("TOKEND_JWT_JWKS_RELOAD_INTERVAL"),
            ),
            Setting::JwtIssuer => ("jwt-issuer", Some("TOKEND_JWT_ISSUER")),
            Setting::JwtAudience => ("jwt-audience", Some("TOKEND_JWT_AUDIENCE")),
            Setting::GrpcAddr => ("grpc-addr", Some("TOKEND_GRPC_ADDR")),
            Setting::HttpAddr => ("http-addr", Some("TOKEND_HTTP_ADDR")),
            Setting::RateLimitPerSecond => (
                "rate-limit-per-second",
                Some("TOKEND_RATE_LIMIT_PER_SECOND"),
            ),
            Setting::RateLimitBurst => ("rate-limit-burst", Some("TOKEND_RATE_LIMIT_BURST")),
            Setting::AuthFailuresPerMinute => (
                "auth-failures-per-minute",
                Some("TOKEND_AUTH_FAILURES_PER_MINUTE"),
            ),
            Setting::AuthFailureBurst => ("auth-failure-burst", Some("TOKEND_AUTH_FAILURE_BURST")),
            Setting::HttpHeaderReadTimeout => (
                "http-header-read-timeout",
                Some("TOKEND_HTTP_HEADER_READ_TIMEOUT"),
            ),
            Setting::HttpMaxConnections => {
                ("http-max-connections", Some("TOKEND_HTTP_MAX_CONNECTIONS"))
            }
            Setting::HttpMaxBodySize => ("http-max-body-size", Some("TOKEND_HTTP_MAX_BODY_SIZE")),
            Setting::ShutdownGrace => ("shutdown-grace", Some("TOKEND_SHUTDOWN_GRACE")),
            Setting::LogFormat => ("log-format", Some("TOKEND_LOG_FORMAT")),
            Setting::MaxMessageSize => ("max-message-size", Some("TOKEND_MAX_MESSAGE_SIZE")),
            Setting::RequestTimeout => ("request-timeout", Some("TOKEND_REQUEST_TIMEOUT")),
            Setting::MaxConcurrentRequests => (
                "max-concurrent-requests",
                Some("TOKEND_MAX_CONCURRENT_REQUESTS"),
            ),
            Setting::MaxConnectionAge => ("max-connection-age", Some("TOKEND_MAX_CONNECTION_AGE")),
            Setting::Http2KeepaliveInterval => (
                "http2-keepalive-interval",
                Some("TOKEND_HTTP2_KEEPALIVE_INTERVAL"),
            ),
            Setting::Http2KeepaliveTimeout => (
                "http2-keepalive-timeout",
                Some("TOKEND_HTTP2_KEEPALIVE_TIMEOUT"),
            ),
            Setting::HealthCheckInterval => (
                "health-check-interval",
                Some("TOKEND_HEALTH_CHECK_INTERVAL"),
            ),
            // The OpenTelemetry SDKs' own name, so that a collector set-up
            // made for other services applies unchanged.
            Setting::OtlpEndpoint => ("otlp-endpoint", Some("OTEL_EXPORTER_OTLP_ENDPOINT")),
            Setting::Org => ("org", None),
            Setting::Sub => ("sub", None),
            Setting::Role => ("role", None),
            Setting::Permission => ("permission", None),
            Setting::Ttl => ("ttl", None),
            Setting::Issuer => ("issuer", None),
            Setting::Audience => ("audience", None),
        }
    }

    /// The flag, without its leading `--`.
    pub const fn long(self) -> &'static str {
        self.names().0
    }

    /// The environment variable read when the flag is absent.
    pub const fn env(self) -> Option<&'static str> {
        self.names().1
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.env() {
            Some(env) => write!(f, "--{} ({env})", self.long()),
            None => write!(f, "--{}", self.long()),
        }
    }
}

/// Any error, boxed: the cause a [`StartupError`] keeps.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What is wrong with a setting when no other error says it (e.g. a URL
/// scheme tokend does not speak).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub &'static str);

/// Start-up stopped. Displayed as ONE line that names what is at fault and
/// then every cause that adds something (`--database-url (DATABASE_URL):
/// must start with sqlite:// or postgres://`); the cause is kept as the
/// error's `source`, for code that wants it whole.
#[derive(Debug)]
pub enum StartupError {
    /// A setting's value cannot be used.
    Setting {
        /// The setting at fault.
        setting: Setting,
        /// Why.
        source: Cause,
    },
    /// A part of tokend that takes no setting failed to start (a defect, or
    /// the environment, such as a closed stdout).
    Part {
        /// The part, e.g. `reflection`.
        part: &'static str,
        /// Why.
        source: Cause,
    },
}

impl StartupError {
    /// `setting`'s value cannot be used, because of `source`.
    pub fn setting(setting: Setting, source: impl Into<Cause>) -> StartupError {
        StartupError::Setting {
            setting,
            source: source.into(),
        }
    }

    /// `part` failed to start, because of `source`.
    pub fn part(part: &'static str, source: impl Into<Cause>) -> StartupError {
        StartupError::Part {
            part,
            source: source.into(),
        }
    }

    /// The setting at fault, if a setting is.
    pub fn setting_at_fault(&self) -> Option<Setting> {
        match self {
            StartupError::Setting { setting, .. } => Some(*setting),
            StartupError::Part { .. } => None,
        }
    }

    fn cause(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            StartupError::Setting { source, .. } | StartupError::Part { source, .. } => {
                source.as_ref()
            }
        }
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Setting { setting, .. } => write!(f, "{setting}")?,
            StartupError::Part { part, .. } => f.write_str(part)?,
        }
        // Many errors already print their cause in their own message; a
        // cause whose text is already on the line is not repeated.
        let mut line = String::new();
        let mut cause = Some(self.cause());
        while let Some(error) = cause {
            let text = error.to_string();
            if !line.contains(&text) {
                write!(f, ": {text}")?;
                line.push_str(&text);
            }
            cause = error.source();
        }
        Ok(())
    }
}

impl std::error::Error for StartupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_displays_as_its_flag_and_environment_variable() {
        assert_eq!(
            Setting::GrpcAddr.to_string(),
            "--grpc-addr (TOKEND_GRPC_ADDR)"
        );
        assert_eq!(
            Setting::DatabaseUrl.to_string(),
            "--database-url (DATABASE_URL)"
        );
        assert_eq!(Setting::Ttl.to_string(), "--ttl");
        let mut flags = std::collections::HashSet::new();
        for setting in Setting::ALL {
            assert!(flags.insert(setting.long()), "{setting} is named twice");
        }
    }

    #[test]
    fn a_startup_error_is_one_line_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let error = StartupError::setting(Setting::GrpcAddr, io);
        assert_eq!(
            error.to_string(),
            "--grpc-addr (TOKEND_GRPC_ADDR): address in use"
        );
        let cause = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("address in use"));
        assert_eq!(error.setting_at_fault(), Some(Setting::GrpcAddr));

        #[derive(Debug, thiserror::Error)]
        #[error("cannot open the pool: {0}")]
        struct Repeats(#[source] Invalid);
        let error = StartupError::setting(Setting::DatabaseUrl, Repeats(Invalid("refused")));
        assert_eq!(
            error.to_string(),
            "--database-url (DATABASE_URL): cannot open the pool: refused",
            "a cause already on the line is not repeated"
        );
        assert!(!error.to_string().contains('\n'));
    }
}
