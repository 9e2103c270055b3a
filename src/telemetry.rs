//! Logging and tracing set-up: tracing with pretty or JSON output to
//! stderr, filtered by `RUST_LOG`, and, when an OTLP endpoint is set, the
//! same spans exported over OTLP/gRPC. Logs go to stderr so that stdout
//! carries only command output (the JWT printed by `mint-jwt`).
//!
//! Export is off by default: then no OpenTelemetry layer is installed and
//! a call costs its tracing spans only. When on, finished spans go to a
//! batch processor with a bounded queue, exported from its own thread: a
//! full queue drops spans, a slow or dead collector never delays a call.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, FilterFn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::LogFormat;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// The `service.name` of the exported spans.
pub const SERVICE_NAME: &str = "tokend";

/// Spans waiting for export; past it new spans are dropped (never waited
/// for). At a few spans per call this is about a second of a busy replica.
const EXPORT_QUEUE_SPANS: usize = 8192;
/// Spans per export request.
const EXPORT_BATCH_SPANS: usize = 512;
/// How often the queue is sent even when no batch is full.
const EXPORT_INTERVAL: Duration = Duration::from_secs(2);
/// Longest one export may take before it is abandoned (its spans lost).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time the final flush gets at shutdown, even when draining the
/// calls used the whole grace period.
const MIN_FLUSH: Duration = Duration::from_millis(500);

/// The tracer of the statements' spans, set once by [`init`] when spans
/// are exported.
static EXPORT_TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are exported: only then do the listeners name their spans
/// for OpenTelemetry and the store's statements become spans.
pub fn exporting() -> bool {
    EXPORT_TRACER.get().is_some()
}

/// A checked `--otlp-endpoint`: an `http://host:port` URL of an OTLP/gRPC
/// receiver (a collector, an agent on the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpEndpoint(http::Uri);

/// Why an OTLP endpoint is refused.
#[derive(Debug, thiserror::Error)]
pub enum OtlpEndpointError {
    /// Not a URL.
    #[error("not a URL: {0}")]
    Malformed(#[source] http::uri::InvalidUri),
    /// Not `http://host[:port]`.
    #[error(
        "must be http://host:port of an OTLP/gRPC receiver (https is not supported: export to a collector on the node or in the cluster)"
    )]
    Unsupported,
}

impl OtlpEndpoint {
    /// `text` as an endpoint: `http://` with a host; a path is kept as given.
    pub fn parse(text: &str) -> Result<OtlpEndpoint, OtlpEndpointError> {
        let uri: http::Uri = text.trim().parse().map_err(OtlpEndpointError::Malformed)?;
        let host = uri.host().unwrap_or("");
        if uri.scheme_str() != Some("http") || host.is_empty() {
            return Err(OtlpEndpointError::Unsupported);
        }
        Ok(OtlpEndpoint(uri))
    }

    /// The endpoint as a URL.
    pub fn as_str(&self) -> String {
        self.0.to_string()
    }
}

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP exporter: {0}")]
pub struct ExportSetupError(#[source] opentelemetry_otlp::ExporterBuildError);

/// What [`init`] set up and shutdown must close: the tracer provider, if
/// spans are exported.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued, waiting at most `within` (at least
    /// `MIN_FLUSH`); spans of calls still running are lost.
    pub async fn shutdown(self, within: Duration) {
        let Some(provider) = self.provider else {
            return;
        };
        let within = within.max(MIN_FLUSH);
        // The provider's shutdown blocks its caller until the export thread
        // has sent what it holds.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(within)).await;
        match flushed {
            Ok(Ok(())) => tracing::debug!("spans flushed"),
            Ok(Err(error)) => tracing::warn!(error = %error, "flushing spans at shutdown failed"),
            Err(error) => tracing::warn!(error = %error, "flushing spans at shutdown failed"),
        }
    }
}

/// Installs the global subscriber with logging only (`migrate`). `None`
/// picks `pretty` on a terminal and `json` otherwise.
pub fn init_logging(format: Option<LogFormat>) {
    // Without an endpoint nothing can fail.
    let _ = init(format, None);
}

/// Installs the global subscriber: logs in `format` (`None`: `pretty` on a
/// terminal, `json` otherwise) and, with `otlp`, span export. Must run
/// inside the Tokio runtime (the exporter's channel lives there).
pub fn init(
    format: Option<LogFormat>,
    otlp: Option<&OtlpEndpoint>,
) -> Result<Telemetry, ExportSetupError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let format = format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let log_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![log_layer.with_filter(filter).boxed()];
    let export = match otlp {
        None => None,
        Some(endpoint) => {
            let provider = tracer_provider(endpoint)?;
            let tracer = provider.tracer(SERVICE_NAME);
            // tokend's own spans (calls, the JWT check) at info and above,
            // whatever RUST_LOG says about the log; never the libraries'
            // (the exporter's own transport would trace itself).
            let own_spans = FilterFn::new(|metadata| {
                metadata.target().starts_with("tokend") && *metadata.level() <= tracing::Level::INFO
            });
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer.clone())
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_filter(own_spans)
                    .boxed(),
            );
            Some((provider, tracer))
        }
    };
    // A second initialisation (tests starting several servers) is harmless.
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    let provider = match export {
        Some((provider, tracer)) if installed => {
            let _ = EXPORT_TRACER.set(tracer);
            Some(provider)
        }
        Some(_) | None => None,
    };
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: &OtlpEndpoint) -> Result<SdkTracerProvider, ExportSetupError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(ExportSetupError)?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(EXPORT_QUEUE_SPANS)
        .with_max_export_batch_size(EXPORT_BATCH_SPANS)
        .with_scheduled_delay(EXPORT_INTERVAL)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batches)
        .build();
    let resource = Resource::builder_empty()
        .with_service_name(SERVICE_NAME)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build())
}

/// Records one finished database statement as a client span, a child of
/// the current span, that began `elapsed` ago. Only inside a traced call:
/// the background writers' and readiness's statements make no traces of
/// their own. `operation` is the statement's first keyword, never its text
/// (statements carry hashes).
pub fn record_statement(
    operation: &'static str,
    system: &'static str,
    elapsed: Duration,
    failed: bool,
) {
    let Some(tracer) = EXPORT_TRACER.get() else {
        return;
    };
    let parent = tracing::Span::current().context();
    if !parent.span().span_context().is_valid() {
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(elapsed).unwrap_or(end);
    let mut span = tracer
        .span_builder(operation)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .with_attributes([
            KeyValue::new("db.system.name", system),
            KeyValue::new("db.operation.name", operation),
        ])
        .start_with_context(tracer, &parent);
    if failed {
        opentelemetry::trace::Span::set_status(
            &mut span,
            opentelemetry::trace::Status::error("statement failed"),
        );
    }
    opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_plain_http_with_a_host() {
        assert!(OtlpEndpoint::parse("http://collector:4317").is_ok());
        assert!(OtlpEndpoint::parse("http://127.0.0.1:4317/").is_ok());
        for bad in [
            "collector:4317",
            "https://collector:4317",
            "ftp://x",
            "http://",
            "not a url",
        ] {
            assert!(OtlpEndpoint::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
