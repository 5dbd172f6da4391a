//! Every `containarium ...` line the docs show goes through the binary's
//! own clap parser (issue 19), so a renamed or misspelt flag fails here and
//! not at an admin's prompt. Sources: console blocks and inline code spans
//! of the Markdown docs, the README's command table, code spans in the
//! comments of the shell scripts and cloud-init, the Terraform hint and the
//! rendered help of every verb.
//!
//! A line with arguments is parsed with `Cli::try_parse_from`, placeholders
//! (`USER`, `<user>`, `${local.jump_host}`, `$user`) replaced by a value.
//! A synopsis (`[--dry-run]`, `list|add`, `FILE…`, a table row, a verb and
//! flag in prose without `containarium`) is not a command line: its verbs
//! must exist and every `--flag` it names must be one of that verb's. A span
//! of a verb and bare flags (`containarium export --host-ca`) names them,
//! and is checked alike. None of this needs root.

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use containarium::cli::Cli;

/// Spans that mention containarium but are no command line, with why.
const NOT_COMMANDS: [(&str, &str); 1] = [
    // what bash-completion is given, to complete
    ("scripts/check-package.sh", "containarium cr<TAB>"),
];

/// A command line as a doc shows it.
#[derive(Debug)]
struct Quoted {
    file: String,
    line: usize,
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// In a console block: a line to run, parsed whole.
    Console,
    /// An inline code span: parsed whole unless it only names a verb and
    /// its flags (`containarium export --host-ca`).
    Span,
    /// A row of the README's command table, or a span naming a verb and a
    /// flag without `containarium` (`host init --harden`): its verbs and
    /// flags must exist.
    Synopsis,
}

#[test]
fn every_documented_command_line_parses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut quoted = vec![];
    for pattern in [
        "README.md",
        "ARCHITECTURE.md",
        "docs/*.md",
        "terraform/**/*.md",
        "tests/e2e/README.md",
        "terraform/gce/*.tf",
        "cloud-init/*.yaml",
        "scripts/*.sh",
    ] {
        for path in files(root, pattern) {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            quoted.extend(extract(&name, &text));
        }
    }
    quoted.extend(help_pages());
    // The README alone quotes dozens; an extractor that finds none is broken.
    assert!(quoted.len() > 40, "only {} lines found", quoted.len());
    let failures = failures(&quoted);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_wrong_flag_in_a_doc_is_reported() {
    let doc = "\
Hand each user `containarium export alice --jump-host x`, or:

```console
$ sudo containarium export alice --jump-ip bastion.example.com >> ~alice/ssh_config
```

| command | what it does |
|---|---|
| `delete USER [--force] [--purge]` | deletes |
| `keys list\\|add\\|remove USER …` | keys |
";
    let quoted = extract("planted.md", doc);
    assert_eq!(quoted.len(), 4, "{quoted:#?}");
    let failures = failures(&quoted);
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures[0].starts_with("planted.md:1: containarium export alice --jump-host x: ")
            && failures[0].contains("unexpected argument '--jump-host'"),
        "{}",
        failures[0]
    );
    assert_eq!(
        failures[1],
        "planted.md:9: containarium delete USER [--force] [--purge]: containarium delete has no --purge"
    );
}

/// `FILE:LINE: COMMAND: ERROR` for each quoted line that is wrong.
fn failures(quoted: &[Quoted]) -> Vec<String> {
    quoted
        .iter()
        .filter_map(|q| {
            check(q)
                .err()
                .map(|err| format!("{}:{}: {}: {err}", q.file, q.line, q.text))
        })
        .collect()
}

