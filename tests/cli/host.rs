//! `slipway host check` and `slipway host install`, over a real sshd on
//! loopback (and a local path), read the way a newcomer reads them: one
//! line per check, a fix for each problem, both versions on a mismatch.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::sshd::{Sshd, write_ssh_config};
use crate::support::{Env, bin};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `slipway.toml` with one target `prod` of `hosts` at `root`, plus `extra` lines.
fn config(env: &Env, hosts: &[&str], root: &Path, extra: &str) {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    env.write(
        "slipway.toml",
        format!(
            "[targets.prod]\nhosts = [{}]\nroot = \"{}\"\n{extra}",
            hosts.join(", "),
            root.display()
        ),
    );
}

/// An executable script in the test directory.
fn script(env: &Env, rel: &str, body: &str) -> String {
    let p = env.write(rel, format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// The line of check `name` in `slipway host check` text output, and its fix if any.
fn check_line(stdout: &str, name: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{stdout}"));
    let fix = lines
        .get(i + 1)
        .and_then(|l| l.trim_start().strip_prefix("fix: "))
        .map(str::to_string);
    (lines[i].to_string(), fix)
}

#[test]
fn host_check_passes_a_ready_host_and_gives_a_fix_for_each_problem() {
    let host = Sshd::start();
    let env = Env::new();
    let root = env.path("srv/app");
    config(&env, &[host.alias()], &root, "");
    let check = || {
        env.slipway()
            .via_ssh(host.ssh_config_path())
            .args(["host", "check", "-t", "prod"])
    };

    // A fresh host: the root does not exist yet, and the check says so
    // without creating it (a mistyped root must not appear); so do the
    // read-only commands, which fail instead of reporting an empty root.
    let out = check().ok();
    let text = out.stdout();
    assert_eq!(text.lines().next(), Some(host.alias()), "{out}");
    assert_eq!(check_line(&text, "ssh").0, "  ok       ssh      reachable");
    assert_eq!(
        check_line(&text, "slipway").0,
        format!("  ok       slipway  slipway {VERSION}, protocol 1, as this client")
    );
    assert_eq!(
        check_line(&text, "root").0,
        format!(
            "  ok       root     `{}` is not a slipway root yet: the first `slipway push` or `deploy` makes it one (is that the right path?)",
            root.display()
        )
    );
    assert!(!root.exists(), "host check created the root");
    for verb in [&["status"][..], &["history"], &["verify"], &["provenance"]] {
        env.slipway()
            .via_ssh(host.ssh_config_path())
            .args(verb)
            .args(["-t", "prod"])
            .fails(1)
            .stderr_has(&format!("`{}` is not a slipway root yet", root.display()))
            .stderr_has("nothing was created; the first `slipway push` or `deploy` to it creates it");
        assert!(!root.exists(), "{verb:?} created the root");
    }
    // Made by hand (as an owner may): still not a root until the first push.
    std::fs::create_dir_all(&root).unwrap();
    let text = check().ok().stdout();
    assert!(
        check_line(&text, "root").0.contains("is not a slipway root yet"),
        "{text}"
    );
    std::fs::remove_dir(&root).unwrap();
    // The first push creates it.
    env.write("site/index.html", "v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["push", "v1", "-t", "prod"])
        .ok();
    let out = check().ok();
    let text = out.stdout();
    let root = std::fs::canonicalize(&root).unwrap();
    let (line, fix) = check_line(&text, "root");
    assert!(
        line.starts_with(&format!(
            "  ok       root     `{}` is owned by the deploy user",
            root.display()
        )) && line.ends_with("mode 0755"),
        "{out}"
    );
    assert!(fix.is_none());
    assert!(check_line(&text, "space").0.contains(" free of "), "{out}");
    assert_eq!(
        check_line(&text, "current").0,
        "  ok       current  none yet (nothing activated)"
    );
    out.stderr_has("1 host(s) ready");

    // A live release is a sane `current`.
    env.write("site/index.html", "v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["deploy", "v1", "-t", "prod"])
        .ok();
    let json = env
        .slipway()
        .via_ssh(host.ssh_config_path())
        .args(["host", "check", "-t", "prod", "--json"])
        .ok()
        .json();
    let h = &json[0];
    assert_eq!(h["host"], host.alias());
    assert_eq!(h["ok"], true);
    let names: Vec<&str> = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ssh", "slipway", "root", "space", "current", "signed"]);
    assert_eq!(h["checks"][4]["detail"], "releases/v1 (complete)");
    assert_eq!(
        h["report"]["current"],
        serde_json::json!({"state": "ok", "release": "v1"})
    );
    assert_eq!(h["report"]["root"], root.display().to_string());
    assert_eq!(h["report"]["version"], VERSION);

    // Two problems, each with its fix; exit 1.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(root.join("current")).unwrap();
    std::os::unix::fs::symlink("releases/v9", root.join("current")).unwrap();
    let out = check().fails(1);
    let text = out.stdout();
    let r = root.display();
    assert_eq!(
        check_line(&text, "root"),
        (
            format!("  PROBLEM  root     `{r}` is writable by everyone (mode 0777)"),
            Some(format!("chmod o-w {r}"))
        ),
        "{out}"
    );
    assert_eq!(
        check_line(&text, "current"),
        (
            format!("  PROBLEM  current  `{r}/current` points at releases/v9, which does not exist"),
            Some(
                "activate a complete release: `slipway activate REL -t prod` (`slipway status -t prod` lists them)"
                    .into()
            )
        ),
        "{out}"
    );
    out.one_line_error().stderr_has(&format!(
        "error: 2 problem(s) on {}: apply the fixes above, then run `slipway host check -t prod` again",
        host.alias()
    ));
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn host_check_names_an_unreachable_host_and_a_missing_slipway() {
    let env = Env::new();
    let up = Sshd::start();
    let mut down = Sshd::start();
    let ssh_config = write_ssh_config(&env.path("ssh_config"), &[&up, &down]);
    let port = down.port();
    down.stop();
    config(&env, &[up.alias(), down.alias()], &env.path("srv"), "");
    let out = env
        .slipway()
        .env("SLIPWAY_SSH_CONFIG", &ssh_config)
        .env("SLIPWAY_REMOTE_BIN", "/nonexistent/slipway")
        .args(["host", "check", "-t", "prod"])
        .fails(1);
    let text = out.stdout();
    let (first, second) = text
        .split_once(&format!("\n{}\n", down.alias()))
        .unwrap_or_else(|| panic!("{out}"));

    let (line, fix) = check_line(first, "slipway");
    assert!(
        line.starts_with(
            "  PROBLEM  slipway  `/nonexistent/slipway` was not found on the host (exit 127) ("
        ) && line.ends_with(
            "); install slipway there (`slipway host install -t prod`), or set SLIPWAY_REMOTE_BIN or the target's `remote_bin` to its path"
        ),
        "{out}"
    );
    assert_eq!(
        fix.as_deref(),
        Some(
            "run `slipway host install -t prod` (or point the target's `remote_bin`, now `/nonexistent/slipway`, at slipway there)"
        )
    );
    assert_eq!(
        check_line(first, "root").0,
        "  -        root     not checked: an earlier check failed"
    );

    let (line, fix) = check_line(second, "ssh");
    assert_eq!(
        line,
        format!("  PROBLEM  ssh      cannot connect: ssh: connect to host 127.0.0.1 port {port}: Connection refused")
    );
    assert_eq!(
        fix,
        Some(format!(
            "make `ssh -F {} {} true` work from this machine (host up, key in your agent, host key in known_hosts); see docs/ssh.md",
            ssh_config.display(),
            down.alias()
        ))
    );
    out.one_line_error()
        .stderr_has(&format!("error: 2 problem(s) on {}, {}:", up.alias(), down.alias()));
}

/// A stand-in `slipway serve` that greets with another protocol, then waits.
fn old_slipway(env: &Env) -> String {
    let hello = r#"{"type":"hello","protocol":0,"version":"0.0.1"}"#;
    let len = u8::try_from(hello.len()).unwrap();
    script(
        env,
        "old-slipway",
        &format!("printf '\\000\\000\\000\\{len:03o}\\001%s' '{hello}'\nexec cat >/dev/null"),
    )
}

#[test]
fn a_version_mismatch_names_both_versions_and_host_install() {
    let host = Sshd::start();
    let env = Env::new();
    config(&env, &[host.alias()], &env.path("srv"), "");
    let old = old_slipway(&env);
    let expected = format!(
        "the host runs slipway 0.0.1 (protocol 0) but this client runs slipway {VERSION} (protocol 1): upgrade slipway on the host to {VERSION}: run `slipway host install -t prod`"
    );
    env.slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .env("SLIPWAY_REMOTE_BIN", &old)
        .args(["status", "-t", "prod"])
        .fails(1)
        .stderr_has(&format!("error: {}: {expected}", host.alias()));
    let out = env
        .slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .env("SLIPWAY_REMOTE_BIN", &old)
        .args(["host", "check", "-t", "prod"])
        .fails(1);
    let (line, fix) = check_line(&out.stdout(), "slipway");
    assert_eq!(line, format!("  PROBLEM  slipway  {expected}"), "{out}");
    assert!(fix.is_some_and(|f| f.starts_with("run `slipway host install -t prod`")));
}

/// A stand-in for a slipway older than `serve --trust-client`: clap refuses
/// the flag with exit 2 before any protocol is spoken.
#[test]
fn a_host_slipway_that_predates_trust_client_says_to_install() {
    let host = Sshd::start();
    let env = Env::new();
    config(&env, &[host.alias()], &env.path("srv"), "");
    let old = script(
        &env,
        "older-slipway",
        "echo \"error: unexpected argument '--trust-client' found\" >&2\nexit 2",
    );
    env.slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .env("SLIPWAY_REMOTE_BIN", &old)
        .args(["status", "-t", "prod"])
        .fails(1)
        .one_line_error()
        .stderr_has(&format!(
            "error: {}: `{old} serve` refused its command line (exit 2): unexpected argument '--trust-client' found; \
             a slipway older than this client ({VERSION}) does not know `serve --trust-client`: run `slipway host install -t prod`\n",
            host.alias()
        ));
}

#[test]
fn host_install_copies_this_binary_verified_and_push_then_runs_it() {
    let host = Sshd::start();
    let env = Env::new();
    let root = env.path("srv");
    config(&env, &[host.alias()], &root, "remote_bin = \"/nonexistent/slipway\"\n");
    let dest = env.path("opt/bin/slipway");
    let d = dest.display().to_string();
    let install = || {
        env.slipway()
            .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
            .args(["host", "install", "-t", "prod", "--path", &d])
    };
    let out = install().ok();
    let a = host.alias();
    let text = out.stdout();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{a}: installed {d} (slipway {VERSION}, ")) && first.ends_with(" verified)"),
        "{out}"
    );
    assert!(
        text.contains(&format!(
            "{a}: note: `/nonexistent/slipway` (the target's `remote_bin`) is not found there: set `remote_bin = \"{d}\"` for target `prod` in slipway.toml (or SLIPWAY_REMOTE_BIN={d}) so slipway runs this copy"
        )),
        "{out}"
    );
    out.stderr_has(&format!("installing slipway {VERSION} ("));
    assert!(
        std::fs::read(&dest).unwrap() == std::fs::read(bin()).unwrap(),
        "the copy differs"
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o755);
    let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["slipway"], "no temporary file is left behind");

    // Again: nothing to copy.
    let json = env
        .slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .args(["host", "install", "-t", "prod", "--path", &d, "--json"])
        .ok()
        .json();
    assert_eq!(json[0]["host"], a);
    assert_eq!(json[0]["result"], "unchanged");
    assert_eq!(json[0]["version"], format!("slipway {VERSION}"));
    crate::json_doc::assert_documented("slipway host install -t TARGET --json", &json);

    // The installed copy serves pushes and passes every check.
    env.write("site/index.html", "v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    env.slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .env("SLIPWAY_REMOTE_BIN", &d)
        .args(["push", "v1", "-t", "prod"])
        .ok();
    assert!(root.join("releases/v1/index.html").is_file());
    env.slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .env("SLIPWAY_REMOTE_BIN", &d)
        .args(["host", "check", "-t", "prod"])
        .ok();
}

#[test]
fn host_install_refuses_another_platform_and_says_how_to_build_there() {
    let env = Env::new();
    script(&env, "fakebin/uname", "echo FreeBSD amd64");
    let host = Sshd::builder()
        .set_env(&format!(
            "PATH={}:/usr/local/bin:/usr/bin:/bin",
            env.path("fakebin").display()
        ))
        .start();
    config(&env, &[host.alias()], &env.path("srv"), "");
    let dest = env.path("opt/slipway");
    let out = env
        .slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .args(["host", "install", "-t", "prod", "--path"])
        .arg(&dest)
        .fails(1);
    let a = host.alias();
    let text = out.stdout();
    assert!(
        text.starts_with(&format!(
            "{a}: not installed: the host is FreeBSD amd64, but this slipway is built for {} {}\n",
            std::env::consts::OS,
            std::env::consts::ARCH
        )),
        "{out}"
    );
    assert!(
        text.contains(&format!(
            "{a}: fix: install it there from source instead: in a checkout of slipway on the host, run `cargo install --locked --path .`"
        )),
        "{out}"
    );
    out.stderr_has(&format!(
        "\nerror: slipway was not installed on 1 of 1 host(s): {a} (see the fixes above)\n"
    ));
    assert!(!dest.exists() && !env.path("opt").exists(), "nothing is copied");
}

#[test]
fn host_install_refuses_a_copy_that_arrives_corrupted() {
    let env = Env::new();
    // The host's `chmod` damages the file it is given (one byte appended,
    // as a disk or a transfer could), after `cat` wrote it and before it is hashed.
    script(
        &env,
        "fakebin/chmod",
        "for last; do :; done\ncase \"$last\" in *.slipway-tmp-*) printf x >> \"$last\";; esac\nexec /bin/chmod \"$@\"",
    );
    let host = Sshd::builder()
        .set_env(&format!(
            "PATH={}:/usr/local/bin:/usr/bin:/bin",
            env.path("fakebin").display()
        ))
        .start();
    config(&env, &[host.alias()], &env.path("srv"), "");
    let dest = env.path("opt/slipway");
    let out = env
        .slipway()
        .env("SLIPWAY_SSH_CONFIG", host.ssh_config_path())
        .args(["host", "install", "-t", "prod", "--path"])
        .arg(&dest)
        .run();
    let ours = {
        let out = std::process::Command::new("sha256sum").arg(bin()).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let theirs = {
        let mut bytes = std::fs::read(bin()).unwrap();
        bytes.push(b'x');
        slipway::digest::Digest::of(&bytes).hex()
    };
    let a = host.alias();
    let text = out.stdout();
    assert!(
        text.starts_with(&format!(
            "{a}: not installed: the copy `{}.slipway-tmp-",
            dest.display()
        )) && text.contains(&format!(
            "` has sha256 {theirs}, but this slipway has sha256 {ours}; nothing was installed\n"
        )),
        "{out}"
    );
    assert!(
        text.contains(&format!("{a}: fix: run `slipway host install -t prod` again")),
        "{out}"
    );
    out.stderr_has(&format!(
        "error: slipway was not installed on 1 of 1 host(s): {a} (see the fixes above)\n"
    ));
    assert_eq!(out.out.status.code(), Some(5), "an integrity failure: {out}");
    let left: Vec<_> = std::fs::read_dir(env.path("opt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing is installed and the copy is removed: {left:?}"
    );
}

#[test]
fn host_install_to_a_local_path_target_copies_locally() {
    let env = Env::new();
    let root = env.path("srv");
    let dest = env.path("lbin/slipway");
    let d = dest.display().to_string();
    let r = root.display().to_string();
    let out = env.slipway().args(["host", "install", "-t", &r, "--path", &d]).ok();
    assert!(
        out.line()
            .starts_with(&format!("{r}: installed {d} (slipway {VERSION}, ")),
        "{out}"
    );
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(bin()).unwrap());
    assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o755);
    let out = env.slipway().args(["host", "install", "-t", &r, "--path", &d]).ok();
    assert!(out.line().contains("is already this slipway"), "{out}");
    env.slipway()
        .args(["host", "install", "-t", &r, "--path", "bin/slipway"])
        .fails(2)
        .one_line_error()
        .stderr_has("`--path bin/slipway` is neither absolute nor under `~/`");
}

/// `host check` says how much free space it expects, not only how much
/// there is: 256 MiB or 2% of the file system, whichever is more — in the
/// text, and as the `space` check's `needs_bytes` in `--json`. A root on a
/// file system with less free is a problem that says both.
#[test]
fn host_check_says_how_much_free_space_it_expects() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("srv")).unwrap();
    let root = env.path("srv/app");
    let t = root.to_str().unwrap();
    let out = env.slipway().args(["host", "check", "-t", t]).ok();
    let (line, fix) = check_line(&out.stdout(), "space");
    assert!(
        line.starts_with("  ok       space    ")
            && line.contains(" free of ")
            && line.contains("%); expects at least ")
            && line.ends_with(" free (256.0 MiB or 2% of the file system, whichever is more)"),
        "{out}"
    );
    assert!(fix.is_none(), "{out}");
    let json = env.slipway().args(["host", "check", "-t", t, "--json"]).ok().json();
    let total = json[0]["report"]["total_bytes"].as_u64().unwrap();
    let space = json[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "space")
        .unwrap()
        .clone();
    assert_eq!(space["status"], "ok", "{json}");
    assert_eq!(
        space["needs_bytes"].as_u64(),
        Some((256u64 << 20).max(total * 2 / 100)),
        "{json}"
    );

    if !rustix::process::geteuid().is_root() {
        eprintln!("\n!!!!!!!! SKIPPED the small file system: mounting a tmpfs needs root !!!!!!!!\n");
        return;
    }
    let small = env.path("small");
    let _fs = crate::support::faults::Tmpfs::mount(&small, "64m");
    let root = small.join("app");
    let t = root.to_str().unwrap();
    let out = env.slipway().args(["host", "check", "-t", t]).fails(1);
    let (line, fix) = check_line(&out.stdout(), "space");
    assert_eq!(
        line,
        format!(
            "  PROBLEM  space    only 64.0 MiB free of 64.0 MiB (100%) on the file system of `{}`; expects at least 256.0 MiB free (256.0 MiB or 2% of the file system, whichever is more)",
            root.display()
        ),
        "{out}"
    );
    assert_eq!(
        fix.as_deref(),
        Some(format!("free space there, or remove old releases: `slipway prune -t {t}`").as_str())
    );
    let json = env.slipway().args(["host", "check", "-t", t, "--json"]).fails(1).json();
    let space = &json[0]["checks"][3];
    assert_eq!(space["check"], "space", "{json}");
    assert_eq!(space["status"], "problem", "{json}");
    assert_eq!(space["needs_bytes"], 256u64 << 20, "{json}");
}
