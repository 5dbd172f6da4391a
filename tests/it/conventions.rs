//! The conventions every verb keeps: no terminal escape unless on a
//! terminal that takes them (NO_COLOR, TERM), `--json` that parses with its
//! fields, errors on stderr in one line, and the exit statuses of
//! containarium(1) (src/error.rs's table).

use super::*;
use std::io::Read;

const ESC: u8 = 0x1b;

fn has_escape(bytes: &[u8]) -> bool {
    bytes.contains(&ESC)
}

/// The binary with colour and terminal variables as `env` says and no
/// others: a variable given as `None` is unset.
fn command(s: &Sandbox, args: &[&str], env: &[(&str, Option<&str>)]) -> Command {
    let mut cmd = s.command(args, &[]);
    for name in ["NO_COLOR", "TERM", "CLICOLOR", "CLICOLOR_FORCE"] {
        cmd.env_remove(name);
    }
    for (name, value) in env {
        match value {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd
}

/// Runs the binary with stdout and stderr on a pseudo-terminal, as on an
/// admin's screen: its exit code and everything the terminal was sent.
fn on_terminal(s: &Sandbox, args: &[&str], env: &[(&str, Option<&str>)]) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = command(s, args, env);
    cmd.stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    // Our copies of the terminal's end closed, the master reads until the
    // binary (and anything it left running) closed theirs.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut shown = Vec::new();
    let mut buf = [0; 4096];
    // EIO once every writer is gone: the end of the output.
    while let Ok(n @ 1..) = master.read(&mut buf) {
        shown.extend_from_slice(&buf[..n]);
    }
    let code = child.wait().unwrap().code();
    (code, String::from_utf8_lossy(&shown).into_owned())
}

const XTERM: Option<&str> = Some("xterm-256color");

#[test]
fn nothing_piped_carries_an_escape_and_a_terminal_only_without_no_color_or_dumb() {
    let s = Sandbox::new(200);
    let key = s.path("alice.pub");
    let key = key.to_str().unwrap();
    let container = format!("{USER}-container");
    // Piped, with everything else asking for colour: a terminal type and
    // CLICOLOR_FORCE (which clap alone would obey), NO_COLOR unset.
    let piped = |args: &[&str]| {
        let out = command(&s, args, &[("TERM", XTERM), ("CLICOLOR_FORCE", Some("1"))])
            .output()
            .unwrap();
        assert!(!has_escape(&out.stdout), "{args:?}: {}", stdout(&out));
        assert!(!has_escape(&out.stderr), "{args:?}: {}", stderr(&out));
        out
    };
    let out = piped(&["create", USER, "--ssh-key", key, "--image", "local:dev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // What a spinner would have drawn is there, as plain lines.
    assert!(
        stderr(&out).contains(&format!("start {container}... done (")),
        "{}",
        stderr(&out)
    );
    for args in [
        vec!["--help"],
        vec!["create", "--help"],
        vec!["list"],
        vec!["list", "--json"],
        vec!["info", USER],
        vec!["info", USER, "--json"],
        vec!["keys", "list", USER],
        vec!["stop", USER],
        vec!["start", USER],
        vec!["resize", USER, "--cpu", "3"],
        vec!["snapshot", "create", USER, "before"],
        vec!["snapshot", "list", USER, "--json"],
        vec!["host", "doctor"],
        vec!["list", "--bogus"],
        vec!["info", "Bad"],
        vec!["keys"],
    ] {
        let out = piped(&args);
        assert!(
            !out.stdout.is_empty() || !out.stderr.is_empty(),
            "{args:?} printed nothing"
        );
    }

    // On a terminal. The control: help is coloured and a step is a spinner
    // (ESC, the line redrawn), with NO_COLOR unset or empty.
    for no_color in [None, Some("")] {
        let (code, shown) =
            on_terminal(&s, &["--help"], &[("TERM", XTERM), ("NO_COLOR", no_color)]);
        assert_eq!(code, Some(0));
        assert!(shown.contains('\x1b'), "NO_COLOR={no_color:?}: {shown:?}");
    }
    let (code, shown) = on_terminal(&s, &["stop", USER], &[("TERM", XTERM)]);
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains('\x1b'), "the spinner: {shown:?}");
    // NO_COLOR with any value, a dumb terminal or none named: not one
    // escape, and the same words.
    let plain: [&[(&str, Option<&str>)]; 3] = [
        &[("TERM", XTERM), ("NO_COLOR", Some("1"))],
        &[("TERM", Some("dumb"))],
        &[("TERM", None)],
    ];
    for (env, verb) in plain.iter().zip(["start", "stop", "start"]) {
        let (code, shown) = on_terminal(&s, &[verb, USER], env);
        assert_eq!(code, Some(0), "{env:?}: {shown}");
        assert!(!shown.contains('\x1b'), "{env:?}: {shown:?}");
        assert!(
            shown.contains(&format!("{verb} {container}... done (")),
            "{env:?}: {shown:?}"
        );
        let (code, help) = on_terminal(&s, &["--help"], env);
        assert_eq!(code, Some(0));
        assert!(!help.contains('\x1b'), "{env:?}: {help:?}");
        assert!(help.contains("Usage: containarium"), "{env:?}: {help:?}");
    }
    // NO_COLOR="" is unset, by no-color.org: the spinner is back.
    let (code, shown) = on_terminal(
        &s,
        &["stop", USER],
        &[("TERM", XTERM), ("NO_COLOR", Some(""))],
    );
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains('\x1b'), "{shown:?}");
}

/// One JSON document on stdout, and nothing but it.
/// Runs the binary with its stdout on a pipe nobody reads: the reader left
/// before the first byte, as `| head -0` does, so every write fails.
fn reader_gone(s: &Sandbox, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = command(s, args, &[]);
    cmd.stdout(writer).stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    drop(cmd);
    out
}

#[test]
fn a_reader_that_leaves_early_ends_no_verb_half_way() {
    let s = Sandbox::with_hosts(204, 2);
    let key = s.path("alice.pub");
    let key = key.to_str().unwrap();
    let create = ["create", USER, "--ssh-key", key, "--image", "local:dev"];
    let out = reader_gone(&s, &create);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // The work was all done: the container is there, ready.
    let list = s.run(&["list", "--json"]);
    assert!(
        stdout(&list).contains("\"state\": \"running\""),
        "{}",
        stdout(&list)
    );
    for args in [
        vec!["list"],
        vec!["list", "--json"],
        vec!["info", USER],
        vec!["keys", "list", USER],
        vec![
            "create",
            "bob",
            "--ssh-key",
            key,
            "--image",
            "local:dev",
            "--dry-run",
        ],
    ] {
        // The control: each prints on stdout when someone reads it.
        let read = s.run(&args);
        assert!(!read.stdout.is_empty(), "{args:?} printed nothing");
        let out = reader_gone(&s, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), stderr(&read), "{args:?}");
    }
}

