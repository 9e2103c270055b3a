//! Bounded graceful shutdown, in order: health goes NOT_SERVING (so a
//! `Watch` client sees it while its connection is still open), then the
//! listeners stop accepting, then in-flight calls get the grace period;
//! past it open connections are dropped.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic_health::server::HealthReporter;

use crate::server::{LIVENESS_SERVICE, READINESS_SERVICE, set_status};
use crate::store::SeaStore;

/// The two steps of shutdown as channels: `begin` is sent by the handle;
/// `stop` (sent here once health is NOT_SERVING) tells the listeners to stop
/// accepting.
pub(super) struct Signals {
    pub begin_tx: watch::Sender<bool>,
    pub begin_rx: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Signals {
    pub(super) fn new() -> Signals {
        let (begin_tx, begin_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        Signals {
            begin_tx,
            begin_rx,
            stop_tx,
            stop_rx,
        }
    }

    /// Resolves when the listeners must stop accepting.
    pub(super) fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop_rx.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }
}

/// What the drain needs.
pub(super) struct Drain {
    pub reporter: HealthReporter,
    pub store: SeaStore,
    pub grace: Duration,
}

/// Runs both listeners until shutdown begins, then drains them within the
/// grace period and closes the pool.
pub(super) fn spawn<G, H>(
    grpc_server: G,
    http_server: H,
    drain: Drain,
    signals: Signals,
) -> JoinHandle<()>
where
    G: Future + Send + 'static,
    G::Output: Send,
    H: Future + Send + 'static,
    H::Output: Send,
{
    let Signals {
        mut begin_rx,
        stop_tx,
        ..
    } = signals;
    tokio::spawn(async move {
        let mut grpc = tokio::spawn(grpc_server);
        let mut http = tokio::spawn(http_server);
        let _ = begin_rx.wait_for(|begin| *begin).await;
        tracing::info!(
            grace_ms = drain.grace.as_millis() as u64,
            "shutting down: health NOT_SERVING, draining in-flight calls"
        );
        set_status(&drain.reporter, LIVENESS_SERVICE, false).await;
        set_status(&drain.reporter, READINESS_SERVICE, false).await;
        let _ = stop_tx.send(true);
        // tonic's graceful shutdown waits for every connection, however idle
        // (a health Watch stream never ends): bound it by the grace period.
        let drained = tokio::time::timeout(drain.grace, async {
            let _ = (&mut grpc).await;
            let _ = (&mut http).await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period elapsed with connections still open; closing them");
            grpc.abort();
            http.abort();
        }
        if let Err(error) = drain.store.close().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        tracing::info!("stopped");
    })
}
