//! Building a release: a tag's tree, exported from git and built by the
//! tag's own `[build]` command, or a directory made elsewhere, becomes a
//! packed bundle with the provenance that says how. `commands/build.rs`
//! adds the times and the builder, stores it and prints it.
//!
//! Invariant: a tag is built from its commit's tree, never the working
//! tree, with `SOURCE_DATE_EPOCH` set to the commit's time, and only the
//! tag's own `slipway.toml` says how; the temporary tree is removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::ProgressBar;

use crate::bundle::git;
use crate::bundle::pack::{self, Packed};
use crate::config::{BuildConfig, parse_project};
use crate::error::{Error, Result};
use crate::manifest::validate_name;
use crate::output::Output;
use crate::provenance::Provenance;

/// `source_date_epoch` of `build --dir` when `$SOURCE_DATE_EPOCH` is unset: 1980-01-01.
pub const DEFAULT_DIR_EPOCH: i64 = 315_532_800;

/// A release built and packed, not yet stored.
pub struct Built {
    pub name: String,
    pub packed: Packed,
    /// How it was made (the caller adds times, builder and version).
    pub provenance: Provenance,
}

/// Snapshot `dir` as release `name` (`build --dir`), with `$SOURCE_DATE_EPOCH`
/// (or [`DEFAULT_DIR_EPOCH`]) as its time; `allow_links` may point outside.
///
/// # Errors
/// A bad name or epoch, a missing directory, or a tree that breaks a bundle rule.
pub fn from_dir(dir: &Path, name: &str, allow_links: &[String], tmp: &Path, bar: &ProgressBar) -> Result<Built> {
    validate_name(name)?;
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
    let packed = pack::pack_dir(dir, tmp, epoch, allow_links, bar)?;
    Ok(Built {
        name: name.to_string(),
        packed,
        provenance: Provenance {
            source: "dir".into(),
            dir: Some(dir.display().to_string()),
            ..Provenance::default()
        },
    })
}

/// Build `tag` of the repository at `repo` as release `name` (default: the
/// tag): export its commit's tree under `tmp`, run its `[build] command`
/// there (its output goes to stderr), and pack its `[build] output`.
///
/// # Errors
/// A tag that is not a valid name (without `name`), an unknown tag, a bad
/// `slipway.toml` at the tag, a failing build command, or a tree that
/// breaks a bundle rule.
pub fn from_tag(
    repo: &Path,
    tag: &str,
    name: Option<&str>,
    tmp: &Path,
    out: &Output,
    bar: &ProgressBar,
) -> Result<Built> {
    let release = name.unwrap_or(tag).to_string();
    if let Err(e) = validate_name(&release) {
        return Err(if name.is_some() {
            e
        } else {
            Error::usage(format!(
                "tag `{}` is not a valid release name; give one with `--name` (1-128 of A-Z a-z 0-9 . _ + -)",
                tag.escape_debug()
            ))
        });
    }
    let info = git::resolve_tag(repo, tag)?;
    let origin = format!("{tag}:slipway.toml");
    let build = match git::read_at(repo, &info.commit, "slipway.toml")? {
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| Error::usage(format!("`{origin}` is not UTF-8")))?;
            parse_project(&text, &origin)?.build
        }
        None => BuildConfig::default(),
    };
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(tmp)
        .map_err(|e| Error::io("create a directory in", tmp, e))?;
    let tree = work.path().join("tree");
    crate::fs::create_dir_all(&tree)?;
    out.detail(&format!("exporting {tag} ({}) into {}", info.commit, tree.display()));
    git::export_tree(repo, &info.commit, &tree)?;
    if let Some(cmd) = &build.command {
        run_build_command(cmd, &tree, info.commit_time, out)?;
    }
    let out_dir = output_dir(&tree, build.output.as_deref(), &origin)?;
    let packed = pack::pack_dir(&out_dir, tmp, info.commit_time, &build.allow_links, bar)?;
    let built = Built {
        name: release,
        packed,
        provenance: Provenance {
            source: "git".into(),
            tag: Some(tag.to_string()),
            tag_object: info.tag_object.clone(),
            commit: Some(info.commit.clone()),
            build_command: build.command.clone(),
            ..Provenance::default()
        },
    };
    crate::fs::remove_tree(work.path())?;
    Ok(built)
}

fn run_build_command(cmd: &str, tree: &Path, epoch: i64, out: &Output) -> Result<()> {
    out.info(&format!("running build command: {cmd}"));
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
