//! The pieces service-slot tests stand on, proven without slipway: a real
//! nginx whose upstream file is rewritten and reloaded moves traffic from
//! one instance of the web service to another without failing a request
//! (and refuses a broken file, keeping traffic where it was); the load
//! client does count failures; the web service behaves as each `MODE` says.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::support::load::{self, Load, LoadReport};
use crate::support::nginx::{self, Nginx};
use crate::support::sshd::alive;
use crate::support::webapp::{self, Instance, Mode};
use crate::support::{Env, wait_for};

/// After a reload returned, requests sent this much later all reach the new
/// upstream (nginx retires its old worker about 100 ms after starting the new one).
const SETTLE: Duration = Duration::from_secs(1);

/// Two instances (v1, v2) of the web service, each from its own tree.
fn two_instances(env: &Env) -> (Instance, Instance) {
    webapp::write_tree(&env.path("v1"), "v1", Mode::Ok);
    webapp::write_tree(&env.path("v2"), "v2", Mode::Ok);
    (Instance::start(&env.path("v1")), Instance::start(&env.path("v2")))
}

/// Every 200 response in `report` came from `release` served by `instance`
/// (its body names that process, its `X-Upstream` that address).
fn assert_served_by(report: &LoadReport, since: Instant, until: Instant, release: &str, instance: &Instance) {
    let body = format!("{release} pid={}\n", instance.pid());
    let upstream = instance.addr().to_string();
    for s in report.samples.iter().filter(|s| s.sent >= since && s.done <= until) {
        let r = s.outcome.as_ref().expect("no failures (asserted before)");
        assert_eq!(
            (r.text(), r.headers.get("x-upstream")),
            (body.clone(), Some(&upstream)),
            "a request sent {:.3} s after the switch to {release}\n{report}",
            s.sent.saturating_duration_since(since).as_secs_f64(),
        );
    }
}

#[test]
fn proxy_reload_moves_traffic_to_the_new_upstream_and_back_failing_no_request() {
    if nginx::skip_if_missing("proxy_reload_moves_traffic") {
        return;
    }
    let env = Env::new();
    let (a, b) = two_instances(&env);
    let upstream = env.path("upstream.conf");
    nginx::write_upstream(&upstream, a.port());
    let nginx = Nginx::start(&env.path("nginx"), &upstream);

    let load = Load::start(&nginx.url("/"));
    load.wait_for_release("v1", 10);
    load.wait_requests(20, 10);

    // A -> B, then B -> A: each switch is a rewrite of the file and a reload.
    let mut switches = Vec::new();
    for (n, (release, to)) in [("v2", &b), ("v1", &a)].into_iter().enumerate() {
        nginx::write_upstream(&upstream, to.port());
        nginx.reload();
        let returned = Instant::now();
        nginx.wait_reloaded(n + 1, 10);
        let reloaded = returned.elapsed();
        load.wait_for_release(release, 10);
        wait_for(10, "the switch to settle", || returned.elapsed() >= SETTLE);
        load.wait_requests(20, 10);
        switches.push((release, returned, reloaded));
    }
    let end = Instant::now();
    let report = load.stop();
    eprintln!("{report}");
    assert_eq!(report.failures, 0, "{report}");
    assert!(report.saw("v1") && report.saw("v2"), "{report}");

    // Requests sent once the switch settled reached the new instance only.
    assert_served_by(&report, switches[0].1 + SETTLE, switches[1].1, "v2", &b);
    assert_served_by(&report, switches[1].1 + SETTLE, end, "v1", &a);
    let next = [switches[1].1, end];
    for ((release, returned, reloaded), next) in switches.iter().zip(next) {
        let left = if *release == "v2" { "v1" } else { "v2" };
        let last_old = report
            .samples
            .iter()
            .rfind(|s| s.sent >= *returned && s.sent < next && s.release() == Some(left))
            .map(|s| s.sent.duration_since(*returned));
        let first_new = report
            .first_from(release, *returned)
            .map(|s| s.sent.duration_since(*returned));
        eprintln!(
            "switch to {release}: reload returned, nginx reloaded {} ms later; \
             last request to {left} sent {last_old:?} after, first to {release} {first_new:?} after",
            reloaded.as_millis()
        );
    }
    assert_eq!(nginx.reloads(), 2, "{}", nginx.error_log());
}

