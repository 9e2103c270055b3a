//! Prometheus figures, in two sets that never mix:
//!
//! - operator figures ([`Metrics`], `GET /metrics`): calls by method and
//!   code and their latency, the database pool and statements, service-wide
//!   authentication and revocation counts, and the process. No label takes a
//!   value a caller chose: methods come from [`ServedMethods`], the rest from
//!   closed enums.
//! - tenant figures ([`render_tenant`], `GET /api/metrics/prometheus`): one
//!   organisation's tokens and the authentications of its tokens
//!   ([`OrgAuthentications`]), nothing about the service or other tenants.

pub mod endpoint;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use prost::Message;

use crate::domain::error::TokenRejection;
use crate::domain::lifecycle::AuthenticationObserver;
use crate::domain::token::{TokenCounts, TokenState};
use crate::domain::{ServiceError, Token, TokenKind};

mod statement_kind;
pub use statement_kind::StatementKind;

/// The `method` label of a call to anything the server does not serve.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Errors building the registry (only on programming mistakes such as a
/// duplicate metric name).
pub type MetricsError = prometheus::Error;

/// Latency buckets shared by calls and statements, in seconds.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The operator figures: service-wide, nothing in them names a tenant.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rpcs: IntCounterVec,
    rpc_latency: HistogramVec,
    authentications: IntCounterVec,
    revocations: IntCounterVec,
    pool: IntGaugeVec,
    statements: IntCounterVec,
    statement_latency: HistogramVec,
    ready: IntGauge,
}

