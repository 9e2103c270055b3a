//! The JWT check on `TokenService` (health and reflection stay open), a
//! tower service around it: it verifies the bearer JWT once per request and
//! leaves the [`Caller`] in the request's extensions for the handlers. A peer
//! that keeps presenting bad or no JWTs is refused (`RESOURCE_EXHAUSTED`
//! `RATE_LIMITED`) before its JWT is even parsed, by the shared
//! [`FailedAuthLimiter`].
//!
//! Every check runs synchronously in `call`; only a JWT naming a `kid` no
//! key ring holds makes the call wait (at most [`UNKNOWN_KID_WAIT`]) for the
//! JWKS URL refresh it asked for, then it is verified once more. So the first
//! call after an identity provider rotates its key succeeds, and the hot path
//! (known keys, HS JWTs) neither allocates nor awaits anything more than the
//! handler does.
//!
//! [`Caller`]: crate::domain::Caller
//! [`UNKNOWN_KID_WAIT`]: crate::identity::UNKNOWN_KID_WAIT

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use http::HeaderMap;
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Request, Status};
use tracing::Instrument;

use crate::admission::caller::CallerRateLimiter;
use crate::admission::failed_auth::{FailedAuthLimiter, HeldAttempt};
use crate::domain::error::CallerRejection;
use crate::domain::lifecycle::UNAVAILABLE_RETRY_AFTER;
use crate::domain::{Caller, Clock, ServiceError};
use crate::grpc::request_context::RequestId;
use crate::grpc::status::to_status;
use crate::identity::{JwtVerifier, PendingRefresh, Unverified, bearer_token};
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
    /// The JWT check using `verifier` at `clock`'s time. Until
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

    /// `inner` (the `TokenService` server) behind this check.
    pub fn around<S>(self, inner: S) -> Authenticated<S> {
        Authenticated {
            check: Arc::new(self),
            inner,
        }
    }
}

/// The request id a handler or the JWT check reports in errors.
pub fn request_id_of<T>(request: &Request<T>) -> String {
    request_id_in(request.extensions())
}

fn request_id_in(extensions: &http::Extensions) -> String {
    extensions
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    bearer_token(headers.get("authorization")?.to_str().ok()?)
}

/// What the synchronous part of the check decided.
enum Decision {
    Admitted(Arc<Caller>),
    Refused(Status),
    /// The JWT names a `kid` no ring holds: wait for the refresh, then
    /// verify once more. The peer's failure stays reserved meanwhile.
    AwaitKey {
        attempt: Option<HeldAttempt>,
        pending: PendingRefresh,
    },
}

