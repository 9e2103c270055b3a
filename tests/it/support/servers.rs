//! In-process servers: `tokend` started through `server::start` on port 0
//! with a manual clock, its health, and the settings it is given.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use tokend::config::{Cli, ServeArgs, ServerConfig};
use tokend::domain::ManualClock;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::server::{self, ServerHandle};

use super::databases::{Backend, TestDb};
use super::jwts::{HS_SECRET, mint};

/// A tokend running in this process on port 0, with a manual clock.
pub struct TestServer {
    pub handle: Option<ServerHandle>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub channel: Channel,
    pub db: Arc<TestDb>,
}

/// Builds serve settings from flags, as the binary would.
pub fn serve_args(db: &TestDb, extra: &[&str]) -> ServeArgs {
    let data_dir = db.dir.path().display().to_string();
    let mut argv: Vec<String> = vec![
        "tokend".into(),
        "--database-url".into(),
        db.url.clone(),
        "--data-dir".into(),
        data_dir,
        "--jwt-hs256-secret".into(),
        HS_SECRET.into(),
        "--health-check-interval".into(),
        "100ms".into(),
        "--shutdown-grace".into(),
        "5s".into(),
    ];
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    Cli::try_parse_from(argv).expect("valid test flags").serve
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_on(Arc::new(TestDb::new(backend).await), &[]).await
    }

    pub async fn start_with(backend: Backend, extra: &[&str]) -> TestServer {
        TestServer::start_on(Arc::new(TestDb::new(backend).await), extra).await
    }

    /// Starts a server on an existing database (a second replica).
    pub async fn start_on(db: Arc<TestDb>, extra: &[&str]) -> TestServer {
        let server = TestServer::spawn(db, extra).await;
        server.wait_ready().await;
        server
    }

    /// Starts without waiting for readiness.
    pub async fn spawn(db: Arc<TestDb>, extra: &[&str]) -> TestServer {
        let args = serve_args(&db, extra);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let config = ServerConfig::from_args(&args).expect("valid test settings");
        let handle = server::start(config, clock.clone(), grpc, http)
            .await
            .expect("server starts");
        let channel = Endpoint::from_shared(format!("http://{}", handle.grpc_addr))
            .expect("endpoint")
            .connect_lazy();
        TestServer {
            grpc_addr: handle.grpc_addr,
            http_addr: handle.http_addr,
            handle: Some(handle),
            clock,
            channel,
            db,
        }
    }

    pub fn client(&self) -> TokenServiceClient<Channel> {
        TokenServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// The readiness status right now.
    pub async fn readiness(&self) -> Option<ServingStatus> {
        health_status(&self.channel, "tokend.v1.TokenService").await
    }

    /// Polls readiness until SERVING (bounded).
    pub async fn wait_ready(&self) {
        wait_for_status(
            &self.channel,
            "tokend.v1.TokenService",
            ServingStatus::Serving,
            Duration::from_secs(20),
        )
        .await;
    }

    /// A JWT for `org`/`sub` with roles and permissions, valid for an hour
    /// from the server's clock.
    pub fn jwt(&self, org: &str, sub: &str, roles: &[&str], permissions: &[&str]) -> String {
        let now = tokend::domain::Clock::now(self.clock.as_ref()).timestamp();
        mint(org, sub, roles, permissions, now, now + 3600)
    }

    /// Waits (bounded) until at least `count` writes of a token's last use
    /// have failed in all, so a test sees the writer's work rather than its
    /// not having run yet.
    pub async fn wait_for_failed_last_use_writes(&self, count: u64) {
        let stats = self.handle.as_ref().expect("running").last_use_stats();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while stats.failed() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} last-use writes failed after 20 s",
                stats.failed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn admin(&self, org: &str) -> String {
        self.jwt(org, "admin-user", &["admin"], &[])
    }

    pub fn introspector(&self) -> String {
        self.jwt("platform", "gateway", &[], &["tokens_introspect"])
    }

    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.begin_shutdown();
        }
    }
}

pub async fn health_status(channel: &Channel, service: &str) -> Option<ServingStatus> {
    let mut client = HealthClient::new(channel.clone());
    let response = client
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(response.into_inner().status).ok()
}

/// Polls a health status until it equals `want`; panics after `limit`.
/// Returns how long it took.
pub async fn wait_for_status(
    channel: &Channel,
    service: &str,
    want: ServingStatus,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if health_status(channel, service).await == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{service:?} did not become {want:?} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
