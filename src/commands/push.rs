//! `slipway push REL -t TARGET`: stage a release of the local store on every
//! host of a target, in parallel (bounded by the target's `parallel`).
//! Nothing live changes.
//!
//! Output: one line per host on stdout, or with `--json` an array with one
//! object per host (`docs/json.md`), once every host succeeded. When a host
//! fails, nothing is printed on stdout and the command exits with that
//! error's code, naming the host.

use serde::Serialize;

use super::human_bytes;
use crate::Context;
use crate::cli::PushArgs;
use crate::digest::Digest;
use crate::error::Result;
use crate::fleet::Fleet;
use crate::remote::push::{PushJob, PushOutcome};

/// One element of `push --json` (a stable schema: field order is key order).
#[derive(Debug, Serialize)]
struct HostReport<'a> {
    host: String,
    release: &'a str,
    id: Digest,
    files: u64,
    bytes_needed: u64,
    bytes_sent: u64,
    objects_reused: u64,
    seconds: f64,
}

/// # Errors
/// When REL or the target do not resolve, or a host refuses or fails (named).
pub fn run(args: &PushArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let record = super::named_release(&store, &args.rel, "push")?;
    let id = record.id;
    let target = super::load_target(ctx, &args.target)?;
    let manifest = store.manifest(&id)?;
    let job = PushJob::new(&store, &record, &manifest, &target, false);

    let mut fleet = Fleet::new(ctx, &target, &args.hosts)?;
    let pushed = fleet.push(&job);
    let closed = fleet.close();
    pushed?;
    closed?;
    let mut reports = Vec::new();
    for (host, result) in fleet.push_results() {
        let Some((outcome, seconds)) = result else { continue };
        if !ctx.out.json {
            ctx.out.data(&describe(&record.name, &host, &outcome, seconds));
        }
        reports.push(HostReport {
            host,
            release: &record.name,
            id,
            files: outcome.files,
            bytes_needed: outcome.bytes_needed,
            bytes_sent: outcome.bytes_sent,
            objects_reused: outcome.objects_reused,
            seconds,
        });
    }
    if ctx.out.json {
        ctx.out.json_value(&reports);
    }
    Ok(())
}

fn describe(name: &str, host: &str, o: &PushOutcome, seconds: f64) -> String {
    if o.already {
        return format!("{name} is already staged on {host}; nothing sent");
    }
    format!(
        "staged {name} on {host}: {} files, {} needed, {} sent, {} objects reused, {seconds:.1}s",
        o.files,
        human_bytes(o.bytes_needed),
        human_bytes(o.bytes_sent),
        o.objects_reused
    )
}
