//! Reading a tag from git: resolve it, read files at its commit, export its
//! tree (never the working tree) with `git archive`, which honours
//! `export-ignore` from the tag's own `.gitattributes`; and the commits
//! between two releases' commits, for `slipway diff`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// What a tag points at.
#[derive(Debug, Clone)]
pub struct TagInfo {
    pub tag: String,
    /// The annotated tag object id (`None` for a lightweight tag).
    pub tag_object: Option<String>,
    pub commit: String,
    /// Committer time of the commit (seconds since the epoch).
    pub commit_time: i64,
}

fn git(repo: &Path, args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Run {
            program: "git".into(),
            hint: "; is git installed?",
            source,
        })
}

fn git_line(repo: &Path, args: &[&str]) -> Result<Option<String>> {
    let out = git(repo, args)?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_string()))
}

/// Resolve `tag` (annotated or lightweight) in the repository at `repo`.
///
/// # Errors
/// When `repo` is not a git repository or the tag does not exist.
pub fn resolve_tag(repo: &Path, tag: &str) -> Result<TagInfo> {
    if git_line(repo, &["rev-parse", "--git-dir"])?.is_none() {
        return Err(Error::usage(format!(
            "`{}` is not inside a git repository; run `slipway build` in your project, or use `--dir DIR --name NAME`",
            repo.display()
        )));
    }
    let reference = format!("refs/tags/{tag}");
    let Some(object) = git_line(repo, &["rev-parse", "--verify", "--quiet", &reference])? else {
        return Err(Error::usage(format!(
            "unknown tag `{tag}` in `{}`; list tags with `git tag`",
            repo.display()
        )));
    };
    let kind = git_line(repo, &["cat-file", "-t", &object])?.unwrap_or_default();
    let commit = git_line(
        repo,
        &["rev-parse", "--verify", "--quiet", &format!("{object}^{{commit}}")],
    )?
    .ok_or_else(|| Error::usage(format!("tag `{tag}` does not point at a commit")))?;
    let time = git_line(repo, &["show", "-s", "--format=%ct", &commit])?
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| Error::other(format!("cannot read the commit time of `{commit}`")))?;
    Ok(TagInfo {
        tag: tag.to_string(),
        tag_object: (kind == "tag").then_some(object),
        commit,
        commit_time: time,
    })
}

/// The contents of `path` at `commit`, or `None` when it is not there.
///
/// # Errors
/// When git cannot be run.
pub fn read_at(repo: &Path, commit: &str, path: &str) -> Result<Option<Vec<u8>>> {
    let out = git(repo, &["cat-file", "blob", &format!("{commit}:{path}")])?;
    Ok(out.status.success().then_some(out.stdout))
}

/// Export the tree of `commit` into the empty directory `dest`.
///
/// # Errors
/// When `git archive` or the unpacking fails.
pub fn export_tree(repo: &Path, commit: &str, dest: &Path) -> Result<()> {
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", commit])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Run {
            program: "git archive".into(),
            hint: "",
            source,
        })?;
    let stdout = archive
        .stdout
        .take()
        .ok_or_else(|| Error::other("git archive has no output"))?;
    let unpack = Command::new("tar")
        .arg("-xf")
        .arg("-")
        .arg("-C")
        .arg(dest)
        .arg("--no-same-owner")
        .stdin(stdout)
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Run {
            program: "tar".into(),
            hint: "",
            source,
        })?;
    let archived = archive.wait_with_output().map_err(|e| {
        Error::other(format!(
            "cannot wait for `git archive`: {}",
            crate::error::describe_io(&e)
        ))
    })?;
    if !archived.status.success() {
        return Err(Error::other(format!(
            "`git archive {commit}` failed: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        )));
    }
    if !unpack.status.success() {
        return Err(Error::other(format!(
            "cannot unpack the tree of `{commit}` into `{}`: {}",
            dest.display(),
            String::from_utf8_lossy(&unpack.stderr).trim()
        )));
    }
    Ok(())
}

/// One commit of [`commits_between`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The full hash.
    pub commit: String,
    /// The hash as `git log --oneline` abbreviates it.
    pub short: String,
    pub subject: String,
}

/// The commits between two releases' commits, newest first: those of `to`
/// that `from` lacks (`git log from..to`), and those of `from` that `to`
/// lacks (`git log to..from`: what going from `from` to `to` takes back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Between {
    pub added: Vec<Commit>,
    pub undone: Vec<Commit>,
}

/// [`Between`] `from` and `to` in the repository at `repo`, or `None` when
/// it cannot be told: `repo` is not a git repository, git is missing, or
/// either commit is not in it. Only full hashes are accepted (they come
/// from provenance records, which may have been imported from anyone).
pub fn commits_between(repo: &Path, from: &str, to: &str) -> Option<Between> {
    let is_hash = |c: &str| matches!(c.len(), 40 | 64) && c.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hash(from) || !is_hash(to) {
        return None;
    }
    for c in [from, to] {
        let present = git(repo, &["cat-file", "-e", &format!("{c}^{{commit}}")]).ok()?;
        if !present.status.success() {
            return None;
        }
    }
    let range = format!("{from}...{to}");
    let out = git(
        repo,
        &["log", "--left-right", "--format=%m%x1f%H%x1f%h%x1f%s", &range, "--"],
    )
    .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut between = Between::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.splitn(4, '\x1f');
        let (Some(side), Some(commit), Some(short), Some(subject)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let c = Commit {
            commit: commit.to_string(),
            short: short.to_string(),
            subject: subject.to_string(),
        };
        match side {
            ">" => between.added.push(c),
            "<" => between.undone.push(c),
            _ => {}
        }
    }
    Some(between)
}
