//! Wiring: the store, the core, identity, the gRPC server (TokenService with
//! its JWT check, health, reflection), the HTTP listener (metrics and the
//! REST face), readiness and
//! bounded graceful shutdown. Everything here is given a checked
//! [`ServerConfig`]; no setting is checked here.

mod background;
mod grpc;
mod readiness;
mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admission::{Admission, CallerRateLimiter, FailedAuthLimiter};
use crate::config::{JwtConfig, ServerConfig, Setting, StartupError};
use crate::domain::last_use::LastUseStats;
use crate::domain::{Clock, SystemEntropy, TokenLifecycle};
use crate::http_listener;
use crate::metrics::endpoint::{self, MetricsState, PoolStatusSource};
use crate::metrics::{Metrics, OrgAuthentications, StatementKind};
use crate::rest::{self, RestApi, serve::RestState};
use crate::store::SeaStore;
use crate::telemetry;

/// The readiness service name (docs/reference.md, "Health").
pub const READINESS_SERVICE: &str = "tokend.v1.TokenService";
/// The liveness service name.
pub const LIVENESS_SERVICE: &str = "";

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the HTTP listener (metrics, REST face) listens.
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    last_use: Arc<LastUseStats>,
}

impl ServerHandle {
    /// Begins graceful shutdown: health goes NOT_SERVING, listeners stop
    /// accepting, in-flight calls get the grace period.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// What happened to the recording of token uses so far (the writer
    /// works in the background: tests wait on these counts).
    pub fn last_use_stats(&self) -> &LastUseStats {
        &self.last_use
    }

    /// Waits until the server has stopped (after [`Self::begin_shutdown`]).
    pub async fn wait(self) {
        if let Err(error) = self.task.await {
            tracing::error!(error = %error, "server task failed");
        }
    }

    /// Shuts down and waits.
    pub async fn shutdown(self) {
        self.begin_shutdown();
        self.wait().await;
    }
}

async fn set_status(reporter: &HealthReporter, service: &str, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status(service, status).await;
}

/// The store, the core and the figures they feed.
struct Core {
    store: SeaStore,
    lifecycle: Arc<TokenLifecycle<SeaStore>>,
    metrics: Arc<Metrics>,
    org_authentications: Arc<OrgAuthentications>,
    last_use: Arc<LastUseStats>,
}

async fn core(config: &ServerConfig) -> Result<Core, StartupError> {
    let mut store = SeaStore::connect_lazy(&config.database)
        .await
        .map_err(|e| StartupError::setting(Setting::DatabaseUrl, e))?;
    let metrics = Arc::new(Metrics::new().map_err(|e| StartupError::part("metrics", e))?);
    let statements = metrics.clone();
    let system = if config.database.url.starts_with("postgres") {
        "postgresql"
    } else {
        "sqlite"
    };
    store.observe_statements(move |sql, elapsed, failed| {
        let kind = StatementKind::of(sql);
        statements.record_statement(kind, elapsed, failed);
        telemetry::record_statement(kind.keyword(), system, elapsed, failed);
    });
    let last_use = background::spawn_last_use_writer(&store);
    let last_use_stats = last_use.shared_stats();
    let org_authentications = Arc::new(OrgAuthentications::default());
    let lifecycle = Arc::new(
        TokenLifecycle::new(store.clone(), last_use, Arc::new(SystemEntropy))
            .with_authentication_observer(org_authentications.clone()),
    );
    Ok(Core {
        store,
        lifecycle,
        metrics,
        org_authentications,
        last_use: last_use_stats,
    })
}

fn local_addr(listener: &TcpListener, setting: Setting) -> Result<SocketAddr, StartupError> {
    listener
        .local_addr()
        .map_err(|e| StartupError::setting(setting, e))
}

/// The metrics endpoints, reading the pool figures from the store.
fn metrics_router(
    core: &Core,
    failed_auth: Arc<FailedAuthLimiter>,
    clock: Arc<dyn Clock>,
) -> axum::Router {
    let store = core.store.clone();
    endpoint::router(MetricsState {
        lifecycle: core.lifecycle.clone(),
        pool: PoolStatusSource::new(move || store.pool_status()),
        metrics: core.metrics.clone(),
        org_authentications: core.org_authentications.clone(),
        failed_auth,
        clock,
    })
}

