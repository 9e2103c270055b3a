//! Per-caller rate limiting (GCRA, via governor), keyed by the JWT's
//! `org_id` and `sub`. Internal services calling AuthenticateToken are
//! callers like any other, so each calling service has its own budget.
//!
//! Limits are per replica: N replicas admit up to N times the configured
//! rate in total. State is one small entry per recently active caller;
//! [`CallerRateLimiter::forget_idle`] (run periodically) drops callers whose
//! budget is full again, so memory stays bounded by the callers active within
//! one burst window.

use std::num::NonZeroU32;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::domain::{Caller, ServiceError};

/// The limiter; `None` inside when limiting is off.
#[derive(Debug)]
pub struct CallerRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<(String, String)>>,
    clock: DefaultClock,
}

impl CallerRateLimiter {
    /// `per_second` calls per second with bursts of `burst`; `per_second == 0`
    /// turns limiting off. A zero burst is read as a burst of one.
    pub fn new(per_second: u32, burst: u32) -> CallerRateLimiter {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        CallerRateLimiter {
            limiter,
            clock: DefaultClock::default(),
        }
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
