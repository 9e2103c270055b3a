//! Garbage, truncated and corrupted gRPC frames over raw HTTP/2, against
//! the real binary, while another client is served all along.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;

use tokend::grpc::proto::token_service_client::TokenServiceClient;
use tokend::grpc::proto::{AuthenticateTokenRequest, ListTokensRequest};

use crate::support::{Binary, HS_SECRET, TestResult, authed, mint, spawn_binary, wait_for_status};
/// The real binary on port 0 with every stderr line kept, so a panic (which
/// the runtime would otherwise survive silently) shows up as a line.
async fn spawn_tokend(dir: &std::path::Path, extra: &[&str]) -> Binary {
    let flags = [&["--jwt-hs256-secret", HS_SECRET][..], extra].concat();
    spawn_binary(dir, &flags, "info").await
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
        ..Default::default()
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
    let stderr = binary.log.await?;
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "tokend panicked: {stderr:#?}"
    );
    Ok(())
}
