//! A/B service slots (docs/ab-deploys.md) with real parts: hosts over
//! sshd, a real nginx per host proxying to the live slot's port, and the
//! web service of `support/webapp` as the release. A client sends requests
//! through nginx the whole time the deploys, the failed deploy and the
//! rollback run: not one may fail, the release that fails its check never
//! answers one, and the rollback to the warm instance starts nothing.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::load::Load;
use crate::support::nginx::{self, Nginx};
use crate::support::scenario::{Scenario, Scene, TARGET};
use crate::support::webapp::{self, Mode};
use crate::support::{Outcome, free_port};

/// Requests sent this long after a switch returned all reach the new
/// instance (nginx retires its old worker ~100 ms after a reload).
const SETTLE: Duration = Duration::from_secs(1);

/// A scene whose hosts each run the web service in two slots behind an
/// nginx of their own. Every instance slipway started is killed on drop.
struct Site {
    scene: Scene,
    nginx: Vec<Nginx>,
    ports: Vec<[u16; 2]>,
    upstreams: Vec<PathBuf>,
}

impl Site {
    /// `hosts` ssh hosts; `releases` tagged and built in order; `service`:
    /// more lines of `[targets.prod.service]`; `host_extra`: more keys of
    /// each host's entry (e.g. its own `check`).
    fn new(hosts: usize, releases: &[(&str, Mode)], service: &str, host_extra: &[&str]) -> Site {
        let scene = Scenario::new().ssh_hosts(hosts).start();
        let mut site = Site {
            scene,
            nginx: Vec::new(),
            ports: Vec::new(),
            upstreams: Vec::new(),
        };
        let mut entries = Vec::new();
        for i in 0..hosts {
            let ports = [free_port(), free_port()];
            let upstream = site.scene.env.path(&format!("proxy{}/upstream.conf", i + 1));
            // Before the first deploy nginx points at slot a, where nothing listens yet.
            std::fs::create_dir_all(upstream.parent().unwrap()).unwrap();
            nginx::write_upstream(&upstream, ports[0]);
            let proxy = Nginx::start(&site.scene.env.path(&format!("proxy{}/nginx", i + 1)), &upstream);
            let extra = host_extra.get(i).map(|e| format!(", {e}")).unwrap_or_default();
            entries.push(format!(
                "{{ host = \"{}\", ports = [{}, {}], upstream = \"{}\", reload = \"{}\"{extra} }}",
                site.scene.label(i),
                ports[0],
                ports[1],
                upstream.display(),
                proxy.reload_command().replace('"', "\\\"")
            ));
            site.nginx.push(proxy);
            site.ports.push(ports);
            site.upstreams.push(upstream);
        }
        site.scene.env.write(
            "slipway.toml",
            format!(
                "[targets.{TARGET}]\nhosts = [{}]\n\n[targets.{TARGET}.service]\nstart = \"{}\"\ncheck = \"{}\"\ncheck_timeout = \"5s\"\nstop_timeout = \"5s\"\n{service}",
                entries.join(", "),
                webapp::START,
                webapp::CHECK,
            ),
        );
        for (name, mode) in releases {
            site.release(name, *mode);
        }
        site
    }

    /// Tag and build `name`, a web service behaving as `mode`.
    fn release(&self, name: &str, mode: Mode) {
        webapp::add_to(&self.scene.repo, name, mode)
            .commit(&format!("release {name}"))
            .tag(name);
        self.scene
            .env
            .slipway()
            .current_dir(&self.scene.repo.path)
            .args(["build", name])
            .ok();
    }

    fn slipway(&self, args: &[&str]) -> crate::support::Cmd {
        self.scene.slipway().args(args)
    }

