//! Bearer JWT verification and development minting.
//!
//! Algorithms come from configuration (the HS256 secret accepts the HS
//! family) or from the JWK that `kid` selects — never from the token header,
//! so `alg: none` and algorithm confusion fail. A JWT that names a `kid` is
//! verified with that key of the key ring or not at all; only a JWT without
//! `kid` may use the HS secret, so an attacker cannot steer a token meant for
//! the key ring onto the shared secret (or the other way round). The key ring
//! is the JWKS file's keys, then the JWKS URL's; a `kid` neither holds asks
//! the URL's fetcher for a refresh (throttled there), and
//! [`JwtVerifier::verify_or_refresh`] hands the caller what to await before
//! verifying once more (bounded by [`UNKNOWN_KID_WAIT`]). `exp` and `nbf` are
//! checked here against the injected `now` with a 60 s leeway; `iss`/`aud`, when
//! configured, are required and checked.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::error::CallerRejection;
use crate::domain::validation::is_control_or_format;
use crate::domain::{Caller, Clock};
use crate::identity::jwks::VerificationKey;
use crate::identity::jwks_url::{PendingRefresh, UNKNOWN_KID_WAIT};
use crate::identity::{HsSecret, KeyRing, RemoteKeyRing};

/// Leeway for `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: i64 = 60;
/// Longest JWT considered; longer ones are refused before any parsing.
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// Longest `sub` or `org_id`.
const MAX_ID_LEN: usize = 256;

/// The claims tokend reads. A claim of the wrong JSON type fails
/// deserialisation, which rejects the token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    org_id: String,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Most verified JWTs remembered. Callers reuse a JWT for many calls, so a
/// small cache spares the signature check and claim parsing on almost every
/// call; when full it is simply emptied.
const VERIFIED_CACHE_CAPACITY: usize = 4096;

/// A JWT whose signature and static claims were verified.
#[derive(Clone, Debug)]
struct Verified {
    caller: Arc<Caller>,
    exp: i64,
    nbf: Option<i64>,
    key_generation: u64,
}

/// Why [`JwtVerifier::verify_or_refresh`] did not verify a JWT now.
#[derive(Debug)]
pub enum Unverified {
    /// Refused for good.
    Refused(CallerRejection),
    /// It names a `kid` no ring holds and a JWKS URL may bring it: await the
    /// refresh, then [`JwtVerifier::verify`] once more.
    KeyUnknown(PendingRefresh),
}

