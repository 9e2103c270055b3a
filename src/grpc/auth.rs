//! The JWT check on `TokenService` (health and reflection stay open), a
//! tower service around it: it asks the shared [`Admission`] once per
//! request (schema ready, the peer's failed-auth budget, the bearer JWT, the
//! caller's rate), leaves the [`Caller`] in the request's extensions for the
//! handlers, and answers a refusal with the core error's status.
//!
//! Admission decides synchronously in `call`; only a JWT naming a `kid` no
//! key ring holds makes the call wait (at most [`UNKNOWN_KID_WAIT`]) for the
//! JWKS URL refresh it asked for. So the hot path (known keys, HS JWTs)
//! neither allocates nor awaits anything more than the handler does.
//!
//! [`Caller`]: crate::domain::Caller
//! [`UNKNOWN_KID_WAIT`]: crate::identity::UNKNOWN_KID_WAIT

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Request, Status};

use crate::admission::{Admission, Decision};
use crate::grpc::request_context::RequestId;
use crate::grpc::status::to_status;

/// Admits every `TokenService` call through the shared [`Admission`].
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    admission: Arc<Admission>,
}

impl AuthInterceptor {
    /// The JWT check of `admission`, which the REST face shares.
    pub fn new(admission: Arc<Admission>) -> Self {
        AuthInterceptor { admission }
    }

    /// `inner` (the `TokenService` server) behind this check.
    pub fn around<S>(self, inner: S) -> Authenticated<S> {
        Authenticated {
            admission: self.admission,
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

/// The `authorization` header's value, if it is text.
fn authorization(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(http::header::AUTHORIZATION)?.to_str().ok()
}

/// `TokenService` behind [`AuthInterceptor`].
#[derive(Clone, Debug)]
pub struct Authenticated<S> {
    admission: Arc<Admission>,
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
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .map(|address| address.ip());
        match self
            .admission
            .decide(authorization(request.headers()), peer)
        {
            Decision::Admitted(caller) => {
                request.extensions_mut().insert(caller);
                AuthFuture::Handler(self.inner.call(request))
            }
            Decision::Refused(error) => {
                let request_id = request_id_in(request.extensions());
                AuthFuture::Refused(Some(to_status(&error, &request_id)))
            }
            Decision::AwaitKey(wait) => {
                let admission = self.admission.clone();
                // Take the service that was driven to readiness, leave a
                // clone.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                AuthFuture::AwaitingKey(Box::pin(async move {
                    match admission.finish(wait).await {
                        Ok(caller) => {
                            request.extensions_mut().insert(caller);
                            inner.call(request).await
                        }
                        Err(error) => {
                            let request_id = request_id_in(request.extensions());
                            Ok(to_status(&error, &request_id).into_http())
                        }
                    }
                }))
            }
        }
    }
}