    /// `slipway service status --json` of host `i`: slot -> (release, pid, live).
    fn slots(&self, i: usize) -> Vec<(String, Option<String>, Option<u64>, bool)> {
        let out = self.slipway(&["service", "status", "-t", TARGET, "--json"]).run();
        let json: serde_json::Value = serde_json::from_slice(&out.out.stdout).expect("json");
        crate::json_doc::assert_documented("slipway service status|start|stop|restart -t TARGET --json", &json);
        json[i]["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| {
                (
                    s["slot"].as_str().unwrap().to_string(),
                    s["release"].as_str().map(str::to_string),
                    s["pid"].as_u64(),
                    s["live"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    /// The slot of host `i` holding `release`, with its pid.
    fn slot_of(&self, i: usize, release: &str) -> (String, Option<u64>) {
        let slots = self.slots(i);
        let s = slots
            .iter()
            .find(|s| s.1.as_deref() == Some(release))
            .unwrap_or_else(|| panic!("no slot holds {release}: {slots:?}"));
        (s.0.clone(), s.2)
    }

    fn upstream(&self, i: usize) -> String {
        std::fs::read_to_string(&self.upstreams[i]).unwrap()
    }

    /// Every process slipway's supervisor started on the hosts, by pid.
    fn instance_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for i in 0..self.ports.len() {
            for slot in ["a", "b"] {
                let p = self.scene.root(i).join(format!(".slipway/service/{slot}.json"));
                if let Ok(text) = std::fs::read_to_string(p)
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                    && let Some(pid) = v["pid"].as_u64()
                {
                    pids.push(pid as u32);
                }
            }
        }
        pids
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for pid in self.instance_pids() {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Instances of the web service (`bin/server`) running in one of `site`'s
/// hosts (their working directory is in the test's directory), counted
/// by session: the shell that ran `start` and the server it started are one.
fn servers_running(site: &Site) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let dir = site.scene.env.dir.path().to_path_buf();
    let mut sessions: Vec<String> = procs
        .flatten()
        .filter(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("bin/server"))
                && std::fs::read_link(p.path().join("cwd")).is_ok_and(|d| d.starts_with(&dir))
        })
        .filter_map(|p| {
            let stat = std::fs::read_to_string(p.path().join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            let f: Vec<&str> = after.split_whitespace().collect();
            (f.first() != Some(&"Z")).then(|| f.get(3).map(|s| s.to_string()))?
        })
        .collect();
    sessions.sort();
    sessions.dedup();
    sessions.len()
}

/// Every needle is in what the command printed (the report on stdout, the
/// error and progress on stderr).
fn assert_said(o: &Outcome, needles: &[&str]) {
    let said = format!("{}{}", o.stdout(), o.stderr());
    for n in needles {
        assert!(said.contains(n), "the output lacks {n:?}: {o}");
    }
}

#[test]
fn a_service_deploy_checks_the_new_release_before_traffic_and_rolls_back_to_the_warm_instance() {
    if nginx::skip_if_missing("service deploy") {
        return;
    }
    let site = Site::new(
        1,
        &[("v1", Mode::Ok), ("v2", Mode::Ok), ("v3", Mode::FailCheck)],
        "",
        &[],
    );
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    assert_eq!(site.upstream(0), format!("server 127.0.0.1:{};\n", site.ports[0][0]));
    let load = Load::start(&site.nginx[0].url("/"));
    load.wait_for_release("v1", 10);

    // The plan says so first, and starts nothing, moves no traffic.
    let upstream = site.upstream(0);
    let slots = site.slots(0);
    let plan = site
        .slipway(&["deploy", "v2", "-t", TARGET, "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(
        plan["hosts"][0]["steps"],
        serde_json::json!(["push", "start", "switch", "settle", "prune"]),
        "{plan:#}"
    );
    assert_eq!(site.upstream(0), upstream);
    assert_eq!(site.slots(0), slots, "the plan changed a slot");

    // v2 starts beside v1 in slot b, is checked there, then takes the traffic.
    let d = site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    assert_said(&d, &["started v2 in slot b", "its check passed"]);
    load.wait_for_release("v2", 10);
    assert_eq!(site.upstream(0), format!("server 127.0.0.1:{};\n", site.ports[0][1]));
    let (slot_a, v1_pid) = site.slot_of(0, "v1");
    assert_eq!(slot_a, "a");
    assert!(v1_pid.is_some(), "v1 stays warm in slot a");

    // v3 fails its check: it never takes a request, nothing switches, and
    // the warm v1 it displaced from slot a runs again.
    let f = site.slipway(&["deploy", "v3", "-t", TARGET]).fails(3);
    assert_said(
        &f,
        &[
            "v3 failed its check in slot a",
            "it took no traffic",
            "the warm instance it displaced runs again",
            "answered 500",
        ],
    );
    assert_eq!(site.scene.current(0).as_deref(), Some("v2"));
    assert_eq!(site.upstream(0), format!("server 127.0.0.1:{};\n", site.ports[0][1]));
    let (slot, warm_pid) = site.slot_of(0, "v1");
    assert_eq!(slot, "a");
    let warm_pid = warm_pid.expect("v1 restored warm");
    let slot_a = std::net::SocketAddr::from(([127, 0, 0, 1], site.ports[0][0]));
    let warm_body = crate::support::load::get(slot_a, "/").unwrap().text();
    assert!(warm_body.starts_with("v1 pid="), "{warm_body}");

    // Rollback: traffic moves back to the warm v1; nothing starts.
    let r = site.slipway(&["rollback", "-t", TARGET]).ok();
    // Every request sent once the rollback returned and nginx settled.
    let rolled = Instant::now();
    assert_said(&r, &["v1 is already running in slot a"]);
    load.wait_for_release("v1", 10);
    std::thread::sleep(SETTLE * 2);
    let report = load.stop();
    assert_eq!(site.slot_of(0, "v1"), ("a".to_string(), Some(warm_pid)));

    assert_eq!(report.failures, 0, "{report}");
    assert!(!report.saw("v3"), "v3 answered a request: {report}");
    assert!(report.saw("v1") && report.saw("v2"), "{report}");
    assert!(
        report.longest_gap < Duration::from_millis(1000),
        "the request rate dropped during a switch: {report}"
    );
    let after: Vec<_> = report
        .samples
        .iter()
        .filter(|s| s.sent > rolled + SETTLE && s.done <= Instant::now())
        .collect();
    assert!(!after.is_empty(), "{report}");
    for s in after {
        let body = s.outcome.as_ref().expect("ok").text();
        assert_eq!(body, warm_body, "{report}");
    }
    assert_eq!(site.scene.current(0).as_deref(), Some("v1"));
}

#[test]
fn a_check_failing_on_one_host_moves_traffic_on_no_host() {
    if nginx::skip_if_missing("service two hosts") {
        return;
    }
    // Host 2 fails its check while `shared/sick` exists there.
    let sick_check = format!(
        "check = \"{} && test ! -e \\\"$SLIPWAY_ROOT/shared/sick\\\"\"",
        webapp::CHECK
    );
    let site = Site::new(2, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &["", &sick_check]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let loads: Vec<Load> = site.nginx.iter().map(|n| Load::start(&n.url("/"))).collect();
    for l in &loads {
        l.wait_for_release("v1", 10);
    }
    std::fs::write(site.scene.root(1).join("shared/sick"), "").unwrap();
    let f = site.slipway(&["deploy", "v2", "-t", TARGET]).fails(3);
    assert_said(&f, &[site.scene.label(1), "v2 failed its check in slot b"]);
    for i in 0..2 {
        assert_eq!(site.scene.current(i).as_deref(), Some("v1"), "host {i}");
        assert_eq!(site.upstream(i), format!("server 127.0.0.1:{};\n", site.ports[i][0]));
    }
    // Host 1's new instance, checked and ready, was stopped again.
    let host1 = site.slots(0);
    assert!(
        host1.iter().all(|s| s.1.as_deref() != Some("v2") || s.2.is_none()),
        "{host1:?}"
    );
    std::thread::sleep(SETTLE);
    for l in loads {
        let report = l.stop();
        assert_eq!(report.failures, 0, "{report}");
        assert!(!report.saw("v2"), "{report}");
    }
    // Healthy again: both hosts switch.
    std::fs::remove_file(site.scene.root(1).join("shared/sick")).unwrap();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    for i in 0..2 {
        assert_eq!(site.scene.current(i).as_deref(), Some("v2"));
        assert_eq!(site.upstream(i), format!("server 127.0.0.1:{};\n", site.ports[i][1]));
        // nginx's old worker may answer for a moment after the reload.
        crate::support::wait_for(5, "v2 behind nginx", || {
            crate::support::load::get(site.nginx[i].addr(), "/").is_ok_and(|r| r.text().starts_with("v2 pid="))
        });
    }
}

#[test]
fn a_new_instance_that_exits_hangs_or_finds_its_port_taken_is_reported_and_takes_no_traffic() {
    if nginx::skip_if_missing("service faults") {
        return;
    }
    let site = Site::new(
        1,
        &[
            ("v1", Mode::Ok),
            ("v2", Mode::Exit),
            ("v3", Mode::Hang),
            ("v4", Mode::Ok),
        ],
        "",
        &[],
    );
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let before = servers_running(&site);

    // Exits at once: its log says why.
    let f = site.slipway(&["deploy", "v2", "-t", TARGET]).fails(3);
    assert_said(&f, &["v2 failed its check in slot b", "exited", "refusing to start"]);
    // Never listens: its check times out, and it is stopped.
    let f = site.slipway(&["deploy", "v3", "-t", TARGET]).fails(3);
    assert_said(&f, &["v3 failed its check in slot b", "checked for"]);
    assert_eq!(servers_running(&site), before, "the hanging instance was stopped");
    // A stray process on slot b's port: refused before anything starts.
    let stray = std::net::TcpListener::bind(("127.0.0.1", site.ports[0][1])).unwrap();
    let f = site.slipway(&["deploy", "v4", "-t", TARGET]).fails(3);
    assert_said(
        &f,
        &[&format!(
            "port {} of slot b is already in use by pid {}",
            site.ports[0][1],
            std::process::id()
        )],
    );
    assert_eq!(servers_running(&site), before);
    drop(stray);
    for _ in 0..3 {
        assert_eq!(site.scene.current(0).as_deref(), Some("v1"));
        let body = crate::support::load::get(site.nginx[0].addr(), "/").unwrap().text();
        assert!(body.starts_with("v1 pid="), "{body}");
    }
    site.slipway(&["deploy", "v4", "-t", TARGET]).ok();
    assert_eq!(site.scene.current(0).as_deref(), Some("v4"));
}

#[test]
fn a_failed_reload_puts_the_upstream_file_back_and_leaves_traffic_and_current_alone() {
    if nginx::skip_if_missing("service reload failure") {
        return;
    }
    let scene_flag = "reload-fails";
    let site = Site::new(1, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    // The reload fails after slipway wrote the new upstream file.
    let flag = site.scene.env.path(scene_flag);
    let toml = std::fs::read_to_string(site.scene.env.path("slipway.toml")).unwrap();
    let reload = site.nginx[0].reload_command().replace('"', "\\\"");
    let failing = format!("test ! -e {} && {reload}", flag.display());
    site.scene.env.write("slipway.toml", toml.replace(&reload, &failing));
    std::fs::write(&flag, "").unwrap();
    let before = site.upstream(0);
    let f = site.slipway(&["deploy", "v2", "-t", TARGET]).run();
    assert_ne!(f.out.status.code(), Some(0), "{f}");
    eprintln!("{f}");
    assert_said(&f, &["`reload`", "was put back; traffic is unchanged"]);
    assert_eq!(site.upstream(0), before);
    assert_eq!(site.scene.current(0).as_deref(), Some("v1"));
    let body = crate::support::load::get(site.nginx[0].addr(), "/").unwrap().text();
    assert!(body.starts_with("v1 pid="), "{body}");
    // The new instance was abandoned: only v1 runs.
    let slots = site.slots(0);
    assert!(
        slots.iter().all(|s| s.1.as_deref() != Some("v2") || s.2.is_none()),
        "{slots:?}"
    );
    std::fs::remove_file(&flag).unwrap();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    assert_eq!(site.scene.current(0).as_deref(), Some("v2"));
}

impl Site {
    /// Rewrite `[targets.prod.service]`'s extra lines (after the fixed ones).
    fn set_service_lines(&self, lines: &str) {
        let path = self.scene.env.path("slipway.toml");
        let toml = std::fs::read_to_string(&path).unwrap();
        let head = toml.split("stop_timeout = \"5s\"\n").next().unwrap();
        self.scene
            .env
            .write("slipway.toml", format!("{head}stop_timeout = \"5s\"\n{lines}"));
    }

    /// Start `slipway deploy REL`, wait until `when` holds, and kill -9 it.
    fn kill_deploy_when(&self, release: &str, what: &str, when: impl Fn() -> bool) {
        let mut child = self
            .slipway(&["deploy", release, "-t", TARGET])
            .cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        crate::support::wait_for(30, what, || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "deploy {release} ended before {what}"
            );
            when()
        });
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Wait until the host's `serve` lets the lock go: it finishes the
    /// request in flight, then notices that its client is gone.
    fn wait_unlocked(&self) {
        crate::support::wait_for(60, "the host lock to be free", || {
            let o = self.slipway(&["status", "-t", TARGET, "--json"]).run();
            serde_json::from_slice::<serde_json::Value>(&o.out.stdout).is_ok_and(|j| j[0]["lock"].is_null())
        });
    }

    /// What a user sees, checked: traffic reaches a working instance of
    /// `live`, `status` says `live` has the traffic and runs, and no
    /// instance runs that no slot names.
    fn assert_truthful(&self, live: &str) {
        crate::support::wait_for(5, &format!("{live} behind nginx"), || {
            crate::support::load::get(self.nginx[0].addr(), "/")
                .is_ok_and(|r| r.text().starts_with(&format!("{live} pid=")))
        });
        let slots = self.slots(0);
        let live_slot = slots.iter().find(|s| s.3).expect("a live slot");
        assert_eq!(live_slot.1.as_deref(), Some(live), "{slots:?}");
        assert!(live_slot.2.is_some(), "the live instance runs: {slots:?}");
        let named = slots.iter().filter(|s| s.2.is_some()).count();
        assert_eq!(
            servers_running(self),
            named,
            "every running instance is a slot's: {slots:?}"
        );
    }
}

#[test]
fn a_deploy_killed_at_each_service_step_leaves_traffic_on_a_working_instance_and_the_next_deploy_succeeds() {
    if nginx::skip_if_missing("service kill") {
        return;
    }
    let site = Site::new(
        1,
        &[
            ("v1", Mode::Ok),
            ("v2", Mode::SlowStart(Duration::from_secs(2))),
            ("v3", Mode::Ok),
            ("v4", Mode::Ok),
        ],
        "",
        &[],
    );
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let load = Load::start(&site.nginx[0].url("/"));
    load.wait_for_release("v1", 10);
    let instance = |slot: &str| site.scene.root(0).join(format!(".slipway/service/{slot}.json"));

    // Killed while v2 starts (it listens only after 2 s) and is checked.
    site.kill_deploy_when("v2", "v2 starting in slot b", || instance("b").exists());
    site.wait_unlocked();
    site.assert_truthful("v1");
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    site.assert_truthful("v2");

    // Killed while the traffic moves: the reload waits for a file.
    let moving = site.scene.env.path("moving");
    let go = site.scene.env.path("go");
    let toml = std::fs::read_to_string(site.scene.env.path("slipway.toml")).unwrap();
    let reload = site.nginx[0].reload_command().replace('"', "\\\"");
    let slow = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done; {reload}",
        moving.display(),
        go.display()
    );
    site.scene.env.write("slipway.toml", toml.replace(&reload, &slow));
    site.kill_deploy_when("v3", "the traffic to move", || moving.exists());
    std::fs::write(&go, "").unwrap();
    site.wait_unlocked();
    assert_eq!(
        site.scene.current(0).as_deref(),
        Some("v3"),
        "the switch in flight finished"
    );
    site.assert_truthful("v3");
    site.scene.env.write("slipway.toml", toml);

    // Killed while the old instance drains.
    site.set_service_lines("keep_warm = false\ndrain = \"3s\"\n");
    site.kill_deploy_when("v4", "v4 to take the traffic", || {
        site.scene.current(0).as_deref() == Some("v4")
    });
    site.wait_unlocked();
    site.assert_truthful("v4");
    site.slipway(&["deploy", "v3", "-t", TARGET]).ok();
    site.assert_truthful("v3");
    // Without keep_warm the old instance is gone after the drain.
    let slots = site.slots(0);
    assert_eq!(slots.iter().filter(|s| s.2.is_some()).count(), 1, "{slots:?}");

    std::thread::sleep(SETTLE);
    let report = load.stop();
    assert_eq!(report.failures, 0, "{report}");
}

#[test]
fn a_restricted_key_runs_only_the_hosts_own_service_definition() {
    if nginx::skip_if_missing("service restricted") {
        return;
    }
    use crate::support::sshd::Sshd;
    let env = crate::support::Env::new();
    let root = env.path("srv/app");
    let line = format!(
        "restrict,command=\"{} serve --root {}\"",
        crate::support::bin(),
        root.display()
    );
    let host = Sshd::builder().key_options(&line).start();
    let repo = env.repo("app");
    webapp::add_to(&repo, "v1", Mode::Ok).commit("v1").tag("v1");
    env.slipway().current_dir(&repo.path).args(["build", "v1"]).ok();
    // The client asks for its own commands, upstream file and ports.
    let pwned = env.path("pwned");
    let evil_upstream = env.path("evil.conf");
    let (p1, p2) = (free_port(), free_port());
    env.write(
        "slipway.toml",
        format!(
            "[targets.{TARGET}]\nhosts = [\"{}\"]\n[targets.{TARGET}.service]\nstart = \"touch {0}; bin/server\"\ncheck = \"touch {0}\"\nports = [{p1}, {p2}]\nupstream = \"{}\"\nreload = \"touch {0}\"\n",
            host.url(&root),
            evil_upstream.display(),
        )
        .replace("{0}", &pwned.display().to_string()),
    );
    let deploy = || {
        env.slipway()
            .via_ssh(host.ssh_config_path())
            .args(["deploy", "v1", "-t", TARGET])
    };
    // No service.toml on the host: refused, nothing run or written.
    let refused = deploy().fails(2);
    assert!(refused.stderr().contains(".slipway/service.toml"), "{refused}");
    assert!(!pwned.exists() && !evil_upstream.exists());
    assert!(!root.join("slots").exists());

    // The host owner's definition: it runs, the client's does not.
    let upstream = env.path("proxy/upstream.conf");
    std::fs::create_dir_all(upstream.parent().unwrap()).unwrap();
    let (a, b) = (free_port(), free_port());
    nginx::write_upstream(&upstream, a);
    let proxy = Nginx::start(&env.path("proxy/nginx"), &upstream);
    std::fs::write(
        root.join(".slipway/service.toml"),
        format!(
            "start = \"bin/server\"\ncheck = \"bin/check\"\nports = [{a}, {b}]\nupstream = \"{}\"\nreload = \"{}\"\n",
            upstream.display(),
            proxy.reload_command().replace('"', "\\\"")
        ),
    )
    .unwrap();
    deploy().ok();
    assert!(!pwned.exists() && !evil_upstream.exists());
    crate::support::wait_for(5, "v1 behind nginx", || {
        crate::support::load::get(proxy.addr(), "/").is_ok_and(|r| r.text().starts_with("v1 pid="))
    });
    // Clean up the instance (the scene's guard does not know this root).
    let inst = std::fs::read_to_string(root.join(".slipway/service/a.json")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&inst).unwrap()["pid"]
        .as_u64()
        .unwrap();
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    );
}

#[test]
fn bad_service_configuration_is_refused_naming_the_key_before_any_host_is_touched() {
    let scene = Scenario::new().ssh_hosts(1).start();
    let cases = [
        ("ports = [8081]\ncheck = \"true\"\nswitch = \"true\"\n", "service.ports"),
        (
            "ports = [8081, 8081]\ncheck = \"true\"\nswitch = \"true\"\n",
            "the two ports must differ",
        ),
        ("ports = [8081, 8082]\nswitch = \"true\"\n", "service.check"),
        ("ports = [8081, 8082]\ncheck = \"true\"\n", "service.upstream"),
        (
            "ports = [8081, 8082]\ncheck = \"true\"\nswitch = \"true\"\nupstream = \"/x\"\n",
            "not both",
        ),
        (
            "ports = [8081, 8082]\ncheck = \"true\"\nswitch = \"true\"\nprots = 1\n",
            "prots",
        ),
    ];
    for (lines, needle) in cases {
        scene.env.write(
            "slipway.toml",
            format!(
                "[targets.{TARGET}]\nhosts = [\"{}\"]\n[targets.{TARGET}.service]\nstart = \"bin/server\"\n{lines}",
                scene.label(0)
            ),
        );
        let o = scene.slipway().args(["status", "-t", TARGET]).fails(2);
        assert!(o.stderr().contains(needle), "{needle}: {o}");
        assert_eq!(o.stderr().lines().count(), 1, "{o}");
    }
    // A host entry's override of an unknown key.
    scene.env.write(
        "slipway.toml",
        format!(
            "[targets.{TARGET}]\nhosts = [{{ host = \"{}\", port = 1 }}]\n[targets.{TARGET}.service]\nstart = \"s\"\ncheck = \"c\"\nports = [1, 2]\nswitch = \"x\"\n",
            scene.label(0)
        ),
    );
    let o = scene.slipway().args(["status", "-t", TARGET]).fails(2);
    assert!(o.stderr().contains("unknown field `port`"), "{o}");
    assert!(!scene.root(0).exists(), "no host was touched");
}

#[test]
fn a_health_failure_after_the_switch_moves_traffic_back_to_the_warm_instance() {
    if nginx::skip_if_missing("service health") {
        return;
    }
    // The public check fails for v2 only (its VERSION file says so).
    let site = Site::new(
        1,
        &[("v1", Mode::Ok), ("v2", Mode::Ok)],
        "\n[targets.prod.hooks]\nhealth = \"grep -qv v2 VERSION\"\nhealth_timeout = \"1s\"\n",
        &[],
    );
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let (_, v1_pid) = site.slot_of(0, "v1");
    let load = Load::start(&site.nginx[0].url("/"));
    load.wait_for_release("v1", 10);
    let f = site.slipway(&["deploy", "v2", "-t", TARGET]).fails(3);
    assert_said(
        &f,
        &[
            "(health)",
            "every host that was switched is back on its previous release",
        ],
    );
    assert_eq!(site.scene.current(0).as_deref(), Some("v1"));
    assert_eq!(site.upstream(0), format!("server 127.0.0.1:{};\n", site.ports[0][0]));
    load.wait_for_release("v1", 10);
    std::thread::sleep(SETTLE);
    let report = load.stop();
    assert_eq!(report.failures, 0, "{report}");
    // Back on the same, warm, v1: nothing was started for the switch back,
    // and v2's instance was stopped.
    assert_eq!(site.slot_of(0, "v1"), ("a".to_string(), v1_pid));
    let slots = site.slots(0);
    assert!(
        slots.iter().all(|s| s.1.as_deref() != Some("v2") || s.2.is_none()),
        "{slots:?}"
    );
}

#[test]
fn after_a_reboot_service_status_says_what_is_not_running_and_service_start_brings_it_back() {
    if nginx::skip_if_missing("service reboot") {
        return;
    }
    let site = Site::new(1, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    // A reboot: every instance is gone.
    for pid in site.instance_pids() {
        let _ = rustix::process::kill_process_group(
            rustix::process::Pid::from_raw(pid as i32).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    crate::support::wait_for(5, "the instances to die", || servers_running(&site) == 0);
    let st = site.slipway(&["service", "status", "-t", TARGET]).fails(1);
    assert_said(&st, &["stopped", "has the traffic but is not running"]);
    // Stopping the live slot needs --force.
    site.slipway(&["service", "stop", "-t", TARGET, "--slot", "b"])
        .fails(2)
        .stderr_has("has the traffic");
    site.slipway(&["service", "start", "-t", TARGET]).ok();
    assert_eq!(servers_running(&site), 2);
    site.slipway(&["service", "status", "-t", TARGET]).ok();
    crate::support::wait_for(5, "v2 behind nginx", || {
        crate::support::load::get(site.nginx[0].addr(), "/").is_ok_and(|r| r.text().starts_with("v2 pid="))
    });
    // The warm v1 is back too: a rollback starts nothing.
    let (_, v1_pid) = site.slot_of(0, "v1");
    site.slipway(&["rollback", "-t", TARGET]).ok();
    assert_eq!(site.slot_of(0, "v1"), ("a".to_string(), v1_pid));
}

#[test]
fn a_check_answered_by_a_process_outside_the_new_instance_does_not_pass() {
    if nginx::skip_if_missing("service impostor") {
        return;
    }
    let site = Site::new(1, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    // v2's start leaves a server of another session on the port and stays
    // alive itself: the check's HTTP answer comes from outside the instance.
    let toml_path = site.scene.env.path("slipway.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    site.scene.env.write(
        "slipway.toml",
        toml.replace(
            &format!("start = \"{}\"", webapp::START),
            &format!(
                "start = \"setsid -f {} >/dev/null 2>&1; exec sleep 3600\"",
                webapp::START
            ),
        ),
    );
    let f = site.slipway(&["deploy", "v2", "-t", TARGET]).fails(3);
    assert_said(&f, &["no process of the new instance listens on port"]);
    assert_eq!(site.scene.current(0).as_deref(), Some("v1"));
    let body = crate::support::load::get(site.nginx[0].addr(), "/").unwrap().text();
    assert!(body.starts_with("v1 pid="), "{body}");
    // The impostor lives in a session of its own: end it here.
    let dir = site.scene.env.dir.path().to_path_buf();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|d| d.starts_with(&dir))
            && std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("bin/server"))
        {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

#[test]
fn a_start_that_hands_the_instance_to_a_supervisor_is_checked_and_stopped_through_stop() {
    if nginx::skip_if_missing("service supervisor") {
        return;
    }
    // Like `systemctl start shop@$SLIPWAY_SLOT`: the start command returns
    // after a while, the instance lives on under another parent, and only
    // `stop` can end it.
    let start = "sleep 0.3; setsid -f sh -c 'echo $$ > \\\"$SLIPWAY_ROOT/shared/$SLIPWAY_SLOT.pid\\\"; exec bin/server' >/dev/null 2>&1";
    let stop = "kill $(cat \\\"$SLIPWAY_ROOT/shared/$SLIPWAY_SLOT.pid\\\")";
    let site = Site::new(
        1,
        &[("v1", Mode::Ok), ("v2", Mode::Ok)],
        &format!("stop = \"{stop}\"\n"),
        &[],
    );
    let toml_path = site.scene.env.path("slipway.toml");
    let toml = std::fs::read_to_string(&toml_path).unwrap();
    site.scene.env.write(
        "slipway.toml",
        toml.replace(
            &format!("start = \"{}\"", webapp::START),
            &format!("start = \"{start}\""),
        ),
    );
    std::fs::create_dir_all(site.scene.root(0).join("shared")).unwrap();
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    crate::support::wait_for(5, "v2 behind nginx", || {
        crate::support::load::get(site.nginx[0].addr(), "/").is_ok_and(|r| r.text().starts_with("v2 pid="))
    });
    let st = site.slipway(&["service", "status", "-t", TARGET, "--json"]).ok().json();
    for s in st[0]["slots"].as_array().unwrap() {
        assert!(s["running"].is_null(), "run by its supervisor: {st}");
        assert_eq!(s["check"], true, "{st}");
    }
    // `stop` ends the supervised instance: slot a's server is gone.
    site.slipway(&["service", "stop", "-t", TARGET, "--slot", "a"]).ok();
    let slot_a = std::net::SocketAddr::from(([127, 0, 0, 1], site.ports[0][0]));
    crate::support::wait_for(5, "slot a's server to stop", || {
        crate::support::load::get(slot_a, "/").is_err()
    });
    site.slipway(&["service", "stop", "-t", TARGET, "--slot", "b", "--force"])
        .ok();
}

/// Every host's tree and history, its proxy's upstream file, and the
/// instances running: a service plan must leave all of it as it was.
fn site_state(site: &Site) -> (Vec<String>, Vec<String>, Vec<u32>, usize) {
    let trees = (0..site.ports.len())
        .map(|i| crate::plan::tree(site.scene.root(i)))
        .collect();
    let upstreams = (0..site.ports.len()).map(|i| site.upstream(i)).collect();
    let mut pids = site.instance_pids();
    pids.sort_unstable();
    (trees, upstreams, pids, servers_running(site))
}

/// `slipway service ARGS --plan --json`, asserting it changed nothing.
fn service_plan(site: &Site, args: &[&str]) -> (Outcome, serde_json::Value) {
    let before = site_state(site);
    let o = site
        .slipway(&["service"])
        .args(args)
        .args(["-t", TARGET, "--plan", "--json"])
        .run();
    assert_eq!(site_state(site), before, "the plan changed a host: {o}");
    let v = o.json();
    crate::json_doc::assert_documented(
        "slipway deploy|push|activate|rollback|prune|service … --plan --json",
        &v,
    );
    (o, v)
}

/// The `[step, slot, release]` of host `i`'s service plan.
fn planned_steps(plan: &serde_json::Value, i: usize) -> Vec<(String, String, String)> {
    plan["hosts"][i]["service"]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no service steps for host {i}: {plan:#}"))
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["slot"].as_str().unwrap().to_string(),
                s["release"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

fn steps(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn service_plan_shows_what_restart_stop_and_start_then_do_and_changes_nothing() {
    if nginx::skip_if_missing("service plan") {
        return;
    }
    let site = Site::new(2, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    let (warm, _) = site.slot_of(0, "v1");
    let (live, _) = site.slot_of(0, "v2");

    // Restart of the warm slot: stop it, then start it again, on every host.
    let (o, p) = service_plan(&site, &["restart", "--slot", &warm]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(p["command"], "service restart");
    assert_eq!(p["exit"], 0);
    for i in 0..2 {
        assert_eq!(
            planned_steps(&p, i),
            steps(&[("stop", &warm, "v1"), ("start", &warm, "v1")]),
            "{p:#}"
        );
        assert_eq!(p["hosts"][i]["steps"], serde_json::json!(["stop", "start"]));
        assert_eq!(p["hosts"][i]["service"]["live"], live.as_str());
    }
    let text = site
        .slipway(&["service", "restart", "-t", TARGET, "--slot", &warm, "--plan"])
        .ok();
    assert_said(
        &text,
        &[
            &format!("steps: stop {warm} (v1), start {warm} (v1)"),
            "the command would succeed",
            "plan id: ",
        ],
    );
    // What the restart then does: a new v1 instance in that slot, the live one untouched.
    let (_, old_pid) = site.slot_of(0, "v1");
    let (_, live_pid) = site.slot_of(0, "v2");
    site.slipway(&["service", "restart", "-t", TARGET, "--slot", &warm])
        .ok();
    let (slot, new_pid) = site.slot_of(0, "v1");
    assert_eq!(slot, warm);
    assert!(new_pid.is_some() && new_pid != old_pid, "{old_pid:?} -> {new_pid:?}");
    assert_eq!(site.slot_of(0, "v2").1, live_pid);

    // Stopping the live slot is refused: the plan exits 2 as the command does.
    let (o, p) = service_plan(&site, &["stop", "--slot", &live]);
    assert_eq!(o.out.status.code(), Some(2), "{o}");
    assert_eq!(p["exit"], 2);
    assert_eq!(p["hosts"][0]["exit"], 2);
    assert!(
        p["hosts"][0]["refused"].as_str().unwrap().contains("has the traffic"),
        "{p:#}"
    );
    site.slipway(&["service", "stop", "-t", TARGET, "--slot", &live])
        .fails(2)
        .stderr_has("has the traffic");
    // With --force it would stop the live instance: that is the plan, nothing more.
    let (o, p) = service_plan(&site, &["stop", "--slot", &live, "--force"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(planned_steps(&p, 1), steps(&[("stop", &live, "v2")]));

    // Stop the warm slot on one host; the plan of `start` then starts just that one.
    let (_, p) = service_plan(&site, &["stop", "--slot", &warm]);
    assert_eq!(planned_steps(&p, 0), steps(&[("stop", &warm, "v1")]));
    site.slipway(&[
        "service",
        "stop",
        "-t",
        TARGET,
        "--slot",
        &warm,
        "--hosts",
        site.scene.label(0),
    ])
    .ok();
    assert_eq!(servers_running(&site), 3);
    let (o, p) = service_plan(&site, &["start"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(planned_steps(&p, 0), steps(&[("start", &warm, "v1")]), "{p:#}");
    assert_eq!(planned_steps(&p, 1), steps(&[]), "{p:#}");
    site.slipway(&["service", "start", "-t", TARGET]).ok();
    assert_eq!(servers_running(&site), 4);
    let (_, p) = service_plan(&site, &["start"]);
    assert_eq!(planned_steps(&p, 0), steps(&[]), "{p:#}");
}

#[test]
fn service_expect_plan_refuses_once_a_slot_changed_and_goes_through_when_nothing_did() {
    if nginx::skip_if_missing("service expect-plan") {
        return;
    }
    let site = Site::new(1, &[("v1", Mode::Ok), ("v2", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    site.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    let (warm, _) = site.slot_of(0, "v1");
    let (_, p) = service_plan(&site, &["stop", "--slot", &warm]);
    let approved = p["plan"].as_str().unwrap().to_string();
    // Someone restarts the warm instance in between: its pid is not the one planned.
    site.slipway(&["service", "restart", "-t", TARGET, "--slot", &warm])
        .ok();
    let before = site_state(&site);
    let refused = site
        .slipway(&[
            "service",
            "stop",
            "-t",
            TARGET,
            "--slot",
            &warm,
            "--expect-plan",
            &approved,
        ])
        .fails(6);
    refused.stderr_has(&format!("not {approved} (--expect-plan)"));
    assert_eq!(
        site_state(&site),
        before,
        "a refused --expect-plan changed a host: {refused}"
    );
    // The plan as it is now goes through, and does what it said.
    let (_, p) = service_plan(&site, &["stop", "--slot", &warm]);
    let now = p["plan"].as_str().unwrap().to_string();
    assert_ne!(now, approved);
    site.slipway(&["service", "stop", "-t", TARGET, "--slot", &warm, "--expect-plan", &now])
        .ok();
    assert_eq!(servers_running(&site), 1);
}

#[test]
fn service_plan_with_the_host_locked_or_no_release_in_the_slot_exits_as_the_command_would() {
    if nginx::skip_if_missing("service plan refusals") {
        return;
    }
    let site = Site::new(1, &[("v1", Mode::Ok)], "", &[]);
    site.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let (live, _) = site.slot_of(0, "v1");
    let empty = if live == "a" { "b" } else { "a" };
    // A slot that holds no release: restart stops nothing there and refuses the start (exit 2).
    let (o, p) = service_plan(&site, &["restart", "--slot", empty]);
    assert_eq!(o.out.status.code(), Some(2), "{o}");
    assert!(
        p["hosts"][0]["refused"].as_str().unwrap().contains("holds no release"),
        "{p:#}"
    );
    site.slipway(&["service", "restart", "-t", TARGET, "--slot", empty])
        .fails(2)
        .stderr_has("holds no release");
    // A held lock: the plan exits 4 as the command does, and leaves the lock alone.
    let release = site.scene.env.path("release-lock");
    let _holder = crate::support::hold_lock(site.scene.root(0), &release);
    crate::support::wait_for(5, "the lock to be held", || {
        Command::new("flock")
            .args(["-n"])
            .arg(site.scene.root(0).join(".slipway/lock"))
            .arg("true")
            .status()
            .is_ok_and(|s| !s.success())
    });
    let (o, p) = service_plan(&site, &["restart", "--slot", &live, "--force"]);
    assert_eq!(o.out.status.code(), Some(4), "{o}");
    assert!(
        p["hosts"][0]["refused"].as_str().unwrap().contains("alice@laptop"),
        "{p:#}"
    );
    site.slipway(&["service", "restart", "-t", TARGET, "--slot", &live, "--force"])
        .fails(4);
    std::fs::write(&release, "").unwrap();
}
