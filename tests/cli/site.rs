//! A real project end to end: a small static site is built from
//! tags by its own build command, deployed over SSH to two hosts that each
//! serve `<root>/current` through a web server, reloaded by `after_activate`
//! and checked by an HTTP `health` hook — then deployed again and rolled
//! back while a client polls both servers. Not one request may fail.
//!
//! The pieces under `tests/cli/site/`: `build.py` (the site's build, in the
//! repository), `health` (its health check, shipped in the release) and
//! `web.py` (the host's web server: like nginx with `root
//! /srv/site/current/public;`, it follows `current` on every request and
//! reloads its configuration, `current/server.json`, on SIGHUP).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::sshd::{self, Sshd};
use crate::support::{Env, Repo, wait_for};

const BUILD_PY: &str = include_str!("site/build.py");
const HEALTH: &str = include_str!("site/health");
const WEB_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cli/site/web.py");

/// The releases, and what the client does while each command runs.
const RELEASES: [&str; 2] = ["v1", "v2"];
const PHASES: [&str; 5] = ["before", "deploy v1", "deploy v2", "rollback", "after"];
/// Pages present in every release (a page only one release has would 404
/// during a switch by design, not by accident).
const PAGES: [&str; 3] = ["/", "/about.html", "/version.txt"];
/// Between two rounds of requests (one to each host).
const POLL_EVERY: Duration = Duration::from_millis(5);
/// The client never polls longer than this, whatever happens.
const POLL_AT_MOST: Duration = Duration::from_secs(60);

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="release" content="{{release}}">
<title>{{title}} - harbour notes</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<nav>{{nav}}</nav>
<main>
{{body}}
</main>
<footer>release {{release}}</footer>
</body>
</html>
"#;

const SLIPWAY_TOML: &str = r#"# The site's build: `slipway build TAG` runs it in the tag's exported tree.
[build]
command = "python3 build.py"
output = "dist"

[targets.site]
hosts = [HOSTS]

[targets.site.hooks]
# Reload the web server, which re-reads current/server.json (like `nginx -s reload`).
after_activate = 'kill -HUP "$(cat "$SLIPWAY_ROOT/shared/web.pid")"'
# Run in the release directory: the site answers with this release and its configuration.
health = "bin/health"
health_timeout = "10s"
"#;

/// The site's repository with tags v1 and v2, whose pages differ.
fn site_repo(env: &Env, hosts: &[String]) -> Repo {
    let repo = env.repo("harbour");
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    repo.write("slipway.toml", SLIPWAY_TOML.replace("HOSTS", &hosts.join(", ")))
        .exec("build.py", BUILD_PY)
        .exec("bin/health", HEALTH)
        .write("template.html", TEMPLATE)
        .write(
            "static/style.css",
            "body { font-family: sans-serif; max-width: 40em; margin: auto; }\n",
        )
        .write(
            "pages/about.md",
            "# About\n\nHarbour notes is a small site about boats, built by `build.py`.\n\n\
             ## Contact\n\nWrite to the harbour master.\n",
        )
        .write("VERSION", "v1\n")
        .write(
            "pages/index.md",
            "# Harbour notes\n\nTide tables and mooring news.\n\n- high tide 06:12\n- low tide 12:24\n",
        )
        .write("pages/changelog.md", "# Changes\n\n- v1: the first site\n")
        .commit("harbour notes, first site")
        .tag("v1");
    repo.write("VERSION", "v2\n")
        .write(
            "pages/index.md",
            "# Harbour notes\n\nTide tables, mooring news and the summer regatta.\n\n\
             - high tide 06:12\n- low tide 12:24\n- regatta on Saturday\n",
        )
        .write(
            "pages/changelog.md",
            "# Changes\n\n- v2: the regatta\n- v1: the first site\n",
        )
        .commit("announce the regatta")
        .tag("v2");
    repo
}

/// A host's web server (`web.py ROOT`), killed when dropped — also when the
/// test panics; `setpriv --pdeathsig` covers a test thread that dies
/// without unwinding.
struct WebServer {
    child: Child,
    port: u16,
    root: PathBuf,
}

