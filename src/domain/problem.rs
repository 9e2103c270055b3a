//! The face-neutral description of a failure: what every face (the gRPC
//! status details, the `/v1/` problem+json, the seed endpoints' envelopes,
//! the metrics endpoint) says about one [`ServiceError`]. [`problem_kind`]
//! is the one exhaustive table of type URI, title, HTTP status and reason;
//! [`Problem::of`] adds the occurrence (detail, field errors, instance,
//! request id, retry wait, resource). Each face only chooses its own code and
//! envelope from this value, so that two faces can never disagree.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::domain::error::{
    CallerRejection, FieldViolation, ResourceRef, ServiceError, TokenRejection, problem_instance,
};

/// The location of the summary entry that stands for the bad fields not
/// listed one by one.
pub const UNLISTED_FIELDS_LOCATION: &str = "request";

/// What a throttled caller's quota violation says.
pub const RATE_QUOTA_DESCRIPTION: &str = "per-caller request rate exceeded";

/// One kind of problem: its stable type URI, title, HTTP status and reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemKind {
    /// The HTTP status (the canonical mapping of google/rpc/code.proto).
    pub http_status: u16,
    /// ErrorInfo reason, UPPER_SNAKE.
    pub reason: &'static str,
    /// Short, stable title.
    pub title: &'static str,
    /// Stable URI reference (see docs/errors.md).
    pub type_uri: &'static str,
}

const fn kind(
    http_status: u16,
    reason: &'static str,
    title: &'static str,
    type_uri: &'static str,
) -> ProblemKind {
    ProblemKind {
        http_status,
        reason,
        title,
        type_uri,
    }
}

/// A scrape without any bearer token (the metrics endpoint only: every other
/// route authenticates its caller by JWT, whose absence is `JWT_MISSING`).
pub const TOKEN_MISSING: ProblemKind = kind(
    401,
    "TOKEN_MISSING",
    "Token missing",
    "urn:tokend:problem:token-missing",
);

/// No route has the request's path.
pub const ROUTE_NOT_FOUND: ProblemKind = kind(
    404,
    "ROUTE_NOT_FOUND",
    "Route not found",
    "urn:tokend:problem:route-not-found",
);

/// The path has routes, but not for the request's method.
pub const METHOD_NOT_ALLOWED: ProblemKind = kind(
    405,
    "METHOD_NOT_ALLOWED",
    "Method not allowed",
    "urn:tokend:problem:method-not-allowed",
);

