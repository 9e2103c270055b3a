//! The gRPC transport (tonic only): generated code, conversion between proto
//! messages and domain types, the one place that turns domain errors into
//! statuses, the request-id layer (and the call figures it feeds) and the JWT
//! check around TokenService.

pub mod auth;
pub mod call_metrics;
pub mod convert;
pub mod handlers;
pub mod proto;
pub mod request_context;
pub mod status;
