//! The host's handlers for everything after staging: lock, activate,
//! rollback, mark bad, status, history, prune, verify and hooks. One function
//! per request; each returns the answer message.
//!
//! Invariant: `current`, the history and release marks change only while this
//! session holds the host lock (taken with `lock`, or for the one request when
//! the client did not take it).

use std::io::{Read, Write};
use std::time::Duration;

use super::activate::{self, Switch};
use super::lock::{self, HostLock};
use super::session::{Session, validate_actor};
use super::{check, history, hooks, prune, service, status, verify};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::protocol::{
    ActivateRequest, HookRequest, HookResult, LockInfo, Message, RollbackRequest, ServiceOp, ServiceRequest,
    ServiceSwitch,
};

/// Longest reason (or lock command) a host records, in bytes; longer ones
/// are cut there, ending in `…`, so the history stays readable whatever a
/// client sends.
pub const MAX_REASON_BYTES: usize = 1024;

/// `text` cut to [`MAX_REASON_BYTES`] on a character boundary.
fn bounded(text: String) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text;
    }
    let mut end = MAX_REASON_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `lock`; with `notify`, a `lock_waiting` naming the holder goes to the
/// client before waiting for another operator.
///
/// # Errors
/// `Locked` (exit 4) naming the holder.
pub fn take_lock<R: Read, W: Write>(
    s: &mut Session<R, W>,
    holder: LockInfo,
    wait_ms: Option<u64>,
    notify: bool,
) -> Result<Message> {
    validate_actor(&holder.actor)?;
    if s.lock.is_none() {
        let me = LockInfo {
            pid: std::process::id(),
            command: bounded(holder.command),
            ..holder
        };
        let Session { ch, layout, .. } = s;
        let mut tell = |holder: &LockInfo| {
            if notify {
                let msg = Message::LockWaiting { holder: holder.clone() };
                if ch.send(&msg).is_ok() {
                    let _ = ch.flush();
                }
            }
        };
        let held = lock::acquire_telling(layout, &me, wait_ms.map(Duration::from_millis), &mut tell)?;
        s.lock = Some(held);
        // A window a killed `serve` left open: intake must not stay off.
        let _ = super::intake::resume_left_open(
            &s.layout,
            s.via.clone(),
            "resumed by the next command: the session that paused intake was killed before resuming it",
        );
    }
    Ok(Message::Locked)
}

/// `unlock`.
pub fn release_lock<R: Read, W: Write>(s: &mut Session<R, W>) -> Message {
    s.lock = None;
    Message::Unlocked
}

/// Hold the lock for one request when the session does not hold it already,
/// as `actor` when the request names one.
fn ensure_lock<R: Read, W: Write>(s: &Session<R, W>, what: &str, actor: Option<&str>) -> Result<Option<HostLock>> {
    if s.lock.is_some() {
        return Ok(None);
    }
    let me = LockInfo {
        actor: actor.unwrap_or("unknown").into(),
        command: format!("slipway {what}"),
        pid: std::process::id(),
        since: crate::provenance::now_rfc3339(),
    };
    lock::acquire(&s.layout, &me, None).map(Some)
}

/// `activate`.
///
/// # Errors
/// As [`activate::switch`].
pub fn activate<R: Read, W: Write>(s: &mut Session<R, W>, req: ActivateRequest) -> Result<Message> {
    validate_actor(&req.actor)?;
    if !matches!(req.action.as_str(), "activate" | "revert") {
        return Err(Error::usage(format!(
            "unknown activation action `{}`",
            req.action.escape_debug()
        )));
    }
    let _held = ensure_lock(s, "activate", Some(&req.actor))?;
    let name = activate::resolve_release(&s.layout, &req.release)?;
    let (slot, mut traffic) = traffic_mover(s, req.service)?;
    let record = activate::switch_with(
        &s.layout,
        &Switch {
            name,
            expect: req.expect,
            actor: req.actor,
            action: req.action,
            reason: req.reason.map(bounded),
            mark_left_bad: req.mark_left_bad,
            via: s.via.clone(),
            slot,
            db: checked_facts(req.db)?,
        },
        &mut traffic,
    )?;
    Ok(Message::Switched(Box::new(record)))
}

