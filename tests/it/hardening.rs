//! Issue 8's hardening cases that the other modules lack: broken gRPC frames
//! on raw HTTP/2 connections, 1 ms deadlines on writes, 10 000 cancelled
//! calls against file descriptors and the pool, a flood beside a quiet
//! caller, rate-limiter memory, enumeration by id, oversized secrets and
//! messages, SQLite busy, and properties (proptest) of the secret format,
//! page tokens, validators, revoke and pagination. `docs/security.md` maps
//! issue 8's catalogue onto these and the other modules' tests.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use tokend::domain::error::{FieldViolation, MAX_ECHOED_VALUE_CHARS};
use tokend::domain::pagination::{self, Cursor, InvalidPageToken};
use tokend::domain::rate_limit::CallerRateLimiter;
use tokend::domain::secret::{MAX_SECRET_LEN, MalformedSecret};
use tokend::domain::validation::{self, KindInput, Violations};
use tokend::domain::{Caller, TokenSecret};
use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::grpc::proto::{
    AuthenticateTokenRequest, CreateTokenRequest, GetTokenRequest, ListTokensRequest,
    RevokePersonalAccessTokenRequest, RevokeScrapeTokenRequest, Token, TokenKind,
};

use crate::backend_tests;
use crate::support::{
    Backend, HS_SECRET, TestResult, TestServer, all_tokens, assert_tokens_and_events_agree, authed,
    details, expect_error, mint, wait_for_status,
};

backend_tests!(
    a_1ms_deadline_on_writes_fails_cleanly_and_tokens_and_events_agree,
    ten_thousand_cancelled_calls_leave_descriptors_and_pool_at_baseline,
    foreign_and_missing_ids_are_indistinguishable,
    revoke_is_idempotent_and_a_foreign_org_is_never_mutated_randomized,
    pagination_visits_every_row_once_randomized,
);

fn scrape(name: &str) -> CreateTokenRequest {
    CreateTokenRequest {
        kind: TokenKind::Scrape as i32,
        name: name.to_owned(),
        ..Default::default()
    }
}

/// A create request of `kind`, with whatever that kind requires.
fn create_of(kind: TokenKind, name: &str, slot: u32) -> CreateTokenRequest {
    let mut request = CreateTokenRequest {
        kind: kind as i32,
        name: name.to_owned(),
        ..Default::default()
    };
    match kind {
        TokenKind::ServiceAccount => request.service_account_slug = format!("sa-{}", slot % 3),
        TokenKind::WorkspaceApiKey => request.workspace_id = format!("g-{:010x}", slot % 3),
        TokenKind::Unspecified | TokenKind::Scrape | TokenKind::PersonalAccess => {}
    }
    request
}

const KINDS: [TokenKind; 4] = [
    TokenKind::Scrape,
    TokenKind::PersonalAccess,
    TokenKind::ServiceAccount,
    TokenKind::WorkspaceApiKey,
];

// ---------------------------------------------------------------------------
// 1. Garbage, truncated and corrupted gRPC frames over raw HTTP/2.
// ---------------------------------------------------------------------------

/// The real binary on port 0 with every stderr line kept, so a panic (which
/// the runtime would otherwise survive silently) shows up as a line.
struct Binary {
    child: tokio::process::Child,
    grpc_addr: SocketAddr,
    stderr: tokio::task::JoinHandle<Vec<String>>,
}

async fn spawn_tokend(dir: &std::path::Path, extra: &[&str]) -> Binary {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokend"))
        .args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--jwt-hs256-secret",
            HS_SECRET,
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tokend");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut kept = Vec::new();
    let grpc_addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            kept.push(line);
            if value["message"] == "tokend listening" {
                return value["grpc_addr"]
                    .as_str()
                    .expect("grpc_addr")
                    .parse()
                    .expect("an address");
            }
        }
        panic!("tokend exited before listening: {kept:?}");
    })
    .await
    .expect("tokend listens");
    let stderr = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.push(line);
        }
        kept
    });
    Binary {
        child,
        grpc_addr,
        stderr,
    }
}

/// A gRPC message frame: compression flag, big-endian length, payload.
fn grpc_frame(flag: u8, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![flag];
    frame.extend_from_slice(&declared_len.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn framed(payload: &[u8]) -> Vec<u8> {
    grpc_frame(0, u32::try_from(payload.len()).expect("small"), payload)
}

/// How the client ends its side of the stream.
#[derive(Clone, Copy, Debug)]
enum Finish {
    /// DATA with END_STREAM.
    End,
    /// The body, then RST_STREAM(CANCEL) from the client.
    Reset,
    /// The body, and then nothing: the stream stays open.
    Hang,
}

/// What the server did with one raw stream. (Some fields only show in the
/// failure messages, through `Debug`.)
#[derive(Debug)]
#[allow(dead_code)]
enum Outcome {
    /// A gRPC status (from headers or trailers), whether it carried
    /// `grpc-status-details-bin`, and its message.
    Status {
        code: Code,
        details: bool,
        message: String,
    },
    /// The stream (or connection) was reset.
    Reset(h2::Reason),
    /// The connection went away without a reason.
    Closed(String),
}

fn status_of(headers: &http::HeaderMap) -> Option<Outcome> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(Outcome::Status {
        code: Code::from_i32(code),
        details: headers.contains_key("grpc-status-details-bin"),
        message: headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    })
}

fn h2_outcome(error: &h2::Error) -> Outcome {
    match error.reason() {
        Some(reason) => Outcome::Reset(reason),
        None => Outcome::Closed(error.to_string()),
    }
}

async fn read_outcome(response: h2::client::ResponseFuture) -> Outcome {
    let response = match response.await {
        Ok(response) => response,
        Err(error) => return h2_outcome(&error),
    };
    let (parts, mut body) = response.into_parts();
    if let Some(outcome) = status_of(&parts.headers) {
        return outcome;
    }
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(error) => return h2_outcome(&error),
        }
    }
    match body.trailers().await {
        Ok(Some(trailers)) => {
            status_of(&trailers).unwrap_or_else(|| Outcome::Closed("no grpc-status".into()))
        }
        Ok(None) => Outcome::Closed("no trailers".into()),
        Err(error) => h2_outcome(&error),
    }
}

/// Sends one hand-made request body on a fresh HTTP/2 connection.
async fn raw_call(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    finish: Finish,
) -> Outcome {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let (response, mut stream) = client
        .send_request(request.body(()).expect("request"), false)
        .expect("send headers");
    if !body.is_empty() || matches!(finish, Finish::End) {
        stream
            .send_data(Bytes::from(body), matches!(finish, Finish::End))
            .expect("send data");
    }
    if matches!(finish, Finish::Reset) {
        stream.send_reset(h2::Reason::CANCEL);
    }
    let outcome = tokio::time::timeout(Duration::from_secs(15), read_outcome(response))
        .await
        .unwrap_or_else(|_| Outcome::Closed("no answer within 15 s".into()));
    drop(stream);
    drop(client);
    driver.abort();
    outcome
}

/// Writes raw bytes on a new TCP connection and reads until the server
/// closes it. Returns the bytes read; panics if the server keeps it open.
async fn raw_connection(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // The server may close before reading everything: a failed write is fine.
    let _ = tcp.write_all(bytes).await;
    let mut read = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 4096];
        loop {
            match tcp.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a broken connection open: {bytes:02x?}"
    );
    read
}

/// Writes raw bytes on a new connection and collects the frames read
/// within one second (the connection stays open).
async fn answered_on_raw_connection(addr: SocketAddr, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    let mut read = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            read.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    frames(&read)
}

