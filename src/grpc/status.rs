//! The one place that chooses gRPC codes: [`grpc_code`] maps every
//! [`ServiceError`] with an exhaustive match to a code; [`to_status`] turns
//! the face-neutral [`DomainProblem`] of the error into the rich details that
//! docs/errors.md catalogues.

use std::collections::HashMap;

use prost::Message;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::error::ServiceError;
use crate::domain::problem::{Problem as DomainProblem, ProblemKind, RATE_QUOTA_DESCRIPTION};
use crate::grpc::proto::{FieldError, Problem};

/// The ErrorInfo domain of every tokend error.
pub const ERROR_DOMAIN: &str = "tokend";

pub use crate::domain::problem::UNLISTED_FIELDS_LOCATION;

/// The gRPC code of an error: the one place that chooses it. Exhaustive: a
/// new error variant does not compile until it has a code.
pub fn grpc_code(error: &ServiceError) -> Code {
    match error {
        ServiceError::InvalidArgument(_) => Code::InvalidArgument,
        ServiceError::Unauthenticated(_) | ServiceError::TokenRejected(_) => Code::Unauthenticated,
        ServiceError::PermissionDenied { .. } | ServiceError::ScopeMissing { .. } => {
            Code::PermissionDenied
        }
        ServiceError::NotFound(_) => Code::NotFound,
        ServiceError::AlreadyExists(_) => Code::AlreadyExists,
        ServiceError::NotRotatable(_) => Code::FailedPrecondition,
        ServiceError::RateLimited { .. } => Code::ResourceExhausted,
        ServiceError::Unavailable { .. } => Code::Unavailable,
        ServiceError::Internal(_) => Code::Internal,
    }
}

/// Turns a domain error into a status carrying `tokend.v1.Problem`,
/// `ErrorInfo`, `RequestInfo` and, where they apply, `BadRequest`,
/// `ResourceInfo`, `RetryInfo` and `QuotaFailure`, all read from the one
/// face-neutral [`DomainProblem`]. Internal and unavailable errors are
/// logged here, once, with their cause.
pub fn to_status(error: &ServiceError, request_id: &str) -> Status {
    let problem = DomainProblem::logged(error, request_id);
    status_of(grpc_code(error), &problem)
}

/// The status of `problem` with `code`: the standard details and the
/// `Problem`, each field read from `problem`.
pub fn status_of(code: Code, problem: &DomainProblem) -> Status {
    let mut details = ErrorDetails::new();
    for violation in &problem.errors {
        details.add_bad_request_violation(&violation.location, &violation.message);
    }
    if let Some(resource) = &problem.resource {
        details.set_resource_info(resource.resource_type, &resource.name, "", &problem.detail);
    }
    if problem.retry_after.is_some() {
        details.set_retry_info(problem.retry_after);
    }
    if let Some(subject) = &problem.quota_subject {
        details.add_quota_failure_violation(subject, RATE_QUOTA_DESCRIPTION);
    }
    let metadata: HashMap<String, String> = problem
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    details.set_error_info(problem.kind.reason, ERROR_DOMAIN, metadata);
    details.set_request_info(&problem.request_id, "");
    build_status(code, problem, details)
}

/// The `tokend.v1.Problem` message of `problem`. The deprecated
/// `Problem.details` map (field → message) holds the bad fields only, never
/// the summary entry of unlisted ones.
pub fn problem_message(problem: &DomainProblem) -> Problem {
    #[allow(deprecated)]
    Problem {
        r#type: problem.kind.type_uri.to_owned(),
        title: problem.kind.title.to_owned(),
        status: i32::from(problem.kind.http_status),
        detail: problem.detail.clone(),
        instance: problem.instance.clone(),
        request_id: problem.request_id.clone(),
        details: problem
            .legacy_details()
            .into_iter()
            .map(|(field, message)| (field.to_owned(), message.to_owned()))
            .collect(),
        errors: problem
            .errors
            .iter()
            .map(|e| FieldError {
                location: e.location.clone(),
                message: e.message.clone(),
                value: e.value.clone(),
            })
            .collect(),
        error: problem.detail.clone(),
    }
}

/// Assembles the status: tonic-types encodes the standard details, then the
/// `Problem` is appended to the decoded `google.rpc.Status` (tonic-types has
/// no slot for a custom detail) and the whole is re-encoded.
fn build_status(code: Code, problem: &DomainProblem, details: ErrorDetails) -> Status {
    let message = problem.detail.as_str();
    let standard = Status::with_error_details(code, message, details);
    let mut encoded = match tonic_types::pb::Status::decode(standard.details()) {
        Ok(decoded) => decoded,
        // Cannot happen (we just encoded it); fall back to a status without
        // the standard details rather than failing the response.
        Err(_) => tonic_types::pb::Status {
            code: code as i32,
            message: message.to_owned(),
            details: Vec::new(),
        },
    };
    if let Ok(any) = prost_types::Any::from_msg(&problem_message(problem)) {
        encoded.details.insert(0, any);
    }
    Status::with_details(code, message, encoded.encode_to_vec().into())
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
    let kind = ProblemKind {
        http_status,
        reason: "REQUEST_REJECTED",
        title: "Request rejected by the transport",
        type_uri: "urn:tokend:problem:request-rejected",
    };
    let mut problem = DomainProblem::new(kind, message, request_id);
    problem
        .metadata
        .insert("grpcCode".to_owned(), format!("{code:?}"));
    status_of(code, &problem)
}
