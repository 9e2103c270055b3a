//! Admission: transport policy that decides whether a request may go on
//! before the core sees it. It knows callers and peer addresses, not token
//! rules, so it lives outside the core and both listeners share it.
//!
//! - [`gate`]: the one admission of both faces ([`Admission`]): schema
//!   ready, the peer's failed-auth budget, the bearer JWT, the caller's
//!   rate, in that order;
//! - [`caller`]: the per-caller call budget (by the JWT's `org_id` and
//!   `sub`);
//! - [`failed_auth`]: the per-address budget of failed authentications;
//! - [`forward_time`]: the time both count in, which a wall clock stepping
//!   back does not move back.

pub mod caller;
pub mod failed_auth;
pub mod forward_time;
pub mod gate;

pub use caller::CallerRateLimiter;
pub use failed_auth::FailedAuthLimiter;
pub use gate::{Admission, Decision, KeyWait};
