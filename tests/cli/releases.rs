//! Releases on a host — activate, rollback, history, status, locks, prune,
//! shared data and the drift check — keep `current`, history and the
//! operator's exit codes in agreement, on local paths and over SSH.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Env, Scenario, has_open, hold_lock, wait_for, write_file};

/// Build releases v1..=n from a small tree whose index.html names the release.
fn releases(env: &Env, n: usize) {
    for i in 1..=n {
        write_file(&env.path("site/index.html"), format!("<h1>v{i}</h1>\n").as_bytes());
        write_file(
            &env.path("site/static/app.js"),
            b"console.log('same in every release')\n",
        );
        env.slipway()
            .args(["build", "--dir", "site", "--name", &format!("v{i}")])
            .ok();
    }
}

fn current(root: &Path) -> String {
    let link = std::fs::read_link(root.join("current")).expect("current is a symlink");
    let text = link.to_string_lossy().into_owned();
    assert!(text.starts_with("releases/"), "current must be relative: {text}");
    assert!(
        root.join(&text).join("index.html").is_file(),
        "current points at a complete release"
    );
    text.trim_start_matches("releases/").to_string()
}

fn status(env: &Env, target: &str) -> serde_json::Value {
    let out = env.slipway().args(["status", "--json", "-t", target]).ok();
    out.json()[0].clone()
}