#[test]
fn proxy_reload_refuses_a_broken_upstream_file_and_traffic_stays() {
    if nginx::skip_if_missing("proxy_reload_refuses_a_broken_upstream_file") {
        return;
    }
    let env = Env::new();
    let (a, _b) = two_instances(&env);
    let upstream = env.path("upstream.conf");
    nginx::write_upstream(&upstream, a.port());
    let nginx = Nginx::start(&env.path("nginx"), &upstream);
    let load = Load::start(&nginx.url("/"));
    load.wait_for_release("v1", 10);

    nginx::write_atomic(&upstream, "server 127.0.0.1:notaport;\n");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(nginx.reload_command())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken upstream file reloaded: {stderr}");
    assert!(stderr.contains("nginx: [emerg] invalid port"), "{stderr}");
    assert!(stderr.contains(upstream.to_str().unwrap()), "{stderr}");

    load.wait_requests(30, 10);
    let report = load.stop();
    assert_eq!(report.failures, 0, "{report}");
    assert_eq!(report.per_release.keys().collect::<Vec<_>>(), ["v1"], "{report}");
    assert_eq!(nginx.reloads(), 0, "{}", nginx.error_log());
}

#[test]
fn proxy_load_counts_the_failures_of_a_dead_upstream() {
    if nginx::skip_if_missing("proxy_load_counts_the_failures_of_a_dead_upstream") {
        return;
    }
    let env = Env::new();
    let (mut a, _b) = two_instances(&env);
    let upstream = env.path("upstream.conf");
    nginx::write_upstream(&upstream, a.port());
    let nginx = Nginx::start(&env.path("nginx"), &upstream);
    let load = Load::start(&nginx.url("/"));
    load.wait_for_release("v1", 10);
    a.kill();
    load.wait_requests(10, 10);
    let report = load.stop();
    assert!(report.failures >= 10, "{report}");
    // The request in flight at the kill may fail otherwise (nginx already
    // forwarded the headers: a partial body); those after it are nginx's 502s.
    assert!(report.first_failures.last().unwrap().contains("status 502"), "{report}");
    assert_eq!(report.total, report.per_release["v1"] + report.failures, "{report}");
}

#[test]
fn proxy_nginx_stops_with_its_workers_when_dropped() {
    if nginx::skip_if_missing("proxy_nginx_stops_with_its_workers_when_dropped") {
        return;
    }
    let env = Env::new();
    let upstream = env.path("upstream.conf");
    nginx::write_upstream(&upstream, crate::support::free_port());
    let nginx = Nginx::start(&env.path("nginx"), &upstream);
    let master = nginx.pid();
    let workers = crate::support::sshd::descendants(master);
    assert_eq!(workers.len(), 1, "worker_processes 1");
    // Nothing listens upstream: nginx answers 502 itself.
    let r = load::get(nginx.addr(), "/").unwrap();
    assert_eq!(r.status, 502);
    let port = nginx.port();
    drop(nginx);
    for pid in workers.iter().chain([&master]) {
        assert!(!alive(*pid), "nginx process {pid} outlived its guard");
    }
    assert!(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
        "port {port} still answers"
    );
}

// -------------------------------------------------------------- the web service

#[test]
fn proxy_webapp_answers_its_release_and_pid_and_its_check_passes() {
    let env = Env::new();
    webapp::write_tree(&env.path("v1"), "v1", Mode::Ok);
    let a = Instance::start(&env.path("v1"));
    assert!(
        a.stderr().contains(&format!("listening on {}", a.port())),
        "{}",
        a.stderr()
    );
    let r = load::get(a.addr(), "/").unwrap();
    assert_eq!((r.status, r.text()), (200, format!("v1 pid={}\n", a.pid())));
    let r = load::get(a.addr(), "/health").unwrap();
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()));
    let (status, stderr) = webapp::check(&env.path("v1"), a.port());
    assert!(status.success(), "{stderr}");

    // Nothing on the port: the check fails, saying so in one line.
    let pid = a.pid();
    let port = a.port();
    drop(a);
    assert!(!alive(pid), "the instance outlived its guard");
    let (status, stderr) = webapp::check(&env.path("v1"), port);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("check: http://127.0.0.1:{port}/health: [Errno 111] Connection refused\n")
    );
}