fn json_of(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", stdout(out), stderr(out)))
}

#[test]
fn restore_backup_and_sync_accounts_print_json_with_their_fields() {
    let s = Sandbox::new(201);
    let file = backup_file(&s);
    let out = s.run(&["restore", &file, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_of(&out),
        serde_json::json!({"user": USER, "container": format!("{USER}-container"), "ipv4": s.ip})
    );
    // The address it names is the one the jump key file permits.
    let key_file = s.path(&format!("root/etc/containarium/keys/{USER}"));
    let written = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        written.contains(&format!("permitopen=\"{}:22\"", s.ip)),
        "{written}"
    );

    let dir = s.path("backups");
    std::fs::create_dir(&dir).unwrap();
    let out = s.ok(&["backup", USER, "--output", dir.to_str().unwrap(), "--json"]);
    let json = json_of(&out);
    assert_eq!(json["user"], USER);
    assert_eq!(json["container"], format!("{USER}-container"));
    let backup = PathBuf::from(json["file"].as_str().unwrap());
    assert_eq!(backup.parent(), Some(dir.as_path()), "{json}");
    let hmac = std::fs::read_to_string(json["hmac_file"].as_str().unwrap()).unwrap();
    assert_eq!(
        hmac,
        hmac_line(&backup_key(&s), &std::fs::read(&backup).unwrap())
    );
    let digest = std::fs::read_to_string(json["digest_file"].as_str().unwrap()).unwrap();
    assert_eq!(
        digest,
        format!(
            "{}  {}\n",
            sha256_hex(&std::fs::read(&backup).unwrap()),
            backup.file_name().unwrap().to_str().unwrap()
        )
    );

    // The key file gone: sync-accounts counts the user and its changes.
    std::fs::remove_file(&key_file).unwrap();
    let out = s.ok(&["sync-accounts", "--json"]);
    let json = json_of(&out);
    assert_eq!(json["checked"], 1, "{json}");
    assert!(json["changes"].as_u64().unwrap() >= 1, "{json}");
    assert_eq!(json["failed"], serde_json::json!([]));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), written);
    // A user that fails is named in the JSON, and the run still fails with
    // its one-line error on stderr.
    let out = s.run_with(&["sync-accounts", "--json"], &[("FAKE_FAIL", "useradd")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json_of(&out)["failed"], serde_json::json!([USER]));
    assert_eq!(
        stderr(&out).lines().last(),
        Some(format!("error: could not sync {USER}; see above").as_str())
    );
    // A refusal prints no JSON at all.
    let out = s.run(&["info", "ctmtest-nobody", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert_eq!(
        stderr(&out),
        "error: no container for ctmtest-nobody: ctmtest-nobody-container does not exist\n"
    );
}

/// Starts `create USER` with its `incus start` slowed down, sends `signal`
/// once that call has begun, and returns what the run ended with.
fn create_interrupted_by(s: &Sandbox, signal: nix::sys::signal::Signal) -> Output {
    let args = s.create_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = s
        .command(&args, &[("FAKE_SLOW", "incus start")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = format!("incus start {USER}-container");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.log().contains(&start) {
        assert!(
            std::time::Instant::now() < deadline,
            "never started: {:?}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, signal).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn every_exit_status_is_the_one_documented() {
    let s = Sandbox::new(202);
    let one_line_error = |out: &Output, code: i32, why: &str| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.starts_with("error: ") && err.contains(why), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(out.stdout.is_empty(), "{}", stdout(out));
    };
    // 0.
    assert_eq!(s.run(&["list"]).status.code(), Some(0));
    // 2: clap's usage errors, bad values and conflicts, and our refusals.
    one_line_error(
        &s.run(&["list", "--bogus"]),
        2,
        "unexpected argument '--bogus'",
    );
    one_line_error(&s.run(&["info", "Bad"]), 2, "invalid user name");
    let mut dry_json = s.create_args();
    dry_json.extend(["--dry-run".into(), "--json".into()]);
    one_line_error(&s.run(&argv_of(&dry_json)), 2, "cannot be used with");
    one_line_error(&s.run(&["info", USER]), 2, "no container for");
    // A verb without its subcommand: what there is to choose, on stderr.
    let out = s.run(&["keys"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: containarium keys"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // 128+N: a signal stops create between steps, which undoes them.
    s.clear_log();
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let out = create_interrupted_by(&s, signal);
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("failed: interrupted by {signal}")),
            "{}",
            stderr(&out)
        );
        assert!(s.instance().is_none(), "{signal}: the container was undone");
        assert!(
            !s.path(&format!("root/etc/containarium/keys/{USER}"))
                .exists()
        );
        assert!(
            s.log().contains(&format!("userdel -- {USER}")),
            "{:?}",
            s.log()
        );
        s.clear_log();
    }

    // 1: a command that fails, also under reap (which goes on with the
    // others and reports it).
    assert!(s.create().status.success());
    let out = s.run_with(&["stop", USER], &[("FAKE_FAIL", "incus stop")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: stop ctmtest-alice-container failed: `incus stop"),
        "{}",
        stderr(&out)
    );
    let container = format!("{USER}-container");
    s.set_config(
        &container,
        "user.containarium.expires",
        "2020-01-01T00:00:00Z",
    );
    let out = s.run_with(
        &["reap", "--json", "--delete-after", "1000w"],
        &[("FAKE_FAIL", "incus stop")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let json = json_of(&out);
    assert_eq!(json[0]["status"], "failed", "{json}");
    assert!(
        json[0]["error"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
    assert_eq!(
        stderr(&out).lines().last(),
        Some(format!("error: reap could not stop or delete {container}; see its report").as_str())
    );
    // The control: the same reap, with incus working, is done and exits 0.
    let out = s.ok(&["reap", "--json", "--delete-after", "1000w"]);
    assert_eq!(json_of(&out)[0]["status"], "done");
    assert!(s.log().contains(&format!("incus stop {container}")));
}

/// After a signal, a verb that applies one plan per user starts no more:
/// the next user's plan stops before its first step.
#[test]
fn after_a_signal_sync_accounts_starts_no_other_user() {
    let s = Sandbox::with_hosts(203, 2);
    let key = s.path("alice.pub");
    for user in [USER, "ctmtest-bob"] {
        s.ok(&[
            "create",
            user,
            "--ssh-key",
            key.to_str().unwrap(),
            "--image",
            "local:dev",
        ]);
    }
    s.clear_log();
    let child = s
        .command(&["sync-accounts"], &[("FAKE_SLOW", "useradd")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.log().iter().any(|l| l.starts_with("useradd")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no useradd: {:?}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let added: Vec<String> = s
        .log()
        .into_iter()
        .filter(|l| l.starts_with("useradd"))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        stderr(&out).contains("interrupted by SIGINT before: "),
        "{}",
        stderr(&out)
    );
    // The control: without the signal, both users get their account.
    s.clear_log();
    s.ok(&["sync-accounts"]);
    assert_eq!(
        s.log().iter().filter(|l| l.starts_with("useradd")).count(),
        2,
        "{:?}",
        s.log()
    );
}
