//! A presented token secret (AuthenticateToken, the metrics endpoint).

use crate::domain::error::TokenRejection;
use crate::domain::kind::TokenKind;
use crate::domain::secret::TokenSecret;

/// Which token families a presented secret may belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptedFamilies {
    /// Any family (AuthenticateToken).
    Any,
    /// Only this one (the metrics endpoint takes scrape tokens only).
    Only(TokenKind),
}

impl AcceptedFamilies {
    /// Whether a token of `kind` is acceptable.
    pub fn accepts(self, kind: TokenKind) -> bool {
        match self {
            AcceptedFamilies::Any => true,
            AcceptedFamilies::Only(accepted) => accepted == kind,
        }
    }
}

/// A presented secret (AuthenticateToken's `secret`, a scrape token on the
/// metrics endpoint): well-formed with a matching checksum, else
/// `Malformed`; of a family `accepted` excludes, `Unknown` (decided from the
/// prefix, so nothing about such a token is revealed). No I/O.
pub fn parse_presented_secret(
    presented: &str,
    accepted: AcceptedFamilies,
) -> Result<TokenSecret, TokenRejection> {
    let secret = TokenSecret::parse(presented).map_err(TokenRejection::Malformed)?;
    if accepted.accepts(secret.kind()) {
        Ok(secret)
    } else {
        Err(TokenRejection::Unknown)
    }
}
