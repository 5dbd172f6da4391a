//! SSH public keys, parsed strictly before they reach any authorized_keys.
//!
//! A key is re-rendered from its parts (`type base64 comment`), never copied
//! through, so a file cannot smuggle options (`command=`, `from=`) or extra
//! lines into the jump account's key file. Private keys are refused without
//! echoing a byte of them.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use sha2::{Digest, Sha256};

use crate::error::Refused;

/// The key types OpenSSH accepts by default today; `ssh-dss` is gone since 9.8.
const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
];
const SK_ECDSA: &str = "sk-ecdsa-sha2-nistp256@openssh.com";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kind: String,
    blob: Vec<u8>,
    comment: String,
}

impl PublicKey {
    /// `SHA256:...`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    pub fn comment(&self) -> &str {
        &self.comment
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Parses one line, as found in a `.pub` file or an authorized_keys file
    /// written by us. `origin` names the line in errors.
    pub fn parse_line(line: &str, origin: &str) -> Result<PublicKey, Refused> {
        let refuse = |why: &str| Err(Refused(format!("{origin}: {why}")));
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return refuse("contains control characters (CR/LF injection?); one key per line");
        }
        let mut fields = line.split_whitespace();
        let kind = fields.next().unwrap_or_default();
        if !KEY_TYPES.contains(&kind) && kind != SK_ECDSA {
            if kind.contains('=') || kind.contains(',') || is_option_word(kind) {
                return refuse(
                    "key options (command=, from=, ...) are not accepted; give the bare public key",
                );
            }
            return refuse(&format!(
                "unknown key type \"{}\"; expected one of {}",
                kind.escape_debug(),
                KEY_TYPES.join(", ")
            ));
        }
        let Some(encoded) = fields.next() else {
            return refuse("the key data is missing after the key type");
        };
        let Ok(blob) = STANDARD.decode(encoded) else {
            return refuse("the key data is not valid base64");
        };
        if blob_kind(&blob) != Some(kind.as_bytes()) {
            return refuse(&format!("the key data does not hold a {kind} key"));
        }
        let comment = fields.collect::<Vec<_>>().join(" ");
        Ok(PublicKey {
            kind: kind.to_string(),
            blob,
            comment,
        })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, STANDARD.encode(&self.blob))?;
        if !self.comment.is_empty() {
            write!(f, " {}", self.comment)?;
        }
        Ok(())
    }
}

/// Keys as stored in `user.containarium.keys`: one line each.
pub fn to_lines(keys: &[PublicKey]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

/// The words sshd takes as options without `=`, which would otherwise read as
/// an unknown key type.
fn is_option_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    [
        "restrict",
        "cert-authority",
        "no-pty",
        "no-port-forwarding",
        "no-agent-forwarding",
        "no-x11-forwarding",
        "no-user-rc",
        "port-forwarding",
        "pty",
        "user-rc",
        "agent-forwarding",
        "x11-forwarding",
        "no-touch-required",
        "verify-required",
    ]
    .contains(&lower.as_str())
}

/// The key type named inside the wire-format blob (a length-prefixed string).
fn blob_kind(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4 + len)
}

/// Parses the text of a public key file: one key a line, `#` comments and
/// blank lines ignored, Windows line endings tolerated.
pub fn parse_file_text(text: &str, origin: &str) -> Result<Vec<PublicKey>, Refused> {
    if text.contains("PRIVATE KEY") || text.contains("PuTTY-User-Key-File") {
        return Err(Refused(format!(
            "{origin} is a PRIVATE key: never give it away; pass the public key ({origin}.pub)"
        )));
    }
    let mut keys = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        keys.push(PublicKey::parse_line(
            line,
            &format!("{origin} line {}", index + 1),
        )?);
    }
    if keys.is_empty() {
        return Err(Refused(format!("{origin} holds no public key")));
    }
    Ok(keys)
}

/// Reads and parses every `--ssh-key` file, dropping repeats of the same key.
pub fn read_key_files(paths: &[impl AsRef<Path>]) -> Result<Vec<PublicKey>, Refused> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|err| Refused(format!("cannot read key file {origin}: {err}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Refused(format!("{origin} is not a text file of public keys")))?;
        for key in parse_file_text(&text, &origin)? {
            if !keys.iter().any(|k| k.blob == key.blob) {
                keys.push(key);
            }
        }
    }
    if keys.is_empty() {
        return Err(Refused("no SSH key given: pass --ssh-key FILE".into()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519 -C alice@laptop`.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi alice@laptop";

    #[test]
    fn parses_and_renders_a_key() {
        let key = PublicKey::parse_line(ED25519, "k").unwrap();
        assert_eq!(key.to_string(), ED25519);
        assert_eq!(key.comment(), "alice@laptop");
        // As `ssh-keygen -lf` printed it for this key.
        assert_eq!(
            key.fingerprint(),
            "SHA256:ayAPUQQNzI1tTUO/8YYvKGWorssV1d8Biuj0REvoqu8"
        );
    }

    #[test]
    fn refuses_bad_lines() {
        let cases = [
            (format!("command=\"/bin/sh\" {ED25519}"), "options"),
            (format!("from=\"10.0.0.1\" {ED25519}"), "options"),
            (format!("restrict {ED25519}"), "options"),
            (
                "ssh-dss AAAAB3NzaC1kc3MAAACBAP".to_string(),
                "unknown key type",
            ),
            ("ssh-ed25519".to_string(), "missing"),
            ("ssh-ed25519 !!!notbase64".to_string(), "base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi"
                    .to_string(),
                "does not hold a ssh-rsa key",
            ),
            (format!("{ED25519}\rcommand=x"), "CR/LF"),
        ];
        for (line, why) in cases {
            let err = PublicKey::parse_line(&line, "k").unwrap_err().to_string();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    #[test]
    fn file_text_rules() {
        let text = format!("# laptop\n\n{ED25519}\r\n");
        assert_eq!(parse_file_text(&text, "f").unwrap().len(), 1);
        assert!(
            parse_file_text("\n# nothing\n", "f")
                .unwrap_err()
                .0
                .contains("no public key")
        );
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let err = parse_file_text(private, "id_ed25519").unwrap_err().0;
        assert!(err.contains("PRIVATE key"));
        assert!(
            !err.contains("b3BlbnNzaC1rZXktdjEAAAAA"),
            "never echo the key"
        );
        let err = parse_file_text(&format!("{ED25519}\nbogus"), "f")
            .unwrap_err()
            .0;
        assert!(err.starts_with("f line 2:"), "{err}");
    }
}
