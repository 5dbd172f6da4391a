//! `containarium backup USER --output DIR`: an `incus export` of the
//! container, which carries its disk, its config and so all our metadata
//! (owner, pinned address, keys). `restore` needs nothing else.
//!
//! A backup holds the container's SSH host private keys and /etc/shadow:
//! it is written 0600 into a private directory first and then linked into
//! place, which never follows a symlink and never replaces a file. Its
//! SHA-256 is recorded beside it (`FILE.sha256`, as `sha256sum` writes
//! it), so `restore` can tell a file that was changed since.
//!
//! A digest proves nothing against whoever edits the file: they rewrite the
//! digest too. So the file is also authenticated with the bastions' backup
//! key (`/etc/containarium/backup.key`, 32 random bytes `host init` makes,
//! root's alone, the same on every bastion of a cluster): its HMAC-SHA256
//! goes beside it as `FILE.hmac`, and `restore` checks it before anything
//! else reads the file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use hmac::Mac;

use super::Env;
use crate::config::Paths;
use crate::error::Refused;
use crate::names::UserName;
use crate::plan::{Action, Facts, Plan, Step};

/// HMAC-SHA256, keyed with the backup key.
type BackupMac = hmac::Hmac<sha2::Sha256>;

/// The backup key's length in bytes.
const KEY_LEN: usize = 32;

/// What a `.hmac` line starts with: the algorithm, named.
const HMAC_PREFIX: &str = "HMAC-SHA256 ";

/// Export a user's container to a backup file
///
/// Its digest (FILE.sha256) and its HMAC-SHA256 under the backup key that
/// `host init` makes (FILE.hmac) are written beside it; `restore` checks the
/// HMAC first.
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

    /// Print the result as JSON: {"user", "container", "file",
    /// "digest_file", "hmac_file"}
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
                "hmac_file": hmac_path(&file).to_string_lossy(),
            }));
        } else {
            crate::outln!("{}", file.display());
        }
        Ok(())
    }
}

/// Adds the export of `container` into `dir` and its check to `plan`;
/// returns the file it will write. Refuses a missing directory or backup
/// key and never overwrites a file.
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
    let key_path = env.paths.backup_key();
    let Some(key) = read_key(&key_path)? else {
        bail!(Refused(no_key(&key_path)));
    };
    let stamp = super::create::created_timestamp().replace(['-', ':'], "");
    let file = dir.join(format!("{container}-{stamp}.tar.gz"));
    if [file.clone(), digest_path(&file), hmac_path(&file)]
        .iter()
        .any(|f| f.symlink_metadata().is_ok())
    {
        bail!(Refused(format!("{} already exists", file.display())));
    }
    let path = file.to_string_lossy().into_owned();
    let (incus, name, target) = (env.incus.clone(), container.to_string(), file.clone());
    plan.push(Step::new(
        format!("back up {container} to {path}"),
        Action::check(
            format!(
                "{} into a private directory beside it, chmod 0600, link it into place \
                 (never replacing a file), write {} and {} (HMAC-SHA256 with {})",
                env.incus.cmd(["export", container, path.as_str()]),
                digest_path(&file).display(),
                hmac_path(&file).display(),
                key_path.display()
            ),
            move |_| export(&incus, &name, &target, &key),
        ),
    ));
    Ok(file)
}

/// The refusal when there is no backup key.
pub(super) fn no_key(path: &Path) -> String {
    format!(
        "no backup key {}: `containarium host init` creates it (on a cluster, copy it from \
         another bastion first: every bastion needs the same key)",
        path.display()
    )
}

/// Exports `container` to `file`, which must not exist, and records its
/// digest and its HMAC beside it.
fn export(incus: &crate::incus::Incus, container: &str, file: &Path, key: &[u8]) -> Result<()> {
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
    let (digest, tag) = sha256_and_hmac(key, &staged)?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    write_new(&digest_path(file), &format!("{digest}  {name}\n"))?;
    write_new(&hmac_path(file), &hmac_line(&tag))?;
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

/// Where the HMAC of backup `file` lives.
pub(super) fn hmac_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".hmac");
    PathBuf::from(name)
}