/// The database facts a client sends for the history: each at most 256
/// bytes without control characters, as they are shown to people.
fn checked_facts(db: crate::protocol::DbFacts) -> Result<crate::protocol::DbFacts> {
    for v in [&db.schema, &db.db_schema, &db.backup].into_iter().flatten() {
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(Error::usage(format!(
                "`{}` is not a schema version or backup reference (at most 256 characters, one line)",
                v.escape_debug()
            )));
        }
    }
    Ok(db)
}

/// Moves the traffic to a release's slot (see [`activate::Traffic`]).
type Mover = Box<dyn FnMut(&str) -> Result<()>>;

/// What moves the traffic with a switch: nothing without `service`;
/// otherwise the slot (checked to run the release) and the mover. A
/// confined host with its own `service.toml` refuses a switch that does
/// not move the traffic, as its instances would go on serving the old
/// release.
fn traffic_mover<R: Read, W: Write>(s: &Session<R, W>, sw: Option<ServiceSwitch>) -> Result<(Option<String>, Mover)> {
    let layout = s.layout.clone();
    let Some(sw) = sw else {
        if s.confined && service::host_file(&layout).is_file() {
            return Err(Error::Restricted(format!(
                "this host runs its release as a service (`{}`): deploy with a `[service]` section in the target",
                service::host_file(&layout).display()
            )));
        }
        return Ok((None, Box::new(|_: &str| Ok(()))));
    };
    let spec = service::spec_for(&layout, s.confined, sw.spec)?;
    if let Some(slot) = &sw.slot {
        service::validate_slot(slot)?;
    }
    let slot = sw.slot.clone();
    let mover = move |name: &str| {
        if let Some(slot) = &slot {
            service::require_running(&layout, slot, name)?;
        }
        service::move_traffic(&layout, &spec, slot.as_deref(), name)
    };
    Ok((sw.slot, Box::new(mover)))
}

/// `rollback`.
///
/// # Errors
/// As [`activate::rollback`].
pub fn rollback<R: Read, W: Write>(s: &mut Session<R, W>, req: RollbackRequest) -> Result<Message> {
    validate_actor(&req.actor)?;
    let _held = ensure_lock(s, "rollback", Some(&req.actor))?;
    let (slot, mut traffic) = traffic_mover(s, req.service)?;
    let name = activate::rollback_target(&s.layout, req.to.as_deref())?;
    // Rolling forward again (to a release first live after the current one)
    // marks nothing bad.
    let back = activate::moves_back(&s.layout, &name, s.layout.current_name()?.as_deref())?;
    let how = Switch {
        slot,
        db: checked_facts(req.db)?,
        mark_left_bad: back,
        ..activate::rollback_switch(name, req.expect, &req.actor, req.reason.map(bounded), s.via.clone())
    };
    let record = activate::switch_with(&s.layout, &how, &mut traffic)?;
    Ok(Message::Switched(Box::new(record)))
}

