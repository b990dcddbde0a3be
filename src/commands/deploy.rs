//! `slipway deploy REL -t TARGET`: push to every host, then activate on every
//! host with hooks and health checks; all or nothing; then prune. With
//! `--plan`, only what it would do (`commands/plan.rs`).

use std::time::Duration;

use crate::Context;
use crate::cli::DeployArgs;
use crate::error::{Error, Result};
use crate::fleet::{Fleet, Forecast, Goal, SwitchOptions, print_reports};
use crate::remote::push::PushJob;

use super::plan::{self, GateForecast, Planned};

/// Default `keep`.
pub const DEFAULT_KEEP: usize = 5;

/// # Errors
/// A failed push (nothing activated), a held lock (4), `--expect` (6), a
/// failed health check with every host switched back (3), other failures (1).
pub fn run(args: &DeployArgs, ctx: &Context) -> Result<()> {
    if args.batch == Some(0) {
        return Err(Error::usage("`--batch` must be at least 1"));
    }
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let target = super::load_target(ctx, &args.target.target)?;
    let mut staging = super::staging(ctx, &store, &args.rel, "deploy", &target, args.from.as_deref())?;
    let assist = staging.assist.take();
    let record = &staging.record;
    let manifest = &staging.manifest;
    let id = record.id;
    let gate = super::gate::check(
        ctx,
        &target,
        &record.name,
        id,
        args.override_gate,
        args.reason.as_deref(),
    );
    super::note_external_links(ctx, &record.name, manifest);
    let mut job = PushJob::new(&store, record, manifest, &target, false);
    job.pull = staging.pull.clone();
    job.assist = assist;
    let mut opts = SwitchOptions {
        wait: args.wait.map(Duration::from_secs),
        skip_unreachable: args.skip_unreachable,
        batch: args.batch,
        prune_keep: Some(target.config.keep.unwrap_or(DEFAULT_KEEP)),
        command: super::command_line(),
        allow_schema_rollback: args.allow_schema_rollback,
        migrate_again: args.migrate_again,
        approved: None,
    };
    let goal = |reason: Option<String>| Goal::Activate {
        release: record.name.clone(),
        expect: args.expect.clone(),
        again: false,
        reason,
    };
    let what = Forecast {
        job: Some(&job),
        goal: Some(goal(None)),
        opts: opts.clone(),
        prune: true,
        prune_only: None,
        service: None,
    };
    let planned = |gate_error| Planned {
        command: "deploy",
        release: Some(&record.name),
        gate: GateForecast::of(&target, &gate),
        gate_error,
    };
    if args.plan.plan {
        let shown = planned(None);
        return plan::show(
            ctx,
            &target,
            &args.target.hosts,
            Planned {
                gate_error: gate.err(),
                ..shown
            },
            &what,
        );
    }
    if let Some(wanted) = &args.plan.expect_plan
        && gate.is_ok()
    {
        opts.approved = Some(plan::expect(
            ctx,
            &target,
            &args.target.hosts,
            wanted,
            planned(None),
            &what,
        )?);
    }
    let reason = gate?;
    let mut fleet = Fleet::new(ctx, &target, &args.target.hosts)?;
    if let Err(e) = fleet.push_skipping(&job, args.skip_unreachable) {
        // Nothing switched: each host is still on what it ran before.
        fleet.read_current();
        print_reports(ctx, &fleet.reports());
        let unreachable = fleet
            .reports()
            .iter()
            .any(|r| r.phase == crate::fleet::Phase::Connect && r.result == crate::fleet::Outcome::Failed);
        if unreachable && !args.skip_unreachable {
            let msg = format!(
                "{e}. To go on without the hosts that cannot be reached: `slipway deploy {} -t {} --skip-unreachable` (or name the others with --hosts)",
                record.name, args.target.target
            );
            return Err(e.reworded(msg));
        }
        return Err(e);
    }
    for (host, result) in fleet.push_results() {
        if let Some((outcome, _)) = result {
            ctx.out.info(&format!(
                "{host}: {}",
                crate::fleet::describe_push(&record.name, &outcome)
            ));
        }
    }
    let result = fleet.switch(&goal(reason), &opts);
    print_reports(ctx, &fleet.reports());
    if result.is_ok() {
        ctx.out
            .info(&format!("{} ({id}) is live on `{}`", record.name, target.name));
    }
    result
}
