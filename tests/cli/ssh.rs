//! The SSH transport, over a real sshd on loopback: bytes round-trip at a
//! decent rate, arguments arrive quoted, the operator's ssh config and host
//! keys apply, and a refused, silent or unauthenticated connection, an
//! unknown host key or a missing remote slipway is one line naming the host
//! (a refusal within the connect timeout, a silence soon after it).
//!
//! These tests drive the transport through the library
//! (`slipway::remote::connect`) with a stand-in remote command: a script
//! that ignores its arguments and echoes stdin back. The CLI tests reach
//! sshd through the same harness with `Cmd::via_ssh`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use slipway::config::LinkMode;
use slipway::remote::{Connection, HostSpec, connect, parse_ssh_url};

use crate::support::Env;
use crate::support::sshd::{self, Sshd};

/// A host spec for `url` with `remote_bin`, as `resolve_target` would build it.
fn spec(url: &str, config: PathBuf, remote_bin: &str) -> HostSpec {
    HostSpec {
        label: "app1".into(),
        target: "app1".into(),
        location: parse_ssh_url(url).expect("valid url"),
        remote_bin: remote_bin.into(),
        ssh_config: Some(config),
        connect_timeout: Duration::from_secs(5),
        link_mode: LinkMode::default(),
        service: slipway::config::ServiceMode::None,
    }
}

/// An executable script in the test directory, to stand in for `slipway`.
fn script(env: &Env, name: &str, body: &str) -> String {
    let p = env.write(name, format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p.to_string_lossy().into_owned()
}

fn echo_script(env: &Env) -> String {
    script(env, "echo-serve", "exec cat")
}

fn connect_err(spec: &HostSpec) -> (String, Duration) {
    let t = Instant::now();
    match connect(spec) {
        Ok(_) => panic!("connecting to {:?} should fail", spec.location),
        Err(e) => (e.to_string(), t.elapsed()),
    }
}

fn assert_one_line(msg: &str) {
    assert!(!msg.contains('\n') && !msg.contains('\r'), "not one line: {msg:?}");
}

/// Send `data` and read it back through a connection to an echo command.
fn echo_round_trip(conn: Connection, data: Vec<u8>) -> Vec<u8> {
    let Connection {
        mut reader,
        mut writer,
        mut process,
    } = conn;
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("write to the remote command");
        // Dropping the writer closes the remote stdin: `cat` exits.
    });
    let mut back = Vec::new();
    reader.read_to_end(&mut back).expect("read from the remote command");
    sender.join().expect("sender thread");
    process.finish().expect("the remote command exits 0");
    back
}

