//! No pipeline of ours has a reader that may stop before its writer is done.
//!
//! Under `set -o pipefail` a reader that exits early (`grep -q`, `grep -m`,
//! `head`, `awk '… exit'`, `sed q`, `read`) makes the writer's next write
//! fail with SIGPIPE, and the pipeline then fails with 141 or not depending
//! on timing and on how much the writer had left to say: quickstart's
//! `sshd -T | awk '… exit'` failed nine runs in ten on a stock Debian 12,
//! whose `sshd -T` says 4404 bytes, one pipe write more than awk waited for.
//! So no shell text of ours pipes into such a reader, with or without
//! pipefail (a `bash -c` string today can be a script with pipefail
//! tomorrow): read the whole output first (`out=$(cmd)`, then
//! `grep -q … <<<"$out"`), or use a reader that reads to the end
//! (`e2e_grep -q` in the e2e suites, `sed -n 1p`, awk without `exit`).
//!
//! Shell text is every file of the repository that is a script (`.sh`, or a
//! `#!` line naming a shell) or carries scripts (cloud-init YAML, Terraform,
//! systemd units). Prose (Markdown) is left out: its pipelines are
//! examples typed at a prompt.

use std::path::{Path, PathBuf};

/// Where one early reader stands: the line its pipe is on, and the
/// pipeline from the writer's line on.
#[derive(Debug, PartialEq)]
struct Finding {
    line: usize,
    text: String,
}

/// Lines joined where a pipeline goes on (a trailing `|` or `\`), with
/// comments removed; each with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let trimmed = line.trim_end();
        if open {
            let last = out.last_mut().expect("a line is open");
            last.1.push(' ');
            last.1.push_str(trimmed.trim_start());
        } else {
            out.push((i + 1, trimmed.to_string()));
        }
        let joined = &out.last().expect("just pushed").1;
        open = joined.ends_with('\\') || (joined.ends_with('|') && !joined.ends_with("||"));
        if joined.ends_with('\\') {
            let last = out.last_mut().expect("just pushed");
            last.1.pop();
        }
    }
    out
}

/// The line without a shell comment: `#` at a word's start outside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double, mut prev) = (false, false, ' ');
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single && prev != '\\' => double = !double,
            '#' if !single && !double && (prev.is_whitespace() || prev == ';') => {
                return &line[..i];
            }
            _ => {}
        }
        prev = c;
    }
    line
}

/// The words of a pipeline stage, quotes kept on each word (a quoted awk or
/// sed program stays one word).
fn words(stage: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quote) = (None::<usize>, None::<char>);
    for (i, c) in stage.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => {
                quote = Some(c);
                start.get_or_insert(i);
            }
            (None, c) if c.is_whitespace() => {
                if let Some(s) = start.take() {
                    out.push(&stage[s..i]);
                }
            }
            (None, _) => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&stage[s..]);
    }
    out
}

/// Whether a stage (the text after a `|`) is a reader that may stop before
/// its input ends.
fn stops_early(stage: &str) -> bool {
    // The stage ends where the next command starts.
    let words: Vec<&str> = words(stage)
        .into_iter()
        .take_while(|w| !matches!(*w, "|" | "||" | "&&" | ";" | "|&"))
        .collect();
    // Prefixes that run the reader: assignments, env, command, timeout N.
    let mut rest = &words[..];
    while let Some((first, tail)) = rest.split_first() {
        let assignment = first.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if assignment || matches!(*first, "env" | "command" | "{" | "(") {
            rest = tail;
        } else if *first == "timeout" && tail.len() > 1 {
            rest = &tail[1..];
        } else {
            break;
        }
    }
    // A reader run through another program (sudo, runuser … --, nsenter,
    // xargs): the first word that names a reader, wherever it stands.
    if let Some((first, _)) = rest.split_first()
        && matches!(
            first.rsplit('/').next().unwrap_or(first),
            "sudo" | "runuser" | "nsenter" | "xargs" | "nice" | "stdbuf" | "setsid" | "chroot"
        )
    {
        let at = rest.iter().position(|w| READERS.contains(&program_name(w)));
        rest = at.map_or(&[][..], |i| &rest[i..]);
    }
    let Some((program, args)) = rest.split_first() else {
        return false;
    };
    match program_name(program) {
        "head" | "read" | "cmp" => true,
        // Options may follow the pattern (`grep x -q`): every word counts,
        // up to `--`.
        "grep" | "egrep" | "fgrep" => args
            .iter()
            .take_while(|a| **a != "--")
            .enumerate()
            // The word after -e or -f is a pattern or a file, not options.
            .filter(|(i, a)| a.starts_with('-') && (*i == 0 || !matches!(args[i - 1], "-e" | "-f")))
            .any(|(_, a)| match a.strip_prefix("--") {
                Some(long) => ["quiet", "silent", "max-count", "files-with-matches"]
                    .iter()
                    .any(|o| long.starts_with(o)),
                // A cluster such as -qx or -m1; what follows -e, -f, -m
                // (an argument) is not options.
                None => a[1..]
                    .chars()
                    .take_while(|c| !matches!(c, 'e' | 'f' | 'A' | 'B' | 'C' | 'd' | 'D'))
                    .any(|c| matches!(c, 'q' | 'm' | 'l' | 'L')),
            }),
        "awk" | "gawk" | "mawk" => program_text(args).is_some_and(|p| awk_exits_early(&p)),
        "sed" => program_text(args).is_some_and(|p| sed_quits(&p)),
        _ => false,
    }
}

/// Programs that may stop reading before their input ends, in some use.
const READERS: [&str; 10] = [
    "head", "read", "cmp", "grep", "egrep", "fgrep", "awk", "gawk", "mawk", "sed",
];

