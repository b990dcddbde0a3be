//! The test harness: temp directories, git repositories with tags, and the
//! real `slipway` binary, driven the way a user drives it.
//!
//! ```ignore
//! let env = Env::new();
//! let repo = env.repo("app");
//! repo.write("index.html", "hi").commit("first").tag("v1");
//! let id = env.slipway().args(["build", "v1"]).current_dir(&repo.path).ok().line();
//! ```
//!
//! A test that needs hosts starts from a [`Scenario`] (tags, hosts over
//! sshd or local paths, `slipway.toml`). The rest is harness for one family
//! of tests each: [`sshd`] (throwaway servers), [`faults`] (the fault rig),
//! [`archive`] (hostile archives), [`docs`] (the doc runner), and for
//! services behind a proxy [`nginx`] (a throwaway nginx), [`webapp`] (the
//! web service a release ships) and [`load`] (a client counting failures);
//! for services with a database [`postgres`] (a throwaway PostgreSQL) and
//! [`dbapp`] (the web service that writes to it, with its migrations,
//! backup and intake switch); for remote stores [`s3`] (a throwaway
//! Garage or SeaweedFS, and raw access to its objects).
//!
//! Invariant: the binary a test runs sees a clean environment (no store,
//! ssh config, remote binary, AWS settings or `SOURCE_DATE_EPOCH`
//! inherited from the caller), and each test's files live in temp
//! directories of its own.

#![allow(dead_code)]

pub mod archive;
pub mod dbapp;
pub mod docs;
pub mod faults;
pub mod load;
pub mod nginx;
pub mod postgres;
pub mod s3;
pub mod scenario;
pub mod sshd;
pub mod webapp;

pub use scenario::Scenario;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// One test's world: a temp directory with a local store.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("slipway-test-")
            .tempdir()
            .expect("tempdir");
        let store = dir.path().join("store");
        Env { dir, store }
    }

    /// A path inside the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The binary, with `--store` set through the environment and a clean environment.
    pub fn slipway(&self) -> Cmd {
        let mut cmd = Command::new(bin());
        cmd.current_dir(self.dir.path())
            .env("SLIPWAY_STORE", &self.store)
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env_remove("SLIPWAY_SSH_CONFIG")
            .env_remove("SLIPWAY_REMOTE_BIN")
            .env_remove("SLIPWAY_REMOTE_PAUSE")
            .env_remove("SOURCE_DATE_EPOCH");
        for var in AWS_VARS {
            cmd.env_remove(var);
        }
        Cmd { cmd }
    }

    /// A new git repository under the test directory.
    pub fn repo(&self, name: &str) -> Repo {
        let path = self.path(name);
        std::fs::create_dir_all(&path).unwrap();
        let repo = Repo {
            path,
            clock: AtomicU64::new(0),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// Write a file (creating parents) under the test directory.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(rel);
        write_file(&p, content.as_ref());
        p
    }
}

impl Drop for Env {
    /// Host trees are read-only (0555 directories): make them removable
    /// before the temp directory goes, or a non-root run leaves them behind.
    fn drop(&mut self) {
        fn writable(dir: &Path) {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        writable(&e.path());
                    }
                }
            }
        }
        writable(self.dir.path());
    }
}

/// What slipway reads of the AWS CLI's settings (src/bucket/aws.rs): a
/// developer's own never reach a test.
pub const AWS_VARS: [&str; 11] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
];

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_slipway")
}

/// Bytes that do not compress (xorshift): sizes on the wire are
/// meaningful and transfers take real time.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write_file(p: &Path, content: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A git repository whose commits have fixed, increasing dates (stable ids).
pub struct Repo {
    pub path: PathBuf,
    clock: AtomicU64,
}

impl Repo {
    pub fn git(&self, args: &[&str]) -> String {
        let n = self.clock.load(Ordering::SeqCst);
        let date = format!("{} +0000", 1_700_000_000 + n * 60);
        let out = Command::new("git")
            .current_dir(&self.path)
            .args(args)
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", &self.path)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        write_file(&self.path.join(rel), content.as_ref());
        self
    }

