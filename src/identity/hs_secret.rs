//! The HMAC key of HS256/384/512 caller JWTs, as a type that cannot hold an
//! empty or short key: every source (the flag, the zero-config file, a file
//! an operator placed) goes through [`HsSecret::new`], so no code path can
//! sign or verify with `""`.

/// An HS key of at least [`HsSecret::MIN_LEN`] bytes. `Debug` prints nothing
/// of it.
#[derive(Clone)]
pub struct HsSecret(Vec<u8>);

/// The key offered to [`HsSecret::new`] was too short.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be at least {min} bytes (it holds {len})", min = HsSecret::MIN_LEN)]
pub struct HsSecretTooShort {
    /// How many bytes it held.
    pub len: usize,
}

impl HsSecret {
    /// Shortest key accepted, in bytes: 256 bits when every byte is random,
    /// and what RFC 7518 asks of an HS256 key.
    pub const MIN_LEN: usize = 32;

    /// The key, if it is long enough.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<HsSecret, HsSecretTooShort> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(HsSecretTooShort { len: bytes.len() });
        }
        Ok(HsSecret(bytes))
    }

    /// The key's bytes, for the HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for HsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HsSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_short_keys_do_not_exist() {
        assert_eq!(
            HsSecret::new(Vec::new()).err(),
            Some(HsSecretTooShort { len: 0 })
        );
        assert_eq!(
            HsSecret::new(vec![b'k'; 31]).err(),
            Some(HsSecretTooShort { len: 31 })
        );
        let key = HsSecret::new(vec![b'k'; 32]).map_err(|e| e.to_string());
        assert_eq!(key.map(|k| k.as_bytes().len()), Ok(32));
    }

    #[test]
    fn debug_prints_nothing_of_the_key() {
        let key = HsSecret::new("a-very-secret-key-0123456789abcdef").map_err(|e| e.to_string());
        let printed = format!("{key:?}");
        assert!(!printed.contains("secret-key"), "{printed}");
    }
}
