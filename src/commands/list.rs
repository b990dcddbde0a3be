//! `slipway list`: the releases in the local store.

use serde::Serialize;

use crate::Context;
use crate::digest::Digest;
use crate::error::Result;

#[derive(Serialize)]
struct Row {
    name: String,
    id: Digest,
    size: u64,
    compressed_size: u64,
    built_at: Option<String>,
}

/// # Errors
/// When the store cannot be read.
pub fn run(ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let mut rows = Vec::new();
    for r in store.records()? {
        let size = store.manifest(&r.id).map(|m| m.total_size()).unwrap_or(0);
        let compressed = crate::fs::metadata(&store.bundle_path(&r.id))
            .map(|m| m.len())
            .unwrap_or(0);
        rows.push(Row {
            name: r.name,
            id: r.id,
            size,
            compressed_size: compressed,
            built_at: r.provenance.map(|p| p.finished_at),
        });
    }
    if ctx.out.json {
        ctx.out.json_value(&rows);
        return Ok(());
    }
    if rows.is_empty() {
        ctx.out
            .info("no releases in the store yet; create one with `slipway build TAG`");
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    ctx.out
        .data(&format!("{:<w$}  {:<12}  {:>10}  BUILT", "NAME", "ID", "SIZE"));
    for r in rows {
        ctx.out.data(&format!(
            "{:<w$}  {:<12}  {:>10}  {}",
            r.name,
            super::short_id(&r.id),
            crate::output::human_bytes(r.size),
            r.built_at.unwrap_or_default()
        ));
    }
    Ok(())
}
