//! `slipway.toml`, flags and environment, resolved once into validated values.
//!
//! The `[build]` section is read from the tag being built (never the working
//! tree); `[targets.*]` come from the operator's `--config` or `./slipway.toml`.
//! Unknown keys and wrong types are refused with the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole `slipway.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub build: BuildConfig,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// `[remotes.NAME]`: S3-compatible buckets releases are published to
    /// and fetched from (docs/remote-store.md).
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteConfig>,
}

/// `[remotes.NAME]`: where a remote store is. Credentials never go here:
/// they come from the environment and the AWS shared files, as the AWS CLI
/// reads them (docs/remote-store.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub url: String,
    /// The S3 endpoint of a non-AWS store (`http://127.0.0.1:3900`).
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` win over it, as over
    /// the AWS CLI's config; without any, the profile's `endpoint_url`,
    /// else AWS's own endpoint for the region.
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`); default: on with a custom endpoint.
    pub path_style: Option<bool>,
    /// How long the URLs presigned for hosts stay valid (`1h`); they must
    /// outlast the slowest host's download.
    pub url_lifetime: Option<String>,
}

/// `[build]`: how a tag becomes a tree.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// Run with `sh -c` in the exported tree.
    pub command: Option<String>,
    /// The directory (relative to the tree) that becomes the bundle; default: the whole tree.
    pub output: Option<String>,
    /// Symlinks (bundle paths) allowed to point outside the release.
    #[serde(default)]
    pub allow_links: Vec<String>,
}

/// `[targets.NAME]`: a set of hosts and how to deploy to them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub hosts: Vec<HostEntry>,
    pub root: Option<String>,
    pub keep: Option<usize>,
    #[serde(default)]
    pub shared: Vec<String>,
    #[serde(default)]
    pub shared_files: Vec<String>,
    #[serde(default)]
    pub pinned: Vec<String>,
    pub parallel: Option<usize>,
    pub link_mode: Option<LinkMode>,
    pub remote_bin: Option<String>,
    pub ssh_config: Option<String>,
    pub connect_timeout: Option<String>,
    pub require_healthy_on: Option<String>,
    /// The host that runs `backup`, `migrate` and `migrate_down` (as
    /// written in `hosts`); default: the first host.
    pub migrate_on: Option<String>,
    /// Hosts pull releases from this remote store (`[remotes.NAME]`)
    /// instead of receiving them over SSH; `--from` overrides it.
    pub from: Option<String>,
    #[serde(default)]
    pub hooks: HooksConfig,
    /// `[targets.NAME.service]`: run the release as a service in A/B slots
    /// (docs/ab-deploys.md). An empty table: each host's own
    /// `.slipway/service.toml` says how.
    pub service: Option<ServiceConfig>,
}

/// One entry of a target's `hosts`: a host (`app1`, `user@app1:22`, an
/// `ssh://` URL or a local path), or a table `{ host = "app2", … }` whose
/// other keys override the target's `[service]` values for that host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEntry {
    pub host: String,
    pub service: ServiceConfig,
}

impl HostEntry {
    /// An entry without overrides.
    pub fn plain(host: &str) -> HostEntry {
        HostEntry {
            host: host.to_string(),
            service: ServiceConfig::default(),
        }
    }
}

impl<'de> Deserialize<'de> for HostEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match toml::Value::deserialize(d)? {
            toml::Value::String(host) => Ok(HostEntry::plain(&host)),
            toml::Value::Table(mut t) => {
                let host = match t.remove("host") {
                    Some(toml::Value::String(h)) => h,
                    Some(_) => return Err(D::Error::custom("a host entry's `host` must be a string")),
                    None => return Err(D::Error::custom("a host entry table needs `host = \"NAME\"`")),
                };
                let service = ServiceConfig::deserialize(toml::Value::Table(t)).map_err(|e| {
                    D::Error::custom(format!(
                        "host `{host}`: {} (a host entry may override only the target's `[service]` values)",
                        e.message().trim()
                    ))
                })?;
                Ok(HostEntry { host, service })
            }
            other => Err(D::Error::custom(format!(
                "a host entry is a string or a table, not {}",
                other.type_str()
            ))),
        }
    }
}