/// A HEADERS frame (END_HEADERS) opening a ListTokens call on `stream`,
/// HPACK-encoded by hand with literals and static-table names.
fn headers_frame(stream: u32) -> Vec<u8> {
    let path = b"/tokend.v1.TokenService/ListTokens";
    let mut block = vec![0x83, 0x86, 0x04, u8::try_from(path.len()).expect("short")];
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x0f, 0x10, 16]);
    block.extend_from_slice(b"application/grpc");
    block.extend_from_slice(&[0x00, 2]);
    block.extend_from_slice(b"te");
    block.push(8);
    block.extend_from_slice(b"trailers");
    let len = u32::try_from(block.len()).expect("short").to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], 0x01, 0x04];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&block);
    frame
}

/// RST_STREAM(CANCEL) for `stream`.
fn reset_frame(stream: u32) -> Vec<u8> {
    let mut frame = vec![0, 0, 4, 0x03, 0];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(&8u32.to_be_bytes());
    frame
}

/// The frames in a server's byte stream: (type, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut found = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let end = (9 + len).min(bytes.len());
        found.push((bytes[3], bytes[9..end].to_vec()));
        bytes = &bytes[end..];
    }
    found
}

/// The error code of the first GOAWAY among `bytes`' frames.
fn goaway_code(bytes: &[u8]) -> Option<u32> {
    frames(bytes)
        .into_iter()
        .find(|(kind, payload)| *kind == 7 && payload.len() >= 8)
        .map(|(_, payload)| u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]))
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_grpc_frames_are_refused_and_other_clients_are_served() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut binary = spawn_tokend(dir.path(), &["--request-timeout", "1s"]).await;
    let addr = binary.grpc_addr;
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    wait_for_status(
        &channel,
        "tokend.v1.TokenService",
        ServingStatus::Serving,
        Duration::from_secs(20),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let jwt = mint(
        "acme",
        "prober",
        &["admin"],
        &["tokens_introspect"],
        now,
        now + 600,
    );
    let bearer = vec![("authorization", format!("Bearer {jwt}"))];

    // Another client is served all along: it must never see an error.
    let bystander = {
        let channel = channel.clone();
        let jwt = jwt.clone();
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut client = TokenServiceClient::new(channel);
            let mut served = 0u32;
            while !*stop.borrow_and_update() {
                client
                    .list_tokens(authed(ListTokensRequest::default(), &jwt))
                    .await
                    .map_err(|s| format!("the bystander was refused: {s:?}"))?;
                served += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<u32, String>(served)
        });
        (stop_tx, task)
    };

    let list = "/tokend.v1.TokenService/ListTokens";
    let authenticate = "/tokend.v1.TokenService/AuthenticateToken";
    // A non-UTF-8 `secret` (field 1, length 4).
    let non_utf8_secret = [0x0a, 0x04, 0xff, 0xfe, 0xfd, 0xfc];
    let valid_list = ListTokensRequest::default().encode_to_vec();
    let mut valid_auth = AuthenticateTokenRequest {
        secret: "tkd_pat_abc".into(),
    }
    .encode_to_vec();
    // A field whose declared length runs past the message.
    let mut overrunning = valid_auth.clone();
    overrunning[1] = 0x7f;
    valid_auth.truncate(valid_auth.len() - 3);

    // (what, path, body, finish, the gRPC code it must get; None: any
    // non-OK status or a reset). Codes are those docs/errors.md documents.
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Finish, Option<Code>);
    let cases: Vec<Case> = vec![
        ("empty body", list, Vec::new(), Finish::End, None),
        (
            "3 of 5 prefix bytes",
            list,
            vec![0, 0, 0],
            Finish::End,
            None,
        ),
        (
            "frame declares 100 bytes, carries 10",
            list,
            grpc_frame(0, 100, &[0x08; 10]),
            Finish::End,
            None,
        ),
        (
            "compressed flag without grpc-encoding",
            list,
            grpc_frame(1, 2, &[0x20, 0x01]),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "compression flag 7",
            list,
            grpc_frame(7, 0, &[]),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "length 4 GiB - 1",
            list,
            grpc_frame(0, u32::MAX, &[0; 16]),
            Finish::End,
            Some(Code::OutOfRange),
        ),
        (
            "garbage protobuf",
            list,
            framed(&[0xff; 24]),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "wire type 7",
            list,
            framed(&[0x0f, 0x00]),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "non-UTF-8 secret",
            authenticate,
            framed(&non_utf8_secret),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "field length past the end",
            authenticate,
            framed(&overrunning),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "message cut short",
            authenticate,
            framed(&valid_auth),
            Finish::End,
            Some(Code::Internal),
        ),
        (
            "two messages on a unary call",
            list,
            [framed(&valid_list), framed(&valid_list)].concat(),
            Finish::End,
            None,
        ),
        (
            "half a frame, then RST_STREAM",
            list,
            grpc_frame(0, 50, &[0x08; 5]),
            Finish::Reset,
            None,
        ),
        (
            "half a frame, then silence (request timeout 1 s)",
            list,
            grpc_frame(0, 50, &[0x08; 5]),
            Finish::Hang,
            Some(Code::Cancelled),
        ),
    ];
    for (what, path, body, finish, want) in cases {
        let outcome = raw_call(addr, path, &bearer, body, finish).await;
        eprintln!("{what}: {outcome:?}");
        match (&outcome, want) {
            (Outcome::Status { code, details, .. }, Some(want)) => {
                assert_eq!(*code, want, "{what}: {outcome:?}");
                // Every failure tonic answers before a handler gets tokend's
                // details; only the server timeout sits outside that layer.
                assert!(*details || want == Code::Cancelled, "{what}: no details");
            }
            (Outcome::Status { code, .. }, None) => {
                // Two messages on a unary call: tonic reads the first one.
                if what != "two messages on a unary call" {
                    assert_ne!(*code, Code::Ok, "{what}: {outcome:?}");
                }
            }
            (Outcome::Reset(_), None) => {}
            _ => panic!("{what}: unexpected {outcome:?}"),
        }
    }
    // Without a JWT the broken body is never looked at.
    let outcome = raw_call(addr, list, &[], framed(&[0xff; 24]), Finish::End).await;
    assert!(
        matches!(
            outcome,
            Outcome::Status {
                code: Code::Unauthenticated,
                details: true,
                ..
            }
        ),
        "{outcome:?}"
    );

    // HTTP/2 rapid reset (CVE-2023-44487): 200 calls, each opened and
    // cancelled at once, in one write. Past 20 reset streams not yet
    // accepted the server answers GOAWAY ENHANCE_YOUR_CALM and closes.
    let mut rapid = [PREFACE, &EMPTY_SETTINGS].concat();
    for stream in (1..400u32).step_by(2) {
        rapid.extend_from_slice(&headers_frame(stream));
        rapid.extend_from_slice(&reset_frame(stream));
    }
    let read = raw_connection(addr, &rapid).await;
    assert_eq!(
        goaway_code(&read),
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM for a rapid reset"
    );
    // The same calls, not reset, are answered (without a JWT): the
    // hand-made HEADERS are valid, so the GOAWAY above is for the resets.
    let mut calm = [PREFACE, &EMPTY_SETTINGS].concat();
    calm.extend_from_slice(&headers_frame(1));
    calm.extend_from_slice(&[0, 0, 5, 0, 0x01, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    let answered = answered_on_raw_connection(addr, &calm).await;
    assert!(
        answered.iter().any(|(kind, _)| *kind == 1),
        "HEADERS answered: {answered:?}"
    );

    // Broken connections: each is closed by the server.
    let garbage = raw_connection(addr, b"\x16\x03\x01\x02\x00garbage, not HTTP/2 at all").await;
    assert!(
        frames(&garbage).iter().all(|(kind, _)| *kind != 1),
        "no HEADERS for garbage"
    );
    raw_connection(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    // Valid preface, then HEADERS with an undecodable HPACK block.
    let mut bad_hpack = [PREFACE, &EMPTY_SETTINGS].concat();
    bad_hpack.extend_from_slice(&[0, 0, 8, 1, 0x04, 0, 0, 0, 1]);
    bad_hpack.extend_from_slice(&[0xff; 8]);
    let read = raw_connection(addr, &bad_hpack).await;
    // h2 reports it as PROTOCOL_ERROR (0x1) or COMPRESSION_ERROR (0x9).
    assert!(
        matches!(goaway_code(&read), Some(0x1 | 0x9)),
        "GOAWAY for bad HPACK: {:?}",
        goaway_code(&read)
    );
    // A frame announcing 16 MiB, over the 16 KiB maximum frame size.
    let mut oversized = [PREFACE, &EMPTY_SETTINGS].concat();
    oversized.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]);
    oversized.extend_from_slice(&[0; 64]);
    let read = raw_connection(addr, &oversized).await;
    assert_eq!(
        goaway_code(&read),
        Some(0x6),
        "GOAWAY FRAME_SIZE_ERROR for a huge frame"
    );
    // DATA on stream 0 is a connection error.
    let mut data_on_zero = [PREFACE, &EMPTY_SETTINGS].concat();
    data_on_zero.extend_from_slice(&[0, 0, 4, 0, 0x01, 0, 0, 0, 0, 1, 2, 3, 4]);
    let read = raw_connection(addr, &data_on_zero).await;
    assert_eq!(
        goaway_code(&read),
        Some(0x1),
        "GOAWAY PROTOCOL_ERROR for DATA on 0"
    );
    // The preface cut in half, then the client goes away.
    drop(
        TcpStream::connect(addr)
            .await?
            .write_all(&PREFACE[..10])
            .await,
    );

    let (stop, task) = bystander;
    stop.send(true)?;
    let served = task.await??;
    assert!(served > 0, "the bystander was served");
    // Still serving: health and a fresh connection.
    let fresh = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    TokenServiceClient::new(fresh)
        .list_tokens(authed(ListTokensRequest::default(), &jwt))
        .await?;
    std::process::Command::new("kill")
        .args(["-TERM", &binary.child.id().expect("pid").to_string()])
        .status()?;
    let exit = tokio::time::timeout(Duration::from_secs(10), binary.child.wait()).await??;
    assert_eq!(exit.code(), Some(0), "exit {exit:?}");
    let stderr = binary.stderr.await?;
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "tokend panicked: {stderr:#?}"
    );
    Ok(())
}

