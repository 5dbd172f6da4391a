//! A cohort file: one set of users (a team, a class, a workshop) for
//! `containarium apply`, in TOML.
//!
//! ```toml
//! set = "course-2026"
//! [defaults]               # any per-user key but name and keys
//! memory = "1GiB"
//! idle-stop = "2h"
//! [[user]]
//! name = "alice"
//! keys = ["ssh-ed25519 AAAA... alice@laptop"]
//! key-files = ["keys/alice.pub"]      # relative to the file
//! memory = "2GiB"
//! ```
//!
//! The whole file is checked before anything is planned; every problem is
//! reported with the line it is on, and unknown keys are errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::Defaults;
use crate::error::Refused;
use crate::keys::{self, PublicKey};
use crate::names::UserName;
use crate::size::ByteSize;
use crate::time::{Span, Time};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    set: Spanned<String>,
    #[serde(default)]
    defaults: Option<Spanned<Entry>>,
    #[serde(default)]
    user: Vec<Spanned<Entry>>,
}

/// A `[[user]]` entry or the `[defaults]` table, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Entry {
    name: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    key_files: Vec<String>,
    image: Option<String>,
    template: Option<String>,
    disk: Option<String>,
    cpu: Option<u32>,
    memory: Option<String>,
    docker: Option<bool>,
    autostart: Option<bool>,
    expires: Option<String>,
    idle_stop: Option<String>,
}

/// When a container ends: at a moment, or a while after it was created (so
/// that applying the same file again changes nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    At(Time),
    AfterCreation(Span),
}

impl Expiry {
    /// `2026-12-31` (the start of that day, UTC), an RFC 3339 time, or a
    /// duration such as `30d`.
    pub fn parse(text: &str) -> Result<Expiry, String> {
        if let Some(time) = Time::parse(text) {
            return Ok(Expiry::At(time));
        }
        text.parse::<Span>().map(Expiry::AfterCreation).map_err(|_| {
            format!("{text:?} is neither a date (2026-12-31, 2026-12-31T18:00:00Z) nor a duration (30d)")
        })
    }

    /// The moment, for a container created at `created`.
    pub fn at(&self, created: Time) -> Time {
        match self {
            Expiry::At(time) => *time,
            Expiry::AfterCreation(span) => created.plus_secs(span.seconds),
        }
    }
}

/// One user of the set, with every default resolved.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: UserName,
    pub line: usize,
    pub keys: Vec<PublicKey>,
    pub image: String,
    pub template: String,
    pub disk: ByteSize,
    pub cpu: u32,
    pub memory: ByteSize,
    pub docker: bool,
    pub autostart: bool,
    pub expires: Option<Expiry>,
    pub idle_stop: Option<Span>,
}

#[derive(Debug)]
pub struct Cohort {
    pub set: String,
    pub members: Vec<Member>,
}

/// A set's name: what `user.containarium.set` holds.
fn valid_set(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Line numbers of byte offsets in one text.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        self.0[..offset.min(self.0.len())].matches('\n').count() + 1
    }
}

