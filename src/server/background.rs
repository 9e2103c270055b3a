//! The server's background tasks besides readiness: the last-use writer,
//! the JWKS reloader, the JWKS URL's fetcher and the eviction of idle
//! limiter state. Each ends at
//! shutdown (the last-use writer when its queue closes).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::admission::{CallerRateLimiter, FailedAuthLimiter};
use crate::domain::Clock;
use crate::domain::last_use::{LAST_USE_QUEUE_CAPACITY, LastUseRecorder};
use crate::identity::{KeyRing, RemoteKeyRing};
use crate::store::SeaStore;

/// How often idle limiter state is dropped.
const IDLE_EVICTION_PERIOD: Duration = Duration::from_secs(10);

/// Starts the writer of token uses and returns the recorder the core hands
/// uses to: recording a use never fails or delays an authentication.
pub(super) fn spawn_last_use_writer(store: &SeaStore) -> LastUseRecorder {
    let (recorder, writer) = LastUseRecorder::new(LAST_USE_QUEUE_CAPACITY);
    tokio::spawn(writer.run(store.clone()));
    recorder
}

/// Re-reads the JWKS file periodically; a broken file keeps the old keys.
pub(super) fn spawn_jwks_reload(
    key_ring: Arc<KeyRing>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
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
    });
}

/// Fetches the JWKS URL's keys now, then on its schedule and on unknown
/// `kid`s (see `identity::jwks_url`).
pub(super) fn spawn_jwks_url_refresh(
    remote_keys: Arc<RemoteKeyRing>,
    clock: Arc<dyn Clock>,
    shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(remote_keys.run(clock, shutdown));
}

/// Periodically drops rate-limiter state of callers and peers that went
/// quiet.
pub(super) fn spawn_idle_eviction(
    callers: Arc<CallerRateLimiter>,
    failed_auth: Arc<FailedAuthLimiter>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(IDLE_EVICTION_PERIOD) => {
                    callers.forget_idle();
                    failed_auth.forget_idle();
                }
                _ = shutdown.changed() => return,
            }
        }
    });
}
