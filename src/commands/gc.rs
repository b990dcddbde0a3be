//! `slipway gc`: drop bundles no name refers to, and temporary leftovers.

use crate::Context;
use crate::cli::GcArgs;
use crate::error::Result;

/// # Errors
/// On I/O failure in the store.
pub fn run(args: &GcArgs, ctx: &Context) -> Result<()> {
    if let Some(name) = &args.remote {
        return remote(args, name, ctx);
    }
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

/// `gc --remote NAME`.
fn remote(args: &GcArgs, name: &str, ctx: &Context) -> Result<()> {
    let remote = super::load_remote(ctx, name)?;
    let done = crate::bucket::gc::gc(&remote, args.dry_run)?;
    if ctx.out.json {
        ctx.out.json_value(&done);
        return Ok(());
    }
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for id in &done.releases {
        ctx.out.data(&format!("{verb} {id}"));
    }
    ctx.out.info(&format!(
        "remote `{name}`: {verb} {} unnamed release(s), {} pack(s) ({}), {} claim(s) and {} lock(s) of killed processes",
        done.releases.len(),
        done.packs,
        super::human_bytes(done.bytes),
        done.claims,
        done.locks
    ));
    Ok(())
}
