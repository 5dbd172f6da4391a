//! Build tasks that need containarium's clap definitions but are no part of
//! the binary an admin runs: `xtask docs DIR` writes the man pages
//! (`DIR/man/*.1`) and the bash, zsh and fish completions
//! (`DIR/completions/`) that `scripts/package.sh` puts into the Debian
//! package. They are build outputs, generated from the same `Cli` that
//! parses the command line, so they cannot drift from it.

use std::io;
use std::path::Path;

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use containarium::cli::Cli;
use roff::{Roff, bold, italic, roman};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [task, dir] if task == "docs" => {
            if let Err(err) = docs(Path::new(dir)) {
                eprintln!("xtask docs: {err}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("usage: xtask docs DIR   (man pages and shell completions into DIR)");
            std::process::exit(2);
        }
    }
}

/// Writes every man page and completion file under `dir`, replacing what
/// an earlier run wrote there.
fn docs(dir: &Path) -> io::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for sub in [&man, &completions] {
        if sub.exists() {
            std::fs::remove_dir_all(sub)?;
        }
        std::fs::create_dir_all(sub)?;
    }
    for (name, page) in man_pages() {
        std::fs::write(man.join(format!("{name}.1")), page)?;
    }
    for (shell, file) in COMPLETIONS {
        std::fs::write(completions.join(file), completion(shell))?;
    }
    Ok(())
}

/// Each shell's completion file under the name its standard directory
/// expects (the package puts them into /usr/share/bash-completion/
/// completions, /usr/share/zsh/vendor-completions and
/// /usr/share/fish/vendor_completions.d).
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "containarium"),
    (Shell::Zsh, "_containarium"),
    (Shell::Fish, "containarium.fish"),
];

fn completion(shell: Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "containarium", &mut out);
    out
}

/// `(name, roff)` of containarium(1) and of one page per verb, nested verbs
/// included: containarium-create(1), containarium-keys(1),
/// containarium-keys-add(1), …
fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cli = Cli::command();
    // Gives each subcommand its display name (containarium-keys-add) and
    // its bin name for the synopsis (containarium keys add).
    cli.build();
    let mut pages = vec![("containarium".to_string(), main_page(&cli))];
    verb_pages(&cli, &mut pages);
    pages
}

fn verb_pages(parent: &Command, pages: &mut Vec<(String, Vec<u8>)>) {
    for verb in parent.get_subcommands().filter(|verb| !verb.is_hide_set()) {
        let name = verb
            .get_display_name()
            .expect("build() names every subcommand")
            .to_string();
        let man = Man::new(verb.clone()).source(source());
        let mut page = Vec::new();
        man.render(&mut page).expect("writing to a Vec");
        see_also(&mut page, &["containarium(1)"]);
        pages.push((name, page));
        verb_pages(verb, pages);
    }
}

