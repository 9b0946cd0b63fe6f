//! Files and folders only their owner and group may read: the archive and the daemon's state
//! file say what every machine did, which is plant data, not something for every account on the
//! host. Files are created `0640` and folders `0750` (the process umask may narrow both further).

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of the files the archive and the daemon create.
pub const FILE_MODE: u32 = 0o640;
/// Mode of the folders they create.
pub const DIR_MODE: u32 = 0o750;

/// Creates (or truncates) `path` for writing, with [`FILE_MODE`] when it is new.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `path` and its missing parents with [`DIR_MODE`]; folders that exist are left as
/// they are.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn what_it_creates_is_not_world_readable() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        create_file(&file).unwrap();
        for path in [root.path().join("a"), dir, file] {
            assert_eq!(
                mode(&path) & 0o007,
                0,
                "{} is world-accessible",
                path.display()
            );
            assert_eq!(
                mode(&path) & 0o020,
                0,
                "{} is group-writable",
                path.display()
            );
        }
    }
}