#[test]
fn activate_rollback_history_and_status_with_every_exit_code() {
    let env = Env::new();
    releases(&env, 3);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    for v in ["v1", "v2", "v3"] {
        env.slipway().args(["push", v, "-t", t]).ok();
    }
    assert!(
        std::fs::symlink_metadata(root.join("current")).is_err(),
        "push never activates"
    );

    // not on the host: exit 1, suggests push
    env.write("site/index.html", "v4");
    env.slipway().args(["build", "--dir", "site", "--name", "v4"]).ok();
    env.slipway()
        .args(["activate", "v4", "-t", t])
        .fails(1)
        .stderr_has("release `v4` is not on this host; push it first");
    // a typo (in no store) of a release the host has: the close name is suggested
    env.slipway()
        .args(["activate", "vv2", "-t", t])
        .fails(1)
        .stderr_has("release `vv2` is not on this host (did you mean `v2`?)");
    // nothing to roll back to yet
    env.slipway()
        .args(["rollback", "-t", t])
        .fails(1)
        .stderr_has("nothing to roll back to");

    for v in ["v1", "v2", "v3"] {
        env.slipway().args(["activate", v, "-t", t]).ok();
        assert_eq!(current(&root), v);
    }
    // already current: succeeds and is recorded
    env.slipway().args(["activate", "v3", "-t", t]).ok();
    let hist = env.slipway().args(["history", "--json", "-t", t]).ok().json();
    let hist = hist.as_array().unwrap();
    assert_eq!(
        hist.len(),
        4,
        "activating the current release succeeds and is recorded: {hist:?}"
    );

    // --expect is a compare-and-swap: exit 6, nothing changed
    env.slipway()
        .args(["activate", "v1", "-t", t, "--expect", "v2"])
        .fails(6)
        .stderr_has("not `v2` (--expect)");
    assert_eq!(current(&root), "v3");
    env.slipway().args(["activate", "v1", "-t", t, "--expect", "v3"]).ok();
    env.slipway().args(["activate", "v3", "-t", t]).ok();

    // rollback walks back v3 -> v2 -> v1, marking what it leaves bad
    env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current(&root), "v1", "v1 was active right before v3");
    let st = status(&env, t);
    assert_eq!(st["current"], "v1");
    let bad: Vec<&str> = st["releases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["bad"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(bad, vec!["v3"]);
    env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current(&root), "v2", "walks back, never toggles to the bad v3");
    // by id, and activation clears the mark
    let id3 = env.slipway().args(["inspect", "v3", "--json"]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.slipway().args(["rollback", "-t", t, "--to", &id3[..19]]).ok();
    assert_eq!(current(&root), "v3");
    let st = status(&env, t);
    assert!(
        st["releases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["name"] != "v3" || r["bad"] == false)
    );
    for key in ["host", "current", "current_id", "previous", "releases", "lock"] {
        assert!(st.get(key).is_some(), "status --json lacks `{key}`: {st}");
    }
    assert_eq!(st["lock"], serde_json::Value::Null);
    assert_eq!(st["current_id"], id3.as_str());

    // history: flat, newest first, documented keys
    let hist = env.slipway().args(["history", "--json", "-t", t]).ok().json();
    let first = &hist[0];
    for key in ["host", "time", "actor", "action", "from", "to", "id"] {
        assert!(first.get(key).is_some(), "history --json lacks `{key}`: {first}");
    }
    assert_eq!(first["to"], "v3");
    assert_eq!(first["action"], "rollback");
    assert_eq!(first["actor"].as_str().unwrap().split('@').next(), Some("tester"));
    let n2 = env
        .slipway()
        .args(["history", "--json", "-n", "2", "-t", t])
        .ok()
        .json();
    assert_eq!(n2.as_array().unwrap().len(), 2);

    // usage errors: exit 2
    env.slipway()
        .args(["activate", "v1", "-t", "nosuchtarget"])
        .fails(2)
        .stderr_has("unknown target");
    env.slipway().args(["activate", "-t", t]).fails(2);
}

#[test]
fn a_held_lock_fails_fast_naming_the_holder_or_is_waited_for() {
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", t]).ok();
    env.slipway().args(["push", "v2", "-t", t]).ok();
    env.slipway().args(["activate", "v1", "-t", t]).ok();
    std::fs::write(
        root.join(".slipway/lock.info"),
        r#"{"actor":"alice@laptop","command":"slipway activate v9","pid":4242,"since":"2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    // Held until `release` appears, however slow this machine is.
    let release = env.path("release-lock");
    let mut holder = hold_lock(&root, &release);
    let out = env.slipway().args(["activate", "v2", "-t", t]).fails(4);
    out.stderr_has("locked by alice@laptop, running `slipway activate v9` since 2026-01-01T00:00:00Z (");
    assert_eq!(current(&root), "v1", "nothing changed");
    let st = status(&env, t);
    assert_eq!(st["lock"]["actor"], "alice@laptop");
    env.slipway().args(["prune", "-t", t]).fails(4);

    // --wait waits: its `serve` opens the lock file and stays while it is held.
    let mut waiting = env
        .slipway()
        .args(["activate", "v2", "-t", t, "--wait", "60"])
        .cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = root.join(".slipway/lock");
    let pid = waiting.id();
    wait_for(30, "the waiting activate to open the lock file", || {
        let gone = waiting.try_wait().unwrap();
        assert!(
            gone.is_none(),
            "activate --wait ended ({gone:?}) while the lock was held"
        );
        has_open(pid, &lock)
    });
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "activate --wait gave up while the lock was held"
    );
    assert_eq!(current(&root), "v1", "nothing switched while waiting");
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().success());
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "activate --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current(&root), "v2");
}

