//! `containarium backup USER --output DIR`: an `incus export` of the
//! container, which carries its disk, its config and so all our metadata
//! (owner, pinned address, keys). `restore` needs nothing else.
//!
//! A backup holds the container's SSH host private keys and /etc/shadow:
//! it is written 0600 into a private directory first and then linked into
//! place, which never follows a symlink and never replaces a file. Its
//! SHA-256 is recorded beside it (`FILE.sha256`, as `sha256sum` writes
//! it), so `restore` can tell a file that was changed since.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Env;
use crate::error::Refused;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// Export a user's container to a backup file
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// User name
    user: UserName,

    /// Directory to write USER-container-TIMESTAMP.tar.gz into
    #[arg(long, value_name = "DIR")]
    output: PathBuf,

    /// Print the plan and change nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the result as JSON: {"user", "container", "file", "digest_file"}
    #[arg(long, conflicts_with = "dry_run")]
    json: bool,
}

impl BackupArgs {
    pub fn run(self, env: &Env) -> Result<()> {
        let instance = super::managed(env, &self.user)?;
        let mut plan = Plan::default();
        let file = backup_steps(env, &instance.name, &self.output, &mut plan)?;
        if self.dry_run {
            crate::out!("{}", plan.describe());
            return Ok(());
        }
        plan.apply(env.paths.lock_file(), &mut Facts::default())?;
        if self.json {
            super::print_json(&serde_json::json!({
                "user": self.user.as_str(),
                "container": instance.name,
                "file": file.to_string_lossy(),
                "digest_file": digest_path(&file).to_string_lossy(),
            }));
        } else {
            crate::outln!("{}", file.display());
        }
        Ok(())
    }
}

/// Adds the export of `container` into `dir` and its check to `plan`;
/// returns the file it will write. Refuses a missing directory and never
/// overwrites a file.
pub(super) fn backup_steps(
    env: &Env,
    container: &str,
    dir: &Path,
    plan: &mut Plan,
) -> Result<PathBuf> {
    if !dir.is_dir() {
        bail!(Refused(format!(
            "backup directory {} does not exist",
            dir.display()
        )));
    }
    let stamp = super::create::created_timestamp().replace(['-', ':'], "");
    let file = dir.join(format!("{container}-{stamp}.tar.gz"));
    if file.symlink_metadata().is_ok() || digest_path(&file).symlink_metadata().is_ok() {
        bail!(Refused(format!("{} already exists", file.display())));
    }
    let path = file.to_string_lossy().into_owned();
    let (incus, name, target) = (env.incus.clone(), container.to_string(), file.clone());
    plan.push(Step::new(
        format!("back up {container} to {path}"),
        Action::check(
            format!(
                "{} into a private directory beside it, chmod 0600, link it into place \
                 (never replacing a file), write {}",
                env.incus.cmd(["export", container, path.as_str()]),
                digest_path(&file).display()
            ),
            move |_| export(&incus, &name, &target),
        ),
    ));
    Ok(file)
}

/// Exports `container` to `file`, which must not exist, and records its
/// digest beside it.
fn export(incus: &crate::incus::Incus, container: &str, file: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    // 0700, and removed whatever happens.
    let private = tempfile::Builder::new()
        .prefix(".containarium-backup-")
        .tempdir_in(dir)
        .with_context(|| format!("making a private directory in {}", dir.display()))?;
    let staged = private.path().join("backup.tar.gz");
    let staged_text = staged.to_string_lossy().into_owned();
    crate::exec::run(&incus.cmd(["export", container, staged_text.as_str()]))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    if std::fs::metadata(&staged)?.len() == 0 {
        bail!("the export of {container} is empty");
    }
    let digest = sha256_file(&staged)?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    write_new(&digest_path(file), &format!("{digest}  {name}\n"))?;
    std::fs::hard_link(&staged, file).with_context(|| {
        format!(
            "putting the backup at {} (it must not exist)",
            file.display()
        )
    })?;
    Ok(())
}

/// Where the digest of backup `file` lives.
pub(super) fn digest_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Creates `path` with `text`, 0600: never through a symlink, never over a
/// file that exists.
fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The file's SHA-256, in hex.
pub(super) fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_new_files_never_follow_or_replace() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a:b.tar.gz");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest_path(&f), dir.path().join("a:b.tar.gz.sha256"));
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_new(&link, "x").is_err());
        assert!(write_new(&f, "x").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        write_new(&dir.path().join("new"), "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("new"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
