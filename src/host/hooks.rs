//! Running hooks on the host: `sh -c COMMAND` in a release directory, with
//! the `SLIPWAY_*` environment, a timeout that kills the hook's whole process
//! group, and retries for health checks.
//!
//! Invariant: a hook never outlives its timeout, and its output is bounded
//! (only the last [`OUTPUT_TAIL`] bytes are kept). A check ([`CUT_SHORT`])
//! does not outlive its client either: when the client goes away or sends
//! `cancel`, it is stopped within a poll (20 ms) and reported as failed;
//! every other hook (a backup, a migration, `resume`, a proxy reload) runs
//! to its end and records its result.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::layout::Layout;
use crate::error::{Error, Result};
use crate::protocol::{HookRequest, HookResult};

/// The hooks and commands stopped when the client goes away or cancels:
/// the checks, which only decide whether a switch goes ahead or stands.
pub const CUT_SHORT: [&str; 4] = ["health", "before_activate", "after_activate", "check"];

/// The connection from the client (a copy of `serve`'s stdin), when this
/// process serves one.
static CLIENT: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// From now on, [`client_left`] watches `input` (`serve`'s stdin).
pub fn watch_client(input: std::fs::File) {
    let _ = CLIENT.set(input);
}

/// Whether the client said something while a hook runs, or closed the
/// connection: either way (`cancel`, or gone) the check is stopped. The
/// client never sends a request before the answer to the last one.
pub fn client_left() -> bool {
    use std::os::fd::AsFd;

    use rustix::event::{PollFd, PollFlags, Timespec};
    let Some(input) = CLIENT.get() else { return false };
    let fd = input.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let now = Timespec { tv_sec: 0, tv_nsec: 0 };
    matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
}

/// The variables a trusted client may set for a hook; everything else it
/// sends is ignored, and the host's own `SLIPWAY_RELEASE` and `SLIPWAY_ROOT`
/// always win. A confined `serve` takes only [`DB_ENV`] of them (see [`confine`]).
pub const CLIENT_ENV: [&str; 5] = [
    "SLIPWAY_HOST",
    "SLIPWAY_PREVIOUS",
    "SLIPWAY_ID",
    "SLIPWAY_SCHEMA",
    "SLIPWAY_BACKUP",
];

/// Of [`CLIENT_ENV`], the database facts a confined host also takes (they
/// are recorded with a migration and passed to the host's own command).
pub const DB_ENV: [&str; 2] = ["SLIPWAY_SCHEMA", "SLIPWAY_BACKUP"];

/// The host's own hooks, `<root>/.slipway/hooks.toml` (the same keys as a
/// target's `[hooks]` section); empty when the file does not exist.
///
/// # Errors
/// When the file exists but is malformed (file, line and key named).
pub fn host_hooks(layout: &Layout) -> Result<crate::config::HooksConfig> {
    let path = layout.meta_dir().join("hooks.toml");
    let Some(bytes) = crate::fs::read_optional(&path)? else {
        return Ok(crate::config::HooksConfig::default());
    };
    let text = String::from_utf8(bytes).map_err(|_| Error::usage(format!("`{}` is not UTF-8", path.display())))?;
    toml::from_str(&text).map_err(|e| Error::usage(format!("`{}`: {}", path.display(), e.message().trim())))
}

