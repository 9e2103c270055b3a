//! A per-peer limit on FAILED authentications, shared by both listeners: a
//! bad or missing JWT on gRPC, a 401 from the tenant metrics endpoint. Every
//! request first asks whether its peer is still within budget; only a
//! failure spends from it. So a peer that keeps failing is refused before
//! any JWT is verified or any secret is looked up in the database, while a
//! busy peer that authenticates correctly is never slowed down.
//!
//! Admission RESERVES: [`FailedAuthLimiter::admit`] spends one failure at
//! once and the request refunds it when it did not fail authentication.
//! Were the failure spent only once known (after the database lookup), N
//! simultaneous bad requests from one peer would all pass admission and
//! all reach the database; reserved, at most `burst` of them do.
//!
//! Time is [`ForwardTime`]: a wall clock stepping back neither refuses
//! peers for the length of the step nor keeps their entries from being
//! forgotten.
//!
//! This is transport policy (it knows addresses, not callers), so it lives
//! outside the core. The algorithm is GCRA: a peer may fail `burst` times in
//! a row and then once every `60 s / per_minute`. governor implements GCRA
//! too, but it cannot give back what a request spent; here an attempt that
//! did not fail is refunded, which is why the few lines of GCRA are written
//! out.
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

use crate::admission::forward_time::ForwardTime;
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
    interval: u64,
    /// Nanoseconds of failures that may be "ahead of time": (burst - 1)
    /// intervals.
    tolerance: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FailedAuthLimiter {
    /// `None` when limiting is off.
    budget: Option<Budget>,
    /// Theoretical arrival time (GCRA) per peer, in nanoseconds of `time`.
    peers: Mutex<HashMap<Peer, u64>>,
    time: ForwardTime,
}

/// One admitted attempt, which has already spent one failure of its peer's
/// budget: concurrent attempts from one peer cannot all pass before the
/// first of them fails. Dropped, the failure stays spent (also when the
/// request is abandoned halfway); [`Attempt::refund`] gives it back when the
/// attempt did not fail authentication.
#[derive(Debug)]
#[must_use = "dropping an attempt counts it as a failed authentication"]
pub struct Attempt<'a> {
    /// `None` when nothing was spent (limiting off, or the peer untracked).
    spent: Option<(&'a FailedAuthLimiter, Peer)>,
}

impl Attempt<'_> {
    /// The attempt did not fail authentication: its reserved failure is
    /// given back (never below a full budget).
    pub fn refund(self) {
        if let Some((limiter, peer)) = self.spent {
            limiter.refund(peer);
        }
    }

    /// The same attempt without the borrow, to carry across an await (a JWT
    /// waiting for its key); [`FailedAuthLimiter::refund_held`] gives it
    /// back.
    pub fn hold(self) -> HeldAttempt {
        HeldAttempt {
            peer: self.spent.map(|(_, peer)| peer),
        }
    }
}

/// An [`Attempt`] carried across an await. Dropped, the failure stays spent.
#[derive(Debug)]
#[must_use = "dropping an attempt counts it as a failed authentication"]
pub struct HeldAttempt {
    /// `None` when nothing was spent.
    peer: Option<Peer>,
}

