//! W3C trace context, the same on both listeners: a request's `traceparent`
//! and `tracestate` (HTTP headers, gRPC metadata) make its span a child of
//! the caller's, and the trace id becomes the span's `trace_id` field, so
//! every log line of the call carries it. Transport-neutral (plain HTTP
//! headers), like [`crate::request_id`].
//!
//! With export off no OpenTelemetry layer is installed: the span then has
//! no OpenTelemetry identity of its own, and `trace_id` is the caller's (or
//! absent when the caller sent none).

use http::HeaderMap;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::telemetry;

/// Reads propagation fields from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// How a request's span is called in a trace viewer.
#[derive(Clone, Copy, Debug)]
pub struct SpanName<'a> {
    /// The span's name, e.g. `tokend.v1.TokenService/CreateToken` or
    /// `GET /metrics`.
    pub name: &'a str,
    /// `rpc.system` (`grpc`) or none for plain HTTP.
    pub rpc_system: Option<&'static str>,
}

/// Makes `span` (a request's span, not yet entered) the child of the trace
/// context in `headers`, names it for OpenTelemetry, and records its trace
/// id in its `trace_id` field. The span must declare `trace_id`,
/// `otel.name` and `otel.kind` (as `tracing::field::Empty`). Malformed
/// headers are ignored: the call starts a trace of its own.
pub fn adopt(span: &Span, headers: &HeaderMap, name: SpanName<'_>) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let caller_trace = parent.span().span_context().trace_id();
    if telemetry::exporting() {
        span.record("otel.name", name.name);
        span.record("otel.kind", "server");
        // Fails only when the span is disabled by the filter.
        let _ = span.set_parent(parent);
        if let Some(system) = name.rpc_system {
            span.set_attribute("rpc.system", system);
        }
    }
    // With export on, the span's own context (the caller's trace, or a new
    // one); with export off, the caller's trace if it sent one.
    let own_trace = span.context().span().span_context().trace_id();
    let trace = [own_trace, caller_trace]
        .into_iter()
        .find(|trace| *trace != TraceId::INVALID);
    if let Some(trace) = trace {
        span.record("trace_id", tracing::field::display(trace));
    }
}

/// Records the outcome of a request on its span: `attribute` (e.g.
/// `rpc.grpc.status_code`) set to `code`, and an error status when it
/// failed. Only exported spans carry these (logs have their own line).
pub fn record_outcome(span: &Span, attribute: &'static str, code: i64, failure: Option<&str>) {
    if !telemetry::exporting() {
        return;
    }
    span.set_attribute(attribute, code);
    if let Some(description) = failure {
        span.set_status(Status::error(description.to_owned()));
    }
}

/// Sets `key` to `value` on `span` when spans are exported (an attribute
/// that logs do not need).
pub fn record_attribute(span: &Span, key: &'static str, value: &'static str) {
    if telemetry::exporting() {
        span.set_attribute(key, value);
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn a_traceparent_is_read_and_a_malformed_one_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert_eq!(
            parent.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        headers.insert("traceparent", HeaderValue::from_static("00-zz-00-01"));
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert!(!parent.span().span_context().is_valid());
    }
}
