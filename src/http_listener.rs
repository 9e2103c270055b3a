//! The HTTP/1.1 listener (metrics and the REST face), with the limits `axum::serve` lacks: a
//! header read timeout (which also closes idle keep-alive connections), a
//! cap on open connections, a request body limit and a per-request timeout.
//! Each request carries its peer's address (`ConnectInfo<SocketAddr>`) for
//! the failed-authentication limit, and runs in its span ([`request_span`]:
//! request id, W3C trace context).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::request_id::{self, REQUEST_ID_HEADER};
use crate::trace_context::{self, SpanName};

/// The listener's limits (flags `--http-*` and `--request-timeout`).
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, counted from
    /// the connection (or the previous response) on: a client that sends
    /// nothing or too little is disconnected.
    pub header_read_timeout: Duration,
    /// Most connections open at once; beyond it new ones wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Largest request body, in bytes: a larger `Content-Length` is refused
    /// with 413 before the handler runs, a longer body fails when read.
    pub max_body_bytes: usize,
    /// Longest a request may take from its headers to its response (408).
    pub request_timeout: Duration,
}

/// The span of one HTTP request: its request id (the caller's
/// `x-request-id` if acceptable, else a new one, put back into the headers
/// so the handler answers with the same), a child of the caller's W3C trace
/// context. The REST face and the metrics endpoints share it.
pub fn request_span<B>(request: &mut http::Request<B>) -> tracing::Span {
    let request_id = request_id::of_headers(request.headers());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    let name = format!("{} {}", request.method(), request.uri().path());
    trace_context::adopt(
        &span,
        request.headers(),
        SpanName {
            name: &name,
            rpc_system: None,
        },
    );
    span
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for open connections to finish their requests (the
/// caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let service = ServiceBuilder::new()
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .service(router);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of descriptors: back off instead of spinning.
                    tracing::warn!(error = %error, "HTTP listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let per_request =
            hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let span = request_span(&mut request);
                let response = service.clone().oneshot(request);
                async move {
                    let response = response.await;
                    if let Ok(response) = &response {
                        let status = response.status();
                        let failure = status.is_server_error().then(|| status.as_str());
                        trace_context::record_outcome(
                            &tracing::Span::current(),
                            "http.response.status_code",
                            i64::from(status.as_u16()),
                            failure,
                        );
                    }
                    response
                }
                .instrument(span)
            });
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), per_request));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // Timeouts and clients that hang up mid-request land here.
                tracing::debug!(peer = %peer, error = %error, "HTTP connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
