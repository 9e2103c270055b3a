//! The request-id layer: every HTTP/2 request gets an id (the caller's
//! `x-request-id` if it is printable ASCII of at most 128 characters, else a
//! new UUID v7), a tracing span that every log line of the request inherits
//! (a child of the caller's W3C trace context, its trace id in `trace_id`),
//! the id echoed in the response headers, and one log line when it ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::grpc::status::transport_status;
use crate::request_id::REQUEST_ID_HEADER;
use crate::trace_context::{self, SpanName};

/// The trailer (or trailers-only header) carrying the `google.rpc.Status`.
const DETAILS_HEADER: &str = "grpc-status-details-bin";

/// The hot path, logged at debug when it succeeds.
const AUTHENTICATE_METHOD: &str = "/tokend.v1.TokenService/AuthenticateToken";

/// The request id, in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Observes each finished call (for metrics); the layer calls it with the
/// method path, the gRPC code and the latency.
pub trait CallObserver: Clone + Send + Sync + 'static {
    /// Records one finished call.
    fn observe(&self, method: &str, code: tonic::Code, elapsed: std::time::Duration);
}

/// Installs [`RequestContextService`].
#[derive(Clone, Debug)]
pub struct RequestContextLayer<O> {
    observer: O,
}

impl<O> RequestContextLayer<O> {
    /// A layer reporting finished calls to `observer`.
    pub fn new(observer: O) -> Self {
        RequestContextLayer { observer }
    }
}

impl<S, O: Clone> Layer<S> for RequestContextLayer<O> {
    type Service = RequestContextService<S, O>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestContextService {
            inner,
            observer: self.observer.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RequestContextService<S, O> {
    inner: S,
    observer: O,
}

/// Gives a failure that tonic answered before any handler ran (it carries no
/// `grpc-status-details-bin`) the same details every other failure has.
fn add_missing_details<B>(response: &mut Response<B>, request_id: &str) {
    if response.headers().contains_key(DETAILS_HEADER) {
        return;
    }
    let Some(status) = tonic::Status::from_header_map(response.headers()) else {
        return;
    };
    if status.code() == tonic::Code::Ok {
        return;
    }
    let described = transport_status(status.code(), status.message(), request_id);
    let mut headers = http::HeaderMap::new();
    if described.add_header(&mut headers).is_ok()
        && let Some(details) = headers.remove(DETAILS_HEADER)
    {
        response.headers_mut().insert(DETAILS_HEADER, details);
    }
}

fn grpc_code_of<B>(response: &Response<B>) -> tonic::Code {
    // Unary errors are trailers-only responses, whose grpc-status is in the
    // headers; a response without it finished OK (status in the trailers).
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

impl<S, O, ReqBody, ResBody> Service<Request<ReqBody>> for RequestContextService<S, O>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    O: CallObserver,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let request_id: Arc<str> = Arc::from(crate::request_id::of_headers(request.headers()));
        let header = HeaderValue::from_str(&request_id).ok();
        if let Some(header) = &header {
            request
                .headers_mut()
                .insert(REQUEST_ID_HEADER, header.clone());
        }
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            request_id = %request_id,
            org = tracing::field::Empty,
            caller = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        trace_context::adopt(
            &span,
            request.headers(),
            SpanName {
                name: method.trim_start_matches('/'),
                rpc_system: Some("grpc"),
            },
        );

        // Take the service that was driven to readiness, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let observer = self.observer.clone();
        let future = span.in_scope(|| {
            // Paired with "rpc finished": a started call without its finish
            // line is a call that was accepted and never answered.
            tracing::debug!("rpc started");
            inner.call(request)
        });
        Box::pin(
            async move {
                let mut response = future.await?;
                if let Some(header) = header {
                    response.headers_mut().insert(REQUEST_ID_HEADER, header);
                }
                add_missing_details(&mut response, &request_id);
                let code = grpc_code_of(&response);
                let elapsed = started.elapsed();
                observer.observe(&method, code, elapsed);
                let failure = (code != tonic::Code::Ok).then(|| code.description());
                trace_context::record_outcome(
                    &tracing::Span::current(),
                    "rpc.grpc.status_code",
                    i64::from(code as i32),
                    failure,
                );
                // Code and latency ride on the event, not recorded into the
                // span: every `record` re-serialises the span's fields. A
                // successful AuthenticateToken (the hot path, thousands a
                // second) and health/reflection calls log at debug; metrics
                // count them all.
                let latency_ms = elapsed.as_secs_f64() * 1000.0;
                let routine = code == tonic::Code::Ok && method == AUTHENTICATE_METHOD
                    || !method.starts_with("/tokend.");
                if routine {
                    tracing::debug!(code = ?code, latency_ms, "rpc finished");
                } else {
                    tracing::info!(code = ?code, latency_ms, "rpc finished");
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}
