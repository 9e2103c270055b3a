//! Recording `last_used_at` off the request path.
//!
//! Authentication must never fail or wait because the use of a token could
//! not be written (a busy SQLite writer, a read-only PostgreSQL standby, a
//! slow disk). So authentication only offers a touch to a bounded queue
//! ([`LastUseRecorder::record`] never blocks), and one background task
//! ([`LastUseWriter::run`]) drains it, keeps the latest touch per token and
//! writes them one by one. A full queue drops the touch, counted and logged;
//! a failed write is logged and forgotten. The write itself keeps the
//! at-most-once-a-minute rule in its WHERE clause, across replicas.
//!
//! The same queue carries the presentations of revoked tokens
//! ([`crate::domain::revoked_use`]), for the same reasons: each becomes a
//! `revoked_token_used` audit event, written after the batch's touches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::domain::audit::AuditEventType;
use crate::domain::audit_log::log_audit_event;
use crate::domain::repository::TokenRepository;
use crate::domain::revoked_use::{REVOKED_USE_GRANULARITY, RevokedUse};

/// How long `last_used_at` may lag: it is written at most once a minute per
/// token, so authentication is a read almost every time.
pub const LAST_USED_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Touches waiting to be written; beyond this they are dropped. Each is a
/// few bytes; the writer coalesces them per token.
pub const LAST_USE_QUEUE_CAPACITY: usize = 4096;

/// Logs the first of these events and then one in this many, so a lasting
/// fault (a read-only database) does not flood the log.
const LOG_EVERY: u64 = 1000;

/// One authentication to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Touch {
    token_id: i64,
    at: DateTime<Utc>,
}

/// What the queue carries.
#[derive(Clone, Debug)]
enum Queued {
    /// An authentication of an active token.
    Touch(Touch),
    /// A presentation of a revoked token.
    RevokedUse(RevokedUse),
}

/// Counts of what happened to touches, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct LastUseStats {
    dropped: AtomicU64,
    failed: AtomicU64,
}

impl LastUseStats {
    /// Touches dropped because the queue was full or the writer gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes that failed.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

/// The request side: offers touches to the writer without ever waiting.
#[derive(Clone, Debug)]
pub struct LastUseRecorder {
    queue: mpsc::Sender<Queued>,
    stats: Arc<LastUseStats>,
}

/// The background side: writes queued touches through a repository.
#[derive(Debug)]
pub struct LastUseWriter {
    queue: mpsc::Receiver<Queued>,
    capacity: usize,
    stats: Arc<LastUseStats>,
}

impl LastUseRecorder {
    /// A recorder and the writer that must be run (spawned) for touches to
    /// reach the database. With the writer dropped, every touch is dropped.
    pub fn new(capacity: usize) -> (LastUseRecorder, LastUseWriter) {
        let capacity = capacity.max(1);
        let (sender, receiver) = mpsc::channel(capacity);
        let stats = Arc::new(LastUseStats::default());
        (
            LastUseRecorder {
                queue: sender,
                stats: stats.clone(),
            },
            LastUseWriter {
                queue: receiver,
                capacity,
                stats,
            },
        )
    }

    /// Offers a touch of `token_id` at `at`. Never blocks and never fails:
    /// when the queue is full (or the writer has stopped) the touch is
    /// dropped and counted.
    pub fn record(&self, token_id: i64, at: DateTime<Utc>) {
        self.offer(Queued::Touch(Touch { token_id, at }));
    }

    /// Offers a presentation of a revoked token, to become a
    /// `revoked_token_used` event. Never blocks and never fails, as
    /// [`Self::record`].
    pub fn record_revoked_use(&self, used: RevokedUse) {
        self.offer(Queued::RevokedUse(used));
    }

    fn offer(&self, item: Queued) {
        if self.queue.try_send(item).is_err() {
            let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % LOG_EVERY == 1 {
                tracing::warn!(
                    dropped_total = dropped,
                    "last-used queue full: a token's use was not recorded"
                );
            }
        }
    }

    /// What happened to touches so far.
    pub fn stats(&self) -> &LastUseStats {
        &self.stats
    }

