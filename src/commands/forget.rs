//! `slipway forget REL…`: remove releases from the local store, keeping
//! each name bound to its id (the work is [`crate::store::Store::forget`]).

use crate::Context;
use crate::cli::ForgetArgs;
use crate::error::{Error, Result};

/// # Errors
/// When a name is not a release in the store (nothing is forgotten then);
/// on I/O failure.
pub fn run(args: &ForgetArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    // Every name first: a typo forgets nothing.
    let mut records = Vec::new();
    for rel in &args.releases {
        let (_, record) = store.resolve(rel)?;
        let record = record.ok_or_else(|| {
            Error::usage(format!(
                "`{rel}` is a bundle with no single release name; forget it by name (`slipway list` shows them)"
            ))
        })?;
        records.push(record);
    }
    let mut rows = Vec::new();
    for r in records {
        let removed = store.forget(&r.name, args.dry_run)?;
        let verb = if args.dry_run { "would forget" } else { "forgot" };
        let kept = if removed {
            ""
        } else {
            " (its bundle stays: another release uses it)"
        };
        if !ctx.out.json {
            ctx.out.data(&format!("{verb} {} ({}){kept}", r.name, r.id));
        }
        rows.push(serde_json::json!({"name": r.name, "id": r.id, "bundle_removed": removed, "dry_run": args.dry_run}));
    }
    if ctx.out.json {
        ctx.out.json_value(&rows);
    } else if !args.dry_run {
        ctx.out.info("the names stay bound to their ids: a later build of the same tag brings a release back, another build under its name is refused");
    }
    Ok(())
}