fn check(q: &Quoted) -> Result<(), String> {
    let words = words(&q.text);
    let synopsis = q.kind == Kind::Synopsis || words.iter().any(|w| w.contains(['[', '|', '…']));
    let mut cli = Cli::command();
    cli.build();
    // The verbs: `keys list|add|remove` is three, each checked.
    let mut verbs = vec![&cli];
    let mut rest = &words[1..];
    while let Some(word) = rest.first().filter(|_| verbs[0].has_subcommands()) {
        if word.starts_with('-') {
            break;
        }
        verbs = word
            .split('|')
            .map(|name| {
                let parent = verbs[0];
                parent
                    .find_subcommand(name)
                    .ok_or_else(|| format!("{} has no verb {name}", bin_name(parent)))
            })
            .collect::<Result<_, _>>()?;
        rest = &rest[1..];
    }
    let names_flags = q.kind == Kind::Span && rest.iter().all(|w| is_bare_flag(w));
    if synopsis || names_flags {
        for flag in rest.iter().filter_map(|w| flag_name(w)) {
            for verb in &verbs {
                let known = verb.get_arguments().any(|a| {
                    a.get_long_and_visible_aliases()
                        .unwrap_or_default()
                        .contains(&flag)
                });
                if !known {
                    return Err(format!("{} has no --{flag}", bin_name(verb)));
                }
            }
        }
        return Ok(());
    }
    let argv = words.iter().map(|w| substitute(w));
    match Cli::try_parse_from(argv) {
        Ok(_) => Ok(()),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
            ) =>
        {
            Ok(())
        }
        // clap's first paragraph, on one line: what it refused and why
        Err(err) => Err(err
            .to_string()
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")),
    }
}

/// `--x`: a flag named, with no value and no brackets.
fn is_bare_flag(word: &str) -> bool {
    word.strip_prefix("--")
        .is_some_and(|f| flag_name(word) == Some(f) && !f.is_empty())
}

/// `containarium host init`, for a message.
fn bin_name(verb: &clap::Command) -> &str {
    verb.get_bin_name().unwrap_or(verb.get_name())
}

/// `x` for `--x`, `[--x`, `--x]`, `--x=V`; `None` for anything else.
fn flag_name(word: &str) -> Option<&str> {
    let flag = word.trim_start_matches('[').strip_prefix("--")?;
    let end = flag
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(flag.len());
    Some(&flag[..end])
}

/// A plausible value for a placeholder; anything else unchanged.
fn substitute(word: &str) -> String {
    let name = if let Some(inner) = word.strip_prefix('<').and_then(|w| w.strip_suffix('>')) {
        inner
    } else if let Some(var) = word.strip_prefix('$') {
        var.trim_matches(['{', '}'])
    } else if !word.is_empty() && word.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        word
    } else {
        return word.to_string();
    };
    match name.to_ascii_lowercase().as_str() {
        "user" | "u" => "alice",
        "n" => "2",
        "s" | "size" => "1GiB",
        "duration" | "time" | "date" => "2h",
        "ip" => "192.0.2.1",
        _ => "x",
    }
    .to_string()
}

/// The words of a shell command line, quote-aware, up to a pipe,
/// redirection, `;`, `&&` or comment, with a leading `$ ` and `sudo` gone.
/// `<a b>` is one word (a placeholder), as is `${...}`.
fn words(line: &str) -> Vec<String> {
    let mut words = vec![];
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        if matches!(first, '|' | '>' | ';' | '&' | '#') {
            break;
        }
        let mut word = String::new();
        let mut close = None;
        while let Some(c) = chars.next() {
            match (close, c) {
                (Some(end), c) if c == end => close = None,
                (Some(_), c) => word.push(c),
                (None, '\'' | '"') => close = Some(c),
                (None, '<') if word.is_empty() => {
                    word.push(c);
                    close = Some('>');
                }
                (None, '\\') => word.extend(chars.next()),
                (None, c) if c.is_whitespace() => break,
                (None, c) => word.push(c),
            }
        }
        if word.starts_with('<') {
            word.push('>');
        }
        // 2>&1, 2>/dev/null
        if word.starts_with("2>") {
            break;
        }
        words.push(word);
    }
    let skip = words
        .iter()
        .take_while(|w| matches!(w.as_str(), "$" | "sudo"))
        .count();
    words.drain(..skip);
    words
}

