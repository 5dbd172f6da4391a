//! Our one lock file, which serialises changes to the host and to Incus
//! between concurrent `containarium` runs: from the probes that plan a
//! change to the last step that must not interleave with another run.
//!
//! We never delete the lock file or touch another program's lock. The
//! holder writes its PID and verb into the file, so a waiting run can say
//! who it waits for; waiting is bounded.
//!
//! A lock file is root's alone (0600, in a 0700 directory when we make the
//! directory): `flock` needs only a descriptor, so a file any local user can
//! open read-only is one any local user can hold, stalling every verb,
//! revocation included.

use std::fs::{DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a run waits for another to finish before giving up.
pub const WAIT: Duration = Duration::from_secs(600);

/// Held while alive; dropping it releases the lock.
pub struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Nobody holds it any more: say so to the next reader.
        let _ = self.file.set_len(0);
    }
}

/// Takes the lock for `what` (e.g. "create alice"), waiting at most
/// [`WAIT`] for another run that holds it.
pub fn acquire(path: &Path, what: &str) -> Result<Lock> {
    acquire_within(path, what, WAIT)
}

pub fn acquire_within(path: &Path, what: &str, wait: Duration) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    // One an older version made 0644.
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(Permissions::from_mode(0o600))
            .with_context(|| format!("making {} root's alone", path.display()))?;
    }
    let start = Instant::now();
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let holder = holder(&mut file);
                if start.elapsed() >= wait {
                    bail!(crate::error::Refused(format!(
                        "gave up after {}s waiting for {} (held by {holder}); nothing changed",
                        wait.as_secs(),
                        path.display()
                    )));
                }
                if !said {
                    crate::ui::note(&format!(
                        "waiting for lock {} (held by {holder}: another containarium is running)",
                        path.display()
                    ));
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    write!(file, "{} containarium {what}", std::process::id())?;
    Ok(Lock {
        file,
        path: path.to_path_buf(),
    })
}

/// Makes `dir`, a directory of ours that an older version made 0755, root's
/// alone (0700). Its files stay where they are.
pub fn make_private(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && meta.permissions().mode() & 0o777 != 0o700 => {
            std::fs::set_permissions(dir, Permissions::from_mode(0o700))
                .with_context(|| format!("making {} root's alone", dir.display()))
        }
        _ => Ok(()),
    }
}

/// What the holder wrote into the lock file.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match text.trim().split_once(' ') {
        Some((pid, what)) if !what.is_empty() => format!("pid {pid}, {what}"),
        _ => "another process".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_are_roots_alone_in_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/containarium/users/alice.lock");
        drop(acquire(&path, "create alice").unwrap());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("run/containarium")), 0o700);
        // What an older version left: a 0644 file in a 0755 directory.
        let users = path.parent().unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(users, Permissions::from_mode(0o755)).unwrap();
        make_private(users).unwrap();
        drop(acquire(&path, "create alice").unwrap());
        assert_eq!((mode(&path), mode(users)), (0o600, 0o700));
        // A link at the lock's path is never followed.
        let link = dir.path().join("run/link.lock");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(acquire(&link, "create bob").is_err());
        assert!(!dir.path().join("elsewhere").exists());
    }

    #[test]
    fn second_holder_waits_a_bounded_time_and_names_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/containarium.lock");
        let first = acquire(&path, "create alice").unwrap();
        let err = acquire_within(&path, "delete bob", Duration::from_millis(200))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "held by pid {}, containarium create alice",
                std::process::id()
            )),
            "{text}"
        );
        drop(first);
        let second = acquire_within(&path, "delete bob", Duration::from_millis(200)).unwrap();
        assert!(
            std::fs::read_to_string(second.path())
                .unwrap()
                .ends_with("containarium delete bob")
        );
    }
}
