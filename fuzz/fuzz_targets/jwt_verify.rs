//! `JwtVerifier::verify` (HS secret configured, no JWKS, no iss/aud) on
//! arbitrary input and on structured tokens.
//!
//! Properties:
//! - never panics;
//! - soundness: whatever it accepts was signed with the configured key. An
//!   independent check (RustCrypto `hmac`, not the aws-lc backend
//!   jsonwebtoken uses) requires the header's `alg` to be HS256/384/512 and
//!   the signature to be that HMAC, under the key, of everything before the
//!   last `.`; and the accepted claims must hold a well-formed `sub` and
//!   `org_id` (the Caller's), a numeric `exp` not past beyond the 60 s leeway
//!   and an `nbf`, if any, not in the future beyond it; and the header names
//!   no `kid` (a `kid` never selects the HS secret);
//! - a verifier with a different key accepts only what that key signed;
//! - completeness on a conservative subset: a token signed with the key, with
//!   no `kid` and well-typed ordinary claims inside the time window, is
//!   accepted (via `mint_hs256` and hand-built with each HS algorithm).
//!
//! Input modes (first byte): raw string; hand-built header and claims from
//! `arbitrary` (alg none, RS/ES/PS/EdDSA headers signed with the HMAC key,
//! wrong keys, mutated signatures, claims of the wrong JSON type, extra
//! header fields such as kid/jku/x5u); `mint_hs256` with arbitrary claims.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tokend::domain::Caller;
use tokend::domain::error::CallerRejection;
use tokend::domain::validation::is_control_or_format;
use tokend::identity::jwt::{LEEWAY_SECONDS, MAX_JWT_LEN};
use tokend::identity::{HsSecret, JwtVerifier, MintRequest, mint_hs256};

const KEY: &[u8] = b"tokend-fuzz-hs256-key-0123456789abcdef";
const OTHER_KEY: &[u8] = b"tokend-fuzz-other-key-0123456789abcdef";
/// A fixed "now" for the structured modes, so that offsets hit the window.
const BASE_NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// Base64url without padding that tolerates non-canonical trailing bits and
/// optional padding: the oracle must not be stricter than the verifier.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

struct Verifiers {
    key: HsSecret,
    right: JwtVerifier,
    wrong: JwtVerifier,
}

fn verifiers() -> &'static Verifiers {
    static V: std::sync::OnceLock<Verifiers> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let key = HsSecret::new(KEY).expect("a long enough key");
        let other = HsSecret::new(OTHER_KEY).expect("a long enough key");
        Verifiers {
            right: JwtVerifier::new(Some(&key), None, None, None),
            wrong: JwtVerifier::new(Some(&other), None, None, None),
            key,
        }
    })
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Hs {
    Hs256,
    Hs384,
    Hs512,
}

impl Hs {
    fn name(self) -> &'static str {
        match self {
            Hs::Hs256 => "HS256",
            Hs::Hs384 => "HS384",
            Hs::Hs512 => "HS512",
        }
    }

    fn from_name(name: &str) -> Option<Hs> {
        [Hs::Hs256, Hs::Hs384, Hs::Hs512]
            .into_iter()
            .find(|hs| hs.name() == name)
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut mac =
                <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hs::Hs256 => run::<Hmac<sha2::Sha256>>(key, message),
            Hs::Hs384 => run::<Hmac<sha2::Sha384>>(key, message),
            Hs::Hs512 => run::<Hmac<sha2::Sha512>>(key, message),
        }
    }
}

/// The independent soundness oracle: is `jwt` HMAC-signed with `key` under
/// an HS algorithm its header names? Returns the decoded payload if so.
fn signed_with(key: &[u8], jwt: &str) -> Option<Value> {
    let (message, signature) = jwt.rsplit_once('.')?;
    let (header, payload) = message.rsplit_once('.')?;
    let header: Value = serde_json::from_slice(&LENIENT.decode(header).ok()?).ok()?;
    // A `kid` selects a key of the key ring (none here), never the HS key.
    if header.get("kid").is_some_and(|kid| !kid.is_null()) {
        return None;
    }
    let hs = Hs::from_name(header.get("alg")?.as_str()?)?;
    let signature = LENIENT.decode(signature).ok()?;
    if signature != hs.mac(key, message.as_bytes()) {
        return None;
    }
    serde_json::from_slice(&LENIENT.decode(payload).ok()?).ok()
}