/// The lines a file quotes: console lines of fenced blocks and inline code
/// spans (Markdown), hint strings (Terraform), spans in comments (shell,
/// YAML), spans anywhere (help text), and the synopses of the README's
/// command table.
fn extract(file: &str, text: &str) -> Vec<Quoted> {
    let mut quoted = vec![];
    let mut prose = String::new();
    let mut fenced = false;
    let mut table = false;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let at = |text: &str| Quoted {
            file: file.to_string(),
            line: n + 1,
            text: text.to_string(),
            kind: Kind::Console,
        };
        // What inline spans are looked for in: prose, not code.
        let mut words = "";
        if file.ends_with(".md") {
            let fence = trimmed.starts_with("```");
            fenced ^= fence;
            if fenced && is_command(trimmed) {
                quoted.push(at(trimmed));
            }
            table = (table || line.starts_with("| command |")) && line.starts_with('|');
            if table {
                for span in spans(first_cell(line)) {
                    quoted.push(Quoted {
                        text: format!("containarium {}", span.replace("\\|", "|")),
                        kind: Kind::Synopsis,
                        ..at("")
                    });
                }
            } else if !fenced && !fence {
                words = line;
            }
        } else if file.ends_with(".tf") {
            if let Some(start) = line.find("sudo containarium ") {
                quoted.push(at(line[start..].split('"').next().unwrap()));
            }
        } else if file.ends_with(".sh") || file.ends_with(".yaml") {
            if let Some(comment) = trimmed.strip_prefix('#') {
                words = comment.trim_start_matches(['#', '!']);
            }
        } else {
            words = line;
        }
        prose.push_str(words);
        prose.push('\n');
    }
    for (offset, span) in spans_at(&prose) {
        let mut text = span.split_whitespace().collect::<Vec<_>>().join(" ");
        let kind = if is_command(&text) {
            Kind::Span
        } else if is_verb_with_flag(&text) {
            text.insert_str(0, "containarium ");
            Kind::Synopsis
        } else {
            continue;
        };
        if !NOT_COMMANDS.contains(&(file, text.as_str())) {
            quoted.push(Quoted {
                file: file.to_string(),
                line: prose[..offset].matches('\n').count() + 1,
                text,
                kind,
            });
        }
    }
    quoted.sort_by_key(|q| q.line);
    quoted
}

/// `containarium VERB…`, maybe after `$ ` and `sudo`.
fn is_command(text: &str) -> bool {
    let words = words(text);
    words.len() > 1 && words[0] == "containarium"
}

/// `VERB … --flag …`, a verb of ours named with a flag in prose.
fn is_verb_with_flag(text: &str) -> bool {
    let words = words(text);
    let verb = words
        .first()
        .and_then(|w| Cli::command().find_subcommand(w).cloned());
    verb.is_some() && words.iter().any(|w| flag_name(w).is_some())
}

/// The first cell of a table row (`\|` does not end it).
fn first_cell(row: &str) -> &str {
    let row = row.trim_start_matches('|');
    let end = row
        .match_indices('|')
        .find(|(i, _)| !row[..*i].ends_with('\\'))
        .map_or(row.len(), |(i, _)| i);
    &row[..end]
}

fn spans(text: &str) -> Vec<&str> {
    spans_at(text).into_iter().map(|(_, span)| span).collect()
}

/// Inline code spans with their byte offsets; a span never crosses a blank
/// line (a paragraph's end).
fn spans_at(text: &str) -> Vec<(usize, &str)> {
    let mut spans = vec![];
    let mut at = 0;
    while let Some(open) = text[at..].find('`').map(|i| at + i) {
        let ticks = text[open..].len() - text[open..].trim_start_matches('`').len();
        let fence = &text[open..open + ticks];
        let start = open + ticks;
        let Some(close) = text[start..].find(fence).map(|i| start + i) else {
            break;
        };
        let span = &text[start..close];
        if span.contains("\n\n") {
            at = start;
            continue;
        }
        spans.push((start, span.trim()));
        at = close + ticks;
    }
    spans
}

/// The rendered long help of every verb, as a doc.
fn help_pages() -> Vec<Quoted> {
    let mut cli = Cli::command();
    cli.build();
    let mut pages = vec![cli.clone()];
    for sub in cli.get_subcommands() {
        pages.push(sub.clone());
        pages.extend(sub.get_subcommands().cloned());
    }
    pages
        .iter_mut()
        .flat_map(|page| {
            let name = format!("{} --help", page.get_bin_name().unwrap_or("?"));
            let help = page.render_long_help().to_string();
            extract(&name, &help)
        })
        .collect()
}

/// The files a `dir/*.ext` or `dir/**/*.ext` pattern (or a plain path)
/// names, sorted.
fn files(root: &std::path::Path, pattern: &str) -> Vec<std::path::PathBuf> {
    let Some((dir, suffix)) = pattern.split_once("*") else {
        return vec![root.join(pattern)];
    };
    let recursive = suffix.starts_with("*/");
    let ext = suffix.trim_start_matches(['*', '/']);
    let mut found = vec![];
    let mut dirs = vec![root.join(dir)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && recursive {
                dirs.push(path);
            } else if path.to_string_lossy().ends_with(ext) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