/// A word as a program name: without a path or a leading `{`/`(`.
fn program_name(word: &str) -> &str {
    let word = word.trim_start_matches(['{', '(']);
    word.rsplit('/').next().unwrap_or(word)
}

/// The first word that is not an option (nor an option's argument: awk's
/// `-v NAME=V`, `-F SEP`), unquoted: the program of awk or sed.
fn program_text(args: &[&str]) -> Option<String> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if matches!(a, "-v" | "-F" | "-f") {
            i += 2;
        } else if a == "-e" {
            return args.get(i + 1).map(|p| unquote(p));
        } else if a.starts_with('-') && a.len() > 1 {
            i += 1;
        } else {
            return Some(unquote(a));
        }
    }
    None
}

fn unquote(word: &str) -> String {
    word.chars().filter(|c| !matches!(c, '\'' | '"')).collect()
}

/// `exit` anywhere but in an `END` block stops awk before its input ends.
fn awk_exits_early(program: &str) -> bool {
    let mut text = program.to_string();
    while let Some(start) = text.find("END") {
        let Some(open) = text[start..].find('{').map(|o| start + o) else {
            break;
        };
        let mut depth = 0;
        let mut end = text.len();
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        text.replace_range(start..end, "");
    }
    text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .any(|w| w == "exit")
}

/// A sed `q` or `Q` command: after an address or `;`, alone or with a code.
fn sed_quits(program: &str) -> bool {
    let chars: Vec<char> = program.chars().collect();
    chars.iter().enumerate().any(|(i, c)| {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1);
        matches!(c, 'q' | 'Q')
            && before.is_none_or(|b| b.is_ascii_digit() || matches!(b, ';' | '/' | '$' | '{' | ' '))
            && after.is_none_or(|a| a.is_ascii_digit() || matches!(a, ';' | '}' | ' '))
    })
}

/// Every pipe into an early reader in a shell text.
fn early_readers(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    for (line, logical) in logical_lines(text) {
        let bytes = logical.as_bytes();
        for (i, _) in logical.match_indices('|') {
            let pipe = bytes.get(i + 1) != Some(&b'|') && (i == 0 || bytes[i - 1] != b'|');
            let stage = logical[i + 1..].trim_start_matches('&');
            if pipe && stops_early(stage.trim_start()) {
                found.push(Finding {
                    line,
                    text: logical.trim().to_string(),
                });
            }
        }
    }
    found
}

/// Whether a file is shell text (see the module's comment).
fn is_shell_text(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(
        ext,
        "sh" | "bash" | "yaml" | "yml" | "tf" | "tftpl" | "service"
    ) {
        return true;
    }
    if !ext.is_empty() {
        return false;
    }
    std::fs::read(path).is_ok_and(|bytes| {
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
        first.starts_with(b"#!") && String::from_utf8_lossy(first).contains("sh")
    })
}

fn shell_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, ".git" | "target" | "node_modules" | ".terraform") {
                shell_files(&path, out);
            }
        } else if path.is_file() && is_shell_text(&path) {
            out.push(path);
        }
    }
}

#[test]
fn no_pipeline_of_ours_reads_less_than_its_writer_says() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    shell_files(repo, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("scripts/quickstart.sh")),
        "the scan found the scripts (it read {} files)",
        files.len()
    );
    let mut report = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for f in early_readers(&text) {
            let rel = file.strip_prefix(repo).unwrap_or(file);
            report += &format!("{}:{}: {}\n", rel.display(), f.line, f.text);
        }
    }
    assert!(
        report.is_empty(),
        "pipelines whose reader may stop before the writer is done (SIGPIPE, exit 141 under \
         pipefail): read the whole output first, or use a reader that reads to the end\n{report}"
    );
}

#[test]
fn every_early_reader_is_found_and_full_readers_are_not() {
    let planted = r#"#!/bin/bash
set -euo pipefail
jump_port=$(/usr/sbin/sshd -T 2>/dev/null | awk '$1 == "port" { print $2; exit }')
ss -Hltn "sport = :$p" |
	grep -q .
first=$(find / -name x | head -n1)
incus list | grep -m1 running
check "x" bash -c "incus list | grep -qx ready && true"
sed -n p file | sed '/x/q'
printf 'a\nb\n' | read -r one
cmd | LC_ALL=C timeout 5 grep --quiet x
cmd | { read -r one; }
cmd | grep x -q
cmd | sudo -u nobody grep -q x
cmd | runuser -u u -- /usr/bin/head -n1
cmd | cmp -s - file
cmd | grep -L x
"#;
    let lines: Vec<usize> = early_readers(planted).iter().map(|f| f.line).collect();
    assert_eq!(
        lines,
        [3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
        "{planted}"
    );
    let found = early_readers(planted);
    assert!(found[1].text.contains("grep -q ."), "{found:?}");

    // Readers that read to the end, and pipes that are not pipes.
    let good = r#"#!/bin/bash
set -euo pipefail
out=$(/usr/sbin/sshd -T 2>/dev/null)
port=$(awk '$1 == "port" && !seen { print $2; seen = 1 }' <<<"$out")
grep -q . <<<"$out"
getent passwd | awk -F: -v g=1 '$4 == g { f = 1 } END { exit !f }'
incus list | e2e_grep -q running
find / | sed -n 1p
cmd | grep -c x
cmd || grep -q x file
grep -E 'a|head' file
cmd | while read -r line; do echo "$line"; done
# a comment: sshd -T | awk '{ exit }' is what we do not do
cmd | sed 's/quit/stop/'
cmd | awk '{ print $1 }' || exit 1
cmd | sudo tee /tmp/x
cmd | grep -e -q file
"#;
    assert_eq!(early_readers(good), [], "{good}");
}
