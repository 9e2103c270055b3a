//! The one admission of both faces: the gRPC JWT check and the REST handler
//! ask [`Admission`] with the request's `Authorization` header value and
//! its peer's address, and get the caller or the core's [`ServiceError`],
//! which each face then writes in its own wire format.
//!
//! The steps, in this order:
//!
//! 1. the schema is migrated (else UNAVAILABLE, retry after
//!    [`UNAVAILABLE_RETRY_AFTER`]): no request reaches tables that do not
//!    exist yet;
//! 2. the peer is within its budget of failed authentications
//!    ([`FailedAuthLimiter`]): admitted, the attempt reserves one failure,
//!    so a peer that keeps failing is refused before its JWT is parsed;
//! 3. the bearer JWT verifies ([`JwtVerifier`]): a verified caller gives
//!    the reserved failure back, a refused JWT keeps it spent;
//! 4. the caller is within its rate ([`CallerRateLimiter`]).
//!
//! [`Admission::decide`] runs them all without waiting, allocating nothing
//! on the common path (known keys, HS JWTs, a cached verification). Only a
//! JWT naming a `kid` no key ring holds returns [`Decision::AwaitKey`]: the
//! face awaits [`Admission::finish`], which waits (at most
//! [`UNKNOWN_KID_WAIT`]) for the JWKS URL refresh the JWT asked for and
//! verifies once more, so the first call after an identity provider rotates
//! its key succeeds.
//!
//! Exported traces get a `jwt.verify` span (child of the request's span)
//! with its outcome, never the JWT; the verified caller's `org` and
//! `caller` are recorded on the request's span.
//!
//! [`UNKNOWN_KID_WAIT`]: crate::identity::UNKNOWN_KID_WAIT

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::Instrument;

use crate::admission::caller::CallerRateLimiter;
use crate::admission::failed_auth::{Attempt, FailedAuthLimiter, HeldAttempt};
use crate::domain::error::CallerRejection;
use crate::domain::lifecycle::UNAVAILABLE_RETRY_AFTER;
use crate::domain::{Caller, Clock, ServiceError};
use crate::identity::{JwtVerifier, PendingRefresh, Unverified, bearer_token};
use crate::{telemetry, trace_context};

/// See the module documentation. Both listeners share one (`Arc`).
#[derive(Debug)]
pub struct Admission {
    verifier: Arc<JwtVerifier>,
    clock: Arc<dyn Clock>,
    schema_ready: Arc<AtomicBool>,
    callers: Arc<CallerRateLimiter>,
    failed_auth: Arc<FailedAuthLimiter>,
}

/// What [`Admission::decide`] decided without waiting.
#[derive(Debug)]
#[must_use = "a decision admits, refuses or asks to await the key"]
pub enum Decision {
    /// The request may go on as this caller.
    Admitted(Arc<Caller>),
    /// The request is refused with this error.
    Refused(ServiceError),
    /// The JWT names a `kid` no ring holds: await [`Admission::finish`].
    AwaitKey(KeyWait),
}

/// A JWT waiting for its key. Its peer's failure stays reserved meanwhile;
/// dropped (the request abandoned), the failure stays spent.
#[must_use = "dropping a key wait counts it as a failed authentication"]
pub struct KeyWait {
    /// The presented JWT, verified again once the refresh answered.
    jwt: String,
    pending: PendingRefresh,
    attempt: Option<HeldAttempt>,
}

