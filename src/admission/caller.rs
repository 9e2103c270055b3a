//! Per-caller rate limiting (GCRA, via governor), keyed by the JWT's
//! `org_id` and `sub`. Internal services calling AuthenticateToken are
//! callers like any other, so each calling service has its own budget.
//!
//! Limits are per replica: N replicas admit up to N times the configured
//! rate in total. State is one small entry per recently active caller;
//! [`CallerRateLimiter::forget_idle`] (run periodically) drops callers whose
//! budget is full again, so memory stays bounded by the callers active within
//! one burst window.
//!
//! Time is the [`ForwardTime`] of the server's [`Clock`], as for the
//! failed-authentication limiter, so tests move a manual clock instead of
//! sleeping and a clock stepping back refuses no one.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::admission::forward_time::ForwardTime;
use crate::domain::{Caller, Clock, ServiceError};

/// Who a budget belongs to: `(org_id, sub)`.
type CallerKey = (String, String);

/// governor's view of the server's [`Clock`]: its [`ForwardTime`], so a
/// wall clock stepping back refuses no active caller.
#[derive(Clone, Debug)]
struct ServerTime(Arc<ForwardTime>);

impl ServerTime {
    fn new(clock: Arc<dyn Clock>) -> ServerTime {
        ServerTime(Arc::new(ForwardTime::new(clock)))
    }
}

impl governor::clock::Clock for ServerTime {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}

type KeyedLimiter =
    RateLimiter<CallerKey, DefaultKeyedStateStore<CallerKey>, ServerTime, NoOpMiddleware<Duration>>;

/// The limiter; `None` inside when limiting is off.
pub struct CallerRateLimiter {
    limiter: Option<KeyedLimiter>,
    clock: ServerTime,
}

impl std::fmt::Debug for CallerRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerRateLimiter")
            .field("enabled", &self.limiter.is_some())
            .field("tracked_callers", &self.tracked_callers())
            .finish()
    }
}

impl CallerRateLimiter {
    /// `per_second` calls per second with bursts of `burst`, at `clock`'s
    /// time; `per_second == 0` turns limiting off. A zero burst is read as a
    /// burst of one.
    pub fn new(per_second: u32, burst: u32, clock: Arc<dyn Clock>) -> CallerRateLimiter {
        let clock = ServerTime::new(clock);
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::new(
                Quota::per_second(rate).allow_burst(burst),
                DefaultKeyedStateStore::default(),
                clock.clone(),
            )
        });
        CallerRateLimiter { limiter, clock }
    }

    /// Admits one call of `caller` or says how long to wait.
    pub fn check(&self, caller: &Caller) -> Result<(), ServiceError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = (caller.org_id.clone(), caller.subject.clone());
        limiter
            .check_key(&key)
            .map_err(|not_until| ServiceError::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                subject: format!("{}/{}", caller.org_id, caller.subject),
            })
    }

    /// Drops the state of callers whose budget has refilled.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many callers have state (for tests and metrics).
    pub fn tracked_callers(&self) -> usize {
        self.limiter.as_ref().map_or(0, RateLimiter::len)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::domain::ManualClock;

    fn caller(subject: &str) -> Caller {
        Caller {
            org_id: "acme".to_owned(),
            subject: subject.to_owned(),
            roles: Default::default(),
            permissions: Default::default(),
        }
    }

    #[test]
    fn a_caller_spends_its_burst_then_waits_for_the_manual_clock() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let limiter = CallerRateLimiter::new(10, 3, clock.clone());
        let busy = caller("busy");
        for _ in 0..3 {
            assert!(limiter.check(&busy).is_ok());
        }
        match limiter.check(&busy) {
            Err(ServiceError::RateLimited {
                retry_after,
                subject,
            }) => {
                assert_eq!(retry_after, Duration::from_millis(100));
                assert_eq!(subject, "acme/busy");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        assert!(
            limiter.check(&caller("other")).is_ok(),
            "budgets are per caller"
        );
        clock.advance(TimeDelta::milliseconds(99));
        assert!(
            limiter.check(&busy).is_err(),
            "no refill before the clock moves enough"
        );
        clock.advance(TimeDelta::milliseconds(1));
        assert!(limiter.check(&busy).is_ok(), "one call refilled");
    }

    #[test]
    fn a_clock_stepping_back_refuses_no_one_and_refills_no_one() {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let limiter = CallerRateLimiter::new(10, 3, clock.clone());
        let caller = caller("steady");
        assert!(limiter.check(&caller).is_ok());
        assert!(limiter.check(&caller).is_ok());
        clock.advance(TimeDelta::hours(-1));
        assert!(limiter.check(&caller).is_ok(), "the last call of the burst");
        assert!(limiter.check(&caller).is_err(), "the burst is spent");
        clock.advance(TimeDelta::milliseconds(100));
        assert!(
            limiter.check(&caller).is_ok(),
            "time counts again from the step"
        );
    }
}