/// `[targets.NAME.service]`, a host entry's overrides, or a host's
/// `.slipway/service.toml`: how a release runs as a service in two slots.
/// Every key is optional here; [`ServiceConfig::resolve`] checks that
/// together they make a whole [`ServiceSpec`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub start: Option<String>,
    pub stop: Option<String>,
    pub stop_timeout: Option<String>,
    pub ports: Option<Vec<u16>>,
    pub check: Option<String>,
    pub check_timeout: Option<String>,
    pub upstream: Option<String>,
    pub reload: Option<String>,
    pub switch: Option<String>,
    pub drain: Option<String>,
    pub keep_warm: Option<bool>,
}

/// Default `check_timeout`.
pub const DEFAULT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default `drain`: an instance that had traffic keeps serving this long
/// after it lost it (a reloaded proxy's old workers finish with it).
pub const DEFAULT_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);
/// Default `stop_timeout`: TERM, then KILL after this long.
pub const DEFAULT_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How traffic moves to a slot's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Traffic {
    /// Write `server 127.0.0.1:PORT;` to `path` atomically, then run `reload`.
    Upstream { path: String, reload: Option<String> },
    /// Run this command with `SLIPWAY_PORT` set.
    Switch { command: String },
}

/// A whole, checked service definition: what a deploy sends a host (a
/// trusted one; a confined host reads its own `.slipway/service.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    pub stop_timeout_ms: u64,
    /// Slot a's port, slot b's port.
    pub ports: [u16; 2],
    pub check: String,
    pub check_timeout_ms: u64,
    pub traffic: Traffic,
    pub drain_ms: u64,
    pub keep_warm: bool,
}

impl ServiceConfig {
    /// True when no key is set (an empty `[service]` table).
    pub fn is_empty(&self) -> bool {
        *self == ServiceConfig::default()
    }

    /// `self` with every key `over` sets replaced by its value.
    pub fn overridden_by(&self, over: &ServiceConfig) -> ServiceConfig {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        ServiceConfig {
            start: pick(&self.start, &over.start),
            stop: pick(&self.stop, &over.stop),
            stop_timeout: pick(&self.stop_timeout, &over.stop_timeout),
            ports: pick(&self.ports, &over.ports),
            check: pick(&self.check, &over.check),
            check_timeout: pick(&self.check_timeout, &over.check_timeout),
            upstream: pick(&self.upstream, &over.upstream),
            reload: pick(&self.reload, &over.reload),
            switch: pick(&self.switch, &over.switch),
            drain: pick(&self.drain, &over.drain),
            keep_warm: pick(&self.keep_warm, &over.keep_warm),
        }
    }

