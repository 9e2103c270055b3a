//! The JWT interceptor on `TokenService` (health and reflection stay open):
//! it verifies the bearer JWT once per request and leaves the [`Caller`] in
//! the request's extensions for the handlers. A peer that keeps presenting
//! bad or no JWTs is refused (`RESOURCE_EXHAUSTED` `RATE_LIMITED`) before
//! its JWT is even parsed, by the shared [`FailedAuthLimiter`].
//!
//! [`Caller`]: crate::domain::Caller

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::admission::caller::CallerRateLimiter;
use crate::admission::failed_auth::FailedAuthLimiter;
use crate::domain::error::CallerRejection;
use crate::domain::lifecycle::UNAVAILABLE_RETRY_AFTER;
use crate::domain::{Clock, ServiceError};
use crate::grpc::request_context::RequestId;
use crate::grpc::status::to_status;
use crate::identity::{JwtVerifier, bearer_token};
use crate::{telemetry, trace_context};

/// Verifies the caller of every `TokenService` call and applies its rate
/// limit.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    verifier: Arc<JwtVerifier>,
    clock: Arc<dyn Clock>,
    schema_ready: Arc<AtomicBool>,
    rate_limiter: Arc<CallerRateLimiter>,
    failed_auth: Arc<FailedAuthLimiter>,
}

impl AuthInterceptor {
    /// An interceptor using `verifier` at `clock`'s time. Until
    /// `schema_ready` is set (migrations applied), calls are refused with
    /// UNAVAILABLE instead of reaching tables that do not exist yet.
    /// `failed_auth` counts each peer's bad or missing JWTs.
    pub fn new(
        verifier: Arc<JwtVerifier>,
        clock: Arc<dyn Clock>,
        schema_ready: Arc<AtomicBool>,
        rate_limiter: Arc<CallerRateLimiter>,
        failed_auth: Arc<FailedAuthLimiter>,
    ) -> Self {
        AuthInterceptor {
            verifier,
            clock,
            schema_ready,
            rate_limiter,
            failed_auth,
        }
    }
}

/// The request id a handler or interceptor reports in errors.
pub fn request_id_of<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn bearer(request: &Request<()>) -> Option<&str> {
    bearer_token(request.metadata().get("authorization")?.to_str().ok()?)
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let request_id = request_id_of(&request);
        if !self.schema_ready.load(Ordering::Acquire) {
            let error = ServiceError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                source: "database schema not migrated yet".into(),
            };
            return Err(to_status(&error, &request_id));
        }
        // Admitted, the attempt has already spent one failure of its peer's
        // budget: it is given back below unless the JWT is refused.
        let attempt = match request.remote_addr() {
            None => None,
            Some(address) => match self.failed_auth.admit(address.ip()) {
                Ok(attempt) => Some(attempt),
                Err(throttled) => {
                    let error = ServiceError::RateLimited {
                        retry_after: throttled.retry_after,
                        subject: format!("peer {} (failed authentications)", throttled.peer),
                    };
                    return Err(to_status(&error, &request_id));
                }
            },
        };
        // Exported, the check is a child span of the call with its outcome
        // (never the JWT); not exported, it costs nothing on the hot path.
        let check = if telemetry::exporting() {
            tracing::info_span!("jwt.verify")
        } else {
            tracing::Span::none()
        };
        let verified = check.in_scope(|| match bearer(&request) {
            None => Err(CallerRejection::Missing),
            Some(jwt) => self.verifier.verify(jwt, self.clock.now().timestamp()),
        });
        let outcome = match &verified {
            Ok(_) => "verified",
            Err(_) => "rejected",
        };
        trace_context::record_attribute(&check, "outcome", outcome);
        drop(check);
        match verified {
            Ok(caller) => {
                if let Some(attempt) = attempt {
                    attempt.refund();
                }
                let span = tracing::Span::current();
                span.record("org", caller.org_id.as_str());
                span.record("caller", caller.subject.as_str());
                self.rate_limiter
                    .check(&caller)
                    .map_err(|error| to_status(&error, &request_id))?;
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(rejection) => {
                // `attempt` is not refunded: the reserved failure stays spent.
                Err(to_status(
                    &ServiceError::Unauthenticated(rejection),
                    &request_id,
                ))
            }
        }
    }
}