fn ordinary(value: &str) -> bool {
    !value.is_empty() && value.len() <= 64 && !value.chars().any(is_control_or_format)
}

/// Verifies `jwt` at `now` and checks soundness. Returns the result.
fn check(jwt: &str, now: i64) -> Result<Caller, CallerRejection> {
    let verdict = verifiers().right.verify(jwt, now);
    trace(format_args!(
        "verify {:?}",
        verdict.as_ref().map(|_| "accepted")
    ));
    if let Ok(caller) = &verdict {
        let Some(claims) = signed_with(KEY, jwt) else {
            panic!("accepted a token not signed with the key: {jwt:?}");
        };
        assert!(jwt.len() <= MAX_JWT_LEN);
        assert_eq!(
            claims.get("sub").and_then(Value::as_str),
            Some(caller.subject.as_str())
        );
        assert_eq!(
            claims.get("org_id").and_then(Value::as_str),
            Some(caller.org_id.as_str())
        );
        for id in [&caller.subject, &caller.org_id] {
            assert!(
                !id.is_empty() && !id.chars().any(is_control_or_format),
                "accepted id {id:?}"
            );
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .expect("accepted without a numeric exp");
        // One second of slack for the integer truncation of fractional exp.
        assert!(
            exp.is_finite() && exp + (LEEWAY_SECONDS as f64) + 1.0 >= now as f64,
            "accepted an expired token: exp {exp}, now {now}"
        );
        if let Some(nbf) = claims.get("nbf").filter(|v| !v.is_null()) {
            let nbf = nbf.as_f64().expect("accepted a non-numeric nbf");
            assert!(
                nbf.is_finite() && nbf - (LEEWAY_SECONDS as f64) - 1.0 <= now as f64,
                "accepted a token not yet valid: nbf {nbf}, now {now}"
            );
        }
    }
    // A verifier with another key accepts only what that key signed (the
    // `Signer::Wrong` tokens), never what `KEY` signed.
    if verifiers().wrong.verify(jwt, now).is_ok() {
        assert!(
            signed_with(OTHER_KEY, jwt).is_some() && verdict.is_err(),
            "a verifier with another key accepted {jwt:?}"
        );
    }
    verdict.map(|caller| Caller::clone(&caller))
}

/// With `TOKEND_FUZZ_TRACE` set, prints one line per input naming the
/// outcome it reached, to check on a corpus that every path is exercised
/// (docs/fuzzing.md); otherwise does nothing.
fn trace(what: std::fmt::Arguments<'_>) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("TOKEND_FUZZ_TRACE").is_some()) {
        eprintln!("trace: {what}");
    }
}

// ---------------------------------------------------------------- structure

/// A JSON value of any shape (depth-limited when converted).
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn to_value(&self, depth: u8) -> Value {
        if depth == 0 {
            return Value::Null;
        }
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(|j| j.to_value(depth - 1)).collect()),
            Json::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_value(depth - 1)))
                    .collect(),
            ),
        }
    }
}

/// A claim or header field: absent, of the right type, or anything at all.
#[derive(Arbitrary, Debug)]
enum Field<T> {
    Absent,
    Good(T),
    Any(Json),
}

impl<T> Field<T> {
    fn put(&self, map: &mut Map<String, Value>, name: &str, good: impl Fn(&T) -> Value) {
        match self {
            Field::Absent => {}
            Field::Good(value) => {
                map.insert(name.to_owned(), good(value));
            }
            Field::Any(json) => {
                map.insert(name.to_owned(), json.to_value(6));
            }
        }
    }

    fn good_or_absent(&self) -> bool {
        !matches!(self, Field::Any(_))
    }
}

#[derive(Arbitrary, Debug)]
enum Alg {
    Hs(Hs),
    None,
    Rs256,
    Es256,
    Ps256,
    EdDsa,
    Named(String),
}

#[derive(Arbitrary, Debug)]
struct Header {
    alg: Field<Alg>,
    typ: Field<String>,
    kid: Field<String>,
    jku: Field<String>,
    x5u: Field<String>,
    extra: Vec<(String, Json)>,
}

#[derive(Arbitrary, Debug)]
struct Claims {
    sub: Field<String>,
    org_id: Field<String>,
    /// Seconds relative to now.
    exp: Field<i16>,
    nbf: Field<i16>,
    roles: Field<Vec<String>>,
    permissions: Field<Vec<String>>,
    scope: Field<String>,
    iss: Field<String>,
    aud: Field<String>,
    extra: Vec<(String, Json)>,
}