    /// Check the values and resolve them; `section` names where they come
    /// from in errors (`targets.production.service`, a host's
    /// `service.toml`).
    ///
    /// # Errors
    /// Usage error naming the key: a missing `start` or `check`, ports not
    /// exactly two different ones, both or neither of `upstream` and
    /// `switch`, a relative `upstream`, a malformed duration.
    pub fn resolve(&self, section: &str) -> Result<ServiceSpec> {
        let bad = |key: &str, why: &str| Error::usage(format!("`{section}.{key}`: {why}"));
        let command = |v: &Option<String>, key: &str| -> Result<String> {
            v.clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| bad(key, "missing (a command, run with `sh -c`)"))
        };
        let start = command(&self.start, "start")?;
        let check = command(&self.check, "check")?;
        let ports = match self.ports.as_deref() {
            Some([a, b]) if a != b && *a != 0 && *b != 0 => [*a, *b],
            Some([a, b]) if a == b => return Err(bad("ports", "the two ports must differ")),
            Some(_) | None => {
                return Err(bad(
                    "ports",
                    "give exactly two ports, slot a's and slot b's (e.g. `[8081, 8082]`)",
                ));
            }
        };
        let nonblank = |v: &Option<String>| v.clone().filter(|c| !c.trim().is_empty());
        let traffic = match (nonblank(&self.upstream), nonblank(&self.switch)) {
            (Some(path), None) => {
                if !path.starts_with('/') {
                    return Err(bad("upstream", "must be an absolute path"));
                }
                Traffic::Upstream {
                    path,
                    reload: nonblank(&self.reload),
                }
            }
            (None, Some(command)) => {
                if nonblank(&self.reload).is_some() {
                    return Err(bad("reload", "goes with `upstream`, not with `switch`"));
                }
                Traffic::Switch { command }
            }
            (Some(_), Some(_)) => {
                return Err(bad(
                    "switch",
                    "set either `upstream` (with `reload`) or `switch`, not both",
                ));
            }
            (None, None) => {
                return Err(bad(
                    "upstream",
                    "missing: set `upstream` (a file slipway writes, with `reload`) or `switch` (a command)",
                ));
            }
        };
        let dur = |v: &Option<String>, key: &str, default: std::time::Duration| -> Result<u64> {
            let d = match v {
                Some(v) => parse_duration(v, &format!("{section}.{key}"))?,
                None => default,
            };
            Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        };
        Ok(ServiceSpec {
            start,
            stop: nonblank(&self.stop),
            stop_timeout_ms: dur(&self.stop_timeout, "stop_timeout", DEFAULT_STOP_TIMEOUT)?,
            ports,
            check,
            check_timeout_ms: dur(&self.check_timeout, "check_timeout", DEFAULT_CHECK_TIMEOUT)?,
            traffic,
            drain_ms: dur(&self.drain, "drain", DEFAULT_DRAIN)?,
            keep_warm: self.keep_warm.unwrap_or(true),
        })
    }
}

/// How a host of a target runs its service: not at all, as the host's own
/// `.slipway/service.toml` says, or as the target (with the host's
/// overrides) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceMode {
    None,
    HostDefined,
    Given(ServiceSpec),
}

impl ServiceMode {
    /// The mode of `host` of `target`.
    ///
    /// # Errors
    /// Usage error naming the target, host and key.
    pub fn of(target: &str, tc: &TargetConfig, entry: &HostEntry) -> Result<ServiceMode> {
        let Some(service) = &tc.service else {
            if !entry.service.is_empty() {
                return Err(Error::usage(format!(
                    "host `{}` of target `{target}` overrides service values, but the target has no `[targets.{target}.service]`",
                    entry.host
                )));
            }
            return Ok(ServiceMode::None);
        };
        let merged = service.overridden_by(&entry.service);
        if merged.is_empty() {
            return Ok(ServiceMode::HostDefined);
        }
        let section = if entry.service.is_empty() {
            format!("targets.{target}.service")
        } else {
            format!("targets.{target}.service (with host `{}`'s values)", entry.host)
        };
        merged.resolve(&section).map(ServiceMode::Given)
    }

    pub fn is_none(&self) -> bool {
        matches!(self, ServiceMode::None)
    }
}

/// How release files are made from objects on a host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// Hardlink objects (fall back to copies across file systems).
    #[default]
    Hardlink,
    /// Always copy.
    Copy,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub before_activate: Option<String>,
    pub after_activate: Option<String>,
    pub health: Option<String>,
    pub health_timeout: Option<String>,
    pub hook_timeout: Option<String>,
    /// Once, on the `migrate_on` host, right before `migrate`; its last
    /// line (a path or id) is recorded.
    pub backup: Option<String>,
    /// Every host, before `migrate`: stop intake.
    pub pause: Option<String>,
    /// Every host, always after `pause`.
    pub resume: Option<String>,
    /// Once per deploy, on the `migrate_on` host, in the new release.
    pub migrate: Option<String>,
    /// In the release being left: lets a rollback cross a schema change.
    pub migrate_down: Option<String>,
    /// Prints the schema version a release expects (run in that release).
    pub schema: Option<String>,
    /// Prints the version the database is at now.
    pub db_schema: Option<String>,
    /// The new release cannot pass its check before its migration: with a
    /// service, start and check it after `migrate` (inside the pause).
    pub start_after_migrate: Option<bool>,
}