/// The backup key at `path`, `None` when there is none. Refused unless it
/// is a regular file of 32 bytes, owned by root and 0600 (or stricter): whoever
/// can read it can forge a backup that restores as ours.
pub(crate) fn read_key(path: &Path) -> Result<Option<Vec<u8>>> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    key_file_problem(
        meta.file_type().is_file(),
        meta.uid(),
        meta.mode(),
        meta.len(),
    )
    .map_or(Ok(()), |why| {
        Err(Refused(format!(
            "backup key {} {why}: it must be a regular file of {KEY_LEN} random bytes, \
                 owned by root, mode 0600",
            path.display()
        )))
    })?;
    let mut key = Vec::with_capacity(KEY_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut key))
        .with_context(|| format!("reading {}", path.display()))?;
    if key.len() != KEY_LEN {
        bail!(Refused(format!(
            "backup key {} is not {KEY_LEN} bytes",
            path.display()
        )));
    }
    Ok(Some(key))
}

/// What is wrong with a backup key file of this type, owner, mode and size.
fn key_file_problem(regular: bool, uid: u32, mode: u32, len: u64) -> Option<String> {
    if !regular {
        Some("is not a regular file".into())
    } else if uid != 0 {
        Some(format!("is owned by uid {uid}, not root"))
    } else if mode & 0o077 != 0 {
        Some(format!("is mode {:04o}", mode & 0o7777))
    } else if len != KEY_LEN as u64 {
        Some(format!("is {len} bytes, not {KEY_LEN}"))
    } else {
        None
    }
}

/// `host init`'s step: the backup key, made once (32 bytes of
/// /dev/urandom, 0600 root) and never replaced.
pub(crate) fn key_plan(paths: &Paths) -> Result<Plan> {
    let mut plan = Plan::default();
    let path = paths.backup_key();
    if read_key(&path)?.is_some() {
        plan.unchanged(format!("backup key {}", path.display()));
        return Ok(plan);
    }
    let made = path.clone();
    plan.push(
        Step::new(
            format!("create the backup key {}", path.display()),
            Action::check(
                format!(
                    "{KEY_LEN} random bytes from /dev/urandom, 0600 root, linked into place \
                     (never replacing a file); copy it to every other bastion of a cluster"
                ),
                move |_| create_key(&made),
            ),
        )
        .undo(Action::Remove(path)),
    );
    Ok(plan)
}

