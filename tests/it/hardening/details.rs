//! Error details built from what the caller sent: `Problem.instance` stays a
//! valid URI reference whatever request id the caller chose, and a request
//! with more bad fields than are listed reports their real number, without
//! the summary entry leaking into the legacy `details` map.

use tonic::{Code, Request};

use tokend::grpc::proto::{CreateTokenRequest, GetTokenRequest, TokenKind};

use crate::support::{Backend, TestResult, TestServer, authed, expect_error};

fn with_request_id<T>(mut request: Request<T>, id: &str) -> Request<T> {
    request
        .metadata_mut()
        .insert("x-request-id", id.parse().expect("printable ASCII"));
    request
}

/// Whether `text` is an RFC 3986 URI: a scheme, then only unreserved,
/// reserved and percent-encoded characters.
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)) {
            return false;
        }
        i += 1;
    }
    scheme_ok
}

/// Reverses percent-encoding.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_is_a_uri_whatever_the_request_id() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin("acme");
    let mut client = server.client();
    for request_id in [
        "0190f5a2-7c1e-7d3a-9b8e-2f4d6c8a0b1e",
        "a request id with spaces",
        "quotes \" and ' and <angle> brackets",
        "100% #fragment ?query &amp; {braces} |pipe| \\back` ^caret",
        "already%20encoded",
        "~._-",
    ] {
        let details = expect_error(
            client
                .get_token(with_request_id(
                    authed(GetTokenRequest { id: 987_654 }, &admin),
                    request_id,
                ))
                .await,
            Code::NotFound,
            "TOKEN_NOT_FOUND",
        );
        assert_eq!(details.problem.request_id, request_id);
        assert_eq!(details.request_id, request_id);
        let instance = &details.problem.instance;
        assert!(is_uri(instance), "{instance:?} is not a URI");
        let encoded = instance
            .strip_prefix("urn:tokend:request:")
            .expect("the urn:tokend:request: prefix");
        assert_eq!(percent_decode(encoded), request_id, "{instance}");
        assert!(
            !encoded.contains([' ', '"', '#', '?', '&', '/']),
            "{instance}"
        );
    }
    // A UUID, as the server makes them, is unchanged.
    let details = expect_error(
        client
            .get_token(authed(GetTokenRequest { id: 987_654 }, &admin))
            .await,
        Code::NotFound,
        "TOKEN_NOT_FOUND",
    );
    assert_eq!(
        details.problem.instance,
        format!("urn:tokend:request:{}", details.request_id)
    );
    Ok(())
}

fn with_bad_scopes(count: usize) -> CreateTokenRequest {
    CreateTokenRequest {
        kind: TokenKind::Scrape as i32,
        name: "many".into(),
        scopes: (0..count).map(|i| format!("BAD{i}")).collect(),
        ..CreateTokenRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_count_is_the_real_number_and_the_summary_stays_out_of_details() -> TestResult {
    let server = TestServer::start(Backend::Sqlite).await;
    let admin = server.admin("acme");
    let mut client = server.client();

    // 25 bad fields: 10 listed, then one summary entry for the other 15.
    let details = expect_error(
        client
            .create_token(authed(with_bad_scopes(25), &admin))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(
        details.metadata.get("fieldCount").map(String::as_str),
        Some("25")
    );
    let locations: Vec<&str> = details
        .problem
        .errors
        .iter()
        .map(|e| e.location.as_str())
        .collect();
    let mut expected: Vec<String> = (0..10).map(|i| format!("scopes[{i}]")).collect();
    expected.push("request".into());
    assert_eq!(locations, expected);
    let summary = details.problem.errors.last().expect("a summary");
    assert_eq!(summary.message, "15 more invalid field(s) not listed");
    assert_eq!(summary.value, "");
    assert_eq!(
        details.field_violations.len(),
        11,
        "BadRequest mirrors errors"
    );
    #[allow(deprecated)]
    let legacy = &details.problem.details;
    assert_eq!(legacy.len(), 10);
    assert!(!legacy.contains_key("request"), "{legacy:?}");
    for i in 0..10 {
        assert!(legacy.contains_key(&format!("scopes[{i}]")));
    }
    assert!(
        details.message.ends_with("scopes[9] and 15 more"),
        "{}",
        details.message
    );

    // Exactly 10: all listed, no summary.
    let details = expect_error(
        client
            .create_token(authed(with_bad_scopes(10), &admin))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(
        details.metadata.get("fieldCount").map(String::as_str),
        Some("10")
    );
    assert_eq!(details.problem.errors.len(), 10);
    #[allow(deprecated)]
    let legacy_len = details.problem.details.len();
    assert_eq!(legacy_len, 10);

    // One: the count is 1 and the message names it.
    let details = expect_error(
        client
            .create_token(authed(with_bad_scopes(1), &admin))
            .await,
        Code::InvalidArgument,
        "INVALID_FIELD",
    );
    assert_eq!(
        details.metadata.get("fieldCount").map(String::as_str),
        Some("1")
    );
    assert!(details.message.starts_with("invalid field scopes[0]: "));
    Ok(())
}
