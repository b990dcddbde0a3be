//! Issue 6, faults: kill anywhere, racing operators, disk full, network loss
//! and a torn history — through the real binary, over a real sshd where it
//! says so.
//!
//! After every fault a host must keep its promises ([`violations`]):
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

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use slipway::digest::Digest;

use crate::support::sshd::{self, Sshd};
use crate::support::{Cmd, Env, Outcome, bin, noise, write_file};

// ---------------------------------------------------------------- helpers

/// A release of the local store and the objects (sha256 hex) it needs.
#[derive(Clone)]
struct Rel {
    name: String,
    objects: BTreeSet<String>,
}

/// Build release `name` from `files` incompressible files of `size` bytes:
/// the first `shared` are the same in every release, the others new.
fn make_release(env: &Env, name: &str, files: usize, size: usize, shared: usize, seed: u64) -> Rel {
    let dir = env.path(&format!("src-{name}"));
    let mut objects = BTreeSet::new();
    let index = format!("<h1>{name}</h1>\n");
    write_file(&dir.join("index.html"), index.as_bytes());
    objects.insert(Digest::of(index.as_bytes()).hex());
    for i in 0..files {
        let s = if i < shared {
            i as u64 + 1
        } else {
            seed * 1_000_003 + i as u64
        };
        let content = noise(size, s);
        objects.insert(Digest::of(&content).hex());
        write_file(&dir.join(format!("d{}/f{i}", i % 32)), &content);
    }
    env.slipway()
        .args(["build", "--dir", &format!("src-{name}"), "--name", name])
        .ok();
    // Removed before it reaches the disk: deleting written-back files is slow
    // on file systems mounted with `discard`.
    std::fs::remove_dir_all(&dir).unwrap();
    Rel {
        name: name.to_string(),
        objects,
    }
}

fn object_path(root: &Path, hex: &str) -> PathBuf {
    root.join(".slipway/objects").join(&hex[..2]).join(&hex[2..])
}

/// A directory for host roots on a RAM file system when there is one
/// (`/dev/shm`): a host syncs every object it receives, and deleting
/// thousands of synced files takes seconds on a disk mounted with `discard`.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let roomy = rustix::fs::statvfs(shm).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) > 1 << 30);
        let dir = if roomy {
            tempfile::Builder::new().prefix("slipway-faults-").tempdir_in(shm).ok()
        } else {
            None
        };
        Scratch(dir.unwrap_or_else(|| tempfile::Builder::new().prefix("slipway-faults-").tempdir().unwrap()))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }
}

impl Drop for Scratch {
    /// Host trees are read-only: make them removable first.
    fn drop(&mut self) {
        let _ = Command::new("chmod").arg("-R").arg("u+w").arg(self.0.path()).status();
    }
}

/// How many of `rel`'s objects the host at `root` has.
fn present(root: &Path, rel: &Rel) -> usize {
    rel.objects.iter().filter(|h| object_path(root, h).exists()).count()
}

/// Every readable history record, oldest first.
fn records(root: &Path) -> Vec<serde_json::Value> {
    let Ok(bytes) = std::fs::read(root.join(".slipway/history.jsonl")) else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|r| r.get("to").is_some())
        .collect()
}

fn current_name(root: &Path) -> Option<String> {
    let link = std::fs::read_link(root.join("current")).ok()?;
    Some(link.to_string_lossy().trim_start_matches("releases/").to_string())
}

/// What is wrong with the host at `root` right after a fault (empty: nothing).
fn violations(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let incomplete = |name: &str| -> Option<String> {
        let meta = root.join(".slipway/releases").join(format!("{name}.json"));
        let Ok(bytes) = std::fs::read(&meta) else {
            return Some("no metadata".into());
        };
        let json: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(j) => j,
            Err(e) => return Some(format!("unreadable metadata: {e}")),
        };
        if json["pushed_at"].is_null() {
            return Some("its push never finished (no pushed_at)".into());
        }
        if !root.join("releases").join(name).is_dir() {
            return Some("no tree".into());
        }
        None
    };
    match std::fs::symlink_metadata(root.join("current")) {
        Err(_) => {
            if !records(root).is_empty() {
                v.push("`current` is missing although releases were activated".into());
            }
        }
        Ok(m) if !m.file_type().is_symlink() => v.push("`current` is not a symlink".into()),
        Ok(_) => {
            let target = std::fs::read_link(root.join("current")).unwrap_or_default();
            let t = target.to_string_lossy().into_owned();
            match t.strip_prefix("releases/") {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    if let Some(p) = incomplete(name) {
                        v.push(format!("`current` -> `{t}`, an incomplete release: {p}"));
                    }
                }
                _ => v.push(format!("`current` -> `{t}` is not a relative link into releases/")),
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("releases")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                v.push(format!("releases/{name} is not a directory"));
            } else if let Some(p) = incomplete(&name) {
                v.push(format!("releases/{name} is visible but partial: {p}"));
            }
        }
    }
    if let Ok(fans) = std::fs::read_dir(root.join(".slipway/objects")) {
        for fan in fans.flatten() {
            let prefix = fan.file_name().to_string_lossy().into_owned();
            for obj in std::fs::read_dir(fan.path()).into_iter().flatten().flatten() {
                let name = obj.file_name().to_string_lossy().into_owned();
                let hex = format!("{prefix}{}", name.trim_end_matches(".x"));
                match std::fs::read(obj.path()) {
                    Ok(bytes) if Digest::of(&bytes).hex() == hex => {}
                    Ok(_) => v.push(format!("object {hex} does not hold its content")),
                    Err(e) => v.push(format!("object {hex} cannot be read: {e}")),
                }
            }
        }
    }
    v
}

