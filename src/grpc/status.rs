//! The one place that chooses gRPC codes: [`to_status`] maps every
//! [`ServiceError`] with an exhaustive match to a code, a problem kind and the
//! rich details that docs/errors.md catalogues.

use std::collections::HashMap;

use prost::Message;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::error::{CallerRejection, ServiceError, TokenRejection, problem_instance};
use crate::grpc::proto::{FieldError, Problem};

/// The ErrorInfo domain of every tokend error.
pub const ERROR_DOMAIN: &str = "tokend";

/// The location of the summary entry that stands for the bad fields not
/// listed one by one (see `MAX_REPORTED_VIOLATIONS`).
pub const UNLISTED_FIELDS_LOCATION: &str = "request";

/// One kind of problem: its stable type URI, title and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemKind {
    /// The gRPC code.
    pub code: Code,
    /// The HTTP status of the canonical mapping (google/rpc/code.proto).
    pub http_status: u16,
    /// ErrorInfo reason, UPPER_SNAKE.
    pub reason: &'static str,
    /// Short, stable title.
    pub title: &'static str,
    /// Stable URI reference (see docs/errors.md).
    pub type_uri: &'static str,
}

const fn kind(
    code: Code,
    http_status: u16,
    reason: &'static str,
    title: &'static str,
    type_uri: &'static str,
) -> ProblemKind {
    ProblemKind {
        code,
        http_status,
        reason,
        title,
        type_uri,
    }
}

/// The problem kind of an error. Exhaustive: a new error variant does not
/// compile until it has a code.
pub fn problem_kind(error: &ServiceError) -> ProblemKind {
    match error {
        ServiceError::InvalidArgument(_) => kind(
            Code::InvalidArgument,
            400,
            "INVALID_FIELD",
            "Invalid field",
            "urn:tokend:problem:invalid-field",
        ),
        ServiceError::Unauthenticated(CallerRejection::Missing) => kind(
            Code::Unauthenticated,
            401,
            "JWT_MISSING",
            "Missing JWT",
            "urn:tokend:problem:jwt-missing",
        ),
        ServiceError::Unauthenticated(CallerRejection::Invalid) => kind(
            Code::Unauthenticated,
            401,
            "JWT_INVALID",
            "Invalid JWT",
            "urn:tokend:problem:jwt-invalid",
        ),
        ServiceError::Unauthenticated(CallerRejection::Expired) => kind(
            Code::Unauthenticated,
            401,
            "JWT_EXPIRED",
            "Expired JWT",
            "urn:tokend:problem:jwt-expired",
        ),
        ServiceError::TokenRejected(TokenRejection::Revoked) => kind(
            Code::Unauthenticated,
            401,
            "TOKEN_REVOKED",
            "Token revoked",
            "urn:tokend:problem:token-revoked",
        ),
        ServiceError::TokenRejected(TokenRejection::Expired) => kind(
            Code::Unauthenticated,
            401,
            "TOKEN_EXPIRED",
            "Token expired",
            "urn:tokend:problem:token-expired",
        ),
        ServiceError::TokenRejected(TokenRejection::Unknown) => kind(
            Code::Unauthenticated,
            401,
            "TOKEN_UNKNOWN",
            "Token unknown",
            "urn:tokend:problem:token-unknown",
        ),
        ServiceError::TokenRejected(TokenRejection::Malformed(_)) => kind(
            Code::Unauthenticated,
            401,
            "TOKEN_MALFORMED",
            "Token malformed",
            "urn:tokend:problem:token-malformed",
        ),
        ServiceError::PermissionDenied { .. } => kind(
            Code::PermissionDenied,
            403,
            "PERMISSION_DENIED",
            "Permission denied",
            "urn:tokend:problem:permission-denied",
        ),
        ServiceError::ScopeMissing { .. } => kind(
            Code::PermissionDenied,
            403,
            "TOKEN_SCOPE_MISSING",
            "Token scope missing",
            "urn:tokend:problem:token-scope-missing",
        ),
        ServiceError::NotFound(_) => kind(
            Code::NotFound,
            404,
            "TOKEN_NOT_FOUND",
            "Token not found",
            "urn:tokend:problem:token-not-found",
        ),
        ServiceError::AlreadyExists(_) => kind(
            Code::AlreadyExists,
            409,
            "TOKEN_ALREADY_EXISTS",
            "Token already exists",
            "urn:tokend:problem:token-already-exists",
        ),
        ServiceError::NotRotatable(_) => kind(
            Code::FailedPrecondition,
            409,
            "TOKEN_NOT_ROTATABLE",
            "Token not rotatable",
            "urn:tokend:problem:token-not-rotatable",
        ),
        ServiceError::RateLimited { .. } => kind(
            Code::ResourceExhausted,
            429,
            "RATE_LIMITED",
            "Rate limited",
            "urn:tokend:problem:rate-limited",
        ),
        ServiceError::Unavailable { .. } => kind(
            Code::Unavailable,
            503,
            "DATABASE_UNAVAILABLE",
            "Database unavailable",
            "urn:tokend:problem:database-unavailable",
        ),
        ServiceError::Internal(_) => kind(
            Code::Internal,
            500,
            "INTERNAL",
            "Internal error",
            "urn:tokend:problem:internal",
        ),
    }
}