/// The problem kind of an error. Exhaustive: a new error variant does not
/// compile until it has a kind.
pub fn problem_kind(error: &ServiceError) -> ProblemKind {
    match error {
        ServiceError::InvalidArgument(_) => kind(
            400,
            "INVALID_FIELD",
            "Invalid field",
            "urn:tokend:problem:invalid-field",
        ),
        ServiceError::Unauthenticated(CallerRejection::Missing) => kind(
            401,
            "JWT_MISSING",
            "Missing JWT",
            "urn:tokend:problem:jwt-missing",
        ),
        ServiceError::Unauthenticated(CallerRejection::Invalid) => kind(
            401,
            "JWT_INVALID",
            "Invalid JWT",
            "urn:tokend:problem:jwt-invalid",
        ),
        ServiceError::Unauthenticated(CallerRejection::Expired) => kind(
            401,
            "JWT_EXPIRED",
            "Expired JWT",
            "urn:tokend:problem:jwt-expired",
        ),
        ServiceError::TokenRejected(TokenRejection::Revoked) => kind(
            401,
            "TOKEN_REVOKED",
            "Token revoked",
            "urn:tokend:problem:token-revoked",
        ),
        ServiceError::TokenRejected(TokenRejection::Expired) => kind(
            401,
            "TOKEN_EXPIRED",
            "Token expired",
            "urn:tokend:problem:token-expired",
        ),
        ServiceError::TokenRejected(TokenRejection::Unknown) => kind(
            401,
            "TOKEN_UNKNOWN",
            "Token unknown",
            "urn:tokend:problem:token-unknown",
        ),
        ServiceError::TokenRejected(TokenRejection::Malformed(_)) => kind(
            401,
            "TOKEN_MALFORMED",
            "Token malformed",
            "urn:tokend:problem:token-malformed",
        ),
        ServiceError::PermissionDenied { .. } => kind(
            403,
            "PERMISSION_DENIED",
            "Permission denied",
            "urn:tokend:problem:permission-denied",
        ),
        ServiceError::ScopeMissing { .. } => kind(
            403,
            "TOKEN_SCOPE_MISSING",
            "Token scope missing",
            "urn:tokend:problem:token-scope-missing",
        ),
        ServiceError::NotFound(_) => kind(
            404,
            "TOKEN_NOT_FOUND",
            "Token not found",
            "urn:tokend:problem:token-not-found",
        ),
        ServiceError::AlreadyExists(_) => kind(
            409,
            "TOKEN_ALREADY_EXISTS",
            "Token already exists",
            "urn:tokend:problem:token-already-exists",
        ),
        ServiceError::NotRotatable(_) => kind(
            409,
            "TOKEN_NOT_ROTATABLE",
            "Token not rotatable",
            "urn:tokend:problem:token-not-rotatable",
        ),
        ServiceError::RateLimited { .. } => kind(
            429,
            "RATE_LIMITED",
            "Rate limited",
            "urn:tokend:problem:rate-limited",
        ),
        ServiceError::Unavailable { .. } => kind(
            503,
            "DATABASE_UNAVAILABLE",
            "Database unavailable",
            "urn:tokend:problem:database-unavailable",
        ),
        ServiceError::Internal(_) => kind(
            500,
            "INTERNAL",
            "Internal error",
            "urn:tokend:problem:internal",
        ),
    }
}

/// One failure, as every face describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Type, title, HTTP status and reason.
    pub kind: ProblemKind,
    /// What happened (the gRPC status message).
    pub detail: String,
    /// This occurrence (`urn:tokend:request:<request id>`).
    pub instance: String,
    /// The request's id.
    pub request_id: String,
    /// The bad fields, listed, then one summary entry (location
    /// [`UNLISTED_FIELDS_LOCATION`]) for those not listed.
    pub errors: Vec<FieldViolation>,
    /// ErrorInfo metadata.
    pub metadata: BTreeMap<String, String>,
    /// How long to wait before retrying (throttled, unavailable).
    pub retry_after: Option<Duration>,
    /// The resource the failure is about (not found, already exists).
    pub resource: Option<ResourceRef>,
    /// The throttled subject (rate limited).
    pub quota_subject: Option<String>,
}

impl Problem {
    /// A problem of `kind` without fields or metadata.
    pub fn new(kind: ProblemKind, detail: impl Into<String>, request_id: &str) -> Problem {
        Problem {
            kind,
            detail: detail.into(),
            instance: problem_instance(request_id),
            request_id: request_id.to_owned(),
            errors: Vec::new(),
            metadata: BTreeMap::new(),
            retry_after: None,
            resource: None,
            quota_subject: None,
        }
    }

