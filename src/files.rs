//! Files on the host that we write: the jump accounts' key files and the
//! sshd drop-in. Writes are atomic (temporary file in the same directory,
//! fsync, rename, fsync of the directory) with an explicit mode, so sshd
//! never reads half a key file and a crash never leaves one empty.

use std::fmt;
use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileWrite {
    pub path: PathBuf,
    pub mode: u32,
    pub contents: String,
}

impl FileWrite {
    pub fn apply(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .with_context(|| format!("{} has no parent directory", self.path.display()))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".containarium-")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        temp.write_all(self.contents.as_bytes())?;
        temp.as_file()
            .set_permissions(Permissions::from_mode(self.mode))?;
        temp.as_file().sync_all()?;
        temp.persist(&self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl fmt::Display for FileWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {} (mode {:04o}):", self.path.display(), self.mode)?;
        for line in self.contents.lines() {
            f.write_str("\n")?;
            write!(f, "    | {line}")?;
        }
        Ok(())
    }
}

/// Reads a file that may be absent.
pub fn read_optional(path: &std::path::Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice");
        std::fs::write(&path, "old").unwrap();
        let write = FileWrite {
            path: path.clone(),
            mode: 0o644,
            contents: "new\n".into(),
        };
        write.apply().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
    }
}