/// Default `health_timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default `hook_timeout`.
pub const DEFAULT_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// How long hooks may take, resolved from a `[hooks]` section or a host's
/// `hooks.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookTimeouts {
    /// Each run of `before_activate` / `after_activate` is killed after this long.
    pub hook: std::time::Duration,
    /// A failing `health` check is retried until this long has passed.
    pub health: std::time::Duration,
}

impl HookTimeouts {
    /// Each attempt of a health check is killed after this long.
    pub fn health_attempt(&self) -> std::time::Duration {
        self.hook.min(self.health).max(std::time::Duration::from_secs(1))
    }
}

impl HooksConfig {
    /// The timeouts, with defaults; `section` names the section in errors
    /// (`targets.production.hooks`, or a host's `hooks.toml` path).
    ///
    /// # Errors
    /// Usage error for a malformed duration.
    pub fn timeouts(&self, section: &str) -> Result<HookTimeouts> {
        let dur = |v: &Option<String>, key: &str, default| match v {
            Some(v) => parse_duration(v, &format!("{section}.{key}")),
            None => Ok(default),
        };
        Ok(HookTimeouts {
            hook: dur(&self.hook_timeout, "hook_timeout", DEFAULT_HOOK_TIMEOUT)?,
            health: dur(&self.health_timeout, "health_timeout", DEFAULT_HEALTH_TIMEOUT)?,
        })
    }
}

/// A target's hooks, resolved from its `[hooks]` section: blank commands
/// are dropped, durations parsed (the fleet runs them; `remote` resolves
/// them once when it reads the target, where the file is known).
#[derive(Debug, Clone)]
pub struct Hooks {
    pub before_activate: Option<String>,
    pub after_activate: Option<String>,
    pub health: Option<String>,
    pub backup: Option<String>,
    pub pause: Option<String>,
    pub resume: Option<String>,
    pub migrate: Option<String>,
    pub migrate_down: Option<String>,
    pub schema: Option<String>,
    pub db_schema: Option<String>,
    pub start_after_migrate: bool,
    pub timeouts: HookTimeouts,
}

impl Hooks {
    /// # Errors
    /// Usage error for a malformed duration, naming `targets.TARGET.hooks.KEY`.
    pub fn from_config(target: &str, c: &TargetConfig) -> Result<Hooks> {
        let h = &c.hooks;
        let set = |v: &Option<String>| v.as_deref().is_some_and(|c| !c.trim().is_empty());
        if set(&h.pause) != set(&h.resume) {
            let (has, lacks) = if set(&h.pause) {
                ("pause", "resume")
            } else {
                ("resume", "pause")
            };
            return Err(Error::usage(format!(
                "`targets.{target}.hooks.{lacks}`: missing; `{has}` and `{lacks}` go together (intake paused is always resumed)"
            )));
        }
        if set(&h.migrate_down) && !set(&h.migrate) {
            return Err(Error::usage(format!(
                "`targets.{target}.hooks.migrate`: missing; `migrate_down` undoes what `migrate` does"
            )));
        }
        let command = |c: &Option<String>| c.clone().filter(|s| !s.trim().is_empty());
        Ok(Hooks {
            before_activate: command(&h.before_activate),
            after_activate: command(&h.after_activate),
            health: command(&h.health),
            backup: command(&h.backup),
            pause: command(&h.pause),
            resume: command(&h.resume),
            migrate: command(&h.migrate),
            migrate_down: command(&h.migrate_down),
            schema: command(&h.schema),
            db_schema: command(&h.db_schema),
            start_after_migrate: h.start_after_migrate.unwrap_or(false),
            timeouts: h.timeouts(&format!("targets.{target}.hooks"))?,
        })
    }
}

/// Parse `slipway.toml` text; `origin` names it in errors (a path, or `v1.2:slipway.toml`).
///
/// # Errors
/// Usage error with origin, line and the offending key.
pub fn parse_project(text: &str, origin: &str) -> Result<ProjectConfig> {
    toml::from_str(text).map_err(|e| toml_error(&e, text, origin))
}

