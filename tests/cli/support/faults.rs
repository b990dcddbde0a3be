//! The fault rig: releases made to measure, host roots on a RAM disk, the
//! promises a host must keep after any fault ([`violations`]), kill and
//! signal helpers, a tmpfs to fill, and [`Rig`], the campaign that runs
//! commands over a real sshd and kills the client or `serve` at random
//! moments or at fault points (`SLIPWAY_FAULT`, `src/host/fault.rs`).
//!
//! Invariant: [`violations`] reads the host's files directly, never through
//! slipway, so a broken host cannot vouch for itself; a campaign's choices
//! replay from the seed it prints (`SLIPWAY_TORTURE_SEED`).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use slipway::digest::Digest;

use super::sshd::{self, Sshd};
use super::{Cmd, Env, Outcome, bin, noise, write_file};

/// A release of the local store and the objects (sha256 hex) it needs.
#[derive(Clone)]
pub struct Rel {
    pub name: String,
    pub objects: BTreeSet<String>,
}

/// Build release `name` from `files` incompressible files of `size` bytes:
/// the first `shared` are the same in every release, the others new.
pub fn make_release(env: &Env, name: &str, files: usize, size: usize, shared: usize, seed: u64) -> Rel {
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

pub fn object_path(root: &Path, hex: &str) -> PathBuf {
    root.join(".slipway/objects").join(&hex[..2]).join(&hex[2..])
}

/// A directory for host roots on a RAM file system when there is one
/// (`/dev/shm`): a host syncs every object it receives, and deleting
/// thousands of synced files takes seconds on a disk mounted with `discard`.
pub struct Scratch(tempfile::TempDir);

impl Scratch {
    pub fn new() -> Scratch {
        let shm = Path::new("/dev/shm");
        let roomy = rustix::fs::statvfs(shm).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) > 1 << 30);
        let dir = if roomy {
            tempfile::Builder::new().prefix("slipway-faults-").tempdir_in(shm).ok()
        } else {
            None
        };
        Scratch(dir.unwrap_or_else(|| tempfile::Builder::new().prefix("slipway-faults-").tempdir().unwrap()))
    }

    pub fn path(&self, rel: &str) -> PathBuf {
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
pub fn present(root: &Path, rel: &Rel) -> usize {
    rel.objects.iter().filter(|h| object_path(root, h).exists()).count()
}

/// Every readable history record, oldest first.
pub fn records(root: &Path) -> Vec<serde_json::Value> {
    let Ok(bytes) = std::fs::read(root.join(".slipway/history.jsonl")) else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|r| r.get("to").is_some())
        .collect()
}

pub fn current_name(root: &Path) -> Option<String> {
    let link = std::fs::read_link(root.join("current")).ok()?;
    Some(link.to_string_lossy().trim_start_matches("releases/").to_string())
}

/// What is wrong with the host at `root` right after a fault (empty: nothing).
pub fn violations(root: &Path) -> Vec<String> {
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
pub fn disagreement(root: &Path) -> Option<String> {
    let current = current_name(root)?;
    let last = records(root).last().map(|r| r["to"].as_str().unwrap_or("").to_string());
    (last.as_deref() != Some(current.as_str()))
        .then(|| format!("history ends at {last:?} but `current` is `{current}`"))
}

pub fn assert_intact(root: &Path) {
    let v = violations(root);
    assert!(v.is_empty(), "the host broke its promises: {v:#?}");
}

/// Staging leftovers in `.slipway/tmp` (lock files are part of the layout).
pub fn leftovers(root: &Path) -> Vec<String> {
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
pub fn error_line(stderr: &str) -> Result<&str, String> {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match errors.as_slice() {
        [one] if last == Some(*one) => Ok(one),
        _ => Err("expected exactly one `error: ` line, last".to_string()),
    }
}

pub fn json_of(out: &Outcome) -> serde_json::Value {
    serde_json::from_slice(&out.out.stdout).unwrap_or(serde_json::Value::Null)
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
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

pub fn kill9(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, Signal::KILL);
    }
}

pub fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}

/// The `slipway serve` processes the host's sshd runs right now.
pub fn serve_pids(host: &Sshd) -> Vec<u32> {
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
pub fn serve_gone(host: &Sshd, limit: Duration) -> bool {
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

// ------------------------------------------------------------- disk full

/// A tmpfs mounted for one test, unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
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
pub fn fill(path: &Path) {
    let mut f = File::create(path).unwrap();
    let buf = vec![0u8; 1 << 20];
    while f.write(&buf).is_ok_and(|n| n > 0) {}
    while f.write(&buf[..4096]).is_ok_and(|n| n > 0) {}
}

// ------------------------------------------------- kills over a real sshd

/// A host behind a throwaway sshd, releases in the store, and the figures
/// of a fault campaign.
pub struct Rig {
    env: Env,
    _scratch: Scratch,
    host: Sshd,
    root: PathBuf,
    url: String,
    releases: Vec<Rel>,
    rng: Rng,
    /// Estimated duration of each kind of command (from un-killed runs).
    took: std::collections::HashMap<&'static str, Duration>,
    pub stats: Stats,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub rounds: usize,
    pub client_kills: usize,
    pub serve_kills: usize,
    pub fault_rounds: usize,
    pub fault_points: usize,
    pub finished_before_kill: usize,
    pub reruns: usize,
    pub racing_rounds: usize,
    pub racing_operators: usize,
    pub racing_ok: usize,
    pub racing_locked: usize,
    pub violations: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Op {
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
pub enum Kill {
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
    pub fn new(n: usize, files: usize, size: usize) -> Rig {
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

    pub fn status(&self) -> serde_json::Value {
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
    pub fn round(&mut self, op: &Op, kill: Kill) {
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
    pub fn moment(&mut self, op: &Op, percent: u32) -> Duration {
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
    pub fn random_op(&mut self) -> Op {
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

    pub fn random_kill(&mut self, op: &Op) -> Kill {
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
    pub fn race(&mut self, n: usize) {
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

    pub fn summary(&self) -> String {
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
