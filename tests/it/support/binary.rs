//! The real `tokend` binary on port 0, its address read from its log.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use super::servers::wait_for_status;

/// The real `tokend` binary, started by [`spawn_binary`].
pub struct Binary {
    pub child: Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Every stderr line; complete once the process has exited.
    pub log: JoinHandle<Vec<String>>,
}

/// The binary with `args` and `dir` as its data folder, its settings from
/// nothing but its flags (the test's environment may set some), under umask
/// 022 (the common default, which lets others read what is created without
/// an explicit mode), so that the modes of what it makes are tokend's choice.
pub fn tokend_command(args: &[&str], dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(r#"umask 022 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_tokend"))
        .args(args)
        .arg("--data-dir")
        .arg(dir);
    for setting in [
        "DATABASE_URL",
        "TOKEND_DATA_DIR",
        "TOKEND_JWT_HS256_SECRET",
        "TOKEND_JWT_JWKS_FILE",
        "TOKEND_JWT_JWKS_URL",
        "TOKEND_JWT_ISSUER",
        "TOKEND_JWT_AUDIENCE",
    ] {
        command.env_remove(setting);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// `tokend serve` on port 0 (gRPC and HTTP) with JSON logs and `dir` as its
/// data folder (see [`tokend_command`]).
pub fn serve_command(dir: &Path) -> Command {
    tokend_command(
        &[
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        dir,
    )
}

/// The addresses a `serve` child (stderr piped, JSON logs) logs once it
/// listens, and the task that keeps draining its log (so that the child
/// never blocks on a full pipe) and returns every line once it exits; or
/// every line it logged if it exits (or stays silent for 60 s) first.
pub async fn listening_addrs(
    child: &mut Child,
) -> Result<(SocketAddr, SocketAddr, JoinHandle<Vec<String>>), Vec<String>> {
    let Some(stderr) = child.stderr.take() else {
        return Err(vec!["stderr is not piped".to_owned()]);
    };
    let mut lines = BufReader::new(stderr).lines();
    let mut kept = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            kept.push(line);
            if value["message"] == "tokend listening" {
                let address = |field: &str| value[field].as_str()?.parse::<SocketAddr>().ok();
                return address("grpc_addr").zip(address("http_addr"));
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some((grpc_addr, http_addr))) => {
            let log = tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    kept.push(line);
                }
                kept
            });
            Ok((grpc_addr, http_addr, log))
        }
        _ => {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Err(kept)
        }
    }
}

/// Starts the real binary on port 0 (gRPC and HTTP) in `dir` with JSON logs
/// filtered by `filter`, and reads its addresses from the log line
/// "tokend listening": no port probing, no sleeps.
pub async fn spawn_binary(dir: &Path, extra: &[&str], filter: &str) -> Binary {
    let mut child = serve_command(dir)
        .args(extra)
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tokend");
    let (grpc_addr, http_addr, log) = listening_addrs(&mut child)
        .await
        .unwrap_or_else(|log| panic!("tokend exited before listening: {log:?}"));
    Binary {
        child,
        grpc_addr,
        http_addr,
        log,
    }
}

/// A channel to a server at `addr`, once it reports readiness.
pub async fn ready_channel(addr: SocketAddr) -> Channel {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    wait_for_status(
        &channel,
        "tokend.v1.TokenService",
        ServingStatus::Serving,
        Duration::from_secs(30),
    )
    .await;
    channel
}

impl Binary {
    /// A channel to the binary, once it reports readiness.
    pub async fn ready_channel(&self) -> Channel {
        ready_channel(self.grpc_addr).await
    }
}
