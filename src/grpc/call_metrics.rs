//! gRPC calls into the operator figures: the request-context layer's
//! observations become [`Metrics::record_call`] with a `code` label from
//! tonic's fixed set of codes. This lives on the gRPC side so that the
//! metrics registry knows nothing of tonic.

use std::sync::Arc;
use std::time::Duration;

use crate::grpc::request_context::CallObserver;
use crate::metrics::{Metrics, ServedMethods};

/// Feeds the request-context layer's observations into [`Metrics`].
#[derive(Clone, Debug)]
pub struct RpcObserver {
    metrics: Arc<Metrics>,
    methods: Arc<ServedMethods>,
}

impl RpcObserver {
    /// Counts calls into `metrics`, labelled by `methods`.
    pub fn new(metrics: Arc<Metrics>, methods: ServedMethods) -> Self {
        RpcObserver {
            metrics,
            methods: Arc::new(methods),
        }
    }
}

impl CallObserver for RpcObserver {
    fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.metrics
            .record_call(&self.methods, method, code_label(code), elapsed);
    }
}

/// The `code` label: the code's name, without allocating per call.
fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{ServedMethodsError, UNKNOWN_METHOD};

    #[test]
    fn every_code_has_its_own_label() {
        let labels: std::collections::HashSet<&str> = (0..=16)
            .map(|n| code_label(tonic::Code::from_i32(n)))
            .collect();
        assert_eq!(labels.len(), 17);
        assert_eq!(
            code_label(tonic::Code::ResourceExhausted),
            "ResourceExhausted"
        );
    }

    #[test]
    fn served_methods_come_from_the_descriptors_and_nothing_else_is_a_label() {
        let mut methods = ServedMethods::default();
        methods
            .add_service(
                "grpc.health.v1.Health",
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            )
            .unwrap();
        methods
            .add_service(
                "tokend.v1.TokenService",
                crate::grpc::proto::FILE_DESCRIPTOR_SET,
            )
            .unwrap();
        assert_eq!(
            methods.label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            methods.label("/tokend.v1.TokenService/AuthenticateToken"),
            "/tokend.v1.TokenService/AuthenticateToken"
        );
        for path in [
            "/grpc.health.v1.Health/Check2",
            "/grpc.health.v1.Health/",
            "/tokend.v1.TokenService/authenticateToken",
            "/grpc.reflection.v1.ServerReflection/x",
            "",
        ] {
            assert_eq!(methods.label(path), UNKNOWN_METHOD, "{path:?}");
        }
        let err = methods
            .add_service("tokend.v1.Nope", crate::grpc::proto::FILE_DESCRIPTOR_SET)
            .unwrap_err();
        assert!(matches!(err, ServedMethodsError::Undescribed(_)));
    }
}