/// Parse any TOML file of slipway's (`origin` names it in errors).
///
/// # Errors
/// Usage error with origin, line and the offending key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| toml_error(&e, text, origin))
}

/// Read `path` when it exists; `None` when it does not.
///
/// # Errors
/// When it exists but cannot be read or parsed.
pub fn load_project(path: &Path) -> Result<Option<ProjectConfig>> {
    match crate::fs::read_optional(path)? {
        None => Ok(None),
        Some(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|_| Error::usage(format!("`{}` is not valid UTF-8", path.display())))?;
            parse_project(&text, &path.display().to_string()).map(Some)
        }
    }
}

fn toml_error(e: &toml::de::Error, text: &str, origin: &str) -> Error {
    let msg = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            let key = text
                .lines()
                .nth(line - 1)
                .and_then(|l| l.split('=').next())
                .map(|k| k.trim().trim_matches(['[', ']']))
                .unwrap_or_default();
            Error::usage(format!("`{origin}` line {line} (`{key}`): {msg}"))
        }
        None => Error::usage(format!("`{origin}`: {msg}")),
    }
}

/// Parse a duration like `30s`, `2m`, `500ms` or a bare number of seconds.
///
/// # Errors
/// Usage error naming the value and `what` it was for.
pub fn parse_duration(value: &str, what: &str) -> Result<std::time::Duration> {
    let v = value.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::usage(format!("`{value}` is not a duration for `{what}` (try `30s`, `2m`)")))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(Error::usage(format!(
                "`{value}` is not a duration for `{what}` (try `30s`, `2m`)"
            )));
        }
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| {
        Error::usage(format!(
            "`{value}` is too long a duration for `{what}` (try `30s`, `2m`)"
        ))
    })
}

/// `$SLIPWAY_STORE`, unless it is unset or empty: an empty value means
/// "unset" (as for `$XDG_DATA_HOME`), so `SLIPWAY_STORE= slipway list` uses
/// the default store.
pub fn store_from_env() -> Option<PathBuf> {
    std::env::var_os("SLIPWAY_STORE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where the local store lives when neither `--store` nor `$SLIPWAY_STORE`
/// says: `$XDG_DATA_HOME/slipway`, else `~/.local/share/slipway`.
///
/// # Errors
/// When no location can be derived.
pub fn default_store_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("slipway"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/slipway")),
        None => Err(Error::usage(
            "cannot find the local store: neither `HOME` nor `XDG_DATA_HOME` is set; pass `--store DIR` or set `SLIPWAY_STORE`",
        )),
    }
}

/// `user@host` of whoever runs this process, for provenance and history.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(user_from_passwd);
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    format!("{user}@{host}")
}

/// The login name of this process's uid from `/etc/passwd`, else `uid<N>`.
fn user_from_passwd() -> String {
    let uid = rustix::process::getuid().as_raw();
    user_name(uid).unwrap_or_else(|| format!("uid{uid}"))
}

/// The login name of `uid` from `/etc/passwd`, when it has one there.
pub fn user_name(uid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/passwd").ok().and_then(|text| {
        text.lines().find_map(|line| {
            let mut f = line.split(':');
            let name = f.next()?;
            let id = f.nth(1)?.parse::<u32>().ok()?;
            (id == uid).then(|| name.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let err = parse_project("[build]\ncomand = \"make\"\n", "slipway.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("`slipway.toml` line 2 (`comand`):"), "{text}");
        assert!(text.contains("unknown field"), "{text}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s", "x").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("2m", "x").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("5", "x").unwrap().as_secs(), 5);
        assert_eq!(parse_duration("250ms", "x").unwrap().as_millis(), 250);
        assert!(parse_duration("soon", "x").is_err());
        // Too large for a `Duration`: an error, not a panic.
        let huge = parse_duration("99999999999999999999h", "hooks.hook_timeout").unwrap_err();
        assert_eq!(
            huge.to_string(),
            "`99999999999999999999h` is too long a duration for `hooks.hook_timeout` (try `30s`, `2m`)"
        );
    }
}
