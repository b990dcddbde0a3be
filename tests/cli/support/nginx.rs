//! A throwaway nginx on 127.0.0.1, started by the test itself: the proxy
//! in front of service slots.
//!
//! Each [`Nginx`] has its own prefix directory holding its `nginx.conf`,
//! pid file, error log (level `notice`, so reloads show) and every temp
//! path; it keeps no access log. It listens on a free loopback port and
//! proxies `location /` to `upstream app { include UPSTREAM; }`, where the
//! upstream file is the test's (one line, `server 127.0.0.1:8081;`, written
//! by slipway or by [`write_upstream`]). `location = /__nginx` answers
//! nginx itself (readiness); every proxied response carries `X-Upstream`
//! (the address that answered). It runs as the user running the tests:
//! `user` names that user when it is root (nginx's workers would be
//! `nobody` otherwise), and is left out for anyone else (nginx ignores it,
//! with a warning).
//!
//! [`Nginx::start_with_pause_flag`] adds a pause: while the flag file
//! exists, nginx answers every request that may write (any method but
//! `GET`, `HEAD` and `OPTIONS`) itself, `503` with `Retry-After: 1` and the
//! body `paused\n`, never forwarding it; reads still pass through. It
//! checks the file on every request (a `stat`; no open-file cache), so
//! creating or removing it takes effect at once, without a reload. The
//! check is the core rewrite module's `if (-f …)`, which every nginx build
//! has (nginx-light included).
//!
//! [`Nginx::reload_command`] is the shell command an operator would
//! configure: validate (`-t`), then signal the master (`-s reload`). The
//! signal only starts the reload: the master re-reads its configuration,
//! starts new workers, then tells the old ones to finish their requests and
//! stop. [`Nginx::wait_reloaded`] waits for that from the error log.
//!
//! Invariant: nginx runs in the foreground (`daemon off`) in a process
//! group of its own; dropping an [`Nginx`] (or [`Nginx::stop`]) stops the
//! master and kills the whole group, so no worker outlives its test.
//! `setpriv --pdeathsig` covers the master if the test process dies
//! without unwinding (its workers then stay until killed).
//!
//! nginx missing: [`skip_if_missing`] prints a skip banner (and the test
//! returns), except under `CI=true`, where it fails the test.
//!
//! ```ignore
//! if nginx::skip_if_missing("proxy_switch") { return; }
//! nginx::write_upstream(&upstream, a.port());
//! let nginx = Nginx::start(&env.path("nginx"), &upstream);
//! nginx::write_upstream(&upstream, b.port());
//! nginx.reload();                  // runs reload_command(), asserts success
//! nginx.wait_reloaded(1, 10);
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process, kill_process_group};

use super::load;
use super::sshd::alive;

/// The nginx binary: the Debian path first, then `PATH`.
pub fn find() -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin/nginx",
        "/usr/local/sbin/nginx",
        "/usr/local/nginx/sbin/nginx",
    ];
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
}

/// True (after a skip banner) when nginx is missing and `test` should
/// return; under `CI=true` a missing nginx fails the test instead.
pub fn skip_if_missing(test: &str) -> bool {
    if find().is_some() {
        return false;
    }
    let msg = format!("{test} needs nginx (scripts/test.sh installs it; or apt-get install nginx-light)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    true
}

/// Point `file` at 127.0.0.1:`port` (`server 127.0.0.1:PORT;`), atomically
/// (a temp file renamed over it): a reload never reads half a file.
pub fn write_upstream(file: &Path, port: u16) {
    write_atomic(file, &format!("server 127.0.0.1:{port};\n"));
}

/// Replace `file` with `text` through a temp file in the same directory.
pub fn write_atomic(file: &Path, text: &str) {
    let name = file.file_name().expect("a file name").to_string_lossy();
    let tmp = file.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, file).unwrap_or_else(|e| panic!("rename to {}: {e}", file.display()));
}

/// A running throwaway nginx. See the module docs.
pub struct Nginx {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    pid: u32,
    pause_flag: Option<PathBuf>,
}

impl Nginx {
    /// Start nginx with its prefix in `dir` (created if need be), proxying
    /// to the servers listed in `upstream_file` (an absolute path; it must
    /// exist and hold at least one `server` line). Panics, with nginx's
    /// error log, when nginx cannot start.
    pub fn start(dir: &Path, upstream_file: &Path) -> Nginx {
        Nginx::launch(dir, upstream_file, None)
    }