/// `mark_healthy`: recorded only when a health check of `name` ran in this
/// session and passed (the host's own, when confined), never on the
/// client's word alone: promotion gates trust these records.
///
/// # Errors
/// When no health check of `name` passed in this session, or the release
/// is not current.
pub fn mark_healthy<R: Read, W: Write>(s: &mut Session<R, W>, name: &str, actor: &str) -> Result<Message> {
    crate::manifest::validate_name(name)?;
    validate_actor(actor)?;
    match s.health.get(name) {
        Some(true) => {}
        Some(false) => {
            return Err(Error::NotHealthy {
                release: name.to_string(),
                root: s.layout.root.clone(),
                why: "its health check failed here".into(),
            });
        }
        None => {
            return Err(Error::NotHealthy {
                release: name.to_string(),
                root: s.layout.root.clone(),
                why: format!(
                    "no health check of it ran here{}",
                    if s.confined {
                        " (this host runs only the `health` hook of its own `.slipway/hooks.toml`)"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    let _held = ensure_lock(s, "mark-healthy", Some(actor))?;
    let record = activate::mark_healthy(&s.layout, name, actor, s.via.clone())?;
    Ok(Message::Switched(Box::new(record)))
}

/// `mark_bad`.
///
/// # Errors
/// When the release is unknown.
pub fn mark_bad<R: Read, W: Write>(s: &mut Session<R, W>, name: &str, reason: &str) -> Result<Message> {
    crate::manifest::validate_name(name)?;
    let _held = ensure_lock(s, "mark-bad", None)?;
    activate::mark_bad(&s.layout, name, &bounded(reason.to_string()))?;
    Ok(Message::Marked)
}

/// Finish a switch that crashed between renaming `current` and recording it,
/// so that what `status` and `history` report agrees with `current`. Under
/// the session's lock, or the host lock if it is free; if another operator
/// holds it, their operation reconciles first and nothing is done here.
fn settle<R: Read, W: Write>(s: &Session<R, W>) -> Result<()> {
    if !history::intent_pending(&s.layout) {
        return Ok(());
    }
    if s.lock.is_some() {
        return activate::reconcile(&s.layout).map(drop);
    }
    let me = LockInfo {
        actor: "slipway".into(),
        command: "finishing an interrupted activation".into(),
        pid: std::process::id(),
        since: crate::provenance::now_rfc3339(),
    };
    match lock::acquire(&s.layout, &me, None) {
        Ok(_held) => activate::reconcile(&s.layout).map(drop),
        Err(Error::Locked(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `status`.
///
/// # Errors
/// On I/O failure.
pub fn status<R: Read, W: Write>(s: &Session<R, W>) -> Result<Message> {
    settle(s)?;
    Ok(Message::StatusReport(Box::new(status::status(&s.layout)?)))
}

/// `history`.
///
/// # Errors
/// On I/O failure.
pub fn history<R: Read, W: Write>(s: &Session<R, W>, limit: Option<usize>, id: Option<&Digest>) -> Result<Message> {
    settle(s)?;
    let (records, warnings) = history::newest(&s.layout, limit, id)?;
    Ok(Message::HistoryReport { records, warnings })
}

/// `prune`.
///
/// # Errors
/// Refused on `--append-only` hosts; I/O failures.
pub fn prune<R: Read, W: Write>(
    s: &mut Session<R, W>,
    keep: usize,
    pinned: &[String],
    dry_run: bool,
) -> Result<Message> {
    if s.append_only {
        return Err(Error::AppendOnly {
            root: s.layout.root.clone(),
        });
    }
    let _held = ensure_lock(s, "prune", None)?;
    let report = prune::prune(&s.layout, keep, pinned, dry_run, s.append_only)?;
    if !dry_run {
        // What a switch on a full disk gave up, back now that there may be room.
        s.layout.ensure_reserve();
    }
    Ok(Message::Pruned(Box::new(report)))
}

/// `plan_prune` (`prune --plan`): what `prune` would remove, without the
/// host lock or the staging lock, and without finishing a crashed switch.
///
/// # Errors
/// An `--append-only` host (as `prune`); I/O errors.
pub fn plan_prune<R: Read, W: Write>(s: &Session<R, W>, keep: usize, pinned: &[String]) -> Result<Message> {
    if s.append_only {
        return Err(Error::AppendOnly {
            root: s.layout.root.clone(),
        });
    }
    Ok(Message::Pruned(Box::new(prune::forecast(&s.layout, keep, pinned)?)))
}

/// `verify`.
///
/// # Errors
/// When the named release is not on the host.
pub fn verify<R: Read, W: Write>(s: &Session<R, W>, release: Option<&str>) -> Result<Message> {
    let names = match release {
        Some(rel) => vec![activate::resolve_release(&s.layout, rel)?],
        None => s.layout.release_names()?,
    };
    let mut checked = Vec::new();
    let mut drift = Vec::new();
    for name in names {
        let meta = activate::complete_release(&s.layout, &name);
        let Ok(meta) = meta else {
            if release.is_some() {
                meta?;
            }
            continue; // still staging
        };
        drift.extend(verify::verify_release(&s.layout, &meta)?);
        checked.push(name);
    }
    Ok(Message::Verified {
        releases: checked,
        drift,
    })
}

/// `hook`.
///
/// # Errors
/// When the release is missing or the hook cannot be started.
pub fn hook<R: Read, W: Write>(s: &mut Session<R, W>, req: &HookRequest) -> Result<Message> {
    // Confined: only the host's own hook, with the host's timeouts and
    // environment; the client's command, variables and budgets are ignored.
    let own = if s.confined {
        hooks::confine(&s.layout, req)?
    } else {
        Some(hooks::bounded(&s.layout, req)?)
    };
    let Some(own) = own else {
        return Ok(Message::HookResult(Box::new(skipped(s, req))));
    };
    let result = match req.kind.as_str() {
        "pause" => pause(s, req, &own)?,
        "resume" => resume(s, &own)?,
        "migrate" | "migrate_down" => migrate(s, &own)?,
        _ => run_streamed(s, &own)?,
    };
    if req.kind == "health" && result.attempts > 0 {
        s.health.insert(req.release.clone(), result.ok);
    }
    Ok(Message::HookResult(Box::new(result)))
}

/// `pause`: record the open window (and the `resume` that closes it)
/// before intake stops, so that it is resumed however the session ends.
fn pause<R: Read, W: Write>(s: &mut Session<R, W>, req: &HookRequest, own: &HookRequest) -> Result<HookResult> {
    let asked = HookRequest {
        kind: "resume".into(),
        command: req.undo.clone().unwrap_or_default(),
        ..req.clone()
    };
    let resume = if s.confined {
        hooks::confine(&s.layout, &asked)?
    } else {
        Some(hooks::bounded(&s.layout, &asked)?).filter(|r| !r.command.trim().is_empty())
    };
    let Some(resume) = resume else {
        let fix = if s.confined {
            format!("add `resume` to `{}`", s.layout.meta_dir().join("hooks.toml").display())
        } else {
            "add `resume` to the target's `[hooks]`".to_string()
        };
        return Err(Error::usage(format!(
            "`pause` needs a `resume` that undoes it on `{}`: {fix}; nothing was paused",
            s.layout.root.display()
        )));
    };
    super::intake::open(&s.layout, resume)?;
    s.paused = true;
    super::fault::point("after-pause-window");
    hooks::run(&s.layout, own)
}

/// `resume`: when it succeeds, the window closes and the history records
/// how long intake was off.
fn resume<R: Read, W: Write>(s: &mut Session<R, W>, own: &HookRequest) -> Result<HookResult> {
    let mut r = hooks::run(&s.layout, own)?;
    if r.ok {
        if let Some(ms) = super::intake::close(&s.layout, "slipway", s.via.clone(), None)? {
            r.paused_ms = Some(ms);
        }
        s.paused = false;
    }
    Ok(r)
}

/// Run `own`, sending its lines as they come when the client asked for it.
/// A client gone meanwhile does not stop the hook: it runs to its end.
fn run_streamed<R: Read, W: Write>(s: &mut Session<R, W>, own: &HookRequest) -> Result<HookResult> {
    if !own.stream {
        return hooks::run(&s.layout, own);
    }
    let Session { ch, layout, .. } = s;
    let mut send = |line: &str| {
        let msg = Message::HookOutput { line: line.to_string() };
        if ch.send(&msg).is_ok() {
            let _ = ch.flush();
        }
    };
    hooks::run_streaming(layout, own, Some(&mut send))
}

/// `migrate` / `migrate_down`: once per release unless asked again,
/// recorded before it runs and with its result after. It runs to its end
/// even when the client goes away meanwhile.
fn migrate<R: Read, W: Write>(s: &mut Session<R, W>, own: &HookRequest) -> Result<HookResult> {
    if !own.again
        && let Some(done) = super::intake::succeeded(&s.layout, &own.kind, &own.release)?
    {
        return Ok(HookResult {
            ok: true,
            exit_code: None,
            timed_out: false,
            attempts: 0,
            seconds: 0.0,
            output: format!(
                "`{}` of {} already succeeded here at {}: not run again",
                own.kind, own.release, done.time
            ),
            paused_ms: None,
        });
    }
    let started = super::intake::started(own);
    super::intake::record(&s.layout, &started)?;
    let r = run_streamed(s, own)?;
    super::intake::record(&s.layout, &super::intake::ended(&started, &r))?;
    Ok(r)
}

/// The answer of a confined host that defines no hook of the requested kind.
fn skipped<R: Read, W: Write>(s: &Session<R, W>, req: &HookRequest) -> HookResult {
    HookResult {
        ok: true,
        exit_code: None,
        timed_out: false,
        attempts: 0,
        seconds: 0.0,
        output: format!(
            "no `{}` hook in `{}`: skipped (this host runs only its own hooks)",
            req.kind,
            s.layout.meta_dir().join("hooks.toml").display()
        ),
        paused_ms: None,
    }
}

/// `check`.
///
/// # Errors
/// When the root cannot be examined.
pub fn check<R: Read, W: Write>(s: &Session<R, W>) -> Result<Message> {
    let report = if s.created {
        check::check(&s.layout)?
    } else {
        check::check_missing(&s.layout.root)?
    };
    Ok(Message::CheckReport(Box::new(report)))
}

/// `service`: start, abandon, settle, start or stop a slot, or report.
///
/// # Errors
/// When the host has no service definition it may use, a slot name is
/// bad, or on I/O failure. A new instance that fails its check is a
/// report with a `failure`, not an error.
pub fn service<R: Read, W: Write>(s: &mut Session<R, W>, req: ServiceRequest) -> Result<Message> {
    if let ServiceOp::Status { check, strict } = req.op {
        // Without a check, a host with no definition still reports its slots.
        let spec = match service::spec_for(&s.layout, s.confined, req.spec) {
            Ok(spec) => Some(spec),
            Err(e) if check || strict => return Err(e),
            Err(_) => None,
        };
        let report = service::report(&s.layout, spec.as_ref(), check)?;
        return Ok(Message::ServiceReport(Box::new(report)));
    }
    let spec = service::spec_for(&s.layout, s.confined, req.spec)?;
    let _held = ensure_lock(s, "service", None)?;
    let layout = &s.layout;
    let (mut started, mut failure, mut note) = (None, None, None);
    match req.op {
        ServiceOp::Start { release } => {
            crate::manifest::validate_name(&release)?;
            activate::complete_release(layout, &release)?;
            match service::start(layout, &spec, &release)? {
                Ok(st) => started = Some(st),
                Err(f) => failure = Some(f),
            }
        }
        ServiceOp::Abort { slot, drain } => {
            service::validate_slot(&slot)?;
            note = service::abort(layout, &spec, &slot, drain)?;
        }
        ServiceOp::Settle => note = service::settle(layout, &spec)?,
        ServiceOp::StartSlot { slot } => match service::start_slot(layout, &spec, &slot)? {
            Ok(st) => started = Some(st),
            Err(f) => failure = Some(f),
        },
        ServiceOp::Stop { slot, force } => {
            service::validate_slot(&slot)?;
            if !force && service::live(layout)?.is_some_and(|l| l.slot == slot) {
                return Err(Error::usage(format!(
                    "slot {slot} has the traffic on `{}`: stopping it leaves the service unserved; pass --force to do it anyway",
                    layout.root.display()
                )));
            }
            note = service::stop(layout, &spec, &slot)?.map(|i| format!("stopped {} in slot {slot}", i.release));
        }
        ServiceOp::Status { .. } => {}
    }
    let mut report = service::report(layout, Some(&spec), false)?;
    report.started = started;
    report.failure = failure;
    report.note = note;
    Ok(Message::ServiceReport(Box::new(report)))
}
