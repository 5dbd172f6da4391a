//! `apply` and `reap` against the fakes: the plan's symbols and summary,
//! `--detailed-exitcode`, validation with line numbers, pruning only within
//! the set, dry runs that change nothing, and reap's decisions.

use super::*;

const A: &str = "ctmtest-ann";
const B: &str = "ctmtest-ben";
const C: &str = "ctmtest-cat";
const D: &str = "ctmtest-dan";

fn cohort(s: &Sandbox, text: &str) -> String {
    let path = s.path("course.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(s.path("keys")).unwrap();
    std::fs::write(s.path("keys/desk.pub"), format!("{KEY2}\n")).unwrap();
    path.to_str().unwrap().to_string()
}

fn user(name: &str, extra: &str) -> String {
    format!("[[user]]\nname = \"{name}\"\nkeys = [\"{KEY}\"]\n{extra}")
}

/// The commands that change something, among the fakes' calls.
fn mutations(s: &Sandbox) -> Vec<String> {
    s.log()
        .into_iter()
        .filter(|l| {
            [
                "incus init",
                "incus delete",
                "incus config set",
                "incus config unset",
                "incus start",
            ]
            .iter()
            .any(|m| l.starts_with(m))
                || l.starts_with("useradd")
                || l.starts_with("userdel")
                || l.contains("file push")
        })
        .collect()
}

#[test]
fn apply_plans_with_terraforms_symbols_and_applies_exactly_the_plan() {
    let s = Sandbox::with_hosts(40, 5);
    let first = format!(
        "set = \"course\"\n[defaults]\nmemory = \"1GiB\"\n{}{}{}",
        user(A, ""),
        user(B, ""),
        user(C, "idle-stop = \"2h\"\n")
    );
    let file = cohort(&s, &first);
    // A container of the same host that is not in the set: never pruned.
    s.ok(&[
        "create",
        USER,
        "--ssh-key",
        s.path("alice.pub").to_str().unwrap(),
        "--image",
        "local:dev",
    ]);

    let out = s.ok(&["apply", &file, "--dry-run"]);
    let plan = stdout(&out);
    assert!(
        plan.contains(&format!(
            "+ {A} create (images:ubuntu/24.04/cloud, 2 cpu, 1GiB memory, 20GiB disk, 1 key)\n"
        )),
        "{plan}"
    );
    assert!(plan.contains(&format!("+ {C} create (images:ubuntu/24.04/cloud, 2 cpu, 1GiB memory, 20GiB disk, 1 key, idle-stop 2h)\n")), "{plan}");
    assert!(
        plan.ends_with("Plan: 3 to create, 0 to update, 0 to delete, 0 unchanged.\n"),
        "{plan}"
    );

    let file = cohort(
        &s,
        &first.replace("[defaults]\n", "[defaults]\nimage = \"local:dev\"\n"),
    );
    s.clear_log();
    let out = s.run(&["apply", &file, "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("Apply: 3 created, 0 updated, 0 deleted.\n"),
        "{}",
        stdout(&out)
    );
    let inits: Vec<String> = mutations(&s)
        .into_iter()
        .filter(|l| l.starts_with("incus init"))
        .collect();
    assert_eq!(inits.len(), 3, "{inits:#?}");
    for (name, line) in [(A, &inits[0]), (C, &inits[2])] {
        assert!(
            line.contains("--config user.containarium.set=course"),
            "{line}"
        );
        assert!(line.contains("--config limits.memory=1GiB"), "{line}");
        assert!(
            line.ends_with(&format!("-- local:dev {name}-container"))
                || inits
                    .iter()
                    .any(|l| l.ends_with(&format!("{name}-container")))
        );
    }
    assert!(
        inits
            .iter()
            .any(|l| l.contains("--config user.containarium.idle-stop=2h"))
    );
    // Each worker's lines say whose they are.
    assert!(
        stderr(&out).contains(&format!("{B}: wait for cloud-init... done")),
        "{}",
        stderr(&out)
    );

    // The same file again: nothing to do, and exit 0 with --detailed-exitcode.
    s.clear_log();
    let out = s.ok(&["apply", &file, "--detailed-exitcode"]);
    assert_eq!(
        stdout(&out),
        format!("= {A} unchanged\n= {B} unchanged\n= {C} unchanged\nNo changes.\n")
    );
    assert_eq!(mutations(&s), Vec::<String>::new());

    // Ben gets more memory and a new key instead of the old; Cat is
    // dropped; Dan joins.
    let second = format!(
        "set = \"course\"\n[defaults]\nmemory = \"1GiB\"\nimage = \"local:dev\"\n{}\
         [[user]]\nname = \"{B}\"\nkey-files = [\"keys/desk.pub\"]\nmemory = \"4GiB\"\n{}",
        user(A, ""),
        user(D, "")
    );
    let file = cohort(&s, &second);
    let expected = format!(
        "= {A} unchanged\n~ {B} update memory 1GiB -> 4GiB; keys +1 -1 \
         (+SHA256:MQrWSjH125YWsj4BgzUt7UEtSWa/E2SV79NRtLS/lps alice@desktop, \
         -SHA256:ayAPUQQNzI1tTUO/8YYvKGWorssV1d8Biuj0REvoqu8 alice@laptop)\n\
         + {D} create (local:dev, 2 cpu, 1GiB memory, 20GiB disk, 1 key)\n\
         - {C} delete (pruned)\n\
         Plan: 1 to create, 1 to update, 1 to delete, 1 unchanged.\n"
    );
    // Without --prune, Cat stays.
    let out = s.ok(&["apply", &file, "--dry-run"]);
    assert!(!stdout(&out).contains(C), "{}", stdout(&out));
    // A dry run with --prune changes nothing (kubectl once pruned in one).
    s.clear_log();
    let out = s.run(&[
        "apply",
        &file,
        "--dry-run",
        "--prune",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), expected);
    assert_eq!(mutations(&s), Vec::<String>::new());
    assert!(s.path(&format!("state/{C}-container.json")).exists());

    s.clear_log();
    let out = s.ok(&["apply", &file, "--prune"]);
    assert!(stdout(&out).starts_with(&expected), "{}", stdout(&out));
    assert!(stdout(&out).ends_with("Apply: 1 created, 1 updated, 1 deleted.\n"));
    let done = mutations(&s);
    assert!(
        done.contains(&format!(
            "incus config set {B}-container limits.memory=4GiB"
        )),
        "{done:#?}"
    );
    assert!(
        done.contains(&format!("incus delete --force {C}-container")),
        "{done:#?}"
    );
    assert!(!s.path(&format!("root/etc/containarium/keys/{C}")).exists());
    assert!(
        done.iter()
            .any(|l| l.starts_with("incus init") && l.ends_with(&format!("{D}-container")))
    );
    assert!(
        !done.iter().any(|l| l.contains(USER)),
        "outside the set: {done:#?}"
    );
    let ben = read_instance(&s, B);
    assert_eq!(ben["config"]["user.containarium.keys"], format!("{KEY2}\n"));
    let key_file =
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{B}"))).unwrap();
    assert!(
        key_file.contains(KEY2) && !key_file.contains(KEY),
        "{key_file}"
    );
    let out = s.ok(&["apply", &file, "--prune", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["summary"], "No changes.");
    assert_eq!(json["plan"][1]["action"], "unchanged");
}

fn read_instance(s: &Sandbox, user: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(s.path(&format!("state/{user}-container.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn apply_checks_the_whole_file_first_and_names_each_line() {
    let s = Sandbox::new(41);
    let file = cohort(
        &s,
        &format!(
            "set = \"course\"\n{}[[user]]\nname = \"{B}\"\nkeys = [\"{KEY}\"]\nmemory = \"lots\"\n{}",
            user(A, "colour = \"blue\"\n"),
            user(A, "")
        ),
    );
    let out = s.run(&["apply", &file]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: {file}:5: unknown field `colour`, expected one of `name`, `keys`, `key-files`, `image`, `template`, `disk`, `cpu`, `memory`, `docker`, `autostart`, `expires`, `idle-stop`; nothing changed\n")
            .replace("; nothing changed", "")
    );
    let file = cohort(
        &s,
        &format!(
            "set = \"course\"\n{}[[user]]\nname = \"{B}\"\nkeys = [\"{KEY}\"]\nmemory = \"lots\"\n{}",
            user(A, ""),
            user(A, "")
        ),
    );
    let out = s.run(&["apply", &file]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{file}:5: user \"{B}\": memory: invalid size \"lots\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:9: user \"{A}\": listed twice")),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "error: {file}: 2 problems (above); nothing changed\n"
        )),
        "{err}"
    );
    assert_eq!(s.log(), Vec::<String>::new(), "nothing was even asked");
}

#[test]
fn apply_never_takes_over_another_sets_user() {
    let s = Sandbox::with_hosts(42, 2);
    let file = cohort(
        &s,
        &format!("set = \"one\"\n{}", user(A, "image = \"local:dev\"\n")),
    );
    s.ok(&["apply", &file]);
    let other = cohort(
        &s,
        &format!("set = \"two\"\n{}", user(A, "image = \"local:dev\"\n")),
    );
    s.clear_log();
    let out = s.run(&["apply", &other, "--prune"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{A} (line 2) belongs to set \"one\", not \"two\"")),
        "{}",
        stderr(&out)
    );
    assert_eq!(mutations(&s), Vec::<String>::new());
    // An empty "two" prunes nothing of "one".
    let empty = cohort(&s, "set = \"two\"\n");
    let out = s.ok(&["apply", &empty, "--prune"]);
    assert_eq!(stdout(&out), "No changes.\n");
    assert!(s.path(&format!("state/{A}-container.json")).exists());
}

#[test]
fn reap_stops_expired_and_idle_containers_and_says_why() {
    let s = Sandbox::with_hosts(43, 3);
    let key = s.path("alice.pub");
    let key = key.to_str().unwrap();
    for (user, flags) in [
        (A, vec!["--expires", "2099-01-01"]),
        (B, vec!["--idle-stop", "1m"]),
        (C, vec!["--idle-stop", "1d"]),
    ] {
        let mut args = vec!["create", user, "--ssh-key", key, "--image", "local:dev"];
        args.extend(flags);
        s.ok(&args);
    }
    let out = s.run(&["create", D, "--ssh-key", key, "--expires", "2020-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {D} would expire at 2020-01-01T00:00:00Z, which has passed; nothing changed\n"
        )
    );
    // Ann's end came; Ben started long ago and nobody came.
    s.set_config(
        &format!("{A}-container"),
        "user.containarium.expires",
        "2020-01-01T00:00:00Z",
    );
    s.edit_instance(&format!("{B}-container"), |inst| {
        inst["last_used_at"] = "2026-01-01T00:00:00Z".into();
    });
    s.set_config(
        &format!("{B}-container"),
        "user.containarium.created",
        "2026-01-01T00:00:00Z",
    );
    s.clear_log();
    let out = s.ok(&["reap", "--dry-run", "--delete-after", "1000w"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "would stop {A}-container: expired at 2020-01-01T00:00:00Z"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "would stop {B}-container: no SSH connection since 2026-01-01T00:00:00Z (idle-stop 1m)"
        )),
        "{text}"
    );
    assert!(!text.contains(C), "{text}");
    assert_eq!(mutations(&s), Vec::<String>::new());
    assert!(!s.log().iter().any(|l| l.starts_with("incus stop")));

    let out = s.ok(&["reap", "--json", "--delete-after", "1000w"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_user = |u: &str| {
        json.as_array()
            .unwrap()
            .iter()
            .find(|d| d["user"] == u)
            .unwrap()
            .clone()
    };
    assert_eq!(by_user(A)["action"], "stop");
    assert_eq!(by_user(B)["action"], "stop");
    assert_eq!(by_user(C)["action"], "keep");
    assert!(s.log().contains(&format!("incus stop {A}-container")));
    assert!(s.log().contains(&format!("incus stop {B}-container")));
    assert!(
        !s.log()
            .iter()
            .any(|l| l.starts_with("incus stop") && l.contains(C))
    );

    // The grace period runs from when the expiry was set (at create,
    // now), not from the date: a day after 2020 is not enough.
    let out = s.ok(&["reap", "--delete-after", "1d"]);
    assert!(!stdout(&out).contains("deleted"), "{}", stdout(&out));
    assert!(s.path(&format!("state/{A}-container.json")).exists());
    // Past its grace period, the expired one is deleted, account and all.
    s.set_config(
        &format!("{A}-container"),
        "user.containarium.expires-set",
        "2019-12-01T00:00:00Z",
    );
    s.clear_log();
    let out = s.ok(&["reap", "--delete-after", "1d"]);
    assert!(stdout(&out).contains(&format!("deleted {A}-container: expired at 2020-01-01T00:00:00Z; the 1d grace period ended at 2020-01-02T00:00:00Z")), "{}", stdout(&out));
    assert!(!s.path(&format!("root/etc/containarium/keys/{A}")).exists());
    assert!(!s.path(&format!("state/{A}-container.json")).exists());
}

#[test]
fn apply_stops_starting_work_after_a_failure_and_a_rerun_continues() {
    let s = Sandbox::with_hosts(44, 3);
    let file = cohort(
        &s,
        &format!(
            "set = \"course\"\n[defaults]\nimage = \"local:dev\"\n{}{}{}",
            user(A, ""),
            user(B, ""),
            user(C, "")
        ),
    );
    let out = s.run_with(
        &["apply", &file, "--jobs", "1"],
        // Ben's incus init: only it names him as the owner.
        &[("FAKE_FAIL", &format!("user.containarium.owner={B} "))],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with("Apply: 1 created, 0 updated, 0 deleted.\n"),
        "{}",
        stdout(&out)
    );
    let err = stderr(&out);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with(&format!(
            "error: apply stopped after a failure: create {B} failed ("
        )) && last.ends_with(&format!(
            "; not started: create {C}; apply the file again to continue"
        )),
        "{err}"
    );
    // What failed was undone; what was not started was not.
    assert!(!s.path(&format!("state/{B}-container.json")).exists());
    assert!(!s.path(&format!("state/{C}-container.json")).exists());

    let out = s.ok(&["apply", &file, "--jobs", "1"]);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("= {A} unchanged\n+ {B} create (")),
        "{text}"
    );
    assert!(
        text.contains("Plan: 2 to create, 0 to update, 0 to delete, 1 unchanged.\n"),
        "{text}"
    );
    assert!(
        text.ends_with("Apply: 2 created, 0 updated, 0 deleted.\n"),
        "{text}"
    );
}