/// An HS256 JWT with `header`, signed with `key`.
fn hs256_jwt(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", b64(signature.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_header_urls_are_never_fetched_and_embedded_keys_never_trusted() -> TestResult {
    use serde_json::json;
    let server = TestServer::start(Backend::Sqlite).await;
    // Where jku / x5u point: counts every connection attempt.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/keys", trap.local_addr()?);
    let (hits_tx, mut hits) = tokio::sync::mpsc::unbounded_channel();
    let trap_task = tokio::spawn(async move {
        while let Ok((stream, _)) = trap.accept().await {
            let _ = hits_tx.send(());
            drop(stream);
        }
    });
    let now = tokend::domain::Clock::now(server.clock.as_ref()).timestamp();
    let claims = json!({"sub": "alice", "org_id": "acme", "roles": ["admin"], "exp": now + 600});
    let attacker_key = b"attacker-chosen-secret-0123456789abcdef";
    let list = |jwt: String| {
        let mut client = server.client();
        async move {
            client
                .list_tokens(authed(ListTokensRequest::default(), &jwt))
                .await
        }
    };
    // Signed with the configured key: the URL headers change nothing, and
    // `typ` is not checked (tokend's keys sign nothing but caller JWTs).
    for header in [
        json!({"alg": "HS256", "jku": url, "x5u": url}),
        json!({"alg": "HS256", "kid": url, "jku": url}),
        json!({"alg": "HS256", "typ": "at+jwt"}),
        json!({"alg": "HS256", "typ": "definitely-not-a-jwt"}),
    ] {
        list(hs256_jwt(&header, &claims, HS_SECRET.as_bytes()))
            .await
            .map_err(|s| format!("{header}: {s:?}"))?;
    }
    // Signed with a key the token itself offers or points to: refused.
    use base64::Engine;
    let offered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(attacker_key);
    for header in [
        json!({"alg": "HS256", "jwk": {"kty": "oct", "k": offered}, "jku": url, "x5u": url}),
        json!({"alg": "HS256", "jku": url}),
        json!({"alg": "HS256", "x5u": url, "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ] {
        expect_error(
            list(hs256_jwt(&header, &claims, attacker_key)).await,
            Code::Unauthenticated,
            "JWT_INVALID",
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        hits.try_recv().is_err(),
        "tokend fetched a URL from a JWT header"
    );
    trap_task.abort();
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. grpc-timeout of 1 ms on creates and revokes.
// ---------------------------------------------------------------------------

async fn a_1ms_deadline_on_writes_fails_cleanly_and_tokens_and_events_agree(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let admin = server.admin("acme");
    let mut ids = Vec::new();
    for i in 0..20 {
        let created = server
            .client()
            .create_token(authed(scrape(&format!("pre{i}")), &admin))
            .await?;
        ids.push(created.into_inner().token.expect("token").id);
    }
    // Ten at a time on a connection of their own: enough to queue past 1 ms,
    // few enough that the resets stay under HTTP/2's rapid-reset limit (20
    // reset streams not yet accepted per connection; beyond it the server
    // sends GOAWAY ENHANCE_YOUR_CALM and every call on that connection
    // fails: see broken_grpc_frames_… and ten_thousand_cancelled_calls_…).
    let (mut created, mut revoked, mut timed_out) = (Vec::new(), Vec::new(), 0);
    for batch in 0..20usize {
        let channel = Endpoint::from_shared(format!("http://{}", server.grpc_addr))?
            .connect()
            .await?;
        let mut calls = Vec::new();
        for i in batch * 10..batch * 10 + 10 {
            let mut client = TokenServiceClient::new(channel.clone());
            let admin = admin.clone();
            let id = ids[i % ids.len()];
            calls.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    let mut request = authed(scrape(&format!("d{i}")), &admin);
                    request.set_timeout(Duration::from_millis(1));
                    (
                        true,
                        client
                            .create_token(request)
                            .await
                            .map(|r| r.into_inner().token.expect("token")),
                    )
                } else {
                    let mut request = authed(
                        RevokeScrapeTokenRequest {
                            id,
                            reason: "deadline".into(),
                        },
                        &admin,
                    );
                    request.set_timeout(Duration::from_millis(1));
                    (
                        false,
                        client
                            .revoke_scrape_token(request)
                            .await
                            .map(|r| r.into_inner().token.expect("token")),
                    )
                }
            }));
        }
        for call in calls {
            match call.await? {
                (true, Ok(token)) => created.push(token.id),
                (false, Ok(token)) => revoked.push(token.id),
                (_, Err(status)) => {
                    assert!(
                        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
                        "a deadline ends a call with DEADLINE_EXCEEDED or CANCELLED: {status:?}"
                    );
                    timed_out += 1;
                }
            }
        }
    }
    eprintln!(
        "1 ms deadline: {} creates and {} revokes answered OK, {timed_out} cut",
        created.len(),
        revoked.len()
    );
    assert!(timed_out > 0, "the 1 ms deadline was hit");
    // Let handlers of cancelled calls unwind, then check nothing is torn.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_tokens_and_events_agree(&server, &admin).await?;
    let tokens = all_tokens(&server, &admin).await?;
    for id in &created {
        assert!(tokens.iter().any(|t| t.id == *id), "created {id} exists");
    }
    for id in &revoked {
        let token = tokens.iter().find(|t| t.id == *id).expect("revoked exists");
        assert!(token.revoke_time.is_some(), "revoked {id} is revoked");
    }
    server
        .client()
        .create_token(authed(scrape("after"), &admin))
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// 3. 10 000 cancelled calls: descriptors and pool at baseline.
// ---------------------------------------------------------------------------

/// Socket inodes of TCP connections with an end on one of `ports`.
fn socket_inodes_on(ports: &[u16]) -> HashSet<String> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |field: &str| {
                field
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            let on_port = [fields[1], fields[2]]
                .iter()
                .any(|f| port(f).is_some_and(|p| ports.contains(&p)));
            if on_port && fields[9] != "0" {
                inodes.insert(fields[9].to_owned());
            }
        }
    }
    inodes
}

