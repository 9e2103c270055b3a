//! Token secrets: generation, parsing with a checksum, and hashing.
//!
//! A secret reads `<prefix><43 random base62 characters><6 base62 checksum
//! characters>`, for example `tkd_pat_` followed by 49 characters. The random
//! part carries 43 × log2(62) ≈ 256.03 bits from the OS's CSPRNG (or, in
//! tests, from any [`Entropy`]). The
//! checksum is the CRC-32 of prefix and random part, like GitHub's token
//! format: a mistyped or truncated secret is rejected without a database
//! read. Only the SHA-256 of the whole secret is stored.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::domain::entropy::RandomSourceError;
use crate::domain::entropy::{Entropy, SystemEntropy};
use crate::domain::kind::TokenKind;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Number of random base62 characters in a secret.
pub const RANDOM_LEN: usize = 43;
/// Number of base62 checksum characters at the end of a secret.
pub const CHECKSUM_LEN: usize = 6;
/// No valid secret is longer than this; longer input is refused before any
/// hashing or parsing work.
pub const MAX_SECRET_LEN: usize = 64;

/// A plaintext secret. It is shown to the client once, at creation, and never
/// logged: `Debug` prints only the family prefix.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    value: String,
    kind: TokenKind,
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSecret({}<redacted>)", self.kind.secret_prefix())
    }
}

/// The SHA-256 of a secret: what the database stores and looks up. Not a
/// secret in the cryptographic sense, but nothing logs it either.
#[derive(Clone, Copy)]
pub struct TokenHash([u8; 32]);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl PartialEq for TokenHash {
    /// Constant-time, so that comparing hashes in memory leaks no timing.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for TokenHash {}

impl TokenHash {
    /// The raw 32 bytes, for the store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a hash read from the store; `None` if it is not 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<TokenHash> {
        <[u8; 32]>::try_from(bytes).ok().map(TokenHash)
    }
}

/// Why a presented string is not a well-formed secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedSecret {
    /// Empty input.
    Empty,
    /// Longer than any secret.
    TooLong,
    /// No known family prefix.
    UnknownPrefix,
    /// Wrong length or characters after the prefix.
    BadBody,
    /// The checksum does not match: a typo or a truncated copy.
    BadChecksum,
}

impl MalformedSecret {
    /// A description that never repeats the secret.
    pub const fn describe(self) -> &'static str {
        match self {
            MalformedSecret::Empty => "the secret is empty",
            MalformedSecret::TooLong => "the secret is longer than any tokend secret",
            MalformedSecret::UnknownPrefix => "the secret has no known tokend prefix",
            MalformedSecret::BadBody => "the secret has the wrong length or characters",
            MalformedSecret::BadChecksum => "the secret's checksum does not match (a typo?)",
        }
    }
}

impl TokenSecret {
    /// Makes a new secret of `kind` from the OS's CSPRNG.
    pub fn generate(kind: TokenKind) -> Result<TokenSecret, RandomSourceError> {
        TokenSecret::generate_from(kind, &SystemEntropy)
    }

    /// Makes a new secret of `kind` from `entropy`.
    pub fn generate_from(
        kind: TokenKind,
        entropy: &dyn Entropy,
    ) -> Result<TokenSecret, RandomSourceError> {
        let mut random = String::with_capacity(RANDOM_LEN);
        let mut buffer = [0u8; 64];
        while random.len() < RANDOM_LEN {
            entropy.fill(&mut buffer)?;
            // Rejection sampling: 248 = 4 × 62, so accepted bytes map
            // uniformly onto the alphabet.
            for byte in buffer.iter().copied().filter(|b| *b < 248) {
                if random.len() == RANDOM_LEN {
                    break;
                }
                random.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
        let prefix = kind.secret_prefix();
        let mut value = String::with_capacity(prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
        value.push_str(prefix);
        value.push_str(&random);
        value.extend(checksum(prefix, &random).map(char::from));
        Ok(TokenSecret { value, kind })
    }

    /// Parses a presented secret, checking prefix, shape and checksum. Does no
    /// I/O; refuses oversized input before looking at it.
    pub fn parse(presented: &str) -> Result<TokenSecret, MalformedSecret> {
        if presented.is_empty() {
            return Err(MalformedSecret::Empty);
        }
        if presented.len() > MAX_SECRET_LEN {
            return Err(MalformedSecret::TooLong);
        }
        let (kind, body) = TokenKind::ALL
            .into_iter()
            .find_map(|kind| {
                presented
                    .strip_prefix(kind.secret_prefix())
                    .map(|body| (kind, body))
            })
            .ok_or(MalformedSecret::UnknownPrefix)?;
        if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(MalformedSecret::BadBody);
        }
        let (random, presented_checksum) = body.split_at(RANDOM_LEN);
        let expected = checksum(kind.secret_prefix(), random);
        if !bool::from(expected.as_slice().ct_eq(presented_checksum.as_bytes())) {
            return Err(MalformedSecret::BadChecksum);
        }
        Ok(TokenSecret {
            value: presented.to_owned(),
            kind,
        })
    }

    /// The family the prefix names.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The plaintext, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The hash the store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.value.as_bytes()).into())
    }
}

/// The checksum's base62 digits: a fixed array, so that checking a presented
/// secret (the AuthenticateToken hot path) allocates nothing for it.
fn checksum(prefix: &str, random: &str) -> [u8; CHECKSUM_LEN] {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix.as_bytes());
    hasher.update(random.as_bytes());
    let mut value = hasher.finalize();
    let mut digits = [b'0'; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_parse_and_typos_do_not() -> Result<(), Box<dyn std::error::Error>> {
        for kind in TokenKind::ALL {
            let secret = TokenSecret::generate(kind)?;
            let text = secret.expose().to_owned();
            assert!(text.starts_with(kind.secret_prefix()));
            assert_eq!(TokenSecret::parse(&text), Ok(secret.clone()));
            // Change one character of the random part.
            let mut chars: Vec<char> = text.chars().collect();
            let at = kind.secret_prefix().len() + 5;
            chars[at] = if chars[at] == 'a' { 'b' } else { 'a' };
            let typo: String = chars.into_iter().collect();
            assert_eq!(TokenSecret::parse(&typo), Err(MalformedSecret::BadChecksum));
            assert!(!format!("{secret:?}").contains(&text[kind.secret_prefix().len()..]));
        }
        Ok(())
    }

    #[test]
    fn oversized_and_foreign_input_is_malformed() {
        assert_eq!(TokenSecret::parse(""), Err(MalformedSecret::Empty));
        assert_eq!(
            TokenSecret::parse(&"x".repeat(65_536)),
            Err(MalformedSecret::TooLong)
        );
        assert_eq!(
            TokenSecret::parse("ghp_abc"),
            Err(MalformedSecret::UnknownPrefix)
        );
        assert_eq!(
            TokenSecret::parse("tkd_pat_short"),
            Err(MalformedSecret::BadBody)
        );
    }
}
