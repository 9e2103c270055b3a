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

/// One error body: its content type, the JSON and, for the AWS format, its
/// `x-amzn-ErrorType`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorBody {
    /// `application/problem+json` or `application/json`.
    pub content_type: &'static str,
    /// The document.
    pub json: Value,
    /// The AWS error type (the workspace API keys' format only).
    pub aws_error_type: Option<&'static str>,
}

/// The body for `problem` in `format`.
pub fn error_body(format: WireFormat, problem: &Problem) -> ErrorBody {
    let (content_type, json, aws_error_type) = match format {
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
    ErrorBody {
        content_type,
        json,
        aws_error_type,
    }
}

/// The response for `problem` in `format`.
pub fn error_response(format: WireFormat, problem: &Problem) -> Response<Body> {
    let ErrorBody {
        content_type,
        json: body,
        aws_error_type: aws_type,
    } = error_body(format, problem);
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
/// the JSON value received (a string unless the request's JSON carried
/// another type), or null when none is echoed (a secret, or none).
fn service_account(problem: &Problem) -> Value {
    let errors: Vec<Value> = problem
        .errors
        .iter()
        .map(|e| {
            let value = match &e.received_json {
                Some(received) => received.clone(),
                None if e.value.is_empty() => Value::Null,
                None => Value::String(e.value.clone()),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::domain::error::{
        CallerRejection, FieldViolation, InvalidFields, ResourceRef, ServiceError, TokenRejection,
    };
    use crate::domain::secret::MalformedSecret;
    use crate::grpc::proto;
    use crate::grpc::status::to_status;

    fn violation() -> impl Strategy<Value = FieldViolation> {
        ("[a-z_]{1,12}", "[ -~]{1,40}", "[ -~é…]{0,80}")
            .prop_map(|(location, message, value)| FieldViolation::new(location, message, &value))
    }

    fn service_error() -> impl Strategy<Value = ServiceError> {
        let resource = "[a-z0-9/]{1,30}".prop_map(ResourceRef::token);
        prop_oneof![
            (proptest::collection::vec(violation(), 1..=10), 0usize..5).prop_map(
                |(listed, unlisted)| ServiceError::InvalidArgument(InvalidFields {
                    listed,
                    unlisted
                })
            ),
            prop_oneof![
                Just(CallerRejection::Missing),
                Just(CallerRejection::Invalid),
                Just(CallerRejection::Expired)
            ]
            .prop_map(ServiceError::Unauthenticated),
            prop_oneof![
                Just(TokenRejection::Revoked),
                Just(TokenRejection::Expired),
                Just(TokenRejection::Unknown),
                Just(TokenRejection::Malformed(MalformedSecret::BadChecksum)),
                Just(TokenRejection::Malformed(MalformedSecret::Empty)),
            ]
            .prop_map(ServiceError::TokenRejected),
            prop_oneof![Just("user_app_keys"), Just("tokens_introspect")]
                .prop_map(|permission| ServiceError::PermissionDenied { permission }),
            proptest::collection::vec("[a-z:]{1,10}", 1..4)
                .prop_map(|missing| ServiceError::ScopeMissing { missing }),
            resource.clone().prop_map(ServiceError::NotFound),
            resource.clone().prop_map(ServiceError::AlreadyExists),
            resource.prop_map(ServiceError::NotRotatable),
            (0u64..100_000, "[a-z/]{1,20}").prop_map(|(ms, subject)| ServiceError::RateLimited {
                retry_after: Duration::from_millis(ms),
                subject,
            }),
            (0u64..100_000).prop_map(|ms| ServiceError::Unavailable {
                retry_after: Duration::from_millis(ms),
                source: "down".into(),
            }),
            Just(()).prop_map(|()| ServiceError::Internal("broken".into())),
        ]
    }

    /// The `tokend.v1.Problem` detail of a status.
    fn grpc_problem(status: &tonic::Status) -> proto::Problem {
        let decoded = tonic_types::pb::Status::decode(status.details()).expect("details");
        decoded
            .details
            .iter()
            .find_map(|any| any.to_msg::<proto::Problem>().ok())
            .expect("a Problem detail")
    }

    proptest! {
        /// The gRPC `Problem` detail and every REST body carry the same
        /// type, title, status, detail and errors: both are built from one
        /// `Problem` value.
        #[test]
        fn grpc_and_rest_bodies_agree(error in service_error(), request_id in "[ -~]{1,40}") {
            let grpc = grpc_problem(&to_status(&error, &request_id));
            let problem = Problem::of(&error, &request_id);
            let errors: Vec<Value> = grpc
                .errors
                .iter()
                .map(|e| json!({"location": e.location, "message": e.message, "value": e.value}))
                .collect();
            for format in [WireFormat::ProtoJson, WireFormat::ScrapeTokens, WireFormat::ServiceAccountTokens] {
                let body = error_body(format, &problem);
                prop_assert_eq!(body.content_type, PROBLEM_JSON);
                let json = body.json;
                prop_assert_eq!(&json["type"], &json!(grpc.r#type));
                prop_assert_eq!(&json["title"], &json!(grpc.title));
                prop_assert_eq!(&json["status"], &json!(grpc.status));
                prop_assert_eq!(&json["detail"], &json!(grpc.detail));
                prop_assert_eq!(&json["instance"], &json!(grpc.instance));
                prop_assert_eq!(&json["requestId"], &json!(grpc.request_id));
                let listed = json["errors"].as_array().cloned().unwrap_or_default();
                prop_assert_eq!(listed.len(), errors.len());
                for (rest, grpc) in listed.iter().zip(&errors) {
                    prop_assert_eq!(&rest["location"], &grpc["location"]);
                    prop_assert_eq!(&rest["message"], &grpc["message"]);
                    let value = grpc["value"].as_str().unwrap_or_default();
                    if format == WireFormat::ServiceAccountTokens && value.is_empty() {
                        prop_assert_eq!(&rest["value"], &Value::Null);
                    } else {
                        prop_assert_eq!(&rest["value"], &grpc["value"]);
                    }
                }
            }
            let full = error_body(WireFormat::ProtoJson, &problem).json;
            prop_assert_eq!(&full["errors"], &Value::Array(errors.clone()));
            #[allow(deprecated)]
            let legacy: serde_json::Map<String, Value> = grpc
                .details
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            prop_assert_eq!(&full["details"], &Value::Object(legacy));
            #[allow(deprecated)]
            let legacy_error = json!(grpc.error);
            prop_assert_eq!(&full["error"], &legacy_error);

            // The two other formats: the same status and detail.
            let personal = error_body(WireFormat::PersonalAccessTokens, &problem).json;
            let strings = personal["errors"].as_array().cloned().unwrap_or_default();
            if grpc.errors.is_empty() {
                prop_assert_eq!(strings, vec![json!(grpc.detail)]);
            } else {
                prop_assert_eq!(strings.len(), grpc.errors.len());
            }
            let aws = error_body(WireFormat::WorkspaceApiKeys, &problem);
            prop_assert_eq!(&aws.json["message"], &json!(grpc.detail));
            prop_assert!(aws.aws_error_type.is_some());
            let response = error_response(WireFormat::WorkspaceApiKeys, &problem);
            prop_assert_eq!(i32::from(response.status().as_u16()), grpc.status);
        }
    }
}
