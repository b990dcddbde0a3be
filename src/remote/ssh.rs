//! The SSH transport: `<remote_bin> serve --root ROOT` on a host, reached
//! through the system `ssh` (the `openssh` crate, native multiplexing).
//!
//! Everything about *how* to reach a host comes from the operator's ssh
//! configuration — `~/.ssh/config`, or the file named by `SLIPWAY_SSH_CONFIG` /
//! a target's `ssh_config` — so aliases, agents, `ProxyJump`, ciphers and
//! known_hosts apply unchanged. slipway adds only what the URL says (user,
//! port), the connect timeout, `BatchMode` (never prompt), a private control
//! directory, and keepalives every third of the connect timeout (unless the
//! ssh configuration asks for more frequent ones), so that a link that dies
//! without closing (a cable, a frozen host) fails a command within about the
//! connect timeout instead of hanging it. (ssh's own default is none, and
//! Debian's under `BatchMode` is 300 s: a 15-minute hang.)
//!
//! One [`Connection`] owns one ssh master connection, one remote `serve`
//! process and a small single-threaded tokio runtime used only to set them up
//! and to collect the exit status. The byte streams themselves are the plain
//! blocking pipes that the master reads and writes, so a transfer costs no
//! async bridging. Invariant: the runtime, the [`Session`] and the control
//! directory live exactly as long as the connection's process handle, and
//! dropping the connection closes the master.
//!
//! [`HostShell`] is the one exception to "only `serve` runs on a host": a
//! master connection on which `slipway host install` runs plain shell
//! commands (`uname -sm`, `cat > file`, `sha256sum`), reached the same way.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::Stdio as StdStdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use tokio::runtime::Runtime;

use super::local::collect_stderr;
use super::{Connection, HostSpec, Location, RemoteProcess};
use crate::error::{Error, Result, describe_io};

/// How long the master stays up without a session: long enough to never race
/// our own first command, short enough that a killed client leaves nothing
/// running for long.
const MASTER_IDLE_SECS: NonZeroUsize = NonZeroUsize::new(30).expect("non-zero");

/// Control directories are `<tmp>/slipway-ssh-XXXXXX`.
const CONTROL_PREFIX: &str = "slipway-ssh-";

/// A control directory without a socket this old was left by a killed client.
const STALE_CONTROL_DIR: Duration = Duration::from_secs(3600);

/// Extra time allowed on top of ssh's own `ConnectTimeout` (which bounds the
/// TCP connect and the banner exchange) before slipway gives up on key
/// exchange or authentication that hangs.
const CONNECT_SLACK: Duration = Duration::from_secs(2);

/// Start `serve` on the host of `spec` over SSH.
///
/// The remote command is `<remote_bin> serve --root <root>`: `remote_bin` is
/// operator-written shell text passed verbatim (like rsync's `--rsync-path`,
/// so `sudo -u deploy slipway` works), the arguments are quoted for the
/// remote shell.
///
/// # Errors
/// One line naming the host (`spec.label`) when `ssh` cannot be run, the host
/// cannot be reached or refuses authentication (with ssh's own reason), the
/// connect timeout passes, or the remote command cannot be started. A missing
/// remote `slipway` shows up in [`RemoteProcess::finish`] (exit 127), since
/// the remote shell reports it only after the command has started.
pub fn connect(spec: &HostSpec) -> Result<Connection> {
    connect_inner(spec).map_err(|e| e.on_host(&spec.label))
}

/// An ssh master connection to one host, and what must outlive it.
struct Master {
    session: Arc<Session>,
    runtime: Runtime,
    control_dir: tempfile::TempDir,
}