impl AuthInterceptor {
    /// Schema, the peer's failed-auth budget, the JWT, the caller's rate, in
    /// that order, without waiting.
    fn decide(&self, headers: &HeaderMap, peer: Option<SocketAddr>, request_id: &str) -> Decision {
        if !self.schema_ready.load(Ordering::Acquire) {
            let error = ServiceError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                source: "database schema not migrated yet".into(),
            };
            return Decision::Refused(to_status(&error, request_id));
        }
        // Admitted, the attempt has already spent one failure of its peer's
        // budget: it is given back below unless the JWT is refused.
        let attempt = match peer {
            None => None,
            Some(address) => match self.failed_auth.admit(address.ip()) {
                Ok(attempt) => Some(attempt),
                Err(throttled) => {
                    let error = ServiceError::RateLimited {
                        retry_after: throttled.retry_after,
                        subject: format!("peer {} (failed authentications)", throttled.peer),
                    };
                    return Decision::Refused(to_status(&error, request_id));
                }
            },
        };
        let check = verify_span();
        let verified = check.in_scope(|| match bearer(headers) {
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
                return Decision::AwaitKey {
                    attempt: attempt.map(|attempt| attempt.hold()),
                    pending,
                };
            }
        };
        let refund = || {
            if let Some(attempt) = attempt {
                attempt.refund();
            }
        };
        match self.conclude(verified, refund, request_id) {
            Ok(caller) => Decision::Admitted(caller),
            Err(status) => Decision::Refused(status),
        }
    }

    /// The JWT's verdict: a verified caller gives its peer's failure back
    /// (`refund`) and must be within its rate; a refused JWT keeps it spent.
    fn conclude(
        &self,
        verified: Result<Arc<Caller>, CallerRejection>,
        refund: impl FnOnce(),
        request_id: &str,
    ) -> Result<Arc<Caller>, Status> {
        match verified {
            Ok(caller) => {
                refund();
                let span = tracing::Span::current();
                span.record("org", caller.org_id.as_str());
                span.record("caller", caller.subject.as_str());
                self.rate_limiter
                    .check(&caller)
                    .map_err(|error| to_status(&error, request_id))?;
                Ok(caller)
            }
            Err(rejection) => Err(to_status(
                &ServiceError::Unauthenticated(rejection),
                request_id,
            )),
        }
    }

    /// The rest of [`Decision::AwaitKey`]: waits for the refresh (bounded),
    /// verifies once more, concludes.
    async fn after_refresh(
        &self,
        headers: &HeaderMap,
        attempt: Option<HeldAttempt>,
        pending: PendingRefresh,
        request_id: &str,
    ) -> Result<Arc<Caller>, Status> {
        let check = verify_span();
        let verified = match bearer(headers) {
            None => Err(CallerRejection::Missing),
            Some(jwt) => {
                self.verifier
                    .verify_after_refresh(jwt, pending, self.clock.as_ref())
                    .instrument(check.clone())
                    .await
            }
        };
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
        self.conclude(verified, refund, request_id)
    }
}

/// Exported, the check is a child span of the call with its outcome (never
/// the JWT); not exported, it costs nothing on the hot path.
fn verify_span() -> tracing::Span {
    if telemetry::exporting() {
        tracing::info_span!("jwt.verify")
    } else {
        tracing::Span::none()
    }
}

/// `TokenService` behind [`AuthInterceptor`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    check: Arc<AuthInterceptor>,
    inner: S,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

type AwaitingKey = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// The answer of [`Authenticated`]: the handler's, a refusal, or (for an
/// unknown `kid` only) the wait for the key and then either.
pub enum AuthFuture<F> {
    /// Admitted at once: the handler's answer.
    Handler(F),
    /// Refused at once; `None` once answered.
    Refused(Option<Status>),
    /// Waiting for a JWKS URL refresh.
    AwaitingKey(AwaitingKey),
}

impl<F> Future for AuthFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AuthFuture::Handler(future) => Pin::new(future).poll(cx),
            AuthFuture::Refused(status) => Poll::Ready(Ok(status
                .take()
                .unwrap_or_else(|| Status::internal("answer polled twice"))
                .into_http())),
            AuthFuture::AwaitingKey(future) => future.as_mut().poll(cx),
        }
    }
}

impl<S> tower::Service<http::Request<Body>> for Authenticated<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Unpin + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let request_id = request_id_in(request.extensions());
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        match self.check.decide(request.headers(), peer, &request_id) {
            Decision::Admitted(caller) => {
                request.extensions_mut().insert(caller);
                AuthFuture::Handler(self.inner.call(request))
            }
            Decision::Refused(status) => AuthFuture::Refused(Some(status)),
            Decision::AwaitKey { attempt, pending } => {
                let check = self.check.clone();
                // Take the service that was driven to readiness, leave a
                // clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                AuthFuture::AwaitingKey(Box::pin(async move {
                    let admitted = check
                        .after_refresh(request.headers(), attempt, pending, &request_id)
                        .await;
                    match admitted {
                        Ok(caller) => {
                            request.extensions_mut().insert(caller);
                            inner.call(request).await
                        }
                        Err(status) => Ok(status.into_http()),
                    }
                }))
            }
        }
    }
}
