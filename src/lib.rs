//! tokend: a gRPC service that issues, verifies and revokes API tokens.
//!
//! Layers (see ARCHITECTURE.md): [`grpc`] is the tonic transport, [`domain`]
//! the core with no tonic or sea-orm in it, [`store`] the sea-orm storage.
//! [`identity`] verifies caller JWTs, [`metrics`] serves Prometheus figures,
//! [`rest`] serves the REST face (JSON over HTTP) beside the metrics,
//! [`server`] wires everything, [`config`] holds the command line, [`data_dir`]
//! keeps the data folder private.

pub mod admission;
pub mod config;
pub mod data_dir;
pub mod domain;
pub mod grpc;
pub mod http_listener;
pub mod identity;
pub mod metrics;
pub mod request_id;
pub mod rest;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod trace_context;
