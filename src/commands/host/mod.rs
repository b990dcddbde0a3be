//! `slipway host …`: the hosts themselves rather than their releases —
//! [`check`] whether each host is ready, [`install`] this slipway there.
//! Both act on every host of a target at once (bounded by the target's
//! `parallel`) and report per host, in the target's host order.

mod check;
mod install;

pub use check::check;
pub use install::install;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Error;
use crate::remote::{HostSpec, Location};

/// Run `f` for every host, at most `parallel` at a time; results in host order.
fn per_host<T: Send>(hosts: &[HostSpec], parallel: usize, f: impl Fn(&HostSpec) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, T)>> = Mutex::new(Vec::new());
    let workers = parallel.clamp(1, hosts.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(host) = hosts.get(i) else { break };
                    let r = f(host);
                    if let Ok(mut d) = done.lock() {
                        d.push((i, r));
                    }
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_default();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// An error's text without the `host: ` prefix (the output names the host already).
fn bare(e: &Error) -> String {
    match e {
        Error::Host { source, .. } => bare(source),
        other => other.to_string(),
    }
}

/// How to try the same connection by hand: `ssh [-F CONFIG] [-p PORT] [USER@]HOST`.
fn ssh_command(spec: &HostSpec) -> String {
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
fn ssh_fix(spec: &HostSpec) -> String {
    format!(
        "make `{} true` work from this machine (host up, key in your agent, host key in known_hosts); see docs/ssh.md",
        ssh_command(spec)
    )
}
