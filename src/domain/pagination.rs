//! Opaque page tokens for keyset pagination.
//!
//! A page token names the last id of the previous page and is bound, by an
//! HMAC-SHA256 tag, to the listing and filters it was made for. The key is
//! shared by every replica (it lives in the database), so a token made by
//! one replica is accepted by all of them, while a token edited by hand,
//! forged without the key, or reused with other filters is refused.
//!
//! The filters enter the tag through [`PageScope`], an explicit encoding of
//! each field by name and value: nothing depends on how Rust prints a type,
//! so a new release reads the tokens of the previous one.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Longest page token accepted; anything longer is invalid without decoding.
const MAX_PAGE_TOKEN_LEN: usize = 128;

/// The first byte of every token of this format.
const FORMAT_VERSION: u8 = 2;

/// Bytes of the HMAC-SHA256 tag (untruncated).
const TAG_LEN: usize = 32;

/// Version byte, the cursor as a big-endian i64, the tag.
const TOKEN_BYTES: usize = 1 + 8 + TAG_LEN;

/// Separates this use of the key from any other.
const MAC_CONTEXT: &[u8] = b"tokend page token v2\0";

/// The secret that binds page tokens to their scope. Every replica must
/// hold the same key; it is stored in the database and loaded when the
/// schema is ready. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct PageTokenKey {
    /// HMAC state with the key already absorbed; cloned per token.
    keyed: HmacSha256,
}

impl fmt::Debug for PageTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageTokenKey(<redacted>)")
    }
}

impl PageTokenKey {
    /// Key length in bytes: the HMAC-SHA256 output size.
    pub const LEN: usize = 32;

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; PageTokenKey::LEN]) -> PageTokenKey {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros
        // (RFC 2104), so padding it here gives the same MAC as keying with
        // the 32 bytes, through the infallible constructor.
        let mut block = [0u8; 64];
        block[..PageTokenKey::LEN].copy_from_slice(&bytes);
        PageTokenKey {
            keyed: HmacSha256::new(&block.into()),
        }
    }

    /// A key read from storage; `None` unless it is exactly [`Self::LEN`]
    /// bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<PageTokenKey> {
        <[u8; PageTokenKey::LEN]>::try_from(bytes)
            .ok()
            .map(PageTokenKey::from_bytes)
    }

    fn tag(&self, scope: &PageScope, after_id: i64) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(MAC_CONTEXT);
        mac.update(&scope.0);
        mac.update(&after_id.to_be_bytes());
        mac
    }
}

/// What a page token is bound to: the listing and every value that decides
/// which rows it returns, each encoded explicitly as (name, value) with
/// length prefixes, so that no two different scopes encode alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageScope(Vec<u8>);

/// How a field's value is encoded; part of the format, never renumbered.
#[derive(Clone, Copy)]
enum FieldTag {
    Absent = 0,
    Text = 1,
    Flag = 2,
}

impl PageScope {
    /// The scope of the listing called `listing` (e.g. `tokens`).
    pub fn new(listing: &str) -> PageScope {
        PageScope(Vec::with_capacity(128)).with_text("listing", listing)
    }

    /// Adds a text field.
    #[must_use]
    pub fn with_text(self, name: &str, value: &str) -> PageScope {
        self.field(name, FieldTag::Text, value.as_bytes())
    }

    /// Adds an optional text field; absent differs from empty.
    #[must_use]
    pub fn with_optional_text(self, name: &str, value: Option<&str>) -> PageScope {
        match value {
            Some(value) => self.with_text(name, value),
            None => self.field(name, FieldTag::Absent, &[]),
        }
    }

    /// Adds a boolean field.
    #[must_use]
    pub fn with_flag(self, name: &str, value: bool) -> PageScope {
        self.field(name, FieldTag::Flag, &[u8::from(value)])
    }

