//! A per-peer limit on FAILED authentications, shared by both listeners: a
//! bad or missing JWT on gRPC, a 401 from the tenant metrics endpoint. Every
//! request first asks whether its peer is still within budget; only a
//! failure spends from it. So a peer that keeps failing is refused before
//! any JWT is verified or any secret is looked up in the database, while a
//! busy peer that authenticates correctly is never slowed down.
//!
//! This is transport policy (it knows addresses, not callers), so it lives
//! outside the core. The algorithm is GCRA: a peer may fail `burst` times in
//! a row and then once every `60 s / per_minute`. governor implements GCRA
//! too, but it can only test a budget by spending from it; here the test
//! ("may this peer try?") and the spending ("it failed") are separate
//! steps, which is why the few lines of GCRA are written out.
//!
//! Memory: one entry (an address and a time) per peer that failed within
//! the last refill period; [`FailedAuthLimiter::forget_idle`] (run
//! periodically) drops peers whose budget is full again, and at most
//! [`MAX_TRACKED_PEERS`] are kept. IPv6 peers count per /64, the block one
//! host usually gets, so a single host cannot mint fresh budgets by changing
//! the low bits of its address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::domain::Clock;

/// Most peers tracked at once. Beyond it, a new failing peer is not
/// tracked until idle ones are forgotten (each entry is a few dozen bytes,
/// so the table stays below a few MiB).
pub const MAX_TRACKED_PEERS: usize = 100_000;

/// Who a budget belongs to: an IPv4 address, or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer(IpAddr);

impl Peer {
    /// The budget holder of `address` (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn of(address: IpAddr) -> Peer {
        match address {
            IpAddr::V4(v4) => Peer(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Peer(IpAddr::V4(v4)),
                None => {
                    let prefix = v6.to_bits() & (u128::MAX << 64);
                    Peer(IpAddr::V6(Ipv6Addr::from_bits(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// A peer over its failure budget: how long until it may try again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// The peer.
    pub peer: Peer,
    /// Until its next attempt is admitted.
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Budget {
    /// Nanoseconds of one refill (60 s / per minute).
    interval: i64,
    /// Nanoseconds of failures that may be "ahead of time": (burst - 1)
    /// intervals.
    tolerance: i64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FailedAuthLimiter {
    /// `None` when limiting is off.
    budget: Option<Budget>,
    /// Theoretical arrival time (GCRA) per peer, in nanoseconds since the
    /// epoch of `clock`.
    peers: Mutex<HashMap<Peer, i64>>,
    clock: Arc<dyn Clock>,
}

impl FailedAuthLimiter {
    /// `per_minute` failures a minute per peer after a burst of `burst`;
    /// `per_minute == 0` turns limiting off. A zero burst is read as one.
    pub fn new(per_minute: u32, burst: u32, clock: Arc<dyn Clock>) -> FailedAuthLimiter {
        let budget = (per_minute > 0).then(|| {
            let interval = 60_000_000_000 / i64::from(per_minute);
            Budget {
                interval,
                tolerance: interval.saturating_mul(i64::from(burst.max(1) - 1)),
            }
        });
        FailedAuthLimiter {
            budget,
            peers: Mutex::new(HashMap::new()),
            clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock
            .now()
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX / 2)
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<Peer, i64>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is one insert), so a poisoned lock is still usable.
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request from `address` may try to authenticate now.
    /// Spends nothing.
    pub fn admit(&self, address: IpAddr) -> Result<(), Throttled> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        let peer = Peer::of(address);
        let Some(arrival) = self.peers().get(&peer).copied() else {
            return Ok(());
        };
        let allowed_from = arrival - budget.tolerance;
        let now = self.now();
        if now >= allowed_from {
            Ok(())
        } else {
            let wait = u64::try_from(allowed_from - now).unwrap_or(0);
            Err(Throttled {
                peer,
                retry_after: Duration::from_nanos(wait),
            })
        }
    }

    /// Spends one failure of `address`'s budget.
    pub fn record_failure(&self, address: IpAddr) {
        let Some(budget) = self.budget else {
            return;
        };
        let peer = Peer::of(address);
        let now = self.now();
        let mut peers = self.peers();
        if peers.len() >= MAX_TRACKED_PEERS && !peers.contains_key(&peer) {
            peers.retain(|_, arrival| *arrival > now);
            if peers.len() >= MAX_TRACKED_PEERS {
                tracing::warn!(
                    limit = MAX_TRACKED_PEERS,
                    "too many peers failing authentication at once: a new one goes untracked"
                );
                return;
            }
        }
        let arrival = peers.entry(peer).or_insert(now);
        *arrival = (*arrival).max(now).saturating_add(budget.interval);
    }

    /// Drops the peers whose budget is full again.
    pub fn forget_idle(&self) {
        let now = self.now();
        let mut peers = self.peers();
        peers.retain(|_, arrival| *arrival > now);
        peers.shrink_to_fit();
    }

    /// How many peers have state (for tests).
    pub fn tracked_peers(&self) -> usize {
        self.peers().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ManualClock;

    fn limiter(per_minute: u32, burst: u32) -> (FailedAuthLimiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        (
            FailedAuthLimiter::new(per_minute, burst, clock.clone()),
            clock,
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_peer_may_fail_burst_times_then_waits_for_the_refill() {
        let (limiter, clock) = limiter(60, 3);
        for _ in 0..3 {
            assert_eq!(limiter.admit(A), Ok(()));
            limiter.record_failure(A);
        }
        let throttled = limiter.admit(A).expect_err("over budget");
        assert_eq!(throttled.retry_after, Duration::from_secs(1));
        assert_eq!(limiter.admit(B), Ok(()), "another peer keeps its budget");
        clock.advance(chrono::TimeDelta::milliseconds(999));
        assert!(limiter.admit(A).is_err());
        clock.advance(chrono::TimeDelta::milliseconds(1));
        assert_eq!(limiter.admit(A), Ok(()), "one failure refilled");
        limiter.record_failure(A);
        assert!(limiter.admit(A).is_err());
    }

    #[test]
    fn idle_peers_are_forgotten_and_off_tracks_nothing() {
        let (limiter, clock) = limiter(60, 2);
        limiter.record_failure(A);
        limiter.record_failure(B);
        assert_eq!(limiter.tracked_peers(), 2);
        limiter.forget_idle();
        assert_eq!(limiter.tracked_peers(), 2, "budgets not yet refilled");
        clock.advance(chrono::TimeDelta::seconds(1));
        limiter.forget_idle();
        assert_eq!(limiter.tracked_peers(), 0);

        let (off, _) = self::limiter(0, 2);
        for _ in 0..100 {
            off.record_failure(A);
        }
        assert_eq!(off.admit(A), Ok(()));
        assert_eq!(off.tracked_peers(), 0);
    }

    #[test]
    fn ipv6_peers_share_a_budget_per_64_and_mapped_ipv4_is_ipv4() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or(A);
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or(A);
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap_or(A);
        assert_eq!(Peer::of(one), Peer::of(same_64));
        assert_ne!(Peer::of(one), Peer::of(other_64));
        assert_eq!(Peer::of(one).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap_or(B);
        assert_eq!(Peer::of(mapped), Peer::of(A));
    }
}
