//! `slipway.toml`, flags and environment, resolved once into validated values.
//!
//! The `[build]` section is read from the tag being built (never the working
//! tree); `[targets.*]` come from the operator's `--config` or `./slipway.toml`.
//! Unknown keys and wrong types are refused with the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole `slipway.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub build: BuildConfig,
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
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
    pub hosts: Vec<String>,
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
    #[serde(default)]
    pub hooks: HooksConfig,
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
    pub timeouts: HookTimeouts,
}

impl Hooks {
    /// # Errors
    /// Usage error for a malformed duration, naming `targets.TARGET.hooks.KEY`.
    pub fn from_config(target: &str, c: &TargetConfig) -> Result<Hooks> {
        let h = &c.hooks;
        let command = |c: &Option<String>| c.clone().filter(|s| !s.trim().is_empty());
        Ok(Hooks {
            before_activate: command(&h.before_activate),
            after_activate: command(&h.after_activate),
            health: command(&h.health),
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