/// Issue 20, item 4: a helper's file listing a user that plain `create`
/// made is refused in one line, changing nothing; `--adopt USER` plans the
/// takeover (keys by fingerprint and comment); a past expiry for an
/// existing user, key files outside the file's directory and a FIFO are
/// refused too. Control: a file for its own set applies.
#[test]
fn apply_never_takes_over_a_user_it_did_not_make() {
    let s = Sandbox::with_hosts(45, 3);
    let key = s.path("alice.pub");
    s.ok(&[
        "create",
        B,
        "--ssh-key",
        key.to_str().unwrap(),
        "--image",
        "local:dev",
    ]);
    let helper = own_file_with_key2(B);
    let file = cohort(&s, &helper);
    s.clear_log();
    let out = s.run(&["apply", &file]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {B} (line 4) exists and was not made by set \"workshop\": take them over \
             with --adopt {B}; nothing changed\n"
        )
    );
    assert_eq!(stdout(&out), "");
    assert_eq!(mutations(&s), Vec::<String>::new());
    let ben = read_instance(&s, B);
    assert_eq!(ben["config"]["user.containarium.keys"], format!("{KEY}\n"));

    // Named by the admin, the takeover is planned, saying whose keys.
    let out = s.run(&["apply", &file, "--adopt", B, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "~ {B} update keys +1 -1 (+SHA256:MQrWSjH125YWsj4BgzUt7UEtSWa/E2SV79NRtLS/lps \
             alice@desktop, -SHA256:ayAPUQQNzI1tTUO/8YYvKGWorssV1d8Biuj0REvoqu8 alice@laptop); \
             set - -> workshop\nPlan: 0 to create, 1 to update, 0 to delete, 0 unchanged.\n"
        )
    );
    // --adopt names only a user the file lists.
    let out = s.run(&["apply", &file, "--adopt", C]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: --adopt {C}: the file does not list {C}; nothing changed\n")
    );

    // An existing user's expiry is never set in the past, adopted or not.
    let past = cohort(
        &s,
        &helper.replace("[defaults]\n", "[defaults]\nexpires = \"2000-01-01\"\n"),
    );
    let out = s.run(&["apply", &past, "--adopt", B]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "error: {B} (line 5) would expire at 2000-01-01T00:00:00Z, which has passed: an \
             existing user's expiry is never set in the past"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    assert_eq!(mutations(&s), Vec::<String>::new());

    // Key files: relative paths inside the file's directory, regular files.
    for bad in ["/etc/shadow", "../alice.pub", "keys/../../alice.pub"] {
        let text =
            format!("set = \"workshop\"\n[[user]]\nname = \"{C}\"\nkey-files = [\"{bad}\"]\n");
        let file = cohort(&s, &text);
        s.clear_log();
        let out = s.run(&["apply", &file]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: {file}:2: user \"{C}\": key-files: {bad:?} is not a relative path \
                 inside the file's directory (no leading '/', no '..'); nothing changed\n"
            )
        );
        assert_eq!(s.log(), Vec::<String>::new(), "{bad}: nothing was asked");
    }
    let fifo = s.path("keys/fifo.pub");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let file = cohort(
        &s,
        &format!("set = \"workshop\"\n[[user]]\nname = \"{C}\"\nkey-files = [\"keys/fifo.pub\"]\n"),
    );
    for args in [
        vec!["apply", file.as_str()],
        vec!["create", C, "--ssh-key", fifo.to_str().unwrap()],
    ] {
        let out = within(&s, &args, std::time::Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("keys/fifo.pub is not a regular file: not a public key file"),
            "{args:?}: {err}"
        );
    }

    // The control: a file for its own set creates and then updates its user.
    let own = cohort(
        &s,
        &format!(
            "set = \"workshop\"\n[defaults]\nimage = \"local:dev\"\n{}",
            user(C, "")
        ),
    );
    let out = s.ok(&["apply", &own]);
    assert!(stdout(&out).ends_with("Apply: 1 created, 0 updated, 0 deleted.\n"));
    let own = cohort(&s, &own_file_with_key2(C));
    let out = s.ok(&["apply", &own]);
    assert!(
        stdout(&out).starts_with(&format!("~ {C} update keys +1 -1 (")),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("Apply: 0 created, 1 updated, 0 deleted.\n"));
    // Ben kept his own key throughout.
    let ben = read_instance(&s, B);
    assert_eq!(ben["config"]["user.containarium.keys"], format!("{KEY}\n"));
    assert!(ben["config"].get("user.containarium.set").is_none());
}