/// Open descriptors of this process.
#[derive(Debug, Clone, Copy)]
struct Descriptors {
    /// All of them (meaningful only when the test has the process alone).
    total: usize,
    /// TCP sockets with an end on this test's server's ports.
    sockets: usize,
    /// Files in this test's data folder (SQLite database, WAL, shm).
    files: usize,
}

fn descriptors(server: &TestServer) -> Descriptors {
    let inodes = socket_inodes_on(&[server.grpc_addr.port(), server.http_addr.port()]);
    let data_dir = server.db.dir.path().to_path_buf();
    let mut counted = Descriptors {
        total: 0,
        sockets: 0,
        files: 0,
    };
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        counted.total += 1;
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        let socket = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'));
        if socket.is_some_and(|inode| inodes.contains(inode)) {
            counted.sockets += 1;
        } else if std::path::Path::new(&target).starts_with(&data_dir) {
            counted.files += 1;
        }
    }
    counted
}

/// `GET /api/metrics/prometheus` with a bearer token; the body.
async fn scrape_metrics(server: &TestServer, bearer: &str) -> String {
    let mut stream = TcpStream::connect(server.http_addr).await.expect("connect");
    let request = format!(
        "GET /api/metrics/prometheus HTTP/1.1\r\nHost: tokend\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("read response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// `tokend_db_pool_connections` by state.
fn pool_gauges(metrics: &str) -> BTreeMap<String, i64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("tokend_db_pool_connections{state=\""))
        .filter_map(|rest| {
            let (state, value) = rest.split_once("\"} ")?;
            Some((state.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The pool once it is quiet again: (open, idle); waits up to 5 s for every
/// connection to be back in the pool.
async fn settled_pool(server: &TestServer, bearer: &str) -> (i64, i64) {
    let started = Instant::now();
    loop {
        let gauges = pool_gauges(&scrape_metrics(server, bearer).await);
        let open = gauges.get("open").copied().expect("open gauge");
        let idle = gauges.get("idle").copied().expect("idle gauge");
        // The scrape itself may hold one connection while it reads the pool.
        if open - idle <= 1 || started.elapsed() > Duration::from_secs(5) {
            return (open, idle);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const MAX_POOL: i64 = 4;

async fn ten_thousand_cancelled_calls_leave_descriptors_and_pool_at_baseline(
    backend: Backend,
) -> TestResult {
    let server =
        TestServer::start_with(backend, &["--db-max-connections", &MAX_POOL.to_string()]).await;
    let admin = server.admin("acme");
    let introspector = server.introspector();
    let mut client = server.client();
    let scrape_secret = client
        .create_token(authed(scrape("prometheus"), &admin))
        .await?
        .into_inner()
        .secret;
    let pat_secret = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "laptop".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await?
        .into_inner()
        .secret;
    for i in 0..20 {
        client
            .create_token(authed(scrape(&format!("row{i}")), &admin))
            .await?;
    }
    // Baseline: the client connection is up, the pool has been used.
    client
        .list_tokens(authed(ListTokensRequest::default(), &admin))
        .await?;
    let (open_before, _) = settled_pool(&server, &scrape_secret).await;
    let before = descriptors(&server);

    let started = Instant::now();
    let (mut cancelled, mut completed) = (0u32, 0u32);
    // Failures of calls that did finish within their patience, by kind.
    let mut failures: BTreeMap<String, u32> = BTreeMap::new();
    for batch in 0..200u64 {
        let mut calls = Vec::new();
        for j in 0..50u64 {
            let i = batch * 50 + j;
            let mut client = server.client();
            let admin = admin.clone();
            let introspector = introspector.clone();
            let secret = pat_secret.clone();
            // 0–1.5 ms of patience: some are dropped before a byte is
            // sent, some mid-query, some after the answer.
            let patience = Duration::from_micros((i * 7919) % 1500);
            calls.push(tokio::spawn(async move {
                let call = async {
                    if i % 2 == 0 {
                        client
                            .authenticate_token(authed(
                                AuthenticateTokenRequest { secret },
                                &introspector,
                            ))
                            .await
                            .map(|_| ())
                    } else {
                        client
                            .list_tokens(authed(
                                ListTokensRequest {
                                    show_revoked: true,
                                    page_size: 1000,
                                    ..Default::default()
                                },
                                &admin,
                            ))
                            .await
                            .map(|_| ())
                    }
                };
                tokio::time::timeout(patience, call).await
            }));
        }
        for call in calls {
            match call.await? {
                Err(_elapsed) => cancelled += 1,
                Ok(Ok(())) => completed += 1,
                Ok(Err(status)) => {
                    // So many resets on one connection cross HTTP/2's
                    // rapid-reset limit: the server sends GOAWAY
                    // ENHANCE_YOUR_CALM and the connection's other calls
                    // fail in the transport (no tokend details); the
                    // channel reconnects. An answer from tokend itself
                    // must never be INTERNAL or a starved pool.
                    if !status.details().is_empty() {
                        let decoded = details(&status);
                        assert!(
                            !matches!(decoded.code, Code::Internal | Code::Unavailable),
                            "{status:?}"
                        );
                    }
                    *failures
                        .entry(format!("{:?}: {}", status.code(), status.message()))
                        .or_default() += 1;
                }
            }
        }
    }
    eprintln!(
        "10 000 calls in {:?}: {cancelled} cancelled by the client, {completed} completed, failed in the transport: {failures:?}",
        started.elapsed()
    );
    assert!(cancelled >= 5000, "most of the calls were cut: {cancelled}");

    // Served again at once (a starved pool would answer UNAVAILABLE).
    let quick = Instant::now();
    let mut fresh = server.client();
    let mut served = false;
    for _ in 0..20 {
        if fresh
            .list_tokens(authed(ListTokensRequest::default(), &admin))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served && quick.elapsed() < Duration::from_secs(5),
        "served after the storm"
    );
    let (open_after, idle_after) = settled_pool(&server, &scrape_secret).await;
    assert!(
        open_after <= MAX_POOL,
        "pool open {open_after} ≤ --db-max-connections {MAX_POOL}"
    );
    assert!(
        open_after - idle_after <= 1,
        "no connection is held by a cancelled call: open {open_after}, idle {idle_after}"
    );
    // Let connections that went away finish closing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = descriptors(&server);
    eprintln!("descriptors {before:?} → {after:?}; pool open {open_before} → {open_after}");
    // Sockets: the two listeners and one client connection (both ends),
    // before and after; a reconnect in flight may add one pair.
    assert!(
        after.sockets <= before.sockets + 2,
        "sockets at baseline: {} → {}",
        before.sockets,
        after.sockets
    );
    // Database files: each pooled SQLite connection holds the database and
    // its WAL, plus one shared-memory file for all; SQLite defers closing a
    // closed connection's descriptor while others hold locks on the file.
    // Bounded by the pool size, not by the number of calls.
    let file_bound = 4 * usize::try_from(MAX_POOL)? + 2;
    assert!(
        after.files <= file_bound,
        "database descriptors bounded by the pool: {} → {} (bound {file_bound})",
        before.files,
        after.files
    );
    // The process-wide count means something only when this test has the
    // process to itself (nextest); `cargo test` runs tests side by side.
    if std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test") {
        let allowance = 2 + file_bound.saturating_sub(before.files) + 4;
        assert!(
            after.total <= before.total + allowance,
            "process descriptors at baseline: {} → {} (allowance {allowance})",
            before.total,
            after.total
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 4. A flood from one caller while another is served; limiter memory.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_caller_is_limited_while_another_is_never_refused() -> TestResult {
    let server = TestServer::start_with(
        Backend::Sqlite,
        &["--rate-limit-per-second", "50", "--rate-limit-burst", "50"],
    )
    .await;
    let flooder = server.jwt("acme", "flooder", &["admin"], &[]);
    let quiet = server.jwt("acme", "quiet", &["admin"], &[]);
    let duration = Duration::from_millis(2000);
    let started = Instant::now();
    let mut floods = Vec::new();
    for _ in 0..3 {
        let mut client = server.client();
        let flooder = flooder.clone();
        floods.push(tokio::spawn(async move {
            let (mut admitted, mut limited) = (0u64, 0u64);
            while started.elapsed() < duration {
                match client
                    .list_tokens(authed(ListTokensRequest::default(), &flooder))
                    .await
                {
                    Ok(_) => admitted += 1,
                    Err(status) => {
                        let decoded = details(&status);
                        assert_eq!(
                            (decoded.code, decoded.reason.as_str()),
                            (Code::ResourceExhausted, "RATE_LIMITED")
                        );
                        assert_eq!(decoded.quota_subjects, vec!["acme/flooder".to_owned()]);
                        limited += 1;
                    }
                }
            }
            (admitted, limited)
        }));
    }
    // The quiet caller: 25 calls a second on the same connection.
    let mut client = server.client();
    let mut quiet_served = 0;
    while started.elapsed() < duration {
        client
            .list_tokens(authed(ListTokensRequest::default(), &quiet))
            .await
            .map_err(|s| format!("the quiet caller was refused: {s:?}"))?;
        quiet_served += 1;
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let (mut admitted, mut limited) = (0, 0);
    for flood in floods {
        let (a, l) = flood.await?;
        admitted += a;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "flood over {elapsed:.2} s: {admitted} admitted, {limited} RATE_LIMITED; quiet caller served {quiet_served}"
    );
    assert!(limited > 0, "the flood was limited");
    // GCRA: at most the burst plus the rate over the elapsed time.
    let ceiling = 50.0 + 50.0 * elapsed + 5.0;
    assert!(
        (admitted as f64) <= ceiling,
        "{admitted} admitted > {ceiling}"
    );
    assert!(quiet_served >= 20, "the quiet caller kept going");
    Ok(())
}

fn caller(org: &str, subject: &str) -> Caller {
    Caller {
        org_id: org.to_owned(),
        subject: subject.to_owned(),
        roles: Default::default(),
        permissions: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_state_of_ten_thousand_callers_is_dropped_once_idle() -> TestResult {
    let limiter = CallerRateLimiter::new(50, 50);
    for i in 0..10_000 {
        limiter
            .check(&caller("acme", &format!("caller-{i}")))
            .map_err(|e| format!("first call of caller {i}: {e}"))?;
    }
    // One caller that keeps spending its budget.
    let busy = caller("acme", "busy");
    let mut refused = 0;
    for _ in 0..60 {
        refused += usize::from(limiter.check(&busy).is_err());
    }
    assert!(refused >= 10, "the busy caller went over its burst");
    assert_eq!(limiter.tracked_callers(), 10_001);
    // One call costs 20 ms of a 50/s budget: after 100 ms every one-shot
    // caller's budget is full again, the busy caller's (1 s) is not.
    tokio::time::sleep(Duration::from_millis(100)).await;
    limiter.forget_idle();
    assert_eq!(
        limiter.tracked_callers(),
        1,
        "only the busy caller is still tracked"
    );
    assert!(
        (0..50).any(|_| limiter.check(&busy).is_err()),
        "its limit was kept: no fresh burst"
    );
    // A dropped caller starts again with a full budget.
    limiter
        .check(&caller("acme", "caller-0"))
        .map_err(|e| e.to_string())?;
    // Off: nothing is tracked.
    let off = CallerRateLimiter::new(0, 0);
    for i in 0..1000 {
        off.check(&caller("acme", &format!("c{i}")))
            .map_err(|e| e.to_string())?;
    }
    assert_eq!(off.tracked_callers(), 0);
    Ok(())
}

// ---------------------------------------------------------------------------
// 5. Enumeration: another org's id and a missing id look the same.
// ---------------------------------------------------------------------------

/// The parts of an error a prober sees, with the probed identifier and the
/// per-request ids taken out.
fn probe_view(status: &Status, probed: &str) -> String {
    let mut decoded = details(status);
    assert!(
        decoded.message.contains(probed),
        "the message names what was asked for: {}",
        decoded.message
    );
    decoded.request_id.clear();
    decoded.problem.request_id.clear();
    decoded.problem.instance.clear();
    format!("{decoded:?}").replace(probed, "<id>")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `rounds` calls each of `foreign` and `missing`, interleaved (so
/// that noise hits both alike); returns the medians.
async fn medians<F, Fut>(rounds: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut(bool) -> Fut,
    Fut: Future<Output = ()>,
{
    let (mut foreign, mut missing) = (Vec::new(), Vec::new());
    for round in 0..rounds + 20 {
        for probe_foreign in [round % 2 == 0, round % 2 != 0] {
            let started = Instant::now();
            call(probe_foreign).await;
            let elapsed = started.elapsed();
            // The first 20 rounds warm caches and connections up.
            if round >= 20 {
                if probe_foreign {
                    foreign.push(elapsed);
                } else {
                    missing.push(elapsed);
                }
            }
        }
    }
    (median(foreign), median(missing))
}

fn within_factor(what: &str, (foreign, missing): (Duration, Duration), factor: f64) {
    eprintln!("{what}: median foreign {foreign:?}, missing {missing:?}");
    let (low, high) = if foreign < missing {
        (foreign, missing)
    } else {
        (missing, foreign)
    };
    assert!(
        high.as_secs_f64() <= low.as_secs_f64() * factor,
        "{what}: medians differ by more than {factor}×: foreign {foreign:?}, missing {missing:?}"
    );
}

async fn foreign_and_missing_ids_are_indistinguishable(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let owner = server.admin("acme");
    let prober = server.admin("evil");
    let mut client = server.client();
    // Ten tokens so that the foreign id (10) and the missing one (97) have
    // the same number of digits: the answers are then the same length too.
    let mut last = None;
    for i in 0..10 {
        last = client
            .create_token(authed(scrape(&format!("t{i}")), &owner))
            .await?
            .into_inner()
            .token;
    }
    let foreign_id = last.expect("token").id;
    let missing_id = 97;
    assert_eq!(foreign_id.to_string().len(), missing_id.to_string().len());
    let pat = client
        .create_token(authed(
            CreateTokenRequest {
                kind: TokenKind::PersonalAccess as i32,
                name: "laptop".into(),
                ..Default::default()
            },
            &owner,
        ))
        .await?
        .into_inner()
        .token
        .expect("token");
    let missing_uuid = uuid::Uuid::now_v7().to_string();

    let get = |id: i64| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .get_token(authed(GetTokenRequest { id }, &prober))
                .await
        }
    };
    let revoke = |id: i64| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .revoke_scrape_token(authed(
                    RevokeScrapeTokenRequest {
                        id,
                        reason: "probe".into(),
                    },
                    &prober,
                ))
                .await
        }
    };
    let revoke_pat = |token_id: String| {
        let mut client = client.clone();
        let prober = prober.clone();
        async move {
            client
                .revoke_personal_access_token(authed(
                    RevokePersonalAccessTokenRequest {
                        token_id,
                        reason: "probe".into(),
                    },
                    &prober,
                ))
                .await
        }
    };

    // Same code, reason, message shape, details (but the id), same size.
    let pairs: Vec<(&str, Status, Status, String, String)> = vec![
        (
            "GetToken",
            get(foreign_id).await.expect_err("foreign"),
            get(missing_id).await.expect_err("missing"),
            foreign_id.to_string(),
            missing_id.to_string(),
        ),
        (
            "RevokeScrapeToken",
            revoke(foreign_id).await.expect_err("foreign"),
            revoke(missing_id).await.expect_err("missing"),
            foreign_id.to_string(),
            missing_id.to_string(),
        ),
        (
            "RevokePersonalAccessToken",
            revoke_pat(pat.token_id.clone()).await.expect_err("foreign"),
            revoke_pat(missing_uuid.clone()).await.expect_err("missing"),
            pat.token_id.clone(),
            missing_uuid.clone(),
        ),
    ];
    for (rpc, foreign, missing, foreign_probe, missing_probe) in pairs {
        assert_eq!(foreign.code(), Code::NotFound, "{rpc}");
        assert_eq!(
            probe_view(&foreign, &foreign_probe),
            probe_view(&missing, &missing_probe),
            "{rpc}: another org's token and a missing one answer alike"
        );
        assert_eq!(
            foreign.details().len(),
            missing.details().len(),
            "{rpc}: details of equal size"
        );
        assert_eq!(
            foreign.message().len(),
            missing.message().len(),
            "{rpc}: messages of equal size"
        );
    }

    // Latency: medians over 200 calls each within 3× (generous: the box is
    // shared and noisy; a timing oracle worth having is far larger).
    within_factor(
        "GetToken",
        medians(200, |foreign| {
            let call = get(if foreign { foreign_id } else { missing_id });
            async move {
                assert_eq!(call.await.expect_err("not found").code(), Code::NotFound);
            }
        })
        .await,
        3.0,
    );
    within_factor(
        "RevokeScrapeToken",
        medians(200, |foreign| {
            let call = revoke(if foreign { foreign_id } else { missing_id });
            async move {
                assert_eq!(call.await.expect_err("not found").code(), Code::NotFound);
            }
        })
        .await,
        3.0,
    );
    // Nothing was changed by all that probing.
    let tokens = all_tokens(&server, &owner).await?;
    assert!(tokens.iter().all(|t| t.revoke_time.is_none()));
    Ok(())
}

// ---------------------------------------------------------------------------
// 6. A 64 KiB secret, and messages over --max-message-size.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_secrets_are_malformed_and_oversized_messages_refused() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let introspector = server.introspector();
    let admin = server.admin("acme");
    let mut client = server.client();
    let authenticate = |secret: String| AuthenticateTokenRequest { secret };
    let too_long = MalformedSecret::TooLong.describe();
    // Just under the default 64 KiB message limit: refused by length alone
    // (TokenSecret::parse checks the length before prefix, body, checksum
    // or hash), even with a valid prefix.
    for secret in [
        "x".repeat(65_000),
        format!("tkd_pat_{}", "A".repeat(65_000)),
        "é".repeat(32_000),
        "x".repeat(MAX_SECRET_LEN + 1),
    ] {
        let decoded = expect_error(
            client
                .authenticate_token(authed(authenticate(secret), &introspector))
                .await,
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
        );
        assert_eq!(decoded.message, too_long);
        assert!(
            decoded.field_violations.is_empty(),
            "the secret is not echoed"
        );
    }
    // Other garbage: malformed, never echoed, never UNKNOWN.
    let valid = TokenSecret::generate(tokend::domain::TokenKind::PersonalAccess)?
        .expose()
        .to_owned();
    for secret in [
        String::new(),
        " ".into(),
        "\0".into(),
        "tkd_pat_".into(),
        format!(" {valid}"),
        format!("{valid}\n"),
        valid.to_uppercase(),
        valid.replacen('a', "а", 1), // Cyrillic а
        format!("Bearer {valid}"),
    ] {
        let status = client
            .authenticate_token(authed(authenticate(secret.clone()), &introspector))
            .await
            .expect_err("refused");
        let decoded = expect_error(
            Err::<(), _>(status.clone()),
            Code::Unauthenticated,
            "TOKEN_MALFORMED",
        );
        if secret.len() > 8 {
            assert!(!status.message().contains(&secret[8..]), "not echoed");
            assert!(!format!("{:?}", decoded.problem).contains(&secret[8..]));
        }
    }
    // Exactly 64 KiB, with room for it in the message: still malformed.
    let roomy = TestServer::start_with(Backend::Sqlite, &["--max-message-size", "131072"]).await;
    let decoded = expect_error(
        roomy
            .client()
            .authenticate_token(authed(
                authenticate("x".repeat(64 * 1024)),
                &roomy.introspector(),
            ))
            .await,
        Code::Unauthenticated,
        "TOKEN_MALFORMED",
    );
    assert_eq!(decoded.message, too_long);
    // 64 KiB of secret plus its field header is over the default limit.
    let decoded = expect_error(
        client
            .authenticate_token(authed(authenticate("x".repeat(64 * 1024)), &introspector))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    assert!(decoded.message.contains("too large"), "{}", decoded.message);
    // A 1 MiB name on CreateToken: refused, nothing written.
    expect_error(
        client
            .create_token(authed(scrape(&"n".repeat(1 << 20)), &admin))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    // A lower limit is honoured: 1 KiB.
    let tight = TestServer::start_with(Backend::Sqlite, &["--max-message-size", "1024"]).await;
    let tight_admin = tight.admin("acme");
    expect_error(
        tight
            .client()
            .create_token(authed(scrape(&"n".repeat(2000)), &tight_admin))
            .await,
        Code::OutOfRange,
        "REQUEST_REJECTED",
    );
    // Under it, the same field is judged by validation, echoed ≤ 64 bytes.
    let decoded = expect_error(
        tight
            .client()
            .create_token(authed(scrape(&"n".repeat(900)), &tight_admin))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert!(
        decoded
            .problem
            .errors
            .iter()
            .all(|e| e.value.len() <= MAX_ECHOED_VALUE_CHARS)
    );
    // Without a JWT an oversized message is a JWT error: not decoded at all.
    expect_error(
        client
            .authenticate_token(Request::new(authenticate("x".repeat(100_000))))
            .await,
        Code::Unauthenticated,
        "JWT_MISSING",
    );
    for server in [&server, &tight] {
        assert_eq!(all_tokens(server, &server.admin("acme")).await?.len(), 0);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 7. SQLite busy: many writers through two servers on one file.
// ---------------------------------------------------------------------------

/// OK, or UNAVAILABLE with DATABASE_UNAVAILABLE; never INTERNAL or a
/// driver's "database is locked". Returns whether it was OK.
fn ok_or_unavailable<T>(result: Result<T, Status>) -> bool {
    match result {
        Ok(_) => true,
        Err(status) => {
            let decoded = details(&status);
            assert_eq!(
                (decoded.code, decoded.reason.as_str()),
                (Code::Unavailable, "DATABASE_UNAVAILABLE"),
                "{status:?}"
            );
            assert!(!status.message().contains("locked"), "{status:?}");
            assert!(decoded.retry_delay.is_some(), "RetryInfo: {status:?}");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_is_unavailable_never_internal() -> TestResult {
    // The default 5 s busy timeout, then 20 ms to make busy errors likely.
    for flags in [&[][..], &["--db-statement-timeout", "20ms"][..]] {
        let a = TestServer::start_with(Backend::Sqlite, flags).await;
        let b = TestServer::start_on(a.db.clone(), flags).await;
        let admin = a.admin("acme");
        let mut creates = Vec::new();
        for i in 0..64 {
            let mut client = if i % 2 == 0 { a.client() } else { b.client() };
            let admin = admin.clone();
            creates.push(tokio::spawn(async move {
                client
                    .create_token(authed(scrape(&format!("w{i}")), &admin))
                    .await
                    .map(|r| r.into_inner().token.expect("token"))
            }));
        }
        let mut created = Vec::new();
        let mut unavailable = 0;
        for call in creates {
            let result = call.await?;
            if let Ok(token) = &result {
                created.push(token.clone());
            }
            unavailable += usize::from(!ok_or_unavailable(result));
        }
        // Revoke each twice, concurrently, through both servers.
        let mut revokes = Vec::new();
        for (i, token) in created.iter().chain(created.iter()).enumerate() {
            let mut client = if i % 2 == 0 { b.client() } else { a.client() };
            let admin = admin.clone();
            let id = token.id;
            revokes.push(tokio::spawn(async move {
                client
                    .revoke_scrape_token(authed(
                        RevokeScrapeTokenRequest {
                            id,
                            reason: String::new(),
                        },
                        &admin,
                    ))
                    .await
            }));
        }
        for call in revokes {
            unavailable += usize::from(!ok_or_unavailable(call.await?));
        }
        eprintln!(
            "SQLite busy with {flags:?}: {} of 64 creates OK, {unavailable} UNAVAILABLE",
            created.len()
        );
        assert_tokens_and_events_agree(&a, &admin).await?;
        // Both replicas keep serving.
        for server in [&a, &b] {
            server
                .client()
                .list_tokens(authed(ListTokensRequest::default(), &admin))
                .await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 8. Properties: the secret format, page tokens, validators (proptest), and
//    revoke and pagination on a server (a few randomized cases).
// ---------------------------------------------------------------------------

fn domain_kind() -> impl Strategy<Value = tokend::domain::TokenKind> {
    proptest::sample::select(tokend::domain::TokenKind::ALL.to_vec())
}

/// Every echoed value of a check is at most 64 bytes, and equal to the
/// input when that is short (`None`: several inputs, not compared).
fn assert_echo_bounded(check: impl FnOnce(&mut Violations), input: Option<&str>) -> usize {
    let mut violations = Violations::default();
    check(&mut violations);
    let reported = violations.into_result().err().unwrap_or_default();
    for violation in &reported {
        assert!(
            violation.value.len() <= MAX_ECHOED_VALUE_CHARS,
            "{} bytes echoed",
            violation.value.len()
        );
        if let Some(input) = input.filter(|i| i.len() <= MAX_ECHOED_VALUE_CHARS) {
            assert_eq!(violation.value, input);
        }
    }
    reported.len()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_generated_secret_parses_and_no_single_character_change_does(
        kind in domain_kind(),
        position in any::<prop::sample::Index>(),
        replacement in any::<char>(),
        edit in 0..3u8,
    ) {
        let secret = TokenSecret::generate(kind).expect("random source");
        let text = secret.expose().to_owned();
        let parsed = TokenSecret::parse(&text).expect("a generated secret parses");
        prop_assert_eq!(parsed.kind(), kind);
        prop_assert!(text.len() <= MAX_SECRET_LEN);
        let mut chars: Vec<char> = text.chars().collect();
        let at = position.index(chars.len());
        match edit {
            // Substitute one character by any other.
            0 => {
                prop_assume!(chars[at] != replacement);
                chars[at] = replacement;
            }
            // Delete one.
            1 => {
                chars.remove(at);
            }
            // Insert one.
            _ => chars.insert(at, replacement),
        }
        let changed: String = chars.into_iter().collect();
        prop_assert!(TokenSecret::parse(&changed).is_err(), "{} parsed", changed);
    }

    #[test]
    fn any_string_is_refused_or_is_a_well_formed_secret(input in any::<String>()) {
        match TokenSecret::parse(&input) {
            Ok(secret) => {
                prop_assert!(input.len() <= MAX_SECRET_LEN);
                prop_assert!(input.starts_with(secret.kind().secret_prefix()));
            }
            Err(MalformedSecret::TooLong) => prop_assert!(input.len() > MAX_SECRET_LEN),
            Err(_) => {}
        }
    }

    #[test]
    fn anything_longer_than_a_secret_is_too_long(
        input in proptest::collection::vec(any::<char>(), 17..2000),
    ) {
        let text: String = input.into_iter().collect();
        prop_assume!(text.len() > MAX_SECRET_LEN);
        prop_assert_eq!(TokenSecret::parse(&text).err(), Some(MalformedSecret::TooLong));
    }

    #[test]
    fn page_tokens_round_trip_and_never_decode_under_another_scope(
        after_id in 1..=i64::MAX,
        scope in ".{0,40}",
        other in ".{0,40}",
    ) {
        let cursor = Cursor { after_id };
        let token = pagination::encode(cursor, &scope);
        prop_assert_eq!(pagination::decode(&token, &scope), Ok(Some(cursor)));
        if other != scope {
            prop_assert_eq!(pagination::decode(&token, &other), Err(InvalidPageToken));
        }
    }

    #[test]
    fn a_cursor_below_one_never_decodes(after_id in i64::MIN..1, scope in ".{0,20}") {
        let token = pagination::encode(Cursor { after_id }, &scope);
        prop_assert_eq!(pagination::decode(&token, &scope), Err(InvalidPageToken));
    }

    #[test]
    fn arbitrary_page_tokens_never_panic_and_never_yield_a_bad_cursor(
        token in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{0,200}"],
        scope in ".{0,20}",
    ) {
        if let Ok(Some(cursor)) = pagination::decode(&token, &scope) {
            prop_assert!(cursor.after_id >= 1);
        }
    }

    #[test]
    fn validators_never_panic_and_echo_at_most_64_bytes(
        value in prop_oneof![
            any::<String>(),
            ".{60,400}",
            "[a-z0-9-]{0,70}",
            "g-[0-9a-fA-F]{8,12}",
            "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}a-z]{0,120}",
        ],
        number in any::<i64>(),
        small in any::<i32>(),
        scopes in proptest::collection::vec(".{0,80}", 0..60),
    ) {
        let text = Some(value.as_str());
        let slug = assert_echo_bounded(|v| validation::check_slug(v, "slug", &value), text);
        prop_assert!(slug <= 1);
        let workspace =
            assert_echo_bounded(|v| validation::check_workspace_id(v, "ws", &value), text);
        prop_assert!(workspace <= 1);
        let name = assert_echo_bounded(|v| validation::check_name(v, "name", &value), text);
        prop_assert!(name <= 1);
        let reason = assert_echo_bounded(
            |v| {
                validation::check_reason(v, &value);
            },
            text,
        );
        prop_assert!(reason <= 1);
        let token_id = assert_echo_bounded(
            |v| {
                validation::check_token_id(v, &value);
            },
            text,
        );
        prop_assert!(token_id <= 1);
        let number_text = number.to_string();
        assert_echo_bounded(|v| validation::check_id(v, number), Some(&number_text));
        let small_text = small.to_string();
        assert_echo_bounded(
            |v| {
                validation::check_page_size(v, small);
            },
            Some(&small_text),
        );
        assert_echo_bounded(
            |v| {
                validation::check_required_kind(v, KindInput::Unknown(small));
            },
            Some(&small_text),
        );
        // Scopes: one violation for too many, else at most one per scope,
        // and never more than 20 (+1 summary) listed.
        let listed = assert_echo_bounded(|v| validation::check_scopes(v, &scopes), None);
        prop_assert!(listed <= validation::MAX_REPORTED_VIOLATIONS + 1);
        if scopes.len() > validation::MAX_SCOPES {
            prop_assert_eq!(listed, 1);
        }
    }

    #[test]
    fn an_echoed_value_is_a_prefix_of_at_most_64_bytes(value in any::<String>()) {
        let violation = FieldViolation::new("field", "message", &value);
        prop_assert!(violation.value.len() <= MAX_ECHOED_VALUE_CHARS);
        if value.len() <= MAX_ECHOED_VALUE_CHARS {
            prop_assert_eq!(&violation.value, &value);
        } else {
            let kept = violation.value.strip_suffix('…').expect("an ellipsis");
            prop_assert!(value.starts_with(kept));
        }
    }

    #[test]
    fn every_hyphenated_uuid_is_a_token_id_and_other_forms_are_not(bits in any::<u128>()) {
        let uuid = uuid::Uuid::from_u128(bits);
        let mut violations = Violations::default();
        prop_assert_eq!(
            validation::check_token_id(&mut violations, &uuid.hyphenated().to_string()),
            Some(uuid)
        );
        for other in [uuid.simple().to_string(), uuid.braced().to_string(), uuid.urn().to_string()] {
            prop_assert_eq!(validation::check_token_id(&mut violations, &other), None);
        }
    }
}

/// Randomized cases run against a server: few, to keep the runtime low.
const SERVER_CASES: u64 = 4;

async fn revoke_is_idempotent_and_a_foreign_org_is_never_mutated_randomized(
    backend: Backend,
) -> TestResult {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    for seed in 0..SERVER_CASES {
        let mut rng = StdRng::seed_from_u64(0x7e57_0000 + seed);
        let (org, other) = (format!("acme-{seed}"), format!("evil-{seed}"));
        let owner = server.admin(&org);
        let intruder = server.admin(&other);
        let mut tokens: Vec<Token> = Vec::new();
        for j in 0..rng.random_range(3..9u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let created = client
                .create_token(authed(create_of(kind, &format!("t{j}"), j), &owner))
                .await?;
            tokens.push(created.into_inner().token.expect("token"));
        }
        for j in 0..rng.random_range(1..4u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            client
                .create_token(authed(create_of(kind, &format!("e{j}"), j), &intruder))
                .await?;
        }
        let intruders_own = all_tokens(&server, &intruder).await?;
        let mut first_revoke: BTreeMap<i64, Option<prost_types::Timestamp>> = BTreeMap::new();
        let mut snapshot = all_tokens(&server, &owner).await?;
        for step in 0..rng.random_range(10..20u32) {
            let target = tokens[rng.random_range(0..tokens.len())].clone();
            let context = format!("seed {seed}, step {step}, token {}", target.id);
            if rng.random_bool(0.5) {
                // The owner revokes, perhaps again: the first revoke_time
                // stays, and so does everything else about the token.
                let revoked = crate::lifecycle::revoke(&server, &owner, &target, "r").await?;
                let time = first_revoke.entry(target.id).or_insert(revoked.revoke_time);
                assert_eq!(&revoked.revoke_time, time, "{context}: idempotent");
                assert!(revoked.revoke_time.is_some(), "{context}");
                snapshot = all_tokens(&server, &owner).await?;
            } else {
                // Another org's admin: NOT_FOUND, and nothing changes.
                let attempt = if rng.random_bool(0.5) {
                    crate::lifecycle::revoke(&server, &intruder, &target, "x")
                        .await
                        .map(|_| ())
                } else {
                    client
                        .get_token(authed(GetTokenRequest { id: target.id }, &intruder))
                        .await
                        .map(|_| ())
                };
                expect_error(attempt, Code::NotFound, "TOKEN_NOT_FOUND");
                assert_eq!(
                    all_tokens(&server, &owner).await?,
                    snapshot,
                    "{context}: the foreign org was not mutated"
                );
            }
        }
        // One revoked event per revoked token, one created event each.
        assert_tokens_and_events_agree(&server, &owner).await?;
        assert_tokens_and_events_agree(&server, &intruder).await?;
        assert_eq!(
            all_tokens(&server, &intruder).await?,
            intruders_own,
            "seed {seed}: the intruder's own tokens are untouched"
        );
    }
    Ok(())
}

async fn pagination_visits_every_row_once_randomized(backend: Backend) -> TestResult {
    let server = TestServer::start(backend).await;
    let mut client = server.client();
    for seed in 0..SERVER_CASES {
        let mut rng = StdRng::seed_from_u64(0x9a9e_0000 + seed);
        let org = format!("pages-{seed}");
        let owner = server.admin(&org);
        let noise = server.admin(&format!("noise-{seed}"));
        let mut tokens: Vec<Token> = Vec::new();
        for j in 0..rng.random_range(0..30u32) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            let created = client
                .create_token(authed(create_of(kind, &format!("p{j}"), j), &owner))
                .await?;
            tokens.push(created.into_inner().token.expect("token"));
            // Another org's rows between ours.
            if rng.random_bool(0.3) {
                client
                    .create_token(authed(scrape(&format!("n{j}")), &noise))
                    .await?;
            }
        }
        let mut revoked = HashSet::new();
        for token in &tokens {
            if rng.random_bool(0.3) {
                crate::lifecycle::revoke(&server, &owner, token, "").await?;
                revoked.insert(token.id);
            }
        }
        for _ in 0..3 {
            let page_size = rng.random_range(1..12i32);
            let show_revoked = rng.random_bool(0.5);
            let kind = if rng.random_bool(0.5) {
                TokenKind::Unspecified
            } else {
                KINDS[rng.random_range(0..KINDS.len())]
            };
            let context = format!(
                "seed {seed}, {} tokens, page_size {page_size}, show_revoked {show_revoked}, kind {kind:?}",
                tokens.len()
            );
            let expected: Vec<i64> = tokens
                .iter()
                .filter(|t| show_revoked || !revoked.contains(&t.id))
                .filter(|t| kind == TokenKind::Unspecified || t.kind == kind as i32)
                .map(|t| t.id)
                .collect();
            let (mut seen, mut page_token, mut pages) = (Vec::new(), String::new(), 0);
            loop {
                let page = client
                    .list_tokens(authed(
                        ListTokensRequest {
                            kind: kind as i32,
                            show_revoked,
                            page_size,
                            page_token: page_token.clone(),
                            ..Default::default()
                        },
                        &owner,
                    ))
                    .await?
                    .into_inner();
                assert!(
                    page.tokens.len() <= usize::try_from(page_size)?,
                    "{context}"
                );
                seen.extend(page.tokens.iter().map(|t| t.id));
                pages += 1;
                assert!(pages <= expected.len() + 1, "{context}: pages never end");
                if page.next_page_token.is_empty() {
                    break;
                }
                // A page token is the caller's org's only.
                expect_error(
                    client
                        .list_tokens(authed(
                            ListTokensRequest {
                                kind: kind as i32,
                                show_revoked,
                                page_size,
                                page_token: page.next_page_token.clone(),
                                ..Default::default()
                            },
                            &noise,
                        ))
                        .await,
                    Code::InvalidArgument,
                    "INVALID_FIELD",
                );
                page_token = page.next_page_token;
            }
            assert_eq!(seen, expected, "{context}: every row once, in order");
            let size = usize::try_from(page_size)?;
            assert_eq!(pages, expected.len().div_ceil(size).max(1), "{context}");
        }
    }
    Ok(())
}
