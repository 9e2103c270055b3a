//! The domain core: token families, secrets, callers, requests and their
//! validation, the permission model and the token lifecycle. Nothing here knows about tonic or
//! sea-orm; the gRPC layer converts into these types and the store implements
//! [`repository::TokenRepository`].

pub mod audit;
pub mod audit_log;
pub mod bulk_revoke;
pub mod caller;
pub mod clock;
pub mod entropy;
pub mod error;
pub mod kind;
pub mod last_use;
pub mod leaked;
pub mod lifecycle;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod pagination;
pub mod policy;
pub mod problem;
pub mod repository;
pub mod request;
pub mod revoked_use;
pub mod rotation;
pub mod secret;
pub mod token;
pub mod validation;

#[cfg(test)]
mod tests;

pub use audit::{AuditEvent, AuditEventType};
pub use caller::{Caller, Permission, Role};
pub use clock::{Clock, ManualClock, SystemClock};
pub use entropy::{Entropy, SeededEntropy, SystemEntropy};
pub use error::{FieldViolation, ResourceRef, ServiceError, TokenRejection};
pub use kind::TokenKind;
pub use last_use::LastUseRecorder;
pub use lifecycle::TokenLifecycle;
pub use pagination::PageTokenKey;
pub use request::AcceptedFamilies;
pub use secret::{TokenHash, TokenSecret};
pub use token::Token;
