//! SSH public keys, parsed strictly before they reach any authorized_keys.
//!
//! A key is re-rendered from its parts (`type base64 comment`), never copied
//! through, so a file cannot smuggle options (`command=`, `from=`) or extra
//! lines into the jump account's key file. The key data must be one whole
//! key of its declared type (RSA of at least 2048 bits). Nothing of a file
//! that is not a public key is echoed: `--ssh-key /etc/shadow` must print
//! no line of it, and a private key none of its bytes.

use std::fmt;
use std::io::Read;
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

/// Weaker RSA keys are refused (OpenSSH itself still takes 1024 bits).
const RSA_MIN_BITS: usize = 2048;

/// A public key file is a few hundred bytes a key; a larger file is not one
/// (`--ssh-key /dev/zero` must be a quick refusal, not a full memory).
pub const MAX_KEY_FILE: u64 = 64 * 1024;

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

    /// `type base64`, without the comment: what a host key pin needs.
    pub fn bare(&self) -> String {
        format!("{} {}", self.kind, STANDARD.encode(&self.blob))
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
            // The word is not echoed: the "key" may be a line of /etc/shadow.
            return refuse(&format!(
                "not a public key: a key line starts with its type, one of {}",
                KEY_TYPES.join(", ")
            ));
        }
        let Some(encoded) = fields.next() else {
            return refuse("the key data is missing after the key type");
        };
        let Ok(blob) = STANDARD.decode(encoded) else {
            return refuse("the key data is not valid base64");
        };
        if let Err(why) = check_blob(kind, &blob) {
            return refuse(&why);
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

/// Checks that `blob` is one whole key of type `kind` in SSH wire format
/// (RFC 4251 strings; RFC 4253, 5656 and OpenSSH's PROTOCOL.u2f layouts):
/// every field there, of its size, nothing after. Says why it is not.
fn check_blob(kind: &str, blob: &[u8]) -> Result<(), String> {
    let mut wire = Wire(blob);
    let incomplete = || format!("the key data is not a complete {kind} key");
    if wire.string() != Some(kind.as_bytes()) {
        return Err(format!("the key data does not hold a {kind} key"));
    }
    let whole = match kind {
        "ssh-ed25519" => wire.string().is_some_and(|pk| pk.len() == 32),
        "sk-ssh-ed25519@openssh.com" => {
            wire.string().is_some_and(|pk| pk.len() == 32) && wire.string().is_some()
        }
        "ssh-rsa" => {
            let (Some(e), Some(n)) = (wire.mpint(), wire.mpint()) else {
                return Err(incomplete());
            };
            let bits = bit_length(n);
            if bits < RSA_MIN_BITS {
                return Err(format!(
                    "an RSA key of {bits} bits is too weak: use at least {RSA_MIN_BITS} bits, or ed25519"
                ));
            }
            bit_length(e) > 0 && bits <= 16384
        }
        _ => {
            // ecdsa-sha2-nistpN and its security-key form: the curve's name,
            // then an uncompressed point (0x04, X, Y), as ssh-keygen writes it.
            let curve = kind
                .trim_start_matches("sk-")
                .trim_start_matches("ecdsa-sha2-")
                .trim_end_matches("@openssh.com");
            let coordinate = match curve {
                "nistp256" => 32,
                "nistp384" => 48,
                "nistp521" => 66,
                _ => return Err(incomplete()),
            };
            wire.string() == Some(curve.as_bytes())
                && wire
                    .string()
                    .is_some_and(|q| q.len() == 1 + 2 * coordinate && q[0] == 4)
                && (kind != SK_ECDSA || wire.string().is_some())
        }
    };
    if whole && wire.0.is_empty() {
        Ok(())
    } else {
        Err(incomplete())
    }
}

/// The fields of an SSH wire-format blob, read front to back.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    /// A length-prefixed string; `None` when the blob ends first.
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
        let field = self.0.get(4..4usize.checked_add(len)?)?;
        self.0 = &self.0[4 + len..];
        Some(field)
    }

    /// A non-negative mpint, as its big-endian bytes.
    fn mpint(&mut self) -> Option<&'a [u8]> {
        self.string()
            .filter(|n| n.first().is_none_or(|b| b & 0x80 == 0))
    }
}

