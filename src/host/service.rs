//! A/B service slots on a host (docs/ab-deploys.md).
//!
//! Two slots, `a` and `b`: each is a stable path, `<root>/slots/<slot> ->
//! ../releases/<name>`, switched by atomic rename like `current`, with an
//! instance of its release running on the slot's port. One slot has the
//! traffic (the live slot); the other holds the new release while it is
//! checked, or the previous one set aside warm.
//!
//! ```text
//! <root>/slots/a, b                     -> ../releases/<name>
//! <root>/.slipway/service.toml          the host owner's service definition (the only one a confined serve uses)
//! <root>/.slipway/service/<slot>.json   the instance slipway started in the slot ([`Instance`])
//! <root>/.slipway/service/<slot>.log    its stdout and stderr (the one before: <slot>.log.1)
//! <root>/.slipway/service/live.json     which slot has the traffic ([`Live`])
//! <root>/.slipway/service/upstream.before  the upstream file as it was before slipway first wrote it
//! ```
//!
//! Invariants: an instance is signalled only while its pid and its start
//! time (from `/proc`) both match what was recorded, so a recycled pid is
//! never taken for it; a new instance starts only on a port nobody listens
//! on, and passes its check only when a process of its own session listens
//! there; the upstream file is replaced atomically and put back when
//! `reload` fails; nothing outside the root is written but that one file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::layout::Layout;
use super::procs::{kill_session, port_taken_by, proc_stat, session_alive, session_listens};
use crate::config::{ServiceConfig, ServiceSpec, Traffic};
use crate::error::{Error, Result};
use crate::fs;
use crate::protocol::{ServiceReport, SlotStatus, StartFailure, Started};
use crate::provenance::now_rfc3339;

/// The two slots.
pub const SLOTS: [&str; 2] = ["a", "b"];

/// Longest a `reload`, `switch` or check attempt may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest one check attempt may run (the whole check: `check_timeout`).
const CHECK_ATTEMPT: Duration = Duration::from_secs(10);
/// Between two check attempts.
const CHECK_PAUSE: Duration = Duration::from_millis(200);
/// Bytes of an instance's log kept in a failure report.
const LOG_TAIL: u64 = 2048;

/// The instance slipway started in a slot: `<slot>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub release: String,
    pub port: u16,
    /// The started `sh -c START` (leader of its own session and process
    /// group). `None`: the start command handed the instance to a
    /// supervisor (e.g. `systemctl start`) and exited 0.
    pub pid: Option<u32>,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat`).
    pub start_ticks: Option<u64>,
    /// RFC 3339.
    pub started_at: String,
    /// The release whose instance this start displaced from the slot (put
    /// back when the new one is abandoned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displaced: Option<String>,
}

/// Which slot has the traffic: `live.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub slot: String,
    pub port: u16,
    pub release: String,
    pub since: String,
}

fn service_dir(layout: &Layout) -> PathBuf {
    layout.meta_dir().join("service")
}
fn slots_dir(layout: &Layout) -> PathBuf {
    layout.root.join("slots")
}
fn instance_path(layout: &Layout, slot: &str) -> PathBuf {
    service_dir(layout).join(format!("{slot}.json"))
}
fn live_path(layout: &Layout) -> PathBuf {
    service_dir(layout).join("live.json")
}
fn before_path(layout: &Layout) -> PathBuf {
    service_dir(layout).join("upstream.before")
}
/// `<root>/.slipway/service/<slot>.log`.
pub fn log_path(layout: &Layout, slot: &str) -> PathBuf {
    service_dir(layout).join(format!("{slot}.log"))
}
/// `<root>/.slipway/service.toml`.
pub fn host_file(layout: &Layout) -> PathBuf {
    layout.meta_dir().join("service.toml")
}

/// Check a slot name a client sends.
///
/// # Errors
/// Usage error for anything but `a` or `b`.
pub fn validate_slot(slot: &str) -> Result<()> {
    if SLOTS.contains(&slot) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "`{}` is not a slot (slots are `a` and `b`)",
        slot.escape_debug()
    )))
}

