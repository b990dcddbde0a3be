//! `slipway init`: write a commented `slipway.toml` to start from.
//!
//! It detects nothing and asks nothing: the file is the same for every
//! repository, with a `[build]` section and one example target whose keys
//! (all of `docs/configuration.md`) are commented out. Invariant: an existing
//! file is never touched — the new one is created next to it and linked into
//! place only if nothing is there.

use std::io::Write;

use crate::Context;
use crate::error::{Error, Result};
use crate::fs;

/// The file `slipway init` writes. It parses as it is (the unit tests also
/// parse it with every commented key switched on).
pub const TEMPLATE: &str = r#"# slipway.toml, written by `slipway init`. Lines starting with `#` are
# comments: uncomment and edit what you need. Every key: docs/configuration.md.

# How a tag becomes a release tree. This section is read from the tag being
# built (`git show TAG:slipway.toml`), never from your working copy: commit
# this file, then tag.
[build]
# Run with `sh -c` in a clean export of the tag, with SOURCE_DATE_EPOCH set to
# the tag's commit time. Without a command, the tagged tree is the release.
# command = "npm ci && npm run build"
# The directory (relative to the tree) that becomes the bundle [default: the whole tree].
# output = "dist"
# Symlinks (bundle paths) that may point outside the release.
# allow_links = ["public/certs"]

# Where releases go: `slipway deploy v1.0.0 -t production`. Targets are read
# from this file in your working copy (or --config FILE). Add more, such as
# [targets.staging], the same way.
[targets.production]
# Bare hosts (they use `root`), ssh://[user@]host[:port]/abs/root URLs, or
# absolute local paths. Host names go to ssh verbatim, so aliases from
# ~/.ssh/config work. These two are examples: replace them with yours.
hosts = ["app1.example.com", "app2.example.com"]
# The deploy root on each host: current, releases/, shared/ and .slipway/ live here.
root = "/srv/app"
# Releases kept by prune, and after each successful deploy.
# keep = 5
# Directories under <root>/shared/ linked into every release: data that outlives releases.
# shared = ["uploads", "log"]
# Single files under <root>/shared/ linked into every release.
# shared_files = ["config/app.env"]
# Releases prune never removes.
# pinned = ["v1.0.0"]
# Hosts pushed to at once.
# parallel = 16
# How release files are made from the host's objects: "hardlink" or "copy".
# link_mode = "hardlink"
# The slipway command on the hosts; after `slipway host install`, "~/.local/bin/slipway".
# remote_bin = "slipway"
# An ssh config file to use instead of ~/.ssh/config.
# ssh_config = "~/.ssh/deploy_config"
# How long SSH may take to connect and authenticate.
# connect_timeout = "10s"
# A gate: only bundles found healthy on every host of this other target may deploy here.
# require_healthy_on = "staging"
# The host that runs backup, migrate and migrate_down (below) [default: the first host].
# migrate_on = "app1.example.com"
# Hosts pull releases from this remote store (below) instead of over SSH.
# from = "artifacts"

# Commands run on each host in the release directory, with SLIPWAY_RELEASE,
# SLIPWAY_ID, SLIPWAY_PREVIOUS, SLIPWAY_ROOT and SLIPWAY_HOST set.
[targets.production.hooks]
# Before the switch; a failure stops the deploy with nothing switched.
# before_activate = "bin/migrate --check"
# After the switch (and again after a switch back).
# after_activate = "sudo systemctl reload app"
# Retried until it succeeds or health_timeout passes; a failure switches every host back (exit 3).
# health = "curl -fsS http://127.0.0.1:8080/health"
# health_timeout = "30s"
# A hook still running after this long is killed and counts as failed.
# hook_timeout = "5m"
# Database changes (docs/ab-deploys.md): the schema a release expects, and the
# one the database is at; when they differ, a deploy runs backup, pause (every
# host), migrate (once, on migrate_on), the switch, then resume (always).
# schema = "cat db/VERSION"
# db_schema = "bin/schema-now"
# backup = "bin/backup"
# pause = "bin/intake off"
# resume = "bin/intake on"
# migrate = "bin/migrate"
# In the release being left: lets a rollback cross a schema change (else exit 7).
# migrate_down = "bin/migrate --down"
# With a service: start and check the new release after migrate, not before.
# start_after_migrate = false

