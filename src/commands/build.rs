//! `slipway build`: a tag (or a directory) becomes a bundle in the local store.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::Context;
use crate::cli::BuildArgs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::provenance::{Provenance, now_rfc3339};
use crate::store::{Bound, ReleaseRecord};

#[derive(Serialize)]
struct BuildReport<'a> {
    name: &'a str,
    id: Digest,
    new: bool,
    entries: usize,
    files: usize,
    size: u64,
    compressed_size: u64,
    provenance: &'a Provenance,
}

/// # Errors
/// Bad tag or name, a failing build command, or a tree that breaks a bundle rule.
pub fn run(args: &BuildArgs, ctx: &Context) -> Result<()> {
    let started = now_rfc3339();
    let clock = Instant::now();
    let store = ctx.store()?;
    let _lock = store.lock_shared()?;
    let builder = crate::config::actor();
    // With --sign, find the key before spending time on the build.
    let key = if args.sign {
        let name = args.name.as_deref().or(args.tag.as_deref()).unwrap_or_default();
        Some(super::sign::choose(
            args.key.as_deref(),
            args.principal.as_deref(),
            name,
        )?)
    } else {
        None
    };
    let bar = ctx.out.bytes_bar(0, "packing");

    let built = match &args.dir {
        Some(dir) => crate::build::from_dir(
            dir,
            args.name.as_deref().unwrap_or_default(),
            &local_allow_links(ctx)?,
            &store.tmp_dir(),
            &bar,
        )?,
        None => {
            let tag = args
                .tag
                .as_deref()
                .ok_or_else(|| Error::usage("give a TAG, or `--dir DIR --name NAME`"))?;
            let repo = std::env::current_dir().map_err(|e| Error::io("read", Path::new("."), e))?;
            crate::build::from_tag(&repo, tag, args.name.as_deref(), &store.tmp_dir(), &ctx.out, &bar)?
        }
    };
    let crate::build::Built {
        name,
        mut packed,
        mut provenance,
    } = built;
    bar.finish_and_clear();

    provenance.builder = builder;
    provenance.started_at = started;
    provenance.finished_at = now_rfc3339();
    provenance.duration_seconds = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    provenance.slipway_version = env!("CARGO_PKG_VERSION").to_string();

    let compressed_size = packed.compressed_size;
    let manifest = packed.manifest.clone();
    let mut stages = std::mem::take(&mut packed.stages);
    let storing = Instant::now();
    let id = store.add_bundle(packed)?;
    stages.push(("into the store", storing.elapsed()));
    for (what, took) in &stages {
        // The waits happened during the step before them.
        let what = if what.starts_with("waiting") {
            format!("  of which {what}")
        } else {
            (*what).to_string()
        };
        ctx.out.detail(&format!("build: {what}: {:.3} s", took.as_secs_f64()));
    }
    let record = ReleaseRecord {
        name: name.clone(),
        id,
        provenance: Some(provenance.clone()),
        signatures: Vec::new(),
        forgotten: false,
    };
    let bound = store.bind(&record)?;
    if bound == Bound::Existing {
        ctx.out
            .info(&format!("release `{name}` is already in the store with this id"));
    }
    warn_shared_collisions(ctx, &name, &manifest);
    if let Some(key) = &key {
        let (sig, replaced) = super::sign::sign_release(&store, &name, id, key, args.principal.as_deref())
            .map_err(|e| e.reworded(format!("built `{name}` ({id}) but did not sign it: {e}")))?;
        ctx.out.info(&super::sign::describe(&name, &sig, replaced));
    }
    if ctx.out.json {
        ctx.out.json_value(&BuildReport {
            name: &name,
            id,
            new: bound == Bound::New,
            entries: manifest.entries.len(),
            files: manifest.file_count(),
            size: manifest.total_size(),
            compressed_size,
            provenance: &provenance,
        });
    } else {
        ctx.out.data(&id.to_string());
    }
    Ok(())
}

fn local_allow_links(ctx: &Context) -> Result<Vec<String>> {
    match crate::config::load_project(&ctx.config_path)? {
        Some(c) => Ok(c.build.allow_links),
        None if ctx.config_explicit => Err(Error::usage(format!(
            "config file `{}` does not exist",
            ctx.config_path.display()
        ))),
        None => Ok(Vec::new()),
    }
}

/// Warn when a target of the working copy's `slipway.toml` shares a path
/// this build has an entry at (a committed `log/.gitkeep` with `shared =
/// ["log"]`): push and deploy to it would be refused.
fn warn_shared_collisions(ctx: &Context, name: &str, manifest: &crate::manifest::Manifest) {
    let Ok(Some(project)) = crate::config::load_project(&ctx.config_path) else {
        return;
    };
    for (target, cfg) in &project.targets {
        if let Err(e) = crate::manifest::check_shared(manifest, &cfg.shared, &cfg.shared_files) {
            ctx.out.warn(&format!(
                "release `{name}` cannot go to target `{target}` as it is: {e}"
            ));
        }
    }
}