#[derive(Arbitrary, Debug)]
enum Signer {
    /// The HMAC of the configured key under `hs`.
    Right(Hs),
    /// Another key.
    Wrong(Hs),
    /// No signature at all (as for `alg: none`).
    Empty,
    /// Arbitrary bytes.
    Garbage(Vec<u8>),
    /// The right HMAC with one byte changed.
    Flipped(Hs, u8, u8),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    header: Header,
    claims: Claims,
    signer: Signer,
    /// Shifts "now" so that time checks see both sides of the window.
    now_shift: i16,
    /// Raw JSON text for header or payload instead of the structured one.
    raw_header: Option<String>,
    raw_payload: Option<String>,
}

const KNOWN_CLAIMS: [&str; 9] = [
    "sub",
    "org_id",
    "exp",
    "nbf",
    "roles",
    "permissions",
    "scope",
    "iss",
    "aud",
];

fn alg_value(alg: &Alg) -> Value {
    Value::String(match alg {
        Alg::Hs(hs) => hs.name().to_owned(),
        Alg::None => "none".to_owned(),
        Alg::Rs256 => "RS256".to_owned(),
        Alg::Es256 => "ES256".to_owned(),
        Alg::Ps256 => "PS256".to_owned(),
        Alg::EdDsa => "EdDSA".to_owned(),
        Alg::Named(name) => name.clone(),
    })
}

