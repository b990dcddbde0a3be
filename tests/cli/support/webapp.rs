//! The web service that service-slot tests ship inside a release tree:
//! `bin/server` ([`START`], `webapp.py`), its health check `bin/check`
//! ([`CHECK`], `webapp_check.py`), `VERSION` (the release's name) and
//! `MODE` (how it misbehaves, a [`Mode`]). Python 3 standard library only;
//! `scripts/test.sh` installs python3 (at /usr/bin, on an ssh session's PATH).
//!
//! The server listens on 127.0.0.1:`$SLIPWAY_PORT` and logs `listening on
//! PORT` to stderr; `GET /` answers `RELEASE pid=PID`, `GET /health` `ok`,
//! `POST /write` appends its body to `$APP_DATA_FILE` (else
//! `$SLIPWAY_ROOT/shared/app-data.log`) and `GET /data` returns that file.
//! `webapp.py`'s docstring is the full contract.
//!
//! [`Instance`] runs one directly (tests of the harness itself, or a
//! stand-in for an instance slipway did not start); dropping it kills it.
//!
//! ```ignore
//! let repo = env.repo("app");
//! webapp::add_to(&repo, "v1", Mode::Ok).commit("v1").tag("v1");
//! webapp::add_to(&repo, "v2", Mode::FailCheck).commit("v2, unhealthy").tag("v2");
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::Repo;

/// The server (`webapp.py`).
pub const SERVER_PY: &str = include_str!("webapp.py");
/// Its health check (`webapp_check.py`).
pub const CHECK_PY: &str = include_str!("webapp_check.py");
/// The command that starts the service, run in the release directory with
/// `SLIPWAY_PORT` set.
pub const START: &str = "bin/server";
/// The command that checks an instance, run in the release directory with
/// `SLIPWAY_PORT` set (or with the port as its argument): exit 0 when
/// `GET /health` answers 200 within 2 s, else exit 1 with one line on
/// stderr (`check: http://127.0.0.1:PORT/health answered 500`).
pub const CHECK: &str = "bin/check";

/// How the server behaves: the tree's `MODE` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serves, and is healthy.
    Ok,
    /// Serves `/`, but `/health` answers 500.
    FailCheck,
    /// Never listens; sleeps until killed.
    Hang,
    /// Prints `server: refusing to start (MODE exit)` to stderr and exits 1 at once.
    Exit,
    /// Sleeps this long before listening.
    SlowStart(Duration),
    /// Ignores SIGTERM: only SIGKILL stops it.
    IgnoreTerm,
}

impl Mode {
    /// The `MODE` file's text.
    pub fn file_text(self) -> String {
        match self {
            Mode::Ok => "ok\n".into(),
            Mode::FailCheck => "fail-check\n".into(),
            Mode::Hang => "hang\n".into(),
            Mode::Exit => "exit\n".into(),
            Mode::SlowStart(d) => format!("slow-start {}\n", d.as_secs_f64()),
            Mode::IgnoreTerm => "ignore-term\n".into(),
        }
    }
}

/// One file of the service's tree.
pub struct TreeFile {
    /// Relative to the release directory.
    pub path: &'static str,
    pub contents: String,
    pub executable: bool,
}

/// The service's files for `release` behaving as `mode`.
pub fn files(release: &str, mode: Mode) -> Vec<TreeFile> {
    vec![
        TreeFile {
            path: START,
            contents: SERVER_PY.to_string(),
            executable: true,
        },
        TreeFile {
            path: CHECK,
            contents: CHECK_PY.to_string(),
            executable: true,
        },
        TreeFile {
            path: "VERSION",
            contents: format!("{release}\n"),
            executable: false,
        },
        TreeFile {
            path: "MODE",
            contents: mode.file_text(),
            executable: false,
        },
    ]
}

/// Write the service's files into `repo`'s working tree (commit and tag
/// are the caller's).
pub fn add_to<'r>(repo: &'r Repo, release: &str, mode: Mode) -> &'r Repo {
    for f in files(release, mode) {
        if f.executable {
            repo.exec(f.path, &f.contents);
        } else {
            repo.write(f.path, &f.contents);
        }
    }
    repo
}