    /// The counts, shared: they go on counting after this recorder is gone.
    pub fn shared_stats(&self) -> Arc<LastUseStats> {
        self.stats.clone()
    }
}

impl LastUseWriter {
    /// Writes touches until every recorder is dropped. Each batch is what
    /// the queue holds, reduced to the latest touch per token, written in
    /// the order tokens first appeared.
    pub async fn run<R: TokenRepository>(mut self, repository: R) {
        let mut batch: Vec<Touch> = Vec::new();
        let mut revoked_uses: Vec<RevokedUse> = Vec::new();
        let mut index_of: HashMap<i64, usize> = HashMap::new();
        while let Some(first) = self.queue.recv().await {
            batch.clear();
            revoked_uses.clear();
            index_of.clear();
            let mut received = 0;
            let mut next = Some(first);
            while let Some(item) = next {
                received += 1;
                match item {
                    Queued::Touch(touch) => match index_of.get(&touch.token_id) {
                        Some(&at) => {
                            if let Some(kept) = batch.get_mut(at) {
                                kept.at = kept.at.max(touch.at);
                            }
                        }
                        None => {
                            index_of.insert(touch.token_id, batch.len());
                            batch.push(touch);
                        }
                    },
                    Queued::RevokedUse(used) => revoked_uses.push(used),
                }
                // A batch takes at most one queue's worth, so that a steady
                // stream of touches cannot hold the writes back.
                next = if received < self.capacity {
                    self.queue.try_recv().ok()
                } else {
                    None
                };
            }
            for touch in &batch {
                let stale_before = touch.at - LAST_USED_GRANULARITY;
                if let Err(error) = repository
                    .touch_last_used(touch.token_id, touch.at, stale_before)
                    .await
                {
                    let failed = self.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    if failed % LOG_EVERY == 1 {
                        tracing::warn!(
                            token_numeric_id = touch.token_id,
                            failed_total = failed,
                            error = %error,
                            "recording a token's last use failed; authentication was not affected"
                        );
                    }
                }
            }
            for used in &revoked_uses {
                self.write_revoked_use(&repository, used).await;
            }
        }
    }