fn structured(s: &Structured) {
    let now = BASE_NOW + i64::from(s.now_shift);

    let mut header = Map::new();
    for (k, v) in &s.header.extra {
        header.insert(k.clone(), v.to_value(6));
    }
    s.header.alg.put(&mut header, "alg", alg_value);
    s.header
        .typ
        .put(&mut header, "typ", |t| Value::String(t.clone()));
    s.header
        .kid
        .put(&mut header, "kid", |t| Value::String(t.clone()));
    s.header
        .jku
        .put(&mut header, "jku", |t| Value::String(t.clone()));
    s.header
        .x5u
        .put(&mut header, "x5u", |t| Value::String(t.clone()));

    let c = &s.claims;
    let mut claims = Map::new();
    for (k, v) in &c.extra {
        claims.insert(k.clone(), v.to_value(6));
    }
    let string = |t: &String| Value::String(t.clone());
    let strings = |t: &Vec<String>| Value::from(t.clone());
    c.sub.put(&mut claims, "sub", string);
    c.org_id.put(&mut claims, "org_id", string);
    c.exp.put(&mut claims, "exp", |off| {
        Value::from(BASE_NOW + i64::from(*off))
    });
    c.nbf.put(&mut claims, "nbf", |off| {
        Value::from(BASE_NOW + i64::from(*off))
    });
    c.roles.put(&mut claims, "roles", strings);
    c.permissions.put(&mut claims, "permissions", strings);
    c.scope.put(&mut claims, "scope", string);
    c.iss.put(&mut claims, "iss", string);
    c.aud.put(&mut claims, "aud", string);

    let header_json = s
        .raw_header
        .clone()
        .unwrap_or_else(|| Value::Object(header.clone()).to_string());
    let payload_json = s
        .raw_payload
        .clone()
        .unwrap_or_else(|| Value::Object(claims.clone()).to_string());
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json.as_bytes()),
        URL_SAFE_NO_PAD.encode(payload_json.as_bytes())
    );
    let signature = match &s.signer {
        Signer::Right(hs) => hs.mac(KEY, message.as_bytes()),
        Signer::Wrong(hs) => hs.mac(OTHER_KEY, message.as_bytes()),
        Signer::Empty => Vec::new(),
        Signer::Garbage(bytes) => bytes.clone(),
        Signer::Flipped(hs, at, xor) => {
            let mut mac = hs.mac(KEY, message.as_bytes());
            let at = usize::from(*at) % mac.len();
            mac[at] ^= if *xor == 0 { 1 } else { *xor };
            mac
        }
    };
    let jwt = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let verdict = check(&jwt, now);

    // Completeness on a conservative subset.
    let signed_right = match (&s.signer, &s.header.alg) {
        (Signer::Right(hs), Field::Good(Alg::Hs(alg))) => hs == alg,
        _ => false,
    };
    let exp_ok =
        matches!(c.exp, Field::Good(off) if BASE_NOW + i64::from(off) + LEEWAY_SECONDS > now);
    let nbf_ok = match c.nbf {
        Field::Absent => true,
        Field::Good(off) => BASE_NOW + i64::from(off) - LEEWAY_SECONDS < now,
        Field::Any(_) => false,
    };
    let ids_ok = matches!(&c.sub, Field::Good(v) if ordinary(v))
        && matches!(&c.org_id, Field::Good(v) if ordinary(v));
    let plain = s.raw_header.is_none()
        && s.raw_payload.is_none()
        && s.header.extra.is_empty()
        && matches!(s.header.kid, Field::Absent)
        && [&s.header.typ, &s.header.jku, &s.header.x5u]
            .iter()
            .all(|f| f.good_or_absent())
        && c.extra
            .iter()
            .all(|(k, _)| !KNOWN_CLAIMS.contains(&k.as_str()))
        && c.roles.good_or_absent()
        && c.permissions.good_or_absent()
        && c.scope.good_or_absent()
        && c.iss.good_or_absent()
        && c.aud.good_or_absent();
    if signed_right && exp_ok && nbf_ok && ids_ok && plain && jwt.len() <= MAX_JWT_LEN {
        let caller = verdict
            .as_ref()
            .unwrap_or_else(|e| panic!("rejected a good token ({e:?}): {jwt}"));
        if let Field::Good(sub) = &c.sub {
            assert_eq!(&caller.subject, sub);
        }
    }

    // Any single-character change to an accepted token is rejected unless
    // the oracle agrees it is still signed (non-canonical base64 bits).
    if verdict.is_ok() {
        let mut bytes = jwt.clone().into_bytes();
        let at = usize::from(s.now_shift.unsigned_abs()) % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        if let Ok(mutated) = String::from_utf8(bytes) {
            let _ = check(&mutated, now);
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Minted {
    sub: String,
    org_id: String,
    roles: Vec<String>,
    permissions: Vec<String>,
    iat: i64,
    exp_offset: i32,
    iss: Option<String>,
    aud: Option<String>,
    now: i64,
    far: bool,
}

fn minted(m: &Minted) {
    let (exp, now) = if m.far {
        (m.now.wrapping_add(i64::from(m.exp_offset)), m.now)
    } else {
        (BASE_NOW + i64::from(m.exp_offset), BASE_NOW)
    };
    let request = MintRequest {
        sub: m.sub.clone(),
        org_id: m.org_id.clone(),
        roles: m.roles.clone(),
        permissions: m.permissions.clone(),
        iat: m.iat,
        exp,
        iss: m.iss.clone(),
        aud: m.aud.clone(),
    };
    let Ok(jwt) = mint_hs256(&verifiers().key, &request) else {
        return;
    };
    let verdict = check(&jwt, now);
    let in_window = i128::from(exp) + i128::from(LEEWAY_SECONDS) > i128::from(now)
        && exp.unsigned_abs() < (1 << 52);
    if ordinary(&m.sub) && ordinary(&m.org_id) && in_window && jwt.len() <= MAX_JWT_LEN {
        let caller = verdict
            .as_ref()
            .unwrap_or_else(|e| panic!("rejected a minted token ({e:?}): {jwt}"));
        assert_eq!(caller.subject, m.sub.as_str());
        assert_eq!(caller.org_id, m.org_id.as_str());
        assert_eq!(
            caller.roles.len(),
            m.roles
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }
    // (Below 2^52 seconds, where the JSON number is exact as an f64.)
    if i128::from(exp) + i128::from(LEEWAY_SECONDS) + 1 < i128::from(now)
        && exp.unsigned_abs() < (1 << 52)
    {
        assert!(verdict.is_err(), "accepted an expired minted token");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // Raw input, as the interceptor would pass it.
        0 => {
            let text = String::from_utf8_lossy(rest);
            let now = BASE_NOW;
            let _ = check(&text, now);
        }
        1 | 2 => {
            if let Ok(s) = Structured::arbitrary_take_rest(Unstructured::new(rest)) {
                structured(&s);
            }
        }
        _ => {
            if let Ok(m) = Minted::arbitrary_take_rest(Unstructured::new(rest)) {
                minted(&m);
            }
        }
    }
});