/// What a confined `serve` runs for the client's request: the host's own
/// command for that kind of hook, with the host's timeouts and environment,
/// keeping only the kind and the release from the request. `None` when the
/// host defines no such hook.
///
/// # Errors
/// When `hooks.toml` is malformed, or the release has no record on the host.
pub fn confine(layout: &Layout, req: &HookRequest) -> Result<Option<HookRequest>> {
    let hooks = host_hooks(layout)?;
    let command = match req.kind.as_str() {
        "before_activate" => hooks.before_activate.clone(),
        "after_activate" => hooks.after_activate.clone(),
        "health" => hooks.health.clone(),
        "backup" => hooks.backup.clone(),
        "pause" => hooks.pause.clone(),
        "resume" => hooks.resume.clone(),
        "migrate" => hooks.migrate.clone(),
        "migrate_down" => hooks.migrate_down.clone(),
        "schema" => hooks.schema.clone(),
        "db_schema" => hooks.db_schema.clone(),
        _ => None,
    };
    let Some(command) = command.filter(|c| !c.trim().is_empty()) else {
        return Ok(None);
    };
    let timeouts = hooks.timeouts(&layout.meta_dir().join("hooks.toml").display().to_string())?;
    let (timeout, retry_for) = if req.kind == "health" {
        (timeouts.health_attempt(), timeouts.health)
    } else {
        (timeouts.hook, std::time::Duration::ZERO)
    };
    crate::manifest::validate_name(&req.release)?;
    let mut env = std::collections::BTreeMap::new();
    if let Ok(Some(meta)) = layout.release_meta(&req.release) {
        env.insert("SLIPWAY_ID".to_string(), meta.id.to_string());
    }
    env.insert(
        "SLIPWAY_PREVIOUS".to_string(),
        host_previous(layout, &req.release)?.unwrap_or_default(),
    );
    env.insert(
        "SLIPWAY_HOST".to_string(),
        rustix::system::uname().nodename().to_string_lossy().into_owned(),
    );
    // Facts, not commands: what the migration brings the database to and
    // the backup taken before it (one bounded line each).
    for key in DB_ENV {
        if let Some(v) = req
            .env
            .get(key)
            .filter(|v| v.len() <= 256 && !v.chars().any(char::is_control))
        {
            env.insert(key.to_string(), v.clone());
        }
    }
    Ok(Some(HookRequest {
        kind: req.kind.clone(),
        release: req.release.clone(),
        command,
        env,
        timeout_ms: timeout.as_millis() as u64,
        retry_for_ms: retry_for.as_millis() as u64,
        undo: None,
        again: req.again,
        stream: req.stream,
    }))
}

/// Longest a trusted client's hook may run, and a health check retry, when
/// the host's own `hooks.toml` sets no limit.
pub const MAX_CLIENT_BUDGET: std::time::Duration = std::time::Duration::from_secs(3600);

/// A trusted client's request with its time budgets bounded by the host: by
/// `hook_timeout` / `health_timeout` of the host's `hooks.toml` where it sets
/// them, else by [`MAX_CLIENT_BUDGET`].
///
/// # Errors
/// When `hooks.toml` is malformed.
pub fn bounded(layout: &Layout, req: &HookRequest) -> Result<HookRequest> {
    let hooks = host_hooks(layout)?;
    let section = layout.meta_dir().join("hooks.toml").display().to_string();
    let host = hooks.timeouts(&section)?;
    let cap = |set: bool, value: std::time::Duration| if set { value } else { MAX_CLIENT_BUDGET };
    let attempt_cap = cap(hooks.hook_timeout.is_some(), host.hook).as_millis() as u64;
    let retry_cap = cap(hooks.health_timeout.is_some(), host.health).as_millis() as u64;
    Ok(HookRequest {
        timeout_ms: req.timeout_ms.min(attempt_cap),
        retry_for_ms: req.retry_for_ms.min(retry_cap),
        ..req.clone()
    })
}

/// The release `release` replaces (or replaced) on this host, from the
/// host's own state: `current` while `release` is not yet live, otherwise
/// the `from` of the switch that made it current.
fn host_previous(layout: &Layout, release: &str) -> Result<Option<String>> {
    let current = layout.current_name()?;
    if current.as_deref() != Some(release) {
        return Ok(current);
    }
    let (records, _) = super::history::read(layout)?;
    Ok(records
        .iter()
        .rev()
        .find(|r| r.to == release && r.action != "healthy")
        .and_then(|r| r.from.clone()))
}

/// Bytes of output kept from a hook.
pub const OUTPUT_TAIL: usize = 4096;

/// Run a hook as requested, retrying until `retry_for_ms` when it fails.
///
/// # Errors
/// When the release does not exist or the shell cannot be started (a hook
/// that runs and fails is a `HookResult` with `ok: false`, not an error).
pub fn run(layout: &Layout, req: &HookRequest) -> Result<HookResult> {
    run_streaming(layout, req, None)
}