    /// [`Nginx::start`], refusing writes (`503`, `Retry-After: 1`) while
    /// `flag` exists (see the module docs). `flag` is an absolute path
    /// without `"`, `$`, `\` or whitespace; it need not exist yet.
    pub fn start_with_pause_flag(dir: &Path, upstream_file: &Path, flag: &Path) -> Nginx {
        assert!(
            flag.is_absolute(),
            "the pause flag must be an absolute path, got {}",
            flag.display()
        );
        let text = flag.to_string_lossy();
        assert!(
            !text.chars().any(|c| c.is_whitespace() || "\"$\\;{}".contains(c)),
            "the pause flag's path cannot go into nginx.conf as is: {text}"
        );
        Nginx::launch(dir, upstream_file, Some(flag))
    }

    fn launch(dir: &Path, upstream_file: &Path, pause_flag: Option<&Path>) -> Nginx {
        let binary = find().unwrap_or_else(|| {
            panic!("nginx not found: proxy tests need it (scripts/test.sh installs it; or apt-get install nginx-light)")
        });
        assert!(
            upstream_file.is_absolute(),
            "the upstream file must be an absolute path, got {}",
            upstream_file.display()
        );
        std::fs::create_dir_all(dir.join("tmp")).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let dir = std::fs::canonicalize(dir).expect("canonicalize the nginx dir");
        let mut nginx = Nginx {
            binary,
            dir,
            port: 0,
            child: None,
            pid: 0,
            pause_flag: pause_flag.map(Path::to_path_buf),
        };
        // A free port can be taken by someone else before nginx binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            nginx.port = super::free_port();
            nginx.write_conf(upstream_file);
            let _ = std::fs::remove_file(nginx.pid_file());
            let stderr = std::fs::File::create(nginx.dir.join("nginx.stderr")).expect("create nginx.stderr");
            let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
                let mut c = Command::new("/usr/bin/setpriv");
                c.args(["--pdeathsig", "KILL"]).arg(&nginx.binary);
                c
            } else {
                Command::new(&nginx.binary)
            };
            let child = cmd
                .args(nginx.base_args())
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx.binary.display()));
            nginx.pid = child.id();
            nginx.child = Some(child);
            match nginx.wait_ready() {
                Ok(()) => return nginx,
                Err(text) => {
                    nginx.stop();
                    if !text.contains("Address already in use") {
                        panic!("the test nginx ({}) did not start: {text}", nginx.binary.display());
                    }
                    last = text;
                }
            }
        }
        panic!("the test nginx found no free port: {last}");
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// 127.0.0.1:port.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT{path}` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its prefix directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that pauses writes while it exists, if it was started with one.
    pub fn pause_flag(&self) -> Option<&Path> {
        self.pause_flag.as_deref()
    }

    /// Its configuration file.
    pub fn conf(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    /// nginx's error log and anything it printed on stderr (for assertion messages).
    pub fn error_log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let stderr = std::fs::read_to_string(self.dir.join("nginx.stderr")).unwrap_or_default();
        format!("{log}{stderr}")
    }

    /// The shell command that validates the configuration (with the
    /// upstream file as it is now) and then asks the running master to
    /// reload it; it fails, changing nothing, when the configuration is
    /// invalid. Absolute paths throughout:
    /// `/usr/sbin/nginx -p DIR/ -c DIR/nginx.conf -e DIR/error.log -t -q && /usr/sbin/nginx … -s reload`.
    pub fn reload_command(&self) -> String {
        let base: Vec<String> = std::iter::once(self.binary.to_string_lossy().into_owned())
            .chain(self.base_args())
            .map(|a| sh_quote(&a))
            .collect();
        let base = base.join(" ");
        format!("{base} -t -q && {base} -s reload")
    }

    /// Run [`Nginx::reload_command`] through `sh`; panics when it fails.
    /// nginx reloads after this returns: see [`Nginx::wait_reloaded`].
    pub fn reload(&self) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(self.reload_command())
            .stdin(Stdio::null())
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "nginx reload failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Reloads carried out so far, from the error log: new workers started
    /// and the previous ones told to stop (they finish requests already
    /// accepted, and accept no new ones).
    pub fn reloads(&self) -> usize {
        let log = self.error_log();
        let started = log.matches(": start worker processes").count();
        let retired = log.matches(": gracefully shutting down").count();
        started.saturating_sub(1).min(retired)
    }

    /// Wait until [`Nginx::reloads`] reaches `n`; panics with the error log
    /// after `secs`.
    pub fn wait_reloaded(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.reloads() < n {
            assert!(
                Instant::now() < deadline,
                "nginx did not reload {n} times within {secs} s:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop nginx: ask the master to stop (SIGTERM: it stops its workers
    /// and exits), then kill whatever is left of its process group.
    /// Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = i32::try_from(self.pid).ok().and_then(Pid::from_raw);
        if let Some(pid) = pid {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(self.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Not reaped yet, the master keeps the group's id from being reused.
        if let Some(pid) = pid {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        let _ = child.wait();
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("nginx.pid")
    }

    /// `-p DIR/ -c CONF -e ERROR_LOG`: the error log from the first line on
    /// (before the configuration is read, nginx would write to its built-in
    /// path, which a non-root user cannot open).
    fn base_args(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            "-p".into(),
            format!("{d}/"),
            "-c".into(),
            format!("{d}/nginx.conf"),
            "-e".into(),
            format!("{d}/error.log"),
        ]
    }

    fn write_conf(&self, upstream_file: &Path) {
        let d = self.dir.display();
        let user = if rustix::process::geteuid().is_root() {
            // As root, nginx runs its workers as `nobody` unless told otherwise.
            format!("user {} {};\n", id("-un"), id("-gn"))
        } else {
            String::new()
        };
        // The pause: `$intake` is `1p` for a write while the flag exists.
        let (pause_map, pause) = match &self.pause_flag {
            None => (String::new(), String::new()),
            Some(flag) => (
                "\x20 map $request_method $intake_write {\n\
                 \x20   GET 0;\n\
                 \x20   HEAD 0;\n\
                 \x20   OPTIONS 0;\n\
                 \x20   default 1;\n\
                 \x20 }\n"
                    .to_string(),
                format!(
                    "\x20     set $intake $intake_write;\n\
                     \x20     if (-f \"{flag}\") {{\n\
                     \x20       set $intake \"${{intake}}p\";\n\
                     \x20     }}\n\
                     \x20     if ($intake = 1p) {{\n\
                     \x20       add_header Retry-After 1 always;\n\
                     \x20       return 503 \"paused\\n\";\n\
                     \x20     }}\n",
                    flag = flag.display()
                ),
            ),
        };
        let text = format!(
            "# Written by tests/cli/support/nginx.rs: a throwaway nginx for one test.\n\
             daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             {user}\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log notice;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
             \x20 access_log off;\n\
             \x20 default_type text/plain;\n\
             \x20 client_body_temp_path {d}/tmp/client_body;\n\
             \x20 proxy_temp_path {d}/tmp/proxy;\n\
             \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n\
             \x20 uwsgi_temp_path {d}/tmp/uwsgi;\n\
             \x20 scgi_temp_path {d}/tmp/scgi;\n\
             {pause_map}\
             \x20 upstream app {{\n\
             \x20   include {upstream};\n\
             \x20 }}\n\
             \x20 server {{\n\
             \x20   listen 127.0.0.1:{port};\n\
             \x20   server_name localhost;\n\
             \x20   location = /__nginx {{\n\
             \x20     return 200 \"nginx {d}\\n\";\n\
             \x20   }}\n\
             \x20   location / {{\n\
             {pause}\
             \x20     proxy_pass http://app;\n\
             \x20     proxy_http_version 1.1;\n\
             \x20     proxy_connect_timeout 2s;\n\
             \x20     proxy_send_timeout 10s;\n\
             \x20     proxy_read_timeout 10s;\n\
             \x20     add_header X-Upstream $upstream_addr always;\n\
             \x20   }}\n\
             \x20 }}\n\
             }}\n",
            upstream = upstream_file.display(),
            port = self.port,
        );
        std::fs::write(self.conf(), text).expect("write nginx.conf");
    }

    /// Ready: the pid file names our master and nginx itself answers `/__nginx`.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let want = format!("nginx {}\n", self.dir.display());
        loop {
            // Not reaped here (a zombie is not alive): stop() may still signal its group.
            if !alive(self.pid) {
                return Err(format!("exited: {}", self.error_log().trim()));
            }
            let pid = std::fs::read_to_string(self.pid_file()).unwrap_or_default();
            if pid.trim() == self.pid.to_string()
                && load::get(self.addr(), "/__nginx").is_ok_and(|r| r.status == 200 && r.body == want.as_bytes())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not answering on port {} after 15 s: {}",
                    self.port,
                    self.error_log().trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `s` as one shell word.
fn sh_quote(s: &str) -> String {
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:=".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
