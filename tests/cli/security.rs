//! The forced-command `authorized_keys` line of docs/security.md, on a real
//! sshd: the key can push and activate, cannot get a shell, cannot run
//! another command, cannot reach another root, and with `--append-only`
//! cannot prune.

use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use slipway::protocol::{Channel, HookRequest, Message, Peer};

use crate::support::sshd::Sshd;
use crate::support::{Env, bin, write_file};

fn ssh(host: &Sshd, remote: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-F")
        .arg(host.ssh_config_path())
        .arg(host.alias())
        .arg(remote)
        .output()
        .unwrap()
}

#[test]
fn a_forced_command_key_can_deploy_but_do_nothing_else() {
    let env = Env::new();
    let root = env.path("srv/app");
    let other = env.path("srv/other");
    let line = format!("restrict,command=\"{} serve --root {}\"", bin(), root.display());
    let host = Sshd::builder().key_options(&line).start();
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
    }
    let url = host.url(&root);
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["deploy", "v1", "-t", &url])
        .ok();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["deploy", "v2", "-t", &url])
        .ok();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["rollback", "-t", &url])
        .ok();
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap().to_string_lossy(),
        "releases/v1"
    );

    // another root: refused, nothing created there
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "v1", "-t", &host.url(&other)])
        .fails(2)
        .one_line_error()
        .stderr_has(&format!(
            ": this key is restricted to the root `{0}`; the client asked for `{1}`: point the target at `{0}`, \
             or use a key allowed there\n",
            root.display(),
            other.display()
        ));
    assert!(!other.exists());

    // no shell, no other command
    let out = ssh(&host, "echo pwned; cat /etc/passwd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.lines().any(|l| l == "pwned") && !text.contains("root:x:0:0"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("this key may only run `slipway serve"),
        "{out:?}"
    );

    // the client's hooks never run on a forced-command host: only the host's own
    env.write(
        "slipway.toml",
        format!(
            "[targets.p]\nhosts = [\"{url}\"]\n[targets.p.hooks]\nafter_activate = \"touch {}\"\n",
            env.path("client-hook-ran").display()
        ),
    );
    std::fs::write(
        root.join(".slipway/hooks.toml"),
        format!("after_activate = \"touch {}\"\n", env.path("host-hook-ran").display()),
    )
    .unwrap();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["activate", "v2", "-t", "p"])
        .ok();
    assert!(!env.path("client-hook-ran").exists(), "client hook must not run");
    assert!(env.path("host-hook-ran").exists(), "host hook runs");
}

#[test]
fn an_append_only_key_cannot_prune() {
    let env = Env::new();
    let root = env.path("srv/app");
    let line = format!(
        "restrict,command=\"{} serve --root {} --append-only\"",
        bin(),
        root.display()
    );
    let host = Sshd::builder().key_options(&line).start();
    let url = host.url(&root);
    let names = ["v1", "v2", "v3", "v4"];
    for name in names {
        write_file(&env.path(&format!("{name}/index.html")), name.as_bytes());
        env.slipway().args(["build", "--dir", name, "--name", name]).ok();
        env.slipway()
            .via_ssh(host.ssh_config_path())
            .args(["deploy", name, "-t", &url])
            .ok();
    }
    // With `keep = 0`, v1 and v2 (neither current nor the rollback target)
    // are what a prune removes: a plain `serve` of the same root says so.
    let plan = env
        .slipway()
        .args(["prune", "--keep", "0", "--dry-run", "--json", "-t"])
        .arg(&root)
        .ok()
        .json();
    assert_eq!(plan[0]["releases"], serde_json::json!(["v1", "v2"]), "{plan}");
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["prune", "--keep", "0", "-t", &url])
        .fails(1)
        .stderr_has(&format!(
            "error: {url}: `{}` is served with `--append-only`: prune and every deletion are refused; \
             prune with a key whose `slipway serve` lacks `--append-only`\n",
            root.display()
        ));
    for name in names {
        assert!(root.join("releases").join(name).is_dir(), "{name} was pruned");
        assert!(root.join(format!(".slipway/releases/{name}.json")).is_file());
    }
}

/// How a raw client reaches a forced-command key.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// `ssh -T host`: a shell request; sshd sets no `SSH_ORIGINAL_COMMAND`.
    Shell,
    /// `ssh host 'slipway serve --root R --trust-client'`: an exec request
    /// that claims the trust a forced command must never grant.
    ExecClaimingTrust,
    /// `ssh -s host sftp`: a subsystem request.
    Subsystem,
}

/// A hand-written protocol session through `ssh` itself, greeted.
fn raw_ssh(host: &Sshd, root: &Path, how: Request) -> (Child, Channel<ChildStdout, ChildStdin>) {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(host.ssh_config_path());
    match how {
        Request::Shell => {
            cmd.arg("-T").arg(host.alias());
        }
        Request::ExecClaimingTrust => {
            cmd.arg(host.alias())
                .arg(format!("slipway serve --root {} --trust-client", root.display()));
        }
        Request::Subsystem => {
            cmd.arg("-s").arg(host.alias()).arg("sftp");
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ch = Channel::new(child.stdout.take().unwrap(), child.stdin.take().unwrap(), Peer::Host);
    ch.send(&Message::hello()).unwrap();
    assert_eq!(ch.recv().unwrap(), Message::hello(), "{how:?}");
    (child, ch)
}

/// A hook request as a hostile client writes it: its own command, its own
/// `SLIPWAY_ROOT`, and a retry budget of 31 years.
fn hostile_hook(kind: &str, release: &str, command: &str) -> Message {
    let mut env = std::collections::BTreeMap::new();
    env.insert("SLIPWAY_ROOT".to_string(), "/tmp/chosen-by-the-client".to_string());
    env.insert("SLIPWAY_RELEASE".to_string(), "../../elsewhere".to_string());
    Message::Hook(Box::new(HookRequest {
        kind: kind.into(),
        release: release.into(),
        command: command.into(),
        env,
        timeout_ms: 1_000_000_000_000_000,
        retry_for_ms: 1_000_000_000_000_000,
        undo: Some(format!("{command} # undo")),
        again: true,
        stream: true,
    }))
}

#[test]
fn a_restricted_key_runs_no_client_command_whatever_the_request() {
    for options in ["", " --append-only"] {
        let env = Env::new();
        let root = env.path("srv/app");
        let line = format!(
            "restrict,command=\"{} serve --root {}{options}\"",
            bin(),
            root.display()
        );
        let host = Sshd::builder().key_options(&line).start();
        for v in ["v1", "v2"] {
            write_file(&env.path("site/index.html"), v.as_bytes());
            env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
            env.slipway()
                .via_ssh(host.ssh_config_path())
                .args(["deploy", v, "-t", &host.url(&root)])
                .ok();
        }
        // The host's own health check fails and says where it ran.
        let seen = env.path("host-hook-saw");
        std::fs::write(
            root.join(".slipway/hooks.toml"),
            format!(
                "health = \"echo \\\"$SLIPWAY_ROOT $SLIPWAY_RELEASE $SLIPWAY_PREVIOUS\\\" >> {}; exit 1\"\n\
                 health_timeout = \"2s\"\n",
                seen.display()
            ),
        )
        .unwrap();
        let pwned = env.path("pwned");
        let evil = format!(
            "id > {}; chmod -R u+w {1}; rm -rf {1}/releases/v1",
            pwned.display(),
            root.display()
        );

        for how in [Request::Shell, Request::ExecClaimingTrust, Request::Subsystem] {
            let (mut child, mut ch) = raw_ssh(&host, &root, how);
            if matches!(how, Request::Subsystem) {
                // Refused as a whole, right after `hello`; whatever follows is not read.
                let e = ch.recv().unwrap_err().to_string();
                assert!(e.contains("this key may only run"), "{how:?}{options}: {e}");
                let _ = ch.send(&hostile_hook("after_activate", "v2", &evil));
                let _ = ch.recv();
            } else {
                // A kind the host does not define: nothing runs.
                ch.send(&hostile_hook("after_activate", "v2", &evil)).unwrap();
                match ch.recv() {
                    Ok(Message::HookResult(r)) => {
                        assert!(r.ok && r.attempts == 0, "{how:?}{options}: {r:?}");
                        assert!(r.output.contains("this host runs only its own hooks"), "{r:?}");
                    }
                    other => panic!("{how:?}{options}: {other:?}"),
                }
            }
            assert!(!pwned.exists(), "{how:?}{options}: the client's command ran");
            assert!(root.join("releases/v1").is_dir(), "{how:?}{options}");
            let _ = child.kill();
            let _ = child.wait();

            if matches!(how, Request::Subsystem) {
                continue;
            }
            // A kind the host defines: the host's command, with the host's
            // environment and timeouts, not the client's.
            let (mut child, mut ch) = raw_ssh(&host, &root, how);
            let started = Instant::now();
            ch.send(&hostile_hook("health", "v2", &evil)).unwrap();
            let Message::HookResult(r) = ch.recv().unwrap() else {
                panic!("{how:?}{options}: expected a hook result")
            };
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{how:?}{options}: the client's retry budget was used: {:?}",
                started.elapsed()
            );
            assert!(!r.ok && r.attempts >= 1, "{how:?}{options}: {r:?}");
            assert!(!pwned.exists(), "{how:?}{options}: the client's command ran");
            let last = std::fs::read_to_string(&seen).unwrap();
            assert_eq!(
                last.lines().last().unwrap(),
                format!("{} v2 v1", root.display()),
                "{how:?}{options}: the host hook must see the host's own variables"
            );
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(root.join("releases/v2").is_dir());
    }
}

/// Releases v1..=n of a site with a `data/` directory, for shared paths below it.
fn data_site_releases(env: &Env, n: usize) {
    for i in 1..=n {
        write_file(&env.path("site/index.html"), format!("v{i}").as_bytes());
        write_file(&env.path("site/data/README"), b"shared data lives here");
        env.slipway()
            .args(["build", "--dir", "site", "--name", &format!("v{i}")])
            .ok();
    }
}

#[test]
fn a_symlink_planted_in_shared_never_makes_a_push_create_outside_the_root() {
    let env = Env::new();
    data_site_releases(&env, 2);
    let root = env.path("host");
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    env.write(
        "slipway.toml",
        format!(
            "[targets.web]\nhosts = [\"{}\"]\nshared = [\"data/uploads\"]\nshared_files = [\"data/app.env\"]\n",
            root.display()
        ),
    );
    env.slipway().args(["deploy", "v1", "-t", "web"]).ok();
    assert!(root.join("shared/data/uploads").is_dir());
    // The application (which may write to shared/) swaps a directory for a link.
    std::fs::rename(root.join("shared/data"), root.join("shared/data.old")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("shared/data")).unwrap();

    env.slipway()
        .args(["push", "v2", "-t", "web"])
        .fails(1)
        .one_line_error()
        .stderr_has(&format!(
            "cannot create shared path `data/uploads` in `{0}/shared`: `{0}/shared/data` is a symlink, and slipway \
             never creates anything through a link in `shared/`; create `data/uploads` where it points yourself, \
             or replace the link with a directory\n",
            root.display()
        ));
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing created outside the root"
    );
    assert!(!root.join("releases/v2").exists(), "a refused push binds no release");

    // What the owner made there by hand is used as it is.
    std::fs::create_dir(elsewhere.join("uploads")).unwrap();
    std::fs::write(elsewhere.join("app.env"), "KEY=1").unwrap();
    env.slipway().args(["deploy", "v2", "-t", "web"]).ok();
    assert_eq!(
        std::fs::read_to_string(root.join("current/data/app.env")).unwrap(),
        "KEY=1"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 2);
}

#[test]
fn prune_never_changes_modes_through_a_symlink_in_releases() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    data_site_releases(&env, 3);
    let root = env.path("host");
    env.write(
        "slipway.toml",
        format!("[targets.web]\nhosts = [\"{}\"]\nkeep = 5\n", root.display()),
    );
    for v in ["v1", "v2", "v3"] {
        env.slipway().args(["deploy", v, "-t", "web"]).ok();
    }
    // Someone with the deploy account's rights swaps releases/v1 for a link
    // to a private directory elsewhere.
    let private = env.path("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::write(private.join("secret"), "s").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let v1 = root.join("releases/v1");
    Command::new("chmod").arg("-R").arg("u+w").arg(&v1).status().unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    std::os::unix::fs::symlink(&private, &v1).unwrap();

    env.slipway().args(["prune", "-t", "web", "--keep", "0"]).ok();
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "prune changed the mode of a directory outside the root");
    assert_eq!(std::fs::read_to_string(private.join("secret")).unwrap(), "s");
    assert!(
        std::fs::symlink_metadata(&v1).is_err(),
        "the planted link itself is removed"
    );
}

/// A `slipway serve` child, greeted: confined as a forced command runs it,
/// or with `--trust-client` as the client starts it.
fn raw_serve(root: &Path, trusted: bool) -> (Child, Channel<ChildStdout, ChildStdin>) {
    let mut cmd = Command::new(bin());
    cmd.arg("serve").arg("--root").arg(root);
    if trusted {
        cmd.arg("--trust-client");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ch = Channel::new(child.stdout.take().unwrap(), child.stdin.take().unwrap(), Peer::Host);
    ch.send(&Message::hello()).unwrap();
    assert_eq!(ch.recv().unwrap(), Message::hello());
    (child, ch)
}

fn raw_local(root: &Path) -> (Child, Channel<ChildStdout, ChildStdin>) {
    raw_serve(root, false)
}

fn raw_trusted(root: &Path) -> (Child, Channel<ChildStdout, ChildStdin>) {
    raw_serve(root, true)
}

fn offer_with_signatures(name: &str, n: usize) -> Message {
    let signatures = (0..n)
        .map(|i| {
            serde_json::json!({
                "format": "sshsig",
                "key_fingerprint": format!("SHA256:{i:040}"),
                "signed_at": "2026-01-01T00:00:00Z",
                "signature": "x",
            })
        })
        .collect();
    Message::Push(Box::new(slipway::protocol::PushOffer {
        name: name.into(),
        id: slipway::digest::Digest::of(b"whatever"),
        provenance: None,
        signatures,
        link_mode: Default::default(),
        pushed_by: "mallory@evil".into(),
        shared: vec![],
        shared_files: vec![],
        repair: false,
        source: None,
        command: None,
    }))
}

#[test]
fn a_push_offering_too_many_signatures_is_refused_before_any_work() {
    let env = Env::new();
    let root = env.path("host");
    // 120,000 distinct signatures in one 9 MB frame: refused at once, not
    // merged first (that took minutes of CPU), and nothing is stored.
    for n in [120_000, 33] {
        let (mut child, mut ch) = raw_local(&root);
        let started = Instant::now();
        ch.send(&offer_with_signatures("v1", n)).unwrap();
        let err = ch.recv().unwrap_err();
        // Linear work is a few seconds of a debug build, even on a loaded
        // machine; the quadratic merge took minutes.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{n}: took {:?}",
            started.elapsed()
        );
        assert_eq!(
            err.to_string(),
            format!("release `v1` refused: the push offers {n} signatures, more than the 32 a host keeps")
        );
        assert_eq!(err.exit().code(), 5);
        let _ = child.wait();
        assert!(!root.join(".slipway/releases/v1.json").exists());
    }
    // A signature object far larger than any real one.
    let (mut child, mut ch) = raw_local(&root);
    let Message::Push(mut offer) = offer_with_signatures("v1", 1) else {
        unreachable!()
    };
    offer.signatures[0]["signature"] = serde_json::Value::String("A".repeat(100_000));
    ch.send(&Message::Push(offer)).unwrap();
    let err = ch.recv().unwrap_err().to_string();
    assert!(
        err.contains("signature 1 of the push is 100") && err.contains("more than the 16384"),
        "{err}"
    );
    let _ = child.wait();
}

#[test]
fn links_out_of_the_release_are_named_and_accepted_only_where_the_host_lists_them() {
    let env = Env::new();
    let root = env.path("host");
    env.write(
        "slipway.toml",
        format!(
            "[build]\nallow_links = [\"passwd.txt\", \"signers\"]\n[targets.web]\nhosts = [\"{}\"]\n",
            root.display()
        ),
    );
    write_file(&env.path("site/index.html"), b"v1");
    std::os::unix::fs::symlink("/etc/passwd", env.path("site/passwd.txt")).unwrap();
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();

    let shown = env.slipway().args(["inspect", "v1"]).ok().stdout();
    assert!(shown.contains("links out   passwd.txt -> /etc/passwd\n"), "{shown}");
    let json = env.slipway().args(["inspect", "v1", "--json"]).ok().json();
    assert_eq!(json["external_links"], serde_json::json!(["passwd.txt -> /etc/passwd"]));

    let note = "warning: `v1` links out of the release: `passwd.txt -> /etc/passwd` \
                (a host accepts it only if its `.slipway/allowed_links` lists it)\n";
    let list = root.join(".slipway/allowed_links");
    env.slipway()
        .args(["push", "v1", "-t", "web"])
        .fails(5)
        .stderr_has(note)
        .stderr_has(&format!(
            "release `v1` refused: its symlink `passwd.txt -> /etc/passwd` points outside the release, and `{0}` \
             does not list it; if this host should accept it, add the line `passwd.txt -> /etc/passwd` there\n",
            list.display()
        ));
    assert!(!root.join("releases/v1").exists());

    let file = env.path("v1.tar.zst");
    env.slipway().args(["export", "v1", "-o"]).arg(&file).ok();
    env.slipway()
        .env("SLIPWAY_STORE", env.path("other-store"))
        .arg("import")
        .arg(&file)
        .ok()
        .stderr_has(note);

    // The owner allows exactly this link: accepted.
    std::fs::write(&list, "# links this host accepts\npasswd.txt   ->   /etc/passwd\n").unwrap();
    env.slipway().args(["deploy", "v1", "-t", "web"]).ok();
    assert_eq!(
        std::fs::read_link(root.join("current/passwd.txt"))
            .unwrap()
            .to_string_lossy(),
        "/etc/passwd"
    );

    // A link into slipway's own state: refused even when listed.
    std::fs::remove_file(env.path("site/passwd.txt")).unwrap();
    std::os::unix::fs::symlink("../../.slipway/allowed_signers", env.path("site/signers")).unwrap();
    env.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    std::fs::write(&list, "signers -> ../../.slipway/allowed_signers\n").unwrap();
    env.slipway()
        .args(["push", "v2", "-t", "web"])
        .fails(5)
        .stderr_has(&format!(
            "release `v2` refused: its symlink `signers -> ../../.slipway/allowed_signers` leads into `{}`, \
             slipway's own state, which no release may link to\n",
            root.join(".slipway").display()
        ));
    assert!(!root.join("releases/v2").exists());
}

#[test]
fn what_a_host_recorded_never_drives_the_operators_terminal() {
    let env = Env::new();
    let root = env.path("host");
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
        env.slipway().arg("deploy").arg(v).arg("-t").arg(&root).ok();
    }
    // A reason that sets the terminal's title, then forges a history line.
    let reason = "\u{1b}]0;owned\u{7}\nFORGED  activate  v9";
    env.slipway()
        .arg("rollback")
        .arg("-t")
        .arg(&root)
        .args(["--reason", reason])
        .ok();
    let text = env.slipway().arg("history").arg("-t").arg(&root).ok().stdout();
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'), "{text:?}");
    assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
    assert!(
        text.contains("(\\u{1b}]0;owned\\u{7}\\nFORGED  activate  v9)"),
        "{text}"
    );
    // --json keeps the exact text, escaped the JSON way.
    let json = env
        .slipway()
        .arg("history")
        .arg("-t")
        .arg(&root)
        .arg("--json")
        .ok()
        .json();
    assert_eq!(json[0]["reason"], reason);
}

#[test]
fn a_trusted_clients_hook_budget_is_bounded_by_the_host() {
    let env = Env::new();
    let root = env.path("host");
    write_file(&env.path("site/index.html"), b"v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    env.slipway().arg("deploy").arg("v1").arg("-t").arg(&root).ok();
    std::fs::write(
        root.join(".slipway/hooks.toml"),
        "health_timeout = \"2s\"\nhook_timeout = \"1s\"\n",
    )
    .unwrap();
    let (mut child, mut ch) = raw_trusted(&root);
    let started = Instant::now();
    ch.send(&hostile_hook("health", "v1", "exit 1")).unwrap();
    let Ok(Message::HookResult(r)) = ch.recv() else {
        panic!("expected a hook result")
    };
    assert!(!r.ok && r.attempts >= 1, "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retried for {:?}",
        started.elapsed()
    );
    // One attempt is killed after the host's hook_timeout, not the client's.
    let started = Instant::now();
    ch.send(&hostile_hook("after_activate", "v1", "sleep 30")).unwrap();
    let Ok(Message::HookResult(r)) = ch.recv() else {
        panic!("expected a hook result")
    };
    assert!(
        r.timed_out && started.elapsed() < Duration::from_secs(10),
        "{r:?} {:?}",
        started.elapsed()
    );
    drop(ch);
    let _ = child.wait();
}

#[test]
fn healthy_is_recorded_only_from_a_health_check_that_passed_on_the_host() {
    let env = Env::new();
    let root = env.path("host");
    write_file(&env.path("site/index.html"), b"v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    env.slipway().arg("deploy").arg("v1").arg("-t").arg(&root).ok();
    let healthy = |root: &Path| {
        std::fs::read_to_string(root.join(".slipway/history.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"action\":\"healthy\""))
            .count()
    };
    assert_eq!(healthy(&root), 0, "no health check configured: nothing was checked");

    // A client's word alone: refused, confined or trusted.
    for trusted in [false, true] {
        let (mut child, mut ch) = if trusted { raw_trusted(&root) } else { raw_local(&root) };
        ch.send(&Message::MarkHealthy {
            name: "v1".into(),
            actor: "mallory@evil".into(),
        })
        .unwrap();
        let e = ch.recv().unwrap_err().to_string();
        assert!(
            e.contains("cannot record `v1` as healthy") && e.contains("no health check of it ran here"),
            "{e}"
        );
        let _ = child.wait();
    }
    // The host's own check fails: a confined client cannot record it healthy.
    std::fs::write(
        root.join(".slipway/hooks.toml"),
        "health = \"exit 1\"\nhealth_timeout = \"1s\"\n",
    )
    .unwrap();
    let (mut child, mut ch) = raw_local(&root);
    ch.send(&hostile_hook("health", "v1", "true")).unwrap();
    let Ok(Message::HookResult(r)) = ch.recv() else {
        panic!("expected a hook result")
    };
    assert!(!r.ok, "{r:?}");
    ch.send(&Message::MarkHealthy {
        name: "v1".into(),
        actor: "mallory@evil".into(),
    })
    .unwrap();
    let e = ch.recv().unwrap_err().to_string();
    assert!(e.contains("its health check failed here"), "{e}");
    let _ = child.wait();
    assert_eq!(healthy(&root), 0);

    // It passes: recorded, with who the host saw connect.
    std::fs::write(root.join(".slipway/hooks.toml"), "health = \"test -f index.html\"\n").unwrap();
    env.write(
        "slipway.toml",
        format!(
            "[targets.web]\nhosts = [\"{}\"]\n[targets.web.hooks]\nhealth = \"true\"\n",
            root.display()
        ),
    );
    env.slipway().args(["activate", "v1", "-t", "web"]).ok();
    env.slipway().args(["deploy", "v1", "-t", "web"]).ok();
    assert_eq!(healthy(&root), 1);
    let json = env
        .slipway()
        .arg("history")
        .arg("-t")
        .arg(&root)
        .arg("--json")
        .ok()
        .json();
    assert_eq!(json[0]["action"], "healthy");
    assert!(json[0]["via"].as_str().unwrap().contains("local"), "{json}");
}

#[test]
fn history_stays_readable_however_long_the_log_and_its_reasons() {
    let env = Env::new();
    let root = env.path("host");
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
        env.slipway().arg("deploy").arg(v).arg("-t").arg(&root).ok();
    }
    // A reason of 20 KB is kept to 1 KiB.
    let long = "r".repeat(20_000);
    env.slipway()
        .arg("rollback")
        .arg("-t")
        .arg(&root)
        .args(["--reason", &long])
        .ok();
    let json = env
        .slipway()
        .arg("history")
        .arg("-t")
        .arg(&root)
        .arg("--json")
        .ok()
        .json();
    let kept = json[0]["reason"].as_str().unwrap();
    assert_eq!(kept.len(), 1024, "{}", kept.len());
    assert!(kept.ends_with('…'));

    // Years of records, and lines a slipway that bounded nothing wrote.
    let log = root.join(".slipway/history.jsonl");
    let last = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&last.replace("\"rollback\"", &format!("\"activate\",\"n\":{i}")));
        text.push('\n');
    }
    let huge = format!("{{\"reason\":\"{}\"}}\n", "x".repeat(3 * 1024 * 1024));
    text.push_str(&huge);
    text.push_str(&huge);
    text.push_str(&last);
    text.push('\n');
    std::fs::write(&log, text).unwrap();

    let out = env.slipway().arg("history").arg("-t").arg(&root).arg("--json").ok();
    assert_eq!(out.json().as_array().unwrap().len(), 100, "the default limit");
    assert!(out.stderr().contains("record longer than 65536 bytes skipped"), "{out}");
    let all = env
        .slipway()
        .arg("history")
        .arg("-t")
        .arg(&root)
        .args(["--all", "--json"])
        .ok()
        .json();
    assert_eq!(all.as_array().unwrap().len(), 3001);
    env.slipway().arg("status").arg("-t").arg(&root).ok();
    env.slipway()
        .arg("rollback")
        .arg("-t")
        .arg(&root)
        .args(["--to", "v2"])
        .ok();
}

#[test]
fn host_check_lists_the_releases_allowed_signers_would_refuse() {
    let env = Env::new();
    let root = env.path("host");
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
        env.slipway().arg("deploy").arg(v).arg("-t").arg(&root).ok();
    }
    let key = env.path("signer");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "rel@example.com", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    // Enforcement is turned on after both releases were staged unsigned;
    // v2 gets signed and pushed again, v1 is forgotten.
    std::fs::write(
        root.join(".slipway/allowed_signers"),
        format!("rel@example.com namespaces=\"slipway\" {public}"),
    )
    .unwrap();
    env.slipway().args(["sign", "v2", "--key"]).arg(&key).ok();
    env.slipway().arg("push").arg("v2").arg("-t").arg(&root).ok();

    let json = env
        .slipway()
        .args(["host", "check", "--json", "-t"])
        .arg(&root)
        .ok()
        .json();
    let signed = json[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "signed")
        .unwrap()
        .clone();
    assert_eq!(signed["status"], "note", "{signed}");
    let detail = signed["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("allowed_signers would refuse 1 release(s) here")
            && detail.contains("release `v1` refused: missing signature"),
        "{detail}"
    );
    assert!(!detail.contains("`v2`"), "{detail}");
    // And it is right: a rollback to v1 is refused, v2 stays current.
    let refused = env.slipway().arg("rollback").arg("-t").arg(&root).run();
    assert!(!refused.out.status.success(), "{refused}");
    assert!(
        refused.stderr().contains("release `v1` refused: missing signature"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap().to_string_lossy(),
        "releases/v2"
    );
}

/// Every "cannot" of docs/security.md's "What a leaked restricted key can
/// and cannot do", tried in order over a real sshd with the documented line.
#[test]
fn a_leaked_restricted_key_can_do_only_what_security_md_says() {
    let env = Env::new();
    let root = env.path("srv/shop");
    let line = format!(
        "restrict,command=\"{} serve --root {} --append-only --key-name ci@build\"",
        bin(),
        root.display()
    );
    let host = Sshd::builder().key_options(&line).start();
    let url = host.url(&root);
    let sl = || env.slipway().via_ssh(host.ssh_config_path());
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
        sl().args(["deploy", v, "-t", &url]).ok();
    }
    // What it can do, it does: staged and switched.
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap().to_string_lossy(),
        "releases/v2"
    );

    // 1. No shell, no other command.
    let out = ssh(&host, "id; echo pwned > /tmp/slipway-leaked-key");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("uid="), "{out:?}");
    // 2. No hook of its own (over a shell request, the one without SSH_ORIGINAL_COMMAND).
    let pwned = env.path("pwned");
    let (mut child, mut ch) = raw_ssh(&host, &root, Request::Shell);
    ch.send(&hostile_hook("health", "v2", &format!("touch {}", pwned.display())))
        .unwrap();
    let Ok(Message::HookResult(r)) = ch.recv() else {
        panic!("expected a hook result")
    };
    assert_eq!(r.attempts, 0, "{r:?}");
    assert!(!pwned.exists());
    // 6. Not healthy on its word.
    ch.send(&Message::MarkHealthy {
        name: "v2".into(),
        actor: "alice@laptop".into(),
    })
    .unwrap();
    assert!(
        ch.recv()
            .unwrap_err()
            .to_string()
            .contains("cannot record `v2` as healthy")
    );
    let _ = child.kill();
    let _ = child.wait();
    // 10. No other content under a bound name.
    let (mut child, mut ch) = raw_ssh(&host, &root, Request::Shell);
    ch.send(&offer_with_signatures("v1", 0)).unwrap();
    let e = ch.recv().unwrap_err().to_string();
    assert!(e.contains("a name is never rebound to another bundle"), "{e}");
    let _ = child.kill();
    let _ = child.wait();
    // 3. No other root.
    sl().args(["push", "v1", "-t", &host.url(env.path("srv/other"))])
        .fails(2);
    assert!(!env.path("srv/other").exists());
    // 4. No deletion.
    env.write("prune.toml", format!("[targets.p]\nhosts = [\"{url}\"]\nkeep = 0\n"));
    sl().arg("--config")
        .arg(env.path("prune.toml"))
        .args(["prune", "-t", "p"])
        .fails(1);
    assert!(root.join("releases/v1").is_dir());
    // 8. Reasons are bounded; 7. every record says which key did it.
    sl().args(["rollback", "-t", &url, "--reason", &"x".repeat(100_000)])
        .ok();
    let json = env
        .slipway()
        .arg("history")
        .arg("-t")
        .arg(&root)
        .arg("--json")
        .ok()
        .json();
    assert_eq!(json[0]["reason"].as_str().unwrap().len(), 1024);
    for r in json.as_array().unwrap() {
        let via = r["via"].as_str().unwrap_or_default();
        assert!(
            via.contains("ssh from 127.0.0.1") && via.ends_with("key ci@build"),
            "{r}"
        );
    }
    // 5. Nothing a listed key did not sign, no link out that the host did not list.
    write_file(&env.path("site/index.html"), b"v3");
    std::os::unix::fs::symlink("/etc/passwd", env.path("site/passwd")).unwrap();
    env.write("slipway.toml", "[build]\nallow_links = [\"passwd\"]\n");
    env.slipway().args(["build", "--dir", "site", "--name", "v3"]).ok();
    sl().args(["push", "v3", "-t", &url])
        .fails(5)
        .stderr_has("does not list it");
    std::fs::write(
        root.join(".slipway/allowed_signers"),
        "nobody@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\n",
    )
    .unwrap();
    std::fs::write(root.join(".slipway/allowed_links"), "passwd -> /etc/passwd\n").unwrap();
    sl().args(["push", "v3", "-t", &url])
        .fails(5)
        .stderr_has("release `v3` refused: missing signature");
    assert!(!root.join("releases/v3").exists());
    // 9. Nothing outside the root through a planted link in shared/.
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::create_dir_all(root.join("shared")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("shared/data")).unwrap();
    std::fs::remove_file(root.join(".slipway/allowed_signers")).unwrap();
    env.write(
        "shared.toml",
        format!("[targets.p]\nhosts = [\"{url}\"]\nshared = [\"data/uploads\"]\n"),
    );
    write_file(&env.path("site2/data/README"), b"d");
    env.slipway().args(["build", "--dir", "site2", "--name", "v4"]).ok();
    sl().arg("--config")
        .arg(env.path("shared.toml"))
        .args(["push", "v4", "-t", "p"])
        .fails(1);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}
