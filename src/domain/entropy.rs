//! Randomness as a dependency, like the clock: production draws token
//! secrets and token UUIDs from the operating system's CSPRNG, tests from a
//! seeded generator, so what the core makes can be reproduced.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng, TryRngCore};
use uuid::{Builder, Uuid};

/// The random source failed: no secret can be made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomSourceError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// A source of random bytes for secrets and identifiers.
pub trait Entropy: Send + Sync + std::fmt::Debug + 'static {
    /// Fills `bytes` with random bytes.
    fn fill(&self, bytes: &mut [u8]) -> Result<(), RandomSourceError>;

    /// A new token UUID: version 7, its timestamp `now` (so that ids sort
    /// by creation time, as `Uuid::now_v7` did), its other 74 bits random.
    fn token_uuid(&self, now: DateTime<Utc>) -> Result<Uuid, RandomSourceError> {
        let mut random = [0u8; 10];
        self.fill(&mut random)?;
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        Ok(Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }
}

/// The operating system's CSPRNG (`getrandom`): what the server uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), RandomSourceError> {
        OsRng
            .try_fill_bytes(bytes)
            .map_err(|e| RandomSourceError(Box::new(e)))
    }
}

/// A generator seeded by the caller: the same seed gives the same secrets
/// and UUIDs. For tests only; nothing it makes is secret.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<StdRng>);

impl SeededEntropy {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) -> Result<(), RandomSourceError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill_bytes(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_bytes_and_another_seed_others() {
        let draw = |entropy: &dyn Entropy| {
            let mut bytes = [0u8; 32];
            entropy.fill(&mut bytes).map(|()| bytes).ok()
        };
        assert_eq!(draw(&SeededEntropy::new(7)), draw(&SeededEntropy::new(7)));
        assert_ne!(draw(&SeededEntropy::new(7)), draw(&SeededEntropy::new(8)));
        assert_ne!(draw(&SystemEntropy), draw(&SystemEntropy));
    }

    #[test]
    fn token_uuids_are_version_7_and_carry_the_time() {
        let now = DateTime::from_timestamp(1_767_225_600, 123_000_000).unwrap_or_default();
        let entropy = SeededEntropy::new(1);
        let first = entropy.token_uuid(now).ok();
        let second = entropy.token_uuid(now).ok();
        assert_ne!(first, second);
        let uuid = first.unwrap_or_default();
        assert_eq!(uuid.get_version_num(), 7);
        let (seconds, nanos) = uuid
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or_default();
        assert_eq!((seconds, nanos), (1_767_225_600, 123_000_000));
        assert_eq!(SeededEntropy::new(1).token_uuid(now).ok(), Some(uuid));
    }
}