/// A lock held by a real operator is reported as that operator sees it:
/// their `user@machine` (sent by their client), the command they ran and
/// since when, with the host's pid last; a command told to `--wait` says
/// whom it is waiting for before it waits.
#[test]
fn a_held_lock_names_the_operator_their_machine_command_and_since_when() {
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", t]).ok();
    env.slipway().args(["push", "v2", "-t", t]).ok();
    env.slipway().args(["activate", "v1", "-t", t]).ok();
    // The holder: an activation whose before_activate waits for `release`.
    let release = env.path("release-lock");
    env.write(
        "slipway.toml",
        format!(
            "[targets.prod]\nhosts = [\"{t}\"]\n[targets.prod.hooks]\nbefore_activate = 'while [ ! -e \"{}\" ]; do sleep 0.05; done'\n",
            release.display()
        ),
    );
    let mut holder = env
        .slipway()
        .args(["activate", "v2", "-t", "prod"])
        .cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(30, "the activation to hold the lock", || {
        status(&env, t)["lock"].is_object()
    });
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let operator = format!("tester@{}", machine.trim());
    let held_by = format!("{operator}, running `slipway activate v2 -t prod` since ");

    let out = env.slipway().args(["rollback", "--to", "v1", "-t", t]).fails(4);
    out.stderr_has(&format!("is locked by {held_by}"))
        .stderr_has(" s ago; host pid ")
        .stderr_has("retry when it is done, or pass `--wait SECS`");
    let st = status(&env, t);
    assert_eq!(st["lock"]["actor"], operator.as_str(), "{st}");
    assert_eq!(st["lock"]["command"], "slipway activate v2 -t prod", "{st}");
    let text = env.slipway().args(["status", "-t", t]).ok().stdout();
    assert!(text.contains(&format!("lock      held by {held_by}")), "{text}");

    // --wait says whom it waits for, then goes ahead once the lock is free.
    let log = env.path("waiting.stderr");
    let waiting = env
        .slipway()
        .args(["rollback", "--to", "v1", "-t", t, "--wait", "60"])
        .cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let note = format!("{t}: waiting up to 60 s for the lock, held by {held_by}");
    wait_for(30, "the waiting rollback to say whom it waits for", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains(&note))
    });
    assert_eq!(current(&root), "v1", "nothing switched while the holder waits");
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().unwrap().success(), "the holder finishes");
    let done = waiting.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "rollback --wait: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(current(&root), "v1");
}