/// Write the service's files into the directory `dir` (created if need be).
pub fn write_tree(dir: &Path, release: &str, mode: Mode) {
    for f in files(release, mode) {
        let p = dir.join(f.path);
        super::write_file(&p, f.contents.as_bytes());
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A server run by the test from a tree written by [`write_tree`]; killed
/// (and reaped) when dropped, also when the test panics. `setpriv
/// --pdeathsig` covers a test thread that dies without unwinding.
pub struct Instance {
    child: Option<Child>,
    port: u16,
    pid: u32,
    log: tempfile::NamedTempFile,
}

impl Instance {
    /// Run `tree`'s server on `port` with `env` added to a clean
    /// environment (no `SLIPWAY_RELEASE`, `SLIPWAY_ROOT`, `APP_DATA_FILE`
    /// from the caller) and return at once: it may not be listening yet, or
    /// ever (see [`Instance::wait_listening`]).
    pub fn spawn(tree: &Path, port: u16, env: &[(&str, &str)]) -> Instance {
        let log = tempfile::Builder::new()
            .prefix("slipway-webapp-")
            .suffix(".stderr")
            .tempfile()
            .expect("temp file for the server's stderr");
        let server = tree.join(START);
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL"]).arg(&server);
            c
        } else {
            Command::new(&server)
        };
        let child = cmd
            .current_dir(tree)
            .env("SLIPWAY_PORT", port.to_string())
            .env_remove("SLIPWAY_RELEASE")
            .env_remove("SLIPWAY_ROOT")
            .env_remove("APP_DATA_FILE")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen the server's stderr file"))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): it needs python3 (scripts/test.sh installs it)",
                    server.display()
                )
            });
        Instance {
            pid: child.id(),
            child: Some(child),
            port,
            log,
        }
    }

    /// Run `tree`'s server on a free port and wait until it listens; panics
    /// (with its stderr) when it exits or does not listen within 10 s.
    pub fn start(tree: &Path) -> Instance {
        Instance::start_env(tree, &[])
    }

    /// [`Instance::start`] with `env` (as in [`Instance::spawn`]).
    pub fn start_env(tree: &Path, env: &[(&str, &str)]) -> Instance {
        // A free port can be taken by someone else before the server binds it: retry.
        for _ in 0..5 {
            let mut i = Instance::spawn(tree, super::free_port(), env);
            match i.wait_listening(Duration::from_secs(10)) {
                Ok(()) => return i,
                Err(e) if e.contains("Address already in use") => continue,
                Err(e) => panic!("the web service in {} did not start: {e}", tree.display()),
            }
        }
        panic!("the web service in {} found no free port", tree.display());
    }

    /// Wait for its `listening on PORT` line. `Err` (with its stderr) when it
    /// exits first or after `within`.
    pub fn wait_listening(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let ready = format!("listening on {}", self.port);
        loop {
            if self.stderr().contains(&ready) {
                return Ok(());
            }
            if let Some(status) = self.try_wait() {
                return Err(format!("exited with {status}: {}", self.stderr().trim()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not listening on port {} after {within:?}: {}",
                    self.port,
                    self.stderr().trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port it was given (`SLIPWAY_PORT`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:port.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Its exit status, if it has exited (reaped here).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Wait up to `within` for it to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send it `sig`, unless it has exited.
    pub fn signal(&mut self, sig: Signal) {
        // Running (not even a zombie, which try_wait would reap): the pid is still its own.
        let running = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if running && let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, sig);
        }
    }

    /// Kill it (SIGKILL) and reap it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run `tree`'s check ([`CHECK`]) against `port`, in `tree`: its exit
/// status and stderr.
pub fn check(tree: &Path, port: u16) -> (ExitStatus, String) {
    let out = Command::new(tree.join(CHECK))
        .current_dir(tree)
        .env("SLIPWAY_PORT", port.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {CHECK} in {} ({e})", tree.display()));
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}
