//! The one error type the core returns. `domain::problem` describes it once
//! for every face (type, title, HTTP status, reason); `grpc::status` chooses
//! its gRPC code with one exhaustive match and the REST face its envelope.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::domain::secret::MalformedSecret;

/// Every byte but the RFC 3986 unreserved characters is percent-encoded in
/// a problem's `instance`, so that any request id a caller chose (spaces,
/// quotes, `%`, `#`, …) still makes a valid URI reference.
const INSTANCE_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `instance` of a problem about one request, on every face (the gRPC
/// `Problem`, the HTTP problem document): `urn:tokend:request:<request id,
/// percent-encoded>`. A UUID is unchanged by the encoding.
pub fn problem_instance(request_id: &str) -> String {
    format!(
        "urn:tokend:request:{}",
        utf8_percent_encode(request_id, INSTANCE_ENCODE_SET)
    )
}

/// One bad field of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `scopes[3]`.
    pub location: String,
    /// What is wrong and what is expected.
    pub message: String,
    /// The value received, truncated; empty for secrets.
    pub value: String,
    /// The value as the JSON the request carried, when it was not a string
    /// (a number, a boolean, an array…) and is short enough to echo whole;
    /// the REST face's decoding sets it, the core never does.
    pub received_json: Option<serde_json::Value>,
}

/// Values echoed in error details are cut to this many bytes so that the
/// details stay far below the 16 KiB HTTP/2 trailer limit.
pub const MAX_ECHOED_VALUE_BYTES: usize = 64;

impl FieldViolation {
    /// A violation that echoes (a truncated copy of) the value received.
    pub fn new(location: impl Into<String>, message: impl Into<String>, value: &str) -> Self {
        // At most 64 characters and 64 bytes, the ellipsis included, so that
        // multi-byte input cannot inflate the details.
        let echoed = if value.len() <= MAX_ECHOED_VALUE_BYTES {
            value.to_owned()
        } else {
            let mut cut = MAX_ECHOED_VALUE_BYTES - '…'.len_utf8();
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…", &value[..cut])
        };
        FieldViolation {
            location: location.into(),
            message: message.into(),
            value: echoed,
            received_json: None,
        }
    }

    /// The same violation, with the JSON value received.
    pub fn with_received_json(mut self, received: serde_json::Value) -> Self {
        self.received_json = Some(received);
        self
    }
}

/// The bad fields of a request: those listed in the details, and how many
/// more were found but left out to keep the details small.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidFields {
    /// The violations reported one by one, in request order.
    pub listed: Vec<FieldViolation>,
    /// Bad fields beyond `listed`, counted only.
    pub unlisted: usize,
}

impl InvalidFields {
    /// One bad field.
    pub fn one(violation: FieldViolation) -> InvalidFields {
        InvalidFields {
            listed: vec![violation],
            unlisted: 0,
        }
    }

    /// The number of bad fields, listed or not.
    pub fn count(&self) -> usize {
        self.listed.len() + self.unlisted
    }
}

/// Why the caller's JWT was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerRejection {
    /// No `authorization: Bearer …` metadata.
    Missing,
    /// Malformed, badly signed, wrong algorithm or key, a claim missing or of
    /// the wrong type, `nbf` in the future, wrong `iss`/`aud`.
    Invalid,
    /// `exp` is past, beyond the leeway.
    Expired,
}

/// Why a presented token secret does not authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRejection {
    /// The token was revoked.
    Revoked,
    /// The token's `expire_time` has passed.
    Expired,
    /// Well-formed, but no such token exists.
    Unknown,
    /// Not a tokend secret: bad prefix, shape or checksum.
    Malformed(MalformedSecret),
}

/// The resource an error is about (google.rpc.ResourceInfo).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRef {
    /// The proto type, e.g. `tokend.v1.Token`.
    pub resource_type: &'static str,
    /// How the request named it, e.g. `tokens/42` or
    /// `serviceAccounts/ci/tokens/deploy`.
    pub name: String,
}

impl ResourceRef {
    /// A token named as the request named it.
    pub fn token(name: String) -> ResourceRef {
        ResourceRef {
            resource_type: "tokend.v1.Token",
            name,
        }
    }
}

/// Everything that can go wrong in a call, as the client should learn it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// One or more fields are invalid; nothing was changed.
    #[error("{}", describe_violations(.0))]
    InvalidArgument(InvalidFields),
    /// The caller's JWT was refused.
    #[error("{}", match .0 {
        CallerRejection::Missing => "missing bearer JWT in the authorization metadata",
        CallerRejection::Invalid => "the bearer JWT is not valid",
        CallerRejection::Expired => "the bearer JWT has expired",
    })]
    Unauthenticated(CallerRejection),
    /// A presented token secret does not authenticate.
    #[error("{}", match .0 {
        TokenRejection::Revoked => "the token has been revoked",
        TokenRejection::Expired => "the token has expired",
        TokenRejection::Unknown => "the token is not known",
        TokenRejection::Malformed(why) => why.describe(),
    })]
    TokenRejected(TokenRejection),
    /// The caller lacks a permission.
    #[error("the caller lacks the permission `{}`", .permission)]
    PermissionDenied {
        /// The permission that would allow the call.
        permission: &'static str,
    },
    /// A token that authenticates lacks scopes the caller required.
    #[error("the token lacks the required scope(s) {}", .missing.join(", "))]
    ScopeMissing {
        /// The required scopes the token does not hold, in request order.
        missing: Vec<String>,
    },
    /// No such token in the caller's organisation (also for other
    /// organisations' tokens, so that nothing leaks).
    #[error("token {} was not found", .0.name)]
    NotFound(ResourceRef),
    /// The token cannot be rotated: it is revoked, expired or already
    /// rotated (or a concurrent rotation won).
    #[error("token {} cannot be rotated: it is revoked, expired or already rotated", .0.name)]
    NotRotatable(ResourceRef),
    /// An active token already has this name.
    #[error("an active token named {} already exists", .0.name)]
    AlreadyExists(ResourceRef),
    /// The caller is over its rate limit.
    #[error("rate limit exceeded for {subject}; retry in {} ms", .retry_after.as_millis())]
    RateLimited {
        /// How long until a call would be admitted.
        retry_after: Duration,
        /// The rate-limited subject (`org_id/sub`).
        subject: String,
    },
    /// The database cannot be reached.
    #[error("the database is unavailable; retry shortly")]
    Unavailable {
        /// A suggested wait before retrying.
        retry_after: Duration,
        /// The cause, logged once and never shown to the client.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else: logged with its cause, shown as `INTERNAL` only.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn describe_violations(fields: &InvalidFields) -> String {
    match (fields.listed.as_slice(), fields.unlisted) {
        ([one], 0) => format!("invalid field {}: {}", one.location, one.message),
        (many, unlisted) => {
            let names: Vec<&str> = many.iter().map(|v| v.location.as_str()).collect();
            let mut text = format!("invalid fields: {}", names.join(", "));
            if unlisted > 0 {
                text.push_str(&format!(" and {unlisted} more"));
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_is_a_uri_whatever_the_request_id() {
        assert_eq!(
            problem_instance("0192f0c5-6c1e-7b7a-9d1e-3f5a2b6c7d8e"),
            "urn:tokend:request:0192f0c5-6c1e-7b7a-9d1e-3f5a2b6c7d8e"
        );
        assert_eq!(
            problem_instance("a b\"<%>#?/é~_."),
            "urn:tokend:request:a%20b%22%3C%25%3E%23%3F%2F%C3%A9~_."
        );
    }
}