/// Connect to the host of `spec` (one master connection, no command yet).
fn open_master(spec: &HostSpec) -> Result<Master> {
    let Location::Ssh { user, host, port, .. } = &spec.location else {
        return Err(Error::other("not an ssh:// location (this is a bug in slipway)"));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::other(format!("cannot start the ssh runtime: {}", describe_io(&e))))?;
    let parent = control_parent();
    sweep_stale_control_dirs(&parent);
    let control_dir = tempfile::Builder::new()
        .prefix(CONTROL_PREFIX)
        .tempdir_in(&parent)
        .map_err(|e| Error::io("create a control directory in", &parent, e))?;

    let timeout = spec.connect_timeout.max(Duration::from_secs(1));
    let session = runtime.block_on(async {
        let setup = async {
            let operator = operator_settings(spec.ssh_config.as_deref(), user.as_deref(), *port, host).await?;
            let mut builder = SessionBuilder::default();
            builder
                .known_hosts_check(operator.known_hosts)
                .connect_timeout(round_up_secs(timeout))
                .control_directory(control_dir.path())
                .control_persist(ControlPersist::IdleFor(MASTER_IDLE_SECS));
            let keepalive = keepalive_interval(timeout);
            if operator.server_alive.is_none_or(|d| d > keepalive) {
                builder.server_alive_interval(keepalive);
            }
            if let Some(config) = &spec.ssh_config {
                builder.config_file(config);
            }
            if let Some(user) = user {
                builder.user(user.clone());
            }
            if let Some(port) = port {
                builder.port(*port);
            }
            builder.connect_mux(host).await.map_err(connect_error)
        };
        match tokio::time::timeout(timeout + CONNECT_SLACK, setup).await {
            Ok(r) => r,
            Err(_) => Err(Error::CannotConnect {
                why: format!(
                    "no answer within {}s; check that the host is up, or raise the target's `connect_timeout`",
                    timeout.as_secs()
                ),
            }),
        }
    })?;
    Ok(Master {
        session: Arc::new(session),
        runtime,
        control_dir,
    })
}

fn connect_inner(spec: &HostSpec) -> Result<Connection> {
    let Location::Ssh { root, .. } = &spec.location else {
        return Err(Error::other("not an ssh:// location (this is a bug in slipway)"));
    };
    let Master {
        session,
        runtime,
        control_dir,
    } = open_master(spec)?;

    let started = runtime.block_on(async {
        let mut cmd = session.clone().arc_raw_command(&spec.remote_bin);
        // We started `serve` ourselves over this key, so it may run what we
        // send; a forced command in `authorized_keys` ignores the flag.
        cmd.arg("serve")
            .arg("--root")
            .arg(root)
            .arg("--trust-client")
            .stdin(Stdio::piped());
        spawn_piped(cmd).await
    });
    let (child, stdin, stdout, stderr) = started.map_err(|e| {
        Error::other(format!(
            "cannot start `{} serve` over ssh: {}",
            spec.remote_bin,
            describe_openssh(&e)
        ))
    })?;
    let pipe = |fd: io::Result<Option<std::os::fd::OwnedFd>>, which: &'static str| match fd {
        Ok(Some(fd)) => Ok(File::from(fd)),
        Ok(None) => Err(Error::SshStreamMissing { which }),
        Err(source) => Err(Error::SshStream { which, source }),
    };
    let writer = pipe(stdin, "stdin")?;
    let reader = pipe(stdout, "stdout")?;
    let stderr = pipe(stderr, "stderr")?;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let stderr_reader = collect_stderr(stderr, buf.clone());

    Ok(Connection {
        reader: Box::new(reader),
        writer: Box::new(writer),
        process: Box::new(SshProcess {
            child: Some(child),
            session,
            label: spec.label.clone(),
            target: spec.target.clone(),
            remote_bin: spec.remote_bin.clone(),
            stderr: buf,
            stderr_reader: Some(stderr_reader),
            killed: false,
            runtime,
            _control_dir: control_dir,
        }),
    })
}

/// What the operator's ssh configuration says for one destination.
struct OperatorSettings {
    known_hosts: KnownHosts,
    /// The effective `ServerAliveInterval`, when there is one.
    server_alive: Option<Duration>,
}

/// Keepalives every third of the connect timeout (at least a second): with
/// ssh's default `ServerAliveCountMax` of 3, a dead link is given up after
/// about the connect timeout.
fn keepalive_interval(timeout: Duration) -> Duration {
    Duration::from_secs(timeout.as_secs().div_ceil(3).max(1))
}

