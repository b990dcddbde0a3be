//! A host survives faults: kills anywhere, racing operators, a full disk,
//! network loss and a torn history — through the real binary, over a real
//! sshd where it says so. The rig is in
//! [`support::faults`](crate::support::faults).
//!
//! After every fault a host must keep its promises
//! ([`violations`](crate::support::faults::violations)):
//! `current` is absent (nothing was ever activated) or a relative symlink to
//! a complete release; no `releases/<name>` is partial; `objects/` holds
//! only content that matches its name; `verify -t` passes; after the next
//! operation the last history record's `to` is `current`; and re-running the
//! command succeeds, sending only what is missing.
//!
//! Fault points (`SLIPWAY_FAULT`, `src/host/fault.rs`) stop `serve` dead at
//! the instants random kills rarely hit. `torture` (ignored; run by
//! `scripts/torture.sh`) is the long version: hundreds of random commands
//! with random kills of the client or of the host's `serve`, fault points
//! over SSH, and rounds of racing operators.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use slipway::digest::Digest;

use crate::support::faults::{
    Kill, Op, Rig, Scratch, Tmpfs, assert_intact, current_name, disagreement, error_line, fill, json_of, kill9,
    leftovers, make_release, object_path, present, records, serve_gone, signal, wait_timeout,
};
use crate::support::sshd::{self, Sshd};
use crate::support::{Env, Scenario, noise};

// ------------------------------------------------------- fault points (local)

