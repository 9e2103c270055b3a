//! A presented token secret (AuthenticateToken, the metrics endpoint) and
//! AuthenticateToken's required scopes.

use crate::domain::error::{InvalidFields, TokenRejection};
use crate::domain::kind::TokenKind;
use crate::domain::secret::TokenSecret;
use crate::domain::validation::{self, Violations};

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

/// AuthenticateToken's fields as received. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct AuthenticateInput {
    /// `secret`, as presented.
    pub secret: String,
    /// `required_scopes`.
    pub required_scopes: Vec<String>,
}

impl AuthenticateInput {
    /// A presented secret with no required scope.
    pub fn secret(secret: impl Into<String>) -> AuthenticateInput {
        AuthenticateInput {
            secret: secret.into(),
            required_scopes: Vec::new(),
        }
    }
}

impl std::fmt::Debug for AuthenticateInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateInput")
            .field("secret", &"<redacted>")
            .field("required_scopes", &self.required_scopes)
            .finish()
    }
}

/// The scopes a token must hold for AuthenticateToken to accept it, each
/// well-formed, without repeats, in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredScopes(Vec<String>);

impl RequiredScopes {
    /// The required scopes that `held` lacks, in request order.
    pub fn missing_from(&self, held: &[String]) -> Vec<String> {
        self.0
            .iter()
            .filter(|scope| !held.contains(scope))
            .cloned()
            .collect()
    }
}

/// AuthenticateToken's `required_scopes`: validated like a token's `scopes`
/// (at most 50, each 1–64 of `a-z 0-9 _ : . -`). The secret is parsed
/// separately ([`parse_presented_secret`]): a bad secret is a rejected
/// token, not a bad field.
pub fn parse_required_scopes(scopes: Vec<String>) -> Result<RequiredScopes, InvalidFields> {
    let mut violations = Violations::default();
    validation::check_scopes(&mut violations, "required_scopes", &scopes);
    violations.into_result()?;
    let mut unique: Vec<String> = Vec::with_capacity(scopes.len());
    for scope in scopes {
        if !unique.contains(&scope) {
            unique.push(scope);
        }
    }
    Ok(RequiredScopes(unique))
}