// By hand: the JWT is a credential and is never printed.
impl std::fmt::Debug for KeyWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyWait")
            .field("pending", &self.pending)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// Admission verifying JWTs with `verifier` at `clock`'s time. Until
    /// `schema_ready` is set (migrations applied), requests are refused as
    /// unavailable. `callers` is the per-caller rate limit, `failed_auth`
    /// each peer's budget of failed authentications.
    pub fn new(
        verifier: Arc<JwtVerifier>,
        clock: Arc<dyn Clock>,
        schema_ready: Arc<AtomicBool>,
        callers: Arc<CallerRateLimiter>,
        failed_auth: Arc<FailedAuthLimiter>,
    ) -> Admission {
        Admission {
            verifier,
            clock,
            schema_ready,
            callers,
            failed_auth,
        }
    }

    /// The schema, the peer's failed-auth budget, the JWT, the caller's
    /// rate, in that order, without waiting. `authorization` is the
    /// request's `Authorization` header value (if it has one that is text),
    /// `peer` its remote address (if the listener knows it).
    pub fn decide(&self, authorization: Option<&str>, peer: Option<IpAddr>) -> Decision {
        if !self.schema_ready.load(Ordering::Acquire) {
            return Decision::Refused(ServiceError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                source: "database schema not migrated yet".into(),
            });
        }
        // Admitted, the attempt has already spent one failure of its peer's
        // budget: it is given back below unless the JWT is refused.
        let attempt = match peer.map(|address| self.failed_auth.admit(address)) {
            None => None,
            Some(Ok(attempt)) => Some(attempt),
            Some(Err(throttled)) => {
                return Decision::Refused(ServiceError::RateLimited {
                    retry_after: throttled.retry_after,
                    subject: format!("peer {} (failed authentications)", throttled.peer),
                });
            }
        };
        let jwt = authorization.and_then(bearer_token);
        let check = verify_span();
        let verified = check.in_scope(|| match jwt {
            None => Err(Unverified::Refused(CallerRejection::Missing)),
            Some(jwt) => self
                .verifier
                .verify_or_refresh(jwt, self.clock.now().timestamp()),
        });
        let outcome = match &verified {
            Ok(_) => "verified",
            Err(Unverified::Refused(_)) => "rejected",
            Err(Unverified::KeyUnknown(_)) => "key_unknown",
        };
        trace_context::record_attribute(&check, "outcome", outcome);
        drop(check);
        let verified = match verified {
            Ok(caller) => Ok(caller),
            Err(Unverified::Refused(rejection)) => Err(rejection),
            Err(Unverified::KeyUnknown(pending)) => {
                return Decision::AwaitKey(KeyWait {
                    // Only a presented JWT can name a `kid`.
                    jwt: jwt.unwrap_or_default().to_owned(),
                    pending,
                    attempt: attempt.map(Attempt::hold),
                });
            }
        };
        let refund = || {
            if let Some(attempt) = attempt {
                attempt.refund();
            }
        };
        match self.conclude(verified, refund) {
            Ok(caller) => Decision::Admitted(caller),
            Err(error) => Decision::Refused(error),
        }
    }

    /// The rest of [`Decision::AwaitKey`]: waits for the refresh (bounded),
    /// verifies once more, and concludes as [`Self::decide`] does.
    pub async fn finish(&self, wait: KeyWait) -> Result<Arc<Caller>, ServiceError> {
        let KeyWait {
            jwt,
            pending,
            attempt,
        } = wait;
        let check = verify_span();
        let verified = self
            .verifier
            .verify_after_refresh(&jwt, pending, self.clock.as_ref())
            .instrument(check.clone())
            .await;
        let outcome = match &verified {
            Ok(_) => "verified",
            Err(_) => "rejected",
        };
        trace_context::record_attribute(&check, "outcome", outcome);
        drop(check);
        let refund = || {
            if let Some(attempt) = attempt {
                self.failed_auth.refund_held(attempt);
            }
        };
        self.conclude(verified, refund)
    }

    /// [`Self::decide`], then [`Self::finish`] if it must await the key: for
    /// a face that awaits anyway.
    pub async fn admit(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Arc<Caller>, ServiceError> {
        match self.decide(authorization, peer) {
            Decision::Admitted(caller) => Ok(caller),
            Decision::Refused(error) => Err(error),
            Decision::AwaitKey(wait) => self.finish(wait).await,
        }
    }

    /// The JWT's verdict: a verified caller gives its peer's failure back
    /// (`refund`) and must be within its rate; a refused JWT keeps it spent.
    fn conclude(
        &self,
        verified: Result<Arc<Caller>, CallerRejection>,
        refund: impl FnOnce(),
    ) -> Result<Arc<Caller>, ServiceError> {
        match verified {
            Ok(caller) => {
                refund();
                // Both fields in one record: each record makes the JSON log
                // format parse and re-serialise the span's fields, which cost
                // 4 % of an AuthenticateToken call when done per field.
                tracing::record_all!(
                    tracing::Span::current(),
                    org = caller.org_id.as_str(),
                    caller = caller.subject.as_str()
                );
                self.callers.check(&caller)?;
                Ok(caller)
            }
            Err(rejection) => Err(ServiceError::Unauthenticated(rejection)),
        }
    }
}