impl WebServer {
    fn start(root: &Path) -> WebServer {
        let shared = root.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "python3"]);
            c
        } else {
            Command::new("python3")
        };
        let stderr = std::fs::File::create(shared.join("web.stderr")).unwrap();
        let child = cmd
            .arg(WEB_PY)
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): the site test needs it (scripts/test.sh installs it)")
            });
        let mut server = WebServer {
            child,
            port: 0,
            root: root.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let port_file = shared.join("web.port");
        while !port_file.exists() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the web server exited with {status}: {}", server.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the web server is not listening after 10 s: {}",
                server.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server.port = read_trimmed(&port_file).parse().unwrap();
        // The hook signals the pid in the file: it must be the process this guard kills.
        assert_eq!(read_trimmed(&shared.join("web.pid")), server.child.id().to_string());
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.root.join("shared/web.stderr")).unwrap_or_default()
    }

    /// The server's reloads, as it logged them (`reload N: RELEASE`).
    fn reloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("shared/web.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("reload "))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_trimmed(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// One HTTP response, read to the end (the server speaks HTTP/1.0 and closes).
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// `GET path` on 127.0.0.1:port; a refused connection, a timeout, a
/// malformed response or a body shorter or longer than its
/// `Content-Length` is an error.
fn get(port: u16, path: &str) -> Result<Response, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let limit = Some(Duration::from_secs(2));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(limit)
        .and_then(|()| s.set_write_timeout(limit))
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if let Some(len) = headers.get("content-length") {
        if len.parse() != Ok(body.len()) {
            return Err(format!("partial body: {} bytes, Content-Length {len}", body.len()));
        }
    } else if status == 200 {
        return Err("no Content-Length".into());
    }
    Ok(Response { status, headers, body })
}

/// The release a page names: its `<meta name="release">`, or `version.txt`.
fn release_of(body: &[u8]) -> Option<&'static str> {
    RELEASES.into_iter().find(|r| {
        body == format!("{r}\n").as_bytes()
            || String::from_utf8_lossy(body).contains(&format!("<meta name=\"release\" content=\"{r}\">"))
    })
}

/// What the client saw.
#[derive(Default)]
struct Tally {
    requests: [usize; PHASES.len()],
    failures: Vec<String>,
    /// 404s before a host's first page (nothing deployed there yet).
    not_live_yet: usize,
    /// Pages whose `X-Release` header (the server's configuration) named
    /// another release than the page: between the switch and the reload.
    stale_config: usize,
    /// Per host, each change of the release served: (from, to, phase).
    switches: Vec<Vec<(String, String, &'static str)>>,
    per_release: HashMap<&'static str, usize>,
}

/// One host as the client sees it.
struct Site<'a> {
    label: String,
    port: u16,
    root: &'a Path,
}

/// Poll every host in rounds until `stop` (or [`POLL_AT_MOST`]), counting
/// every request that fails once a host is live: an error, a status other
/// than 200, a partial body, or a body that is not byte for byte the page of
/// the release it names, as staged on that host.
///
/// `rounds[phase]` counts the rounds finished in each phase (one request to
/// every host), so that the test can wait for the client instead of sleeping.
fn poll(sites: &[Site], phase: &AtomicUsize, rounds: &[AtomicUsize; 5], stop: &AtomicBool) -> Tally {
    let mut t = Tally {
        switches: vec![Vec::new(); sites.len()],
        ..Tally::default()
    };
    let mut serving: Vec<Option<&'static str>> = vec![None; sites.len()];
    let mut pages: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    let started = Instant::now();
    let mut round = 0;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < POLL_AT_MOST {
        let path = PAGES[round % PAGES.len()];
        round += 1;
        let round_phase = phase.load(Ordering::SeqCst);
        for (h, site) in sites.iter().enumerate() {
            let ph = phase.load(Ordering::SeqCst);
            t.requests[ph] += 1;
            let mut fail = |why: String| {
                t.failures
                    .push(format!("{} GET {path} during {}: {why}", site.label, PHASES[ph]));
            };
            let r = match get(site.port, path) {
                Ok(r) => r,
                Err(e) => {
                    fail(e);
                    continue;
                }
            };
            if r.status == 404 && serving[h].is_none() {
                t.not_live_yet += 1;
                continue;
            }
            if r.status != 200 {
                fail(format!("status {}", r.status));
                continue;
            }
            let Some(release) = release_of(&r.body) else {
                fail(format!(
                    "a page of no release ({} bytes): {:?}",
                    r.body.len(),
                    String::from_utf8_lossy(&r.body[..r.body.len().min(120)])
                ));
                continue;
            };
            let file = if path == "/" { "index.html" } else { &path[1..] };
            let staged = site.root.join("releases").join(release).join("public").join(file);
            let want = pages
                .entry(staged.clone())
                .or_insert_with(|| std::fs::read(&staged).unwrap_or_default());
            if r.body != *want {
                fail(format!(
                    "{} bytes, not the {} bytes of {}",
                    r.body.len(),
                    want.len(),
                    staged.display()
                ));
                continue;
            }
            *t.per_release.entry(release).or_default() += 1;
            if r.headers.get("x-release").map(String::as_str) != Some(release) {
                t.stale_config += 1;
            }
            if serving[h] != Some(release) {
                let from = serving[h].unwrap_or("(nothing)").to_string();
                t.switches[h].push((from, release.to_string(), PHASES[ph]));
                serving[h] = Some(release);
            }
        }
        rounds[round_phase].fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(POLL_EVERY);
    }
    t
}