    /// What every face says about `error` in request `request_id`.
    pub fn of(error: &ServiceError, request_id: &str) -> Problem {
        let mut problem = Problem::new(problem_kind(error), error.to_string(), request_id);
        match error {
            ServiceError::InvalidArgument(fields) => {
                problem.errors.extend(fields.listed.iter().cloned());
                if fields.unlisted > 0 {
                    // One summary entry in BadRequest and Problem.errors;
                    // the legacy map is field → message and gets none.
                    problem.errors.push(FieldViolation {
                        location: UNLISTED_FIELDS_LOCATION.to_owned(),
                        message: format!("{} more invalid field(s) not listed", fields.unlisted),
                        value: String::new(),
                        received_json: None,
                    });
                }
                problem
                    .metadata
                    .insert("fieldCount".to_owned(), fields.count().to_string());
            }
            ServiceError::Unauthenticated(_)
            | ServiceError::TokenRejected(_)
            | ServiceError::Internal(_) => {}
            ServiceError::PermissionDenied { permission } => {
                problem
                    .metadata
                    .insert("permission".to_owned(), (*permission).to_owned());
            }
            ServiceError::ScopeMissing { missing } => {
                problem
                    .metadata
                    .insert("missingScopes".to_owned(), missing.join(","));
            }
            ServiceError::NotFound(resource)
            | ServiceError::AlreadyExists(resource)
            | ServiceError::NotRotatable(resource) => {
                problem
                    .metadata
                    .insert("resourceName".to_owned(), resource.name.clone());
                problem.resource = Some(resource.clone());
            }
            ServiceError::RateLimited {
                retry_after,
                subject,
            } => {
                problem.metadata.insert(
                    "retryAfterMs".to_owned(),
                    retry_after.as_millis().to_string(),
                );
                problem
                    .metadata
                    .insert("subject".to_owned(), subject.clone());
                problem.retry_after = Some(*retry_after);
                problem.quota_subject = Some(subject.clone());
            }
            ServiceError::Unavailable { retry_after, .. } => {
                problem.metadata.insert(
                    "retryAfterMs".to_owned(),
                    retry_after.as_millis().to_string(),
                );
                problem.retry_after = Some(*retry_after);
            }
        }
        problem
    }

    /// [`Problem::of`], after logging an unavailable database (warn) or an
    /// internal error (error, with its cause) once with the request id: the
    /// client sees no internals.
    pub fn logged(error: &ServiceError, request_id: &str) -> Problem {
        log_failure(error, request_id);
        Problem::of(error, request_id)
    }

    /// The legacy `details` map: bad field → message, without the summary
    /// entry of unlisted fields.
    pub fn legacy_details(&self) -> Vec<(&str, &str)> {
        self.errors
            .iter()
            .filter(|e| e.location != UNLISTED_FIELDS_LOCATION)
            .map(|e| (e.location.as_str(), e.message.as_str()))
            .collect()
    }

    /// `Retry-After` in whole seconds, rounded up and at least one (an
    /// earlier retry is refused again).
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after.map(|wait| {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            seconds.max(1)
        })
    }

    /// The problem+json document with every `tokend.v1.Problem` field
    /// (`requestId` camelCase, `errors[].value` a string) and `reason`.
    pub fn document(&self) -> Value {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|e| json!({"location": e.location, "message": e.message, "value": e.value}))
            .collect();
        json!({
            "type": self.kind.type_uri,
            "title": self.kind.title,
            "status": self.kind.http_status,
            "detail": self.detail,
            "instance": self.instance,
            "requestId": self.request_id,
            "errors": errors,
            "error": self.detail,
            "details": self.legacy_details_object(),
            "reason": self.kind.reason,
        })
    }

    /// The legacy `details` as a JSON object.
    pub fn legacy_details_object(&self) -> Value {
        let map: Map<String, Value> = self
            .legacy_details()
            .into_iter()
            .map(|(field, message)| (field.to_owned(), Value::String(message.to_owned())))
            .collect();
        Value::Object(map)
    }
}

/// Logs a failure the client cannot act on, once, with the request id.
pub fn log_failure(error: &ServiceError, request_id: &str) {
    match error {
        ServiceError::Unavailable { source, .. } => {
            tracing::warn!(request_id, error = %source, "database unavailable");
        }
        ServiceError::Internal(source) => {
            tracing::error!(request_id, error = %source, cause = ?source.source().map(ToString::to_string), "internal error");
        }
        ServiceError::InvalidArgument(_)
        | ServiceError::Unauthenticated(_)
        | ServiceError::TokenRejected(_)
        | ServiceError::PermissionDenied { .. }
        | ServiceError::ScopeMissing { .. }
        | ServiceError::NotFound(_)
        | ServiceError::AlreadyExists(_)
        | ServiceError::NotRotatable(_)
        | ServiceError::RateLimited { .. } => {}
    }
}