    fn field(mut self, name: &str, tag: FieldTag, value: &[u8]) -> PageScope {
        push_len_prefixed(&mut self.0, name.as_bytes());
        self.0.push(tag as u8);
        push_len_prefixed(&mut self.0, value);
        self
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    // Field values are request fields bounded by the message size limit;
    // saturating keeps the encoding total even for absurd input.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A page token that was not made by [`encode`] with the same key for the
/// same scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidPageToken;

/// The position after which the next page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The id of the last row already returned.
    pub after_id: i64,
}

/// Encodes a cursor for `scope`, tagged with `key`.
pub fn encode(key: &PageTokenKey, scope: &PageScope, cursor: Cursor) -> String {
    let tag = key.tag(scope, cursor.after_id).finalize().into_bytes();
    let mut bytes = Vec::with_capacity(TOKEN_BYTES);
    bytes.push(FORMAT_VERSION);
    bytes.extend_from_slice(&cursor.after_id.to_be_bytes());
    bytes.extend_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a page token made by [`encode`] with `key` for the same `scope`;
/// an empty token is the first page. The tag is compared in constant time.
pub fn decode(
    key: &PageTokenKey,
    scope: &PageScope,
    token: &str,
) -> Result<Option<Cursor>, InvalidPageToken> {
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() > MAX_PAGE_TOKEN_LEN {
        return Err(InvalidPageToken);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| InvalidPageToken)?;
    let [version, rest @ ..] = bytes.as_slice() else {
        return Err(InvalidPageToken);
    };
    if *version != FORMAT_VERSION || rest.len() != TOKEN_BYTES - 1 {
        return Err(InvalidPageToken);
    }
    let (id_bytes, tag) = rest.split_at(8);
    let id_bytes = <[u8; 8]>::try_from(id_bytes).map_err(|_| InvalidPageToken)?;
    let after_id = i64::from_be_bytes(id_bytes);
    key.tag(scope, after_id)
        .verify_slice(tag)
        .map_err(|_| InvalidPageToken)?;
    // Only ids ≥ 1 are ever encoded by the core; refuse anything else even
    // with a valid tag.
    if after_id < 1 {
        return Err(InvalidPageToken);
    }
    Ok(Some(Cursor { after_id }))
}

/// One page of results.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The token for the next page, if there is one.
    pub next_page_token: Option<String>,
}

/// Makes the page of a listing that fetched up to `limit + 1` rows: the
/// extra row only tells that another page exists, and is dropped.
pub fn paginate<T>(
    mut items: Vec<T>,
    limit: u64,
    id_of: impl Fn(&T) -> i64,
    key: &PageTokenKey,
    scope: &PageScope,
) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_page_token = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| {
            encode(
                key,
                scope,
                Cursor {
                    after_id: id_of(last),
                },
            )
        })
    } else {
        None
    };
    Page {
        items,
        next_page_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PageTokenKey {
        PageTokenKey::from_bytes([0x42; PageTokenKey::LEN])
    }

    fn scope(org: &str) -> PageScope {
        PageScope::new("tokens")
            .with_text("org_id", org)
            .with_optional_text("kind", Some("scrape"))
            .with_flag("show_revoked", false)
    }

    #[test]
    fn round_trip_and_scope_binding() {
        let token = encode(&key(), &scope("a"), Cursor { after_id: 42 });
        assert_eq!(
            decode(&key(), &scope("a"), &token),
            Ok(Some(Cursor { after_id: 42 }))
        );
        assert_eq!(decode(&key(), &scope("b"), &token), Err(InvalidPageToken));
        assert_eq!(decode(&key(), &scope("a"), ""), Ok(None));
        assert_eq!(
            decode(&key(), &scope("a"), "garbage!"),
            Err(InvalidPageToken)
        );
    }

    #[test]
    fn the_padded_key_is_the_plain_hmac_key() {
        let mut plain = HmacSha256::new_from_slice(&[0x42; PageTokenKey::LEN]).unwrap();
        plain.update(b"x");
        let mut padded = key().keyed;
        padded.update(b"x");
        assert_eq!(
            plain.finalize().into_bytes(),
            padded.finalize().into_bytes()
        );
    }

    #[test]
    fn another_key_refuses_the_token() {
        let token = encode(&key(), &scope("a"), Cursor { after_id: 42 });
        let other = PageTokenKey::from_bytes([0x43; PageTokenKey::LEN]);
        assert_eq!(decode(&other, &scope("a"), &token), Err(InvalidPageToken));
    }

    #[test]
    fn every_edited_byte_is_refused() {
        let token = encode(&key(), &scope("a"), Cursor { after_id: 42 });
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap_or_default();
        for at in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut edited = bytes.clone();
                edited[at] ^= flip;
                let edited = URL_SAFE_NO_PAD.encode(edited);
                assert_eq!(
                    decode(&key(), &scope("a"), &edited),
                    Err(InvalidPageToken),
                    "byte {at} ^ {flip:#x}"
                );
            }
        }
    }

    #[test]
    fn scope_fields_cannot_be_shifted_into_one_another() {
        // Without length prefixes these two would encode alike.
        let a = PageScope::new("t").with_text("x", "ab").with_text("y", "");
        let b = PageScope::new("t").with_text("x", "a").with_text("y", "b");
        assert_ne!(a, b);
        // Absent is not empty.
        let absent = PageScope::new("t").with_optional_text("x", None);
        let empty = PageScope::new("t").with_optional_text("x", Some(""));
        assert_ne!(absent, empty);
    }

    /// The format is part of the contract between releases: a token made by
    /// this release must decode in the next one. If this value changes,
    /// every page token in flight becomes invalid. (Computed independently:
    /// version 2, the id as 8 big-endian bytes, then HMAC-SHA256 with key
    /// 0x42 × 32 over the context, the length-prefixed scope fields and the
    /// id.)
    #[test]
    fn the_encoding_is_stable_across_releases() {
        let token = encode(&key(), &scope("acme"), Cursor { after_id: 42 });
        assert_eq!(
            token,
            "AgAAAAAAAAAq_ietJOOlnCl1I-qWqk0xCyWZkbHzrFv64RqgwTdDYaY"
        );
        assert_eq!(
            decode(&key(), &scope("acme"), &token),
            Ok(Some(Cursor { after_id: 42 }))
        );
    }
}