#[test]
fn faults_a_push_stopped_at_each_point_leaves_no_partial_release_and_a_rerun_sends_only_what_is_missing() {
    let env = Env::new();
    let v1 = make_release(&env, "v1", 8, 64 * 1024, 4, 1);
    let v2 = make_release(&env, "v2", 40, 64 * 1024, 4, 2);
    for point in ["after-objects", "before-rename", "after-publish"] {
        let root = env.path(&format!("host-{point}"));
        let t = root.to_str().unwrap();
        // On a host where nothing was ever activated, `current` stays absent.
        env.slipway()
            .env("SLIPWAY_FAULT", point)
            .args(["push", "v1", "-t", t])
            .fails(1);
        assert_intact(&root);
        assert!(std::fs::symlink_metadata(root.join("current")).is_err(), "{point}");
        env.slipway().args(["deploy", &v1.name, "-t", t]).ok();

        let out = env
            .slipway()
            .env("SLIPWAY_FAULT", point)
            .args(["push", "v2", "-t", t])
            .fails(1);
        out.one_line_error()
            .stderr_has(&format!("error: {t}: connection lost during the push of `v2`"))
            .stderr_has(&format!("fault injected at `{point}`"));
        assert_intact(&root);
        assert_eq!(
            current_name(&root).as_deref(),
            Some("v1"),
            "{point}: push never activates"
        );
        let visible = root.join("releases/v2").exists();
        assert_eq!(
            visible,
            point == "after-publish",
            "{point}: releases/v2 visible: {visible}"
        );
        assert_eq!(
            present(&root, &v2),
            v2.objects.len(),
            "{point}: every object was committed"
        );

        // The re-run sends only what is missing: nothing but the manifest.
        let out = env.slipway().args(["push", "v2", "--json", "-t", t]).ok();
        let report = &json_of(&out)[0];
        assert_eq!(report["bytes_needed"], 0, "{point}: {out}");
        assert_eq!(report["objects_reused"], v2.objects.len() as u64, "{point}: {out}");
        assert!(report["bytes_sent"].as_u64().unwrap() < 16 * 1024, "{point}: {out}");
        let mode = std::fs::metadata(root.join("releases/v2"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o555, "{point}: releases/v2 is read-only again");
        assert!(leftovers(&root).is_empty(), "{point}: {:?}", leftovers(&root));
        assert_intact(&root);
        env.slipway().args(["verify", "-t", t]).ok();
    }
}

#[test]
fn faults_an_activation_or_rollback_stopped_at_each_point_is_finished_and_switched_back() {
    let env = Env::new();
    for (i, name) in ["v1", "v2", "v3"].iter().enumerate() {
        make_release(&env, name, 2, 1024, 1, i as u64 + 1);
    }
    let tos = |root: &Path| -> Vec<String> {
        records(root)
            .iter()
            .map(|r| r["to"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let bad = |t: &str| -> Vec<String> {
        let st = env.slipway().args(["status", "--json", "-t", t]).ok().json();
        st[0]["releases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["bad"] == true)
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    for point in ["after-rename", "before-history", "after-history"] {
        let root = env.path(&format!("host-{point}"));
        let t = root.to_str().unwrap();
        for v in ["v1", "v2", "v3"] {
            env.slipway().args(["push", v, "-t", t]).ok();
        }
        env.slipway().args(["activate", "v1", "-t", t]).ok();
        env.slipway().args(["activate", "v2", "-t", t]).ok();

        // serve dies once, after `current` moved: the client cannot know
        // whether the switch happened, so it connects again, finds the host
        // on v3 (finishing the crashed switch's record) and switches it back.
        let out = env
            .slipway()
            .env("SLIPWAY_FAULT", point)
            .env("SLIPWAY_FAULT_ONCE", env.path(&format!("{point}-1")))
            .args(["activate", "v3", "-t", t])
            .fails(1);
        let stderr = out.stderr();
        let line = error_line(&stderr).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert!(line.contains(&format!("fault injected at `{point}`")), "{out}");
        assert!(
            line.ends_with("every host that was switched is back on its previous release"),
            "{out}"
        );
        assert_intact(&root);
        assert_eq!(current_name(&root).as_deref(), Some("v2"), "{point}: {out}");
        assert_eq!(
            tos(&root),
            ["v1", "v2", "v3", "v2"],
            "{point}: the crashed switch is recorded once"
        );
        assert_eq!(records(&root)[3]["action"], "revert");
        assert!(!root.join(".slipway/intent.json").exists(), "{point}");
        assert_eq!(disagreement(&root), None, "{point}");
        assert_eq!(bad(t), ["v3"], "{point}: a release switched back from is bad");
        // Re-running succeeds (and clears the mark).
        env.slipway().args(["activate", "v3", "-t", t]).ok();
        assert!(bad(t).is_empty());

        // The same for a rollback: the crashed rollback (v3 -> v2) is
        // recorded, then the revert to where the host was.
        env.slipway()
            .env("SLIPWAY_FAULT", point)
            .env("SLIPWAY_FAULT_ONCE", env.path(&format!("{point}-2")))
            .args(["rollback", "-t", t])
            .fails(1)
            .stderr_has(&format!("fault injected at `{point}`"));
        assert_intact(&root);
        assert_eq!(current_name(&root).as_deref(), Some("v3"), "{point}");
        assert_eq!(tos(&root)[5..], ["v2", "v3"], "{point}");
        assert_eq!(disagreement(&root), None, "{point}");
        // Re-running succeeds, and repeated rollbacks walk back (v3 -> v2 -> v1).
        env.slipway().args(["rollback", "-t", t]).ok();
        assert_eq!(current_name(&root).as_deref(), Some("v2"), "{point}");
        env.slipway().args(["rollback", "-t", t]).ok();
        assert_eq!(current_name(&root).as_deref(), Some("v1"), "{point}: walked back");
        assert_eq!(disagreement(&root), None, "{point}");
        env.slipway().args(["verify", "-t", t]).ok();
        let leftover: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("current."))
            .collect();
        assert!(leftover.is_empty(), "{point}: `current.*` leftovers are swept");
    }
}

#[test]
fn faults_a_prune_stopped_mid_removal_is_finished_by_the_next_prune() {
    let env = Env::new();
    for (i, name) in ["v1", "v2", "v3", "v4"].iter().enumerate() {
        make_release(&env, name, 3, 4096, 1, i as u64 + 1);
    }
    let root = env.path("host");
    let t = root.to_str().unwrap();
    for v in ["v1", "v2", "v3", "v4"] {
        env.slipway().args(["deploy", v, "-t", t]).ok();
    }
    env.slipway()
        .env("SLIPWAY_FAULT", "mid-prune")
        .args(["prune", "--keep", "0", "-t", t])
        .fails(1)
        .one_line_error()
        .stderr_has("fault injected at `mid-prune`");
    assert_intact(&root);
    assert!(!root.join("releases/v1").exists());
    assert_eq!(current_name(&root).as_deref(), Some("v4"));
    env.slipway().args(["verify", "-t", t]).ok();
    let out = env.slipway().args(["prune", "--keep", "0", "-t", t]).ok();
    assert!(out.stdout().contains("v2"), "{out}");
    let st = env.slipway().args(["status", "--json", "-t", t]).ok().json();
    let names: Vec<&str> = st[0]["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["v3", "v4"], "{st}");
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    assert_intact(&root);
    env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current_name(&root).as_deref(), Some("v3"));
}

#[test]
fn faults_a_fleet_host_lost_mid_activation_is_checked_again_and_switched_back() {
    let s = Scenario::new().local_hosts(2).start();
    make_release(&s.env, "v1", 2, 1024, 1, 1);
    make_release(&s.env, "v2", 2, 1024, 1, 2);
    let (a, b) = (s.root(0), s.root(1));
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // b's serve dies right after renaming `current`: the client cannot know
    // whether b switched; all or nothing means it must look and switch b back.
    let fired = s.env.path("fault-fired");
    let out = s
        .slipway()
        .env("SLIPWAY_FAULT", format!("before-history@{}", b.display()))
        .env("SLIPWAY_FAULT_ONCE", &fired)
        .args(["deploy", "v2", "-t", "prod"])
        .fails(1);
    assert!(fired.exists(), "the fault point was reached: {out}");
    let stderr = out.stderr();
    let line = error_line(&stderr).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(line.contains(&format!("activation failed on {}", b.display())), "{out}");
    assert!(
        line.ends_with("every host that was switched is back on its previous release"),
        "{out}"
    );
    for root in [&a, &b] {
        assert_intact(root);
        assert_eq!(current_name(root).as_deref(), Some("v1"), "{}: {out}", root.display());
        assert_eq!(disagreement(root), None);
    }
    let tos: Vec<String> = records(b)
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        tos,
        ["v1", "v2", "v1"],
        "b's crashed switch is recorded, then its revert"
    );
    s.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
    for root in [&a, &b] {
        assert_eq!(current_name(root).as_deref(), Some("v2"));
    }
}

#[test]
fn faults_a_switch_that_cannot_be_recorded_is_reported_as_switched_and_recorded_next_time() {
    let s = Scenario::new().local_hosts(2).start();
    make_release(&s.env, "v1", 2, 1024, 1, 1);
    make_release(&s.env, "v2", 2, 1024, 1, 2);
    let (a, b) = (s.root(0), s.root(1));
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // b renames `current`, then cannot append its history record (its disk
    // is full): it did switch, and must say so, not "nothing switched".
    let out = s
        .slipway()
        .env("SLIPWAY_FAULT", format!("enospc:before-history@{}", b.display()))
        .args(["deploy", "v2", "-t", "prod"])
        .ok();
    out.stderr_has(&format!(
        "warning: {}: switched to `v2`, but recording it failed (cannot append to `{}`: no space left on device); \
         the next command that takes this host's lock records it (free space first",
        b.display(),
        b.join(".slipway/history.jsonl").display()
    ));
    for root in [&a, &b] {
        assert_eq!(current_name(root).as_deref(), Some("v2"), "{}: {out}", root.display());
    }
    let tos = |root: &Path| -> Vec<String> {
        records(root)
            .iter()
            .map(|r| r["to"].as_str().unwrap().to_string())
            .collect()
    };
    // The deploy's own next step under the lock (its prune) recorded it,
    // once, from the intent.
    assert_eq!(tos(b), ["v1", "v2"]);
    assert!(!b.join(".slipway/intent.json").exists());
    let out = s.slipway().args(["rollback", "-t", "prod"]).ok();
    // A switch that had room says nothing about the disk.
    assert!(!out.stderr().contains("warning"), "{out}");
    for root in [&a, &b] {
        assert_eq!(current_name(root).as_deref(), Some("v1"));
        assert_eq!(tos(root), ["v1", "v2", "v1"], "{}", root.display());
        assert_intact(root);
    }
    // The rename done, its fsync failing: switched too, and said so.
    let out = s
        .slipway()
        .env("SLIPWAY_FAULT", format!("enospc:after-rename@{}", b.display()))
        .args(["deploy", "v2", "-t", "prod"])
        .ok();
    out.stderr_has(&format!(
        "warning: {}: switched to `v2`, but recording it failed (cannot fsync `{}`: no space left on device)",
        b.display(),
        b.display()
    ));
    for root in [&a, &b] {
        assert_eq!(current_name(root).as_deref(), Some("v2"), "{}: {out}", root.display());
        assert_eq!(tos(root), ["v1", "v2", "v1", "v2"], "{}", root.display());
        assert_intact(root);
    }
}

// --------------------------------------------------------- torn history

#[test]
fn faults_a_torn_history_line_is_reported_and_never_blocks_activation_or_rollback() {
    let env = Env::new();
    for (i, name) in ["v1", "v2", "v3"].iter().enumerate() {
        make_release(&env, name, 1, 100, 0, i as u64 + 1);
    }
    let root = env.path("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();
    env.slipway().args(["deploy", "v2", "-t", t]).ok();
    // A write torn by a crash: half a record, no newline.
    let history = root.join(".slipway/history.jsonl");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap()
        .write_all(br#"{"time":"2026-05-01T10:00:00.000Z","actor":"op@lap"#)
        .unwrap();

    let st = env.slipway().args(["status", "--json", "-t", t]).ok().json();
    assert_eq!(st[0]["current"], "v2");
    let warnings = st[0]["warnings"].to_string();
    assert!(warnings.contains("line 3") && warnings.contains("torn"), "{st}");
    let text = env.slipway().args(["status", "-t", t]).ok();
    assert!(text.stdout().contains("warning"), "{text}");
    let hist = env.slipway().args(["history", "-t", t]).ok();
    hist.stderr_has("line 3: unreadable record skipped");

    env.slipway().args(["deploy", "v3", "-t", t]).ok();
    assert_eq!(current_name(&root).as_deref(), Some("v3"));
    // Zeros, as some file systems leave after a crash, then a rollback.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap()
        .write_all(&[0u8; 16])
        .unwrap();
    env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current_name(&root).as_deref(), Some("v2"));

    // Every record starts on its own line; the damage stays on its own lines.
    let bytes = std::fs::read(&history).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let parsed: Vec<bool> = lines
        .iter()
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok())
        .collect();
    assert_eq!(
        parsed,
        vec![true, true, false, true, false, true],
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let hist = env.slipway().args(["history", "--json", "-t", t]).ok();
    let json = hist.json();
    let tos: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["to"].as_str().unwrap())
        .collect();
    assert_eq!(tos, vec!["v2", "v3", "v2", "v1"], "{hist}");
    hist.stderr_has("line 3").stderr_has("line 5");
    env.slipway().args(["verify", "-t", t]).ok();
}

// ------------------------------------------------------------- disk full

/// Whether this run may mount a tmpfs (root); under CI it must, elsewhere
/// `test` is skipped, loudly.
fn can_mount(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let msg = format!("{test} needs root to mount a tmpfs (run the suite as root, as CI does)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    false
}

/// Start `push REL` to `root` (stderr to `err`) and stop the client
/// (SIGSTOP) as soon as the host writes the release's content; the caller
/// sends SIGCONT.
fn push_stopped_while_writing(env: &Env, rel: &str, root: &Path, err: &Path) -> std::process::Child {
    let mut child = env
        .slipway()
        .args(["push", rel, "-t"])
        .arg(root)
        .cmd
        .stderr(File::create(err).unwrap())
        .spawn()
        .unwrap();
    let incoming = root.join(format!(".slipway/tmp/{rel}.incoming"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !incoming.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was stopped"
        );
        assert!(Instant::now() < deadline, "the push never started writing");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child.id(), Signal::STOP);
    child
}

/// A directory that appears at `releases/<name>` while the release is
/// being staged (someone's `mkdir`, another tool) is left as it is: the
/// push fails naming it, and binds nothing to it, so the next push refuses
/// that directory instead of calling it staged, and nothing activates it.
#[test]
fn faults_a_directory_that_appears_while_staging_is_left_alone_and_never_taken_for_the_release() {
    let env = Env::new();
    make_release(&env, "v1", 30, 1 << 20, 0, 1);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    let err = env.path("push.err");
    // Once the content is arriving (the name's checks are behind it), the
    // client stops sending, and the directory appears.
    let mut child = push_stopped_while_writing(&env, "v1", &root, &err);
    let releases = root.join("releases");
    let mode = std::fs::metadata(&releases).unwrap().permissions().mode();
    std::fs::set_permissions(&releases, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(releases.join("v1")).unwrap();
    std::fs::write(releases.join("v1/mine.txt"), "not a release").unwrap();
    std::fs::set_permissions(&releases, std::fs::Permissions::from_mode(mode)).unwrap();
    signal(child.id(), Signal::CONT);
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("the push hangs");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`{}` appeared while `v1` was being staged; move it away and push again",
            releases.join("v1").display()
        )),
        "{stderr}"
    );
    let left = |p: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(left(&releases.join("v1")), ["mine.txt"]);
    assert_eq!(
        std::fs::read_to_string(releases.join("v1/mine.txt")).unwrap(),
        "not a release"
    );
    assert!(
        !root.join(".slipway/releases/v1.json").exists(),
        "v1 is bound to that directory"
    );
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // The next push names the directory; nothing can activate it.
    env.slipway()
        .args(["push", "v1", "-t", t])
        .fails(1)
        .one_line_error()
        .stderr_has("exists but");
    env.slipway().args(["activate", "v1", "-t", t]).fails(1);
    assert!(!root.join("current").exists());
    // Moved away, the push goes through.
    std::fs::set_permissions(&releases, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(releases.join("v1"), env.path("mine")).unwrap();
    std::fs::set_permissions(&releases, std::fs::Permissions::from_mode(mode)).unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();
    env.slipway().args(["verify", "-t", t]).ok();
}

#[test]
fn faults_disk_full_is_one_line_naming_the_host_keeps_every_release_and_cleans_up() {
    if !can_mount("faults_disk_full") {
        return;
    }
    let env = Env::new();
    make_release(&env, "v1", 2, 1 << 20, 0, 1);
    make_release(&env, "v2", 30, 1 << 20, 0, 2);
    make_release(&env, "v3", 6000, 100, 0, 3);
    let mnt = env.path("mnt");
    let disk = Tmpfs::mount(&mnt, "20m");
    let root = mnt.join("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();

    // Does not fit: refused up front, in one line naming the host.
    env.slipway()
        .args(["push", "v2", "-t", t])
        .fails(1)
        .one_line_error()
        .stderr_has(&format!("error: {t}: no space for release `v2`"));
    let intact = |when: &str| {
        assert_intact(&root);
        assert_eq!(current_name(&root).as_deref(), Some("v1"), "{when}");
        assert!(leftovers(&root).is_empty(), "{when}: {:?}", leftovers(&root));
        assert!(!root.join("releases/v2").exists(), "{when}");
        env.slipway().args(["verify", "-t", t]).ok();
    };
    intact("refused up front");

    // Fits when the push starts, but the disk fills while it writes.
    disk.resize("48m");
    let err = env.path("push-v2.err");
    let mut child = push_stopped_while_writing(&env, "v2", &root, &err);
    let filler = mnt.join("filler");
    fill(&filler);
    signal(child.id(), Signal::CONT);
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("the push hangs on a full disk");
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("error: {t}: ")), "{stderr}");
    assert!(stderr.contains("no space"), "{stderr}");
    intact("filled while writing");

    // Many small files: their contents are small, their blocks are not.
    std::fs::remove_file(&filler).unwrap();
    env.slipway().args(["push", "v2", "-t", t]).ok();
    env.slipway()
        .args(["push", "v3", "-t", t])
        .fails(1)
        .one_line_error()
        .stderr_has(&format!("error: {t}: no space for release `v3`"));
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));

    // Room again: the pushes succeed and everything verifies.
    disk.resize("96m");
    env.slipway().args(["push", "v3", "-t", t]).ok();
    env.slipway().args(["activate", "v2", "-t", t]).ok();
    assert_intact(&root);
    env.slipway().args(["verify", "-t", t]).ok();
    drop(disk);
}

#[test]
fn faults_a_full_disk_still_rolls_back_and_answers_read_only_commands() {
    if !can_mount("faults_a_full_disk") {
        return;
    }
    let env = Env::new();
    make_release(&env, "v1", 2, 1 << 20, 0, 1);
    make_release(&env, "v2", 2, 1 << 20, 0, 2);
    make_release(&env, "v3", 1, 100_000, 0, 3);
    let mnt = env.path("mnt");
    let disk = Tmpfs::mount(&mnt, "20m");
    let root = mnt.join("host");
    let t = root.to_str().unwrap();
    env.slipway().args(["deploy", "v1", "-t", t]).ok();
    env.slipway().args(["deploy", "v2", "-t", t]).ok();
    // Someone else's data takes every last block.
    fill(&mnt.join("filler"));

    // Reading changes nothing, so it works.
    env.slipway().args(["status", "-t", t]).ok();
    env.slipway().args(["history", "-t", t]).ok();
    env.slipway().args(["prune", "--dry-run", "--keep", "1", "-t", t]).ok();
    // The way back works, and is recorded.
    let out = env.slipway().args(["rollback", "-t", t]).ok();
    assert_eq!(current_name(&root).as_deref(), Some("v1"), "{out}");
    out.stderr_has("used the space slipway keeps for the way back");
    assert!(!root.join(".slipway/reserve").exists());
    let hist = env.slipway().args(["history", "--json", "-t", t]).ok().json();
    assert_eq!(hist[0]["action"], "rollback", "{hist:#}");
    assert_eq!(hist[0]["to"], "v1", "{hist:#}");
    // What needs room fails in one line that says what to do, and doing
    // it makes the room.
    let out = env.slipway().args(["push", "v3", "-t", t]).fails(1);
    let err = out.one_line_error().stderr();
    let (_, rest) = err
        .split_once("`slipway prune --keep ")
        .unwrap_or_else(|| panic!("no prune advice: {err}"));
    let keep = rest.split(' ').next().unwrap();
    assert!(rest.starts_with(&format!("{keep} -t TARGET` frees ")), "{err}");
    assert!(rest.contains(" frees "), "{err}");
    assert_intact(&root);
    env.slipway().args(["prune", "--keep", keep, "-t", t]).ok();
    env.slipway().args(["push", "v3", "-t", t]).ok();
    // The reserve is back for the next time.
    assert_eq!(std::fs::metadata(root.join(".slipway/reserve")).unwrap().len(), 1 << 20);
    assert_intact(&root);
    drop(disk);
}

// ------------------------------------------------- kills over a real sshd

#[test]
fn faults_kill_9_of_the_client_or_of_serve_over_sshd_loses_nothing() {
    let mut rig = Rig::new(4, 400, 8 * 1024);
    // One clean deploy to learn how long things take.
    rig.round(&Op::Deploy(0), Kill::None);
    let plan = [
        (Op::Deploy(1), "client"),
        (Op::Push(2), "serve"),
        (Op::Deploy(2), "serve"),
        (Op::Rollback(String::new()), "client"),
        (Op::Deploy(3), "client"),
    ];
    for (op, who) in plan {
        let op = match op {
            Op::Rollback(_) => Op::Rollback(rig.status()["previous"].as_str().unwrap().to_string()),
            other => other,
        };
        let at = rig.moment(&op, 70);
        let kill = if who == "client" {
            Kill::Client(at)
        } else {
            Kill::Serve(at)
        };
        rig.round(&op, kill);
    }
    eprintln!("{}", rig.summary());
    assert!(rig.stats.violations.is_empty(), "{:#?}", rig.stats.violations);
    assert!(rig.stats.client_kills + rig.stats.serve_kills >= 2, "{}", rig.summary());
}

#[test]
fn faults_racing_operators_over_sshd_each_succeed_once_or_exit_4() {
    let mut rig = Rig::new(3, 2, 1024);
    for i in 0..3 {
        rig.round(&Op::Deploy(i), Kill::None);
    }
    rig.race(8);
    eprintln!("{}", rig.summary());
    assert!(rig.stats.violations.is_empty(), "{:#?}", rig.stats.violations);
    assert!(rig.stats.racing_ok >= 1);
}

// --------------------------------------------------------- network loss

#[test]
fn faults_network_loss_mid_push_fails_fast_naming_host_and_phase_and_a_rerun_resumes() {
    let host = Sshd::start();
    let env = Env::new();
    // 4000 files of 8 KiB: the host commits objects in groups of 2000.
    let big = make_release(&env, "big", 4000, 8 * 1024, 0, 7);
    let bundle = env.slipway().args(["inspect", "big", "--json"]).ok().json()["compressed_size"]
        .as_u64()
        .unwrap();
    let scratch = Scratch::new();
    let root = scratch.path("srv/app");
    let url = host.url(&root);
    let err = env.path("push.err");
    // Objects arrive in manifest (path) order, in groups of 2000: this one closes the first group.
    let mut order: Vec<(String, String)> = (0..4000)
        .map(|i| {
            (
                format!("d{}/f{i}", i % 32),
                Digest::of(&noise(8 * 1024, 7 * 1_000_003 + i)).hex(),
            )
        })
        .collect();
    order.sort();
    let last_of_group = object_path(&root, &order[1999].1);
    // The host writes each file into the tree it builds, and links whole
    // groups into `objects/` from another thread, possibly after the rest
    // has arrived. So the client is paused once the first group is handed
    // over (a file 100 after it is written), the connection dropped once
    // that group is linked, and the client let go.
    let written = root.join(".slipway/tmp/big.partial").join(&order[2100].0);
    let mut child = env
        .slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "big", "-t", &url])
        .cmd
        .stdout(Stdio::null())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !written.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before the network could fail"
        );
        assert!(Instant::now() < deadline, "the push never got that far");
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(child.id(), Signal::STOP);
    while !last_of_group.exists() {
        assert!(Instant::now() < deadline, "the first group was never linked");
        std::thread::sleep(Duration::from_millis(2));
    }
    host.kill_sessions();
    signal(child.id(), Signal::CONT);
    let dropped = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(60)).unwrap_or_else(|| {
        kill9(child.id());
        panic!("the client hangs after the connection dropped")
    });
    let took = dropped.elapsed();
    let stderr = std::fs::read_to_string(&err).unwrap();
    eprintln!(
        "network loss noticed after {:.2} s: {}",
        took.as_secs_f64(),
        stderr.trim()
    );
    assert!(
        took < Duration::from_secs(12),
        "the client took {took:?} to notice: {stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {url}: connection lost during the push of `big`")),
        "{stderr}"
    );
    assert!(serve_gone(&host, Duration::from_secs(10)));
    assert_intact(&root);
    assert!(!root.join("releases/big").exists());
    let kept = present(&root, &big);
    assert!((2000..4000).contains(&kept), "{kept} objects committed before the loss");

    let out = env
        .slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "big", "--json", "-t", &url])
        .ok();
    let report = &json_of(&out)[0];
    assert_eq!(report["objects_reused"], kept as u64, "{out}");
    let sent = report["bytes_sent"].as_u64().unwrap();
    let missing = bundle * (4000 - kept as u64) / 4000;
    eprintln!("the re-run reused {kept} objects and sent {sent} of {bundle} bytes");
    assert!(
        sent < bundle && sent < missing + bundle / 20,
        "the re-run sent {sent} bytes for the {} missing objects (bundle: {bundle}): {out}",
        4000 - kept
    );
    assert_intact(&root);
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["verify", "-t", &url])
        .ok();
}

