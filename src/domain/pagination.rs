//! Opaque page tokens for keyset pagination.
//!
//! A page token names the last id of the previous page and a fingerprint of
//! the filters it was made for, so a token reused with other filters (or
//! edited by hand) is refused as invalid instead of silently skipping rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Longest page token accepted; anything longer is invalid without decoding.
const MAX_PAGE_TOKEN_LEN: usize = 128;

/// A page token that was not made by [`encode`] for the same filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPageToken;

/// The position after which the next page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The id of the last row already returned.
    pub after_id: i64,
}

fn fingerprint(scope: &str) -> String {
    let digest = Sha256::digest(scope.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes a cursor for the filters described by `scope`.
pub fn encode(cursor: Cursor, scope: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1.{}.{}", cursor.after_id, fingerprint(scope)))
}

/// Decodes a page token made by [`encode`] for the same `scope`; an empty
/// token is the first page.
pub fn decode(token: &str, scope: &str) -> Result<Option<Cursor>, InvalidPageToken> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(InvalidPageToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| InvalidPageToken)?;
    let text = String::from_utf8(bytes).map_err(|_| InvalidPageToken)?;
    let mut parts = text.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(id), Some(print), None) if print == fingerprint(scope) => {
            let after_id = id.parse::<i64>().map_err(|_| InvalidPageToken)?;
            if after_id < 1 {
                return Err(InvalidPageToken);
            }
            Ok(Some(Cursor { after_id }))
        }
        _ => Err(InvalidPageToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_scope_binding() {
        let token = encode(Cursor { after_id: 42 }, "a");
        assert_eq!(decode(&token, "a"), Ok(Some(Cursor { after_id: 42 })));
        assert_eq!(decode(&token, "b"), Err(InvalidPageToken));
        assert_eq!(decode("", "a"), Ok(None));
        assert_eq!(decode("garbage!", "a"), Err(InvalidPageToken));
    }
}
