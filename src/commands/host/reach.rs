//! How the `host` commands talk about reaching a host: the `ssh …` command
//! line that tries the same connection by hand. A leaf: `check` and
//! `install` both use it.

use crate::remote::{HostSpec, Location};

/// How to try the same connection by hand: `ssh [-F CONFIG] [-p PORT] [USER@]HOST`.
pub(super) fn ssh_command(spec: &HostSpec) -> String {
    let Location::Ssh { user, host, port, .. } = &spec.location else {
        return String::new();
    };
    let mut cmd = String::from("ssh");
    if let Some(c) = &spec.ssh_config {
        cmd.push_str(&format!(" -F {}", c.display()));
    }
    if let Some(p) = port {
        cmd.push_str(&format!(" -p {p}"));
    }
    match user {
        Some(u) => cmd.push_str(&format!(" {u}@{host}")),
        None => cmd.push_str(&format!(" {host}")),
    }
    cmd
}

/// The fix for a host that cannot be reached.
pub(super) fn ssh_fix(spec: &HostSpec) -> String {
    format!(
        "make `{} true` work from this machine (host up, key in your agent, host key in known_hosts); see docs/ssh.md",
        ssh_command(spec)
    )
}
