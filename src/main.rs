//! The `tokend` binary: `serve` (default), `migrate`, `mint-jwt`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;

use tokend::config::{Cli, Command, MigrateArgs, MintJwtArgs, ServeArgs};
use tokend::domain::SystemClock;
use tokend::identity::secret_file;
use tokend::identity::{HsSecret, MintRequest, mint_hs256};
use tokend::server::{self, StartupError};
use tokend::store::SeaStore;
use tokend::telemetry::init_logging;

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
            // One line naming the setting at fault.
            eprintln!("tokend: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(
    addr: std::net::SocketAddr,
    setting: &'static str,
) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).await.map_err(|e| StartupError {
        setting,
        message: format!("cannot listen on {addr}: {e}"),
    })
}

async fn serve(args: ServeArgs) -> Result<(), StartupError> {
    init_logging(args.log_format);
    let grpc = bind(args.grpc_addr, "--grpc-addr (TOKEND_GRPC_ADDR)").await?;
    let http = bind(args.http_addr, "--http-addr (TOKEND_HTTP_ADDR)").await?;
    let handle = server::start(args, Arc::new(SystemClock), grpc, http).await?;
    tracing::info!(grpc_addr = %handle.grpc_addr, http_addr = %handle.http_addr, "tokend listening");
    wait_for_signal().await;
    handle.shutdown().await;
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
    let setting = "--database-url (DATABASE_URL)";
    if args.database.database_url.is_none() {
        tokend::data_dir::create(&args.database.data_dir).map_err(|e| StartupError {
            setting: "--data-dir (TOKEND_DATA_DIR)",
            message: e.to_string(),
        })?;
    }
    let store = SeaStore::connect_lazy(&args.database.settings())
        .await
        .map_err(|e| StartupError {
            setting,
            message: describe(&e),
        })?;
    store.migrate().await.map_err(|e| StartupError {
        setting,
        message: describe(&e),
    })?;
    tracing::info!("migrations applied");
    let _ = store.close().await;
    Ok(())
}

fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn mint_jwt(args: &MintJwtArgs) -> Result<(), StartupError> {
    let secret = match &args.jwt_hs256_secret {
        Some(secret) => HsSecret::new(secret.as_bytes()).map_err(|short| StartupError {
            setting: "--jwt-hs256-secret (TOKEND_JWT_HS256_SECRET)",
            message: short.to_string(),
        })?,
        None => {
            let (secret, _, _) =
                secret_file::load_or_create(&args.data_dir).map_err(|e| StartupError {
                    setting: "--data-dir (TOKEND_DATA_DIR)",
                    message: e.to_string(),
                })?;
            secret
        }
    };
    let now = chrono::Utc::now().timestamp();
    let ttl = i64::try_from(args.ttl.as_secs()).map_err(|_| StartupError {
        setting: "--ttl",
        message: "too long".to_owned(),
    })?;
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
    let jwt = mint_hs256(&secret, &claims).map_err(|e| StartupError {
        setting: "--jwt-hs256-secret (TOKEND_JWT_HS256_SECRET)",
        message: e.to_string(),
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{jwt}").map_err(|e| StartupError {
        setting: "stdout",
        message: e.to_string(),
    })
}
