//! Running hooks on the host: `sh -c COMMAND` in a release directory, with
//! the `SLIPWAY_*` environment, a timeout that kills the hook's whole process
//! group, and retries for health checks.
//!
//! Invariant: a hook never outlives its timeout, and its output is bounded
//! (only the last [`OUTPUT_TAIL`] bytes are kept).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::protocol::{HookRequest, HookResult};

/// The host's own hook for `kind` from `<root>/.slipway/hooks.toml` (the
/// same keys as a target's `[hooks]` section), used instead of the client's
/// when `serve` runs as a forced command.
///
/// # Errors
/// When the file exists but is malformed (file, line and key named).
pub fn host_hook(layout: &Layout, kind: &str) -> Result<Option<String>> {
    let path = layout.meta_dir().join("hooks.toml");
    let Some(bytes) = crate::fs::read_optional(&path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::usage(format!("`{}` is not UTF-8", path.display())))?;
    let hooks: crate::config::HooksConfig =
        toml::from_str(&text).map_err(|e| Error::usage(format!("`{}`: {}", path.display(), e.message().trim())))?;
    Ok(match kind {
        "before_activate" => hooks.before_activate,
        "after_activate" => hooks.after_activate,
        "health" => hooks.health,
        _ => None,
    })
}

/// Bytes of output kept from a hook.
pub const OUTPUT_TAIL: usize = 4096;

/// Run a hook as requested, retrying until `retry_for_ms` when it fails.
///
/// # Errors
/// When the release does not exist or the shell cannot be started (a hook
/// that runs and fails is a `HookResult` with `ok: false`, not an error).
pub fn run(layout: &Layout, req: &HookRequest) -> Result<HookResult> {
    crate::manifest::validate_name(&req.release)?;
    let dir = layout.release_dir(&req.release);
    if !dir.is_dir() {
        return Err(Error::other(format!(
            "cannot run the {} hook: release `{}` is not on `{}`",
            req.kind,
            req.release,
            layout.root.display()
        )));
    }
    let started = Instant::now();
    let retry_for = Duration::from_millis(req.retry_for_ms);
    let timeout = Duration::from_millis(req.timeout_ms.max(1));
    let mut attempts = 0;
    loop {
        attempts += 1;
        // An attempt never runs past the retry window (when there is one).
        let left = retry_for.saturating_sub(started.elapsed());
        let this_timeout = if req.retry_for_ms > 0 {
            timeout.min(left.max(Duration::from_millis(100)))
        } else {
            timeout
        };
        let (exit_code, timed_out, output) = attempt(layout, req, &dir, this_timeout)?;
        let ok = exit_code == Some(0) && !timed_out;
        let done = ok || started.elapsed() + Duration::from_secs(1) >= retry_for;
        if done {
            return Ok(HookResult {
                ok,
                exit_code,
                timed_out,
                attempts,
                seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                output,
            });
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn attempt(
    layout: &Layout,
    req: &HookRequest,
    dir: &std::path::Path,
    timeout: Duration,
) -> Result<(Option<i32>, bool, String)> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&req.command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("SLIPWAY_RELEASE", &req.release)
        .env("SLIPWAY_ROOT", &layout.root)
        .process_group(0);
    for (k, v) in &req.env {
        if k.starts_with("SLIPWAY_") {
            cmd.env(k, v);
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::other(format!(
            "cannot start the {} hook: {}",
            req.kind,
            crate::error::describe_io(&e)
        ))
    })?;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let readers: Vec<_> = [
        child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
        child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| tail_into(r, buf.clone()))
    .collect();
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return Err(Error::other(format!(
                    "cannot wait for the {} hook: {}",
                    req.kind,
                    crate::error::describe_io(&e)
                )));
            }
        }
    };
    // The group is gone after a timeout; otherwise a daemonised grandchild may
    // keep the pipes open, so do not wait for the readers forever.
    let join_deadline = Instant::now() + Duration::from_secs(2);
    for r in readers {
        while !r.is_finished() && Instant::now() < join_deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    let mut output = buf
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if timed_out {
        output.push_str(&format!("\n[slipway: killed after {:.1} s]", timeout.as_secs_f64()));
    }
    Ok((status.and_then(|s| s.code()), timed_out, output))
}

fn tail_into(mut r: Box<dyn Read + Send>, buf: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = buf.lock() {
                b.extend_from_slice(&chunk[..n]);
                let len = b.len();
                if len > OUTPUT_TAIL {
                    b.drain(..len - OUTPUT_TAIL);
                }
            }
        }
    })
}