/// The known-hosts policy to hand to `openssh`, and the keepalive interval
/// the ssh configuration gives this destination.
///
/// `SessionBuilder` always passes `-o StrictHostKeyChecking=...` on the
/// command line, which beats anything in the ssh config, and its default is
/// `accept-new` (trust any host seen for the first time). Neither is the
/// operator's choice, so we ask ssh what the operator configured for this
/// very destination (`ssh -G`, which evaluates `Host`/`Match` blocks without
/// connecting) and pass that on: `yes` stays strict, `accept-new` and `no`
/// stay as lenient as the operator made them, and ssh's default `ask` — which
/// cannot ask under `BatchMode` — becomes strict, exactly what plain `ssh`
/// does in a script. `UserKnownHostsFile` is never set here, so the
/// operator's known_hosts files are the ones consulted.
async fn operator_settings(
    config: Option<&Path>,
    user: Option<&str>,
    port: Option<u16>,
    host: &str,
) -> Result<OperatorSettings> {
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.arg("-G");
    if let Some(config) = config {
        cmd.arg("-F").arg(config);
    }
    if let Some(user) = user {
        cmd.arg("-l").arg(user);
    }
    if let Some(port) = port {
        cmd.arg("-p").arg(port.to_string());
    }
    cmd.arg(host)
        .stdin(StdStdio::null())
        .stdout(StdStdio::piped())
        .stderr(StdStdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(ssh_not_runnable)?;
    if !out.status.success() {
        return Err(Error::CannotConnect {
            why: format!("ssh: {}", ssh_reason(&String::from_utf8_lossy(&out.stderr))),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let setting = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    Ok(OperatorSettings {
        known_hosts: known_hosts_for(setting("stricthostkeychecking ").unwrap_or("ask")),
        server_alive: setting("serveraliveinterval ")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|secs| *secs > 0)
            .map(Duration::from_secs),
    })
}

/// Map `ssh -G`'s `stricthostkeychecking` value to openssh's option.
fn known_hosts_for(value: &str) -> KnownHosts {
    match value.trim() {
        "accept-new" => KnownHosts::Add,
        "false" | "no" | "off" => KnownHosts::Accept,
        // "true", "yes", "ask" (cannot ask in batch mode) and anything unknown.
        _ => KnownHosts::Strict,
    }
}

fn ssh_not_runnable(source: io::Error) -> Error {
    Error::Run {
        program: "ssh".into(),
        hint: "; install the OpenSSH client (e.g. apt-get install openssh-client)",
        source,
    }
}

fn connect_error(e: openssh::Error) -> Error {
    match e {
        // Spawning `ssh` itself failed (a real OS error, not ssh's log).
        openssh::Error::Connect(io) if io.raw_os_error().is_some() => ssh_not_runnable(io),
        openssh::Error::Connect(io) => Error::CannotConnect {
            why: format!("ssh: {}", ssh_reason(&io.to_string())),
        },
        openssh::Error::Master(io) => {
            Error::other(format!("cannot create the ssh control directory: {}", describe_io(&io)))
        }
        other => Error::CannotConnect {
            why: describe_openssh(&other),
        },
    }
}

/// ssh's own reason for a failure, on one line: the last two meaningful
/// lines of its log (e.g. "No ED25519 host key is known for … Host key
/// verification failed."), without warnings, `@@@` banners or the `ssh: `
/// prefix.
fn ssh_reason(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim())
        .map(|l| l.strip_prefix("ssh: ").unwrap_or(l))
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('@')
                && !l.starts_with("Warning: Permanently added")
                && !l.starts_with("Pseudo-terminal will not be allocated")
        })
        .collect();
    let mut text = String::new();
    for line in &lines[lines.len().saturating_sub(2)..] {
        if !text.is_empty() {
            // Sentences stay sentences; fragments are chained like ssh chains causes.
            text.push_str(if text.ends_with('.') { " " } else { ": " });
        }
        text.push_str(line);
    }
    if text.is_empty() {
        "failed without saying why (run `ssh -v` to the same host to see more)".into()
    } else {
        text
    }
}

/// openssh's error plus its source, lowercase, on one line.
fn describe_openssh(e: &openssh::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    if let Some(source) = e.source() {
        text = format!("{text}: {source}");
    }
    text.replace('\n', " ")
}

/// Remove the control directories that killed clients left behind (a
/// `kill -9` skips the clean-up; the master removes its own socket when it
/// goes idle): ours, older than [`STALE_CONTROL_DIR`], and holding no socket.
/// A live connection always has its socket there, so it is never touched.
fn sweep_stale_control_dirs(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(CONTROL_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = path.symlink_metadata() else { continue };
        let stale = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_CONTROL_DIR);
        if meta.is_dir() && meta.uid() == me && stale && !holds_socket(&path, 2) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// True when `dir` (or a directory below it, `depth` levels down) holds a socket.
fn holds_socket(dir: &Path, depth: u32) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true; // unreadable: leave it alone
    };
    entries.flatten().any(|e| match e.file_type() {
        Ok(t) if t.is_socket() => true,
        Ok(t) if t.is_dir() => depth > 0 && holds_socket(&e.path(), depth - 1),
        Ok(_) => false,
        Err(_) => true,
    })
}

