//! `slipway publish REL --to REMOTE`: the work is [`crate::bucket::publish`].
//! With `--plan`, only what it would upload and bind, from reads of the
//! bucket (`--expect-plan ID`: publish only when that is still the plan).

use serde::Serialize;

use crate::Context;
use crate::bucket::publish::PublishPlan;
use crate::cli::PublishArgs;
use crate::error::{Error, Result};
use crate::output::human_bytes;

/// `publish --plan --json`: the plan's id first, then what it shows.
#[derive(Serialize)]
struct PlanJson<'a> {
    plan: &'a str,
    #[serde(flatten)]
    shown: &'a PublishPlan,
}

/// # Errors
/// As [`crate::bucket::publish::publish`]; with `--plan`, the error the
/// publish would end with; with `--expect-plan`, exit 6 when the plan moved.
pub fn run(args: &PublishArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let record = super::named_release(&store, &args.release, "publish")?;
    let remote = super::load_remote(ctx, &args.to)?;
    if super::plan::wanted(&args.plan) {
        let (plan, result) = crate::bucket::publish::plan(&store, &record, &remote)?;
        let id = crate::fleet::plan_id(&plan);
        match &args.plan.expect_plan {
            None => {
                print_plan(ctx, &plan, &id)?;
                return result;
            }
            Some(wanted) if !id.eq_ignore_ascii_case(wanted.trim()) => {
                return Err(Error::ExpectMismatch(format!(
                    "the plan of this publish is now {id}, not {wanted} (--expect-plan): something changed in remote `{}` or in the local store since it was shown; nothing was written. See what with `--plan`",
                    remote.name
                )));
            }
            // Checked before the remote's lock is taken: a publish or gc
            // in between is not seen (docs/remote-store.md says so).
            Some(_) => {}
        }
    }
    let done = crate::bucket::publish::publish(&store, &record, &remote, &ctx.out)?;
    if ctx.out.json {
        ctx.out.json_value(&done);
        return Ok(());
    }
    let what = if done.new {
        format!("published `{}` to remote `{}`", done.name, done.remote)
    } else {
        format!("`{}` was already published to remote `{}`", done.name, done.remote)
    };
    ctx.out.info(&format!(
        "{what}: {} new object(s) in {} pack(s), {} uploaded, {} already there{}",
        done.objects_uploaded,
        done.packs_uploaded,
        human_bytes(done.bytes_uploaded),
        done.objects_reused,
        if done.signatures_added > 0 {
            format!(", {} signature(s) added", done.signatures_added)
        } else {
            String::new()
        }
    ));
    ctx.out.data(&done.id.to_string());
    Ok(())
}

/// The plan on stdout: `--json` as docs/json.md documents it, else lines.
fn print_plan(ctx: &Context, plan: &PublishPlan, id: &str) -> Result<()> {
    let printed = if ctx.out.json {
        serde_json::to_string_pretty(&PlanJson { plan: id, shown: plan }).map_err(Error::Encode)?
    } else {
        let mut lines = vec![format!(
            "plan of `publish {}` ({}) to remote `{}` (nothing was written):",
            plan.name, plan.id, plan.remote
        )];
        lines.push(match (&plan.bound, &plan.refused) {
            (_, Some(why)) => format!("  refused (exit {}): {why}", plan.exit),
            (Some(b), None) => format!("  name: `{}` is bound to {b} already: nothing to bind", plan.name),
            (None, None) => format!("  name: `{}` is unbound: it would be bound to {}", plan.name, plan.id),
        });
        if plan.refused.is_none() {
            lines.push(format!(
                "  contents: {} missing ({}) would be packed and uploaded; {} already there",
                plan.objects_missing,
                human_bytes(plan.bytes_missing),
                plan.objects_reused
            ));
            lines.push(format!("  signatures: {} would be added", plan.signatures_added));
            for w in &plan.writes {
                lines.push(format!("  writes {w}"));
            }
        }
        lines.push(match plan.exit {
            0 => "the command would succeed".to_string(),
            code => format!("the command would be refused (exit {code})"),
        });
        lines.push(format!("plan id: {id}"));
        lines.join("\n")
    };
    for line in printed.lines() {
        ctx.out.data(line);
    }
    Ok(())
}
