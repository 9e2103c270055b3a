//! The real `tokend` binary on port 0, its address read from its log.

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;

use super::servers::wait_for_status;

/// The real `tokend` binary, started by [`spawn_binary`].
pub struct Binary {
    pub child: tokio::process::Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Every stderr line; complete once the process has exited.
    pub log: tokio::task::JoinHandle<Vec<String>>,
}

/// `tokend serve` on port 0 (gRPC and HTTP) with JSON logs and `dir` as its
/// data folder, ignoring any `DATABASE_URL` of the test's environment.
pub fn serve_command(dir: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokend"));
    command
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir)
        .env_remove("DATABASE_URL");
    command
}

/// Starts the real binary on port 0 (gRPC and HTTP) in `dir` with JSON logs
/// filtered by `filter`, and reads its gRPC address from the log line
/// "tokend listening": no port probing, no sleeps.
pub async fn spawn_binary(dir: &std::path::Path, extra: &[&str], filter: &str) -> Binary {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = serve_command(dir)
        .args(extra)
        .env("RUST_LOG", filter)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tokend");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut kept = Vec::new();
    let (grpc_addr, http_addr) = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            kept.push(line);
            if value["message"] == "tokend listening" {
                let address = |field: &str| -> SocketAddr {
                    value[field]
                        .as_str()
                        .expect(field)
                        .parse()
                        .expect("an address")
                };
                return (address("grpc_addr"), address("http_addr"));
            }
        }
        panic!("tokend exited before listening: {kept:?}");
    })
    .await
    .expect("tokend listens");
    // Keep draining the log so the child never blocks on a full pipe.
    let log = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.push(line);
        }
        kept
    });
    Binary {
        child,
        grpc_addr,
        http_addr,
        log,
    }
}

impl Binary {
    /// A channel to the binary, once it reports readiness.
    pub async fn ready_channel(&self) -> Channel {
        let channel = Endpoint::from_shared(format!("http://{}", self.grpc_addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        wait_for_status(
            &channel,
            "tokend.v1.TokenService",
            ServingStatus::Serving,
            Duration::from_secs(20),
        )
        .await;
        channel
    }
}
