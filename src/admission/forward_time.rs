//! Time for rate limiters that moves only forward: how far the server's
//! wall clock has moved FORWARD since the limiter was made.
//!
//! The server's [`Clock`] is wall time, and wall time can step back (an NTP
//! correction). Counted as is, a step back of an hour would leave every
//! budget spent an hour ago unrefilled for that hour: active callers and
//! peers that failed recently would be refused for the length of the step.
//! So a step back counts as no time, and time counts again from the
//! reading after the step; a step forward refills budgets early, which only
//! admits.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::Clock;

/// See the module documentation.
#[derive(Debug)]
pub struct ForwardTime {
    clock: Arc<dyn Clock>,
    /// The clock's last reading, in nanoseconds since the epoch.
    last_wall: AtomicI64,
    /// The forward movement counted so far, in nanoseconds.
    elapsed: AtomicU64,
}

fn wall_nanos(clock: &dyn Clock) -> i64 {
    clock.now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl ForwardTime {
    /// Forward time of `clock`, zero now.
    pub fn new(clock: Arc<dyn Clock>) -> ForwardTime {
        let start = wall_nanos(clock.as_ref());
        ForwardTime {
            clock,
            last_wall: AtomicI64::new(start),
            elapsed: AtomicU64::new(0),
        }
    }

    /// The forward time now, in nanoseconds.
    ///
    /// Lock-free (it runs on every call): each reading is swapped for the
    /// previous one, so every reading is paired with exactly one earlier
    /// reading and only a positive difference counts. Two readings taken
    /// at the same moment on two threads may be swapped in the other order;
    /// the few nanoseconds between them are then counted twice, which
    /// refills a budget that much early and never refuses anyone.
    pub fn now_nanos(&self) -> u64 {
        let wall = wall_nanos(self.clock.as_ref());
        let last = self.last_wall.swap(wall, Ordering::AcqRel);
        let forward = u64::try_from(wall.saturating_sub(last)).unwrap_or(0);
        let before = self.elapsed.fetch_add(forward, Ordering::AcqRel);
        before.saturating_add(forward)
    }

    /// The forward time now.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::ManualClock;

    #[test]
    fn only_forward_movement_counts() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let time = ForwardTime::new(clock.clone());
        assert_eq!(time.now(), Duration::ZERO);
        clock.advance(TimeDelta::seconds(2));
        assert_eq!(time.now(), Duration::from_secs(2));
        clock.advance(TimeDelta::hours(-1));
        assert_eq!(time.now(), Duration::from_secs(2), "a step back is no time");
        clock.advance(TimeDelta::milliseconds(500));
        assert_eq!(
            time.now(),
            Duration::from_millis(2500),
            "time counts again from the step"
        );
    }
}
