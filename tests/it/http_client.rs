//! A minimal HTTP/1.1 client over raw sockets, for the HTTP listener's tests:
//! it can bind its source address (127.0.0.2 is a second peer on loopback)
//! and send anything, including half a request.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A second loopback source address: another peer to the server.
pub const SECOND_PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

/// One response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// A TCP connection to `to`, from `from` when given.
pub async fn connect(from: Option<IpAddr>, to: SocketAddr) -> TcpStream {
    match from {
        None => TcpStream::connect(to).await.expect("connect"),
        Some(source) => {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(source, 0))
                .expect("bind the source address");
            socket.connect(to).await.expect("connect")
        }
    }
}

/// `GET path` with `headers`, from `from` when given; `Connection: close`.
pub async fn get_from(
    from: Option<IpAddr>,
    to: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: tokend\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    send(from, to, request.as_bytes()).await
}

/// `GET path` from the default source address.
pub async fn get(to: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    get_from(None, to, path, headers).await
}

/// Sends raw bytes, reads the response until the server closes.
pub async fn send(from: Option<IpAddr>, to: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut stream = connect(from, to).await;
    stream.write_all(raw).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response))
        .await
        .expect("the response within 20 s")
        .expect("read");
    parse(&response)
}

pub fn parse(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// Sample lines of a Prometheus text body: (name, labels, value).
pub fn samples(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            Some((name.to_owned(), labels.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of one sample, if present.
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| v)
}
