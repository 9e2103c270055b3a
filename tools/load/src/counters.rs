//! The server's own count of calls, to cross-check the client's.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Res;

/// `tokend_grpc_requests_total` by (method, code), read over plain HTTP/1.1
/// from the operator figures (`/metrics`, which ignore the bearer token).
pub(crate) async fn server_counters(
    http: SocketAddr,
    secret: &str,
) -> Res<BTreeMap<(String, String), u64>> {
    let mut stream = tokio::net::TcpStream::connect(http).await?;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(format!("metrics: {}", body.lines().next().unwrap_or_default()).into());
    }
    let mut counters = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("tokend_grpc_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let mut code = String::new();
        let mut method = String::new();
        for pair in labels.split(',') {
            if let Some((key, val)) = pair.split_once('=') {
                let val = val.trim_matches('"').to_owned();
                match key {
                    "code" => code = val,
                    "method" => method = val,
                    _ => {}
                }
            }
        }
        counters.insert((method, code), value.trim().parse::<f64>()? as u64);
    }
    Ok(counters)
}

/// The per-code delta of `method` between two readings.
pub(crate) fn delta(
    before: &BTreeMap<(String, String), u64>,
    after: &BTreeMap<(String, String), u64>,
    method: &str,
) -> BTreeMap<String, u64> {
    let mut codes = BTreeMap::new();
    for ((m, code), n) in after {
        if m == method {
            let delta = n - before.get(&(m.clone(), code.clone())).copied().unwrap_or(0);
            if delta > 0 {
                codes.insert(code.clone(), delta);
            }
        }
    }
    codes
}
