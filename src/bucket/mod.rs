//! Remote stores: S3-compatible buckets that releases are published to
//! once and fetched from by operators and hosts (docs/remote-store.md).
//!
//! - [`aws`] reads credentials, region and endpoint as the AWS CLI does,
//! - [`s3`] signs (rusty-s3) and sends (ureq) requests, with retries and
//!   one-line errors,
//! - [`format`] is the layout of the bucket and its index formats,
//! - [`names`] binds names once on any engine, and keeps `gc` and
//!   `publish` apart with locks,
//! - [`publish`], [`fetch`] and [`gc`] are the three operations.
//!
//! Beneath `commands/`, beside `store` and `bundle/`: nothing here knows
//! about hosts or SSH.

pub mod aws;
pub mod fetch;
pub mod format;
pub mod gc;
pub mod hosts;
pub mod names;
pub mod publish;
pub mod pull;
pub mod s3;

pub use s3::Remote;

use crate::config::ProjectConfig;
use crate::error::{Error, Result};

/// Open remote `name` of the project's `[remotes]`.
///
/// # Errors
/// Usage error when it is not configured (listing those that are) or its
/// settings are wrong.
pub fn open(project: Option<&ProjectConfig>, name: &str, origin: &str) -> Result<Remote> {
    let remotes = project.map(|p| &p.remotes);
    let Some(cfg) = remotes.and_then(|r| r.get(name)) else {
        let known: Vec<&str> = remotes.into_iter().flat_map(|r| r.keys().map(String::as_str)).collect();
        let have = if known.is_empty() {
            format!("`{origin}` has no `[remotes.…]`")
        } else {
            format!("`{origin}` has {}", known.join(", "))
        };
        return Err(Error::usage(format!(
            "no remote `{name}`: {have} (docs/remote-store.md shows how to add one)"
        )));
    };
    Remote::open(name, cfg, &aws::from_env()?)
}

/// A test-only knob, like the host's fault points: with
/// `SLIPWAY_REMOTE_PAUSE=<point>:<file>` in the environment, the process
/// creates `<file>.<pid>` when it reaches `<point>` and waits (up to a
/// minute) until `<file>` exists, so a test can line up two publishers at
/// the same instant. Unset, it costs one environment lookup. The points:
/// `before-claim` and `after-claim` (names.rs, around writing a claim),
/// `after-object` (fetch.rs, after each content is written to its temp dir),
/// `host-before-pull` (host/pull.rs, before a pulling host's first download).
pub fn fault_point(name: &str) {
    let Ok(v) = std::env::var("SLIPWAY_REMOTE_PAUSE") else {
        return;
    };
    let Some((point, file)) = v.split_once(':') else {
        return;
    };
    if point != name {
        return;
    }
    let _ = std::fs::write(format!("{file}.{}", std::process::id()), b"");
    for _ in 0..600 {
        if std::path::Path::new(file).exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
