//! tokend's integration suite: one binary, real tonic clients over real
//! sockets, each test with its own database. Every backend-sensitive test
//! runs on SQLite and on PostgreSQL (see `support::Backend`).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

mod admission_race;
mod bulk_revoke;
mod caller_jwt;
mod dashboards;
mod data_folder;
mod errors;
mod filters_and_scopes;
mod freshness;
mod hardening;
mod http_client;
mod identity;
mod jwks_url;
mod lifecycle;
mod listener_limits;
mod metrics;
mod operations;
mod postgres;
mod rest;
mod rotation;
mod seed;
mod tracing_export;