/// A file of set "workshop" listing `name` with KEY2, a helper's key.
fn own_file_with_key2(name: &str) -> String {
    format!(
        "set = \"workshop\"\n[defaults]\nimage = \"local:dev\"\n{}",
        user(name, "").replace(KEY, KEY2)
    )
}

/// Runs the binary, failing the test (and killing it) if it takes longer
/// than `limit`: for what once hung (a FIFO read).
fn within(s: &Sandbox, args: &[&str], limit: std::time::Duration) -> Output {
    let mut child = s
        .command(args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{args:?} still ran after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Issue 20, item 3: an instance relabelled as another user's (what a
/// restored backup edited to `owner: bob` gives) is skipped, with a
/// warning, by reap, list, sync-accounts and each user verb: reap deletes
/// neither it nor the other user's container, account or key file. The
/// control: an honestly expired container is deleted.
#[test]
fn an_instance_relabelled_as_another_user_s_is_never_acted_on_for_them() {
    let s = Sandbox::with_hosts(46, 3);
    let key = s.path("alice.pub");
    for who in [A, B, C] {
        s.ok(&[
            "create",
            who,
            "--ssh-key",
            key.to_str().unwrap(),
            "--image",
            "local:dev",
        ]);
    }
    let (a, c) = (format!("{A}-container"), format!("{C}-container"));
    for (name, owner) in [(&a, B), (&c, C)] {
        s.set_config(name, "user.containarium.owner", owner);
        s.set_config(name, "user.containarium.expires", "2020-01-01T00:00:00Z");
        s.set_config(
            name,
            "user.containarium.expires-set",
            "2020-01-01T00:00:00Z",
        );
    }
    let key_file = |u: &str| {
        std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{u}"))).unwrap()
    };
    let ben_keys = key_file(B);
    s.clear_log();
    let out = s.ok(&["reap", "--delete-after", "1s"]);
    let warning = format!(
        "warning: {a} records owner \"{B}\", which is not the user its name says; skipped \
         (see `containarium host doctor`)\n"
    );
    assert_eq!(
        stderr(&out).matches(&warning).count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("deleted {c}: expired at 2020-01-01T00:00:00Z; ")),
        "the control: {}",
        stdout(&out)
    );
    assert!(
        !stdout(&out).contains(A) && !stdout(&out).contains(B),
        "{}",
        stdout(&out)
    );
    assert!(!s.path(&format!("state/{c}.json")).exists());
    for l in s.log() {
        assert!(!l.contains(A) && !l.contains(B), "reap acted on {l}");
    }
    assert!(s.path(&format!("state/{a}.json")).exists());
    assert!(s.path(&format!("state/{B}-container.json")).exists());
    assert_eq!(key_file(B), ben_keys);

    // Every verb: listed as nobody's, refused by name, never rewritten.
    let out = s.ok(&["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, [B]);
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));
    let out = s.run(&["delete", A, "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!(
            "error: {a} is not managed by containarium; not deleting it\n"
        )),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["stop", A]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).ends_with(&format!(
            "error: {a} records another owner than {A}; nothing changed \
             (see `containarium host doctor`)\n"
        )),
        "{}",
        stderr(&out)
    );
    s.clear_log();
    let out = s.ok(&["sync-accounts"]);
    assert!(stderr(&out).contains(&warning), "{}", stderr(&out));
    assert!(
        !s.log()
            .iter()
            .any(|l| l.contains(&format!("userdel -- {A}"))),
        "{:?}",
        s.log()
    );
    assert_eq!(key_file(B), ben_keys);
}