/// Where a hook's lines go while it runs (nowhere: `None`).
pub type OnLine<'a> = Option<&'a mut (dyn FnMut(&str) + 'a)>;

/// [`run`], handing each line of output to `on_line` as it comes.
///
/// # Errors
/// As [`run`].
pub fn run_streaming(layout: &Layout, req: &HookRequest, on_line: OnLine<'_>) -> Result<HookResult> {
    let mut noop = |_: &str| {};
    let stream = on_line.is_some();
    let on_line: &mut dyn FnMut(&str) = match on_line {
        Some(f) => f,
        None => &mut noop,
    };
    crate::manifest::validate_name(&req.release)?;
    let dir = layout.release_dir(&req.release);
    if !dir.is_dir() {
        return Err(Error::HookWithoutRelease {
            kind: req.kind.clone(),
            release: req.release.clone(),
            root: layout.root.clone(),
        });
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
        let (exit_code, timed_out, output) = attempt(layout, req, &dir, this_timeout, stream.then_some(&mut *on_line))?;
        let ok = exit_code == Some(0) && !timed_out;
        let cut_short = CUT_SHORT.contains(&req.kind.as_str());
        let done = ok || (cut_short && client_left()) || started.elapsed() + Duration::from_secs(1) >= retry_for;
        // A second between attempts, unless the client leaves meanwhile:
        // then this attempt's result is the answer, and no other starts.
        let mut left = false;
        let pause = Instant::now() + Duration::from_secs(1);
        while !done && !left && Instant::now() < pause {
            std::thread::sleep(Duration::from_millis(20));
            left = cut_short && client_left();
        }
        if done || left {
            return Ok(HookResult {
                ok,
                exit_code,
                timed_out,
                attempts,
                seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                output: if left { format!("{output}\n{STOPPED}") } else { output },
                paused_ms: None,
            });
        }
    }
}

/// The last line of a check's output when it was stopped for its client.
const STOPPED: &str = "[slipway: stopped: the operator interrupted the command, or its connection closed]";

fn attempt(
    layout: &Layout,
    req: &HookRequest,
    dir: &std::path::Path,
    timeout: Duration,
    on_line: Option<&mut dyn FnMut(&str)>,
) -> Result<(Option<i32>, bool, String)> {
    let mut env: Vec<(String, String)> = req
        .env
        .iter()
        .filter(|(k, _)| CLIENT_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("SLIPWAY_RELEASE".into(), req.release.clone()));
    env.push(("SLIPWAY_ROOT".into(), layout.root.display().to_string()));
    run_shell_streaming(&req.kind, &req.command, dir, &env, timeout, on_line)
}

/// Run `sh -c command` in `dir` with `env` added, in a process group of its
/// own that is killed when `timeout` passes. Returns its exit code (`None`:
/// a signal or the timeout), whether it timed out, and the last
/// [`OUTPUT_TAIL`] bytes of its combined output. `kind` names it in errors.
///
/// # Errors
/// When the shell cannot be started or waited for.
pub fn run_shell(
    kind: &str,
    command: &str,
    dir: &std::path::Path,
    env: &[(String, String)],
    timeout: Duration,
) -> Result<(Option<i32>, bool, String)> {
    run_shell_streaming(kind, command, dir, env, timeout, None)
}

/// [`run_shell`], handing each line of output to `on_line` while it runs.
fn run_shell_streaming(
    kind: &str,
    command: &str,
    dir: &std::path::Path,
    env: &[(String, String)],
    timeout: Duration,
    mut on_line: Option<&mut dyn FnMut(&str)>,
) -> Result<(Option<i32>, bool, String)> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|source| Error::Hook {
        kind: kind.to_string(),
        action: "start",
        source,
    })?;
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (lines_tx, lines_rx) = match on_line {
        Some(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let readers: Vec<_> = [
        child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
        child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| match &lines_tx {
        Some(tx) => crate::tail::keep_tail_and_lines(r, buf.clone(), OUTPUT_TAIL, tx.clone()),
        None => crate::tail::keep_tail(r, buf.clone(), OUTPUT_TAIL),
    })
    .collect();
    drop(lines_tx);
    let pass_lines = |on_line: &mut Option<&mut dyn FnMut(&str)>| {
        if let (Some(rx), Some(f)) = (&lines_rx, on_line.as_deref_mut()) {
            while let Ok(line) = rx.try_recv() {
                f(&line);
            }
        }
    };
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let mut cut = false;
    let cut_short = CUT_SHORT.contains(&kind);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline || (cut_short && client_left()) => {
                timed_out = Instant::now() >= deadline;
                cut = !timed_out;
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => {
                pass_lines(&mut on_line);
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(Error::Hook {
                    kind: kind.to_string(),
                    action: "wait for",
                    source,
                });
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
    pass_lines(&mut on_line);
    let mut output = buf
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if timed_out {
        output.push_str(&format!("\n[slipway: killed after {:.1} s]", timeout.as_secs_f64()));
    }
    if cut {
        output.push('\n');
        output.push_str(STOPPED);
    }
    Ok((status.and_then(|s| s.code()), timed_out, output))
}
