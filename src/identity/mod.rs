//! Caller identity: verifying the bearer JWT into a [`Caller`], minting
//! development JWTs, and the zero-config HS256 secret file. No tonic here: the
//! gRPC JWT check and the REST face call [`JwtVerifier::verify_or_refresh`].
//!
//! [`Caller`]: crate::domain::Caller

pub mod hs_secret;
pub mod jwks;
pub mod jwks_url;
pub mod jwt;
pub mod secret_file;

pub use hs_secret::{HsSecret, HsSecretTooShort};
pub use jwks::{JwksError, KeyRing};
pub use jwks_url::{JwksUrl, PendingRefresh, RemoteKeyRing, UNKNOWN_KID_WAIT};
pub use jwt::{JwtVerifier, MintRequest, Unverified, mint_hs256};

/// The token of an `authorization: Bearer <token>` value (scheme matched
/// case-insensitively), for the gRPC JWT check, the REST face and the metrics endpoint
/// alike.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