#[test]
fn faults_a_stalled_connection_fails_after_three_missed_keepalives_and_a_rerun_succeeds() {
    let host = Sshd::start();
    let env = Env::new();
    make_release(&env, "big", 200, 64 * 1024, 0, 9);
    let scratch = Scratch::new();
    let root = scratch.path("srv/app");
    let url = host.url(&root);
    env.write(
        "slipway.toml",
        format!("[targets.far]\nhosts = [\"{url}\"]\nconnect_timeout = \"2s\"\n"),
    );
    let err = env.path("push.err");
    let mut child = env
        .slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "big", "-t", "far"])
        .cmd
        .stdout(Stdio::null())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let incoming = root.join(".slipway/tmp/big.incoming");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !incoming.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before the link could stall"
        );
        assert!(Instant::now() < deadline, "the push never started sending");
        std::thread::sleep(Duration::from_millis(1));
    }
    // The host stops answering without closing anything (a dead link, a hung host).
    let stalled = sshd::descendants(host.pid());
    for pid in &stalled {
        signal(*pid, Signal::STOP);
    }
    let since = Instant::now();
    let status = wait_timeout(&mut child, Duration::from_secs(60));
    let took = since.elapsed();
    for pid in &stalled {
        kill9(*pid);
    }
    let status = status.unwrap_or_else(|| {
        kill9(child.id());
        panic!("the client hangs on a stalled connection")
    });
    let stderr = std::fs::read_to_string(&err).unwrap();
    eprintln!(
        "stalled link noticed after {:.2} s: {}",
        took.as_secs_f64(),
        stderr.trim()
    );
    // `connect_timeout = "2s"`: a keepalive every second (a third of it,
    // at least 1 s, docs/ssh.md), given up after 3 unanswered, so 3-4 s;
    // 2 s more for a loaded machine.
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "took {took:?}: {stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {url}: connection lost during the push of `big`")),
        "{stderr}"
    );
    assert!(serve_gone(&host, Duration::from_secs(10)));
    assert_intact(&root);
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "big", "-t", "far"])
        .ok();
    assert_intact(&root);
}

