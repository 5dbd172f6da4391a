//! cloud-init user-data, rendered from a TOML template.
//!
//! Templates are built in (`templates/*.toml`, compiled into the binary so it
//! works on air-gapped hosts) and may be overridden or added to in
//! /etc/containarium/templates. The output is YAML in which every scalar is
//! a JSON-quoted string, so no user name, key comment or command can change
//! the document's structure.
//!
//! Also how far cloud-init got in a container, read from the status.json it
//! keeps (the file `cloud-init status` reads).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use serde::Deserialize;

use crate::error::Refused;
use crate::incus::Incus;
use crate::keys::PublicKey;
use crate::names::UserName;
use crate::ui;

const BUILT_IN: [(&str, &str); 1] = [("default", include_str!("../templates/default.toml"))];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Template {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    pub shell: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub runcmd: Vec<Vec<String>>,
    #[serde(default)]
    pub docker: Extra,
}

/// What `docker = true` adds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Extra {
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub runcmd: Vec<Vec<String>>,
}

impl Template {
    /// Loads template `name`, from `dir` if it has one, else built in.
    pub fn load(dir: &Path, name: &str) -> Result<Template, Refused> {
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(Refused(format!(
                "invalid template name \"{}\": use lowercase letters, digits and '-'",
                name.escape_debug()
            )));
        }
        let path = dir.join(format!("{name}.toml"));
        // A template is what runs as root in every new container: it and
        // its directory are root's alone, as config.toml is.
        crate::config::check_roots_dir(dir, "template directory")?;
        // Only an absent file falls back to the built-in template: an
        // override that is there but unreadable is the admin's to fix.
        let (text, origin) = match crate::config::read_roots(&path, "template")? {
            Some(text) => (text, path.display().to_string()),
            None => match BUILT_IN.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => (text.to_string(), format!("built-in template {name}")),
                None => {
                    return Err(Refused(format!(
                        "unknown template \"{name}\": available are {}",
                        available(dir).join(", ")
                    )));
                }
            },
        };
        let mut template: Template = toml::from_str(&text)
            .map_err(|err| Refused(format!("{origin}: {}", err.message().replace('\n', " "))))?;
        if template
            .runcmd
            .iter()
            .chain(&template.docker.runcmd)
            .any(Vec::is_empty)
        {
            return Err(Refused(format!(
                "{origin}: a runcmd entry is an empty command"
            )));
        }
        template.name = name.to_string();
        Ok(template)
    }

    /// The `#cloud-config` user-data for `user`.
    pub fn render(&self, user: &UserName, keys: &[PublicKey], docker: bool) -> String {
        let mut groups = self.groups.clone();
        let mut runcmd = self.runcmd.clone();
        if docker {
            groups.extend(self.docker.groups.iter().cloned());
            runcmd.extend(self.docker.runcmd.iter().cloned());
        }
        let mut out = String::new();
        let _ = writeln!(out, "#cloud-config");
        let _ = writeln!(
            out,
            "# Rendered by containarium from template {:?}.",
            self.name
        );
        let _ = writeln!(out, "users:");
        let _ = writeln!(out, "  - name: {}", quote(user.as_str()));
        let _ = writeln!(out, "    shell: {}", quote(&self.shell));
        if !groups.is_empty() {
            let _ = writeln!(out, "    groups: {}", list(&groups));
        }
        let _ = writeln!(out, "    sudo: {}", quote("ALL=(ALL) NOPASSWD:ALL"));
        let _ = writeln!(out, "    lock_passwd: true");
        let _ = writeln!(out, "    ssh_authorized_keys:");
        for key in keys {
            let _ = writeln!(out, "      - {}", quote(&key.to_string()));
        }
        let _ = writeln!(out, "ssh_pwauth: false");
        let _ = writeln!(out, "disable_root: true");
        if !runcmd.is_empty() {
            let _ = writeln!(out, "runcmd:");
            for cmd in &runcmd {
                let _ = writeln!(out, "  - {}", list(cmd));
            }
        }
        out
    }
}

