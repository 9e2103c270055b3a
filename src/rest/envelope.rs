//! The error bodies of each wire format, every one built from the one
//! face-neutral [`Problem`] of the failure (the gRPC details are built from
//! the same value): the HTTP status is always `Problem.kind.http_status`;
//! only the envelope differs, as each family's existing clients parse it.
//! Every error response carries `x-request-id`, and `Retry-After` (whole
//! seconds) when the problem has a wait.

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::domain::problem::Problem;
use crate::request_id::REQUEST_ID_HEADER;
use crate::rest::routes::WireFormat;

/// The media type of RFC 9457 problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The media type of JSON.
pub const APPLICATION_JSON: &str = "application/json";
/// The header the AWS SDKs read an error's code from.
pub const AWS_ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

/// The response for `problem` in `format`.
pub fn error_response(format: WireFormat, problem: &Problem) -> Response<Body> {
    let (content_type, body, aws_type) = match format {
        WireFormat::ProtoJson | WireFormat::ScrapeTokens => {
            (PROBLEM_JSON, problem.document(), None)
        }
        WireFormat::PersonalAccessTokens => (APPLICATION_JSON, personal_access(problem), None),
        WireFormat::ServiceAccountTokens => (PROBLEM_JSON, service_account(problem), None),
        WireFormat::WorkspaceApiKeys => {
            let (error_type, body) = workspace(problem);
            (APPLICATION_JSON, body, Some(error_type))
        }
    };
    let mut response = json_response(
        problem.kind.http_status,
        content_type,
        &body,
        &problem.request_id,
    );
    let headers = response.headers_mut();
    if let Some(error_type) = aws_type {
        headers.insert(AWS_ERROR_TYPE_HEADER, HeaderValue::from_static(error_type));
    }
    if let Some(seconds) = problem.retry_after_seconds() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if problem.kind.http_status == 401 {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A JSON response with `x-request-id`.
pub fn json_response(
    status: u16,
    content_type: &'static str,
    body: &Value,
    request_id: &str,
) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    with_request_id(response, request_id)
}

/// A response without a body (204).
pub fn no_content(request_id: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    with_request_id(response, request_id)
}

/// Echoes the request id.
pub fn with_request_id(mut response: Response<Body>, request_id: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// `{"errors": ["…"]}`: one string per bad field (`location: message`),
/// else the detail.
fn personal_access(problem: &Problem) -> Value {
    let errors: Vec<String> = if problem.errors.is_empty() {
        vec![problem.detail.clone()]
    } else {
        problem
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.location, e.message))
            .collect()
    };
    json!({ "errors": errors })
}

/// problem+json with `errors` as `[{location, message, value}]`, `value`
/// the value received or null when none is echoed (a secret, or none).
fn service_account(problem: &Problem) -> Value {
    let errors: Vec<Value> = problem
        .errors
        .iter()
        .map(|e| {
            let value = if e.value.is_empty() {
                Value::Null
            } else {
                Value::String(e.value.clone())
            };
            json!({"location": e.location, "message": e.message, "value": value})
        })
        .collect();
    json!({
        "type": problem.kind.type_uri,
        "title": problem.kind.title,
        "status": problem.kind.http_status,
        "detail": problem.detail,
        "instance": problem.instance,
        "errors": errors,
        "requestId": problem.request_id,
        "reason": problem.kind.reason,
    })
}

/// The AWS REST-JSON error: its `x-amzn-ErrorType` (chosen by HTTP status,
/// which the problem kind fixed) and body.
fn workspace(problem: &Problem) -> (&'static str, Value) {
    let mut body = json!({ "message": problem.detail });
    let resource_id = problem
        .resource
        .as_ref()
        .map(|r| r.name.rsplit('/').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let error_type = match problem.kind.http_status {
        400 => {
            body["reason"] = json!("FIELD_VALIDATION_FAILED");
            body["fieldList"] = problem
                .errors
                .iter()
                .map(|e| json!({"name": e.location, "message": e.message}))
                .collect();
            "ValidationException"
        }
        401 => "UnauthorizedException",
        403 => "AccessDeniedException",
        404 => {
            body["resourceId"] = json!(resource_id);
            body["resourceType"] = json!("API_KEY");
            "ResourceNotFoundException"
        }
        409 => {
            body["resourceId"] = json!(resource_id);
            body["resourceType"] = json!("API_KEY");
            "ConflictException"
        }
        429 => "ThrottlingException",
        // 500, 503 and anything a later kind adds: the SDKs' server fault.
        _ => "InternalServerException",
    };
    (error_type, body)
}