/// Where the per-connection control directory goes: the system temp dir,
/// unless its path is so long that the socket path would not fit in
/// `sun_path` (108 bytes, of which ours adds ~66).
fn control_parent() -> PathBuf {
    let tmp = std::env::temp_dir();
    if tmp.as_os_str().len() > 40 {
        PathBuf::from("/tmp")
    } else {
        tmp
    }
}

fn round_up_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// The remote `serve` and everything that must outlive it. Fields drop in
/// order: the session handle, the master, then the runtime and the directory
/// holding the control socket.
struct SshProcess {
    child: Option<openssh::Child<Arc<Session>>>,
    session: Arc<Session>,
    label: String,
    target: String,
    remote_bin: String,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    killed: bool,
    runtime: Runtime,
    _control_dir: tempfile::TempDir,
}

impl SshProcess {
    /// The last meaningful line of the remote stderr, for one-line errors.
    fn stderr_tail(&mut self) -> String {
        self.stderr_text()
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.strip_prefix("error: ").unwrap_or(l).to_string())
            .unwrap_or_default()
    }

    fn exit_error(&mut self, status: std::result::Result<std::process::ExitStatus, openssh::Error>) -> Result<()> {
        let bin = self.remote_bin.clone();
        let tail = self.stderr_tail();
        let with_tail = |s: String| if tail.is_empty() { s } else { format!("{s}: {tail}") };
        let err = match status {
            Ok(s) if s.success() => return Ok(()),
            _ if self.killed => Error::other(format!("`{bin} serve` was stopped")),
            Ok(s) if s.code() == Some(126) => Error::other(with_tail(format!(
                "`{bin}` cannot be run on the host (exit 126); make it executable, or point SLIPWAY_REMOTE_BIN or the target's `remote_bin` at slipway"
            ))),
            Ok(s) if s.code() == Some(2) => Error::other(format!(
                "{}; a slipway older than this client ({}) does not know `serve --trust-client`: run `slipway host install -t {}`",
                with_tail(format!("`{bin} serve` refused its command line (exit 2)")),
                crate::protocol::VERSION,
                self.target
            )),
            Ok(s) => Error::other(with_tail(format!(
                "`{bin} serve` exited with status {}",
                s.code().map_or_else(|| "unknown".into(), |c| c.to_string())
            ))),
            Err(openssh::Error::Remote(e)) if e.kind() == io::ErrorKind::NotFound => {
                let why = if tail.is_empty() {
                    String::new()
                } else {
                    format!(" ({tail})")
                };
                Error::other(format!(
                    "`{bin}` was not found on the host (exit 127){why}; install slipway there (`slipway host install -t {}`), or set SLIPWAY_REMOTE_BIN or the target's `remote_bin` to its path",
                    self.target
                ))
            }
            Err(openssh::Error::RemoteProcessTerminated) => {
                // ssh reports no exit status both for a signal and for a link that died.
                Error::other(with_tail(format!(
                    "`{bin} serve` ended without an exit status (killed on the host, or the connection dropped)"
                )))
            }
            Err(e) => Error::other(with_tail(format!(
                "the ssh connection was lost: {}",
                describe_openssh(&e)
            ))),
        };
        Err(err.on_host(&self.label))
    }
}

impl RemoteProcess for SshProcess {
    fn finish(&mut self) -> Result<()> {
        let Some(child) = self.child.take() else {
            return Err(Error::other(format!("`{} serve` has already finished", self.remote_bin)).on_host(&self.label));
        };
        let status = self.runtime.block_on(child.wait());
        // The master closes stderr with the channel: the tail is complete.
        if let Some(h) = self.stderr_reader.take() {
            let _ = h.join();
        }
        self.exit_error(status)
    }

