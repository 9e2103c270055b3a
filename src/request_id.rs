//! Request ids, the same on both listeners: the caller's `x-request-id`
//! when it is printable ASCII of at most [`MAX_REQUEST_ID_LEN`] characters,
//! else a new UUID v7. Transport-neutral (plain HTTP headers), so the gRPC
//! layer and the metrics endpoint share one rule without importing each
//! other.

use http::{HeaderMap, HeaderValue};

/// The header (gRPC metadata key) of the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest caller-supplied request id accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A caller-supplied request id, if acceptable: printable ASCII of at most
/// [`MAX_REQUEST_ID_LEN`] characters.
pub fn accept_caller_id(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let printable = !bytes.is_empty()
        && bytes.len() <= MAX_REQUEST_ID_LEN
        && bytes.iter().all(|b| (0x20..0x7f).contains(b));
    if printable { value.to_str().ok() } else { None }
}

/// The request id of a request with `headers`: the caller's when
/// acceptable, else a new UUID v7.
pub fn of_headers(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(accept_caller_id)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_id_is_kept_only_when_printable_and_short() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc 123"));
        assert_eq!(of_headers(&headers), "abc 123");
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&long).unwrap());
        let replaced = of_headers(&headers);
        assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");
        let exact = "x".repeat(MAX_REQUEST_ID_LEN);
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(&exact).unwrap());
        assert_eq!(of_headers(&headers), exact);
        headers.insert(
            REQUEST_ID_HEADER,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert!(uuid::Uuid::parse_str(&of_headers(&headers)).is_ok());
        assert!(uuid::Uuid::parse_str(&of_headers(&HeaderMap::new())).is_ok());
    }
}