/// Names of every template `load` would find.
fn available(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = BUILT_IN.iter().map(|(n, _)| n.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".toml") {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// A YAML double-quoted scalar; JSON's string syntax is a subset of it.
fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialise")
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Waits in the container, at the cost of a `sleep` every 100 ms, until
/// cloud-init's final stage has written this boot's result.json (/run is new
/// each boot). Exits 3 at once when cloud-init's systemd generator disabled
/// it for this boot, and when it was not enabled within 10 s (not installed,
/// or started some other way). `cloud-init status --wait` would start
/// Python in the booting container and notice the end up to 250 ms late; on
/// a 1-CPU container that made create-to-SSH ~10% slower.
pub const WAIT_SCRIPT: &str = "i=0; until [ -e /run/cloud-init/result.json ]; do \
    [ ! -e /run/cloud-init/disabled ] || exit 3; \
    if [ ! -e /run/cloud-init/enabled ]; then i=$((i + 1)); [ $i -le 100 ] || exit 3; fi; \
    sleep 0.1; done";
/// Exit status of `WAIT_SCRIPT` when cloud-init is not running this boot.
pub const WAIT_NOT_ENABLED: i32 = 3;
/// Where cloud-init records each boot stage's start, end and errors: what
/// `cloud-init status` reads, through a symlink in /run/cloud-init.
pub const STATUS_FILE: &str = "/var/lib/cloud/data/status.json";
/// How long cloud-init may take; installing Docker from a mirror is the
/// slow case.
pub const TIMEOUT: Duration = Duration::from_secs(900);
/// Everything cloud-init's modules printed: where a failure explains itself.
pub const OUTPUT_LOG: &str = "/var/log/cloud-init-output.log";

/// How far cloud-init got in this boot, by the rules of `cloud-init status`.
#[derive(Debug, PartialEq)]
pub enum Progress {
    /// Nothing from this boot yet: no status.json, or one left over in the
    /// image from before `since`.
    NotStarted,
    Running,
    /// The final stage finished. `warnings` are the recoverable errors that
    /// make cloud-init ≥ 23.4 exit 2 ("done with warnings").
    Done {
        warnings: Vec<String>,
    },
    /// A stage reported errors (`cloud-init status` says "error", exit 1).
    Failed {
        errors: Vec<String>,
    },
}

/// Stage times below this (2001-09-09 as seconds since the epoch) are an
/// uptime: cloud-init 24.1 and later (Debian 13's 25.1) stamp stages with
/// /proc/uptime, the host's unless lxcfs virtualises it, where 22.4
/// (Debian 12) used the epoch.
const EPOCH_STAMPS_FROM: f64 = 1e9;

/// Reads status.json, counting only stages that started at or after `since`
/// (seconds since the epoch; the container shares the host's clock). Stages
/// stamped with an uptime cannot be compared with it: they are this boot's,
/// as the caller waited for this boot's /run/cloud-init/result.json (/run is
/// empty at every boot) and cloud-init resets status.json when a boot starts.
pub fn progress(status_json: &str, since: f64) -> Result<Progress> {
    let status: serde_json::Value =
        serde_json::from_str(status_json).map_err(|e| anyhow!("{STATUS_FILE}: {e}"))?;
    let v1 = status
        .get("v1")
        .and_then(|v| v.as_object())
        .ok_or_else(|| anyhow!("{STATUS_FILE} has no \"v1\" object"))?;
    let time = |stage: &serde_json::Value, key: &str| stage.get(key).and_then(|t| t.as_f64());
    let uptime = v1
        .values()
        .filter_map(|stage| time(stage, "start"))
        .any(|t| t < EPOCH_STAMPS_FROM);
    let stages: Vec<(&String, &serde_json::Value)> = v1
        .iter()
        .filter(|(_, stage)| time(stage, "start").is_some_and(|t| uptime || t >= since))
        .collect();
    if stages.is_empty() {
        return Ok(Progress::NotStarted);
    }
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for (_, stage) in &stages {
        for error in stage
            .get("errors")
            .and_then(|e| e.as_array())
            .into_iter()
            .flatten()
        {
            errors.push(
                error
                    .as_str()
                    .map_or_else(|| error.to_string(), str::to_string),
            );
        }
        let recoverable = stage.get("recoverable_errors").and_then(|r| r.as_object());
        for (level, messages) in recoverable.into_iter().flatten() {
            for message in messages.as_array().into_iter().flatten() {
                let message = message
                    .as_str()
                    .map_or_else(|| message.to_string(), str::to_string);
                warnings.push(format!("{level}: {message}"));
            }
        }
    }
    if !errors.is_empty() {
        return Ok(Progress::Failed { errors });
    }
    let running = v1.get("stage").is_some_and(|s| !s.is_null())
        || stages
            .iter()
            .any(|(_, stage)| time(stage, "finished").is_none());
    let final_done = stages
        .iter()
        .any(|(name, stage)| *name == "modules-final" && time(stage, "finished").is_some());
    Ok(if final_done && !running {
        Progress::Done { warnings }
    } else {
        Progress::Running
    })
}

/// `timeout … sh -c WAIT_SCRIPT`, run in the container.
pub fn wait_argv() -> Vec<String> {
    let timeout = TIMEOUT.as_secs().to_string();
    ["timeout", &timeout, "sh", "-c", WAIT_SCRIPT]
        .map(String::from)
        .to_vec()
}

/// Waits for cloud-init's final stage in instance `name` with `WAIT_SCRIPT`, then
/// reads its status.json for errors and warnings. Asks `cloud-init status
/// --wait` instead when cloud-init is not enabled for this boot or its
/// status.json is not what we know how to read. `since` is a time (seconds
/// since the epoch) before the container started.
pub fn wait(incus: &Incus, name: &str, since: f64) -> Result<()> {
    let start = Instant::now();
    let argv = wait_argv();
    let out = incus.exec_unchecked(name, &argv.iter().map(String::as_str).collect::<Vec<_>>())?;
    match out.status.code() {
        Some(0) => {}
        Some(WAIT_NOT_ENABLED) => return wait_with_status_command(incus, name, start),
        Some(124) => return Err(failure(incus, name, &timed_out())),
        code => bail!(
            "waiting for cloud-init in {name} failed ({}): {}",
            code.map_or("killed by a signal".into(), |c| format!("exit code {c}")),
            one_line_of(&out.stdout, &out.stderr)
        ),
    }
    let status = incus.read_file(name, STATUS_FILE)?;
    match status.map(|json| progress(&json, since)) {
        Some(Ok(Progress::Done { warnings })) => {
            if !warnings.is_empty() {
                warn_of(&warnings.join("\n"));
            }
            Ok(())
        }
        Some(Ok(Progress::Failed { errors })) => Err(failure(
            incus,
            name,
            &format!(
                "reported errors: {}",
                crate::error::printable(&errors.join("; "))
            ),
        )),
        other => {
            let why = match other {
                Some(Err(err)) => format!("{err:#}"),
                None => format!("{STATUS_FILE} is missing"),
                Some(Ok(progress)) => format!("{STATUS_FILE} says {progress:?}"),
            };
            ui::note(&format!("{why}; asking `cloud-init status --wait` instead"));
            wait_with_status_command(incus, name, start)
        }
    }
}

/// `cloud-init status --wait` in the container, for what is left of the
/// timeout.
fn wait_with_status_command(incus: &Incus, name: &str, start: Instant) -> Result<()> {
    let left = TIMEOUT.saturating_sub(start.elapsed());
    let left = left.as_secs_f64().ceil().max(1.0).to_string();
    let out = incus.exec_unchecked(name, &["timeout", &left, "cloud-init", "status", "--wait"])?;
    let why = match out.status.code() {
        Some(0) if out.stdout.contains("status: disabled") => {
            bail!(
                "cloud-init is disabled in {name}, so nothing would set up the user: use an image that runs it (a /cloud image)"
            )
        }
        Some(0) => return Ok(()),
        // 2: done, with recoverable errors or deprecation warnings.
        Some(2) => {
            let long = incus.exec_unchecked(name, &["cloud-init", "status", "--long"])?;
            warn_of(long.stdout.trim());
            return Ok(());
        }
        Some(124) => timed_out(),
        Some(127) => "could not run: the image has no cloud-init (use a /cloud image)".to_string(),
        Some(code) => format!(
            "failed with exit code {code}: {}",
            one_line_of(&out.stdout, &out.stderr)
        ),
        None => "was killed by a signal".to_string(),
    };
    Err(failure(incus, name, &why))
}

fn timed_out() -> String {
    format!("did not finish within {}s", TIMEOUT.as_secs())
}

fn warn_of(warnings: &str) {
    ui::note(&format!(
        "warning: cloud-init finished with warnings:\n{}",
        indent(&crate::error::printable(warnings))
    ));
}

/// The error for a cloud-init that failed, with the end of its output log.
fn failure(incus: &Incus, name: &str, why: &str) -> anyhow::Error {
    let log = incus
        .read_file(name, OUTPUT_LOG)
        .ok()
        .flatten()
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    anyhow!(
        "cloud-init in {name} {why}; the end of {}:\n{}",
        OUTPUT_LOG,
        indent(&crate::error::printable(tail.trim()))
    )
}

/// What a tool said, on one line: stdout and stderr joined.
fn one_line_of(stdout: &str, stderr: &str) -> String {
    let text = format!("{} {}", stdout.trim(), stderr.trim()).replace('\n', " ");
    crate::error::one_line(&crate::error::printable(&text))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice_keys() -> Vec<PublicKey> {
        vec![
            PublicKey::parse_line(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice \"laptop\"",
                "k",
            )
            .unwrap(),
        ]
    }

    #[test]
    fn renders_default_template() {
        let dir = tempfile::tempdir().unwrap();
        let template = Template::load(dir.path(), "default").unwrap();
        let alice = "alice".parse().unwrap();
        insta::assert_snapshot!(template.render(&alice, &alice_keys(), true), @r#"
        #cloud-config
        # Rendered by containarium from template "default".
        users:
          - name: "alice"
            shell: "/bin/bash"
            groups: ["sudo", "docker"]
            sudo: "ALL=(ALL) NOPASSWD:ALL"
            lock_passwd: true
            ssh_authorized_keys:
              - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice \"laptop\""
        ssh_pwauth: false
        disable_root: true
        runcmd:
          - ["systemctl", "enable", "--now", "ssh"]
          - ["sh", "-c", "command -v dockerd >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io; }"]
          - ["systemctl", "disable", "--now", "docker.service", "containerd.service"]
          - ["systemctl", "enable", "--now", "docker.socket"]
        "#);
        let without = template.render(&alice, &alice_keys(), false);
        assert!(without.contains(r#"groups: ["sudo"]"#));
        assert!(!without.contains("docker"));
    }

    #[test]
    fn local_templates_override_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("minimal.toml"),
            "description = \"bare\"\nshell = \"/bin/sh\"\n",
        )
        .unwrap();
        let minimal = Template::load(dir.path(), "minimal").unwrap();
        assert_eq!(minimal.shell, "/bin/sh");
        let err = Template::load(dir.path(), "nope").unwrap_err().0;
        assert_eq!(
            err,
            "unknown template \"nope\": available are default, minimal"
        );
        assert!(Template::load(dir.path(), "../etc/passwd").is_err());
        std::fs::write(
            dir.path().join("typo.toml"),
            "descripton = \"x\"\nshell = \"/bin/sh\"\n",
        )
        .unwrap();
        let err = Template::load(dir.path(), "typo").unwrap_err().0;
        assert!(err.contains("unknown field"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn an_override_that_cannot_be_read_or_parsed_is_an_error_not_the_built_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.toml");
        // The control: no override, the built-in one.
        assert_eq!(
            Template::load(dir.path(), "default").unwrap().shell,
            "/bin/bash"
        );
        std::fs::write(&path, b"description = \"\xff\"\n").unwrap();
        let err = Template::load(dir.path(), "default").unwrap_err().0;
        assert!(err.starts_with("cannot read template "), "{err}");
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = Template::load(dir.path(), "default").unwrap_err().0;
        assert!(err.contains("is not a regular file"), "{err}");
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, "shell = [\n").unwrap();
        let err = Template::load(dir.path(), "default").unwrap_err().0;
        assert!(err.starts_with(&path.display().to_string()), "{err}");
    }

    /// Templates run as root in every new container: like config.toml, an
    /// override and its directory must be root's alone, and a FIFO is
    /// refused at once instead of read.
    #[test]
    fn templates_and_their_directory_must_be_root_s_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("course.toml");
        std::fs::write(&path, "description = \"course\"\nshell = \"/bin/sh\"\n").unwrap();
        let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
        mode(&path, 0o644).unwrap();
        mode(dir.path(), 0o755).unwrap();
        // The control: root's alone, it is read.
        assert_eq!(
            Template::load(dir.path(), "course").unwrap().description,
            "course"
        );
        mode(&path, 0o664).unwrap();
        let err = Template::load(dir.path(), "course").unwrap_err().0;
        assert!(err.contains("is writable by group or others"), "{err}");
        mode(&path, 0o644).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        let err = Template::load(dir.path(), "course").unwrap_err().0;
        assert!(err.contains("is not owned by root"), "{err}");
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        mode(dir.path(), 0o777).unwrap();
        let err = Template::load(dir.path(), "default").unwrap_err().0;
        assert!(
            err.starts_with("template directory ")
                && err.contains("is writable by group or others"),
            "{err}"
        );
        mode(dir.path(), 0o755).unwrap();
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let start = std::time::Instant::now();
        let err = Template::load(dir.path(), "course").unwrap_err().0;
        assert!(err.contains("is not a regular file"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    /// status.json from cloud-init 22.4.2 (Debian 12) after a clean boot.
    const DONE: &str = include_str!("../tests/fixtures/cloud-init-status.json");
    const BOOTED_AT: f64 = 1_795_488_950.0;

    #[test]
    fn status_of_a_finished_boot_is_done() {
        assert_eq!(
            progress(DONE, BOOTED_AT).unwrap(),
            Progress::Done { warnings: vec![] }
        );
    }

    /// status.json from cloud-init 25.1.4 (Debian 13) after a clean boot,
    /// stamped with the host's uptime (no lxcfs).
    const DONE_25: &str = include_str!("../tests/fixtures/cloud-init-25-status.json");

    #[test]
    fn status_of_cloud_init_25_stamped_with_the_uptime_is_done() {
        assert_eq!(
            progress(DONE_25, BOOTED_AT).unwrap(),
            Progress::Done { warnings: vec![] }
        );
        let failed = DONE_25.replacen(
            r#""errors": [],
   "finished": 36953.66"#,
            r#""errors": ["('scripts_user', RuntimeError('Runparts: 1 failures'))"],
   "finished": 36953.66"#,
            1,
        );
        assert_ne!(failed, DONE_25);
        assert!(matches!(
            progress(&failed, BOOTED_AT).unwrap(),
            Progress::Failed { .. }
        ));
        let running = DONE_25.replacen(r#""stage": null"#, r#""stage": "modules-final""#, 1);
        assert_eq!(progress(&running, BOOTED_AT).unwrap(), Progress::Running);
    }

    #[test]
    fn status_left_in_the_image_by_an_earlier_boot_is_not_this_boot() {
        assert_eq!(
            progress(DONE, BOOTED_AT + 60.0).unwrap(),
            Progress::NotStarted
        );
        assert_eq!(
            progress(r#"{"v1": {}}"#, BOOTED_AT).unwrap(),
            Progress::NotStarted
        );
    }

    #[test]
    fn status_between_and_during_stages_is_running() {
        // init-local and init done, modules-config not started yet.
        let between = r#"{"v1": {"datasource": null, "stage": null,
            "init-local": {"errors": [], "start": 1795488950.2, "finished": 1795488950.3},
            "init": {"errors": [], "start": 1795488951.3, "finished": 1795488952.2},
            "modules-config": {"errors": [], "start": null, "finished": null},
            "modules-final": {"errors": [], "start": null, "finished": null}}}"#;
        assert_eq!(progress(between, BOOTED_AT).unwrap(), Progress::Running);
        let during = between
            .replace(r#""stage": null"#, r#""stage": "modules-final""#)
            .replace(
                r#""modules-final": {"errors": [], "start": null"#,
                r#""modules-final": {"errors": [], "start": 1795488953.0"#,
            );
        assert_eq!(progress(&during, BOOTED_AT).unwrap(), Progress::Running);
    }

    #[test]
    fn status_with_errors_is_failed_and_recoverable_errors_are_warnings() {
        let failed = DONE.replacen(
            r#""errors": [],
   "finished": 1795488953.9913924"#,
            r#""errors": ["('scripts_user', RuntimeError('Runparts: 1 failures'))"],
   "finished": 1795488953.9913924"#,
            1,
        );
        assert_ne!(failed, DONE);
        assert_eq!(
            progress(&failed, BOOTED_AT).unwrap(),
            Progress::Failed {
                errors: vec!["('scripts_user', RuntimeError('Runparts: 1 failures'))".into()]
            }
        );
        // cloud-init >= 23.4 adds recoverable_errors per stage.
        let degraded = DONE.replacen(
            r#""errors": [],
   "finished": 1795488953.9913924"#,
            r#""errors": [], "recoverable_errors": {"DEPRECATED": ["Key 'x' is deprecated"]},
   "finished": 1795488953.9913924"#,
            1,
        );
        assert_eq!(
            progress(&degraded, BOOTED_AT).unwrap(),
            Progress::Done {
                warnings: vec!["DEPRECATED: Key 'x' is deprecated".into()]
            }
        );
    }

    #[test]
    fn status_that_is_not_cloud_init_json_is_an_error() {
        assert!(progress("", BOOTED_AT).is_err());
        assert!(progress(r#"{"v2": {}}"#, BOOTED_AT).is_err());
    }
}
