//! The tokend under test: the binary, `migrate`, `serve` on port 0,
//! readiness, memory figures and a graceful stop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Res;
use crate::cli::Args;

/// The health service whose SERVING means "ready".
pub(crate) const READINESS: &str = "tokend.v1.TokenService";

/// Names the tokend binary to start. Unset: the `tokend` next to this tool,
/// where `cargo build --release --workspace` puts both.
const TOKEND_BIN_VAR: &str = "TOKEND_BIN";

/// A tokend: started here (`child`), or a running one (`--target`).
pub(crate) struct Server {
    pub(crate) child: Option<Child>,
    pub(crate) pid: Option<u32>,
    pub(crate) grpc: SocketAddr,
    pub(crate) http: Option<SocketAddr>,
    /// The last lines of the server's log, for error reports.
    pub(crate) log_tail: Arc<Mutex<Vec<String>>>,
}

/// The tokend binary: `$TOKEND_BIN`, or the `tokend` next to this tool.
fn tokend_bin() -> Res<PathBuf> {
    if let Some(path) = std::env::var_os(TOKEND_BIN_VAR) {
        return Ok(PathBuf::from(path));
    }
    let path =
        std::env::current_exe()?.with_file_name(format!("tokend{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no tokend binary at {}: build it with `cargo build --release --workspace`, or set {TOKEND_BIN_VAR}",
            path.display()
        )
        .into())
    }
}

/// Runs `tokend <args>` to completion (e.g. `migrate`).
pub(crate) fn run_tokend(args: &[&str]) -> Res<()> {
    let output = Command::new(tokend_bin()?).args(args).output()?;
    if !output.status.success() {
        return Err(format!(
            "tokend {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

/// Starts `tokend serve` on port 0 and returns it once it logged its
/// addresses, with the instant it was spawned.
pub(crate) fn start_server(args: &Args, url: &str, data_dir: &str) -> Res<(Server, Instant)> {
    let bin = tokend_bin()?;
    let spawned = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            data_dir,
            "--database-url",
            url,
            "--log-format",
            "json",
            "--rate-limit-per-second",
            "0",
            "--jwt-hs256-secret",
            &args.jwt_hs256_secret,
        ])
        .args(&args.serve_args)
        .env("RUST_LOG", &args.server_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let (tx, rx) = mpsc::channel();
    let log_tail = Arc::new(Mutex::new(Vec::new()));
    let tail = Arc::clone(&log_tail);
    // Like a log collector: read every line (one per call at `info`), keep
    // the last few for error reports.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("tokend listening")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.clone());
            }
            if let Ok(mut tail) = tail.lock() {
                if tail.len() >= 20 {
                    tail.remove(0);
                }
                tail.push(line);
            }
        }
    });
    let pid = child.id();
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let tail = log_tail.lock().map(|t| t.join("\n")).unwrap_or_default();
            return Err(format!("tokend did not start:\n{tail}").into());
        }
    };
    let value: serde_json::Value = serde_json::from_str(&line)?;
    let addr = |key: &str| -> Res<SocketAddr> {
        let text = value
            .get(key)
            .or_else(|| value.get("fields").and_then(|f| f.get(key)))
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("no {key} in {line}"))?;
        Ok(text.parse()?)
    };
    let server = Server {
        grpc: addr("grpc_addr")?,
        http: Some(addr("http_addr")?),
        child: Some(child),
        pid: Some(pid),
        log_tail,
    };
    Ok((server, spawned))
}

impl Server {
    /// A tokend that is already running, at `--target`.
    pub(crate) fn running(args: &Args, grpc: SocketAddr) -> Server {
        Server {
            child: None,
            pid: args.target_pid,
            grpc,
            http: args.target_http,
            log_tail: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// SIGTERM, then up to 25 s for the graceful shutdown, then SIGKILL.
    /// A server this tool did not start is left alone.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(25);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// (VmRSS, VmHWM) in MiB.
pub(crate) fn memory(pid: Option<u32>) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Polls readiness until SERVING; returns the time since `since`.
pub(crate) async fn wait_ready(addr: SocketAddr, since: Instant) -> Res<Duration> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?;
    loop {
        if since.elapsed() > Duration::from_secs(60) {
            return Err("tokend not ready after 60 s".into());
        }
        if let Ok(channel) = endpoint.connect().await {
            let mut health = HealthClient::new(channel);
            loop {
                let answer = health
                    .check(HealthCheckRequest {
                        service: READINESS.to_owned(),
                    })
                    .await;
                if let Ok(answer) = answer
                    && answer.get_ref().status == ServingStatus::Serving as i32
                {
                    return Ok(since.elapsed());
                }
                if since.elapsed() > Duration::from_secs(60) {
                    return Err("tokend not ready after 60 s".into());
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
