//! `TokenSecret::parse` on arbitrary input, checked against an independent
//! model of the documented format: `<prefix><43 base62><6 base62 checksum>`,
//! the checksum being the CRC-32 of prefix and random part written as six
//! base62 digits, most significant first (src/domain/secret.rs).
//!
//! Properties:
//! - never panics;
//! - a parsed secret re-serialises to the input (`expose() == input`), its
//!   kind is the family whose prefix the input starts with, and parsing is
//!   idempotent and hashes deterministically;
//! - `parse` accepts exactly what the model accepts, and each rejection
//!   names the right reason;
//! - structured: a well-formed secret built from the fuzz bytes with a
//!   correct checksum parses; the same secret with any single character of
//!   its body replaced is rejected as `BadChecksum` (CRC-32 catches every
//!   error burst of at most 32 bits, and 62^6 > 2^32 makes the six-digit
//!   encoding injective), and with one character dropped as `BadBody`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokend::domain::secret::{CHECKSUM_LEN, MAX_SECRET_LEN, MalformedSecret, RANDOM_LEN};
use tokend::domain::{TokenKind, TokenSecret};

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn model_checksum(prefix: &str, random: &str) -> String {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(prefix.as_bytes());
    hasher.update(random.as_bytes());
    let mut value = u64::from(hasher.finalize());
    let mut digits = [0u8; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        *digit = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    assert_eq!(value, 0, "a CRC-32 always fits six base62 digits");
    String::from_utf8(digits.to_vec()).unwrap()
}

/// What the documented format says about `input`.
fn model(input: &str) -> Result<TokenKind, MalformedSecret> {
    if input.is_empty() {
        return Err(MalformedSecret::Empty);
    }
    if input.len() > MAX_SECRET_LEN {
        return Err(MalformedSecret::TooLong);
    }
    let kind = TokenKind::ALL
        .into_iter()
        .find(|kind| input.starts_with(kind.secret_prefix()))
        .ok_or(MalformedSecret::UnknownPrefix)?;
    let body = &input[kind.secret_prefix().len()..];
    if body.len() != RANDOM_LEN + CHECKSUM_LEN || !body.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(MalformedSecret::BadBody);
    }
    let (random, checksum) = body.split_at(RANDOM_LEN);
    if model_checksum(kind.secret_prefix(), random) != checksum {
        return Err(MalformedSecret::BadChecksum);
    }
    Ok(kind)
}

fn check(input: &str) {
    let parsed = TokenSecret::parse(input);
    match (&parsed, model(input)) {
        (Ok(secret), Ok(kind)) => {
            assert_eq!(
                secret.expose(),
                input,
                "a parsed secret re-serialises to the input"
            );
            assert_eq!(secret.kind(), kind, "the kind is the family of the prefix");
            assert!(input.starts_with(secret.kind().secret_prefix()));
            let again = TokenSecret::parse(secret.expose());
            assert_eq!(again.as_ref(), Ok(secret), "parsing is idempotent");
            assert_eq!(
                secret.hash(),
                secret.clone().hash(),
                "hashing is deterministic"
            );
            let debug = format!("{secret:?}");
            assert!(
                !debug.contains(&input[kind.secret_prefix().len()..]),
                "Debug shows the secret: {debug}"
            );
        }
        (Err(got), Err(want)) => assert_eq!(*got, want, "wrong rejection reason for {input:?}"),
        (got, want) => panic!("parse({input:?}) = {got:?}, the format says {want:?}"),
    }
}

/// A well-formed secret made from `bytes`, with a correct checksum.
fn well_formed(bytes: &[u8]) -> (TokenKind, String) {
    let kind = TokenKind::ALL[usize::from(bytes.first().copied().unwrap_or(0) % 4)];
    let random: String = (0..RANDOM_LEN)
        .map(|i| {
            let b = bytes.get(1 + i).copied().unwrap_or(0);
            char::from(ALPHABET[usize::from(b % 62)])
        })
        .collect();
    let prefix = kind.secret_prefix();
    (
        kind,
        format!("{prefix}{random}{}", model_checksum(prefix, &random)),
    )
}

fuzz_target!(|data: &[u8]| {
    // Arbitrary UTF-8 (and arbitrary bytes made UTF-8).
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }

    // Structured: a correct secret, then single-character corruptions.
    let (kind, secret) = well_formed(data);
    let parsed = TokenSecret::parse(&secret).expect("a well-formed secret with a correct checksum");
    assert_eq!(parsed.kind(), kind);
    assert_eq!(parsed.expose(), secret);
    check(&secret);

    let prefix_len = kind.secret_prefix().len();
    let tail = data.get(1 + RANDOM_LEN..).unwrap_or(&[]);
    let position =
        prefix_len + usize::from(tail.first().copied().unwrap_or(0)) % (RANDOM_LEN + CHECKSUM_LEN);
    let shift = 1 + usize::from(tail.get(1).copied().unwrap_or(0)) % 61;
    let mut bytes = secret.clone().into_bytes();
    let index = ALPHABET
        .iter()
        .position(|c| *c == bytes[position])
        .expect("body characters are base62");
    bytes[position] = ALPHABET[(index + shift) % 62];
    let typo = String::from_utf8(bytes).expect("ASCII");
    assert_ne!(typo, secret);
    assert_eq!(
        TokenSecret::parse(&typo),
        Err(MalformedSecret::BadChecksum),
        "a one-character typo at {position} must fail the checksum: {typo:?}"
    );

    let mut truncated = secret.clone();
    truncated.remove(position);
    assert_eq!(
        TokenSecret::parse(&truncated),
        Err(MalformedSecret::BadBody)
    );
    check(&truncated);
    check(&typo);
});
