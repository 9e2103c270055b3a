//! Readiness follows the database: migrate until it succeeds (then hand the
//! core the page-token key the migrations stored), then ping every interval
//! and flip the readiness service, and the `tokend_ready` gauge with it.
//! With a JWKS URL, readiness also waits for the first key loaded from it;
//! after that, a provider outage never makes tokend unready (the last good
//! keys keep working). Liveness is not touched here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tonic_health::server::HealthReporter;

use crate::domain::TokenLifecycle;
use crate::identity::RemoteKeyRing;
use crate::metrics::Metrics;
use crate::server::{READINESS_SERVICE, set_status};
use crate::store::SeaStore;

/// What the watcher needs.
pub(super) struct Readiness {
    pub store: SeaStore,
    pub lifecycle: Arc<TokenLifecycle<SeaStore>>,
    pub reporter: HealthReporter,
    /// Set once migrations ran; the JWT check refuses calls until then.
    pub schema_ready: Arc<AtomicBool>,
    pub interval: Duration,
    pub ping_timeout: Duration,
    /// The JWKS URL's keys, if one is configured.
    pub remote_keys: Option<Arc<RemoteKeyRing>>,
    /// Where the `tokend_ready` gauge lives.
    pub metrics: Arc<Metrics>,
}

/// Migrates (until it succeeds) and keeps readiness in step with the
/// database: NOT_SERVING within one interval plus the ping timeout of a
/// failure, SERVING again as soon as a ping succeeds. Ends at shutdown.
pub(super) async fn watch(readiness: Readiness, mut shutdown: watch::Receiver<bool>) {
    let mut ready = false;
    let mut migration_failures = 0u32;
    loop {
        if !readiness.schema_ready.load(Ordering::Acquire) {
            readiness.migrate(&mut migration_failures).await;
        }
        let database = readiness.schema_ready.load(Ordering::Acquire) && readiness.ping().await;
        let keys = readiness
            .remote_keys
            .as_ref()
            .is_none_or(|ring| ring.ever_loaded());
        let healthy = database && keys;
        if healthy != ready && !*shutdown.borrow() {
            ready = healthy;
            set_status(&readiness.reporter, READINESS_SERVICE, ready).await;
            readiness.metrics.set_ready(ready);
            if ready {
                tracing::info!("ready: database reachable");
            } else {
                // Only the database takes readiness away: keys from the
                // JWKS URL, once loaded, are never unloaded.
                tracing::warn!("not ready: database unreachable");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(readiness.interval) => {}
            _ = shutdown.changed() => {
                readiness.metrics.set_ready(false);
                return;
            }
        }
    }
}

impl Readiness {
    /// One attempt to migrate and load the page-token key; a failure is
    /// logged on the first attempt and every 30th after it.
    async fn migrate(&self, failures: &mut u32) {
        let migrated = async {
            self.store.migrate().await?;
            self.store.load_page_token_key().await
        };
        match tokio::time::timeout(self.ping_timeout * 5, migrated).await {
            Ok(Ok(page_token_key)) => {
                self.lifecycle.install_page_token_key(page_token_key);
                self.schema_ready.store(true, Ordering::Release);
                tracing::info!("database migrations applied");
            }
            Ok(Err(error)) => {
                *failures += 1;
                if *failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %error, attempts = *failures, "cannot migrate the database yet; retrying");
                }
            }
            Err(_) => tracing::warn!("database migration timed out; retrying"),
        }
    }

    async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(self.ping_timeout, self.store.ping_database()).await,
            Ok(Ok(()))
        )
    }
}
