//! Caller identity: verifying the bearer JWT into a [`Caller`], minting
//! development JWTs, and the zero-config HS256 secret file. No tonic here: the
//! gRPC interceptor calls [`JwtVerifier::verify`].

pub mod jwks;
pub mod jwt;
pub mod secret_file;

pub use jwks::{JwksError, KeyRing};
pub use jwt::{JwtVerifier, MintRequest, mint_hs256};
