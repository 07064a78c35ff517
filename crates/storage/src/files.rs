//! Owner-only files: the data directory is 0700, database and key files are
//! 0600, from their creation on.
//!
//! The SQLite files hold the users' password hashes and the ID-token signing
//! keys; `service.key` signs service credentials. Anyone who can read them
//! can mint an admin token, so on a shared host they must be readable by the
//! owner only. New ones are created with those modes whatever the umask; an
//! existing one found looser (a data dir made by an older version, or copied
//! with `cp -r`) is tightened at start, with a warning naming it, rather
//! than refused: refusing would stop a shop over a fix it can make itself.
//!
//! Elsewhere than on Unix these are no-ops (the modes do not exist there).

use anyhow::Context as _;
use std::path::Path;

/// Mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of database and key files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its missing parents) as 0700, or tightens it to 0700
/// when it exists with a looser mode.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .with_context(|| format!("Failed to create data directory {}", dir.display()))?;
        }
        tighten(dir, DIR_MODE)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create data directory {}", dir.display()))
    }
}

/// Creates `path` empty as 0600 when it does not exist; tightens it to 0600
/// when it exists with a looser mode. Never truncates.
pub fn private_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => tighten(path, FILE_MODE),
            Err(e) => Err(e).with_context(|| format!("Failed to create {}", path.display())),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Tightens `path` to `mode` when it exists and grants more than `mode`
/// (a warning says so); nothing when it does not exist.
pub fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("Failed to read the mode of {}", path.display()))
            }
        };
        let current = meta.permissions().mode() & 0o777;
        if current & !mode != 0 {
            tracing::warn!(
                path = %path.display(),
                was = format!("{current:o}"),
                now = format!("{mode:o}"),
                "tightening the mode of a private file: other users could read it"
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("Failed to change the mode of {}", path.display()))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(())
    }
}

/// Prepares the files of a SQLite database at `db` (`<dir>/<name>.db`):
/// the directory 0700, the database file created 0600 before SQLite opens
/// it, and its `-wal` / `-shm` companions tightened when they exist. SQLite
/// gives the companions it creates the mode of the database file, so
/// creating that one 0600 is enough for them.
pub fn private_sqlite(db: &Path) -> anyhow::Result<()> {
    if let Some(dir) = db.parent() {
        private_dir(dir)?;
    }
    private_file(db)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = db.as_os_str().to_owned();
        companion.push(suffix);
        tighten(Path::new(&companion), FILE_MODE)?;
    }
    Ok(())
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_private_and_loose_ones_are_tightened() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let db = dir.join("users.db");
        private_sqlite(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.join("users.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
        private_sqlite(&db).unwrap();
        assert_eq!((mode(&dir), mode(&db), mode(&wal)), (0o700, 0o600, 0o600));
        // Stricter than asked is left alone.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        private_file(&db).unwrap();
        assert_eq!(mode(&db), 0o400);
    }
}