// ------------------------------------------------------------- torture

/// `scripts/torture.sh`: `SLIPWAY_TORTURE_ROUNDS` (default 200) random
/// commands with random kills, fault points over SSH and racing operators
/// (`SLIPWAY_TORTURE_OPERATORS`, default 8, every 20 rounds); prints the
/// figures and fails on any invariant violation.
#[test]
#[ignore = "long: run through scripts/torture.sh"]
fn torture() {
    let rounds: usize = std::env::var("SLIPWAY_TORTURE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let operators: usize = std::env::var("SLIPWAY_TORTURE_OPERATORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
        .max(8);
    let mut rig = Rig::new(6, 600, 16 * 1024);
    rig.round(&Op::Deploy(0), Kill::None);
    let started = Instant::now();
    while rig.stats.rounds < rounds {
        let op = rig.random_op();
        let kill = rig.random_kill(&op);
        rig.round(&op, kill);
        if rig.stats.rounds.is_multiple_of(20) {
            rig.race(operators);
            eprintln!(
                "torture: {} of {rounds} rounds, {} violations, {:.0} s",
                rig.stats.rounds,
                rig.stats.violations.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    rig.race(operators);
    let summary = format!("{}\nseconds: {:.0}", rig.summary(), started.elapsed().as_secs_f64());
    println!("\n== torture summary ==\n{summary}");
    if let Ok(path) = std::env::var("SLIPWAY_TORTURE_SUMMARY") {
        let _ = std::fs::write(path, format!("{summary}\n"));
    }
    assert!(rig.stats.violations.is_empty(), "{:#?}", rig.stats.violations);
}
