//! A throwaway PostgreSQL on 127.0.0.1, started by the test itself: the
//! database that the database-migration tests' web service ([`super::dbapp`])
//! writes to.
//!
//! Each [`Postgres`] owns one directory: `data/` (made by `initdb`),
//! `sock/` (its `unix_socket_directories`), `postgres.log` (the server's
//! stderr) and its pid file (`data/postmaster.pid`). It listens on
//! 127.0.0.1 at a free high port with `trust` authentication, so a client
//! connects with `-h 127.0.0.1 -p PORT -U postgres` and no password; the
//! database [`DATABASE`] (`app`) exists. `fsync` is off: a committed row
//! survives any process being killed (the WAL is written at commit), not a
//! crash of the machine, which no test causes.
//!
//! PostgreSQL refuses to run as root. Run as root (CI), the test starts
//! `initdb`, `postgres` and `pg_ctl` through `setpriv --reuid --regid
//! --init-groups` as the `postgres` user (Debian's package creates it;
//! `nobody` otherwise), owning the directory; the directory's ancestors get
//! `o+x` so that user can reach it. Run as anyone else, they run as that user.
//!
//! Invariant: the server runs in the foreground (started with `postgres`
//! itself, not `pg_ctl start`, so it is the test's child). Every process of
//! the server has its data directory as working directory (each of its
//! children calls `setsid`, so a process group does not hold them):
//! dropping a [`Postgres`] (or [`Postgres::stop`]) runs `pg_ctl stop -m
//! immediate`, then kills every process still working there
//! ([`Postgres::processes`]). A guardian (`sh`, reading a pipe only the test
//! process holds) covers a test process that dies without unwinding: at end
//! of file it sends the postmaster SIGQUIT (an immediate shutdown, which
//! takes its children down), then SIGKILL; a child left then exits on its
//! own once it sees the postmaster gone. (`--pdeathsig` cannot do it: the
//! kernel clears it when setpriv changes the user.)
//!
//! PostgreSQL missing: [`skip_if_missing`] prints a skip banner (and the test
//! returns), except under `CI=true`, where it fails the test.
//!
//! ```ignore
//! if postgres::skip_if_missing("pg_migrate") { return; }
//! let pg = Postgres::start(&env.path("pg"));
//! pg.psql("create table t (x int); insert into t values (1)");
//! assert_eq!(pg.psql("select count(*) from t"), "1");
//! ```

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::sshd::alive;

/// The superuser `initdb` creates, and the user every client connects as.
pub const SUPERUSER: &str = "postgres";
/// The database [`Postgres::start`] creates for the application.
pub const DATABASE: &str = "app";
/// The address it listens on.
pub const HOST: &str = "127.0.0.1";

