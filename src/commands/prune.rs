//! `slipway prune -t TARGET`: remove old releases and unreferenced content.
//! With `--plan`, only what it would remove (`commands/plan.rs`).

use std::time::Duration;

use serde::Serialize;

use crate::Context;
use crate::cli::PruneArgs;
use crate::error::Result;
use crate::fleet::{Fleet, Forecast, SwitchOptions};
use crate::protocol::{LockInfo, PruneReport};

use super::plan::Planned;

#[derive(Serialize)]
struct Row {
    host: String,
    #[serde(flatten)]
    report: PruneReport,
}

/// # Errors
/// A held lock (exit 4), an `--append-only` host, an unreachable host.
pub fn run(args: &PruneArgs, ctx: &Context) -> Result<()> {
    let target = super::load_target(ctx, &args.target.target)?;
    let keep = args.keep.or(target.config.keep).unwrap_or(super::deploy::DEFAULT_KEEP);
    let pinned = target.config.pinned.clone();
    let me = LockInfo {
        actor: crate::config::actor(),
        command: super::command_line(),
        pid: 0,
        since: crate::provenance::now_rfc3339(),
    };
    let wait = args.wait.map(Duration::from_secs);
    if super::plan::wanted(&args.plan) {
        let what = Forecast {
            job: None,
            goal: None,
            opts: SwitchOptions {
                wait,
                ..SwitchOptions::default()
            },
            prune: false,
            prune_only: Some((keep, pinned.clone())),
            service: None,
        };
        let planned = Planned {
            command: "prune",
            release: None,
            gate: None,
            gate_error: None,
        };
        let hosts = &args.target.hosts;
        match &args.plan.expect_plan {
            None => return super::plan::show(ctx, &target, hosts, planned, &what),
            // Checked before the locks: a switch in between is not seen
            // (docs/operations.md says so); prune keeps the current release
            // and its rollback target whatever they are then.
            Some(wanted) => {
                super::plan::expect(ctx, &target, hosts, wanted, planned, &what)?;
            }
        }
    }
    let dry_run = args.dry_run;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    let results = fleet.query(|s| {
        s.lock_or_wait(&me, wait, &ctx.out)?;
        s.prune(keep, &pinned, dry_run)
    });
    let mut rows = Vec::new();
    let mut first_error = None;
    for (host, r) in results {
        match r {
            Ok(report) => rows.push(Row { host, report }),
            // The first failure is the command's error line; the others are warnings.
            Err(e) => match first_error {
                None => first_error = Some(e),
                Some(_) => ctx.out.warn(&e.to_string()),
            },
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&rows);
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        for r in &rows {
            let rels = if r.report.releases.is_empty() {
                "no releases".to_string()
            } else {
                r.report.releases.join(", ")
            };
            ctx.out.data(&format!(
                "{}: {verb} {rels}; {} object(s), {}; {} staging leftover(s)",
                r.host,
                r.report.objects,
                crate::output::human_bytes(r.report.object_bytes),
                r.report.tmp_entries
            ));
            for n in &r.report.notes {
                ctx.out.data(&format!("{}: note: {n}", r.host));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