#[test]
fn racing_operators_each_succeed_once_or_exit_4_and_history_matches_current() {
    let env = Env::new();
    releases(&env, 3);
    let root = env.path("host");
    let t = root.to_str().unwrap().to_string();
    for v in ["v1", "v2", "v3"] {
        env.slipway().args(["push", v, "-t", &t]).ok();
    }
    env.slipway().args(["activate", "v1", "-t", &t]).ok();
    let before = env
        .slipway()
        .args(["history", "--all", "--json", "-t", &t])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .len();
    let children: Vec<_> = (0..10)
        .map(|i| {
            let args: Vec<String> = match i % 3 {
                0 => vec!["activate".into(), "v2".into()],
                1 => vec!["activate".into(), "v3".into()],
                _ => vec!["rollback".into(), "--to".into(), "v1".into()],
            };
            let mut cmd = env.slipway().args(&args).args(["-t", &t]).cmd;
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    let mut ok = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => ok += 1,
            Some(4) => assert!(
                String::from_utf8_lossy(&out.stderr).contains("is locked by"),
                "exit 4 names the holder: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            other => panic!("unexpected exit {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }
    assert!(ok >= 1);
    let hist = env.slipway().args(["history", "--all", "--json", "-t", &t]).ok().json();
    let hist = hist.as_array().unwrap();
    assert_eq!(hist.len(), before + ok, "one record per successful operator");
    assert_eq!(
        hist[0]["to"].as_str().unwrap(),
        current(&root),
        "the last record's `to` is current"
    );
}

#[test]
fn shared_data_survives_activate_rollback_and_prune() {
    let s = Scenario::new()
        .tags(["v1", "v2", "v3", "v4"])
        .local_hosts(1)
        .toml("shared = [\"uploads\", \"static/cache\"]\nshared_files = [\"config.env\"]\nkeep = 1\n")
        .start();
    let root = s.root(0);
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // the application writes through current/
    std::fs::write(root.join("current/uploads/photo.jpg"), "precious").unwrap();
    std::fs::write(root.join("current/config.env"), "SECRET=1").unwrap();
    std::fs::write(root.join("current/static/cache/x"), "cached").unwrap();
    assert_eq!(
        std::fs::read_link(root.join("releases/v1/uploads"))
            .unwrap()
            .to_string_lossy(),
        "../../shared/uploads"
    );
    for v in ["v2", "v3", "v4"] {
        s.slipway().args(["deploy", v, "-t", "prod"]).ok();
    }
    s.slipway().args(["rollback", "-t", "prod"]).ok();
    s.slipway().args(["prune", "-t", "prod", "--keep", "1"]).ok();
    assert_eq!(
        std::fs::read_to_string(root.join("current/uploads/photo.jpg")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("shared/config.env")).unwrap(),
        "SECRET=1"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("current/static/cache/x")).unwrap(),
        "cached"
    );
    s.slipway().args(["verify", "-t", "prod"]).ok();

    // a bundle with a file where a shared path goes is refused, naming it
    s.repo.write("uploads", "oops");
    s.tag("v5");
    s.slipway()
        .args(["push", "v5", "-t", "prod"])
        .fails(1)
        .stderr_has("the bundle has a file at shared path `uploads`");
}

#[test]
fn a_release_with_an_entry_at_a_shared_path_is_refused_before_any_host_is_contacted_and_build_warns() {
    let env = Env::new();
    // A host that cannot be reached: a refusal that names the shared path
    // (not the connection) came from the client alone.
    env.write(
        "slipway.toml",
        "[targets.prod]\nhosts = [\"ssh://nobody@127.0.0.1:1/srv/app\"]\nshared = [\"log\"]\nconnect_timeout = \"2s\"\n",
    );
    env.write("site/index.html", "hi");
    env.write("site/log/.gitkeep", "");
    env.slipway()
        .args(["build", "--dir", "site", "--name", "v1"])
        .ok()
        .stderr_has("warning: release `v1` cannot go to target `prod` as it is: the bundle has a directory at shared path `log`; remove it from the build output or from `shared`");
    for verb in ["push", "deploy"] {
        env.slipway()
            .args([verb, "v1", "-t", "prod"])
            .fails(1)
            .one_line_error()
            .stderr_has(
                "error: release `v1` cannot go to target `prod`: the bundle has a directory at shared path `log`; \
                 remove it from the build output or from `shared`; no host was contacted",
            );
    }
}

#[test]
fn prune_keeps_current_previous_pinned_and_waiting_releases_and_dry_run_lists() {
    let s = Scenario::new()
        .tags(["v1", "v2", "v3", "v4", "v5", "v6"])
        .local_hosts(1)
        .toml("pinned = [\"v1\"]\nkeep = 5\n")
        .start();
    let root = s.root(0);
    for v in ["v1", "v2", "v3", "v4", "v5"] {
        s.slipway().args(["push", v, "-t", "prod"]).ok();
        s.slipway().args(["activate", v, "-t", "prod"]).ok();
    }
    s.slipway().args(["push", "v6", "-t", "prod"]).ok(); // waiting to go live
    let dry = s
        .slipway()
        .args(["prune", "-t", "prod", "--keep", "0", "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(dry[0]["releases"], serde_json::json!(["v2", "v3"]), "{dry}");
    assert!(root.join("releases/v2").is_dir(), "dry run removes nothing");
    let out = s.slipway().args(["prune", "-t", "prod", "--keep", "0"]).ok();
    assert!(out.stdout().contains("removed v2, v3"), "{out}");
    for kept in ["v1", "v4", "v5", "v6"] {
        assert!(root.join("releases").join(kept).is_dir(), "{kept} kept");
    }
    assert!(!root.join("releases/v2").exists() && !root.join(".slipway/releases/v2.json").exists());
    s.slipway().args(["verify", "-t", "prod"]).ok();
    s.slipway().args(["rollback", "-t", "prod"]).ok();
    assert_eq!(current(root), "v4");
}

/// The files under `objects/`.
fn objects(root: &Path) -> usize {
    std::fs::read_dir(root.join(".slipway/objects"))
        .unwrap()
        .map(|fan| std::fs::read_dir(fan.unwrap().path()).unwrap().count())
        .sum()
}

/// A release pushed but never activated goes once another release went
/// live after it, and with it the objects no remaining release uses; a dry
/// run reports the same and removes nothing.
#[test]
fn prune_removes_a_release_passed_over_and_the_objects_only_it_used_and_dry_run_counts_them() {
    let env = Env::new();
    let root = env.path("host");
    // Copies: every object has one link, so only the manifests of the
    // releases that remain say which objects are used.
    env.write(
        "slipway.toml",
        format!(
            "[targets.copy]\nhosts = [\"{}\"]\nlink_mode = \"copy\"\n",
            root.display()
        ),
    );
    env.write("site/app.js", "console.log('in every release')\n");
    let only_side = ["<h1>side</h1>\n", "only in side\n"];
    for (name, index) in [("v1", "<h1>v1</h1>\n"), ("side", only_side[0]), ("v2", "<h1>v2</h1>\n")] {
        env.write("site/index.html", index);
        if name == "side" {
            env.write("site/side.txt", only_side[1]);
        } else {
            let _ = std::fs::remove_file(env.path("site/side.txt"));
        }
        env.slipway().args(["build", "--dir", "site", "--name", name]).ok();
    }
    let sl = |args: &[&str]| env.slipway().args(args).args(["-t", "copy"]).ok();
    sl(&["push", "v1"]);
    sl(&["activate", "v1"]);
    sl(&["push", "side"]); // never activated: v2 went live after it
    // `pushed_at` has whole seconds: one of the second v2 goes live in
    // counts as pushed after it (waiting), so v2 goes live in a later one.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let pushed = now();
    wait_for(5, "the next second", || now() > pushed);
    sl(&["push", "v2"]);
    sl(&["activate", "v2"]);
    assert_eq!(objects(&root), 5);

    let bytes: usize = only_side.iter().map(|s| s.len()).sum();
    let expected = |dry_run: bool| {
        serde_json::json!({
            "host": root.display().to_string(), "dry_run": dry_run, "releases": ["side"],
            "objects": 2, "object_bytes": bytes, "tmp_entries": 0, "notes": [],
        })
    };
    let dry = sl(&["prune", "--keep", "0", "--dry-run", "--json"]).json();
    assert_eq!(dry[0], expected(true));
    assert_eq!(objects(&root), 5, "a dry run removes no object");
    assert!(root.join("releases/side").is_dir(), "a dry run removes no release");

    let done = sl(&["prune", "--keep", "0", "--json"]).json();
    assert_eq!(done[0], expected(false));
    assert_eq!(objects(&root), 3);
    assert!(!root.join("releases/side").exists());
    sl(&["verify"]);
    sl(&["rollback"]);
    assert_eq!(current(&root), "v1");
}

/// The lock file a finished push leaves (`tmp/<name>.lock`) is not a
/// staging leftover worth reporting; a killed push's `.partial` is.
#[test]
fn prune_does_not_report_release_lock_files_as_staging_leftovers() {
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", t]).ok();
    let tmp = root.join(".slipway/tmp");
    assert!(tmp.join("v1.lock").is_file(), "a push leaves its lock file");
    let dry = |env: &Env| env.slipway().args(["prune", "-t", t, "--dry-run"]).ok().stdout();
    assert_eq!(
        dry(&env),
        format!("{t}: would remove no releases; 0 object(s), 0 B; 0 staging leftover(s)\n")
    );
    // What a push killed while building its tree leaves behind.
    std::fs::create_dir_all(tmp.join("v2.partial/static")).unwrap();
    assert_eq!(
        dry(&env),
        format!("{t}: would remove no releases; 0 object(s), 0 B; 1 staging leftover(s)\n")
    );
    let json = env.slipway().args(["prune", "-t", t, "--json"]).ok().json();
    assert_eq!(json[0]["tmp_entries"], 1, "{json}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "prune empties tmp/");
    // The lock file comes back with the next push, which works as before.
    env.slipway().args(["push", "v2", "-t", t]).ok();
    env.slipway().args(["activate", "v2", "-t", t]).ok();
    assert_eq!(current(&root), "v2");
}

#[test]
fn verify_reports_drift_with_exit_5() {
    let env = Env::new();
    releases(&env, 1);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();
    env.slipway().args(["verify", "-t", t]).ok();
    env.slipway().args(["verify", "-t", t, "v1"]).ok();
    // someone edits a live file and drops another one in
    let f = root.join("releases/v1/index.html");
    Command::new("chmod")
        .arg("u+w")
        .arg(root.join("releases/v1"))
        .arg(&f)
        .status()
        .unwrap();
    std::fs::write(&f, "<h1>hacked</h1>\n").unwrap();
    std::fs::write(root.join("releases/v1/extra.php"), "<?php").unwrap();
    let out = env.slipway().args(["verify", "-t", t, "--json"]).fails(5);
    let drift = out.json()[0]["drift"].clone();
    let problems: Vec<(String, String)> = drift
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["problem"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        problems,
        vec![
            ("extra.php".to_string(), "extra".to_string()),
            ("index.html".to_string(), "changed".to_string())
        ]
    );
    env.slipway()
        .args(["verify", "-t", t, "v9"])
        .fails(1)
        .stderr_has("`v9`");
}

#[test]
fn verify_repair_rebuilds_damaged_releases_from_the_store_and_keeps_their_records() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();
    env.slipway().args(["deploy", "v2", "-t", t]).ok();
    // v2 is marked bad by the rollback: a repair must not clear the mark.
    env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current(&root), "v1");
    let meta = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join(format!(".slipway/releases/{name}.json"))).unwrap()).unwrap()
    };
    let kept = |m: &serde_json::Value| {
        (
            m["id"].clone(),
            m["pushed_at"].clone(),
            m["pushed_by"].clone(),
            m["bad"].clone(),
        )
    };
    let (meta1, meta2) = (meta("v1"), meta("v2"));
    assert_eq!(meta2["bad"], true);
    let history = std::fs::read(root.join(".slipway/history.jsonl")).unwrap();
    let trees = (
        crate::support::snapshot(&root.join("releases/v1")),
        crate::support::snapshot(&root.join("releases/v2")),
    );

    let ino = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(root.join(p)).unwrap());
    let (damaged, intact) = (ino("releases/v1/index.html"), ino("releases/v1/static/app.js"));
    let intact2 = ino("releases/v2/index.html");
    // The live release's index.html edited in place (a hardlink: its object
    // in `objects/` is damaged with it), a file removed from v2, one added.
    let writable = |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    writable(&root.join("releases/v1"));
    writable(&root.join("releases/v1/index.html"));
    // The same length: only the hash tells the damage.
    std::fs::write(root.join("releases/v1/index.html"), "<h1>XX</h1>\n").unwrap();
    std::fs::write(root.join("releases/v1/extra.php"), "<?php").unwrap();
    writable(&root.join("releases/v2/static"));
    std::fs::remove_file(root.join("releases/v2/static/app.js")).unwrap();
    env.slipway().args(["verify", "-t", t]).fails(5);

    env.slipway()
        .args(["verify", "-t", t, "--repair"])
        .ok()
        .stderr_has("rebuilt v1")
        .stderr_has("rebuilt v2");
    // Only the damaged content was written again; what was intact is the
    // same file (in both trees: the removed app.js is linked back).
    assert_ne!(ino("releases/v1/index.html"), damaged);
    assert_eq!(ino("releases/v1/static/app.js"), intact);
    assert_eq!(ino("releases/v2/static/app.js"), intact);
    assert_eq!(ino("releases/v2/index.html"), intact2);
    assert_eq!(
        (
            crate::support::snapshot(&root.join("releases/v1")),
            crate::support::snapshot(&root.join("releases/v2")),
        ),
        trees,
        "each tree is the release's again, content and modes"
    );
    for name in ["v1", "v2"] {
        let mode = std::fs::metadata(root.join("releases").join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o555, "{name} is read-only again");
    }
    // The object behind index.html holds the release's bytes again.
    let index = std::fs::metadata(root.join("releases/v1/index.html")).unwrap();
    assert_eq!(
        std::fs::read(root.join("releases/v1/index.html")).unwrap(),
        b"<h1>v1</h1>\n"
    );
    assert!(index.permissions().mode() & 0o222 == 0, "a repaired file is read-only");
    // A repair restores bytes; it is not a push, a switch or a verdict.
    assert_eq!(current(&root), "v1");
    assert_eq!(kept(&meta("v1")), kept(&meta1));
    assert_eq!(kept(&meta("v2")), kept(&meta2));
    assert_eq!(std::fs::read(root.join(".slipway/history.jsonl")).unwrap(), history);
    let tmp = crate::support::faults::leftovers(&root);
    assert!(tmp.is_empty(), "nothing left in tmp/ but lock files: {tmp:?}");
    env.slipway().args(["verify", "-t", t]).ok();
}