#[test]
fn proxy_webapp_fail_check_serves_but_fails_its_check() {
    let env = Env::new();
    webapp::write_tree(&env.path("v2"), "v2", Mode::FailCheck);
    let a = Instance::start(&env.path("v2"));
    let r = load::get(a.addr(), "/").unwrap();
    assert_eq!((r.status, r.text()), (200, format!("v2 pid={}\n", a.pid())));
    assert_eq!(load::get(a.addr(), "/health").unwrap().status, 500);
    let (status, stderr) = webapp::check(&env.path("v2"), a.port());
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!("check: http://127.0.0.1:{}/health answered 500\n", a.port())
    );
}

#[test]
fn proxy_webapp_exit_and_hang_never_listen() {
    let env = Env::new();
    webapp::write_tree(&env.path("hang"), "v3", Mode::Hang);
    webapp::write_tree(&env.path("exit"), "v4", Mode::Exit);
    let hang_port = crate::support::free_port();
    let started = Instant::now();
    let mut hang = Instance::spawn(&env.path("hang"), hang_port, &[]);

    let mut exit = Instance::spawn(&env.path("exit"), crate::support::free_port(), &[]);
    let status = exit.wait_exit(Duration::from_secs(5)).expect("MODE exit exits");
    assert_eq!(status.code(), Some(1));
    assert_eq!(exit.stderr(), "server: refusing to start (MODE exit)\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "exit took {:?}",
        started.elapsed()
    );

    let err = hang
        .wait_listening(Duration::from_secs(2).saturating_sub(started.elapsed()))
        .unwrap_err();
    assert!(err.contains("not listening"), "{err}");
    assert!(hang.try_wait().is_none(), "MODE hang exited: {}", hang.stderr());
    assert!(TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], hang_port))).is_err());
    assert_eq!(hang.stderr(), "server: hanging before listening (MODE hang)\n");
    let pid = hang.pid();
    drop(hang);
    assert!(!alive(pid), "the hanging instance outlived its guard");
}

#[test]
fn proxy_webapp_slow_start_listens_late() {
    let env = Env::new();
    let tree = env.path("slow");
    webapp::write_tree(&tree, "v5", Mode::SlowStart(Duration::from_millis(700)));
    let started = Instant::now();
    let a = Instance::start(&tree);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(load::get(a.addr(), "/health").unwrap().status, 200);
}

#[test]
fn proxy_webapp_stops_on_sigterm_unless_told_to_ignore_it() {
    let env = Env::new();
    webapp::write_tree(&env.path("ok"), "v1", Mode::Ok);
    webapp::write_tree(&env.path("stubborn"), "v6", Mode::IgnoreTerm);
    let mut ok = Instance::start(&env.path("ok"));
    let mut stubborn = Instance::start(&env.path("stubborn"));
    ok.signal(Signal::TERM);
    stubborn.signal(Signal::TERM);
    let status = ok.wait_exit(Duration::from_secs(5)).expect("exits on SIGTERM");
    assert_eq!(status.code(), Some(0));
    assert!(
        ok.stderr().ends_with("server: stopping on SIGTERM\n"),
        "{}",
        ok.stderr()
    );
    assert_eq!(stubborn.wait_exit(Duration::from_millis(300)), None);
    assert_eq!(load::get(stubborn.addr(), "/health").unwrap().status, 200);
}

#[test]
fn proxy_webapp_write_appends_to_the_data_file() {
    let env = Env::new();
    webapp::write_tree(&env.path("v1"), "v1", Mode::Ok);
    let data = env.path("data.log");
    let a = Instance::start_env(&env.path("v1"), &[("APP_DATA_FILE", data.to_str().unwrap())]);
    assert_eq!(load::get(a.addr(), "/data").unwrap().status, 404);
    for line in ["first", "second"] {
        let r = load::post(a.addr(), "/write", line.as_bytes()).unwrap();
        assert_eq!((r.status, r.text()), (200, format!("wrote {} bytes\n", line.len())));
    }
    assert_eq!(std::fs::read_to_string(&data).unwrap(), "first\nsecond\n");
    assert_eq!(load::get(a.addr(), "/data").unwrap().text(), "first\nsecond\n");

    // Without APP_DATA_FILE: the host's shared directory.
    let root = env.path("root");
    std::fs::create_dir_all(root.join("shared")).unwrap();
    let b = Instance::start_env(&env.path("v1"), &[("SLIPWAY_ROOT", root.to_str().unwrap())]);
    assert_eq!(load::post(b.addr(), "/write", b"third").unwrap().status, 200);
    assert_eq!(
        std::fs::read_to_string(root.join("shared/app-data.log")).unwrap(),
        "third\n"
    );
}