/// Verifies bearer JWTs.
pub struct JwtVerifier {
    hs_secret: Option<DecodingKey>,
    key_ring: Option<Arc<KeyRing>>,
    remote_keys: Option<Arc<RemoteKeyRing>>,
    issuer: Option<String>,
    audience: Option<String>,
    verified: Mutex<HashMap<String, Verified>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs_secret", &self.hs_secret.as_ref().map(|_| "<redacted>"))
            .field("key_ring", &self.key_ring)
            .field("remote_keys", &self.remote_keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwtVerifier {
    /// A verifier for an HS secret and/or a JWKS key ring.
    pub fn new(
        hs_secret: Option<&HsSecret>,
        key_ring: Option<Arc<KeyRing>>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> JwtVerifier {
        JwtVerifier {
            hs_secret: hs_secret.map(|secret| DecodingKey::from_secret(secret.as_bytes())),
            key_ring,
            remote_keys: None,
            issuer,
            audience,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Also trusts the keys of a JWKS URL (after the file's, for a `kid`
    /// both hold).
    pub fn with_remote_keys(mut self, remote_keys: Option<Arc<RemoteKeyRing>>) -> JwtVerifier {
        self.remote_keys = remote_keys;
        self
    }

    fn key_generation(&self) -> u64 {
        // Both count up, so the sum changes whenever either set changes.
        let file = self.key_ring.as_ref().map_or(0, |ring| ring.generation());
        let remote = self
            .remote_keys
            .as_ref()
            .map_or(0, |ring| ring.generation());
        file.wrapping_add(remote)
    }

    /// The key `kid` names in the file's ring, else in the URL's; a miss asks
    /// the URL's fetcher for a refresh and returns what to await for it.
    fn key_for(&self, kid: &str) -> Result<VerificationKey, Unverified> {
        let found = self
            .key_ring
            .as_ref()
            .and_then(|ring| ring.get(kid))
            .or_else(|| self.remote_keys.as_ref().and_then(|ring| ring.get(kid)));
        match (found, &self.remote_keys) {
            (Some(key), _) => Ok(key),
            (None, Some(remote)) => Err(Unverified::KeyUnknown(remote.request_refresh_and_watch())),
            (None, None) => Err(Unverified::Refused(CallerRejection::Invalid)),
        }
    }

    /// Checks the time-dependent claims against `now`, with the leeway.
    fn check_times(exp: i64, nbf: Option<i64>, now: i64) -> Result<(), CallerRejection> {
        if exp.saturating_add(LEEWAY_SECONDS) < now {
            return Err(CallerRejection::Expired);
        }
        if nbf.is_some_and(|nbf| nbf.saturating_sub(LEEWAY_SECONDS) > now) {
            return Err(CallerRejection::Invalid);
        }
        Ok(())
    }

    fn validation(&self, algorithms: Vec<Algorithm>) -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = algorithms;
        // exp and nbf are checked against the injected clock below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        let mut required: Vec<&str> = Vec::new();
        match &self.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    /// Verifies `jwt` at `now` (Unix seconds) and makes the caller. A JWT
    /// verified before with the same keys skips the signature check; `exp`
    /// and `nbf` are checked on every call. The caller is shared (`Arc`) so
    /// that a cache hit allocates nothing. A `kid` no ring holds is
    /// [`Unverified::KeyUnknown`] when a JWKS URL may bring it.
    pub fn verify_or_refresh(&self, jwt: &str, now: i64) -> Result<Arc<Caller>, Unverified> {
        if jwt.is_empty() {
            return Err(Unverified::Refused(CallerRejection::Missing));
        }
        if jwt.len() > MAX_JWT_LEN {
            return Err(Unverified::Refused(CallerRejection::Invalid));
        }
        let generation = self.key_generation();
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(jwt)
            .filter(|v| v.key_generation == generation)
            .cloned();
        let verified = match cached {
            Some(verified) => verified,
            None => {
                let verified = self.verify_signature_and_claims(jwt, generation)?;
                let mut cache = self
                    .verified
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.len() >= VERIFIED_CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(jwt.to_owned(), verified.clone());
                verified
            }
        };
        Self::check_times(verified.exp, verified.nbf, now).map_err(Unverified::Refused)?;
        Ok(verified.caller)
    }

    /// [`Self::verify_or_refresh`] without waiting: an unknown `kid` is
    /// refused now (its refresh is still requested).
    pub fn verify(&self, jwt: &str, now: i64) -> Result<Arc<Caller>, CallerRejection> {
        self.verify_or_refresh(jwt, now)
            .map_err(|unverified| match unverified {
                Unverified::Refused(rejection) => rejection,
                Unverified::KeyUnknown(_) => CallerRejection::Invalid,
            })
    }

    /// After [`Unverified::KeyUnknown`]: waits for the fetcher's answer (at
    /// most [`UNKNOWN_KID_WAIT`]), then verifies once more at `clock`'s
    /// time, without waiting again.
    pub async fn verify_after_refresh(
        &self,
        jwt: &str,
        pending: PendingRefresh,
        clock: &dyn Clock,
    ) -> Result<Arc<Caller>, CallerRejection> {
        pending.answered_within(UNKNOWN_KID_WAIT).await;
        self.verify(jwt, clock.now().timestamp())
    }

    /// The expensive part of [`Self::verify`]: header, key, signature and
    /// every claim but the times.
    fn verify_signature_and_claims(
        &self,
        jwt: &str,
        key_generation: u64,
    ) -> Result<Verified, Unverified> {
        let header = jsonwebtoken::decode_header(jwt)
            .map_err(|_| Unverified::Refused(CallerRejection::Invalid))?;
        let (key, algorithms) = match (header.kid.as_deref(), &self.hs_secret) {
            (Some(kid), _) => {
                let verification = self.key_for(kid)?;
                (verification.key, vec![verification.algorithm])
            }
            (None, Some(secret)) => (
                secret.clone(),
                vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
            ),
            (None, None) => return Err(Unverified::Refused(CallerRejection::Invalid)),
        };
        Self::verify_claims(jwt, &key, &self.validation(algorithms), key_generation)
            .map_err(Unverified::Refused)
    }

    /// The signature and every claim but the times, with `key`.
    fn verify_claims(
        jwt: &str,
        key: &DecodingKey,
        validation: &Validation,
        key_generation: u64,
    ) -> Result<Verified, CallerRejection> {
        let data = jsonwebtoken::decode::<Claims>(jwt, key, validation)
            .map_err(|_| CallerRejection::Invalid)?;
        let claims = data.claims;
        let as_seconds = |value: f64| value.is_finite().then_some(value as i64);
        let exp = as_seconds(claims.exp).ok_or(CallerRejection::Invalid)?;
        let nbf = match claims.nbf {
            Some(nbf) => Some(as_seconds(nbf).ok_or(CallerRejection::Invalid)?),
            None => None,
        };
        // Control and format characters (bidi overrides, zero-width) would
        // let a `sub` or `org_id` display as another one in logs and audit
        // events.
        let well_formed = |value: &str| {
            !value.is_empty()
                && value.len() <= MAX_ID_LEN
                && !value.chars().any(is_control_or_format)
        };
        if !well_formed(&claims.sub) || !well_formed(&claims.org_id) {
            return Err(CallerRejection::Invalid);
        }
        let mut permissions: BTreeSet<String> = claims.permissions.into_iter().collect();
        if let Some(scope) = claims.scope {
            permissions.extend(scope.split_whitespace().map(str::to_owned));
        }
        Ok(Verified {
            caller: Arc::new(Caller {
                org_id: claims.org_id,
                subject: claims.sub,
                roles: claims.roles.into_iter().collect(),
                permissions,
            }),
            exp,
            nbf,
            key_generation,
        })
    }
}

/// What `tokend mint-jwt` puts in a token.
#[derive(Clone, Debug, Serialize)]
pub struct MintRequest {
    /// `sub`.
    pub sub: String,
    /// `org_id`.
    pub org_id: String,
    /// `roles`.
    pub roles: Vec<String>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `iat`.
    pub iat: i64,
    /// `exp`.
    pub exp: i64,
    /// `iss`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// `aud`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Signs `claims` with HS256 (no `kid`, so the HS secret verifies it).
pub fn mint_hs256(
    secret: &HsSecret,
    claims: &MintRequest,
) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> MintRequest {
        MintRequest {
            sub: "alice".into(),
            org_id: "org-1".into(),
            roles: vec!["admin".into()],
            permissions: vec![],
            iat: 0,
            exp,
            iss: None,
            aud: None,
        }
    }

    fn key(text: &str) -> Result<HsSecret, Box<dyn std::error::Error>> {
        Ok(HsSecret::new(text)?)
    }

    /// Proves the one enabled crypto backend signs and verifies.
    #[test]
    fn hs256_round_trip_and_expiry() -> Result<(), Box<dyn std::error::Error>> {
        let secret = key("0123456789abcdef0123456789abcdef")?;
        let verifier = JwtVerifier::new(Some(&secret), None, None, None);
        let jwt = mint_hs256(&secret, &claims(1_000))?;
        let caller = verifier.verify(&jwt, 1_000).map_err(|e| format!("{e:?}"))?;
        assert_eq!(caller.org_id, "org-1");
        assert!(caller.is_admin());
        assert_eq!(verifier.verify(&jwt, 1_060).map(|_| ()), Ok(()));
        assert_eq!(verifier.verify(&jwt, 1_061), Err(CallerRejection::Expired));
        let other = mint_hs256(&key("another secret of enough length!!")?, &claims(1_000))?;
        assert_eq!(
            verifier.verify(&other, 1_000),
            Err(CallerRejection::Invalid)
        );
        Ok(())
    }

    #[test]
    fn a_kid_never_selects_the_hs_secret() -> Result<(), Box<dyn std::error::Error>> {
        let secret = key("0123456789abcdef0123456789abcdef")?;
        let verifier = JwtVerifier::new(Some(&secret), None, None, None);
        for kid in ["", "unknown", "hs", "default"] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(kid.to_owned());
            let jwt = jsonwebtoken::encode(
                &header,
                &claims(1_000),
                &EncodingKey::from_secret(secret.as_bytes()),
            )?;
            assert_eq!(
                verifier.verify(&jwt, 1_000).map(|_| ()),
                Err(CallerRejection::Invalid),
                "kid {kid:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn control_and_format_characters_in_sub_or_org_id_are_invalid()
    -> Result<(), Box<dyn std::error::Error>> {
        let secret = key("0123456789abcdef0123456789abcdef")?;
        let verifier = JwtVerifier::new(Some(&secret), None, None, None);
        for bad in [
            "ad\u{202e}nimda",
            "admin\u{200b}",
            "\u{feff}org-1",
            "a\u{0}b",
            "a\u{85}",
        ] {
            for field in ["sub", "org_id"] {
                let mut request = claims(1_000);
                match field {
                    "sub" => request.sub = bad.to_owned(),
                    _ => request.org_id = bad.to_owned(),
                }
                let jwt = mint_hs256(&secret, &request)?;
                assert_eq!(
                    verifier.verify(&jwt, 1_000).map(|_| ()),
                    Err(CallerRejection::Invalid),
                    "{field} {bad:?}"
                );
            }
        }
        Ok(())
    }
}
