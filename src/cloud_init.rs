//! cloud-init user-data, rendered from a TOML template.
//!
//! Templates are built in (`templates/*.toml`, compiled into the binary so it
//! works on air-gapped hosts) and may be overridden or added to in
//! /etc/containarium/templates. The output is YAML in which every scalar is
//! a JSON-quoted string, so no user name, key comment or command can change
//! the document's structure.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::error::Refused;
use crate::keys::PublicKey;
use crate::names::UserName;

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
        let (text, origin) = match std::fs::read_to_string(&path) {
            Ok(text) => (text, path.display().to_string()),
            Err(_) => match BUILT_IN.iter().find(|(n, _)| *n == name) {
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
}