#[test]
fn bytes_round_trip_through_a_host_alias_at_a_decent_rate() {
    let env = Env::new();
    let host = Sshd::start();
    // `sshhost-N` resolves only through the ssh config: the host part went to ssh verbatim.
    let spec = spec(&host.url("/srv/app"), host.ssh_config_path(), &echo_script(&env));
    let conn = connect(&spec).unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", host.log()));

    let mb: usize = std::env::var("SLIPWAY_TEST_SSH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let chunk: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut data = Vec::with_capacity(mb * chunk.len());
    for i in 0..mb {
        data.extend_from_slice(&chunk);
        let at = data.len() - chunk.len();
        data[at..at + 8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    let expected_len = data.len();
    let expected_head = data[..1 << 20].to_vec();
    let expected_tail = data[data.len() - (1 << 20)..].to_vec();

    let t = Instant::now();
    let back = echo_round_trip(conn, data);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(back.len(), expected_len, "every byte comes back");
    assert!(back[..1 << 20] == expected_head[..] && back[back.len() - (1 << 20)..] == expected_tail[..]);
    for (i, c) in back.chunks(chunk.len()).enumerate() {
        assert_eq!(&c[..8], &(i as u64).to_le_bytes(), "chunk {i} out of order");
        assert!(c[8..] == chunk[8..], "chunk {i} corrupted");
    }
    let rate = mb as f64 / secs;
    eprintln!("ssh round trip: {mb} MB in {secs:.2}s = {rate:.0} MB/s each way");
    assert!(rate > 10.0, "{mb} MB round trip took {secs:.1}s ({rate:.1} MB/s)");
}

#[test]
fn arguments_reach_the_remote_command_quoted() {
    let env = Env::new();
    let host = Sshd::start();
    let args = script(&env, "print-args", "printf '%s|' \"$@\"");
    let root = "/srv/it's a $HOME `root`";
    let spec = spec(&host.url(root), host.ssh_config_path(), &args);
    let Connection {
        mut reader,
        writer,
        mut process,
    } = connect(&spec).expect("connect");
    drop(writer);
    let mut out = String::new();
    reader.read_to_string(&mut out).expect("read");
    process.finish().expect("exit 0");
    assert_eq!(out, format!("serve|--root|{root}|--trust-client|"));
}

#[test]
fn connection_refused_is_one_line_naming_the_host_within_the_timeout() {
    let mut host = Sshd::start();
    let port = host.port();
    host.stop();
    let spec = spec(&host.url("/srv/app"), host.ssh_config_path(), "slipway");
    let (msg, took) = connect_err(&spec);
    assert_eq!(
        msg,
        format!("app1: cannot connect: ssh: connect to host 127.0.0.1 port {port}: Connection refused")
    );
    assert!(took < spec.connect_timeout, "took {took:?}");
}

#[test]
fn a_silent_server_times_out_after_the_connect_timeout_not_much_later() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = env.write("ssh_config", "Host *\n  BatchMode yes\n  StrictHostKeyChecking yes\n");
    let mut spec = spec(&format!("ssh://127.0.0.1:{port}/srv/app"), config, "slipway");
    spec.connect_timeout = Duration::from_secs(1);
    let (msg, took) = connect_err(&spec);
    assert_one_line(&msg);
    assert!(
        msg.starts_with("app1: cannot connect: ") && msg.contains("timed out"),
        "{msg}"
    );
    // It waited for the timeout, and gave up within 1.5 s of it.
    assert!(
        took >= spec.connect_timeout && took < spec.connect_timeout + Duration::from_millis(1500),
        "took {took:?}: {msg}"
    );
    drop(listener);
}

#[test]
fn a_missing_ssh_config_is_named() {
    let env = Env::new();
    let missing = env.path("no/such/ssh_config");
    let (msg, _) = connect_err(&spec("ssh://app1.example/srv/app", missing.clone(), "slipway"));
    assert_eq!(
        msg,
        format!(
            "app1: cannot connect: ssh: Can't open user config file {}: No such file or directory",
            missing.display()
        )
    );
}

#[test]
fn authentication_failure_is_one_line_naming_the_host() {
    let host = Sshd::start();
    host.deauthorize();
    let spec = spec(&host.url("/srv/app"), host.ssh_config_path(), "slipway");
    let (msg, _) = connect_err(&spec);
    assert_eq!(
        msg,
        format!(
            "app1: cannot connect: ssh: {}@127.0.0.1: Permission denied (publickey).",
            host.user()
        )
    );
}

#[test]
fn the_operators_strict_host_key_checking_applies() {
    // openssh's builder default would be accept-new; the config says `yes`.
    let env = Env::new();
    let host = Sshd::start();
    let unknown = host
        .config_block()
        .replace(&host.known_hosts_path().display().to_string(), "/dev/null");
    let config = env.write("strict_config", unknown);
    let (msg, _) = connect_err(&spec(&host.url("/srv/app"), config, "slipway"));
    assert_one_line(&msg);
    assert!(
        msg.starts_with("app1: cannot connect: ssh: ") && msg.ends_with("Host key verification failed."),
        "{msg}"
    );

    // An operator who chose accept-new gets it: the key lands in their file.
    let known = env.write("known_hosts_new", "");
    let lenient = host
        .config_block()
        .replace(
            &host.known_hosts_path().display().to_string(),
            &known.display().to_string(),
        )
        .replace("StrictHostKeyChecking yes", "StrictHostKeyChecking accept-new");
    let config = env.write("lenient_config", lenient);
    let back = echo_round_trip(
        connect(&spec(&host.url("/srv/app"), config, &echo_script(&env))).expect("accept-new connects"),
        b"hello".to_vec(),
    );
    assert_eq!(back, b"hello");
    let recorded = std::fs::read_to_string(&known).expect("read known_hosts");
    assert!(recorded.contains(&format!("[127.0.0.1]:{}", host.port())), "{recorded}");
}

#[test]
fn url_user_and_port_override_the_ssh_config() {
    let env = Env::new();
    let host = Sshd::start();
    let echo = echo_script(&env);
    let config = host.ssh_config_path();
    let ok = format!("ssh://{}@{}:{}/srv/app", host.user(), host.alias(), host.port());
    let back = echo_round_trip(
        connect(&spec(&ok, config.clone(), &echo)).expect("connect"),
        b"x".to_vec(),
    );
    assert_eq!(back, b"x");

    let (msg, _) = connect_err(&spec(
        &format!("ssh://nobody-here@{}/srv/app", host.alias()),
        config.clone(),
        &echo,
    ));
    assert!(msg.contains("nobody-here@127.0.0.1: Permission denied"), "{msg}");

    let mut stopped = Sshd::start();
    let port = stopped.port();
    stopped.stop();
    let (msg, _) = connect_err(&spec(&format!("ssh://{}:{port}/srv/app", host.alias()), config, &echo));
    assert!(msg.ends_with(&format!("port {port}: Connection refused")), "{msg}");
}

#[test]
fn a_missing_remote_slipway_says_what_to_do() {
    let host = Sshd::start();
    let spec = spec(&host.url("/srv/app"), host.ssh_config_path(), "/nonexistent/slipway");
    let Connection {
        mut reader,
        writer,
        mut process,
    } = connect(&spec).expect("the session starts; the shell reports the missing command");
    drop(writer);
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("read");
    assert!(out.is_empty());
    let msg = process.finish().expect_err("exit 127").to_string();
    assert_one_line(&msg);
    assert!(
        msg.starts_with("app1: `/nonexistent/slipway` was not found on the host (exit 127)")
            && msg.ends_with(
                "; install slipway there (`slipway host install -t app1`), or set SLIPWAY_REMOTE_BIN or the target's `remote_bin` to its path"
            ),
        "{msg}"
    );
}

#[test]
fn a_failing_remote_command_reports_its_status_and_last_stderr_line() {
    let env = Env::new();
    let host = Sshd::start();
    let fail = script(
        &env,
        "fail",
        "echo starting >&2; echo 'error: cannot lock `/srv/app`' >&2; exit 3",
    );
    let Connection {
        writer, mut process, ..
    } = connect(&spec(&host.url("/srv/app"), host.ssh_config_path(), &fail)).expect("connect");
    drop(writer);
    let msg = process.finish().expect_err("exit 3").to_string();
    assert_eq!(
        msg,
        format!("app1: `{fail} serve` exited with status 3: cannot lock `/srv/app`")
    );
    assert!(process.stderr_text().contains("starting"));
}

#[test]
fn kill_unblocks_a_waiting_reader() {
    let env = Env::new();
    let host = Sshd::start();
    let Connection {
        mut reader,
        writer,
        mut process,
    } = connect(&spec(&host.url("/srv/app"), host.ssh_config_path(), &echo_script(&env))).expect("connect");
    let blocked = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        reader.read(&mut buf)
    });
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    process.kill();
    let read = blocked.join().expect("reader thread");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "kill took {:?}", t.elapsed());
    let msg = process.finish().expect_err("killed").to_string();
    assert!(msg.starts_with("app1: ") && msg.contains("was stopped"), "{msg}");
    drop(writer);
}

#[test]
fn several_servers_at_once_and_none_left_behind() {
    let env = Env::new();
    let a = Sshd::start();
    let b = Sshd::start();
    let config = sshd::write_ssh_config(&env.path("fleet_config"), &[&a, &b]);
    let echo = echo_script(&env);
    let ca = connect(&spec(&a.url("/srv/app"), config.clone(), &echo)).expect("connect a");
    let cb = connect(&spec(&b.url("/srv/app"), config, &echo)).expect("connect b");

    // A session open on `a` while it is stopped: the listener and the session go.
    let listener = a.pid();
    let sessions = sshd::descendants(listener);
    assert!(!sessions.is_empty(), "a has a connection");
    assert_eq!(echo_round_trip(cb, b"to b".to_vec()), b"to b");
    drop(a);
    assert!(!sshd::alive(listener), "listener {listener} still runs");
    // SIGKILL is delivered at once, but dying takes a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left: Vec<u32> = sessions;
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left.retain(|p| sshd::alive(*p));
    }
    assert!(left.is_empty(), "sessions left behind: {left:?}");
    drop(ca);
    drop(b);
}