#[test]
fn a_killed_activate_leaves_current_at_the_old_or_the_new_release() {
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", t]).ok();
    env.slipway().args(["push", "v2", "-t", t]).ok();
    env.slipway().args(["activate", "v1", "-t", t]).ok();
    for i in 0..12u64 {
        let target = if i % 2 == 0 { "v2" } else { "v1" };
        let mut child = env.slipway().args(["activate", target, "-t", t]).cmd.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2 + i * 3));
        let _ = child.kill();
        let _ = child.wait();
        let now = current(&root);
        assert!(now == "v1" || now == "v2");
        // the next operation reconciles and works
        env.slipway().args(["status", "-t", t]).ok();
    }
    // The last killed client's `serve` may still hold the host's lock for
    // a moment (it stops when it notices the client is gone): wait for it.
    env.slipway().args(["activate", "v2", "-t", t, "--wait", "30"]).ok();
    let hist = env.slipway().args(["history", "--json", "-t", t]).ok().json();
    assert_eq!(hist[0]["to"], "v2");
    assert_eq!(current(&root), "v2");
}

#[test]
fn activate_and_rollback_over_real_sshd() {
    let s = Scenario::new().tags(["v1", "v2"]).ssh_hosts(1).start();
    let (root, url) = (s.root(0), s.label(0));
    for v in ["v1", "v2"] {
        s.slipway().args(["deploy", v, "-t", url]).ok();
    }
    assert_eq!(current(root), "v2");
    s.slipway().args(["rollback", "-t", url]).ok();
    assert_eq!(current(root), "v1");
    let st = s.slipway().args(["status", "--json", "-t", url]).ok().json();
    assert_eq!(st[0]["host"], url);
    assert_eq!(st[0]["current"], "v1");
    s.slipway()
        .args(["activate", "v2", "-t", url, "--expect", "v2"])
        .fails(6);
    s.slipway().args(["verify", "-t", url]).ok();
}

