//! On an Incus cluster (the fake's `FAKE_CLUSTER`): `create` publishes the
//! container's sshd on its member and points the jump key there, `move`
//! follows with the device and the key and moves everything back on a
//! failure, `list`/`info` show the member and say which one is down.

use super::*;

/// A cluster of three members at 127.84.N.11-13, each with a fake sshd on
/// the port the sandbox's one address is published on (10000 + its offset
/// in 127.83.N.0/30: 10002).
fn cluster(n: u8) -> (Sandbox, Vec<(&'static str, String)>) {
    let s = Sandbox::new(n);
    let members: Vec<(&str, String)> = ["ctm1", "ctm2", "ctm3"]
        .into_iter()
        .zip(11..)
        .map(|(name, host)| (name, format!("127.84.{n}.{host}")))
        .collect();
    for (_, addr) in &members {
        let listener = listen_shared(addr, 10002);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2 fake\r\n");
            }
        });
    }
    (s, members)
}

fn spec(members: &[(&str, String)]) -> String {
    let specs: Vec<String> = members.iter().map(|(n, a)| format!("{n}={a}")).collect();
    specs.join(",")
}

fn key_file(s: &Sandbox) -> String {
    std::fs::read_to_string(s.path(&format!("root/etc/containarium/keys/{USER}"))).unwrap()
}

#[test]
fn create_publishes_sshd_on_the_member_and_move_follows_it() {
    let (s, members) = cluster(150);
    let cluster = spec(&members);
    let on = |args: &[&str], extra: &[(&str, &str)]| {
        let mut env = vec![("FAKE_CLUSTER", cluster.as_str())];
        env.extend_from_slice(extra);
        s.run_with(args, &env)
    };
    let alice = s.path("alice.pub").to_str().unwrap().to_string();
    let (m2, m3) = (&members[1].1, &members[2].1);

    // The scheduler's pick (the fake's: the second member).
    let out = on(&["create", USER, "--ssh-key", &alice, "--no-docker"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = s.log();
    let init = log.iter().find(|l| l.starts_with("incus init")).unwrap();
    assert!(!init.contains("--target"), "{init}");
    let publish = format!(
        "incus config device add {USER}-container ssh proxy listen=tcp:{m2}:10002 \
         connect=tcp:127.83.150.2:22 nat=true"
    );
    assert!(log.contains(&publish), "{log:#?}");
    // Published before the key file names it.
    assert!(key_file(&s).contains(&format!("permitopen=\"{m2}:10002\" ")));
    assert!(
        stdout(&out).contains(&format!("ssh -J {USER}@"))
            && stdout(&out).contains(&format!("-p 10002 {USER}@{m2}")),
        "{}",
        stdout(&out)
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&on(&["list", "--json"], &[]).stdout).unwrap();
    assert_eq!(listed[0]["location"], "ctm2");
    let table = stdout(&on(&["list"], &[]));
    assert!(
        table.lines().next().unwrap().ends_with("LOCATION"),
        "{table}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&on(&["info", USER, "--json"], &[]).stdout).unwrap();
    assert_eq!(info["endpoint"], format!("{m2}:10002"));

    // move: stop, move, re-point the device and the key, start, sshd.
    s.clear_log();
    let out = on(&["move", USER, "--target", "ctm3"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c = format!("{USER}-container");
    assert_eq!(
        s.log()
            .into_iter()
            .filter(|l| !l.starts_with("incus list")
                && !l.starts_with("incus query")
                && !l.starts_with("incus cluster"))
            .collect::<Vec<_>>(),
        [
            format!("incus stop {c}"),
            format!("incus move {c} --target ctm3"),
            format!("incus config device set {c} ssh listen=tcp:{m3}:10002"),
            format!("incus start {c}"),
        ]
    );
    assert!(key_file(&s).contains(&format!("permitopen=\"{m3}:10002\" ")));
    assert!(
        stdout(&on(&["move", USER, "--target", "ctm3"], &[])).contains("already; nothing changed")
    );

    // A failed start moves everything back, in reverse.
    let before = key_file(&s);
    s.clear_log();
    let out = on(
        &["move", USER, "--target", "ctm1"],
        &[("FAKE_FAIL", "incus start")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let log = s.log();
    let undo: Vec<&String> = log
        .iter()
        .skip_while(|l| !l.starts_with("incus start"))
        .collect();
    assert_eq!(
        undo[1..4],
        [
            &format!("incus config device set {c} ssh listen=tcp:{m3}:10002"),
            &format!("incus move {c} --target ctm3"),
            &format!("incus start {c}"),
        ],
        "{log:#?}"
    );
    assert_eq!(key_file(&s), before);
    let listed: serde_json::Value =
        serde_json::from_slice(&on(&["list", "--json"], &[]).stdout).unwrap();
    assert_eq!(listed[0]["location"], "ctm3");

    // A member down: named by list and info, and not moved to.
    let down = [("FAKE_CLUSTER_DOWN", "ctm3")];
    let out = on(&["list"], &down);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: cluster member ctm3 is offline"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("ctm3 (offline)"), "{}", stdout(&out));
    let out = on(
        &["move", USER, "--target", "ctm3"],
        &[("FAKE_CLUSTER_DOWN", "ctm1")],
    );
    assert!(stdout(&out).contains("already"), "{}", stderr(&out));
    let out = on(
        &["move", USER, "--target", "ctm1"],
        &[("FAKE_CLUSTER_DOWN", "ctm1")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "error: cluster member ctm1 is offline; nothing changed"
    );
}

#[test]
fn create_passes_its_target_to_incus() {
    let (s, members) = cluster(151);
    let cluster = spec(&members);
    let alice = s.path("alice.pub").to_str().unwrap().to_string();
    let out = s.run_with(
        &[
            "create",
            USER,
            "--ssh-key",
            &alice,
            "--no-docker",
            "--target",
            "ctm3",
        ],
        &[("FAKE_CLUSTER", cluster.as_str())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = s.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("incus init --target ctm3 ")),
        "{log:#?}"
    );
    assert!(key_file(&s).contains(&format!("permitopen=\"{}:10002\" ", members[2].1)));
}
