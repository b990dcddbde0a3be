//! The forced-command `authorized_keys` line of docs/security.md, on a real
//! sshd: the key can push and activate, cannot get a shell, cannot run
//! another command, cannot reach another root, and with `--append-only`
//! cannot prune.

use std::process::Command;

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
    write_file(&env.path("site/index.html"), b"v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    let url = host.url(&root);
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["deploy", "v1", "-t", &url])
        .ok();
    env.slipway()
        .via_ssh(host.ssh_config_path())
        .args(["prune", "-t", &url])
        .fails(1)
        .stderr_has(&format!(
            "error: {url}: `{}` is served with `--append-only`: prune and every deletion are refused; \
             prune with a key whose `slipway serve` lacks `--append-only`\n",
            root.display()
        ));
    assert!(root.join("releases/v1").is_dir());
}
