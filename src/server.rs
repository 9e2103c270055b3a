//! Wiring: the store, the core, identity, the gRPC server (TokenService with
//! its interceptor, health, reflection), the metrics listener, readiness and
//! bounded graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::ServeArgs;
use crate::domain::last_use::{LAST_USE_QUEUE_CAPACITY, LastUseRecorder};
use crate::domain::rate_limit::CallerRateLimiter;
use crate::domain::{Clock, TokenLifecycle};
use crate::failed_auth::FailedAuthLimiter;
use crate::grpc::auth::AuthInterceptor;
use crate::grpc::handlers::TokenApi;
use crate::grpc::proto;
use crate::grpc::proto::token_service_server::TokenServiceServer;
use crate::grpc::request_context::RequestContextLayer;
use crate::http_listener::{self, HttpLimits};
use crate::identity::secret_file::{self, SecretOrigin};
use crate::identity::{HsSecret, JwtVerifier, KeyRing};
use crate::metrics::endpoint::{self, MetricsState};
use crate::metrics::{Metrics, OrgAuthentications, RpcObserver, ServedMethods};
use crate::store::SeaStore;

/// The readiness service name (docs/reference.md, "Health").
pub const READINESS_SERVICE: &str = "tokend.v1.TokenService";
/// The liveness service name.
pub const LIVENESS_SERVICE: &str = "";

/// A setting that stops start-up. Displayed as one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct StartupError {
    /// The flag (and environment variable) at fault.
    pub setting: &'static str,
    /// What is wrong.
    pub message: String,
}

impl StartupError {
    fn new(setting: &'static str, message: impl std::fmt::Display) -> Self {
        StartupError {
            setting,
            message: message.to_string(),
        }
    }
}

