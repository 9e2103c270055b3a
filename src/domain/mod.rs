//! The domain core: token families, secrets, callers, validation, the
//! permission model and the token lifecycle. Nothing here knows about tonic or
//! sea-orm; the gRPC layer converts into these types and the store implements
//! [`repository::TokenRepository`].

pub mod audit;
pub mod caller;
pub mod clock;
pub mod error;
pub mod kind;
pub mod last_use;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod pagination;
pub mod repository;
pub mod secret;
pub mod service;
pub mod token;
pub mod validation;

#[cfg(test)]
mod tests;

pub use audit::{AuditEvent, AuditEventType};
pub use caller::{Caller, Permission};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{FieldViolation, ResourceRef, ServiceError, TokenRejection};
pub use kind::TokenKind;
pub use last_use::LastUseRecorder;
pub use pagination::PageTokenKey;
pub use secret::{TokenHash, TokenSecret};
pub use service::{AcceptedFamilies, TokenLifecycle};
pub use token::Token;
