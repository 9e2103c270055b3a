//! The `tokend` binary: `serve` (default), `migrate`, `mint-jwt`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use tokio::net::TcpListener;

use tokend::config::server_config::{self, ServerConfig};
use tokend::config::{
    Cli, Command, Invalid, MigrateArgs, MintJwtArgs, ServeArgs, Setting, StartupError,
};
use tokend::domain::SystemClock;
use tokend::identity::secret_file;
use tokend::identity::{MintRequest, mint_hs256};
use tokend::server;
use tokend::store::SeaStore;
use tokend::telemetry::{self, init_logging};

/// mimalloc, not the system allocator: the hot path is allocation-heavy and
/// it measured faster under load (Cargo.toml, docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokend: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve(cli.serve).await,
            Some(Command::Serve(args)) => serve(args).await,
            Some(Command::Migrate(args)) => migrate(args).await,
            Some(Command::MintJwt(args)) => mint_jwt(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line naming the setting at fault (with its causes).
            eprintln!("tokend: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
struct BindError {
    addr: std::net::SocketAddr,
    #[source]
    source: std::io::Error,
}

async fn bind(addr: std::net::SocketAddr, setting: Setting) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::setting(setting, BindError { addr, source }))
}

async fn serve(args: ServeArgs) -> Result<(), StartupError> {
    let otlp = server_config::otlp_endpoint(&args)?;
    let telemetry = telemetry::init(args.log_format, otlp.as_ref())
        .map_err(|e| StartupError::setting(Setting::OtlpEndpoint, e))?;
    let config = ServerConfig::from_args(&args)?;
    let grace = config.shutdown_grace;
    let grpc = bind(config.grpc_addr, Setting::GrpcAddr).await?;
    let http = bind(config.http_addr, Setting::HttpAddr).await?;
    let handle = server::start(config, Arc::new(SystemClock), grpc, http).await?;
    tracing::info!(grpc_addr = %handle.grpc_addr, http_addr = %handle.http_addr, "tokend listening");
    wait_for_signal().await;
    let deadline = Instant::now() + grace;
    handle.shutdown().await;
    // The spans of the last calls go out with what is left of the grace.
    telemetry
        .shutdown(deadline.saturating_duration_since(Instant::now()))
        .await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut sigterm) => {
            tokio::select! {
                _ = ctrl_c => tracing::info!("SIGINT received"),
                _ = sigterm.recv() => tracing::info!("SIGTERM received"),
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, "cannot listen for SIGTERM; only SIGINT stops tokend");
            let _ = ctrl_c.await;
        }
    }
}

async fn migrate(args: MigrateArgs) -> Result<(), StartupError> {
    init_logging(None);
    let settings = server_config::database_settings(&args.database)?;
    let store = SeaStore::connect_lazy(&settings)
        .await
        .map_err(|e| StartupError::setting(Setting::DatabaseUrl, e))?;
    store
        .migrate()
        .await
        .map_err(|e| StartupError::setting(Setting::DatabaseUrl, e))?;
    tracing::info!("migrations applied");
    let _ = store.close().await;
    Ok(())
}

fn mint_jwt(args: &MintJwtArgs) -> Result<(), StartupError> {
    let secret = match &args.jwt_hs256_secret {
        Some(secret) => server_config::hs_secret(secret.expose())?,
        None => {
            let (secret, _, _) = secret_file::load_or_create(&args.data_dir)
                .map_err(|e| StartupError::setting(Setting::DataDir, e))?;
            secret
        }
    };
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(args.ttl.as_secs())
        .map_err(|_| StartupError::setting(Setting::Ttl, Invalid("too long")))?;
    let claims = MintRequest {
        sub: args.sub.clone(),
        org_id: args.org.clone(),
        roles: args.roles.clone(),
        permissions: args.permissions.clone(),
        iat: now,
        exp: now.saturating_add(ttl),
        iss: args.issuer.clone(),
        aud: args.audience.clone(),
    };
    let jwt = mint_hs256(&secret, &claims)
        .map_err(|e| StartupError::setting(Setting::JwtHs256Secret, e))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{jwt}").map_err(|e| StartupError::part("stdout", e))
}