/// containarium(1): clap's sections, then what the admin needs beyond
/// `--help`: exit status, environment and files.
fn main_page(cli: &Command) -> Vec<u8> {
    let man = Man::new(cli.clone().long_about(DESCRIPTION)).source(source());
    let mut page = Vec::new();
    let write = |result: io::Result<()>| result.expect("writing to a Vec");
    write(man.render_title(&mut page));
    write(man.render_name_section(&mut page));
    write(man.render_synopsis_section(&mut page));
    write(man.render_description_section(&mut page));
    write(man.render_options_section(&mut page));
    write(man.render_subcommands_section(&mut page));

    let mut roff = Roff::default();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in containarium::error::EXIT_STATUS {
        roff.control("TP", []).text([bold(code)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in ENVIRONMENT {
        roff.control("TP", []).text([bold(name)]);
        roff.text([roman(meaning)]);
    }
    roff.control("SH", ["FILES"]);
    for (path, meaning) in FILES {
        roff.control("TP", []).text([italic(path)]);
        roff.text([roman(meaning)]);
    }
    write(roff.to_writer(&mut page));
    write(man.render_version_section(&mut page));
    let verbs: Vec<String> = cli
        .get_subcommands()
        .filter(|verb| !verb.is_hide_set())
        .map(|verb| format!("{}(1)", verb.get_display_name().unwrap_or_default()))
        .collect();
    let mut refs: Vec<&str> = verbs.iter().map(String::as_str).collect();
    refs.extend(["incus(1)", "sshd_config(5)", "fail2ban-client(1)"]);
    see_also(&mut page, &refs);
    page
}

/// `containarium 0.1.0`, the footer of every page.
fn source() -> String {
    let cli = Cli::command();
    format!("containarium {}", cli.get_version().unwrap_or_default())
}

const DESCRIPTION: &str = "containarium gives every person on a team an unprivileged Incus \
    system container and a proxy-only jump account on this SSH bastion, so that \
    ssh -J USER@BASTION USER@ADDRESS reaches their own container and nothing else. \
    It is one command, run as root, with no daemon and no state of its own: what it \
    knows lives in Incus (the user.containarium.* keys of each instance). Every verb \
    that changes the host plans first (--dry-run prints the exact commands), undoes \
    what it did when a step fails, and resumes when run again. Prepare the host once \
    with containarium host init; containarium-sync-accounts.timer, once enabled, \
    keeps the jump accounts in line with Incus.";

/// What the binary reads from its environment (src/config.rs, src/exec.rs,
/// src/ui.rs).
const ENVIRONMENT: [(&str, &str); 3] = [
    (
        "CONTAINARIUM_CONFIG",
        "The config file to read instead of /etc/containarium/config.toml. It \
         must exist, be a regular file owned by root and be writable by root \
         alone.",
    ),
    (
        "NO_COLOR",
        "When set to a non-empty value, no output carries a terminal escape: \
         help is not coloured and steps are shown as plain lines instead of a \
         spinner, as when the output is not a terminal or TERM is unset or \
         dumb. Nothing else is ever coloured.",
    ),
    (
        "INCUS_*",
        "Removed from the environment of every command containarium runs, so a \
         stray INCUS_PROJECT or INCUS_REMOTE cannot redirect it; use --project. \
         Commands also run with LC_ALL=C.",
    ),
];

const FILES: [(&str, &str); 8] = [
    (
        "/etc/containarium/config.toml",
        "Defaults for create and the host (image, storage pool, network, \
         quotas, template, deny-egress, the [fail2ban] table); flags win. The \
         package installs it with every key commented out at its default.",
    ),
    (
        "/etc/containarium/keys/",
        "One root-owned file per jump account, USER, holding its key lines \
         restrict,port-forwarding,permitopen=\"IP:22\" KEY; sshd reads it \
         through the drop-in below. Rebuilt from Incus by sync-accounts.",
    ),
    (
        "/etc/containarium/templates/",
        "NAME.toml adds a cloud-init template or overrides a built-in one \
         (create --template NAME). The built-in default is compiled in; a copy \
         is in /usr/share/containarium/templates/.",
    ),
    (
        "/etc/ssh/sshd_config.d/00-containarium.conf",
        "The sshd drop-in with the Match Group containarium block, written by \
         host init (never by the package) and checked with sshd -T. \
         00-containarium-hardening.conf beside it is host init --harden's.",
    ),
    (
        "/run/containarium.lock",
        "Held by every verb that changes the host, from its first probe to its \
         last host-side step; a second run waits, bounded, and names the \
         holder.",
    ),
    (
        "/run/containarium/users/USER.lock",
        "Held for a verb's whole run on USER, so a pending container whose lock \
         is free was left by a run that died half-way.",
    ),
    (
        "/usr/lib/systemd/system/containarium-sync-accounts.timer",
        "Runs sync-accounts every minute once enabled (systemctl enable --now \
         containarium-sync-accounts.timer); the package does not enable it.",
    ),
    (
        "/usr/lib/systemd/system/containarium-reap.timer",
        "Runs reap every five minutes once enabled (systemctl enable --now \
         containarium-reap.timer); the package does not enable it.",
    ),
];

fn see_also(page: &mut Vec<u8>, refs: &[&str]) {
    let mut roff = Roff::default();
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(refs.join(", "))]);
    roff.to_writer(page).expect("writing to a Vec");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The page as man shows it, without formatting: roff's escapes
    /// (`\-`, `\fB`) would otherwise hide the words.
    fn text(page: &[u8]) -> String {
        String::from_utf8(page.to_vec())
            .unwrap()
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fI", "")
            .replace("\\fR", "")
    }

    fn page(name: &str) -> String {
        let pages = man_pages();
        let (_, page) = pages
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no page {name}"));
        text(page)
    }

    /// The roff lines of one `.SH` section, up to the next.
    fn section(page: &str, name: &str) -> String {
        let start = page
            .find(&format!(".SH \"{name}\""))
            .or_else(|| page.find(&format!(".SH {name}\n")))
            .unwrap_or_else(|| panic!("no section {name}"));
        let rest = &page[start + 4..];
        rest[..rest.find("\n.SH ").unwrap_or(rest.len())].to_string()
    }

    #[test]
    fn every_verb_gets_a_page_and_the_main_page_lists_it() {
        let pages = man_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        let main = page("containarium");
        let mut cli = Cli::command();
        cli.build();
        let mut verbs = 0;
        for verb in cli.get_subcommands() {
            let name = format!("containarium-{}", verb.get_name());
            assert!(names.contains(&name.as_str()), "no page {name}: {names:?}");
            assert!(
                main.contains(&format!("{name}(1)")),
                "containarium(1) lacks {name}"
            );
            for sub in verb.get_subcommands() {
                let nested = format!("{name}-{}", sub.get_name());
                assert!(names.contains(&nested.as_str()), "no page {nested}");
            }
            verbs += 1;
        }
        // Positive control: the walk saw the verbs that exist.
        assert!(verbs >= 17, "only {verbs} verbs");
        for name in [
            "containarium-create",
            "containarium-keys-add",
            "containarium-host-doctor",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        // A verb's page shows how it is run and its own options.
        let create = page("containarium-create");
        assert!(create.contains("containarium create"), "{create}");
        assert!(create.contains("--ssh-key"), "{create}");
        assert!(create.contains("containarium(1)"), "{create}");
    }

    #[test]
    fn exit_status_documents_the_codes_the_binary_returns() {
        let table = containarium::error::EXIT_STATUS;
        let exit = section(&page("containarium"), "EXIT STATUS");
        let codes: Vec<&str> = exit
            .lines()
            .skip_while(|line| *line != ".TP")
            .skip(1)
            .step_by(3)
            .collect();
        let wanted: Vec<&str> = table.iter().map(|(code, _)| *code).collect();
        assert_eq!(codes, wanted, "{exit}");
        assert_eq!(wanted, ["0", "1", "2", "128+N"]);
        for (_, meaning) in table {
            assert!(exit.contains(meaning), "{exit}");
        }
        // clap's usage errors are refusals too (src/main.rs exits 2);
        // error::tests holds the table to exit_code() and signalled().
        let usage = Cli::try_parse_from(["containarium", "create", "Alice"]).unwrap_err();
        assert_eq!(usage.exit_code(), containarium::error::REFUSED);
    }

    /// The README's exit status table is the same table, row by row.
    #[test]
    fn the_readme_shows_the_same_exit_status_table() {
        let readme = include_str!("../../README.md");
        let rows: Vec<&str> = readme
            .lines()
            .skip_while(|line| *line != "| exit status | meaning |")
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .collect();
        let wanted: Vec<String> = containarium::error::EXIT_STATUS
            .iter()
            .map(|(code, meaning)| format!("| {code} | {meaning} |"))
            .collect();
        assert_eq!(rows, wanted, "README.md's exit status table");
    }

    #[test]
    fn the_main_page_names_its_files_and_environment() {
        let main = page("containarium");
        let files = section(&main, "FILES");
        for path in [
            "/etc/containarium/config.toml",
            "/etc/containarium/keys/",
            "/etc/containarium/templates",
            "/etc/ssh/sshd_config.d/00-containarium.conf",
            "/run/containarium.lock",
            "/run/containarium/users/USER.lock",
        ] {
            assert!(files.contains(path), "FILES lacks {path}: {files}");
        }
        let env = section(&main, "ENVIRONMENT");
        for name in ["CONTAINARIUM_CONFIG", "NO_COLOR"] {
            assert!(env.contains(name), "ENVIRONMENT lacks {name}: {env}");
        }
        // The paths are the ones the binary uses.
        let paths = containarium::config::Paths::new("/");
        for path in [
            paths.lock_file(),
            paths.templates_dir(),
            paths.sshd_dropin(),
            paths.keys_dir(),
        ] {
            assert!(files.contains(&*path.to_string_lossy()), "{path:?}");
        }
    }

    /// The package's changelog (packaging/changelog) opens with the version
    /// being packaged, as dpkg and lintian read it.
    #[test]
    fn the_changelog_names_this_version() {
        let changelog = include_str!("../../packaging/changelog");
        let version = Cli::command().get_version().unwrap().to_string();
        let first = changelog.lines().next().unwrap();
        assert_eq!(
            first,
            format!("containarium ({version}) unstable; urgency=medium")
        );
    }

    #[test]
    fn bash_completion_knows_every_verb() {
        let bash = String::from_utf8(completion(Shell::Bash)).unwrap();
        assert!(bash.contains("complete -F _containarium"), "{bash}");
        for verb in ["create", "sync-accounts", "host"] {
            assert!(bash.contains(verb), "{verb}");
        }
        let zsh = String::from_utf8(completion(Shell::Zsh)).unwrap();
        assert!(zsh.starts_with("#compdef containarium"), "{zsh}");
        let fish = String::from_utf8(completion(Shell::Fish)).unwrap();
        assert!(fish.contains("complete -c containarium"), "{fish}");
    }
}
