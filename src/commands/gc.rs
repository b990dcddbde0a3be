//! `slipway gc`: drop bundles no name refers to, and temporary leftovers.

use crate::Context;
use crate::cli::GcArgs;
use crate::error::Result;

/// # Errors
/// On I/O failure in the store.
pub fn run(args: &GcArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let (removed, tmp) = store.gc(args.dry_run)?;
    if ctx.out.json {
        ctx.out
            .json_value(&serde_json::json!({"dry_run": args.dry_run, "bundles": removed, "tmp_entries": tmp}));
        return Ok(());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for id in &removed {
        ctx.out.data(&format!("{verb} {id}"));
    }
    ctx.out.info(&format!(
        "{verb} {} unnamed bundle(s) and {tmp} temporary entr(y/ies)",
        removed.len()
    ));
    Ok(())
}