/// After the next operation: the last history record's `to` is `current`.
fn disagreement(root: &Path) -> Option<String> {
    let current = current_name(root)?;
    let last = records(root).last().map(|r| r["to"].as_str().unwrap_or("").to_string());
    (last.as_deref() != Some(current.as_str()))
        .then(|| format!("history ends at {last:?} but `current` is `{current}`"))
}

fn assert_intact(root: &Path) {
    let v = violations(root);
    assert!(v.is_empty(), "the host broke its promises: {v:#?}");
}

/// Staging leftovers in `.slipway/tmp` (lock files are part of the layout).
fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join(".slipway/tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

/// The one error line of a failed command's stderr (fleet commands print
/// progress lines before it).
fn error_line(stderr: &str) -> Result<&str, String> {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match errors.as_slice() {
        [one] if last == Some(*one) => Ok(one),
        _ => Err("expected exactly one `error: ` line, last".to_string()),
    }
}

fn json_of(out: &Outcome) -> serde_json::Value {
    serde_json::from_slice(&out.out.stdout).unwrap_or(serde_json::Value::Null)
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill9(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// The `slipway serve` processes the host's sshd runs right now.
fn serve_pids(host: &Sshd) -> Vec<u32> {
    sshd::descendants(host.pid())
        .into_iter()
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.len() > 1 && args[0].ends_with(b"slipway") && args[1] == b"serve" && sshd::alive(*pid)
        })
        .collect()
}

/// Wait until the host runs no `serve` (a killed client's `serve` notices
/// and stops); false if one is still there after `limit`.
fn serve_gone(host: &Sshd, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !serve_pids(host).is_empty() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A small, seedable random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn upto(&mut self, d: Duration) -> Duration {
        Duration::from_micros(self.next() % (d.as_micros() as u64).max(1))
    }
}

fn seed() -> u64 {
    std::env::var("SLIPWAY_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

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
    let env = Env::new();
    make_release(&env, "v1", 2, 1024, 1, 1);
    make_release(&env, "v2", 2, 1024, 1, 2);
    let (a, b) = (env.path("host-a"), env.path("host-b"));
    env.write(
        "slipway.toml",
        format!("[targets.prod]\nhosts = [\"{}\", \"{}\"]\n", a.display(), b.display()),
    );
    env.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // b's serve dies right after renaming `current`: the client cannot know
    // whether b switched; all or nothing means it must look and switch b back.
    let fired = env.path("fault-fired");
    let out = env
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
    let tos: Vec<String> = records(&b)
        .iter()
        .map(|r| r["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        tos,
        ["v1", "v2", "v1"],
        "b's crashed switch is recorded, then its revert"
    );
    env.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
    for root in [&a, &b] {
        assert_eq!(current_name(root).as_deref(), Some("v2"));
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

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot resize the tmpfs on {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Write zeros into `path` until the file system is full.
fn fill(path: &Path) {
    let mut f = File::create(path).unwrap();
    let buf = vec![0u8; 1 << 20];
    while f.write(&buf).is_ok_and(|n| n > 0) {}
    while f.write(&buf[..4096]).is_ok_and(|n| n > 0) {}
}

#[test]
fn faults_disk_full_is_one_line_naming_the_host_keeps_every_release_and_cleans_up() {
    if !rustix::process::geteuid().is_root() {
        let msg = "faults_disk_full needs root to mount a tmpfs (run the suite as root, as CI does)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
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
    let mut child = env
        .slipway()
        .args(["push", "v2", "-t", t])
        .cmd
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let incoming = root.join(".slipway/tmp/v2.incoming");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !incoming.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before the disk could fill"
        );
        assert!(Instant::now() < deadline, "the push never started writing");
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(child.id(), Signal::STOP);
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

// ------------------------------------------------- kills over a real sshd

/// A host behind a throwaway sshd, releases in the store, and the figures
/// of a fault campaign.
struct Rig {
    env: Env,
    _scratch: Scratch,
    host: Sshd,
    root: PathBuf,
    url: String,
    releases: Vec<Rel>,
    rng: Rng,
    /// Estimated duration of each kind of command (from un-killed runs).
    took: std::collections::HashMap<&'static str, Duration>,
    stats: Stats,
}

#[derive(Default, Debug)]
struct Stats {
    rounds: usize,
    client_kills: usize,
    serve_kills: usize,
    fault_rounds: usize,
    fault_points: usize,
    finished_before_kill: usize,
    reruns: usize,
    racing_rounds: usize,
    racing_operators: usize,
    racing_ok: usize,
    racing_locked: usize,
    violations: Vec<String>,
}

#[derive(Clone, Debug)]
enum Op {
    Deploy(usize),
    Push(usize),
    Activate(String),
    /// A plain rollback; the re-run rolls back `--to` the release it aimed at.
    Rollback(String),
    Prune(usize),
}

impl Op {
    fn kind(&self) -> &'static str {
        match self {
            Op::Deploy(_) => "deploy",
            Op::Push(_) => "push",
            Op::Activate(_) => "activate",
            Op::Rollback(_) => "rollback",
            Op::Prune(_) => "prune",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    None,
    /// kill -9 the client this long after it started.
    Client(Duration),
    /// kill -9 the host's `serve` this long after the client started (once
    /// `serve` runs).
    Serve(Duration),
    /// Stop `serve` at a fault point (set in the remote command).
    Fault(&'static str),
}

const POINTS: [&str; 8] = [
    "mid-objects",
    "after-objects",
    "before-rename",
    "after-publish",
    "after-rename",
    "before-history",
    "after-history",
    "mid-prune",
];

impl Rig {
    /// `n` releases of `files` files of `size` bytes, half of them shared.
    fn new(n: usize, files: usize, size: usize) -> Rig {
        let host = Sshd::start();
        let env = Env::new();
        let releases = (0..n)
            .map(|i| make_release(&env, &format!("r{}", i + 1), files, size, files / 2, i as u64 + 1))
            .collect();
        let scratch = Scratch::new();
        let root = scratch.path("srv/app");
        let url = host.url(&root);
        let seed = seed();
        eprintln!("fault rig: SLIPWAY_TORTURE_SEED={seed}");
        Rig {
            env,
            _scratch: scratch,
            host,
            root,
            url,
            releases,
            rng: Rng::new(seed),
            took: std::collections::HashMap::new(),
            stats: Stats::default(),
        }
    }

    fn slipway(&self) -> Cmd {
        self.env.slipway().via_ssh(self.host.ssh_config_path())
    }

    fn status(&self) -> serde_json::Value {
        let out = self.slipway().args(["status", "--json", "-t", &self.url]).run();
        json_of(&out)[0].clone()
    }

    fn args(&self, op: &Op) -> (Vec<String>, Vec<String>) {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match op {
            Op::Deploy(i) => {
                let a = s(&["deploy", &self.releases[*i].name, "--json"]);
                (a.clone(), a)
            }
            Op::Push(i) => {
                let a = s(&["push", &self.releases[*i].name, "--json"]);
                (a.clone(), a)
            }
            Op::Activate(name) => {
                let a = s(&["activate", name]);
                (a.clone(), a)
            }
            Op::Rollback(to) => (s(&["rollback"]), s(&["rollback", "--to", to])),
            Op::Prune(keep) => {
                let a = s(&["prune", "--keep", &keep.to_string()]);
                (a.clone(), a)
            }
        }
    }

    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION (round {}): {what}", self.stats.rounds);
        self.stats
            .violations
            .push(format!("round {}: {what}", self.stats.rounds));
    }

    /// Run `op`, fault it with `kill`, then check the host and re-run.
    fn round(&mut self, op: &Op, kill: Kill) {
        self.stats.rounds += 1;
        let n = self.stats.rounds;
        let (args, rerun) = self.args(op);
        let label = format!("{} with {kill:?}", args.join(" "));
        let mut cmd = self.slipway().args(&args).args(["-t", &self.url]);
        if let Kill::Fault(point) = kill {
            self.stats.fault_rounds += 1;
            // One crash: the sessions after it (a fleet switching back) run through.
            let once = self.env.path(&format!("round-{n}.fault"));
            cmd = cmd.env(
                "SLIPWAY_REMOTE_BIN",
                format!(
                    "env SLIPWAY_FAULT={point} SLIPWAY_FAULT_ONCE={} {}",
                    once.display(),
                    bin()
                ),
            );
        }
        let err_path = self.env.path(&format!("round-{n}.err"));
        let mut child = cmd
            .cmd
            .stdout(Stdio::null())
            .stderr(File::create(&err_path).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut killed_client = false;
        match kill {
            Kill::None | Kill::Fault(_) => {}
            Kill::Client(after) => {
                while started.elapsed() < after && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if child.try_wait().unwrap().is_none() {
                    kill9(child.id());
                    killed_client = true;
                    self.stats.client_kills += 1;
                } else {
                    self.stats.finished_before_kill += 1;
                }
            }
            Kill::Serve(after) => {
                let mut pids = Vec::new();
                while pids.is_empty() && child.try_wait().unwrap().is_none() {
                    pids = serve_pids(&self.host);
                    std::thread::sleep(Duration::from_millis(1));
                }
                while started.elapsed() < after && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let pids = serve_pids(&self.host);
                if child.try_wait().unwrap().is_none() && !pids.is_empty() {
                    for pid in pids {
                        kill9(pid);
                    }
                    self.stats.serve_kills += 1;
                } else {
                    self.stats.finished_before_kill += 1;
                }
            }
        }
        let Some(status) = wait_timeout(&mut child, Duration::from_secs(60)) else {
            kill9(child.id());
            let _ = child.wait();
            return self.violation(format!("{label}: the client hangs"));
        };
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        eprintln!(
            "round {n}: {label}: {} after {:.2} s{}",
            if killed_client {
                "killed".to_string()
            } else {
                format!("{status}")
            },
            started.elapsed().as_secs_f64(),
            stderr.lines().last().map(|l| format!(": {l}")).unwrap_or_default()
        );
        if let Kill::Fault(point) = kill
            && stderr.contains(&format!("fault injected at `{point}`"))
        {
            self.stats.fault_points += 1;
        }
        if !killed_client {
            match status.code() {
                Some(0) => self.remember(op, started.elapsed()),
                Some(1) => {
                    if let Err(e) = error_line(&stderr) {
                        self.violation(format!("{label}: {e}: {stderr}"));
                    }
                    if matches!(kill, Kill::None) {
                        self.violation(format!("{label}: failed without a fault: {stderr}"));
                    }
                }
                other => self.violation(format!("{label}: exit {other:?}: {stderr}")),
            }
        }
        self.check_and_rerun(op, &label, &rerun);
    }

    fn remember(&mut self, op: &Op, took: Duration) {
        let e = self.took.entry(op.kind()).or_insert(took);
        *e = (*e * 3 + took) / 4;
    }

    /// A random moment within the first `percent` of a typical run of `op`.
    fn moment(&mut self, op: &Op, percent: u32) -> Duration {
        let typical = self.took.get(op.kind()).copied().unwrap_or(Duration::from_millis(800));
        self.rng.upto(typical * percent / 100)
    }

    fn check_and_rerun(&mut self, op: &Op, label: &str, rerun: &[String]) {
        if !serve_gone(&self.host, Duration::from_secs(30)) {
            self.violation(format!("{label}: the host's serve is still running 30 s later"));
            for pid in serve_pids(&self.host) {
                kill9(pid);
            }
        }
        for v in violations(&self.root) {
            self.violation(format!("{label}: {v}"));
        }
        let out = self.slipway().args(["verify", "-t", &self.url]).run();
        if !out.out.status.success() && self.root.join(".slipway").exists() {
            self.violation(format!("{label}: verify -t fails: {out}"));
        }
        let rel = match op {
            Op::Deploy(i) | Op::Push(i) => Some(self.releases[*i].clone()),
            _ => None,
        };
        let have = rel.as_ref().map(|r| present(&self.root, r));
        let clock = Instant::now();
        let out = self.slipway().args(rerun).args(["-t", &self.url]).run();
        self.stats.reruns += 1;
        if !out.out.status.success() {
            return self.violation(format!("{label}: the re-run `{}` fails: {out}", rerun.join(" ")));
        }
        self.remember(op, clock.elapsed());
        if let Some(have) = have {
            let report = &json_of(&out)[0];
            if let Some(reused) = report["objects_reused"].as_u64()
                && reused != have as u64
            {
                self.violation(format!(
                    "{label}: the re-run reused {reused} objects but the host had {have}: it sent more than what was missing"
                ));
            }
        }
        if let Some(d) = disagreement(&self.root) {
            self.violation(format!("{label}: after the re-run: {d}"));
        }
        for v in violations(&self.root) {
            self.violation(format!("{label}: after the re-run: {v}"));
        }
    }

    /// Pick a random command that makes sense on the host now.
    fn random_op(&mut self) -> Op {
        let st = self.status();
        let complete: Vec<String> = st["releases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["complete"] == true)
                    .filter_map(|r| r["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let n = self.releases.len();
        match self.rng.below(10) {
            0..=2 => Op::Deploy(self.rng.below(n)),
            3..=4 => Op::Push(self.rng.below(n)),
            5..=6 if !complete.is_empty() => Op::Activate(complete[self.rng.below(complete.len())].clone()),
            7..=8 if st["previous"].is_string() => Op::Rollback(st["previous"].as_str().unwrap_or("").to_string()),
            9 => Op::Prune(self.rng.below(3)),
            _ => Op::Deploy(self.rng.below(n)),
        }
    }

    fn random_kill(&mut self, op: &Op) -> Kill {
        // The fault points on the way of this command.
        let points: &[&'static str] = match op {
            Op::Deploy(_) => &POINTS,
            Op::Push(_) => &POINTS[..4],
            Op::Activate(_) | Op::Rollback(_) => &POINTS[4..7],
            Op::Prune(_) => &POINTS[7..],
        };
        match self.rng.below(20) {
            0..=7 => Kill::Client(self.moment(op, 110)),
            8..=15 => Kill::Serve(self.moment(op, 110)),
            16..=18 => Kill::Fault(points[self.rng.below(points.len())]),
            _ => Kill::None,
        }
    }

    /// `n` operators activate and roll back at once: each exits 0 (one
    /// history record) or 4 (naming the holder); `current` ends at the last
    /// record's `to`.
    fn race(&mut self, n: usize) {
        let st = self.status();
        let complete: Vec<String> = st["releases"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["complete"] == true)
                    .filter_map(|r| r["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if complete.is_empty() {
            return;
        }
        self.stats.racing_rounds += 1;
        let before = records(&self.root).len();
        let children: Vec<(Child, PathBuf)> = (0..n)
            .map(|i| {
                let rel = complete[self.rng.below(complete.len())].clone();
                let args: Vec<String> = if self.rng.below(2) == 0 {
                    vec!["activate".into(), rel]
                } else {
                    vec!["rollback".into(), "--to".into(), rel]
                };
                let err = self.env.path(&format!("race-{}-{i}.err", self.stats.racing_rounds));
                let child = self
                    .slipway()
                    .args(&args)
                    .args(["-t", &self.url])
                    .cmd
                    .stdout(Stdio::null())
                    .stderr(File::create(&err).unwrap())
                    .spawn()
                    .unwrap();
                (child, err)
            })
            .collect();
        let mut ok = 0;
        for (mut child, err) in children {
            self.stats.racing_operators += 1;
            let status = wait_timeout(&mut child, Duration::from_secs(120));
            let stderr = std::fs::read_to_string(&err).unwrap_or_default();
            match status.and_then(|s| s.code()) {
                Some(0) => ok += 1,
                Some(4) if stderr.contains("is locked by") => self.stats.racing_locked += 1,
                other => self.violation(format!("racing operator: exit {other:?}: {stderr}")),
            }
        }
        self.stats.racing_ok += ok;
        let after = records(&self.root).len();
        if after != before + ok {
            self.violation(format!(
                "racing: {ok} operators succeeded but the history grew by {}",
                after as isize - before as isize
            ));
        }
        if let Some(d) = disagreement(&self.root) {
            self.violation(format!("racing: {d}"));
        }
        for v in violations(&self.root) {
            self.violation(format!("racing: {v}"));
        }
    }

    fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "rounds: {}\nkills of the client: {}\nkills of serve: {}\nfault points: {} hit in {} rounds\nrounds that finished before the kill: {}\nre-runs: {}\nracing rounds: {} ({} operators: {} succeeded, {} exited 4)\ninvariant violations: {}",
            s.rounds,
            s.client_kills,
            s.serve_kills,
            s.fault_points,
            s.fault_rounds,
            s.finished_before_kill,
            s.reruns,
            s.racing_rounds,
            s.racing_operators,
            s.racing_ok,
            s.racing_locked,
            s.violations.len()
        )
    }
}

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
fn faults_a_stalled_connection_fails_within_the_connect_timeout_and_a_rerun_succeeds() {
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
    assert!(took < Duration::from_secs(12), "took {took:?}: {stderr}");
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