/// Writes a new key at `path`: a 0600 temporary file beside it, linked into
/// place, so no one ever sees a short key and none is ever replaced.
fn create_key(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut key = [0u8; KEY_LEN];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom")?;
    // tempfile makes it 0600.
    let mut temp = tempfile::Builder::new()
        .prefix(".containarium-key-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    temp.write_all(&key)?;
    temp.as_file().sync_all()?;
    temp.persist_noclobber(path).with_context(|| {
        format!(
            "putting the backup key at {} (it must not exist)",
            path.display()
        )
    })?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The `.hmac` file's one line.
fn hmac_line(tag: &[u8]) -> String {
    format!("{HMAC_PREFIX}{}\n", hex(tag))
}

/// The tag in a `.hmac` file's text: `HMAC-SHA256 ` and 64 hex digits on
/// one line, nothing else.
fn parse_hmac_line(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .strip_prefix(HMAC_PREFIX)?;
    if digits.len() != 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// Checks `file` against the HMAC beside it with `key`, reading the file
/// once; the comparison is constant-time (`Mac::verify_slice`). A refusal
/// says what is wrong in one line.
pub(super) fn verify_hmac(key: &[u8], file: &Path) -> Result<()> {
    let tag_file = hmac_path(file);
    let shown = file.display();
    let untrusted = "restore --untrusted skips this check, if you know where the file came from";
    let text = match std::fs::symlink_metadata(&tag_file) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => bail!(Refused(format!(
            "{shown} has no {}: nothing shows a bastion's containarium wrote it ({untrusted})",
            tag_file.display()
        ))),
        Err(err) => return Err(err).with_context(|| format!("reading {}", tag_file.display())),
        Ok(meta) if !meta.is_file() => bail!(Refused(format!(
            "{} is not a regular file ({untrusted})",
            tag_file.display()
        ))),
        Ok(_) => {
            let mut text = String::new();
            std::fs::File::open(&tag_file)
                .and_then(|f| f.take(4096).read_to_string(&mut text))
                .with_context(|| format!("reading {}", tag_file.display()))?;
            text
        }
    };
    let Some(tag) = parse_hmac_line(&text) else {
        bail!(Refused(format!(
            "{} is not one line `{HMAC_PREFIX}HEX` ({untrusted})",
            tag_file.display()
        )));
    };
    let mut mac = new_mac(key);
    std::io::copy(
        &mut std::fs::File::open(file).with_context(|| format!("reading {shown}"))?,
        &mut MacWriter(&mut mac),
    )
    .with_context(|| format!("reading {shown}"))?;
    if mac.verify_slice(&tag).is_err() {
        bail!(Refused(format!(
            "{shown} fails its HMAC-SHA256 check ({}): it was changed after containarium \
             wrote it, or written with another backup key ({untrusted})",
            tag_file.display()
        )));
    }
    Ok(())
}

fn new_mac(key: &[u8]) -> BackupMac {
    // HMAC takes a key of any length.
    <BackupMac as Mac>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// Feeds what is written into a MAC (`std::io::copy` into it).
struct MacWriter<'a>(&'a mut BackupMac);

impl Write for MacWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file's SHA-256 (hex) and HMAC-SHA256 with `key`, in one read.
fn sha256_and_hmac(key: &[u8], path: &Path) -> Result<(String, Vec<u8>)> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let (mut hasher, mut mac) = (Sha256::new(), new_mac(key));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        mac.update(&buf[..n]);
    }
    Ok((
        hex(&hasher.finalize()),
        mac.finalize().into_bytes().to_vec(),
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    Ok(hex(&hasher.finalize()))
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

    /// RFC 4231 test case 2, through the file reader and the `.hmac` line.
    #[test]
    fn hmac_lines_are_written_parsed_and_verified_in_constant_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.tar.gz");
        std::fs::write(&f, b"what do ya want for nothing?").unwrap();
        let (_, tag) = sha256_and_hmac(b"Jefe", &f).unwrap();
        let line = hmac_line(&tag);
        assert_eq!(
            line,
            "HMAC-SHA256 5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\n"
        );
        assert_eq!(parse_hmac_line(&line), Some(tag.clone()));
        for bad in [
            "",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\n",
            "HMAC-SHA256 5bdc\n",
            "HMAC-SHA256 zzdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843\n",
            &format!("{line}{line}"),
        ] {
            assert_eq!(parse_hmac_line(bad), None, "{bad:?}");
        }
        let refusal = |key: &[u8]| verify_hmac(key, &f).unwrap_err().to_string();
        assert!(refusal(b"Jefe").contains("has no"));
        std::fs::write(hmac_path(&f), "HMAC-SHA256 nope\n").unwrap();
        assert!(refusal(b"Jefe").contains("is not one line"));
        std::fs::write(hmac_path(&f), &line).unwrap();
        verify_hmac(b"Jefe", &f).unwrap();
        assert!(refusal(b"Jeff").contains("fails its HMAC-SHA256 check"));
        // One byte changed, or one appended: refused.
        std::fs::write(&f, b"what do ya want for nothing!").unwrap();
        assert!(refusal(b"Jefe").contains("fails its HMAC-SHA256 check"));
        std::fs::write(&f, b"what do ya want for nothing?\0").unwrap();
        assert!(refusal(b"Jefe").contains("fails its HMAC-SHA256 check"));
    }

    #[test]
    fn the_key_is_roots_alone_and_made_once() {
        assert_eq!(key_file_problem(true, 0, 0o100600, 32), None);
        assert_eq!(key_file_problem(true, 0, 0o100400, 32), None);
        for (regular, uid, mode, len, why) in [
            (false, 0, 0o120777, 32, "is not a regular file"),
            (true, 1000, 0o100600, 32, "is owned by uid 1000, not root"),
            (true, 0, 0o100644, 32, "is mode 0644"),
            (true, 0, 0o100600, 16, "is 16 bytes, not 32"),
        ] {
            assert_eq!(
                key_file_problem(regular, uid, mode, len).as_deref(),
                Some(why)
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("etc/containarium/backup.key");
        create_key(&key).unwrap();
        let first = std::fs::read(&key).unwrap();
        assert_eq!(first.len(), 32);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_key(&key).is_err(), "never replaced");
        assert_eq!(std::fs::read(&key).unwrap(), first);
    }
}