/// Exported, the check is a child span of the request's with its outcome
/// (never the JWT); not exported, it costs nothing on the hot path.
fn verify_span() -> tracing::Span {
    if telemetry::exporting() {
        tracing::info_span!("jwt.verify")
    } else {
        tracing::Span::none()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use chrono::TimeDelta;

    use super::*;
    use crate::domain::ManualClock;
    use crate::identity::jwks_url::{JwksUrl, RemoteKeyRing};
    use crate::identity::{HsSecret, MintRequest, mint_hs256};

    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// An admission with an HS secret and a JWKS URL that never answers,
    /// the schema ready, `calls` calls per second (burst as many) per
    /// caller, `failures` failed authentications per minute (burst as
    /// many) per peer.
    struct Fixture {
        admission: Admission,
        clock: Arc<ManualClock>,
        schema_ready: Arc<AtomicBool>,
        failed_auth: Arc<FailedAuthLimiter>,
    }

    fn fixture(calls: u32, failures: u32) -> Result<Fixture, Box<dyn std::error::Error>> {
        let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
        let remote = RemoteKeyRing::new(JwksUrl::parse("http://127.0.0.1:9/jwks.json")?)?;
        let verifier = JwtVerifier::new(Some(&HsSecret::new(SECRET)?), None, None, None)
            .with_remote_keys(Some(Arc::new(remote)));
        let schema_ready = Arc::new(AtomicBool::new(true));
        let callers = Arc::new(CallerRateLimiter::new(calls, calls, clock.clone()));
        let failed_auth = Arc::new(FailedAuthLimiter::new(failures, failures, clock.clone()));
        let admission = Admission::new(
            Arc::new(verifier),
            clock.clone(),
            schema_ready.clone(),
            callers,
            failed_auth.clone(),
        );
        Ok(Fixture {
            admission,
            clock,
            schema_ready,
            failed_auth,
        })
    }

    impl Fixture {
        /// `Bearer` and a JWT for `sub` in `acme`, valid for an hour.
        fn bearer(&self, sub: &str) -> Result<String, Box<dyn std::error::Error>> {
            let now = self.clock.now().timestamp();
            let claims = MintRequest {
                sub: sub.to_owned(),
                org_id: "acme".to_owned(),
                roles: vec![],
                permissions: vec![],
                iat: now,
                exp: now + 3600,
                iss: None,
                aud: None,
            };
            Ok(format!(
                "Bearer {}",
                mint_hs256(&HsSecret::new(SECRET)?, &claims)?
            ))
        }

        /// `Bearer` and a JWT naming a `kid` no ring holds.
        fn bearer_of_unknown_kid(&self) -> Result<(String, String), Box<dyn std::error::Error>> {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some("rotated".to_owned());
            let jwt = jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "alice", "org_id": "acme"}),
                &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            )?;
            Ok((format!("Bearer {jwt}"), jwt))
        }

        fn decide(&self, authorization: Option<&str>) -> Result<Arc<Caller>, ServiceError> {
            match self.admission.decide(authorization, Some(PEER)) {
                Decision::Admitted(caller) => Ok(caller),
                Decision::Refused(error) => Err(error),
                Decision::AwaitKey(wait) => panic!("no key to wait for: {wait:?}"),
            }
        }
    }

    /// Why the JWT was refused, if it was.
    fn rejection(result: Result<Arc<Caller>, ServiceError>) -> Option<CallerRejection> {
        match result {
            Err(ServiceError::Unauthenticated(rejection)) => Some(rejection),
            _ => None,
        }
    }

    fn throttled_peer(result: Result<Arc<Caller>, ServiceError>) -> bool {
        matches!(
            result,
            Err(ServiceError::RateLimited { subject, .. })
                if subject == "peer 192.0.2.7 (failed authentications)"
        )
    }

    #[test]
    fn the_schema_is_checked_before_the_budget_is_spent() -> TestResult {
        let fixture = fixture(100, 1)?;
        fixture.schema_ready.store(false, Ordering::Release);
        for _ in 0..3 {
            let refused = fixture.decide(Some("Bearer not-a-jwt"));
            assert!(
                matches!(refused, Err(ServiceError::Unavailable { retry_after, .. })
                    if retry_after == UNAVAILABLE_RETRY_AFTER),
                "{refused:?}"
            );
        }
        assert_eq!(fixture.failed_auth.tracked_peers(), 0, "nothing spent");
        fixture.schema_ready.store(true, Ordering::Release);
        assert!(fixture.decide(Some(&fixture.bearer("alice")?)).is_ok());
        Ok(())
    }

    #[test]
    fn a_peer_over_its_budget_is_refused_before_its_jwt_is_verified() -> TestResult {
        let fixture = fixture(100, 2)?;
        for _ in 0..2 {
            assert_eq!(
                rejection(fixture.decide(None)),
                Some(CallerRejection::Missing)
            );
        }
        let good = fixture.bearer("alice")?;
        assert!(
            throttled_peer(fixture.decide(Some(&good))),
            "a good JWT is not even looked at"
        );
        let (unknown_kid, _) = fixture.bearer_of_unknown_kid()?;
        assert!(
            throttled_peer(fixture.decide(Some(&unknown_kid))),
            "nor is a JWT that would wait for its key"
        );
        assert!(
            matches!(
                fixture.admission.decide(Some(&good), None),
                Decision::Admitted(_)
            ),
            "a request of no known peer spends no budget"
        );
        fixture.clock.advance(TimeDelta::seconds(30));
        assert!(fixture.decide(Some(&good)).is_ok(), "one failure refilled");
        Ok(())
    }

    #[test]
    fn a_verified_caller_gives_the_reserved_failure_back() -> TestResult {
        let fixture = fixture(100, 1)?;
        let good = fixture.bearer("alice")?;
        for _ in 0..20 {
            let caller = fixture.decide(Some(&good))?;
            assert_eq!(caller.subject, "alice");
            assert_eq!(fixture.failed_auth.tracked_peers(), 0);
        }
        Ok(())
    }

    #[test]
    fn a_refused_jwt_keeps_the_reserved_failure_spent() -> TestResult {
        let fixture = fixture(100, 2)?;
        assert_eq!(
            rejection(fixture.decide(Some("Bearer not-a-jwt"))),
            Some(CallerRejection::Invalid)
        );
        assert_eq!(fixture.failed_auth.tracked_peers(), 1);
        assert_eq!(
            rejection(fixture.decide(Some("Basic YWxpY2U6c2VjcmV0"))),
            Some(CallerRejection::Missing)
        );
        assert!(throttled_peer(
            fixture.decide(Some(&fixture.bearer("alice")?))
        ));
        Ok(())
    }

    #[test]
    fn the_rate_limit_applies_to_verified_callers_and_spends_no_failure() -> TestResult {
        let fixture = fixture(1, 1)?;
        let alice = fixture.bearer("alice")?;
        assert!(fixture.decide(Some(&alice)).is_ok());
        let limited = fixture.decide(Some(&alice));
        assert!(
            matches!(
                &limited,
                Err(ServiceError::RateLimited { subject, retry_after })
                    if subject == "acme/alice" && *retry_after == Duration::from_secs(1)
            ),
            "{limited:?}"
        );
        assert_eq!(
            fixture.failed_auth.tracked_peers(),
            0,
            "a verified caller over its rate did not fail authentication"
        );
        assert!(fixture.decide(Some(&fixture.bearer("bob")?)).is_ok());
        assert!(
            !throttled_peer(fixture.decide(Some("Bearer not-a-jwt"))),
            "the peer's budget is whole"
        );
        Ok(())
    }

    #[test]
    fn an_unknown_kid_awaits_the_key_holding_the_reserved_failure() -> TestResult {
        let fixture = fixture(100, 1)?;
        let (bearer, jwt) = fixture.bearer_of_unknown_kid()?;
        let wait = match fixture.admission.decide(Some(&bearer), Some(PEER)) {
            Decision::AwaitKey(wait) => wait,
            other => panic!("expected AwaitKey, got {other:?}"),
        };
        assert!(
            !format!("{wait:?}").contains(&jwt),
            "the JWT is never printed"
        );
        assert_eq!(fixture.failed_auth.tracked_peers(), 1, "held while waiting");
        drop(wait);
        assert!(
            throttled_peer(fixture.decide(Some(&fixture.bearer("alice")?))),
            "an abandoned wait stays spent"
        );
        Ok(())
    }
}
