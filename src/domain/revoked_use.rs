//! Use after revoke: presenting a revoked token's secret writes a
//! `revoked_token_used` audit event in the token's organisation, at most
//! once a minute per token, so that a leaked token shows up.
//!
//! Like `last_used_at`, the event is written off the request path (the
//! last-use queue and writer of [`crate::domain::last_use`] carry it), so
//! it can neither fail nor delay the authentication's answer. Two guards
//! keep a flood of presentations off the database: an in-memory pre-check
//! per replica ([`RevokedUseThrottle`]), and, across replicas, the store's
//! conditional update of the token's `revoked_use_recorded_at` in the same
//! transaction as the event.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::domain::audit::AuditContext;

/// At most one `revoked_token_used` event per token in this span.
pub const REVOKED_USE_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Tokens the pre-check remembers; past this, entries older than
/// [`REVOKED_USE_GRANULARITY`] are dropped, and if none is that old, the
/// pre-check lets the presentation through to the store's own check.
const MAX_REMEMBERED: usize = 10_000;

/// One presentation of a revoked token to record: the token's numeric id
/// and who presented it, under which request, when.
#[derive(Clone, Debug)]
pub struct RevokedUse {
    /// The token's numeric id.
    pub token_id: i64,
    /// The presenter (AuthenticateToken's caller; empty on the metrics
    /// endpoint), the request id and the instant.
    pub context: AuditContext,
}

/// The per-replica pre-check: remembers when each revoked token's use was
/// last handed to the writer.
#[derive(Debug, Default)]
pub struct RevokedUseThrottle {
    handed_over: Mutex<HashMap<i64, DateTime<Utc>>>,
}

impl RevokedUseThrottle {
    /// Whether a use of `token_id` at `now` should be handed to the writer:
    /// not if one was handed over a minute ago or less (the store's rule,
    /// as for `last_used_at`).
    pub fn admit(&self, token_id: i64, now: DateTime<Utc>) -> bool {
        let mut handed_over = self
            .handed_over
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let recent_since = now - REVOKED_USE_GRANULARITY;
        if handed_over
            .get(&token_id)
            .is_some_and(|at| *at >= recent_since)
        {
            return false;
        }
        if handed_over.len() >= MAX_REMEMBERED {
            handed_over.retain(|_, at| *at >= recent_since);
        }
        if handed_over.len() < MAX_REMEMBERED {
            handed_over.insert(token_id, now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default()
    }

    #[test]
    fn the_pre_check_admits_each_token_once_a_minute() {
        let throttle = RevokedUseThrottle::default();
        assert!(throttle.admit(1, at(0)));
        assert!(!throttle.admit(1, at(59)));
        assert!(throttle.admit(2, at(59)));
        assert!(!throttle.admit(1, at(60)));
        assert!(throttle.admit(1, at(61)));
        assert!(!throttle.admit(1, at(121)));
    }

    #[test]
    fn a_full_pre_check_forgets_old_entries_and_never_refuses_a_new_token() {
        let throttle = RevokedUseThrottle::default();
        for id in 0..i64::try_from(MAX_REMEMBERED).unwrap_or(i64::MAX) {
            assert!(throttle.admit(id, at(0)));
        }
        // Full of recent entries: a new token still goes through (the
        // store's check decides), and is not remembered.
        assert!(throttle.admit(-1, at(1)));
        assert!(throttle.admit(-1, at(2)));
        // Over a minute on, the old entries are dropped to make room.
        assert!(throttle.admit(-1, at(61)));
        assert!(!throttle.admit(-1, at(62)));
    }
}
