//! `slipway verify REL`: re-hash a stored bundle (exit 5 on any mismatch).

use crate::Context;
use crate::bundle::unpack::{VerifyOnly, read_bundle};
use crate::cli::VerifyArgs;
use crate::error::{Error, Result};

/// # Errors
/// Integrity error naming the first bad path or the damage.
pub fn run(args: &VerifyArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let (id, record) = store.resolve(&args.rel)?;
    let path = store.bundle_path(&id);
    let (m, got) = read_bundle(crate::fs::open(&path)?, &path.display().to_string(), &mut VerifyOnly)?;
    if got != id {
        return Err(Error::integrity(format!(
            "bundle `{}` holds {got}, not {id}",
            path.display()
        )));
    }
    store.manifest(&id)?;
    let name = record.map(|r| r.name).unwrap_or_else(|| id.to_string());
    if ctx.out.json {
        ctx.out
            .json_value(&serde_json::json!({"release": name, "id": id, "ok": true, "entries": m.entries.len()}));
    } else {
        ctx.out
            .data(&format!("ok {name} {id} ({} entries verified)", m.entries.len()));
    }
    Ok(())
}
