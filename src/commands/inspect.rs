//! `slipway inspect REL`: id, entries, sizes, provenance and signatures of a release.

use serde::Serialize;

use crate::Context;
use crate::cli::RelArgs;
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::Kind;
use crate::provenance::Provenance;
use crate::signature::{Signature, clean};

#[derive(Serialize)]
struct Inspect {
    name: Option<String>,
    id: Digest,
    entries: usize,
    files: usize,
    dirs: usize,
    symlinks: usize,
    size: u64,
    compressed_size: u64,
    source_date_epoch: i64,
    provenance: Option<Provenance>,
    signatures: Vec<serde_json::Value>,
    /// Symlinks that leave the release, `PATH -> TARGET`.
    external_links: Vec<String>,
}

/// # Errors
/// When REL does not resolve or the store is damaged.
pub fn run(args: &RelArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let (id, record) = store.resolve(&args.rel)?;
    let m = store.manifest(&id)?;
    let count = |k: Kind| m.entries.iter().filter(|e| e.kind == k).count();
    let report = Inspect {
        name: record.as_ref().map(|r| r.name.clone()),
        id,
        entries: m.entries.len(),
        files: count(Kind::File),
        dirs: count(Kind::Dir),
        symlinks: count(Kind::Symlink),
        size: m.total_size(),
        compressed_size: crate::fs::metadata(&store.bundle_path(&id))?.len(),
        source_date_epoch: m.source_date_epoch,
        provenance: record.as_ref().and_then(|r| r.provenance.clone()),
        signatures: record.map(|r| r.signatures).unwrap_or_default(),
        external_links: m.external_links(),
    };
    if ctx.out.json {
        ctx.out.json_value(&report);
        return Ok(());
    }
    let line = |k: &str, v: String| ctx.out.data(&format!("{k:<12}{v}"));
    line("release", report.name.clone().unwrap_or_else(|| "-".into()));
    line("id", report.id.to_string());
    line(
        "entries",
        format!(
            "{} ({} files, {} directories, {} symlinks)",
            report.entries, report.files, report.dirs, report.symlinks
        ),
    );
    line(
        "size",
        format!("{} ({} bytes)", super::human_bytes(report.size), report.size),
    );
    line(
        "compressed",
        format!(
            "{} ({} bytes)",
            super::human_bytes(report.compressed_size),
            report.compressed_size
        ),
    );
    if let Some(p) = &report.provenance {
        if let Some(tag) = &p.tag {
            let kind = match &p.tag_object {
                Some(o) => format!("annotated, tag object {o}"),
                None => "lightweight".into(),
            };
            line("tag", format!("{tag} ({kind})"));
        }
        if let Some(c) = &p.commit {
            line("commit", c.clone());
        }
        if let Some(d) = &p.dir {
            line("directory", d.clone());
        }
        line("command", p.build_command.clone().unwrap_or_else(|| "-".into()));
        line("builder", p.builder.clone());
        line("started", p.started_at.clone());
        line("finished", format!("{} ({:.1} s)", p.finished_at, p.duration_seconds));
        line("slipway", p.slipway_version.clone());
    }
    if report.signatures.is_empty() {
        line("signature", "none".into());
    }
    for value in &report.signatures {
        line("signature", describe_signature(value));
    }
    for link in &report.external_links {
        line("links out", link.escape_debug().to_string());
    }
    Ok(())
}

/// `SHA256:… alice@example.com, signed 2025-…Z by tester@build1`.
fn describe_signature(value: &serde_json::Value) -> String {
    match Signature::from_value(value) {
        Some(s) => format!(
            "{} {}, signed {} by {}",
            s.key_fingerprint,
            clean(&s.principal),
            s.signed_at,
            clean(&s.signed_by)
        ),
        None => {
            let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("unknown");
            format!(
                "(a signature in format `{}`, which this slipway cannot read)",
                clean(format)
            )
        }
    }
}
