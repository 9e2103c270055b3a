//! Admission: transport policy that decides whether a request may go on
//! before the core sees it. It knows callers and peer addresses, not token
//! rules, so it lives outside the core and both listeners share it.
//!
//! - [`caller`]: the per-caller call budget (by the JWT's `org_id` and
//!   `sub`);
//! - [`failed_auth`]: the per-address budget of failed authentications.

pub mod caller;
pub mod failed_auth;

pub use caller::CallerRateLimiter;
pub use failed_auth::FailedAuthLimiter;
