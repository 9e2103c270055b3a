//! Service metrics (Prometheus) and the HTTP endpoint that serves them.

pub mod endpoint;

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::error::TokenRejection;
use crate::domain::token::TokenCounts;
use crate::domain::{ServiceError, Token, TokenKind};
use crate::grpc::request_context::CallObserver;

/// Service-wide metrics: nothing in them identifies a tenant.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpcs: IntCounterVec,
    rpc_latency: HistogramVec,
    authentications: IntCounterVec,
    revocations: IntCounterVec,
    pool: IntGaugeVec,
}

/// Errors building the registry (only on programming mistakes such as a
/// duplicate metric name).
pub type MetricsError = prometheus::Error;

impl Metrics {
    /// Registers every metric, with the process collector.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let rpcs = IntCounterVec::new(
            Opts::new(
                "tokend_grpc_requests_total",
                "gRPC calls by method and code",
            ),
            &["method", "code"],
        )?;
        let rpc_latency = HistogramVec::new(
            HistogramOpts::new(
                "tokend_grpc_request_duration_seconds",
                "gRPC call latency by method",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method"],
        )?;
        let authentications = IntCounterVec::new(
            Opts::new("tokend_authentications_total", "AuthenticateToken results"),
            &["result"],
        )?;
        let revocations = IntCounterVec::new(
            Opts::new(
                "tokend_revocations_total",
                "Effective revocations by token family",
            ),
            &["kind"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "tokend_db_pool_connections",
                "Database pool connections by state",
            ),
            &["state"],
        )?;
        registry.register(Box::new(rpcs.clone()))?;
        registry.register(Box::new(rpc_latency.clone()))?;
        registry.register(Box::new(authentications.clone()))?;
        registry.register(Box::new(revocations.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for kind in TokenKind::ALL {
            revocations.with_label_values(&[kind.as_str()]);
        }
        Ok(Metrics {
            registry,
            rpcs,
            rpc_latency,
            authentications,
            revocations,
            pool,
        })
    }

    /// Counts one AuthenticateToken result.
    pub fn record_authentication(&self, result: &Result<Token, ServiceError>) {
        let label = match result {
            Ok(_) => "ok",
            Err(ServiceError::TokenRejected(TokenRejection::Revoked)) => "revoked",
            Err(ServiceError::TokenRejected(TokenRejection::Expired)) => "expired",
            Err(ServiceError::TokenRejected(TokenRejection::Unknown)) => "unknown",
            Err(ServiceError::TokenRejected(TokenRejection::Malformed(_))) => "malformed",
            Err(_) => "error",
        };
        self.authentications.with_label_values(&[label]).inc();
    }

    /// Counts one effective revocation.
    pub fn record_revocation(&self, kind: TokenKind) {
        self.revocations.with_label_values(&[kind.as_str()]).inc();
    }

    /// Sets the pool gauges.
    pub fn set_pool(&self, size: u32, idle: usize) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.pool.with_label_values(&["open"]).set(i64::from(size));
        self.pool.with_label_values(&["idle"]).set(idle);
    }

    /// Renders the service-wide metrics plus one organisation's token
    /// counts, in the Prometheus text format.
    pub fn render(&self, org_counts: &TokenCounts) -> Result<String, MetricsError> {
        let tokens = IntGaugeVec::new(
            Opts::new(
                "tokend_tokens",
                "Tokens of the scrape token's organisation by kind and state",
            ),
            &["kind", "state"],
        )?;
        for (kind, state, count) in &org_counts.counts {
            tokens
                .with_label_values(&[kind.as_str(), state.as_str()])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        let org_registry = Registry::new();
        org_registry.register(Box::new(tokens))?;
        let mut families = self.registry.gather();
        families.extend(org_registry.gather());
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&families, &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The `code` label: the code's name, without allocating per call.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// Feeds the request-context layer's observations into [`Metrics`].
#[derive(Clone, Debug)]
pub struct RpcObserver(pub std::sync::Arc<Metrics>);

impl CallObserver for RpcObserver {
    fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        // Only known service paths become label values, so that scanning for
        // random method names cannot grow the label set without bound.
        let method = if method.starts_with("/tokend.v1.TokenService/")
            || method.starts_with("/grpc.health.v1.Health/")
            || method.starts_with("/grpc.reflection.")
        {
            method
        } else {
            "unknown"
        };
        self.0
            .rpcs
            .with_label_values(&[method, code_label(code)])
            .inc();
        self.0
            .rpc_latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }
}