fn slot_index(slot: &str) -> usize {
    usize::from(slot == "b")
}
fn other(slot: &str) -> &'static str {
    if slot == "a" { "b" } else { "a" }
}

/// The host's own `.slipway/service.toml`, resolved; `None` when absent.
///
/// # Errors
/// When it exists but is malformed or incomplete (file and key named).
pub fn host_spec(layout: &Layout) -> Result<Option<ServiceSpec>> {
    let path = host_file(layout);
    let Some(bytes) = fs::read_optional(&path)? else {
        return Ok(None);
    };
    let origin = path.display().to_string();
    let text = String::from_utf8(bytes).map_err(|_| Error::usage(format!("`{origin}` is not UTF-8")))?;
    let config: ServiceConfig = crate::config::parse_toml(&text, &origin)?;
    config.resolve(&origin).map(Some)
}

/// The service definition a request runs with: the host's own file when
/// confined (a restricted key never chooses commands, the upstream path or
/// ports), else the client's, else the host's.
///
/// # Errors
/// When neither exists (the message names the host's file), or the file
/// is malformed.
pub fn spec_for(layout: &Layout, confined: bool, given: Option<ServiceSpec>) -> Result<ServiceSpec> {
    let given = if confined { None } else { given };
    if let Some(spec) = given {
        return Ok(spec);
    }
    host_spec(layout)?.ok_or_else(|| {
        let file = host_file(layout);
        Error::Restricted(if confined {
            format!(
                "no service is defined on this host, and its key is restricted to the host's own definition: write `{}` (docs/ab-deploys.md)",
                file.display()
            )
        } else {
            format!(
                "no service is defined for this host: write `{}`, or the values in the target's `[service]` section (docs/ab-deploys.md)",
                file.display()
            )
        })
    })
}

/// The release a slot points at.
///
/// # Errors
/// On I/O failure, or a slot that points outside `releases/`.
pub fn slot_release(layout: &Layout, slot: &str) -> Result<Option<String>> {
    let path = slots_dir(layout).join(slot);
    let Some(meta) = fs::symlink_metadata_optional(&path)? else {
        return Ok(None);
    };
    if !meta.file_type().is_symlink() {
        return Err(Error::other(format!("`{}` is not a symlink", path.display())));
    }
    let target = fs::read_link(&path)?;
    let t = target.to_string_lossy();
    match t.strip_prefix("../releases/") {
        Some(name) if crate::manifest::validate_name(name).is_ok() => Ok(Some(name.to_string())),
        _ => Err(Error::other(format!(
            "`{}` points at `{t}`, outside `releases/`",
            path.display()
        ))),
    }
}

/// Every release a slot names (prune keeps them).
///
/// # Errors
/// On I/O failure.
pub fn slot_releases(layout: &Layout) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for slot in SLOTS {
        out.extend(slot_release(layout, slot)?);
    }
    Ok(out)
}

/// Point `slots/<slot>` at `releases/<name>` in one rename.
fn point_slot(layout: &Layout, slot: &str, name: &str) -> Result<()> {
    let dir = slots_dir(layout);
    fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{slot}.{}", fs::unique_suffix()));
    fs::symlink(Path::new(&format!("../releases/{name}")), &tmp)?;
    if let Err(e) = fs::rename(&tmp, &dir.join(slot)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::fsync_dir(&dir)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    let Some(bytes) = fs::read_optional(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::other(format!("`{}` is unreadable: {e}", path.display())))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    fs::create_dir_all(path.parent().unwrap_or(Path::new("/")))?;
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| Error::other(format!("encode {}: {e}", path.display())))?;
    fs::write_atomic(path, &bytes)
}

/// The instance slipway recorded in `slot`.
///
/// # Errors
/// On I/O failure or an unreadable record.
pub fn instance(layout: &Layout, slot: &str) -> Result<Option<Instance>> {
    read_json(&instance_path(layout, slot))
}

