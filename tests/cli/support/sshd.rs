//! A throwaway OpenSSH server on 127.0.0.1, started by the test itself.
//!
//! Each [`Sshd`] has its own directory with a host key, a client key,
//! `authorized_keys`, an `sshd_config` and a client ssh config holding one
//! `Host` alias (`sshhost-<n>`) with the host key pre-recorded and
//! `StrictHostKeyChecking yes`, so nothing prompts and nothing outside the
//! test directory is read. Several servers can run at once (multi-host
//! tests); [`write_ssh_config`] puts their aliases in one file.
//!
//! Invariant: dropping an [`Sshd`] (or [`Sshd::stop`]) kills the listener
//! *and* every per-connection process it forked, so tests leave no sshd
//! behind; `setpriv --pdeathsig` covers a test thread that dies without
//! unwinding. If sshd cannot start, the test fails with the reason — SSH
//! tests never skip.
//!
//! ```ignore
//! let host = Sshd::start();
//! let out = env.slipway().via_ssh(host.ssh_config_path())
//!     .args(["push", "v1", "-t", &host.url("/srv/app")]).ok();
//! host.kill_sessions();            // fault injection: drop every connection
//! drop(host);                      // listener and sessions are gone
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

static NEXT_ALIAS: AtomicU32 = AtomicU32::new(1);

/// Options for [`Sshd`] before it starts.
#[derive(Default)]
pub struct SshdBuilder {
    key_options: Option<String>,
    set_env: Vec<String>,
}

impl SshdBuilder {
    /// Options in front of the client key in `authorized_keys`, e.g.
    /// `restrict,command="slipway serve --root /srv/app"`.
    pub fn key_options(mut self, options: &str) -> Self {
        self.key_options = Some(options.to_string());
        self
    }

    /// An environment variable for every session (`SetEnv NAME=VALUE`), e.g.
    /// `PATH=/fake/bin:/usr/bin:/bin` to put stand-ins for host commands first.
    pub fn set_env(mut self, name_value: &str) -> Self {
        self.set_env.push(name_value.to_string());
        self
    }

    /// Start the server; panics (failing the test) when it cannot.
    pub fn start(self) -> Sshd {
        Sshd::start_with(self)
    }
}

/// A running throwaway sshd. See the module docs.
pub struct Sshd {
    dir: tempfile::TempDir,
    alias: String,
    port: u16,
    user: String,
    child: Option<Child>,
    pid: u32,
    client_key: PathBuf,
    client_pub: String,
    host_pub: String,
    set_env: Vec<String>,
}

impl Sshd {
    /// Start a server with default options.
    pub fn start() -> Sshd {
        SshdBuilder::default().start()
    }

