//! Error details: decodes a status's `google.rpc.Status` and `Problem`,
//! asserting the invariants every error keeps.

use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use tokend::grpc::proto::Problem;

/// Decoded error details of a status.
#[derive(Debug)]
pub struct Details {
    pub code: Code,
    pub message: String,
    pub problem: Problem,
    pub reason: String,
    pub domain: String,
    pub metadata: std::collections::HashMap<String, String>,
    pub request_id: String,
    pub field_violations: Vec<(String, String)>,
    pub resource_name: Option<String>,
    pub retry_delay: Option<Duration>,
    pub quota_subjects: Vec<String>,
}

/// Decodes the details of `status` with tonic-types (standard details) and
/// prost (the Problem), asserting the invariants every error must keep.
pub fn details(status: &Status) -> Details {
    let standard = status.get_error_details();
    let raw =
        tonic_types::pb::Status::decode(status.details()).expect("google.rpc.Status in details");
    assert_eq!(
        raw.code,
        status.code() as i32,
        "google.rpc.Status code equals the gRPC code"
    );
    assert_eq!(
        raw.message,
        status.message(),
        "google.rpc.Status message equals the gRPC message"
    );
    let problems: Vec<Problem> = raw
        .details
        .iter()
        .filter(|any| any.type_url == "type.googleapis.com/tokend.v1.Problem")
        .map(|any| Problem::decode(any.value.as_slice()).expect("Problem decodes"))
        .collect();
    assert_eq!(problems.len(), 1, "exactly one Problem: {raw:?}");
    let mut seen = std::collections::HashSet::new();
    for any in &raw.details {
        assert!(
            seen.insert(any.type_url.clone()),
            "detail type {} appears twice",
            any.type_url
        );
    }
    let problem = problems.into_iter().next().expect("one problem");
    let info = standard.error_info().expect("ErrorInfo present");
    let request_info = standard.request_info().expect("RequestInfo present");
    assert_eq!(
        problem.detail,
        status.message(),
        "Problem.detail equals the status message"
    );
    assert_eq!(problem.request_id, request_info.request_id);
    let field_violations: Vec<(String, String)> = standard
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default();
    let problem_errors: Vec<(String, String)> = problem
        .errors
        .iter()
        .map(|e| (e.location.clone(), e.message.clone()))
        .collect();
    assert_eq!(
        field_violations, problem_errors,
        "BadRequest matches Problem.errors one to one"
    );
    Details {
        code: status.code(),
        message: status.message().to_owned(),
        reason: info.reason.clone(),
        domain: info.domain.clone(),
        metadata: info.metadata.clone(),
        request_id: request_info.request_id.clone(),
        field_violations,
        resource_name: standard.resource_info().map(|r| r.resource_name.clone()),
        retry_delay: standard.retry_info().and_then(|r| r.retry_delay),
        quota_subjects: standard
            .quota_failure()
            .map(|q| q.violations.iter().map(|v| v.subject.clone()).collect())
            .unwrap_or_default(),
        problem,
    }
}

/// Asserts `result` failed with `code` and `reason`; returns the details.
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Details {
    let status = match result {
        Ok(value) => panic!("expected {code:?}/{reason}, got OK: {value:?}"),
        Err(status) => status,
    };
    let details = details(&status);
    assert_eq!(details.code, code, "code of {status:?}");
    assert_eq!(details.reason, reason, "reason of {status:?}");
    assert_eq!(details.domain, "tokend");
    details
}