    /// Writes one `revoked_token_used` event, unless one was written for
    /// the token within the last minute (on any replica).
    async fn write_revoked_use<R: TokenRepository>(&self, repository: &R, used: &RevokedUse) {
        let recorded_before = used.context.now - REVOKED_USE_GRANULARITY;
        match repository
            .record_revoked_use(used.token_id, &used.context, recorded_before)
            .await
        {
            Ok(Some(token)) => log_audit_event(
                AuditEventType::RevokedTokenUsed,
                &token,
                &used.context,
                None,
            ),
            Ok(None) => {}
            Err(error) => {
                let failed = self.stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if failed % LOG_EVERY == 1 {
                    tracing::warn!(
                        token_numeric_id = used.token_id,
                        failed_total = failed,
                        error = %error,
                        "recording a revoked token's use failed; authentication was not affected"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::{Future, ready};
    use std::sync::Mutex;

    use super::*;
    use crate::domain::audit::{AuditContext, AuditEvent, AuditEventType};
    use crate::domain::repository::StoreError;
    use crate::domain::secret::TokenHash;
    use crate::domain::token::{
        NewToken, Revocation, RevokeOutcome, RevokeTarget, Token, TokenCounts, TokenFilter,
        Visibility,
    };

    /// One write the writer asked for: (token id, `now`).
    type Written = (i64, DateTime<Utc>);

    /// Records the touches it is asked to write; fails those of token 13.
    #[derive(Clone, Default)]
    struct Touches(Arc<Mutex<Vec<Written>>>);

    fn not_here<T>() -> std::future::Ready<Result<T, StoreError>> {
        ready(Err(StoreError::Other("not used by the writer".into())))
    }

    impl TokenRepository for Touches {
        fn create_token(
            &self,
            _: NewToken,
            _: &AuditContext,
        ) -> impl Future<Output = Result<Token, StoreError>> + Send {
            not_here()
        }
        fn find_token(
            &self,
            _: &str,
            _: i64,
            _: &Visibility,
        ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
            not_here()
        }
        fn list_tokens(
            &self,
            _: &str,
            _: &Visibility,
            _: &TokenFilter,
            _: Option<i64>,
            _: u64,
        ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send {
            not_here()
        }
        fn revoke_token(
            &self,
            _: &str,
            _: &RevokeTarget,
            _: &Revocation,
            _: &AuditContext,
        ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send {
            not_here()
        }
        fn find_by_hash(
            &self,
            _: &TokenHash,
        ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
            not_here()
        }
        fn touch_last_used(
            &self,
            id: i64,
            now: DateTime<Utc>,
            stale_before: DateTime<Utc>,
        ) -> impl Future<Output = Result<(), StoreError>> + Send {
            assert_eq!(now - stale_before, LAST_USED_GRANULARITY);
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((id, now));
            ready(if id == 13 {
                Err(StoreError::Unavailable("read-only".into()))
            } else {
                Ok(())
            })
        }
        fn list_audit_events(
            &self,
            _: &str,
            _: Option<AuditEventType>,
            _: Option<i64>,
            _: u64,
        ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send {
            not_here()
        }
        fn count_tokens(
            &self,
            _: &str,
            _: DateTime<Utc>,
        ) -> impl Future<Output = Result<TokenCounts, StoreError>> + Send {
            not_here()
        }
        fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
            ready(Ok(()))
        }
        fn rotate_token(
            &self,
            _: &crate::domain::rotation::Rotation,
            _: NewToken,
            _: &AuditContext,
        ) -> impl Future<Output = Result<crate::domain::rotation::RotateOutcome, StoreError>> + Send
        {
            not_here()
        }
        fn token_policy(
            &self,
            _: &str,
        ) -> impl Future<Output = Result<crate::domain::policy::TokenPolicy, StoreError>> + Send
        {
            not_here()
        }
        fn replace_token_policy(
            &self,
            _: &str,
            _: &crate::domain::policy::TokenPolicy,
            _: &AuditContext,
        ) -> impl Future<Output = Result<crate::domain::policy::TokenPolicy, StoreError>> + Send
        {
            not_here()
        }
        fn revoke_by_hash(
            &self,
            _: &TokenHash,
            _: &Revocation,
            _: &AuditContext,
        ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send {
            not_here()
        }
        fn revoke_active(
            &self,
            _: &str,
            _: &[Token],
            _: &Revocation,
            _: &AuditContext,
        ) -> impl Future<Output = Result<Vec<Token>, StoreError>> + Send {
            not_here()
        }
        fn record_revoked_use(
            &self,
            _: i64,
            _: &AuditContext,
            _: DateTime<Utc>,
        ) -> impl Future<Output = Result<Option<Token>, StoreError>> + Send {
            not_here()
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_full_queue_drops_touches_without_waiting_and_the_writer_coalesces_them() {
        let (recorder, writer) = LastUseRecorder::new(4);
        // No writer runs yet: the queue fills, then touches are dropped
        // at once.
        for (token, second) in [(1, 0), (2, 0), (1, 5), (13, 0), (3, 0), (4, 0)] {
            recorder.record(token, at(second));
        }
        assert_eq!(recorder.stats().dropped(), 2);
        let touches = Touches::default();
        drop(recorder);
        writer.run(touches.clone()).await;
        // One write per token, the latest touch, in order of first arrival;
        // the failed write is counted and the others still happen.
        let written = touches
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(written, [(1, at(5)), (2, at(0)), (13, at(0))]);
    }

    #[tokio::test]
    async fn a_failed_write_is_counted_and_the_writer_goes_on() {
        let (recorder, writer) = LastUseRecorder::new(16);
        let stats = recorder.stats.clone();
        let touches = Touches::default();
        let task = tokio::spawn(writer.run(touches.clone()));
        recorder.record(13, at(0));
        recorder.record(7, at(1));
        drop(recorder);
        task.await.unwrap_or_default();
        assert_eq!(stats.failed(), 1);
        assert_eq!(stats.dropped(), 0);
        let written = touches
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        assert_eq!(written, 2);
    }
}
