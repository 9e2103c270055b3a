//! The zero-config HS256 secret: made once at random, kept in the data folder
//! with mode 0600, shared by `serve` and `mint-jwt`. Never a well-known key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;

/// The file's name inside the data folder.
pub const FILE_NAME: &str = "jwt-hs256.secret";

/// Errors reading or making the secret file.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file or folder could not be read or written.
    #[error("cannot use the JWT secret file {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The OS random source failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The file holds too short a secret.
    #[error("the JWT secret file {0} holds fewer than 32 characters")]
    TooShort(PathBuf),
}

/// Whether [`load_or_create`] found the file or made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretOrigin {
    /// An existing file was read.
    Existing,
    /// A new secret was made and written.
    Created,
}

/// Reads `<data_dir>/jwt-hs256.secret`, or makes it (256 random bits,
/// base64url, mode 0600) if it does not exist.
pub fn load_or_create(data_dir: &Path) -> Result<(String, SecretOrigin, PathBuf), SecretFileError> {
    let path = data_dir.join(FILE_NAME);
    let io = |source| SecretFileError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.len() < 32 {
                return Err(SecretFileError::TooShort(path));
            }
            return Ok((secret, SecretOrigin::Existing, path));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| SecretFileError::Random)?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    // create_new: two processes starting at once must not overwrite each
    // other's secret; the loser reads the winner's file.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(secret.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((secret, SecretOrigin::Created, path))
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(io)?;
            Ok((text.trim().to_owned(), SecretOrigin::Existing, path))
        }
        Err(error) => Err(io(error)),
    }
}
