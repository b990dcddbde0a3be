//! `slipway publish REL --to REMOTE`: the work is [`crate::bucket::publish`].

use crate::Context;
use crate::cli::PublishArgs;
use crate::error::Result;
use crate::output::human_bytes;

/// # Errors
/// As [`crate::bucket::publish::publish`].
pub fn run(args: &PublishArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let record = super::named_release(&store, &args.release, "publish")?;
    let remote = super::load_remote(ctx, &args.to)?;
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
