//! Public keys from a JWKS file, selected by `kid`, each with the one
//! algorithm its JWK declares (or its curve implies). Re-read when the file
//! changes; a broken new file keeps the old keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Why a JWKS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file could not be read.
    #[error("cannot read JWKS file {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a JWKS document.
    #[error("JWKS file {path} is not a valid JWK set: {message}")]
    Parse {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One verification key.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key.
    pub key: DecodingKey,
    /// The only algorithm accepted with it.
    pub algorithm: Algorithm,
}

/// The keys of the JWKS file, by `kid`, swapped atomically on reload.
pub struct KeyRing {
    path: PathBuf,
    keys: ArcSwap<HashMap<String, VerificationKey>>,
    last_seen: std::sync::Mutex<Option<Vec<u8>>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .field("kids", &self.keys.load().keys().collect::<Vec<_>>())
            .finish()
    }
}

fn algorithm_of(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|alg| match alg {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        // Symmetric and encryption algorithms have no place in a set of
        // public verification keys.
        _ => None,
    });
    match (&jwk.algorithm, declared) {
        (
            AlgorithmParameters::RSA(_),
            Some(
                alg @ (Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512),
            ),
        ) => Some(alg),
        (AlgorithmParameters::EllipticCurve(ec), declared) => match (&ec.curve, declared) {
            (EllipticCurve::P256, None | Some(Algorithm::ES256)) => Some(Algorithm::ES256),
            (EllipticCurve::P384, None | Some(Algorithm::ES384)) => Some(Algorithm::ES384),
            _ => None,
        },
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(Algorithm::EdDSA)) => {
            (okp.curve == EllipticCurve::Ed25519).then_some(Algorithm::EdDSA)
        }
        _ => None,
    }
}

/// Parses a JWKS document into keys by `kid`. Keys without a `kid`, or whose
/// algorithm is missing or unsupported, are skipped (and counted).
pub fn parse_jwks(
    path: &Path,
    bytes: &[u8],
) -> Result<(HashMap<String, VerificationKey>, usize), JwksError> {
    parse_key_set(bytes).map_err(|message| JwksError::Parse {
        path: path.to_owned(),
        message,
    })
}

/// [`parse_jwks`] without a file: also the JWKS URL's parser. The error is
/// what is wrong with the document.
pub fn parse_key_set(bytes: &[u8]) -> Result<(HashMap<String, VerificationKey>, usize), String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut keys = HashMap::new();
    let mut skipped = 0;
    for jwk in &set.keys {
        let (Some(kid), Some(algorithm)) = (jwk.common.key_id.clone(), algorithm_of(jwk)) else {
            skipped += 1;
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, VerificationKey { key, algorithm });
            }
            Err(_) => skipped += 1,
        }
    }
    if keys.is_empty() {
        return Err(
            "no usable key (each needs a kid and an RS*, PS*, ES256, ES384 or EdDSA key)"
                .to_owned(),
        );
    }
    Ok((keys, skipped))
}

impl KeyRing {
    /// Loads the file; start-up fails if it is unusable.
    pub fn load(path: &Path) -> Result<KeyRing, JwksError> {
        let bytes = std::fs::read(path).map_err(|source| JwksError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (keys, _) = parse_jwks(path, &bytes)?;
        Ok(KeyRing {
            path: path.to_owned(),
            keys: ArcSwap::from_pointee(keys),
            last_seen: std::sync::Mutex::new(Some(bytes)),
            generation: AtomicU64::new(0),
        })
    }

    /// The key for `kid`, if any. Lookup is an exact map match, so a `kid`
    /// holding `../` or quotes is just an unknown key.
    pub fn get(&self, kid: &str) -> Option<VerificationKey> {
        self.keys.load().get(kid).cloned()
    }

    /// Re-reads the file if its content changed. A broken new file keeps the
    /// old keys and is reported once (until its content changes again).
    pub fn reload_if_changed(&self) -> Result<bool, JwksError> {
        let bytes = std::fs::read(&self.path).map_err(|source| JwksError::Read {
            path: self.path.clone(),
            source,
        })?;
        let mut last_seen = self
            .last_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last_seen.as_deref() == Some(bytes.as_slice()) {
            return Ok(false);
        }
        *last_seen = Some(bytes.clone());
        drop(last_seen);
        let (keys, _) = parse_jwks(&self.path, &bytes)?;
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    /// Changes whenever the keys change, so that verdicts reached with old
    /// keys (a removed key's tokens) are not reused.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}