    /// Close the whole ssh connection (`ssh -O exit`): the local ends of the
    /// pipes see EOF/EPIPE at once, and the remote `serve` sees its stdin
    /// close. The mux protocol has no way to signal the remote process itself.
    fn kill(&mut self) {
        self.killed = true;
        let _ = std::process::Command::new("ssh")
            .arg("-F")
            .arg("/dev/null")
            .arg("-S")
            .arg(self.session.control_socket())
            .args(["-O", "exit", "slipway-control"])
            .stdin(StdStdio::null())
            .stdout(StdStdio::null())
            .stderr(StdStdio::null())
            .status();
    }

    fn stderr_text(&mut self) -> String {
        let b = self.stderr.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&b).trim().to_string()
    }
}

/// What a command run by [`HostShell::run`] did.
#[derive(Debug)]
pub struct ShellOutput {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    /// The last 16 KiB of its stderr.
    pub stderr: String,
}

impl ShellOutput {
    /// The last meaningful line of stderr, for one-line errors.
    pub fn stderr_tail(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
    }
}

/// A shell on a host, over one ssh master connection: for `slipway host
/// install` only, the one place slipway runs a command other than `serve` on
/// a host (`uname`, `cat > file`, `sha256sum`). Everything about reaching the
/// host is as for [`connect`].
pub struct HostShell {
    session: Arc<Session>,
    label: String,
    runtime: Runtime,
    _control_dir: tempfile::TempDir,
}

impl HostShell {
    /// Connect to the host of `spec`.
    ///
    /// # Errors
    /// As [`connect`]: one line naming the host and ssh's reason.
    pub fn open(spec: &HostSpec) -> Result<HostShell> {
        let m = open_master(spec).map_err(|e| e.on_host(&spec.label))?;
        Ok(HostShell {
            session: m.session,
            label: spec.label.clone(),
            runtime: m.runtime,
            _control_dir: m.control_dir,
        })
    }

    /// Run `script` (shell text, passed verbatim to the remote shell), with
    /// `input` streamed to its stdin (else stdin is empty), and collect its
    /// stdout and stderr. A non-zero exit is not an error here.
    ///
    /// # Errors
    /// When the command cannot be started or the connection breaks; when
    /// `input` cannot be sent although the command succeeded.
    pub fn run(&mut self, script: &str, input: Option<&mut dyn io::Read>) -> Result<ShellOutput> {
        self.run_inner(script, input).map_err(|e| e.on_host(&self.label))
    }

    fn run_inner(&mut self, script: &str, input: Option<&mut dyn io::Read>) -> Result<ShellOutput> {
        let piped = input.is_some();
        let started = self.runtime.block_on(async {
            let mut cmd = self.session.clone().arc_raw_command(script);
            cmd.stdin(if piped { Stdio::piped() } else { Stdio::null() });
            spawn_piped(cmd).await
        });
        let (child, stdin, stdout, stderr) =
            started.map_err(|e| Error::other(format!("cannot run a command over ssh: {}", describe_openssh(&e))))?;
        let fd = |fd: io::Result<Option<std::os::fd::OwnedFd>>, which: &'static str| match fd {
            Ok(fd) => Ok(fd.map(File::from)),
            Err(source) => Err(Error::SshStream { which, source }),
        };
        let stdin = fd(stdin, "stdin")?;
        let mut stdout = fd(stdout, "stdout")?.ok_or(Error::SshStreamMissing { which: "stdout" })?;
        let stderr = fd(stderr, "stderr")?.ok_or(Error::SshStreamMissing { which: "stderr" })?;
        let err_buf = Arc::new(Mutex::new(Vec::new()));
        let err_reader = collect_stderr(stderr, err_buf.clone());
        let out_reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = io::Read::read_to_end(&mut stdout, &mut v);
            v
        });
        let sent = match (input, stdin) {
            (Some(r), Some(mut w)) => io::copy(r, &mut w).map(|_| ()),
            _ => Ok(()),
        };
        // The remote stdin is closed here (dropped above): `cat` sees its end.
        let out = out_reader.join().unwrap_or_default();
        let _ = err_reader.join();
        let status = self.runtime.block_on(child.wait());
        let stderr = String::from_utf8_lossy(&err_buf.lock().map(|b| b.clone()).unwrap_or_default()).into_owned();
        let code = match status {
            Ok(s) => s.code(),
            Err(openssh::Error::Remote(e)) if e.kind() == io::ErrorKind::NotFound => Some(127),
            Err(openssh::Error::RemoteProcessTerminated) => None,
            Err(e) => {
                return Err(Error::connection(format!(
                    "the ssh connection was lost: {}",
                    describe_openssh(&e)
                )));
            }
        };
        if let Err(e) = sent
            && code == Some(0)
        {
            return Err(Error::connection(format!(
                "cannot send data to the host: {}",
                describe_io(&e)
            )));
        }
        Ok(ShellOutput {
            code,
            stdout: out,
            stderr,
        })
    }
}