impl Cohort {
    /// Reads and checks `path`; templates are looked up in `templates`.
    pub fn load(path: &Path, defaults: &Defaults, templates: &Path) -> Result<Cohort, Refused> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|err| Refused(format!("cannot read {shown}: {err}")))?;
        Cohort::parse(&text, path, defaults, templates)
    }

    pub fn parse(
        text: &str,
        path: &Path,
        config: &Defaults,
        templates: &Path,
    ) -> Result<Cohort, Refused> {
        let shown = path.display();
        let lines = Lines(text);
        let file: File = toml::from_str(text).map_err(|err| {
            let line = err.span().map_or(1, |s| lines.of(s.start));
            Refused(format!(
                "{shown}:{line}: {}",
                err.message().replace('\n', " ")
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut problems: Vec<String> = Vec::new();
        let set = file.set.get_ref().clone();
        if !valid_set(&set) {
            problems.push(format!(
                "{shown}:{}: set {set:?}: use 1 to 63 lowercase letters, digits and '-'",
                lines.of(file.set.span().start)
            ));
        }
        let defaults = match &file.defaults {
            Some(d) => {
                let line = lines.of(d.span().start);
                let d = d.get_ref();
                if d.name.is_some() || !d.keys.is_empty() || !d.key_files.is_empty() {
                    problems.push(format!(
                        "{shown}:{line}: defaults: name, keys and key-files belong to a [[user]]"
                    ));
                }
                d.clone()
            }
            None => Entry::default(),
        };
        let mut members = Vec::new();
        let mut seen = BTreeSet::new();
        for entry in &file.user {
            let line = lines.of(entry.span().start);
            let entry = entry.get_ref();
            let who = entry.name.clone().unwrap_or_default();
            let mut report = |what: String| {
                problems.push(format!("{shown}:{line}: user {who:?}: {what}"));
            };
            if entry.name.is_some() && !seen.insert(who.clone()) {
                report("listed twice".into());
                continue;
            }
            match resolve(entry, &defaults, config, base, templates, line) {
                Ok(member) => members.push(member),
                Err(errors) => errors.into_iter().for_each(&mut report),
            }
        }
        match problems.len() {
            0 => Ok(Cohort { set, members }),
            1 => Err(Refused(format!("{}; nothing changed", problems[0]))),
            n => {
                for problem in &problems {
                    crate::ui::note(problem);
                }
                Err(Refused(format!(
                    "{shown}: {n} problems (above); nothing changed"
                )))
            }
        }
    }
}

/// Whether `path` names something under the directory it is joined to: not
/// empty, not absolute, no `..` component.
fn inside(path: &str) -> bool {
    use std::path::Component;
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A member from its entry, the file's defaults and config.toml's, or every
/// problem with the entry.
fn resolve(
    entry: &Entry,
    defaults: &Entry,
    config: &Defaults,
    base: &Path,
    templates: &Path,
    line: usize,
) -> Result<Member, Vec<String>> {
    let mut errors = Vec::new();
    let name = match &entry.name {
        None => {
            errors.push("no name".to_string());
            None
        }
        Some(name) => name
            .parse::<UserName>()
            .map_err(|err| errors.push(err.0))
            .ok(),
    };
    let mut keys: Vec<PublicKey> = Vec::new();
    for (i, line) in entry.keys.iter().enumerate() {
        match PublicKey::parse_line(line, &format!("keys[{i}]")) {
            Ok(key) => keys.push(key),
            Err(err) => errors.push(err.0),
        }
    }
    // Inside the file's directory only: a helper's file cannot make root
    // read a file it chose elsewhere on the bastion.
    let mut files: Vec<PathBuf> = Vec::new();
    for file in &entry.key_files {
        if !inside(file) {
            errors.push(format!(
                "key-files: {file:?} is not a relative path inside the file's directory \
                 (no leading '/', no '..')"
            ));
            continue;
        }
        // Nor through a symbolic link: what is read is the resolved path,
        // which must still be inside. (One that does not resolve is left
        // to `read_key_files` to name.)
        let joined = base.join(file);
        match (std::fs::canonicalize(&joined), std::fs::canonicalize(base)) {
            (Ok(real), Ok(dir)) if real.starts_with(&dir) => files.push(real),
            (Ok(_), Ok(_)) => errors.push(format!(
                "key-files: {file:?} leads out of the file's directory through a symbolic link"
            )),
            _ => files.push(joined),
        }
    }
    if !files.is_empty() && errors.is_empty() {
        match keys::read_key_files(&files) {
            Ok(found) => keys.extend(found),
            Err(err) => errors.push(err.0),
        }
    }
    keys.dedup_by(|a, b| a.fingerprint() == b.fingerprint());
    if keys.is_empty() && errors.is_empty() {
        errors.push("no keys: give keys or key-files".into());
    }
    // The entry's own value, else the file's default, else config.toml's.
    macro_rules! pick {
        ($field:ident) => {
            entry.$field.clone().or_else(|| defaults.$field.clone())
        };
    }
    let mut size = |what: &str, value: Option<String>, fallback: ByteSize| match value {
        None => fallback,
        Some(text) => text.parse::<ByteSize>().unwrap_or_else(|err| {
            errors.push(format!("{what}: {err}"));
            fallback
        }),
    };
    let disk = size("disk", pick!(disk), config.disk);
    let memory = size("memory", pick!(memory), config.memory);
    let cpu = pick!(cpu).unwrap_or(config.cpu);
    if cpu == 0 {
        errors.push("cpu: must be at least 1".into());
    }
    let template = pick!(template).unwrap_or_else(|| config.template.clone());
    if let Err(err) = crate::cloud_init::Template::load(templates, &template) {
        errors.push(format!("template: {}", err.0));
    }
    let expires = pick!(expires).and_then(|text| {
        Expiry::parse(&text)
            .map_err(|err| errors.push(format!("expires: {err}")))
            .ok()
    });
    let idle_stop = pick!(idle_stop).and_then(|text| {
        text.parse::<Span>()
            .map_err(|err| errors.push(format!("idle-stop: {err}")))
            .ok()
    });
    match name {
        Some(name) if errors.is_empty() => Ok(Member {
            name,
            line,
            keys,
            image: pick!(image).unwrap_or_else(|| config.image.clone()),
            template,
            disk,
            cpu,
            memory,
            docker: pick!(docker).unwrap_or(true),
            autostart: pick!(autostart).unwrap_or(true),
            expires,
            idle_stop,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi a@laptop";

    fn config() -> Defaults {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::config::Paths::new(dir.path());
        Defaults::load(&paths).unwrap()
    }

    fn parse(text: &str) -> Result<Cohort, Refused> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.pub"), format!("{KEY}\n")).unwrap();
        Cohort::parse(
            text,
            &dir.path().join("course.toml"),
            &config(),
            &dir.path().join("templates"),
        )
    }

    #[test]
    fn resolves_defaults_in_order() {
        let cohort = parse(&format!(
            "set = \"course-2026\"\n[defaults]\nmemory = \"1GiB\"\nidle-stop = \"2h\"\n\
             [[user]]\nname = \"alice\"\nkey-files = [\"alice.pub\"]\nmemory = \"3GiB\"\n\
             [[user]]\nname = \"bob\"\nkeys = [\"{KEY}\"]\nexpires = \"30d\"\n"
        ))
        .unwrap();
        assert_eq!(cohort.set, "course-2026");
        let (alice, bob) = (&cohort.members[0], &cohort.members[1]);
        assert_eq!((alice.line, bob.line), (5, 9));
        assert_eq!(alice.memory.to_string(), "3GiB");
        assert_eq!(bob.memory.to_string(), "1GiB");
        assert_eq!(bob.disk.to_string(), "20GiB");
        assert_eq!(alice.idle_stop.as_ref().unwrap().seconds, 7200);
        assert_eq!(alice.keys[0].fingerprint(), bob.keys[0].fingerprint());
        assert_eq!(
            bob.expires
                .as_ref()
                .unwrap()
                .at(Time::parse("2026-12-01").unwrap()),
            Time::parse("2026-12-31").unwrap()
        );
        assert!(alice.docker && alice.autostart && alice.expires.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let err = parse(&format!(
            "set = \"course-2026\"\n\
             [[user]]\nname = \"Alice\"\nkeys = [\"{KEY}\"]\n\
             [[user]]\nname = \"bob\"\nmemory = \"lots\"\nkeys = [\"{KEY}\"]\n\
             [[user]]\nname = \"carol\"\n\
             [[user]]\nname = \"bob\"\nkeys = [\"{KEY}\"]\n"
        ))
        .unwrap_err();
        assert!(
            err.0
                .ends_with("course.toml: 4 problems (above); nothing changed"),
            "{}",
            err.0
        );

        let one =
            parse("set = \"s\"\n[[user]]\nname = \"bob\"\nkeys = [\"nonsense\"]\n").unwrap_err();
        assert!(one.0.contains("course.toml:2: user \"bob\": "), "{}", one.0);
        assert!(one.0.ends_with("; nothing changed"), "{}", one.0);
    }

    #[test]
    fn unknown_keys_and_bad_toml_name_their_line() {
        let err =
            parse("set = \"s\"\n\n[[user]]\nname = \"bob\"\nmemroy = \"1GiB\"\n").unwrap_err();
        assert!(
            err.0.contains("course.toml:5: unknown field `memroy`"),
            "{}",
            err.0
        );
        let err = parse("set = \"s\"\n[[user]\n").unwrap_err();
        assert!(err.0.contains("course.toml:2: "), "{}", err.0);
        let err = parse("set = \"Course 2026\"\n").unwrap_err();
        assert!(err.0.starts_with("/"), "{}", err.0);
        assert!(err.0.contains(".toml:1: set \"Course 2026\""), "{}", err.0);
        let err = parse("set = \"s\"\n[defaults]\nkeys = []\nname = \"x\"\n").unwrap_err();
        assert!(err.0.contains(":2: defaults: name, keys"), "{}", err.0);
    }

    #[test]
    fn key_files_are_relative_paths_inside_the_file_s_directory() {
        let file = |key_file: &str| {
            format!("set = \"s\"\n[[user]]\nname = \"bob\"\nkey-files = [\"{key_file}\"]\n")
        };
        for good in ["alice.pub", "./alice.pub"] {
            assert_eq!(
                parse(&file(good)).unwrap().members[0].keys.len(),
                1,
                "{good}"
            );
        }
        for bad in ["/etc/shadow", "../alice.pub", "keys/../../alice.pub", ""] {
            let err = parse(&file(bad)).unwrap_err().0;
            assert_eq!(
                err,
                format!(
                    "{}:2: user \"bob\": key-files: {bad:?} is not a relative path inside the \
                     file's directory (no leading '/', no '..'); nothing changed",
                    err.split(":2:").next().unwrap()
                )
            );
        }
        assert!(inside("a/b.pub") && !inside("a/../../b.pub"));
    }

    /// A link inside the directory that leads out of it is refused; one
    /// that stays inside is read (the control).
    #[test]
    fn key_files_do_not_leave_the_directory_through_a_link() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.pub"), format!("{KEY}\n")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.pub"), format!("{KEY}\n")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.pub"), dir.path().join("out.pub"))
            .unwrap();
        std::os::unix::fs::symlink("alice.pub", dir.path().join("near.pub")).unwrap();
        let parse = |name: &str| {
            Cohort::parse(
                &format!("set = \"s\"\n[[user]]\nname = \"bob\"\nkey-files = [\"{name}\"]\n"),
                &dir.path().join("course.toml"),
                &config(),
                &dir.path().join("templates"),
            )
        };
        let err = parse("out.pub").unwrap_err().0;
        assert!(
            err.contains(
                "key-files: \"out.pub\" leads out of the file's directory through a symbolic link"
            ),
            "{err}"
        );
        assert_eq!(parse("near.pub").unwrap().members[0].keys.len(), 1);
    }

    #[test]
    fn expiry_is_a_date_a_time_or_a_duration() {
        let created = Time::parse("2026-12-01T10:00:00Z").unwrap();
        assert_eq!(
            Expiry::parse("2027-01-31").unwrap().at(created).to_string(),
            "2027-01-31T00:00:00Z"
        );
        assert_eq!(
            Expiry::parse("2h").unwrap().at(created).to_string(),
            "2026-12-01T12:00:00Z"
        );
        assert!(Expiry::parse("next week").is_err());
    }
}
