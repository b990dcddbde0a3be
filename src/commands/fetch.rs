//! `slipway fetch REL --from REMOTE`: the work is [`crate::bucket::fetch`].

use crate::Context;
use crate::cli::FetchArgs;
use crate::error::Result;
use crate::output::human_bytes;

/// # Errors
/// As [`crate::bucket::fetch::fetch`].
pub fn run(args: &FetchArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let remote = super::load_remote(ctx, &args.from)?;
    let done = crate::bucket::fetch::fetch(&store, &remote, &args.release, args.name.as_deref(), &ctx.out)?;
    for line in &done.dropped {
        ctx.out.warn(line);
    }
    if ctx.out.json {
        ctx.out.json_value(&done);
        return Ok(());
    }
    if done.new {
        ctx.out.info(&format!(
            "fetched `{}` from remote `{}`: {} object(s), {} downloaded, {} signature(s)",
            done.name,
            done.remote,
            done.objects_downloaded,
            human_bytes(done.bytes_downloaded),
            done.signatures
        ));
    } else {
        ctx.out.info(&format!(
            "`{}` was in the local store already; {} signature(s) from remote `{}`",
            done.name, done.signatures, done.remote
        ));
    }
    ctx.out.data(&done.id.to_string());
    Ok(())
}
