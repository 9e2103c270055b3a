//! Hardening cases that the other modules lack: broken gRPC frames
//! on raw HTTP/2 connections, 1 ms deadlines on writes, 10 000 cancelled
//! calls against file descriptors and the pool, a flood beside a quiet
//! caller, rate-limiter memory, enumeration by id, oversized secrets and
//! messages, SQLite busy, and properties (proptest) of the secret format,
//! page tokens, validators, revoke and pagination. `docs/security.md` maps
//! its catalogue of attacks and faults onto these and the other modules'
//! tests.
//!
//! - `frames`: garbage, truncated and corrupted gRPC frames over raw HTTP/2.
//! - `jwt_headers`: `jku`, `x5u`, `x5c`, `jwk` and `typ` JWT headers.
//! - `deadlines`: 1 ms deadlines on writes; 10 000 cancelled calls against
//!   descriptors and the pool.
//! - `limits`: a flood beside a quiet caller, rate-limiter memory, oversized
//!   secrets and messages, SQLite busy.
//! - `enumeration`: another org's id and a missing id look the same.
//! - `properties`: proptest properties, and randomized revoke and
//!   pagination on a server.
//! - `page_tokens`: edited, forged and reused page tokens; replicas share
//!   the key.
//! - `stored_times`: the timestamp range, and stored times ordering as time.
//! - `text_fields`: control and format characters in every text field.
//! - `authentication`: another family's token at the metrics endpoint;
//!   recording a use never fails or delays authentication.
//! - `details`: `Problem.instance` from any request id; the real field count.

pub(crate) mod authentication;
mod deadlines;
mod details;
mod enumeration;
mod frames;
mod jwt_headers;
mod limits;
mod page_tokens;
mod properties;
mod stored_times;
mod text_fields;