#[test]
fn activation_sweeps_leftover_links_and_refuses_a_release_whose_push_never_finished() {
    let env = Env::new();
    releases(&env, 2);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["push", "v1", "-t", t]).ok();
    env.slipway().args(["push", "v2", "-t", t]).ok();
    // What an activation killed between its symlink and the rename leaves.
    std::os::unix::fs::symlink("releases/v2", root.join("current.crashed-1234")).unwrap();
    env.slipway().args(["activate", "v1", "-t", t]).ok();
    assert_eq!(current(&root), "v1");
    assert!(
        std::fs::symlink_metadata(root.join("current.crashed-1234")).is_err(),
        "the leftover link is swept"
    );

    // v2's push is undone the way a kill before its end leaves it: its
    // metadata without `pushed_at`, or its tree gone.
    let meta = root.join(".slipway/releases/v2.json");
    let original = std::fs::read(&meta).unwrap();
    let mut unfinished: serde_json::Value = serde_json::from_slice(&original).unwrap();
    unfinished.as_object_mut().unwrap().remove("pushed_at");
    std::fs::write(&meta, serde_json::to_vec(&unfinished).unwrap()).unwrap();
    let refused = |env: &Env| {
        let out = env.slipway().args(["activate", "v2", "-t", t]).run();
        assert_ne!(out.out.status.code(), Some(0), "{out}");
        out.one_line_error().stderr_has("release `v2` ");
        assert_eq!(current(&root), "v1", "nothing changed");
    };
    refused(&env);
    std::fs::write(&meta, &original).unwrap();
    let tree = root.join("releases/v2");
    let aside = root.join("v2-aside");
    std::fs::rename(&tree, &aside).unwrap();
    refused(&env);
    std::fs::rename(&aside, &tree).unwrap();
    env.slipway().args(["activate", "v2", "-t", t]).ok();
    assert_eq!(current(&root), "v2");
}