/// The number of significant bits of a big-endian unsigned number.
fn bit_length(n: &[u8]) -> usize {
    match n.iter().position(|&b| b != 0) {
        Some(first) => (n.len() - first) * 8 - n[first].leading_zeros() as usize,
        None => 0,
    }
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
        let bytes = read_small(path)
            .map_err(|err| Refused(format!("cannot read key file {origin}: {err}")))?
            .map_err(|why| Refused(format!("{origin} {why}: not a public key file")))?
            .ok_or_else(|| {
                Refused(format!(
                    "{origin} is larger than {} KiB: not a public key file",
                    MAX_KEY_FILE / 1024
                ))
            })?;
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

/// Reads at most [`MAX_KEY_FILE`] bytes of `path`; `None` when it holds more.
/// Only a regular file: opened without blocking and checked before any
/// read, so a FIFO (which would wait for a writer) or a device is refused
/// at once, and read through `take`, so a file that grows cannot hold us.
fn read_small(path: &Path) -> std::io::Result<Result<Option<Vec<u8>>, &'static str>> {
    let file = crate::config::open_nonblocking(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Err("is not a regular file"));
    }
    if meta.len() > MAX_KEY_FILE {
        return Ok(Ok(None));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes)?;
    Ok(Ok((bytes.len() as u64 <= MAX_KEY_FILE).then_some(bytes)))
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
                "not a public key",
            ),
            ("ssh-ed25519".to_string(), "missing"),
            ("ssh-ed25519 !!!notbase64".to_string(), "base64"),
            (
                "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi"
                    .to_string(),
                "does not hold a ssh-rsa key",
            ),
            (format!("{ED25519}\rcommand=x"), "CR/LF"),
            (RSA_1024.to_string(), "RSA key of 1024 bits is too weak"),
            // The type alone, with no key bytes after it.
            (
                format!("ssh-ed25519 {}", STANDARD.encode(wire(&[b"ssh-ed25519"]))),
                "not a complete ssh-ed25519 key",
            ),
            // Key bytes one short, and one too many fields.
            (
                format!(
                    "ssh-ed25519 {}",
                    STANDARD.encode(wire(&[b"ssh-ed25519", &[7; 31]]))
                ),
                "not a complete",
            ),
            (
                format!(
                    "ssh-ed25519 {}",
                    STANDARD.encode(wire(&[b"ssh-ed25519", &[7; 32], b"x"]))
                ),
                "not a complete",
            ),
            // An ecdsa key that names another curve inside.
            (
                ECDSA_256.replacen("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", 1),
                "does not hold a ecdsa-sha2-nistp384 key",
            ),
            // RSA without its modulus.
            (
                format!(
                    "ssh-rsa {}",
                    STANDARD.encode(wire(&[b"ssh-rsa", &[1, 0, 1]]))
                ),
                "not a complete ssh-rsa key",
            ),
        ];
        for (line, why) in cases {
            let err = PublicKey::parse_line(&line, "k").unwrap_err().to_string();
            assert!(err.contains(why), "{line:?}: {err}");
        }
    }

    // Generated with `ssh-keygen -t rsa -b N` and `ssh-keygen -t ecdsa -b N`.
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDMfZqS5xxLkuXyv/U9cownTwAmRpy4XofFm75xrcXCA/2kdtCuV6JK35pQVY4LiKyvB8fLSqpruXYowjFQopuYSdv+lJmEJdMy2ptqS/4mSTljqhQzctkscTeydU/ul0t60GIL85NjlPUB/ikcQWj1wq6OHOexwPqOKNaRPETreQ== rsab1024@test";
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCM8sUFoZqLFQ0Ml07M0wabJHqAq69zjNkE6ta34ykc1q7hNYryK3LZ00qJ5Cwo26HtYafHN+EzGIUpxHU3dUjYz4GGZhOitpgej9PDFsE4p3EIS/AqLeL+rBa5ANOd/sWldPy+MaYmynAt0GRo0YfJlWl+UhCi8QqavVuAlZKvJrxX2NriV9RxXjvtKQTLoRu2uYYpQNobm+TKsKSr4gx4DMdyfgHCxP/tQF763OQp5Xw2iZXYwaAK0gq7dOKguE97MTL/ok2+j8+V1CfV7+776ac2OACGM4Rgmlweb7tEHZx4uQsXeK9cKByF7PbSk1zBVVB4Dp/qnAiALm0wVgpz rsab2048@test";
    const ECDSA_256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHvLnhDHtNbntSfp96KOvVN2nbTw692z2bf8vM98GLE3mlTsw5ncDcCY4zUa1IypCeJ7loQTjQf7ehWbGmYuAwo= ecdsab256@test";
    const ECDSA_384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBKgrDfXZaXcxq9e5kIzmEDx0hG4T5kQalSlFfK5IUpkNhrjyNTF+j8VnMdvtD+3+klQmoHY5VFyN8pUAEuZR4mwNlpxvIQzOlbE56lP5Lsa0lHGx7iRtaw/TunT99yYrbg== ecdsab384@test";
    const ECDSA_521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAAR+DrSxVgONTazV0EKW+sgrbdrQt+cQEKFv3IEjQnxYLtN934ayF5zdWO2FPnSOf21WS1Mpe3bDmrdrkNJH3qrLwBpWIn2NARqZGhXTjho9TVXsaFeDKVuYpMJ/aEuZ7G8LSSOxLXp/AP2IDN95w1AW/yadykT8kWW0ZKljlvsf3KQLQ== ecdsab521@test";

    /// A wire-format blob of length-prefixed strings.
    fn wire(fields: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for field in fields {
            out.extend((field.len() as u32).to_be_bytes());
            out.extend(*field);
        }
        out
    }

    #[test]
    fn accepts_every_whole_key_type() {
        let mut point = vec![4];
        point.extend([9; 64]);
        let sk_ed = format!(
            "sk-ssh-ed25519@openssh.com {} yubikey",
            STANDARD.encode(wire(&[b"sk-ssh-ed25519@openssh.com", &[7; 32], b"ssh:"]))
        );
        let sk_ecdsa = format!(
            "{SK_ECDSA} {}",
            STANDARD.encode(wire(&[SK_ECDSA.as_bytes(), b"nistp256", &point, b"ssh:"]))
        );
        for line in [
            ED25519, RSA_2048, ECDSA_256, ECDSA_384, ECDSA_521, &sk_ed, &sk_ecdsa,
        ] {
            let key = PublicKey::parse_line(line, "k").unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(key.to_string(), line);
        }
        assert_eq!(
            PublicKey::parse_line(ED25519, "k").unwrap().bare(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJjbB0uWhNOpnyPRUnDbE0pvkO4EWFdVnFNMB18lQuXi"
        );
        // A security key without its application string is not whole.
        let short = format!(
            "sk-ssh-ed25519@openssh.com {}",
            STANDARD.encode(wire(&[b"sk-ssh-ed25519@openssh.com", &[7; 32]]))
        );
        assert!(PublicKey::parse_line(&short, "k").is_err());
        assert_eq!(bit_length(&[0, 0x01, 0]), 9);
        assert_eq!(bit_length(&[0]), 0);
    }

    #[test]
    fn key_files_that_are_not_keys_are_refused_without_echo() {
        let dir = tempfile::tempdir().unwrap();
        let shadow = dir.path().join("shadow");
        let secret = "root:$y$j9T$SECRETSALT$SECRETHASH:19700:0:99999:7:::";
        std::fs::write(&shadow, format!("{secret}\ndaemon:*:19700:0:99999:7:::\n")).unwrap();
        let err = read_key_files(&[&shadow]).unwrap_err().0;
        assert!(err.contains("line 1: not a public key"), "{err}");
        assert!(!err.contains("SECRET") && !err.contains("root"), "{err}");

        let big = dir.path().join("big.pub");
        std::fs::write(&big, format!("{ED25519}\n").repeat(1000)).unwrap();
        let err = read_key_files(&[&big]).unwrap_err().0;
        assert!(err.contains("larger than 64 KiB"), "{err}");
        // Devices and FIFOs are refused at once, never read (a FIFO would
        // wait for a writer).
        let fifo = dir.path().join("fifo.pub");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let start = std::time::Instant::now();
        let err = read_key_files(&["/dev/zero"]).unwrap_err().0;
        assert_eq!(
            err,
            "/dev/zero is not a regular file: not a public key file"
        );
        let err = read_key_files(&[&fifo]).unwrap_err().0;
        assert!(
            err.ends_with("fifo.pub is not a regular file: not a public key file"),
            "{err}"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(2));

        // The control: a key file of just under the limit is read.
        let near = dir.path().join("near.pub");
        let padding = "#".repeat(MAX_KEY_FILE as usize - ED25519.len() - 2);
        std::fs::write(&near, format!("{ED25519}\n{padding}\n")).unwrap();
        assert_eq!(std::fs::metadata(&near).unwrap().len(), MAX_KEY_FILE);
        assert_eq!(read_key_files(&[&near]).unwrap().len(), 1);
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
