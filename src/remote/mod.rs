//! The client side: where hosts are, and how to reach their `slipway serve`.
//!
//! A [`HostSpec`] says where one host root is; [`connect`] starts `slipway
//! serve --root ROOT` there — as a child process for a local path, over SSH
//! otherwise — and returns a [`Connection`]: a byte stream in each direction
//! plus the process. The protocol on top is the same for both:
//! [`session::HostSession`] speaks it, one method per request.

pub mod local;
pub mod ops;
pub mod push;
pub mod session;
pub mod ssh;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{LinkMode, ProjectConfig, ServiceMode, TargetConfig, parse_duration};
use crate::error::{Error, Result};

/// Where a host root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on this machine, served by a child `slipway serve`.
    Local { root: PathBuf },
    /// `ssh://[user@]host[:port]/abs/root`; `host` goes to ssh verbatim.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        root: String,
    },
}

/// One host of a target, with everything needed to reach it.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// How the host is named in output and `--json` (`host` key): the entry as written.
    pub label: String,
    /// The `-t TARGET` this host came from (named in fixes, e.g. `slipway host install -t TARGET`).
    pub target: String,
    pub location: Location,
    /// The `slipway` command on the host (`SLIPWAY_REMOTE_BIN`, `remote_bin`, else `slipway`).
    pub remote_bin: String,
    /// An ssh config file to use instead of the operator's default.
    pub ssh_config: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub link_mode: LinkMode,
    /// Whether (and how) the release runs as a service in A/B slots here.
    pub service: ServiceMode,
}

/// A resolved `-t TARGET`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target's name in `slipway.toml`, or the ad-hoc location as given.
    pub name: String,
    pub hosts: Vec<HostSpec>,
    /// The target's settings (defaults for an ad-hoc location).
    pub config: TargetConfig,
}

/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Parse `ssh://[user@]host[:port]/abs/root`.
///
/// # Errors
/// Usage error naming the URL and what is wrong.
pub fn parse_ssh_url(url: &str) -> Result<Location> {
    let bad = |why: &str| {
        Error::usage(format!(
            "`{url}` is not a valid target URL: {why} (use ssh://[user@]host[:port]/abs/root)"
        ))
    };
    let rest = url
        .strip_prefix("ssh://")
        .ok_or_else(|| bad("it must start with ssh://"))?;
    let slash = rest.find('/').ok_or_else(|| bad("the root path is missing"))?;
    let (authority, root) = rest.split_at(slash);
    if root.len() < 2 {
        return Err(bad("the root must be an absolute path other than `/`"));
    }
    if root.split('/').any(|c| c == "..") || root.chars().any(|c| c.is_control()) {
        return Err(bad("the root must not contain `..` or control characters"));
    }
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(bad("empty user")),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !hostport.starts_with('[') => (
            h,
            Some(
                p.parse::<u16>()
                    .map_err(|_| bad(&format!("`{p}` is not a port number")))?,
            ),
        ),
        _ => (hostport, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the host is missing or malformed"));
    }
    Ok(Location::Ssh {
        user,
        host: host.to_string(),
        port,
        root: root.to_string(),
    })
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." || s.contains('/')
}

/// Resolve `-t TARGET`: a target name from the config, an `ssh://` URL, or a local path.
///
/// # Errors
/// Usage error for an unknown target or a malformed host entry.
pub fn resolve_target(target: &str, config: Option<&ProjectConfig>, config_origin: &str) -> Result<Target> {
    let env = Overrides::from_env();
    if let Some(tc) = config.and_then(|c| c.targets.get(target)) {
        return configured_target(target, tc, config_origin, &env);
    }
    let location = if target.starts_with("ssh://") {
        parse_ssh_url(target)?
    } else if looks_like_path(target) {
        Location::Local {
            root: absolute(target)?,
        }
    } else {
        return Err(unknown_target(target, config, config_origin));
    };
    Ok(Target {
        name: target.to_string(),
        hosts: vec![HostSpec {
            label: target.to_string(),
            target: target.to_string(),
            location,
            remote_bin: env.remote_bin.unwrap_or_else(|| "slipway".into()),
            ssh_config: env.ssh_config,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            link_mode: LinkMode::default(),
            service: ServiceMode::None,
        }],
        config: TargetConfig::default(),
    })
}

