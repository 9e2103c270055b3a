//! The data folder holds token hashes, audit events and the zero-config JWT
//! secret, so only tokend's own user may read it: tokend creates the folder
//! with mode 0700 and every file in it with mode 0600 (the umask can only
//! take bits away). A folder or file that already exists keeps its mode: the
//! folder may be one an operator made on purpose.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the data folder and of any parent folder tokend creates for it.
pub const FOLDER_MODE: u32 = 0o700;
/// Mode of every file tokend creates in the data folder.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` (and missing parents) with mode 0700 if it does not exist.
pub fn create(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(FOLDER_MODE)
        .create(path)
}

/// Creates an empty `path` with mode 0600 unless it exists; an existing file
/// is left untouched. SQLite gives its `-wal`, `-shm` and `-journal` files
/// the mode of the database file, so creating that file first makes them
/// 0600 too. (An empty file is a valid, empty SQLite database.)
pub fn create_private_file(path: &Path) -> io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> io::Result<u32> {
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn folders_are_0700_files_0600_and_existing_ones_are_left_alone() -> io::Result<()> {
        let root = tempfile::tempdir()?;
        let nested = root.path().join("a/b");
        create(&nested)?;
        assert_eq!(mode(&root.path().join("a"))?, 0o700);
        assert_eq!(mode(&nested)?, 0o700);
        let file = nested.join("tokend.db");
        create_private_file(&file)?;
        assert_eq!(mode(&file)?, 0o600);

        // Existing ones keep their mode and content.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640))?;
        std::fs::write(&file, b"kept")?;
        create_private_file(&file)?;
        assert_eq!(mode(&file)?, 0o640);
        assert_eq!(std::fs::read(&file)?, b"kept");
        std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o750))?;
        create(&nested)?;
        assert_eq!(mode(&nested)?, 0o750);
        Ok(())
    }
}