/// A remote child and its pipes as plain file descriptors.
type Spawned = (
    openssh::Child<Arc<Session>>,
    io::Result<Option<std::os::fd::OwnedFd>>,
    io::Result<Option<std::os::fd::OwnedFd>>,
    io::Result<Option<std::os::fd::OwnedFd>>,
);

/// Spawn `cmd` (its stdin already set) with stdout and stderr piped, and
/// take the three pipes as plain blocking descriptors: the ssh master is at
/// their other end.
async fn spawn_piped(mut cmd: openssh::OwningCommand<Arc<Session>>) -> Result<Spawned, openssh::Error> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().await?;
    let stdin = child.stdin().take().map(|s| s.into_owned_fd()).transpose();
    let stdout = child.stdout().take().map(|s| s.into_owned_fd()).transpose();
    let stderr = child.stderr().take().map(|s| s.into_owned_fd()).transpose();
    Ok((child, stdin, stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_reasons_are_one_line() {
        assert_eq!(
            ssh_reason("ssh: connect to host 127.0.0.1 port 2299: Connection refused\r\n"),
            "connect to host 127.0.0.1 port 2299: Connection refused"
        );
        assert_eq!(
            ssh_reason(
                "No ED25519 host key is known for [127.0.0.1]:2 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            "No ED25519 host key is known for [127.0.0.1]:2 and you have requested strict checking. Host key verification failed."
        );
        assert_eq!(
            ssh_reason(
                "Warning: Permanently added 'x' (ED25519) to the list of known hosts.\nroot@x: Permission denied (publickey).\n"
            ),
            "root@x: Permission denied (publickey)."
        );
        assert_eq!(
            ssh_reason("Connection timed out during banner exchange\nConnection to 127.0.0.1 port 9 timed out\n"),
            "Connection timed out during banner exchange: Connection to 127.0.0.1 port 9 timed out"
        );
        assert!(ssh_reason("").contains("ssh -v"));
    }

    #[test]
    fn the_operators_host_key_policy_is_kept() {
        assert!(matches!(known_hosts_for("true"), KnownHosts::Strict));
        assert!(matches!(known_hosts_for("ask"), KnownHosts::Strict));
        assert!(matches!(known_hosts_for("accept-new"), KnownHosts::Add));
        assert!(matches!(known_hosts_for("false"), KnownHosts::Accept));
        assert!(matches!(known_hosts_for("???"), KnownHosts::Strict));
    }

    #[test]
    fn only_old_socketless_control_dirs_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let old_time = std::time::SystemTime::now() - STALE_CONTROL_DIR - Duration::from_secs(60);
        let make = |name: &str, old: bool, socket: bool| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(dir.join(".ssh-connectionX")).unwrap();
            if socket {
                std::os::unix::net::UnixListener::bind(dir.join(".ssh-connectionX/master")).unwrap();
            }
            if old {
                let f = File::open(&dir).unwrap();
                f.set_times(std::fs::FileTimes::new().set_modified(old_time)).unwrap();
            }
            dir
        };
        let left = make("slipway-ssh-left", true, false);
        let live = make("slipway-ssh-live", true, true);
        let young = make("slipway-ssh-young", false, false);
        let other = make("other-dir", true, false);
        sweep_stale_control_dirs(tmp.path());
        assert!(!left.exists(), "a killed client's leftover is removed");
        assert!(live.exists() && young.exists() && other.exists());
    }

    #[test]
    fn keepalives_give_up_after_about_the_connect_timeout() {
        assert_eq!(keepalive_interval(Duration::from_secs(10)), Duration::from_secs(4));
        assert_eq!(keepalive_interval(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(keepalive_interval(Duration::from_millis(500)), Duration::from_secs(1));
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(round_up_secs(Duration::from_millis(1500)), Duration::from_secs(2));
        assert_eq!(round_up_secs(Duration::from_secs(10)), Duration::from_secs(10));
    }
}
