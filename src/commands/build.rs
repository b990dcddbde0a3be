//! `slipway build`: a tag (or a directory) becomes a bundle in the local store.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::Context;
use crate::bundle::{git, pack};
use crate::cli::BuildArgs;
use crate::config::{BuildConfig, parse_project};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::validate_name;
use crate::provenance::{Provenance, now_rfc3339};
use crate::store::{Bound, ReleaseRecord};

/// `source_date_epoch` of `build --dir` when `$SOURCE_DATE_EPOCH` is unset: 1980-01-01.
pub const DEFAULT_DIR_EPOCH: i64 = 315_532_800;

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

    let (name, packed, mut provenance) = if let Some(dir) = &args.dir {
        let name = args.name.clone().unwrap_or_default();
        validate_name(&name)?;
        let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => v
                .trim()
                .parse::<i64>()
                .map_err(|_| Error::usage(format!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds")))?,
            _ => DEFAULT_DIR_EPOCH,
        };
        match crate::fs::metadata_optional(dir)? {
            Some(m) if m.is_dir() => {}
            Some(_) => return Err(Error::usage(format!("`--dir {}` is not a directory", dir.display()))),
            None => return Err(Error::usage(format!("`--dir {}` does not exist", dir.display()))),
        }
        let allow = local_allow_links(ctx)?;
        let packed = pack::pack_dir(dir, &store.tmp_dir(), epoch, &allow, &bar)?;
        let prov = Provenance {
            source: "dir".into(),
            dir: Some(dir.display().to_string()),
            ..Provenance::default()
        };
        (name, packed, prov)
    } else {
        let tag = args
            .tag
            .clone()
            .ok_or_else(|| Error::usage("give a TAG, or `--dir DIR --name NAME`"))?;
        let name = args.name.clone().unwrap_or_else(|| tag.clone());
        if validate_name(&name).is_err() {
            return Err(if args.name.is_some() {
                validate_name(&name).unwrap_err()
            } else {
                Error::usage(format!(
                    "tag `{}` is not a valid release name; give one with `--name` (1-128 of A-Z a-z 0-9 . _ + -)",
                    tag.escape_debug()
                ))
            });
        }
        let repo = std::env::current_dir().map_err(|e| Error::io("read", Path::new("."), e))?;
        let info = git::resolve_tag(&repo, &tag)?;
        let origin = format!("{tag}:slipway.toml");
        let build = match git::read_at(&repo, &info.commit, "slipway.toml")? {
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| Error::usage(format!("`{origin}` is not UTF-8")))?;
                parse_project(&text, &origin)?.build
            }
            None => BuildConfig::default(),
        };
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(store.tmp_dir())
            .map_err(|e| Error::io("create a directory in", &store.tmp_dir(), e))?;
        let tree = work.path().join("tree");
        crate::fs::create_dir_all(&tree)?;
        ctx.out
            .detail(&format!("exporting {tag} ({}) into {}", info.commit, tree.display()));
        git::export_tree(&repo, &info.commit, &tree)?;
        if let Some(cmd) = &build.command {
            run_build_command(cmd, &tree, info.commit_time, ctx)?;
        }
        let out_dir = output_dir(&tree, build.output.as_deref(), &origin)?;
        let packed = pack::pack_dir(&out_dir, &store.tmp_dir(), info.commit_time, &build.allow_links, &bar)?;
        let result = (
            name,
            packed,
            Provenance {
                source: "git".into(),
                tag: Some(tag.clone()),
                tag_object: info.tag_object.clone(),
                commit: Some(info.commit.clone()),
                build_command: build.command.clone(),
                ..Provenance::default()
            },
        );
        crate::fs::remove_tree(work.path())?;
        result
    };
    bar.finish_and_clear();

    provenance.builder = builder;
    provenance.started_at = started;
    provenance.finished_at = now_rfc3339();
    provenance.duration_seconds = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    provenance.slipway_version = env!("CARGO_PKG_VERSION").to_string();

    let compressed_size = packed.compressed_size;
    let manifest = packed.manifest.clone();
    let id = store.add_bundle(packed)?;
    let record = ReleaseRecord {
        name: name.clone(),
        id,
        provenance: Some(provenance.clone()),
        signatures: Vec::new(),
    };
    let bound = store.bind(&record)?;
    if bound == Bound::Existing {
        ctx.out
            .info(&format!("release `{name}` is already in the store with this id"));
    }
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

fn run_build_command(cmd: &str, tree: &Path, epoch: i64, ctx: &Context) -> Result<()> {
    ctx.out.info(&format!("running build command: {cmd}"));
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(tree)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .map_err(|source| Error::BuildNotRun {
            command: cmd.to_string(),
            source,
        })?;
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_string(),
        };
        return Err(Error::BuildFailed {
            command: cmd.to_string(),
            how,
        });
    }
    Ok(())
}

fn output_dir(tree: &Path, output: Option<&str>, origin: &str) -> Result<PathBuf> {
    let Some(out) = output else {
        return Ok(tree.to_path_buf());
    };
    let rel = Path::new(out);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(Error::usage(format!(
            "`{origin}`: `[build] output = \"{out}\"` must be a relative path inside the tree"
        )));
    }
    let dir = tree.join(rel);
    match crate::fs::symlink_metadata_optional(&dir)? {
        Some(m) if m.is_dir() => Ok(dir),
        _ => Err(Error::BuildOutputMissing {
            output: out.to_string(),
            origin: origin.to_string(),
        }),
    }
}