    pub fn exec(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path.join(rel);
        write_file(&p, content.as_ref());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let p = self.path.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    pub fn remove(&self, rel: &str) -> &Self {
        std::fs::remove_file(self.path.join(rel)).unwrap();
        self
    }

    pub fn commit(&self, msg: &str) -> &Self {
        self.clock.fetch_add(1, Ordering::SeqCst);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", msg]);
        self
    }

    /// A lightweight tag.
    pub fn tag(&self, name: &str) -> &Self {
        self.git(&["tag", name]);
        self
    }

    /// An annotated tag.
    pub fn tag_annotated(&self, name: &str) -> &Self {
        self.git(&["tag", "-a", name, "-m", name]);
        self
    }
}

/// A command to run; `ok()`/`fails(code)` run it and assert the outcome.
pub struct Cmd {
    pub cmd: Command,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }
    pub fn current_dir(mut self, d: impl AsRef<Path>) -> Self {
        self.cmd.current_dir(d);
        self
    }
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }
    /// Reach hosts through the ssh config at `config` (e.g.
    /// [`sshd::Sshd::ssh_config_path`]), running this very binary on the host.
    pub fn via_ssh(self, config: impl AsRef<Path>) -> Self {
        self.env("SLIPWAY_SSH_CONFIG", config.as_ref())
            .env("SLIPWAY_REMOTE_BIN", bin())
    }
    /// Run under `umask mask` (through `sh`, keeping the environment,
    /// directory and arguments), to see the modes of the files it creates.
    pub fn umask(self, mask: u32) -> Self {
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        if let Some(d) = self.cmd.get_current_dir() {
            sh.current_dir(d);
        }
        Cmd { cmd: sh }
    }
    pub fn run(mut self) -> Outcome {
        let out = self.cmd.output().expect("run slipway");
        Outcome {
            desc: format!("{:?}", self.cmd),
            out,
        }
    }
    /// Run and assert exit 0.
    pub fn ok(self) -> Outcome {
        let o = self.run();
        assert!(o.out.status.success(), "expected success: {o}");
        o
    }
    /// Run and assert the exit code.
    pub fn fails(self, code: i32) -> Outcome {
        let o = self.run();
        assert_eq!(o.out.status.code(), Some(code), "expected exit {code}: {o}");
        o
    }
}

pub struct Outcome {
    pub desc: String,
    pub out: Output,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstatus: {:?}\n--- stdout\n{}--- stderr\n{}",
            self.desc,
            self.out.status.code(),
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }
}

impl Outcome {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    /// stdout, trimmed (e.g. the id printed by `build`).
    pub fn line(&self) -> String {
        self.stdout().trim().to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.out.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
    /// Assert that stderr contains `needle`.
    pub fn stderr_has(&self, needle: &str) -> &Self {
        assert!(self.stderr().contains(needle), "stderr lacks {needle:?}: {self}");
        self
    }
    /// Assert stderr is exactly one line (an error line).
    pub fn one_line_error(&self) -> &Self {
        let e = self.stderr();
        let lines: Vec<&str> = e.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected a one-line error: {self}");
        assert!(lines[0].starts_with("error: "), "{self}");
        self
    }
}

/// Every file under `root` (relative path -> contents or link target), for comparing trees.
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p).unwrap().display()));
            } else if m.is_dir() {
                out.insert(rel.clone(), "dir".into());
                walk(root, &p, out);
            } else {
                let exec = m.permissions().mode() & 0o111 != 0;
                let body = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                out.insert(rel, format!("{}{body}", if exec { "x:" } else { "" }));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// A TCP port on 127.0.0.1 that was free a moment ago (someone may take it
/// before the caller binds it: callers retry on "Address already in use").
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Poll `f` every 20 ms until it is true; panic with `what` after `secs`.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A process holding a host lock until its release file appears. Dropped
/// without [`LockHolder::wait`] (a failing test), it is released and
/// reaped, so no holder outlives its test.
pub struct LockHolder {
    child: Option<std::process::Child>,
    release: PathBuf,
}

impl LockHolder {
    /// Wait for the holder to let go (after its release file appeared).
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("waited once").wait().unwrap()
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::fs::write(&self.release, "");
            let _ = child.wait();
        }
    }
}

/// Hold `root`'s host lock from outside slipway (as `alice@laptop`) until
/// `release` exists; returns once the lock is held.
pub fn hold_lock(root: &Path, release: &Path) -> LockHolder {
    let lock = root.join(".slipway/lock");
    let info = r#"{"actor":"alice@laptop","command":"slipway activate v9","pid":1,"since":"2026-01-01T00:00:00Z"}"#;
    std::fs::write(root.join(".slipway/lock.info"), info).unwrap();
    let child = Command::new("flock")
        .arg(&lock)
        .arg("sh")
        .arg("-c")
        .arg(format!("while [ ! -e '{}' ]; do sleep 0.05; done", release.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run flock (util-linux)");
    let holder = LockHolder {
        child: Some(child),
        release: release.to_path_buf(),
    };
    wait_for(10, "flock to take the lock", || {
        Command::new("flock")
            .args(["-n", "-s"])
            .arg(&lock)
            .arg("true")
            .status()
            .is_ok_and(|s| !s.success())
    });
    holder
}

/// True when process `pid` or one of its children has `path` open (read
/// from `/proc`): a client and the `serve` it spawned, at the lock file.
pub fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(target) = std::fs::canonicalize(path) else {
        return false;
    };
    let parent = |p: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|e| {
        let p = e.file_name().to_string_lossy().into_owned();
        let ours = p.parse() == Ok(pid) || parent(&p) == Some(pid);
        ours && std::fs::read_dir(format!("/proc/{p}/fd"))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == target))
            })
            .unwrap_or(false)
    })
}

/// `UPDATE_SNAPSHOTS=1`: rewrite snapshots instead of comparing. Refused
/// under `CI=true` (`.ci/run` sets it), where a rewrite would make the
/// comparison pass whatever the output is.
pub fn update_snapshots() -> bool {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| !v.is_empty() && v != "0");
    assert!(
        !(update && std::env::var("CI").is_ok_and(|v| v == "true")),
        "UPDATE_SNAPSHOTS is set under CI=true: snapshots are compared in CI, never rewritten"
    );
    update
}