/// Sets the flag when dropped, so the poller stops even when the test panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn site_deploy_and_rollback_behind_web_servers_fail_no_request() {
    let started = Instant::now();
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "the site test needs python3 (its build, web server and health check); scripts/test.sh installs it"
    );
    let hosts = [Sshd::start(), Sshd::start()];
    let env = Env::new();
    let ssh_config = sshd::write_ssh_config(&env.path("ssh_config"), &[&hosts[0], &hosts[1]]);
    let roots = [env.path("host1"), env.path("host2")];
    let labels: Vec<String> = hosts.iter().zip(&roots).map(|(h, r)| h.url(r)).collect();
    let repo = site_repo(&env, &labels);
    let slipway = || env.slipway().via_ssh(&ssh_config).current_dir(&repo.path);

    // The build command really runs: each tag gives a different site.
    let ids: Vec<String> = RELEASES
        .iter()
        .map(|r| slipway().args(["build", r]).ok().line())
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        slipway().args(["build", "v1"]).ok().line(),
        ids[0],
        "the same tag, the same id"
    );

    let servers = [WebServer::start(&roots[0]), WebServer::start(&roots[1])];
    let pids: Vec<u32> = servers.iter().map(WebServer::pid).collect();
    let sites: Vec<Site> = servers
        .iter()
        .zip(&labels)
        .map(|(s, l)| Site {
            label: l.clone(),
            port: s.port,
            root: &s.root,
        })
        .collect();

    let phase = AtomicUsize::new(0);
    let rounds: [AtomicUsize; 5] = Default::default();
    let stop = AtomicBool::new(false);
    // The client has finished a whole round of requests in phase `n`.
    let polled = |n: usize| {
        wait_for(30, &format!("the client to poll during {}", PHASES[n]), || {
            rounds[n].load(Ordering::SeqCst) > 0
        })
    };
    let tally = std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        let client = scope.spawn(|| poll(&sites, &phase, &rounds, &stop));
        let run = |n: usize, args: &[&str]| {
            // The client polls between commands: what it sees next is this command's doing.
            polled(n - 1);
            phase.store(n, Ordering::SeqCst);
            let out = slipway().args(args).ok();
            phase.store(n + 1, Ordering::SeqCst);
            out
        };
        run(1, &["deploy", "v1", "-t", "site"]);
        run(2, &["deploy", "v2", "-t", "site"]);
        run(3, &["rollback", "-t", "site"]).stderr_has("v2 -> v1");
        polled(4);
        stop.store(true, Ordering::SeqCst);
        client.join().expect("the polling client panicked")
    });

    let total: usize = tally.requests.iter().sum();
    eprintln!(
        "site: {total} requests ({}), {} failed; {} before the first deploy was live; \
         pages served: {:?}; {} with the previous release's configuration (between switch and reload); \
         test took {:.1} s",
        PHASES
            .iter()
            .zip(tally.requests)
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        tally.failures.len(),
        tally.not_live_yet,
        tally.per_release,
        tally.stale_config,
        started.elapsed().as_secs_f64(),
    );
    assert!(
        tally.failures.is_empty(),
        "{} of {total} requests failed:\n{}",
        tally.failures.len(),
        tally.failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    // The client polled between the commands (the test waited for it), and
    // saw every switch happen during the command that made it: the first
    // request to see a release was sent while that command ran.
    for (h, label) in labels.iter().enumerate() {
        let seen: Vec<String> = tally.switches[h]
            .iter()
            .map(|(from, to, phase)| format!("{from} -> {to} during {phase}"))
            .collect();
        assert_eq!(
            seen,
            [
                "(nothing) -> v1 during deploy v1",
                "v1 -> v2 during deploy v2",
                "v2 -> v1 during rollback"
            ],
            "what {label} served"
        );
    }

    // After the rollback every host serves v1, with v1's configuration: the
    // server was reloaded once per switch.
    for (server, root) in servers.iter().zip(&roots) {
        assert_eq!(
            std::fs::read_link(root.join("current")).unwrap(),
            Path::new("releases/v1")
        );
        for path in PAGES {
            let r = get(server.port, path).unwrap();
            assert_eq!((r.status, release_of(&r.body)), (200, Some("v1")), "GET {path}");
            assert_eq!(r.headers["x-release"], "v1");
        }
        assert_eq!(server.reloads(), ["reload 1: v1", "reload 2: v2", "reload 3: v1"]);
    }
    let status = slipway().args(["status", "-t", "site"]).ok().stdout();
    assert_eq!(
        status.lines().next().unwrap_or_default(),
        "converged: all 2 hosts on v1",
        "{status}"
    );

    drop(sites);
    drop(servers);
    for pid in pids {
        assert!(!sshd::alive(pid), "the web server {pid} outlived its guard");
    }
}
