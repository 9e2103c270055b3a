//! Distributed tracing against a real OTLP receiver: a tonic server
//! implementing the collector's `TraceService`, started here on port 0, and
//! the real binary exporting to it (telemetry is process-wide, so each
//! server is its own process). A call carrying a `traceparent` yields
//! spans in that trace under the caller's span, with the JWT check and the
//! statements as children and no secret in any attribute; a dead collector
//! changes nothing for callers; the trace id is in the call's log lines
//! with or without export.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::process::Stdio;

use chrono::Utc;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::Regex;
use tokend::grpc::proto::ListTokensRequest;
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Child;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::http_client::get;
use crate::support::{
    Backend, Binary, HS_SECRET, TestDb, TestResult, authed, mint, ready_channel, scrape_request,
    serve_command, spawn_binary,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const SCRAPE_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const SCRAPE_CALLER_SPAN_ID: &str = "b7ad6b7169203331";

/// A span as received, flattened for assertions.
#[derive(Clone, Debug)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// The W3C `tracestate` the span carries on.
    trace_state: String,
    /// Every attribute, its value as text.
    attributes: Vec<(String, String)>,
    /// The resource's `service.name`.
    service: String,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The collector: keeps every span it is sent.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut kept = self.spans.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    kept.push(flatten(span, &service));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn flatten(span: Span, service: &str) -> Received {
    Received {
        name: span.name,
        trace_id: hex(&span.trace_id),
        span_id: hex(&span.span_id),
        parent_span_id: hex(&span.parent_span_id),
        trace_state: span.trace_state,
        attributes: span
            .attributes
            .iter()
            .map(|a| {
                (
                    a.key.clone(),
                    text(a.value.as_ref().and_then(|v| v.value.as_ref())),
                )
            })
            .collect(),
        service: service.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    /// Starts the receiver on port 0.
    async fn start() -> (Collector, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }

    /// Waits (up to 30 s) until `done` holds for the spans received so far.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans.lock().expect("lock").clone();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the collector never received {what}; it has {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn start_tokend(db: &TestDb, otlp: Option<SocketAddr>) -> Binary {
    let endpoint = otlp.map(|addr| format!("http://{addr}"));
    let mut args = vec![
        "--database-url",
        db.url.as_str(),
        "--jwt-hs256-secret",
        HS_SECRET,
        "--shutdown-grace",
        "5s",
    ];
    if let Some(endpoint) = &endpoint {
        args.extend(["--otlp-endpoint", endpoint.as_str()]);
    }
    spawn_binary(db.dir.path(), &args, "info").await
}

fn admin_jwt() -> String {
    let now = Utc::now().timestamp();
    mint("acme", "alice", &["admin"], &[], now, now + 600)
}

fn traced<T>(message: T, jwt: &str, trace: &str, parent: &str) -> Request<T> {
    let mut request = authed(message, jwt);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{parent}-01").parse().expect("ascii"),
    );
    request
        .metadata_mut()
        .insert("tracestate", "vendor=opaque".parse().expect("ascii"));
    request
}

/// Stops `child` with SIGTERM (its spans are flushed on the way out) and
/// checks that it exits 0.
async fn terminate(child: &mut Child) -> TestResult {
    let pid = child.id().ok_or("no pid")?;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exit status {exit:?}");
    Ok(())
}

/// Stops the binary and returns its JSON log lines.
async fn stop(
    binary: Binary,
) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error + Send + Sync>> {
    let Binary { mut child, log, .. } = binary;
    terminate(&mut child).await?;
    Ok(log
        .await?
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// The log lines of the call to `method`.
fn lines_of<'a>(log: &'a [serde_json::Value], method: &str) -> Vec<&'a serde_json::Value> {
    log.iter()
        .filter(|v| v["span"]["method"] == method)
        .collect()
}

async fn a_traced_call_exports_its_spans_under_the_callers(backend: Backend) -> TestResult {
    let (collector, collector_addr) = Collector::start().await;
    let db = TestDb::new(backend).await;
    let binary = start_tokend(&db, Some(collector_addr)).await;
    let jwt = admin_jwt();
    let mut client = TokenServiceClient::new(binary.ready_channel().await);
    let created = client
        .create_token(traced(
            scrape_request("traced"),
            &jwt,
            TRACE_ID,
            CALLER_SPAN_ID,
        ))
        .await?
        .into_inner();
    let secret = created.secret.clone();
    assert!(!secret.is_empty());
    // The metrics endpoint joins its caller's trace too (a scrape token's
    // authentication reads the database).
    let traceparent = format!("00-{SCRAPE_TRACE_ID}-{SCRAPE_CALLER_SPAN_ID}-01");
    let bearer = format!("Bearer {secret}");
    let scraped = get(
        binary.http_addr,
        "/api/metrics/prometheus",
        &[("traceparent", &traceparent), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(scraped.status, 200, "{}", scraped.body);

    let spans = collector
        .wait_for("the call's spans", |spans| {
            let server = spans
                .iter()
                .find(|s| s.trace_id == TRACE_ID && s.parent_span_id == CALLER_SPAN_ID);
            let scrape = spans.iter().find(|s| {
                s.trace_id == SCRAPE_TRACE_ID && s.parent_span_id == SCRAPE_CALLER_SPAN_ID
            });
            server.zip(scrape).is_some_and(|(server, scrape)| {
                spans
                    .iter()
                    .any(|s| s.parent_span_id == server.span_id && s.name == "INSERT")
                    && spans
                        .iter()
                        .any(|s| s.parent_span_id == server.span_id && s.name == "jwt.verify")
                    && spans
                        .iter()
                        .any(|s| s.parent_span_id == scrape.span_id && s.name == "SELECT")
            })
        })
        .await;
    // Nothing secret anywhere: not the JWT (nor its signature), not the
    // token's secret, nor the bearer header.
    let signature = jwt.rsplit('.').next().expect("signature");
    for span in &spans {
        for (key, value) in &span.attributes {
            for secret_text in [jwt.as_str(), signature, secret.as_str(), "Bearer"] {
                assert!(
                    !value.contains(secret_text),
                    "span {} attribute {key} carries a secret: {value}",
                    span.name
                );
            }
        }
    }

    let server = spans
        .iter()
        .find(|s| s.trace_id == TRACE_ID && s.parent_span_id == CALLER_SPAN_ID)
        .expect("the server span");
    assert_eq!(server.name, "tokend.v1.TokenService/CreateToken");
    assert_eq!(server.service, "tokend");
    assert_eq!(
        server.trace_state, "vendor=opaque",
        "tracestate is carried on"
    );
    assert_eq!(server.attribute("rpc.system"), Some("grpc"));
    assert_eq!(server.attribute("rpc.grpc.status_code"), Some("0"));
    assert_eq!(server.attribute("org"), Some("acme"));
    assert!(
        server
            .attribute("request_id")
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(server.attribute("trace_id"), Some(TRACE_ID));
    let children: Vec<&Received> = spans
        .iter()
        .filter(|s| s.parent_span_id == server.span_id)
        .collect();
    assert!(children.iter().all(|s| s.trace_id == TRACE_ID));
    let jwt_check = children
        .iter()
        .find(|s| s.name == "jwt.verify")
        .expect("JWT span");
    assert_eq!(jwt_check.attribute("outcome"), Some("verified"));
    let insert = children
        .iter()
        .find(|s| s.name == "INSERT")
        .expect("INSERT span");
    let system = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    assert_eq!(insert.attribute("db.system.name"), Some(system));

    let scrape = spans
        .iter()
        .find(|s| s.trace_id == SCRAPE_TRACE_ID && s.parent_span_id == SCRAPE_CALLER_SPAN_ID)
        .expect("the scrape span");
    assert_eq!(scrape.name, "GET /api/metrics/prometheus");
    assert_eq!(scrape.attribute("http.response.status_code"), Some("200"));

    // The spans of the last calls are flushed at shutdown; the log lines of
    // the call carry its trace id.
    let log = stop(binary).await?;
    let lines = lines_of(&log, "/tokend.v1.TokenService/CreateToken");
    assert!(!lines.is_empty(), "no log line of the call");
    for line in lines {
        assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
    }
    Ok(())
}

/// Without export the caller's trace id still reaches the call's log
/// lines; an HTTP request gets its own span with the caller's trace id.
async fn the_trace_id_is_logged_without_export(backend: Backend) -> TestResult {
    let db = TestDb::new(backend).await;
    let binary = start_tokend(&db, None).await;
    let jwt = admin_jwt();
    let mut client = TokenServiceClient::new(binary.ready_channel().await);
    client
        .create_token(traced(
            scrape_request("logged"),
            &jwt,
            TRACE_ID,
            CALLER_SPAN_ID,
        ))
        .await?;
    let untraced = client
        .list_tokens(authed(ListTokensRequest::default(), &jwt))
        .await;
    assert!(untraced.is_ok());
    let log = stop(binary).await?;
    let lines = lines_of(&log, "/tokend.v1.TokenService/CreateToken");
    assert!(!lines.is_empty(), "no log line of the call");
    for line in lines {
        assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
    }
    // A call without a traceparent has no trace id to log (export is off).
    for line in lines_of(&log, "/tokend.v1.TokenService/ListTokens") {
        assert!(line["span"].get("trace_id").is_none(), "{line}");
    }
    Ok(())
}

/// Calls through a tokend exporting to `collector`, which never takes a
/// span: every call succeeds, none waits on the exporter, and shutdown
/// stays within its grace.
async fn calls_go_on_without_the_collector(backend: Backend, collector: SocketAddr) -> TestResult {
    let db = TestDb::new(backend).await;
    let binary = start_tokend(&db, Some(collector)).await;
    let jwt = admin_jwt();
    let mut client = TokenServiceClient::new(binary.ready_channel().await);
    // Generous: 100 calls on a loaded CI machine, no exporter wait in them
    // (one export alone may take 5 s before it is abandoned).
    let calls = async {
        for i in 0..50 {
            client
                .create_token(traced(
                    scrape_request(&format!("t{i}")),
                    &jwt,
                    TRACE_ID,
                    CALLER_SPAN_ID,
                ))
                .await?;
            client
                .list_tokens(authed(ListTokensRequest::default(), &jwt))
                .await?;
        }
        Ok::<_, Status>(())
    };
    tokio::time::timeout(Duration::from_secs(30), calls)
        .await
        .map_err(|_| "calls blocked on the exporter")??;
    let stopping = Instant::now();
    stop(binary).await?;
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    Ok(())
}

/// A collector that is down (a closed port) changes nothing for callers.
async fn a_dead_collector_changes_nothing_for_callers(backend: Backend) -> TestResult {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    calls_go_on_without_the_collector(backend, closed).await
}

/// A collector that accepts connections and never answers (hung, or a
/// black hole) changes nothing for callers either.
async fn a_hung_collector_changes_nothing_for_callers(backend: Backend) -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let hung = listener.local_addr()?;
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let result = calls_go_on_without_the_collector(backend, hung).await;
    holder.abort();
    result
}

/// The pretty log format (a terminal's) carries the trace id in the span
/// context of every line of the call, too. Not a database matter: SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_id_is_in_pretty_log_lines() -> TestResult {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut child = serve_command(db.dir.path())
        .args([
            "--database-url",
            db.url.as_str(),
            "--jwt-hs256-secret",
            HS_SECRET,
        ])
        .args(["--log-format", "pretty"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().ok_or("stderr")?).lines();
    let address = Regex::new(r"grpc_addr\W+(\S+?:\d+)")?;
    let grpc_addr: SocketAddr = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines.next_line().await?.ok_or("tokend exited")?;
            if let Some(found) = address.captures(&line) {
                return Ok::<_, Box<dyn std::error::Error + Send + Sync>>(found[1].parse()?);
            }
        }
    })
    .await??;
    let log = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            kept.push(line);
        }
        kept
    });
    let jwt = admin_jwt();
    let mut client = TokenServiceClient::new(ready_channel(grpc_addr).await);
    client
        .create_token(traced(
            scrape_request("pretty"),
            &jwt,
            TRACE_ID,
            CALLER_SPAN_ID,
        ))
        .await?;
    terminate(&mut child).await?;
    let log = log.await?;
    let ansi = Regex::new(r"\x1b\[[0-9;]*m")?;
    let call: Vec<String> = log
        .iter()
        .map(|line| ansi.replace_all(line, "").into_owned())
        .filter(|line| line.contains("/tokend.v1.TokenService/CreateToken"))
        .collect();
    assert!(!call.is_empty(), "no log line of the call: {log:#?}");
    for line in &call {
        assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");
    }
    Ok(())
}

crate::backend_tests!(
    a_traced_call_exports_its_spans_under_the_callers,
    the_trace_id_is_logged_without_export,
    a_dead_collector_changes_nothing_for_callers,
    a_hung_collector_changes_nothing_for_callers,
);