    /// Start a server with options (`Sshd::builder().key_options("...").start()`).
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    fn start_with(opts: SshdBuilder) -> Sshd {
        let sshd = find_sshd();
        ensure_privsep_dir();
        let dir = tempfile::Builder::new()
            .prefix("slipway-sshd-")
            .tempdir()
            .expect("tempdir for sshd");
        let host_pub = keygen(&dir.path().join("host_ed25519"));
        let client_key = dir.path().join("client_ed25519");
        let client_pub = keygen(&client_key);
        let user = current_user();
        let alias = format!("sshhost-{}", NEXT_ALIAS.fetch_add(1, Ordering::SeqCst));
        let mut sshd_ = Sshd {
            dir,
            alias,
            port: 0,
            user,
            child: None,
            pid: 0,
            client_key,
            client_pub,
            host_pub,
            set_env: opts.set_env,
        };
        sshd_.authorize(opts.key_options.as_deref());

        // A free port can be taken by someone else before sshd binds it: retry.
        let mut last_log = String::new();
        for _ in 0..8 {
            let port = super::free_port();
            sshd_.port = port;
            let config = sshd_.write_sshd_config();
            let log = sshd_.dir.path().join(format!("sshd-{port}.log"));
            let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
                let mut c = Command::new("/usr/bin/setpriv");
                c.args(["--pdeathsig", "KILL"]).arg(&sshd);
                c
            } else {
                Command::new(&sshd)
            };
            let mut child = cmd
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", sshd.display()));
            match wait_listening(&mut child, &log, port) {
                Ok(()) => {
                    sshd_.pid = child.id();
                    sshd_.child = Some(child);
                    sshd_.write_client_files();
                    return sshd_;
                }
                Err(text) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !text.contains("Address already in use") {
                        panic!(
                            "the test sshd ({}) did not start: {text}\n(SSH tests need openssh-server; scripts/test.sh installs it)",
                            sshd.display()
                        );
                    }
                    last_log = text;
                }
            }
        }
        panic!("the test sshd found no free port: {last_log}");
    }

    /// The `Host` alias of this server in [`Sshd::ssh_config_path`].
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The TCP port sshd listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user the client logs in as (the user running the tests, root in CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The listener's pid (per-connection processes are its descendants).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A client ssh config holding this server's alias only.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The client's private key.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// The known_hosts file holding this server's host key (`[127.0.0.1]:PORT`).
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// sshd's own log (useful in assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("sshd-{}.log", self.port))).unwrap_or_default()
    }

    /// `ssh://<alias><root>` for an absolute `root`.
    pub fn url(&self, root: impl AsRef<Path>) -> String {
        let root = root.as_ref();
        assert!(
            root.is_absolute(),
            "url() needs an absolute root, got {}",
            root.display()
        );
        format!("ssh://{}{}", self.alias, root.display())
    }

    /// This server's `Host` block, as written into [`Sshd::ssh_config_path`].
    pub fn config_block(&self) -> String {
        format!(
            "Host {alias}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
             LogLevel ERROR\n",
            alias = self.alias,
            port = self.port,
            user = self.user,
            key = self.client_key.display(),
            kh = self.known_hosts_path().display(),
        )
    }

    /// (Re)write `authorized_keys` with the client key behind `options`
    /// (e.g. `restrict,command="..."`); takes effect on the next connection.
    pub fn authorize(&self, options: Option<&str>) {
        let line = match options {
            Some(o) => format!("{o} {}\n", self.client_pub),
            None => format!("{}\n", self.client_pub),
        };
        std::fs::write(self.dir.path().join("authorized_keys"), line).expect("write authorized_keys");
    }

    /// Empty `authorized_keys`: the next connection fails authentication.
    pub fn deauthorize(&self) {
        std::fs::write(self.dir.path().join("authorized_keys"), "").expect("write authorized_keys");
    }

    /// Kill every connection (the per-connection sshd processes and what they
    /// run), keeping the listener: the client sees its connection drop.
    pub fn kill_sessions(&self) {
        if self.child.is_none() {
            return;
        }
        for pid in descendants(self.pid) {
            signal(pid, Signal::KILL);
        }
    }

    /// Stop the listener and every connection. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Freeze the listener so it forks nothing new, then kill what it forked.
        signal(self.pid, Signal::STOP);
        for pid in descendants(self.pid) {
            signal(pid, Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn write_sshd_config(&self) -> PathBuf {
        let d = self.dir.path();
        let text = format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_ed25519\nPidFile {d}/sshd-{port}.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n\
             PrintMotd no\nX11Forwarding no\nSubsystem sftp internal-sftp\nMaxStartups 100:30:200\nMaxSessions 100\nLogLevel INFO\n\
             # The login shell must not read ~/.bashrc for every command (bash does when SHLVL < 2).\n\
             SetEnv SHLVL=1 {extra}\n",
            port = self.port,
            d = d.display(),
            extra = self.set_env.join(" "),
        );
        let path = d.join("sshd_config");
        std::fs::write(&path, text).expect("write sshd_config");
        path
    }

    fn write_client_files(&self) {
        std::fs::write(
            self.known_hosts_path(),
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_pub),
        )
        .expect("write known_hosts");
        std::fs::write(self.ssh_config_path(), self.config_block()).expect("write ssh_config");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Write one client ssh config holding the aliases of all `hosts`.
pub fn write_ssh_config(path: &Path, hosts: &[&Sshd]) -> PathBuf {
    let text: String = hosts.iter().map(|h| h.config_block()).collect::<Vec<_>>().join("\n");
    super::write_file(path, text.as_bytes());
    path.to_path_buf()
}

/// Generate an ed25519 key pair at `path` (+ `.pub`); returns the public key line.
pub fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "slipway-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}); install openssh-client (scripts/test.sh does it)"));
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::read_to_string(&pub_path)
        .expect("read public key")
        .trim()
        .to_string()
}

fn find_sshd() -> PathBuf {
    let candidates = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("sshd")).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("sshd not found: SSH tests need openssh-server (scripts/test.sh installs it; or apt-get install openssh-server)")
        })
}

/// sshd running as root refuses to start without its privilege separation
/// directory. If it cannot be created here, sshd's own error says so when
/// the server fails to start.
fn ensure_privsep_dir() {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() && std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wait for "Server listening" in sshd's log; `Err(log and stderr)` if it exits.
fn wait_listening(child: &mut Child, log: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = format!("Server listening on 127.0.0.1 port {port}");
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(&ready) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("exited with {status}: {}{}", text.trim(), err.trim()));
        }
        if Instant::now() > deadline {
            return Err(format!("not listening on port {port} after 15s: {}", text.trim()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// All processes below `root`, from /proc (parents before children).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ... — comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, sig);
    }
}