impl FailedAuthLimiter {
    /// `per_minute` failures a minute per peer after a burst of `burst`;
    /// `per_minute == 0` turns limiting off. A zero burst is read as one.
    pub fn new(per_minute: u32, burst: u32, clock: Arc<dyn Clock>) -> FailedAuthLimiter {
        let budget = (per_minute > 0).then(|| {
            let interval = 60_000_000_000 / u64::from(per_minute);
            Budget {
                interval,
                tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
            }
        });
        FailedAuthLimiter {
            budget,
            peers: Mutex::new(HashMap::new()),
            time: ForwardTime::new(clock),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<Peer, u64>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (every update is one insert or remove), so a poisoned lock is
        // still usable.
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits an attempt to authenticate from `address`, spending one
    /// failure of its budget until the attempt is refunded, or says how long
    /// the peer must wait.
    pub fn admit(&self, address: IpAddr) -> Result<Attempt<'_>, Throttled> {
        let Some(budget) = self.budget else {
            return Ok(Attempt { spent: None });
        };
        let peer = Peer::of(address);
        let now = self.time.now_nanos();
        let mut peers = self.peers();
        if let Some(&arrival) = peers.get(&peer) {
            let allowed_from = arrival.saturating_sub(budget.tolerance);
            if now < allowed_from {
                return Err(Throttled {
                    peer,
                    retry_after: Duration::from_nanos(allowed_from - now),
                });
            }
        } else if peers.len() >= MAX_TRACKED_PEERS {
            peers.retain(|_, arrival| *arrival > now);
            if peers.len() >= MAX_TRACKED_PEERS {
                tracing::warn!(
                    limit = MAX_TRACKED_PEERS,
                    "too many peers failing authentication at once: a new one goes untracked"
                );
                return Ok(Attempt { spent: None });
            }
        }
        let arrival = peers.entry(peer).or_insert(now);
        *arrival = (*arrival).max(now).saturating_add(budget.interval);
        Ok(Attempt {
            spent: Some((self, peer)),
        })
    }

    /// [`Attempt::refund`] for a held attempt.
    pub fn refund_held(&self, held: HeldAttempt) {
        if let Some(peer) = held.peer {
            self.refund(peer);
        }
    }

    fn refund(&self, peer: Peer) {
        let Some(budget) = self.budget else {
            return;
        };
        let now = self.time.now_nanos();
        let mut peers = self.peers();
        if let Some(arrival) = peers.get_mut(&peer) {
            *arrival = arrival.saturating_sub(budget.interval).max(now);
            if *arrival <= now {
                // A full budget needs no entry.
                peers.remove(&peer);
            }
        }
    }

    /// Drops the peers whose budget is full again.
    pub fn forget_idle(&self) {
        let now = self.time.now_nanos();
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

    /// One attempt from `address` that fails authentication.
    fn fail(limiter: &FailedAuthLimiter, address: IpAddr) {
        // Not refunded: the reserved failure stays spent.
        let _failed = limiter.admit(address).expect("admitted");
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn a_peer_may_fail_burst_times_then_waits_for_the_refill() {
        let (limiter, clock) = limiter(60, 3);
        for _ in 0..3 {
            fail(&limiter, A);
        }
        let throttled = limiter.admit(A).expect_err("over budget");
        assert_eq!(throttled.retry_after, Duration::from_secs(1));
        assert!(limiter.admit(B).is_ok(), "another peer keeps its budget");
        clock.advance(chrono::TimeDelta::milliseconds(999));
        assert!(limiter.admit(A).is_err());
        clock.advance(chrono::TimeDelta::milliseconds(1));
        fail(&limiter, A);
        assert!(limiter.admit(A).is_err(), "one failure refilled, and spent");
    }

    #[test]
    fn idle_peers_are_forgotten_and_off_tracks_nothing() {
        let (limiter, clock) = limiter(60, 2);
        fail(&limiter, A);
        fail(&limiter, B);
        assert_eq!(limiter.tracked_peers(), 2);
        limiter.forget_idle();
        assert_eq!(limiter.tracked_peers(), 2, "budgets not yet refilled");
        clock.advance(chrono::TimeDelta::seconds(1));
        limiter.forget_idle();
        assert_eq!(limiter.tracked_peers(), 0);

        let (off, _) = self::limiter(0, 2);
        for _ in 0..100 {
            fail(&off, A);
        }
        assert!(off.admit(A).is_ok());
        assert_eq!(off.tracked_peers(), 0);
    }

    #[test]
    fn a_clock_stepping_back_refuses_no_peer_longer_and_idle_peers_are_still_forgotten() {
        let (limiter, clock) = limiter(60, 3);
        fail(&limiter, A);
        clock.advance(chrono::TimeDelta::hours(-1));
        assert!(
            limiter.admit(A).is_ok(),
            "two failures of the burst are left"
        );
        clock.advance(chrono::TimeDelta::seconds(2));
        limiter.forget_idle();
        assert_eq!(
            limiter.tracked_peers(),
            0,
            "one second refilled the one failure"
        );
    }

    #[test]
    fn simultaneous_attempts_reserve_and_refunded_ones_leave_nothing_spent() {
        let (limiter, _clock) = limiter(60, 3);
        let attempts: Vec<_> = (0..3)
            .map(|_| limiter.admit(A).expect("in burst"))
            .collect();
        assert!(
            limiter.admit(A).is_err(),
            "three attempts in flight hold the whole burst"
        );
        for attempt in attempts {
            attempt.refund();
        }
        assert_eq!(limiter.tracked_peers(), 0, "a full budget is not tracked");
        for _ in 0..100 {
            limiter.admit(A).expect("successes spend nothing").refund();
        }
        assert_eq!(limiter.tracked_peers(), 0);
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
