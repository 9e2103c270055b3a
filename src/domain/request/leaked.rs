//! RevokeTokenBySecret's request: a leaked secret, parsed like a presented
//! one, without any database read.

use crate::domain::error::InvalidFields;
use crate::domain::secret::TokenSecret;
use crate::domain::validation::{self, Violations};

/// RevokeTokenBySecret's fields as received. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct RevokeBySecretInput {
    /// `secret`, as presented.
    pub secret: String,
    /// `reason`.
    pub reason: String,
}

impl std::fmt::Debug for RevokeBySecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevokeBySecretInput")
            .field("secret", &"<redacted>")
            .field("reason", &self.reason)
            .finish()
    }
}

/// A valid RevokeTokenBySecret request: a well-formed secret (its `Debug`
/// prints nothing secret) and the reason to store.
#[derive(Debug)]
pub struct ValidRevokeBySecret {
    secret: TokenSecret,
    reason: Option<String>,
}

impl ValidRevokeBySecret {
    /// The secret and the reason.
    pub fn into_parts(self) -> (TokenSecret, Option<String>) {
        (self.secret, self.reason)
    }
}

/// RevokeTokenBySecret: `secret` must be a well-formed tokend secret (known
/// prefix, length, alphabet and checksum). A bad one is a field violation
/// on `secret` that says what is wrong and never echoes the value: the
/// string may be a real secret with a typo.
pub fn parse_revoke_by_secret(
    input: RevokeBySecretInput,
) -> Result<ValidRevokeBySecret, InvalidFields> {
    let mut violations = Violations::default();
    let secret = TokenSecret::parse(&input.secret).map_err(|malformed| {
        violations.push(
            "secret",
            &format!("must be a tokend secret: {}", malformed.describe()),
            "",
        )
    });
    let reason = validation::check_reason(&mut violations, &input.reason);
    let secret = violations.finish(secret)?;
    Ok(ValidRevokeBySecret { secret, reason })
}