/// `SLIPWAY_REMOTE_BIN` and `SLIPWAY_SSH_CONFIG`, which win over a target's keys.
struct Overrides {
    remote_bin: Option<String>,
    ssh_config: Option<PathBuf>,
}

impl Overrides {
    fn from_env() -> Overrides {
        Overrides {
            remote_bin: std::env::var("SLIPWAY_REMOTE_BIN").ok().filter(|v| !v.is_empty()),
            ssh_config: std::env::var_os("SLIPWAY_SSH_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// A target of `slipway.toml`: its hosts, each resolved, with the
/// target's timeouts and hooks checked where the file is known.
fn configured_target(target: &str, tc: &TargetConfig, config_origin: &str, env: &Overrides) -> Result<Target> {
    let in_config = |e: Error| Error::usage(format!("`{config_origin}`: {e}"));
    let timeout = match &tc.connect_timeout {
        Some(t) => parse_duration(t, &format!("targets.{target}.connect_timeout")).map_err(in_config)?,
        None => DEFAULT_CONNECT_TIMEOUT,
    };
    // The hooks' durations are used later (by the fleet); check them
    // here, where the file they come from is known.
    crate::config::Hooks::from_config(target, tc).map_err(in_config)?;
    if tc.hosts.is_empty() {
        return Err(Error::usage(format!(
            "`{config_origin}`: target `{target}` has no hosts"
        )));
    }
    let mut hosts = Vec::new();
    for entry in &tc.hosts {
        let location = host_entry(&entry.host, tc.root.as_deref(), target, config_origin)?;
        let service = ServiceMode::of(target, tc, entry).map_err(in_config)?;
        hosts.push(HostSpec {
            label: entry.host.clone(),
            service,
            target: target.to_string(),
            location,
            remote_bin: env
                .remote_bin
                .clone()
                .or_else(|| tc.remote_bin.clone())
                .unwrap_or_else(|| "slipway".into()),
            ssh_config: env
                .ssh_config
                .clone()
                .or_else(|| tc.ssh_config.as_ref().map(PathBuf::from)),
            connect_timeout: timeout,
            link_mode: tc.link_mode.unwrap_or_default(),
        });
    }
    if let Some(on) = &tc.migrate_on
        && !hosts.iter().any(|h| &h.label == on)
    {
        return Err(Error::usage(format!(
            "`{config_origin}`: `migrate_on = \"{on}\"` of target `{target}` is not one of its hosts"
        )));
    }
    let mut labels: Vec<&str> = hosts.iter().map(|h| h.label.as_str()).collect();
    labels.sort_unstable();
    if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::usage(format!(
            "`{config_origin}`: target `{target}` lists host `{}` twice",
            w[0]
        )));
    }
    Ok(Target {
        name: target.to_string(),
        hosts,
        config: tc.clone(),
    })
}

/// The usage error for a TARGET that is no target, URL or path, naming
/// the targets there are.
fn unknown_target(target: &str, config: Option<&ProjectConfig>, config_origin: &str) -> Error {
    if target.is_empty() {
        return Error::usage(
            "the target is empty; give a target name from `slipway.toml`, ssh://[user@]host[:port]/abs/root or a local path",
        );
    }
    let known: Vec<&String> = config.map(|c| c.targets.keys().collect()).unwrap_or_default();
    let known = if config.is_none() {
        format!("there is no `{config_origin}` here (run `slipway init` to write one, or pass `--config FILE`)")
    } else if known.is_empty() {
        format!("`{config_origin}` defines no targets")
    } else {
        format!(
            "`{config_origin}` defines {}",
            known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        )
    };
    Error::usage(format!(
        "unknown target `{target}`: {known}; or give ssh://[user@]host[:port]/abs/root or a local path"
    ))
}

fn absolute(path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        return Ok(p);
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("read", &p, e))?;
    Ok(cwd.join(p))
}

fn host_entry(entry: &str, root: Option<&str>, target: &str, origin: &str) -> Result<Location> {
    if entry.starts_with("ssh://") {
        return parse_ssh_url(entry);
    }
    if entry.starts_with('/') {
        return Ok(Location::Local {
            root: PathBuf::from(entry),
        });
    }
    let Some(root) = root else {
        return Err(Error::usage(format!(
            "`{origin}`: host `{entry}` of target `{target}` needs the target's `root` (or write it as ssh://{entry}/abs/root)"
        )));
    };
    if !root.starts_with('/') {
        return Err(Error::usage(format!(
            "`{origin}`: `root` of target `{target}` must be an absolute path"
        )));
    }
    parse_ssh_url(&format!("ssh://{entry}{root}")).map_err(|_| {
        Error::usage(format!(
            "`{origin}`: host `{entry}` of target `{target}` is not a host name, [user@]host[:port] or ssh:// URL"
        ))
    })
}

/// A running `slipway serve` on the other end.
pub trait RemoteProcess: Send {
    /// Wait for the process to exit; an error carries its stderr.
    ///
    /// # Errors
    /// When it exited unsuccessfully.
    fn finish(&mut self) -> Result<()>;
    /// Stop it now.
    fn kill(&mut self);
    /// What it wrote on stderr so far (the tail).
    fn stderr_text(&mut self) -> String;
}

/// The sending end of a connection: a pipe in both transports, which lets
/// a push move bundle bytes with splice(2) instead of copying them.
pub trait Outbound: Write + Send + AsFd {}

impl<T: Write + Send + AsFd> Outbound for T {}

/// The stream from a host's `serve`: a pipe, which the client can wait on
/// (and notice an interrupt meanwhile, see [`crate::interrupt`]).
pub trait Inbound: Read + Send + AsFd {}

impl<T: Read + Send + AsFd> Inbound for T {}

/// A byte stream to and from one host's `serve`.
pub struct Connection {
    pub reader: Box<dyn Inbound>,
    pub writer: Box<dyn Outbound>,
    pub process: Box<dyn RemoteProcess>,
}

/// Start `serve` for `spec` and return the connection.
///
/// # Errors
/// When the process cannot be started or the host cannot be reached (one line
/// naming the host and the reason).
pub fn connect(spec: &HostSpec) -> Result<Connection> {
    let conn = match &spec.location {
        Location::Local { root } => local::connect(root).map_err(|e| e.on_host(&spec.label))?,
        Location::Ssh { .. } => ssh::connect(spec)?,
    };
    // A larger pipe towards the host: a bundle is spliced into it a
    // megabyte at a time instead of 64 KiB (fewer system calls and
    // wake-ups). Only a hint: the default size works too.
    let _ = rustix::pipe::fcntl_setpipe_size(&conn.writer, OUTBOUND_PIPE_BYTES);
    Ok(conn)
}

/// The pipe size asked for the sending end of a connection (1 MiB is the
/// most an unprivileged process may ask for by default).
const OUTBOUND_PIPE_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        assert_eq!(
            parse_ssh_url("ssh://deploy@app3:2222/srv/shop").unwrap(),
            Location::Ssh {
                user: Some("deploy".into()),
                host: "app3".into(),
                port: Some(2222),
                root: "/srv/shop".into()
            }
        );
        assert_eq!(
            parse_ssh_url("ssh://prod-alias/srv/x").unwrap(),
            Location::Ssh {
                user: None,
                host: "prod-alias".into(),
                port: None,
                root: "/srv/x".into()
            }
        );
        for bad in [
            "ssh://host",
            "ssh://host/",
            "ssh://host:99999/x",
            "ssh://-oProxyCommand=x/srv",
            "ssh://h/a/../b",
        ] {
            assert!(parse_ssh_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_from_config() {
        let cfg = crate::config::parse_project(
            "[targets.prod]\nhosts = [\"app1\", \"deploy@app2:2222\", \"ssh://app3/srv/other\", \"/tmp/local\"]\nroot = \"/srv/shop\"\n",
            "slipway.toml",
        )
        .unwrap();
        let t = resolve_target("prod", Some(&cfg), "slipway.toml").unwrap();
        assert_eq!(t.hosts.len(), 4);
        assert_eq!(
            t.hosts[1].location,
            Location::Ssh {
                user: Some("deploy".into()),
                host: "app2".into(),
                port: Some(2222),
                root: "/srv/shop".into()
            }
        );
        assert!(matches!(t.hosts[3].location, Location::Local { .. }));
        let err = resolve_target("staging", Some(&cfg), "slipway.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown target `staging`") && err.contains("`prod`"),
            "{err}"
        );
        let noroot = crate::config::parse_project("[targets.x]\nhosts = [\"app1\"]\n", "c").unwrap();
        assert!(
            resolve_target("x", Some(&noroot), "c")
                .unwrap_err()
                .to_string()
                .contains("needs the target's `root`")
        );
    }
}