# To run the release as a service in two slots per host (the new release
# starts beside the live one, is checked on its own port, then takes the
# traffic; the old one stays warm), add a [targets.production.service]
# section: docs/ab-deploys.md shows it.

# An S3-compatible bucket to publish releases to and pull them from
# (docs/remote-store.md). Credentials come from the environment and ~/.aws,
# as the AWS CLI reads them; never from this file.
# [remotes.artifacts]
# url = "s3://releases/app"
# endpoint = "http://127.0.0.1:3900"
# region = "garage"
# path_style = true
# url_lifetime = "1h"
"#;

/// # Errors
/// When the file already exists (exit 1, naming it) or cannot be written.
pub fn run(ctx: &Context) -> Result<()> {
    let path = &ctx.config_path;
    let exists = || Error::ConfigExists { path: path.clone() };
    if fs::symlink_metadata_optional(path)?.is_some() {
        return Err(exists());
    }
    let mut tmp = fs::user_file_for(path)?;
    tmp.write_all(TEMPLATE.as_bytes())
        .map_err(|e| Error::io("write", path, e))?;
    if !fs::persist_new(tmp, path)? {
        return Err(exists());
    }
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "path": path }));
    } else {
        ctx.out.data(&path.display().to_string());
    }
    let config = if ctx.config_explicit {
        format!(" --config {}", path.display())
    } else {
        String::new()
    };
    ctx.out.info(&format!(
        "wrote {p}; next:
  1. in [targets.production], replace the example `hosts` and `root` with yours
  2. in [build], set `command` and `output` if releases need a build step
  3. commit {p}, then tag a release: git tag v1.0.0
  4. slipway{config} host check -t production      # can slipway reach the hosts?
  5. slipway{config} host install -t production    # when slipway is not on them yet
  6. slipway build v1.0.0 && slipway{config} deploy v1.0.0 -t production",
        p = path.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_project;

    /// The template with every `# key = value` line uncommented.
    fn everything_on() -> String {
        TEMPLATE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')) =>
                {
                    rest
                }
                // A commented-out table header (`# [remotes.artifacts]`).
                Some(rest) if rest.starts_with('[') && rest.ends_with(']') && !rest.contains(' ') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_template_parses_as_written_and_with_every_key_on() {
        let plain = parse_project(TEMPLATE, "slipway.toml").unwrap();
        let t = &plain.targets["production"];
        assert_eq!(t.hosts.len(), 2);
        assert!(plain.build.command.is_none() && t.keep.is_none() && t.hooks.health.is_none());

        let full = parse_project(&everything_on(), "slipway.toml").unwrap();
        let t = &full.targets["production"];
        assert!(full.build.command.is_some() && full.build.output.is_some());
        assert!(t.keep.is_some() && t.require_healthy_on.is_some() && t.hooks.hook_timeout.is_some());
        assert!(full.remotes["artifacts"].url_lifetime.is_some() && t.from.is_some());
    }

    #[test]
    fn the_template_shows_every_documented_key() {
        let docs = include_str!("../../docs/configuration.md");
        let on = everything_on();
        let mut keys = Vec::new();
        for line in docs.lines() {
            let Some(key) = line.strip_prefix("| `").and_then(|r| r.split_once('`')).map(|(k, _)| k) else {
                continue;
            };
            // Lower-case keys are slipway.toml keys; upper-case ones are environment variables.
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(key);
                assert!(
                    on.lines().any(|l| l.starts_with(&format!("{key} = "))),
                    "`{key}` from docs/configuration.md is missing in the init template"
                );
            }
        }
        assert!(keys.len() >= 20, "found only {keys:?}");
    }
}