/// Builds the JWT verifier from the settings: an explicit HS secret, a JWKS
/// file, or else the zero-config secret file.
pub fn build_verifier(
    args: &ServeArgs,
) -> Result<(JwtVerifier, Option<Arc<KeyRing>>), StartupError> {
    let jwt = &args.jwt;
    let key_ring = match &jwt.jwt_jwks_file {
        Some(path) => Some(Arc::new(KeyRing::load(path).map_err(|e| {
            StartupError::new("--jwt-jwks-file (TOKEND_JWT_JWKS_FILE)", e)
        })?)),
        None => None,
    };
    let hs_secret = match (&jwt.jwt_hs256_secret, &key_ring) {
        (Some(secret), _) => Some(HsSecret::new(secret.as_bytes()).map_err(|short| {
            StartupError::new("--jwt-hs256-secret (TOKEND_JWT_HS256_SECRET)", short)
        })?),
        (None, Some(_)) => None,
        (None, None) => {
            let (secret, origin, path) = secret_file::load_or_create(&args.database.data_dir)
                .map_err(|e| StartupError::new("--data-dir (TOKEND_DATA_DIR)", e))?;
            if origin == SecretOrigin::Created {
                tracing::info!(path = %path.display(), "no JWT key configured: generated a random HS256 secret (mode 0600); `tokend mint-jwt` uses it");
            } else {
                tracing::info!(path = %path.display(), "no JWT key configured: using the HS256 secret file");
            }
            Some(secret)
        }
    };
    let verifier = JwtVerifier::new(
        hs_secret.as_ref(),
        key_ring.clone(),
        jwt.jwt_issuer.clone(),
        jwt.jwt_audience.clone(),
    );
    Ok((verifier, key_ring))
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where the metrics listener listens.
    pub http_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Begins graceful shutdown: health goes NOT_SERVING, listeners stop
    /// accepting, in-flight calls get the grace period.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
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

/// Migrates (until it succeeds), hands the core the page-token key the
/// migrations stored, and keeps readiness in step with the database:
/// NOT_SERVING within one interval plus the ping timeout of a failure,
/// SERVING again as soon as a ping succeeds.
async fn watch_readiness(
    store: SeaStore,
    lifecycle: Arc<TokenLifecycle<SeaStore>>,
    reporter: HealthReporter,
    schema_ready: Arc<AtomicBool>,
    interval: Duration,
    ping_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ready = false;
    let mut migration_failures = 0u32;
    loop {
        if !schema_ready.load(Ordering::Acquire) {
            let migrated = async {
                store.migrate().await?;
                store.load_page_token_key().await
            };
            match tokio::time::timeout(ping_timeout * 5, migrated).await {
                Ok(Ok(page_token_key)) => {
                    lifecycle.install_page_token_key(page_token_key);
                    schema_ready.store(true, Ordering::Release);
                    tracing::info!("database migrations applied");
                }
                Ok(Err(error)) => {
                    migration_failures += 1;
                    if migration_failures == 1 || migration_failures.is_multiple_of(30) {
                        tracing::warn!(error = %error, attempts = migration_failures, "cannot migrate the database yet; retrying");
                    }
                }
                Err(_) => tracing::warn!("database migration timed out; retrying"),
            }
        }
        let healthy = schema_ready.load(Ordering::Acquire)
            && matches!(
                tokio::time::timeout(ping_timeout, store.ping_database()).await,
                Ok(Ok(()))
            );
        if healthy != ready && !*shutdown.borrow() {
            ready = healthy;
            set_status(&reporter, READINESS_SERVICE, ready).await;
            if ready {
                tracing::info!("ready: database reachable");
            } else {
                tracing::warn!("not ready: database unreachable");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Re-reads the JWKS file periodically; a broken file keeps the old keys.
async fn watch_jwks(
    key_ring: Arc<KeyRing>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        match key_ring.reload_if_changed() {
            Ok(true) => tracing::info!("JWKS file changed: keys reloaded"),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(error = %error, "JWKS file unusable: keeping the previous keys")
            }
        }
    }
}

/// Periodically drops rate-limiter state of callers and peers that went
/// quiet.
async fn forget_idle_callers(
    limiter: Arc<CallerRateLimiter>,
    failed_auth: Arc<FailedAuthLimiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(10)) => {
                limiter.forget_idle();
                failed_auth.forget_idle();
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The gRPC services and the `method` label values, built together: a
/// service is routed and its methods (read from the descriptors that
/// describe it) become label values in one step, so the label set is
/// exactly what is served.
#[derive(Default)]
struct GrpcServices {
    routes: tonic::service::RoutesBuilder,
    methods: ServedMethods,
}

impl GrpcServices {
    fn add<S>(&mut self, service: S, file_descriptor_set: &[u8]) -> Result<(), StartupError>
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.methods
            .add_service(S::NAME, file_descriptor_set)
            .map_err(|e| StartupError::new("gRPC services", e))?;
        self.routes.add_service(service);
        Ok(())
    }
}

/// Starts tokend on already-bound listeners. Returns once the server is
/// accepting; readiness follows when migrations are applied.
pub async fn start(
    args: ServeArgs,
    clock: Arc<dyn Clock>,
    grpc_listener: TcpListener,
    http_listener: TcpListener,
) -> Result<ServerHandle, StartupError> {
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| StartupError::new("--grpc-addr (TOKEND_GRPC_ADDR)", e))?;
    let http_addr = http_listener
        .local_addr()
        .map_err(|e| StartupError::new("--http-addr (TOKEND_HTTP_ADDR)", e))?;
    let (verifier, key_ring) = build_verifier(&args)?;

    let settings = args.database.settings();
    if settings.url.starts_with("sqlite://") && args.database.database_url.is_none() {
        crate::data_dir::create(&args.database.data_dir)
            .map_err(|e| StartupError::new("--data-dir (TOKEND_DATA_DIR)", e))?;
    }
    if !(settings.url.starts_with("sqlite:")
        || settings.url.starts_with("postgres://")
        || settings.url.starts_with("postgresql://"))
    {
        return Err(StartupError::new(
            "--database-url (DATABASE_URL)",
            "must start with sqlite:// or postgres://",
        ));
    }
    let mut store = SeaStore::connect_lazy(&settings).await.map_err(|e| {
        StartupError::new(
            "--database-url (DATABASE_URL)",
            format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        )
    })?;
    // Token uses are written by a background task, so that recording them
    // never fails or delays an authentication.
    let (last_use, last_use_writer) = LastUseRecorder::new(LAST_USE_QUEUE_CAPACITY);
    tokio::spawn(last_use_writer.run(store.clone()));
    let metrics = Arc::new(Metrics::new().map_err(|e| StartupError::new("metrics", e))?);
    let statements = metrics.clone();
    store.observe_statements(move |kind, elapsed, failed| {
        statements.record_statement(kind, elapsed, failed);
    });
    let org_authentications = Arc::new(OrgAuthentications::default());
    let lifecycle = Arc::new(
        TokenLifecycle::new(
            store.clone(),
            last_use,
            Arc::new(crate::domain::SystemEntropy),
        )
        .with_authentication_observer(org_authentications.clone()),
    );
    let schema_ready = Arc::new(AtomicBool::new(false));
    // `shutdown` begins shutdown (health first); `stop` then tells the
    // listeners to stop accepting, so a Watch client sees NOT_SERVING before
    // its connection is told to go away.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (stop_tx, stop_rx) = watch::channel(false);

    let (reporter, health_service) = tonic_health::server::health_reporter();
    set_status(&reporter, LIVENESS_SERVICE, true).await;
    set_status(&reporter, READINESS_SERVICE, false).await;

    // Both reflection versions serve the same files (grpcurl 1.8.6 speaks
    // only v1alpha).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| StartupError::new("reflection", e))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| StartupError::new("reflection", e))?;

    let rate_limiter = Arc::new(CallerRateLimiter::new(
        args.rate_limit_per_second,
        args.rate_limit_burst,
    ));
    let failed_auth = Arc::new(FailedAuthLimiter::new(
        args.auth_failures_per_minute,
        args.auth_failure_burst,
        clock.clone(),
    ));
    tokio::spawn(forget_idle_callers(
        rate_limiter.clone(),
        failed_auth.clone(),
        shutdown_rx.clone(),
    ));
    let api = TokenApi::new(lifecycle.clone(), clock.clone(), metrics.clone());
    let token_service = InterceptedService::new(
        TokenServiceServer::new(api).max_decoding_message_size(args.max_message_size),
        AuthInterceptor::new(
            Arc::new(verifier),
            clock.clone(),
            schema_ready.clone(),
            rate_limiter.clone(),
            failed_auth.clone(),
        ),
    );

    let mut services = GrpcServices::default();
    services.add(health_service, tonic_health::pb::FILE_DESCRIPTOR_SET)?;
    services.add(reflection_v1, tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)?;
    services.add(
        reflection_v1alpha,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    )?;
    services.add(token_service, proto::FILE_DESCRIPTOR_SET)?;
    let GrpcServices { routes, methods } = services;

    let mut grpc_shutdown = stop_rx.clone();
    let grpc_server = Server::builder()
        .timeout(args.request_timeout)
        .concurrency_limit_per_connection(args.max_concurrent_requests)
        .load_shed(true)
        .max_connection_age(args.max_connection_age)
        .http2_keepalive_interval(Some(args.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(args.http2_keepalive_timeout))
        .layer(RequestContextLayer::new(RpcObserver::new(
            metrics.clone(),
            methods,
        )))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            async move {
                let _ = grpc_shutdown.wait_for(|stop| *stop).await;
            },
        );

    let mut http_shutdown = stop_rx;
    let http_router = endpoint::router(MetricsState {
        lifecycle: lifecycle.clone(),
        metrics: metrics.clone(),
        org_authentications,
        failed_auth,
        clock: clock.clone(),
    });
    let http_limits = HttpLimits {
        header_read_timeout: args.http_header_read_timeout,
        max_connections: usize::try_from(args.http_max_connections).unwrap_or(usize::MAX),
        max_body_bytes: args.http_max_body_size,
        request_timeout: args.request_timeout,
    };
    let http_server = http_listener::serve(http_listener, http_router, http_limits, async move {
        let _ = http_shutdown.wait_for(|stop| *stop).await;
    });

    tokio::spawn(watch_readiness(
        store.clone(),
        lifecycle.clone(),
        reporter.clone(),
        schema_ready,
        args.health_check_interval,
        args.database.db_acquire_timeout,
        shutdown_rx.clone(),
    ));
    if let Some(key_ring) = key_ring {
        tokio::spawn(watch_jwks(
            key_ring,
            args.jwt.jwt_jwks_reload_interval,
            shutdown_rx.clone(),
        ));
    }

    let grace = args.shutdown_grace;
    let mut begin = shutdown_rx;
    let task = tokio::spawn(async move {
        let grpc = tokio::spawn(grpc_server);
        let http = tokio::spawn(http_server);
        let _ = begin.wait_for(|stop| *stop).await;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: health NOT_SERVING, draining in-flight calls"
        );
        set_status(&reporter, LIVENESS_SERVICE, false).await;
        set_status(&reporter, READINESS_SERVICE, false).await;
        let _ = stop_tx.send(true);
        // tonic's graceful shutdown waits for every connection, however idle
        // (a health Watch stream never ends): bound it by the grace period.
        let (mut grpc, mut http) = (grpc, http);
        let drained = tokio::time::timeout(grace, async {
            let _ = (&mut grpc).await;
            let _ = (&mut http).await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period elapsed with connections still open; closing them");
            grpc.abort();
            http.abort();
        }
        if let Err(error) = store.close().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        tracing::info!("stopped");
    });

    Ok(ServerHandle {
        grpc_addr,
        http_addr,
        shutdown: shutdown_tx,
        task,
    })
}