/// Turns a domain error into a status carrying `tokend.v1.Problem`,
/// `ErrorInfo`, `RequestInfo` and, where they apply, `BadRequest`,
/// `ResourceInfo`, `RetryInfo` and `QuotaFailure`. Internal and unavailable
/// errors are logged here, once, with their cause.
pub fn to_status(error: &ServiceError, request_id: &str) -> Status {
    let problem_kind = problem_kind(error);
    let message = error.to_string();
    let mut details = ErrorDetails::new();
    let mut metadata: HashMap<String, String> = HashMap::new();
    let mut field_errors: Vec<FieldError> = Vec::new();

    match error {
        ServiceError::InvalidArgument(fields) => {
            for violation in &fields.listed {
                details.add_bad_request_violation(&violation.location, &violation.message);
                field_errors.push(FieldError {
                    location: violation.location.clone(),
                    message: violation.message.clone(),
                    value: violation.value.clone(),
                });
            }
            if fields.unlisted > 0 {
                // One summary entry in BadRequest and Problem.errors; the
                // legacy map is field → message and gets none.
                let summary = format!("{} more invalid field(s) not listed", fields.unlisted);
                details.add_bad_request_violation(UNLISTED_FIELDS_LOCATION, &summary);
                field_errors.push(FieldError {
                    location: UNLISTED_FIELDS_LOCATION.to_owned(),
                    message: summary,
                    value: String::new(),
                });
            }
            metadata.insert("fieldCount".to_owned(), fields.count().to_string());
        }
        ServiceError::Unauthenticated(_) | ServiceError::TokenRejected(_) => {}
        ServiceError::PermissionDenied { permission } => {
            metadata.insert("permission".to_owned(), (*permission).to_owned());
        }
        ServiceError::ScopeMissing { missing } => {
            metadata.insert("missingScopes".to_owned(), missing.join(","));
        }
        ServiceError::NotFound(resource)
        | ServiceError::AlreadyExists(resource)
        | ServiceError::NotRotatable(resource) => {
            details.set_resource_info(resource.resource_type, &resource.name, "", &message);
            metadata.insert("resourceName".to_owned(), resource.name.clone());
        }
        ServiceError::RateLimited {
            retry_after,
            subject,
        } => {
            details.set_retry_info(Some(*retry_after));
            details.add_quota_failure_violation(subject, "per-caller request rate exceeded");
            metadata.insert(
                "retryAfterMs".to_owned(),
                retry_after.as_millis().to_string(),
            );
            metadata.insert("subject".to_owned(), subject.clone());
        }
        ServiceError::Unavailable {
            retry_after,
            source,
        } => {
            tracing::warn!(request_id, error = %source, "database unavailable");
            details.set_retry_info(Some(*retry_after));
            metadata.insert(
                "retryAfterMs".to_owned(),
                retry_after.as_millis().to_string(),
            );
        }
        ServiceError::Internal(source) => {
            tracing::error!(request_id, error = %source, cause = ?source.source().map(ToString::to_string), "internal error");
        }
    }

    details.set_error_info(problem_kind.reason, ERROR_DOMAIN, metadata);
    details.set_request_info(request_id, "");
    build_status(problem_kind, &message, request_id, details, field_errors)
}

/// Assembles the status: tonic-types encodes the standard details, then the
/// `Problem` is appended to the decoded `google.rpc.Status` (tonic-types has
/// no slot for a custom detail) and the whole is re-encoded.
/// The deprecated `Problem.details` map (field → message) holds the bad
/// fields only, never the summary entry of unlisted ones.
pub fn build_status(
    problem_kind: ProblemKind,
    message: &str,
    request_id: &str,
    details: ErrorDetails,
    field_errors: Vec<FieldError>,
) -> Status {
    #[allow(deprecated)]
    let problem = Problem {
        r#type: problem_kind.type_uri.to_owned(),
        title: problem_kind.title.to_owned(),
        status: i32::from(problem_kind.http_status),
        detail: message.to_owned(),
        instance: problem_instance(request_id),
        request_id: request_id.to_owned(),
        details: field_errors
            .iter()
            .filter(|e| e.location != UNLISTED_FIELDS_LOCATION)
            .map(|e| (e.location.clone(), e.message.clone()))
            .collect(),
        errors: field_errors,
        error: message.to_owned(),
    };
    let standard = Status::with_error_details(problem_kind.code, message, details);
    let mut encoded = match tonic_types::pb::Status::decode(standard.details()) {
        Ok(decoded) => decoded,
        // Cannot happen (we just encoded it); fall back to a status without
        // the standard details rather than failing the response.
        Err(_) => tonic_types::pb::Status {
            code: problem_kind.code as i32,
            message: message.to_owned(),
            details: Vec::new(),
        },
    };
    if let Ok(any) = prost_types::Any::from_msg(&problem) {
        encoded.details.insert(0, any);
    }
    Status::with_details(problem_kind.code, message, encoded.encode_to_vec().into())
}

/// Describes a failure tonic produced before any handler ran (unknown
/// method, undecodable or oversized message): the code stays tonic's, and
/// the details get a `Problem`, `ErrorInfo` (reason `REQUEST_REJECTED`,
/// metadata `grpcCode`) and `RequestInfo` like every other failure. The HTTP
/// status follows the canonical mapping of google/rpc/code.proto.
pub fn transport_status(code: Code, message: &str, request_id: &str) -> Status {
    let http_status = match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    };
    let problem_kind = ProblemKind {
        code,
        http_status,
        reason: "REQUEST_REJECTED",
        title: "Request rejected by the transport",
        type_uri: "urn:tokend:problem:request-rejected",
    };
    let mut details = ErrorDetails::new();
    let metadata = HashMap::from([("grpcCode".to_owned(), format!("{code:?}"))]);
    details.set_error_info(problem_kind.reason, ERROR_DOMAIN, metadata);
    details.set_request_info(request_id, "");
    build_status(problem_kind, message, request_id, details, Vec::new())
}