fn forget_instance(layout: &Layout, slot: &str) -> Result<()> {
    fs::remove_file_optional(&instance_path(layout, slot))?;
    fs::fsync_dir(&service_dir(layout))
}

/// The live slot.
///
/// # Errors
/// On I/O failure or an unreadable record.
pub fn live(layout: &Layout) -> Result<Option<Live>> {
    read_json(&live_path(layout))
}

impl Instance {
    /// Is the recorded process still running (same pid and start time, not
    /// a zombie)? `None` for an instance a supervisor runs.
    pub fn running(&self) -> Option<bool> {
        let pid = self.pid?;
        Some(match proc_stat(pid) {
            Some((state, _, ticks)) => !matches!(state, 'Z' | 'X') && Some(ticks) == self.start_ticks,
            None => false,
        })
    }

    /// Running, or run by a supervisor.
    fn up(&self) -> bool {
        self.running() != Some(false)
    }

    /// What a `start` answers about this instance in `slot`.
    fn started_in(&self, slot: &str, reused: bool, displaced: Option<String>, live: Option<&str>) -> Started {
        Started {
            slot: slot.to_string(),
            port: self.port,
            pid: self.pid,
            reused,
            displaced,
            live: live.map(str::to_string),
        }
    }
}

/// The environment of every service command: slot, port, release, root.
fn service_env(layout: &Layout, slot: &str, port: u16, release: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("SLIPWAY_SLOT".to_string(), slot.to_string()),
        ("SLIPWAY_PORT".to_string(), port.to_string()),
        ("SLIPWAY_RELEASE".to_string(), release.to_string()),
        ("SLIPWAY_ROOT".to_string(), layout.root.display().to_string()),
    ];
    if let Ok(Some(meta)) = layout.release_meta(release) {
        env.push(("SLIPWAY_ID".to_string(), meta.id.to_string()));
    }
    env
}

/// `setsid` (util-linux), which every instance is started through.
fn setsid_program() -> Option<&'static str> {
    ["/usr/bin/setsid", "/bin/setsid"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// Start `spec.start` for `release` in `slot`, detached, its output going
/// to the slot's log. Returns the child (to notice an early exit) and the
/// instance as recorded.
fn spawn(layout: &Layout, spec: &ServiceSpec, slot: &str, release: &str) -> Result<(std::process::Child, Instance)> {
    let port = spec.ports[slot_index(slot)];
    let dir = service_dir(layout);
    fs::create_dir_all(&dir)?;
    let log = log_path(layout, slot);
    if fs::symlink_metadata_optional(&log)?.is_some() {
        fs::rename(&log, &dir.join(format!("{slot}.log.1")))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Error::io("create", &log, e))?;
    let err = out.try_clone().map_err(|e| Error::io("open", &log, e))?;
    // The instance leads a session of its own: detached from the SSH
    // session, and every process it starts can be found (and stopped) by it.
    let setsid = setsid_program().ok_or_else(|| {
        Error::other(
            "`setsid` (util-linux) is not installed on this host: slipway needs it to start a service instance",
        )
    })?;
    let mut cmd = Command::new(setsid);
    cmd.arg("sh");
    cmd.arg("-c")
        .arg(&spec.start)
        .current_dir(layout.release_dir(release))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .envs(service_env(layout, slot, port, release));
    let child = cmd.spawn().map_err(|e| Error::Hook {
        kind: "start".into(),
        action: "start",
        source: e,
    })?;
    let pid = child.id();
    let inst = Instance {
        release: release.to_string(),
        port,
        pid: Some(pid),
        start_ticks: proc_stat(pid).map(|(_, _, t)| t),
        started_at: now_rfc3339(),
        displaced: None,
    };
    Ok((child, inst))
}

/// Run `spec.check` against the instance in `slot` until it passes or
/// `check_timeout` runs out. An instance slipway runs must stay alive
/// throughout, and a process of its own session must listen on the port
/// when the check passes. `Err(why, check output)` otherwise.
fn check(
    layout: &Layout,
    spec: &ServiceSpec,
    slot: &str,
    inst: &mut Instance,
    mut child: Option<&mut std::process::Child>,
) -> std::result::Result<(), (String, String)> {
    let started = Instant::now();
    let budget = Duration::from_millis(spec.check_timeout_ms);
    let env = service_env(layout, slot, inst.port, &inst.release);
    let dir = layout.release_dir(&inst.release);
    let mut last = (String::from("the check never ran"), String::new());
    loop {
        if super::hooks::client_left() {
            return Err((
                "the client went away (or was interrupted) before the check passed".into(),
                last.1,
            ));
        }
        if let Some(c) = child.as_deref_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            // A start that hands the instance to a supervisor (`systemctl
            // start`) ends well: from now on the supervisor runs it.
            if status.success() && spec.stop.is_some() {
                inst.pid = None;
                inst.start_ticks = None;
                child = None;
            } else {
                return Err((
                    format!("the instance exited ({status}) before its check passed"),
                    last.1,
                ));
            }
        }
        if inst.running() == Some(false) {
            return Err(("the instance exited before its check passed".into(), last.1));
        }
        let left = budget.saturating_sub(started.elapsed());
        let attempt = CHECK_ATTEMPT.min(left).max(Duration::from_millis(500));
        match super::hooks::run_shell("check", &spec.check, &dir, &env, attempt) {
            Ok((Some(0), false, out)) => match inst.pid {
                Some(pid) if !session_listens(inst.port, pid) => {
                    last = (
                        format!(
                            "the check passed, but no process of the new instance listens on port {}",
                            inst.port
                        ),
                        out,
                    );
                }
                _ => return Ok(()),
            },
            Ok((code, timed_out, out)) => {
                let why = if timed_out {
                    format!("`{}` was killed after {:.0} s", spec.check, attempt.as_secs_f64())
                } else {
                    format!("`{}` failed with exit status {}", spec.check, code.unwrap_or(-1))
                };
                last = (why, out);
            }
            Err(e) => return Err((e.to_string(), String::new())),
        }
        if started.elapsed() >= budget {
            let (why, out) = last;
            return Err((
                format!("{why} (checked for {:.0} s)", started.elapsed().as_secs_f64()),
                out,
            ));
        }
        std::thread::sleep(CHECK_PAUSE);
    }
}

