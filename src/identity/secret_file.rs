//! The zero-config HS256 secret: made once at random, kept in the data folder
//! with mode 0600, shared by `serve` and `mint-jwt`. Never a well-known key.
//!
//! Any number of `serve` and `mint-jwt` processes may start at once on one
//! folder (replicas sharing a volume, an operator minting a JWT while the
//! server starts), and all must end up with the one secret. So the file is
//! never seen half-written: each maker writes a temporary file in the same
//! folder, syncs it, and then places it under the final name only if that
//! name is still free (an atomic no-replace rename or link); the losers read
//! the winner's complete file. Whatever is read is checked for length, since
//! a file an operator placed, or one left by an older tokend, may be short.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::identity::HsSecret;

/// The file's name inside the data folder.
pub const FILE_NAME: &str = "jwt-hs256.secret";

/// How often, and how far apart, a short file is read again before giving
/// up. A tokend that wrote the file in place (older versions did) leaves it
/// short only for the moment between creating and writing it.
const SHORT_READ_ATTEMPTS: u32 = 25;
const SHORT_READ_PAUSE: Duration = Duration::from_millis(20);

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
    /// The file holds too short a secret, even after waiting for a writer.
    #[error(
        "the JWT secret file {path} holds {len} bytes, fewer than {min}: delete it to have a new one made, or set --{flag}",
        min = HsSecret::MIN_LEN,
        flag = crate::config::Setting::JwtHs256Secret.long()
    )]
    TooShort {
        /// The path.
        path: PathBuf,
        /// How many bytes it held (surrounding whitespace not counted).
        len: usize,
    },
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
/// base64url, mode 0600; the folder 0700 if it is missing) if it does not
/// exist. Never returns a key shorter than [`HsSecret::MIN_LEN`].
pub fn load_or_create(
    data_dir: &Path,
) -> Result<(HsSecret, SecretOrigin, PathBuf), SecretFileError> {
    let path = data_dir.join(FILE_NAME);
    if let Some(secret) = read(&path)? {
        return Ok((secret, SecretOrigin::Existing, path));
    }
    crate::data_dir::create(data_dir).map_err(|source| SecretFileError::Io {
        path: data_dir.to_owned(),
        source,
    })?;
    if let Some(secret) = create(data_dir, &path)? {
        return Ok((secret, SecretOrigin::Created, path));
    }
    // Another process placed its file first: use that one.
    match read(&path)? {
        Some(secret) => Ok((secret, SecretOrigin::Existing, path)),
        None => Err(SecretFileError::Io {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file vanished right after another process made it",
            ),
        }),
    }
}

/// The secret in `path`; `None` if there is no such file. A short file is
/// read again for a while before it is refused.
fn read(path: &Path) -> Result<Option<HsSecret>, SecretFileError> {
    let mut attempt = 1;
    loop {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SecretFileError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        match HsSecret::new(bytes.trim_ascii()) {
            Ok(secret) => return Ok(Some(secret)),
            Err(_) if attempt < SHORT_READ_ATTEMPTS => {
                attempt += 1;
                std::thread::sleep(SHORT_READ_PAUSE);
            }
            Err(short) => {
                return Err(SecretFileError::TooShort {
                    path: path.to_owned(),
                    len: short.len,
                });
            }
        }
    }
}

/// Makes a new secret and places it at `path` unless a file is already
/// there. `None` if another process was first.
fn create(data_dir: &Path, path: &Path) -> Result<Option<HsSecret>, SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| SecretFileError::Random)?;
    let encoded = URL_SAFE_NO_PAD.encode(bytes);
    // A temporary file in the same folder (so the final placing is a rename
    // or link within one file system), mode 0600, removed if anything fails.
    let mut staged = tempfile::Builder::new()
        .prefix(&format!(".{FILE_NAME}."))
        .suffix(".tmp")
        .tempfile_in(data_dir)
        .map_err(io)?;
    staged.write_all(encoded.as_bytes()).map_err(io)?;
    staged.as_file().sync_all().map_err(io)?;
    match staged.persist_noclobber(path) {
        Ok(_) => {}
        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(error) => return Err(io(error.error)),
    }
    // Make the new name itself durable, so a crash cannot leave two
    // processes that each believe their own secret was kept.
    std::fs::File::open(data_dir)
        .and_then(|folder| folder.sync_all())
        .map_err(io)?;
    HsSecret::new(encoded)
        .map(Some)
        .map_err(|short| SecretFileError::TooShort {
            path: path.to_owned(),
            len: short.len,
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn made_once_then_read_and_the_folder_holds_nothing_else() -> TestResult {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("data");
        let (made, origin, path) = load_or_create(&dir)?;
        assert_eq!(origin, SecretOrigin::Created);
        assert_eq!(made.as_bytes().len(), 43);
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        let (read, origin, _) = load_or_create(&dir)?;
        assert_eq!(origin, SecretOrigin::Existing);
        assert_eq!(read.as_bytes(), made.as_bytes());
        let names: Vec<_> = std::fs::read_dir(&dir)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        assert_eq!(names, [FILE_NAME], "no temporary file is left behind");
        Ok(())
    }

    /// Threads of one process race far more tightly than processes do: the
    /// window in which a file made in place is still empty is hit here
    /// within a few hundred rounds.
    #[test]
    fn racing_makers_all_get_the_one_secret_on_disk() -> TestResult {
        const ROUNDS: usize = 300;
        const MAKERS: usize = 6;
        for _ in 0..ROUNDS {
            let root = tempfile::tempdir()?;
            let dir = Arc::new(root.path().join("data"));
            let start = Arc::new(Barrier::new(MAKERS));
            let makers: Vec<_> = (0..MAKERS)
                .map(|_| {
                    let (dir, start) = (dir.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        load_or_create(&dir)
                            .map(|(secret, origin, _)| (secret.as_bytes().to_vec(), origin))
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            let results: Vec<_> = makers
                .into_iter()
                .map(|maker| maker.join().map_err(|_| "a maker panicked"))
                .collect::<Result<_, _>>()?;
            let on_disk = std::fs::read(dir.join(FILE_NAME))?;
            assert_eq!(on_disk.len(), 43);
            let mut created = 0;
            for result in results {
                let (secret, origin) = result?;
                assert_eq!(secret, on_disk, "a maker got another key");
                created += usize::from(origin == SecretOrigin::Created);
            }
            assert_eq!(created, 1, "exactly one maker's secret was kept");
        }
        Ok(())
    }

    #[test]
    fn a_short_file_is_waited_for_then_refused() -> TestResult {
        let root = tempfile::tempdir()?;
        let path = root.path().join(FILE_NAME);
        // A writer that creates the file, then fills it a moment later.
        std::fs::write(&path, b"")?;
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                std::fs::write(path, b"an-operator-supplied-key-0123456789\n")
            })
        };
        let (secret, origin, _) = load_or_create(root.path())?;
        writer.join().map_err(|_| "writer panicked")??;
        assert_eq!(origin, SecretOrigin::Existing);
        assert_eq!(secret.as_bytes(), b"an-operator-supplied-key-0123456789");

        // One that stays short is refused, naming the file and the length.
        for short in [&b""[..], b"  \n", b"0123456789abcdef0123456789abcde\n"] {
            std::fs::write(&path, short)?;
            let error = load_or_create(root.path())
                .map(|_| ())
                .map_err(|e| e.to_string());
            let message = error.err().ok_or("a short secret was used")?;
            assert!(message.contains(FILE_NAME), "{message}");
            assert!(message.contains("fewer than 32"), "{message}");
        }
        Ok(())
    }
}
