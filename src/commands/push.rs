//! `slipway push REL -t TARGET`: stage a release of the local store on every
//! host of a target, in parallel (bounded by the target's `parallel`).
//! Nothing live changes. With `--plan`, only what it would send
//! (`commands/plan.rs`).
//!
//! Output: one line per host on stdout once every host succeeded, or with
//! `--json` an array with one object per host (`docs/json.md`), printed
//! when hosts fail too (their `result` is `failed`, with the `reason`).
//! When a host fails, the command exits with that error's code, naming the
//! host.

use serde::Serialize;

use crate::Context;
use crate::cli::PushArgs;
use crate::digest::Digest;
use crate::error::Result;
use crate::fleet::{Fleet, Forecast, Outcome, SwitchOptions};
use crate::output::human_bytes;
use crate::remote::push::{PushJob, PushOutcome};

use super::plan::Planned;

/// One element of `push --json` (a stable schema: field order is key order).
/// The figures are null where the push did not succeed.
#[derive(Debug, Serialize)]
struct PushRow<'a> {
    host: String,
    release: &'a str,
    id: Digest,
    files: Option<u64>,
    bytes_needed: Option<u64>,
    bytes_sent: Option<u64>,
    objects_reused: Option<u64>,
    /// Pull mode (`--from`): bytes the host downloaded from the remote
    /// store (null without `--from`).
    bytes_downloaded: Option<u64>,
    /// Signatures the host recorded that it did not have (null when the
    /// host failed or is too old to say).
    signatures_added: Option<u64>,
    seconds: Option<f64>,
    /// `ok`, `failed`, or `not_started`.
    result: Outcome,
    reason: Option<String>,
}

/// # Errors
/// When REL or the target do not resolve, or a host refuses or fails (named).
pub fn run(args: &PushArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let target = super::load_target(ctx, &args.target)?;
    let mut staging = super::staging(ctx, &store, &args.rel, "push", &target, args.from.as_deref())?;
    let assist = staging.assist.take();
    let (record, manifest) = (&staging.record, &staging.manifest);
    let id = record.id;
    super::note_external_links(ctx, &record.name, manifest);
    let mut job = PushJob::new(&store, record, manifest, &target, false);
    job.pull = staging.pull.clone();
    job.assist = assist;
    if super::plan::wanted(&args.plan) {
        let what = Forecast {
            job: Some(&job),
            goal: None,
            opts: SwitchOptions::default(),
            prune: false,
            prune_only: None,
            service: None,
        };
        let planned = Planned {
            command: "push",
            release: Some(&record.name),
            gate: None,
            gate_error: None,
        };
        match &args.plan.expect_plan {
            None => return super::plan::show(ctx, &target, &args.hosts, planned, &what),
            // A push changes nothing live: the plan is not checked again later.
            Some(wanted) => {
                super::plan::expect(ctx, &target, &args.hosts, wanted, planned, &what)?;
            }
        }
    }

    let mut fleet = Fleet::new(ctx, &target, &args.hosts)?;
    let pushed = fleet.push(&job);
    let closed = fleet.close();
    let succeeded = pushed.is_ok() && closed.is_ok();
    let mut reports = Vec::new();
    for ((host, result), row) in fleet.push_results().into_iter().zip(fleet.reports()) {
        let report = match result {
            Some((outcome, seconds)) => {
                if succeeded && !ctx.out.json {
                    ctx.out.data(&describe(&record.name, &host, &outcome, seconds));
                }
                PushRow {
                    host,
                    release: &record.name,
                    id,
                    files: Some(outcome.files),
                    bytes_needed: Some(outcome.bytes_needed),
                    bytes_sent: Some(outcome.bytes_sent),
                    objects_reused: Some(outcome.objects_reused),
                    bytes_downloaded: staging.pull.as_ref().map(|_| outcome.bytes_downloaded),
                    signatures_added: outcome.signatures_added,
                    seconds: Some(seconds),
                    result: Outcome::Ok,
                    reason: None,
                }
            }
            None => PushRow {
                host,
                release: &record.name,
                id,
                files: None,
                bytes_needed: None,
                bytes_sent: None,
                objects_reused: None,
                bytes_downloaded: None,
                signatures_added: None,
                seconds: None,
                result: match row.result {
                    Outcome::NotStarted => Outcome::NotStarted,
                    _ => Outcome::Failed,
                },
                reason: row.reason,
            },
        };
        reports.push(report);
    }
    if ctx.out.json {
        ctx.out.json_value(&reports);
    }
    pushed?;
    closed
}

fn describe(name: &str, host: &str, o: &PushOutcome, seconds: f64) -> String {
    if o.already {
        return match o.signatures_added {
            Some(n) if n > 0 => format!(
                "{name} is already staged on {host}; added {n} signature{}, no content sent",
                if n == 1 { "" } else { "s" }
            ),
            _ => format!("{name} is already staged on {host}; nothing sent"),
        };
    }
    if o.bytes_downloaded > 0 {
        return format!(
            "staged {name} on {host}: {} files, {} needed, {} downloaded from the remote store, {} objects reused, {seconds:.1}s",
            o.files,
            human_bytes(o.bytes_needed),
            human_bytes(o.bytes_downloaded),
            o.objects_reused
        );
    }
    format!(
        "staged {name} on {host}: {} files, {} needed, {} sent, {} objects reused, {seconds:.1}s",
        o.files,
        human_bytes(o.bytes_needed),
        human_bytes(o.bytes_sent),
        o.objects_reused
    )
}