/// The directory holding `initdb`, `postgres`, `pg_ctl`, `psql` and
/// `pg_dump` of one version: the newest `/usr/lib/postgresql/N/bin`
/// (Debian), else the directory `initdb` on `PATH` resolves to.
pub fn bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The PostgreSQL program `name` (`psql`, `pg_dump`, `pg_ctl`, …): in
/// [`bin_dir`] when it is there, else `name` itself (found on `PATH`).
pub fn bin(name: &str) -> PathBuf {
    bin_dir()
        .map(|d| d.join(name))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// True (after a skip banner) when PostgreSQL's server is missing and
/// `test` should return; under `CI=true` that fails the test instead.
pub fn skip_if_missing(test: &str) -> bool {
    if bin_dir().is_some_and(|d| ["initdb", "postgres", "pg_ctl"].iter().all(|b| d.join(b).is_file())) {
        return false;
    }
    let msg = format!("{test} needs PostgreSQL (scripts/test.sh installs it; or apt-get install postgresql)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    true
}

/// Who the server's programs run as.
#[derive(Clone, Debug)]
enum RunAs {
    /// The user running the tests (not root).
    Me,
    /// Another user, through `setpriv` (the tests run as root).
    User { name: String, uid: u32, gid: u32 },
}

impl RunAs {
    fn pick() -> RunAs {
        if !rustix::process::geteuid().is_root() {
            return RunAs::Me;
        }
        for name in ["postgres", "nobody"] {
            if let (Some(uid), Some(gid)) = (id_of(name, "-u"), id_of(name, "-g"))
                && uid != 0
            {
                return RunAs::User {
                    name: name.to_string(),
                    uid,
                    gid,
                };
            }
        }
        panic!("the tests run as root and there is neither a `postgres` nor a `nobody` user to run PostgreSQL as");
    }

    /// `program` run as this user, with a clean environment.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = match self {
            RunAs::Me => Command::new(program),
            RunAs::User { uid, gid, .. } => {
                let mut c = Command::new("/usr/bin/setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--init-groups")
                    .arg(program);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    fn describe(&self) -> String {
        match self {
            RunAs::Me => "the current user".into(),
            RunAs::User { name, uid, .. } => format!("{name} (uid {uid})"),
        }
    }
}

fn id_of(user: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(user).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A running throwaway PostgreSQL. See the module docs.
pub struct Postgres {
    bin_dir: PathBuf,
    dir: PathBuf,
    sock: PathBuf,
    /// A socket directory outside `dir` when `dir`'s path is too long for one.
    _sock_tmp: Option<tempfile::TempDir>,
    port: u16,
    run_as: RunAs,
    child: Option<Child>,
    pid: u32,
    guardian: Option<(Child, ChildStdin)>,
}

impl Postgres {
    /// `initdb` a cluster in `dir/data` (`dir` is created if need be and
    /// must be empty of a previous cluster), start it on a free port and
    /// create the database [`DATABASE`]. Panics, with the server's log, when
    /// it cannot start.
    pub fn start(dir: &Path) -> Postgres {
        let bin_dir = bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL not found: these tests need it (scripts/test.sh installs it; or apt-get install postgresql)"
            )
        });
        let run_as = RunAs::pick();
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let dir = std::fs::canonicalize(dir).expect("canonicalize the postgres dir");
        // A unix socket path has room for 107 bytes: `sock/.s.PGSQL.65535.lock` must fit.
        let (sock, sock_tmp) = if dir.as_os_str().len() + 30 < 100 {
            (dir.join("sock"), None)
        } else {
            let t = tempfile::Builder::new()
                .prefix("slipway-pgsock-")
                .tempdir()
                .expect("a short socket directory");
            (t.path().to_path_buf(), Some(t))
        };
        std::fs::create_dir_all(&sock).expect("create the socket dir");
        if let RunAs::User { uid, gid, .. } = &run_as {
            reachable_by_others(&dir);
            reachable_by_others(&sock);
            for d in [&dir, &sock] {
                chown(d, *uid, *gid);
            }
        }
        let mut pg = Postgres {
            bin_dir,
            dir,
            sock,
            _sock_tmp: sock_tmp,
            port: 0,
            run_as,
            child: None,
            pid: 0,
            guardian: None,
        };
        pg.initdb();
        // A free port can be taken by someone else before postgres binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = super::free_port();
            pg.spawn();
            match pg.wait_ready() {
                Ok(()) => {
                    pg.psql_db("postgres", &format!("create database {DATABASE}"));
                    return pg;
                }
                Err(text) => {
                    pg.stop();
                    if !text.contains("Address already in use") {
                        panic!(
                            "the test PostgreSQL ({}, as {}) did not start: {text}",
                            pg.bin_dir.display(),
                            pg.run_as.describe()
                        );
                    }
                    last = text;
                }
            }
        }
        panic!("the test PostgreSQL found no free port: {last}");
    }

    fn initdb(&self) {
        let out = self
            .run_as
            .command(&self.bin_dir.join("initdb"))
            .arg("-D")
            .arg(self.data_dir())
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb (as {}) failed: {}{}",
            self.run_as.describe(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Only what the tests use: trust over the socket and 127.0.0.1, nothing else.
        let hba = "# Written by tests/cli/support/postgres.rs.\n\
                   local all all trust\n\
                   host all all 127.0.0.1/32 trust\n";
        std::fs::write(self.data_dir().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
    }

    /// Start the server (in the foreground, a group of its own) and its guardian.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.data_dir().join("postmaster.pid"));
        // Truncated: a retry after "Address already in use" reads its own log only.
        let log = std::fs::File::create(self.log_path()).expect("create postgres.log");
        let settings = [
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={}", self.port),
            format!("unix_socket_directories={}", self.sock.display()),
            "fsync=off".into(),
            "full_page_writes=off".into(),
            "shared_buffers=16MB".into(),
            "max_connections=60".into(),
            "log_min_messages=warning".into(),
        ];
        let mut cmd = self.run_as.command(&self.bin_dir.join("postgres"));
        cmd.arg("-D").arg(self.data_dir());
        for s in &settings {
            cmd.arg("-c").arg(s);
        }
        let child = cmd
            .process_group(0)
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin_dir.join("postgres").display()));
        self.pid = child.id();
        self.child = Some(child);
        let mut guardian = Command::new("sh")
            .arg("-c")
            .arg("read _ || :; kill -QUIT \"$0\" 2>/dev/null; sleep 2; kill -KILL \"$0\" 2>/dev/null")
            .arg(self.pid.to_string())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sh (the postgres guardian)");
        let stdin = guardian.stdin.take().expect("the guardian's stdin");
        self.guardian = Some((guardian, stdin));
    }

    /// Ready: `postmaster.pid` names our server and says `ready` (what
    /// `pg_ctl -w` waits for).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !alive(self.pid) {
                return Err(format!("exited: {}", self.log().trim()));
            }
            let pidfile = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).unwrap_or_default();
            let lines: Vec<&str> = pidfile.lines().collect();
            if lines.first() == Some(&self.pid.to_string().as_str())
                && lines.get(7).is_some_and(|s| s.trim() == "ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not ready on port {} after 20 s: {}",
                    self.port,
                    self.log().trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// [`HOST`].
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// [`SUPERUSER`].
    pub fn user(&self) -> &'static str {
        SUPERUSER
    }

    /// [`DATABASE`].
    pub fn database(&self) -> &'static str {
        DATABASE
    }

    /// `postgresql://postgres@127.0.0.1:PORT/app`.
    pub fn url(&self) -> String {
        format!("postgresql://{SUPERUSER}@{HOST}:{}/{DATABASE}", self.port)
    }

    /// The libpq environment reaching [`DATABASE`]: `PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PGHOST", HOST.to_string()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", SUPERUSER.to_string()),
            ("PGDATABASE", DATABASE.to_string()),
        ]
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cluster (`initdb`'s `-D`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Its unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The directory of its programs (the same version as the server).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Its program `name` (`psql`, `pg_dump`, …), the server's version.
    pub fn bin(&self, name: &str) -> PathBuf {
        let p = self.bin_dir.join(name);
        if p.is_file() { p } else { bin(name) }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// What the server logged (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `psql -X -At` on [`DATABASE`], stopping at the first error: its
    /// stdout without the final newline (rows one a line, columns split by
    /// `|`). Panics with psql's stderr when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(DATABASE, sql)
    }

    /// [`Postgres::psql`] on database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, &["-c", sql])
            .unwrap_or_else(|e| panic!("psql on {db} failed: {e}\nsql: {sql}"))
    }

    /// Run the SQL file `file` on database `db` (e.g. a dump, to restore it).
    pub fn psql_file(&self, db: &str, file: &Path) -> String {
        let file = file.to_string_lossy();
        self.try_psql(db, &["-f", &file])
            .unwrap_or_else(|e| panic!("psql -f {file} on {db} failed: {e}"))
    }

    /// `psql -X -At -v ON_ERROR_STOP=1 … -d db ARGS`: stdout (without the
    /// final newline), or `Err` with the exit status and stderr.
    pub fn try_psql(&self, db: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.bin("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-U", SUPERUSER])
            .args(["-p", &self.port.to_string(), "-d", db])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
    }

    /// Stop the server: `pg_ctl stop -m immediate` (as its user), then kill
    /// whatever is left of its process group. Idempotent.
    pub fn stop(&mut self) {
        // The guardian first: once the server is reaped its pid may be reused.
        if let Some((mut guardian, stdin)) = self.guardian.take() {
            let _ = guardian.kill();
            let _ = guardian.wait();
            drop(stdin);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if alive(self.pid) {
            let _ = self
                .run_as
                .command(&self.bin_dir.join("pg_ctl"))
                .arg("stop")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "10"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The postmaster is not reaped yet: its pid is still its own.
        for pid in std::iter::once(self.pid).chain(self.processes()) {
            if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        let _ = child.wait();
    }

    /// The server's processes still running (not zombies): those working
    /// in its data directory (the postmaster, its helpers, a backend per
    /// connection).
    pub fn processes(&self) -> Vec<u32> {
        let data = self.data_dir();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                (std::fs::read_link(e.path().join("cwd")).ok()? == data && alive(pid)).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Make `dir`'s ancestors traversable by other users (`o+x`) where they are
/// not, e.g. a test's 0700 temp directory, so the server's user reaches `dir`.
fn reachable_by_others(dir: &Path) {
    for a in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(a) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(a, std::fs::Permissions::from_mode(mode | 0o001))
                .unwrap_or_else(|e| panic!("make {} traversable for PostgreSQL's user: {e}", a.display()));
        }
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {} to {uid}:{gid}: {e}", path.display()));
}
