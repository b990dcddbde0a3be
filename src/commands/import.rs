//! `slipway import FILE`: verify a bundle and add it to the store (the work
//! is [`crate::import`]); prints its id, or `--json`.

use crate::Context;
use crate::cli::ImportArgs;
use crate::error::Result;

/// Largest sidecar read (see [`crate::import::MAX_SIDECAR_BYTES`]).
pub use crate::import::MAX_SIDECAR_BYTES;

/// # Errors
/// As [`crate::import::import`].
pub fn run(args: &ImportArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let imported = crate::import::import(&store, &args.file, args.name.as_deref())?;
    for line in &imported.dropped {
        ctx.out.warn(line);
    }
    super::note_external_links(ctx, &imported.name, &imported.manifest);
    if ctx.out.json {
        ctx.out
            .json_value(&serde_json::json!({"name": imported.name, "id": imported.id, "new": imported.new}));
    } else {
        ctx.out.data(&imported.id.to_string());
    }
    Ok(())
}