impl Metrics {
    /// Registers every operator metric, with the process collector.
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
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let authentications = IntCounterVec::new(
            Opts::new(
                "tokend_authentications_total",
                "AuthenticateToken results, all organisations",
            ),
            &["result"],
        )?;
        let revocations = IntCounterVec::new(
            Opts::new(
                "tokend_revocations_total",
                "Effective revocations by token family, all organisations",
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
        let statements = IntCounterVec::new(
            Opts::new(
                "tokend_db_statements_total",
                "Database statements by operation and outcome",
            ),
            &["operation", "outcome"],
        )?;
        let statement_latency = HistogramVec::new(
            HistogramOpts::new(
                "tokend_db_statement_duration_seconds",
                "Database statement latency by operation (pool wait excluded)",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )?;
        let ready = IntGauge::new(
            "tokend_ready",
            "1 while readiness (tokend.v1.TokenService) is SERVING, else 0",
        )?;
        registry.register(Box::new(rpcs.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(rpc_latency.clone()))?;
        registry.register(Box::new(authentications.clone()))?;
        registry.register(Box::new(revocations.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(statements.clone()))?;
        registry.register(Box::new(statement_latency.clone()))?;
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
            statements,
            statement_latency,
            ready,
        })
    }

    /// Follows readiness: set by the readiness watcher with every change of
    /// `tokend.v1.TokenService`'s health, and to 0 at shutdown.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts one AuthenticateToken result.
    pub fn record_authentication(&self, result: &Result<Token, ServiceError>) {
        let label = match result {
            Ok(_) => "ok",
            Err(ServiceError::TokenRejected(TokenRejection::Revoked)) => "revoked",
            Err(ServiceError::TokenRejected(TokenRejection::Expired)) => "expired",
            Err(ServiceError::TokenRejected(TokenRejection::Unknown)) => "unknown",
            Err(ServiceError::TokenRejected(TokenRejection::Malformed(_))) => "malformed",
            Err(ServiceError::ScopeMissing { .. }) => "scope_missing",
            Err(
                ServiceError::InvalidArgument(_)
                | ServiceError::Unauthenticated(_)
                | ServiceError::PermissionDenied { .. }
                | ServiceError::NotFound(_)
                | ServiceError::AlreadyExists(_)
                | ServiceError::NotRotatable(_)
                | ServiceError::RateLimited { .. }
                | ServiceError::Unavailable { .. }
                | ServiceError::Internal(_),
            ) => "error",
        };
        self.authentications.with_label_values(&[label]).inc();
    }

    /// Counts one finished gRPC call: `path` is labelled through `methods`
    /// (a path the server does not serve is [`UNKNOWN_METHOD`]); `code` is
    /// the status code's name, from the transport's fixed set.
    pub fn record_call(
        &self,
        methods: &ServedMethods,
        path: &str,
        code: &'static str,
        elapsed: Duration,
    ) {
        let method = methods.label(path);
        self.rpcs.with_label_values(&[method, code]).inc();
        self.rpc_latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts one effective revocation.
    pub fn record_revocation(&self, kind: TokenKind) {
        self.revocations.with_label_values(&[kind.as_str()]).inc();
    }

    /// Counts one database statement.
    pub fn record_statement(&self, kind: StatementKind, elapsed: Duration, failed: bool) {
        let operation = statement_label(kind);
        let outcome = if failed { "error" } else { "ok" };
        self.statements
            .with_label_values(&[operation, outcome])
            .inc();
        self.statement_latency
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the pool gauges.
    pub fn set_pool(&self, size: u32, idle: usize) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.pool.with_label_values(&["open"]).set(i64::from(size));
        self.pool.with_label_values(&["idle"]).set(idle);
    }

    /// The operator figures in the Prometheus text format.
    pub fn render(&self) -> Result<String, MetricsError> {
        encode(&self.registry.gather())
    }
}

fn encode(families: &[prometheus::proto::MetricFamily]) -> Result<String, MetricsError> {
    let mut buffer = Vec::new();
    TextEncoder::new().encode(families, &mut buffer)?;
    String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

fn statement_label(kind: StatementKind) -> &'static str {
    match kind {
        StatementKind::Select => "select",
        StatementKind::Insert => "insert",
        StatementKind::Update => "update",
        StatementKind::Delete => "delete",
        StatementKind::Other => "other",
    }
}

/// A service the server registers but its descriptors do not describe.
#[derive(Debug, thiserror::Error)]
pub enum ServedMethodsError {
    /// The descriptor set does not decode.
    #[error("the file descriptor set of {service} does not decode: {source}")]
    Undecodable {
        /// The service.
        service: String,
        /// Why.
        source: prost::DecodeError,
    },
    /// No file of the set declares the service, or it has no methods.
    #[error("no method of {0} is described by its file descriptor set")]
    Undescribed(String),
}

/// The gRPC methods the server serves, as request paths
/// (`/package.Service/Method`): the only values of the `method` label
/// besides [`UNKNOWN_METHOD`]. Built from each registered service's name
/// and the descriptors that describe it (see the server's `GrpcServices`), so it
/// cannot drift from what is served, and no request can add to it.
#[derive(Clone, Debug, Default)]
pub struct ServedMethods(HashSet<String>);

impl ServedMethods {
    /// Adds every method of `service` (fully qualified, e.g.
    /// `grpc.health.v1.Health`) found in `encoded_file_descriptor_set`.
    pub fn add_service(
        &mut self,
        service: &str,
        encoded_file_descriptor_set: &[u8],
    ) -> Result<(), ServedMethodsError> {
        let files = prost_types::FileDescriptorSet::decode(encoded_file_descriptor_set).map_err(
            |source| ServedMethodsError::Undecodable {
                service: service.to_owned(),
                source,
            },
        )?;
        let before = self.0.len();
        for file in &files.file {
            let package = file.package();
            for described in &file.service {
                let name = if package.is_empty() {
                    described.name().to_owned()
                } else {
                    format!("{package}.{}", described.name())
                };
                if name == service {
                    for method in &described.method {
                        self.0.insert(format!("/{service}/{}", method.name()));
                    }
                }
            }
        }
        if self.0.len() == before {
            return Err(ServedMethodsError::Undescribed(service.to_owned()));
        }
        Ok(())
    }

    /// The label value of a request path: the path itself when it is a
    /// served method, else [`UNKNOWN_METHOD`].
    pub fn label<'a>(&self, path: &'a str) -> &'a str {
        if self.0.contains(path) {
            path
        } else {
            UNKNOWN_METHOD
        }
    }

    /// How many methods there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Most organisations whose authentications are counted. An organisation
/// appears only once one of its tokens (which its admins created) was
/// presented, so the number follows the tenants, not the requests; the cap
/// is a backstop (an entry is a few dozen bytes).
pub const MAX_COUNTED_ORGS: usize = 100_000;

/// The results of authenticating an organisation's tokens, in label order.
const AUTHENTICATION_RESULTS: [&str; 3] = ["ok", "expired", "revoked"];

/// Authentications of each organisation's tokens by result, counted in
/// memory by this replica since it started (so every replica answers with
/// its own counts; a restart resets them, which Prometheus counters allow).
/// A secret that matches no token belongs to no organisation and is not
/// counted here.
#[derive(Debug, Default)]
pub struct OrgAuthentications {
    // Read-locked on the hot path (an increment of an existing
    // organisation's atomic); write-locked only to add an organisation.
    orgs: RwLock<HashMap<String, [AtomicU64; 3]>>,
}

impl OrgAuthentications {
    // Every update is one atomic increment or one insert: a poisoned lock
    // holds no torn state.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, [AtomicU64; 3]>> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, [AtomicU64; 3]>> {
        self.orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counts of `org_id`, by [`AUTHENTICATION_RESULTS`].
    fn of(&self, org_id: &str) -> [u64; 3] {
        self.read()
            .get(org_id)
            .map(|counts| counts.each_ref().map(|c| c.load(Ordering::Relaxed)))
            .unwrap_or_default()
    }

    /// How many organisations are counted (for tests).
    pub fn counted_orgs(&self) -> usize {
        self.read().len()
    }
}

impl AuthenticationObserver for OrgAuthentications {
    fn observe(&self, token: &Token, state: TokenState) {
        let slot = match state {
            TokenState::Active => 0,
            TokenState::Expired => 1,
            TokenState::Revoked => 2,
        };
        if let Some(counts) = self.read().get(&token.org_id) {
            counts[slot].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut orgs = self.write();
        if orgs.len() >= MAX_COUNTED_ORGS && !orgs.contains_key(&token.org_id) {
            return;
        }
        orgs.entry(token.org_id.clone()).or_default()[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// One organisation's figures, in the Prometheus text format: its tokens by
/// kind and state, its active tokens expiring within
/// [`crate::domain::token::EXPIRING_SOON`], and authentications of its
/// tokens by result.
pub fn render_tenant(
    counts: &TokenCounts,
    authentications: &OrgAuthentications,
    org_id: &str,
) -> Result<String, MetricsError> {
    let tokens = IntGaugeVec::new(
        Opts::new(
            "tokend_tokens",
            "Tokens of the scrape token's organisation by kind and state",
        ),
        &["kind", "state"],
    )?;
    for (kind, state, count) in &counts.counts {
        tokens
            .with_label_values(&[kind.as_str(), state.as_str()])
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
    let expiring = IntGaugeVec::new(
        Opts::new(
            "tokend_tokens_expiring_within_7d",
            "Active tokens of the organisation whose expiry is within 7 days",
        ),
        &["kind"],
    )?;
    for (kind, count) in &counts.expiring_soon {
        expiring
            .with_label_values(&[kind.as_str()])
            .set(i64::try_from(*count).unwrap_or(i64::MAX));
    }
    let authenticated = IntCounterVec::new(
        Opts::new(
            "tokend_org_authentications_total",
            "Authentications of the organisation's tokens by result, counted by the replica that answers since it started",
        ),
        &["result"],
    )?;
    for (result, count) in AUTHENTICATION_RESULTS
        .iter()
        .zip(authentications.of(org_id))
    {
        authenticated.with_label_values(&[result]).inc_by(count);
    }
    let registry = Registry::new();
    registry.register(Box::new(tokens))?;
    registry.register(Box::new(expiring))?;
    registry.register(Box::new(authenticated))?;
    encode(&registry.gather())
}