/// The admission both faces share (refusing every request until
/// `schema_ready` is set), the failed-auth limiter it shares with the
/// metrics endpoint, and the task that forgets the limiters' idle state.
fn admission(
    config: &ServerConfig,
    clock: &Arc<dyn Clock>,
    schema_ready: Arc<AtomicBool>,
    signals: &shutdown::Signals,
) -> (Arc<Admission>, Arc<FailedAuthLimiter>) {
    let limits = config.admission;
    let callers = Arc::new(CallerRateLimiter::new(
        limits.calls_per_second,
        limits.call_burst,
        clock.clone(),
    ));
    let failed_auth = Arc::new(FailedAuthLimiter::new(
        limits.auth_failures_per_minute,
        limits.auth_failure_burst,
        clock.clone(),
    ));
    background::spawn_idle_eviction(
        callers.clone(),
        failed_auth.clone(),
        signals.begin_rx.clone(),
    );
    let admission = Arc::new(Admission::new(
        config.jwt.verifier.clone(),
        clock.clone(),
        schema_ready,
        callers,
        failed_auth.clone(),
    ));
    (admission, failed_auth)
}

/// The readiness watcher and, with a JWKS file, its reloader; with a JWKS
/// URL, its fetcher.
fn spawn_watchers(
    readiness: readiness::Readiness,
    jwt: JwtConfig,
    clock: Arc<dyn Clock>,
    signals: &shutdown::Signals,
) {
    tokio::spawn(readiness::watch(readiness, signals.begin_rx.clone()));
    if let Some(key_ring) = jwt.key_ring {
        background::spawn_jwks_reload(key_ring, jwt.reload_interval, signals.begin_rx.clone());
    }
    if let Some(remote_keys) = jwt.remote_keys {
        background::spawn_jwks_url_refresh(remote_keys, clock, signals.begin_rx.clone());
    }
}

/// Starts tokend on already-bound listeners. Returns once the server is
/// accepting; readiness follows when migrations are applied.
pub async fn start(
    config: ServerConfig,
    clock: Arc<dyn Clock>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
) -> Result<ServerHandle, StartupError> {
    let grpc_addr = local_addr(&grpc_listener, Setting::GrpcAddr)?;
    let http_addr = local_addr(&http_listener, Setting::HttpAddr)?;
    let core = core(&config).await?;
    let last_use = core.last_use.clone();
    let signals = shutdown::Signals::new();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_status(&reporter, LIVENESS_SERVICE, true).await;
    set_status(&reporter, READINESS_SERVICE, false).await;

    let schema_ready = Arc::new(AtomicBool::new(false));
    let (admission, failed_auth) = admission(&config, &clock, schema_ready.clone(), &signals);
    let rest_api = Arc::new(RestApi::load().map_err(|e| StartupError::part("REST routes", e))?);
    let rest_state = RestState {
        api: rest_api,
        lifecycle: core.lifecycle.clone(),
        clock: clock.clone(),
        metrics: core.metrics.clone(),
        admission: admission.clone(),
    };
    let grpc_server = grpc::serve(
        grpc_listener,
        config.grpc,
        health_service,
        grpc::TokenServiceParts {
            lifecycle: core.lifecycle.clone(),
            clock: clock.clone(),
            metrics: core.metrics.clone(),
            admission,
        },
        signals.stopped(),
    )?;
    // The metrics paths first; every other path is the REST face's (which
    // answers 404 or 405 itself).
    let http_router = metrics_router(&core, failed_auth, clock.clone()).fallback_service(
        axum::Router::new()
            .fallback(rest::serve::handle::<SeaStore>)
            .with_state(rest_state),
    );
    let http_server =
        http_listener::serve(http_listener, http_router, config.http, signals.stopped());

    let readiness = readiness::Readiness {
        store: core.store.clone(),
        lifecycle: core.lifecycle,
        reporter: reporter.clone(),
        schema_ready,
        interval: config.health_check_interval,
        ping_timeout: config.database.acquire_timeout,
        remote_keys: config.jwt.remote_keys.clone(),
        metrics: core.metrics.clone(),
    };
    spawn_watchers(readiness, config.jwt, clock, &signals);
    let shutdown = signals.begin_tx.clone();
    let drain = shutdown::Drain {
        reporter,
        store: core.store,
        grace: config.shutdown_grace,
    };
    let task = shutdown::spawn(grpc_server, http_server, drain, signals);
    Ok(ServerHandle {
        grpc_addr,
        http_addr,
        shutdown,
        task,
        last_use,
    })
}