#[test]
fn rolling_forward_again_says_it_marks_nothing_and_a_plain_rollback_can_return() {
    let s = crate::support::Scenario::new()
        .tags(["v1", "v2", "v3"])
        .local_hosts(1)
        .start();
    for v in ["v1", "v2", "v3"] {
        s.slipway().args(["deploy", v, "-t", "prod"]).ok();
    }
    s.slipway().args(["rollback", "-t", "prod", "--to", "v1"]).ok();
    let forward = s.slipway().args(["rollback", "-t", "prod", "--to", "v2"]).ok();
    forward.stderr_has("v1 is not marked bad: v2 went live after it (rolling forward)");
    let h = s
        .slipway()
        .args(["history", "-t", "prod", "--json", "-n", "2"])
        .ok()
        .json();
    assert!(h[0]["marked_bad"].is_null(), "{h}");
    assert_eq!(h[1]["marked_bad"], "v3", "{h}");
    s.slipway().args(["rollback", "-t", "prod"]).ok();
    assert_eq!(s.current(0).as_deref(), Some("v1"));
}

#[test]
fn forget_removes_a_release_from_the_store_but_its_name_is_never_rebound() {
    let env = Env::new();
    let build = |name: &str, content: &str| {
        env.write("site/index.html", content);
        env.slipway().args(["build", "--dir", "site", "--name", name])
    };
    let v1 = build("v1", "one").ok().line();
    build("v2", "two").ok();
    build("same-as-v2", "two").ok();
    let bundles = || {
        std::fs::read_dir(env.path("store/bundles"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tar.zst"))
            .count()
    };
    assert_eq!(bundles(), 2);

    // A typo forgets nothing, not even the names before it.
    env.slipway().args(["forget", "v1", "v3"]).fails(2);
    let dry = env.slipway().args(["forget", "v1", "--dry-run", "--json"]).ok().json();
    assert_eq!(dry[0]["bundle_removed"], true, "{dry}");
    assert_eq!(bundles(), 2);

    let out = env.slipway().args(["forget", "v1", "v2"]).ok();
    assert_eq!(
        out.stdout().lines().collect::<Vec<_>>(),
        [
            format!("forgot v1 ({v1})"),
            format!(
                "forgot v2 ({}) (its bundle stays: another release uses it)",
                env.slipway().args(["inspect", "same-as-v2", "--json"]).ok().json()["id"]
                    .as_str()
                    .unwrap()
            ),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
    );
    assert_eq!(bundles(), 1);
    let names: Vec<String> = env
        .slipway()
        .args(["list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["same-as-v2"]);
    env.slipway()
        .args(["inspect", "v1"])
        .fails(2)
        .stderr_has("release `v1` was forgotten (`slipway forget`)");

    // The name stays bound to its id: another bundle under it is refused…
    build("v1", "something else")
        .fails(1)
        .stderr_has(&format!("release `v1` is already bound to {v1} in this store"));
    // …and the same bundle brings it back.
    assert_eq!(build("v1", "one").ok().line(), v1);
    env.slipway().args(["verify", "v1"]).ok();
    // (The refused build left its bundle unnamed: gc removes it.)
    env.slipway().arg("gc").ok();
    assert_eq!(bundles(), 2);
}