/// Stop the instance in `slot` (the `stop` command when set, then TERM and
/// KILL of its process group for an instance slipway runs) and forget it.
/// Returns what was stopped.
///
/// # Errors
/// On I/O failure reading or removing its record.
pub fn stop(layout: &Layout, spec: &ServiceSpec, slot: &str) -> Result<Option<Instance>> {
    let Some(inst) = instance(layout, slot)? else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(spec.stop_timeout_ms);
    if let Some(stop) = &spec.stop {
        let env = service_env(layout, slot, inst.port, &inst.release);
        let _ = super::hooks::run_shell("stop", stop, &layout.root, &env, timeout);
    }
    if inst.running() == Some(true)
        && let Some(sid) = inst.pid
        && let Some(pid) = rustix::process::Pid::from_raw(sid as i32)
    {
        // The whole instance: every process of its session (the shell
        // that ran `start` leads it), until none is left holding the port.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        while session_alive(sid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever of it is left (it ignored TERM, or left the group).
        let deadline = Instant::now() + Duration::from_secs(5);
        while session_alive(sid) && Instant::now() < deadline {
            kill_session(sid);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    forget_instance(layout, slot)?;
    Ok(Some(inst))
}

/// Start `release` in `slot` and check it; on failure stop it again.
fn start_checked(
    layout: &Layout,
    spec: &ServiceSpec,
    slot: &str,
    release: &str,
    displaced: Option<String>,
) -> std::result::Result<Instance, StartFailure> {
    let port = spec.ports[slot_index(slot)];
    let fail = |why: String, output: String| StartFailure {
        slot: slot.to_string(),
        port,
        why,
        output,
        log: String::new(),
        restored: None,
    };
    if let Some(who) = port_taken_by(port) {
        return Err(fail(
            format!("port {port} of slot {slot} is already in use by {who}; nothing was started"),
            String::new(),
        ));
    }
    let spawned = point_slot(layout, slot, release).and_then(|()| spawn(layout, spec, slot, release));
    let (mut child, mut inst) = match spawned {
        Ok(x) => x,
        Err(e) => return Err(fail(e.to_string(), String::new())),
    };
    inst.displaced = displaced;
    if let Err(e) = write_json(&instance_path(layout, slot), &inst) {
        let _ = child.kill();
        return Err(fail(e.to_string(), String::new()));
    }
    let checked = check(layout, spec, slot, &mut inst, Some(&mut child));
    if inst.pid.is_none() {
        // Handed to a supervisor while it was checked: record that.
        let _ = write_json(&instance_path(layout, slot), &inst);
    }
    match checked {
        Ok(()) => Ok(inst),
        Err((why, output)) => {
            let _ = stop(layout, spec, slot);
            let _ = child.try_wait();
            let log = fs::read_optional_tail(&log_path(layout, slot), LOG_TAIL)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Err(StartFailure {
                log,
                ..fail(why, output)
            })
        }
    }
}

/// `service start` of a deploy: make `release` run, checked, in a slot
/// that has no traffic (reusing an instance of it already running there),
/// and return where. When it fails its check it is stopped, never takes a
/// request, and the instance it displaced is started again.
///
/// # Errors
/// On I/O failure reading the slots; a failed start is an `Err(StartFailure)`
/// inside `Ok`.
pub fn start(layout: &Layout, spec: &ServiceSpec, release: &str) -> Result<std::result::Result<Started, StartFailure>> {
    let live = live(layout)?;
    let live_slot = live.as_ref().map(|l| l.slot.as_str());
    // Already running it: the live slot (nothing to move), or warm in the other.
    for slot in SLOTS {
        let Some(inst) = instance(layout, slot)? else { continue };
        if inst.release != release || slot_release(layout, slot)?.as_deref() != Some(release) || !inst.up() {
            continue;
        }
        let mut inst = inst;
        if live_slot == Some(slot) || check(layout, spec, slot, &mut inst, None).is_ok() {
            return Ok(Ok(inst.started_in(slot, true, None, live_slot)));
        }
    }
    let idle = match live_slot {
        Some(s) => other(s),
        None => "a",
    };
    // A new deploy displaces the warm instance in the idle slot.
    let displaced = match stop(layout, spec, idle)? {
        Some(inst) if inst.release != release => Some(inst.release),
        _ => None,
    };
    match start_checked(layout, spec, idle, release, displaced.clone()) {
        Ok(inst) => Ok(Ok(inst.started_in(idle, false, displaced, live_slot))),
        Err(mut failure) => {
            if let Some(back) = displaced {
                failure.restored = Some(restore(layout, spec, idle, &back));
            }
            Ok(Err(failure))
        }
    }
}

/// Start `release` again in `slot` (a displaced warm instance); true when
/// it passed its check.
fn restore(layout: &Layout, spec: &ServiceSpec, slot: &str, release: &str) -> bool {
    if !layout.release_dir(release).is_dir() {
        return false;
    }
    start_checked(layout, spec, slot, release, None).is_ok()
}

/// Abandon what a deploy started in `slot` (another host failed): stop the
/// new instance and start the one it displaced. Never touches the live slot.
/// With `drain`, the instance had traffic until the switch back: it keeps
/// serving for `drain` first, as the proxy finishes what it sent there.
/// Returns a sentence for the operator, when there is something to say.
///
/// # Errors
/// When `slot` is live, or on I/O failure.
pub fn abort(layout: &Layout, spec: &ServiceSpec, slot: &str, drain: bool) -> Result<Option<String>> {
    if live(layout)?.is_some_and(|l| l.slot == slot) {
        return Err(Error::usage(format!(
            "slot {slot} has the traffic on `{}`; it is not abandoned",
            layout.root.display()
        )));
    }
    if drain && instance(layout, slot)?.is_some() {
        std::thread::sleep(Duration::from_millis(spec.drain_ms));
    }
    let Some(inst) = stop(layout, spec, slot)? else {
        return Ok(None);
    };
    let Some(back) = inst.displaced else {
        return Ok(None);
    };
    Ok(Some(if restore(layout, spec, slot, &back) {
        format!("the warm instance of {back} is running again in slot {slot}")
    } else {
        format!("the warm instance of {back} could not be started again in slot {slot}: a rollback will be cold")
    }))
}

/// After a deploy succeeded: unless `keep_warm`, wait `drain`, then stop
/// the instance set aside in the slot without traffic.
///
/// # Errors
/// On I/O failure.
pub fn settle(layout: &Layout, spec: &ServiceSpec) -> Result<Option<String>> {
    if spec.keep_warm {
        return Ok(None);
    }
    let Some(live) = live(layout)? else { return Ok(None) };
    let idle = other(&live.slot);
    if instance(layout, idle)?.is_none() {
        return Ok(None);
    }
    std::thread::sleep(Duration::from_millis(spec.drain_ms));
    Ok(stop(layout, spec, idle)?.map(|i| format!("stopped {} in slot {idle} after draining", i.release)))
}

/// Make sure `slot` runs `release` before traffic moves there.
///
/// # Errors
/// When the slot names another release, or its instance is not running.
pub fn require_running(layout: &Layout, slot: &str, release: &str) -> Result<()> {
    validate_slot(slot)?;
    let named = slot_release(layout, slot)?;
    let inst = instance(layout, slot)?;
    let ok = named.as_deref() == Some(release) && inst.as_ref().is_some_and(|i| i.release == release && i.up());
    if ok {
        return Ok(());
    }
    Err(Error::other(format!(
        "slot {slot} on `{}` does not run `{release}` (it holds {}); start it first",
        layout.root.display(),
        named.as_deref().unwrap_or("nothing")
    )))
}

/// Move the traffic to `slot` (running `release`): write the upstream file
/// atomically and run `reload` (the file is put back when it fails), or run
/// `switch`; then record the live slot. `slot = None` puts back what the
/// upstream file held before slipway first wrote it (a revert of a host's
/// first service deploy).
///
/// # Errors
/// When the file cannot be written or the command fails; traffic is then
/// where it was.
pub fn move_traffic(layout: &Layout, spec: &ServiceSpec, slot: Option<&str>, release: &str) -> Result<()> {
    let Some(slot) = slot else {
        return put_back_first_upstream(layout, spec, release);
    };
    let port = spec.ports[slot_index(slot)];
    let env = service_env(layout, slot, port, release);
    match &spec.traffic {
        Traffic::Upstream { path, reload } => {
            let path = Path::new(path);
            let before = fs::read_optional(path)?;
            if live(layout)?.is_none() && fs::metadata_optional(&before_path(layout))?.is_none() {
                // Kept once, so that a revert of the first deploy restores it.
                write_json(&before_path(layout), &before.as_deref().map(String::from_utf8_lossy))?;
            }
            fs::write_user_file(path, format!("server 127.0.0.1:{port};\n").as_bytes())?;
            if let Some(reload) = reload
                && let Err(e) = run_traffic_command("reload", reload, layout, &env)
            {
                let put_back = match &before {
                    Some(b) => fs::write_user_file(path, b),
                    None => fs::remove_file_optional(path),
                };
                let _ = run_traffic_command("reload", reload, layout, &env);
                let state = match put_back {
                    Ok(()) => format!("`{}` was put back; traffic is unchanged", path.display()),
                    Err(p) => format!("and `{}` could not be put back: {p}", path.display()),
                };
                return Err(Error::other(format!("{e}; {state}")));
            }
        }
        Traffic::Switch { command } => run_traffic_command("switch", command, layout, &env)?,
    }
    write_json(
        &live_path(layout),
        &Live {
            slot: slot.to_string(),
            port,
            release: release.to_string(),
            since: now_rfc3339(),
        },
    )
}

fn put_back_first_upstream(layout: &Layout, spec: &ServiceSpec, release: &str) -> Result<()> {
    if let Traffic::Upstream { path, reload } = &spec.traffic
        && let Some(before) = read_json::<Option<String>>(&before_path(layout))?
    {
        let path = Path::new(path);
        match before {
            Some(text) => fs::write_user_file(path, text.as_bytes())?,
            None => fs::remove_file_optional(path)?,
        }
        if let Some(reload) = reload {
            run_traffic_command("reload", reload, layout, &service_env(layout, "", 0, release))?;
        }
    }
    fs::remove_file_optional(&live_path(layout))?;
    fs::fsync_dir(&service_dir(layout))
}

fn run_traffic_command(kind: &str, command: &str, layout: &Layout, env: &[(String, String)]) -> Result<()> {
    let (code, timed_out, out) = super::hooks::run_shell(kind, command, &layout.root, env, COMMAND_TIMEOUT)?;
    if code == Some(0) && !timed_out {
        return Ok(());
    }
    let how = if timed_out {
        format!("was killed after {} s", COMMAND_TIMEOUT.as_secs())
    } else {
        format!("failed with exit status {}", code.unwrap_or(-1))
    };
    let tail: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
    Err(Error::other(format!("`{kind}` (`{command}`) {how}: {tail}")))
}

/// `service start` for an operator (after a reboot): start the slot's
/// release where its instance is not running, and check it.
///
/// # Errors
/// When the slot names no release, or on I/O failure.
pub fn start_slot(
    layout: &Layout,
    spec: &ServiceSpec,
    slot: &str,
) -> Result<std::result::Result<Started, StartFailure>> {
    validate_slot(slot)?;
    let Some(release) = slot_release(layout, slot)? else {
        return Err(Error::usage(format!(
            "slot {slot} holds no release on `{}`",
            layout.root.display()
        )));
    };
    let live = live(layout)?.map(|l| l.slot);
    if let Some(inst) = instance(layout, slot)?
        && inst.up()
        && inst.release == release
    {
        return Ok(Ok(inst.started_in(slot, true, None, live.as_deref())));
    }
    stop(layout, spec, slot)?;
    Ok(start_checked(layout, spec, slot, &release, None)
        .map(|inst| inst.started_in(slot, false, None, live.as_deref())))
}

/// Each slot's state (with `spec`, its port even when nothing runs there);
/// with `check`, whether each running instance passes its check now (one
/// attempt).
///
/// # Errors
/// On I/O failure.
pub fn report(layout: &Layout, spec: Option<&ServiceSpec>, run_check: bool) -> Result<ServiceReport> {
    let live = live(layout)?;
    let mut slots = Vec::new();
    for slot in SLOTS {
        let release = slot_release(layout, slot)?;
        let inst = instance(layout, slot)?;
        let running = inst.as_ref().map_or(Some(false), Instance::running);
        let check = match (spec.filter(|_| run_check), &inst) {
            (Some(spec), Some(i)) if running != Some(false) => {
                let quick = ServiceSpec {
                    check_timeout_ms: 0,
                    ..spec.clone()
                };
                Some(check(layout, &quick, slot, &mut i.clone(), None).is_ok())
            }
            _ => None,
        };
        slots.push(SlotStatus {
            slot: slot.to_string(),
            release,
            port: inst
                .as_ref()
                .map(|i| i.port)
                .or(spec.map(|s| s.ports[slot_index(slot)])),
            running,
            pid: inst.as_ref().and_then(|i| i.pid).filter(|_| running == Some(true)),
            since: inst
                .as_ref()
                .map(|i| i.started_at.clone())
                .filter(|_| running != Some(false)),
            check,
            live: live.as_ref().is_some_and(|l| l.slot == slot),
        });
    }
    Ok(ServiceReport {
        live: live.map(|l| l.slot),
        slots,
        started: None,
        failure: None,
        note: None,
    })
}

/// Whether this root has ever run a service (for `status`).
pub fn in_use(layout: &Layout) -> bool {
    slots_dir(layout).is_dir() || service_dir(layout).is_dir()
}
