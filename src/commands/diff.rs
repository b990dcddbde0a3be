//! `slipway diff A B`: what changes between two releases of the local store
//! (paths, sizes, modes, link targets, kinds; the commits between them),
//! read from their manifests, never their bundles. `slipway diff A -t
//! TARGET`: the same against the release each host runs now, one diff per
//! distinct release, naming its hosts (read-only: the `status` request).
//! The difference itself is [`crate::diff`]; this file resolves, prints and
//! shapes `--json` (docs/json.md).

use std::path::Path;

use serde::Serialize;

use crate::Context;
use crate::bundle::git::{self, Between};
use crate::cli::DiffArgs;
use crate::diff::{Change, Totals, changes};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::manifest::{Entry, Kind, Manifest};
use crate::output::human_bytes;
use crate::provenance::Provenance;
use crate::store::{ReleaseRecord, Store};

/// One side of a diff: a release of the local store.
struct Side {
    name: Option<String>,
    id: Digest,
    manifest: Manifest,
    provenance: Option<Provenance>,
}

impl Side {
    /// REL (a name or id prefix) in the local store.
    fn resolve(store: &Store, rel: &str) -> Result<Side> {
        let (id, record) = store.resolve(rel)?;
        Side::load(store, id, record)
    }

    fn load(store: &Store, id: Digest, record: Option<ReleaseRecord>) -> Result<Side> {
        if !store.has_bundle(&id) {
            return Err(match record {
                Some(r) => Error::BundleMissing {
                    release: r.name,
                    id: id.to_string(),
                    store: store.root().to_path_buf(),
                },
                None => Error::other(format!(
                    "bundle {id} is missing from the store `{}`",
                    store.root().display()
                )),
            });
        }
        Ok(Side {
            manifest: store.manifest(&id)?,
            name: record.as_ref().map(|r| r.name.clone()),
            provenance: record.and_then(|r| r.provenance),
            id,
        })
    }

    /// `v1.4.2 (3f1c2a4b5c6d)`, or the short id alone.
    fn label(&self) -> String {
        let short = super::short_id(&self.id);
        match &self.name {
            Some(n) => format!("{n} ({short})"),
            None => short,
        }
    }

    /// How to name it in a sentence: `` `v1.4.2` `` or the id.
    fn quoted(&self) -> String {
        match &self.name {
            Some(n) => format!("`{n}`"),
            None => self.id.to_string(),
        }
    }

    fn json(&self) -> ReleaseJson {
        ReleaseJson {
            name: self.name.clone(),
            id: self.id,
        }
    }
}

/// What to print of each diff.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Full,
    Stat,
    NameOnly,
    NameStatus,
}

impl Form {
    fn of(args: &DiffArgs) -> Form {
        if args.stat {
            Form::Stat
        } else if args.name_only {
            Form::NameOnly
        } else if args.name_status {
            Form::NameStatus
        } else {
            Form::Full
        }
    }
}

/// # Errors
/// Exit 2 when a release is not in the local store (with the closest name);
/// with `-t`, after printing every host, the first host that could not be
/// reached, or exit 1 when a host runs a release the local store lacks.
pub fn run(args: &DiffArgs, ctx: &Context) -> Result<()> {
    let store = ctx.store()?;
    let form = Form::of(args);
    let repo = std::env::current_dir().ok();
    match (&args.target, &args.to) {
        (Some(target), _) => against_hosts(ctx, &store, args, target, form, repo.as_deref()),
        (None, Some(to)) => {
            let from = Side::resolve(&store, &args.from)?;
            let to = Side::resolve(&store, to)?;
            let diff = Diff::new(Some(&from), &to, repo.as_deref());
            if ctx.out.json {
                ctx.out.json_value(&diff.json());
            } else {
                diff.print(ctx, form, None)?;
            }
            Ok(())
        }
        // clap requires B unless -t is given.
        (None, None) => Err(Error::usage(
            "`slipway diff` needs two releases, or one and `-t TARGET`",
        )),
    }
}

/// The hosts that run one release (or nothing, or cannot be compared).
struct Group {
    hosts: Vec<String>,
    current: Option<(String, Option<Digest>)>,
    /// Why these hosts cannot be compared.
    error: Option<Error>,
}

fn against_hosts(
    ctx: &Context,
    store: &Store,
    args: &DiffArgs,
    target: &str,
    form: Form,
    repo: Option<&Path>,
) -> Result<()> {
    let to = Side::resolve(store, &args.from)?;
    let target = super::load_target(ctx, target)?;
    let mut fleet = Fleet::new(ctx, &target, &args.hosts)?;
    let mut groups: Vec<Group> = Vec::new();
    for (host, status) in fleet.query(|s| s.status()) {
        // A root nothing was pushed to yet runs nothing.
        let status = match status {
            Err(e) if e.is_root_missing() => Ok(None),
            other => other.map(Some),
        };
        match status {
            Ok(st) => {
                let current = st.and_then(|st| st.current.map(|name| (name, st.current_id)));
                match groups.iter_mut().find(|g| g.error.is_none() && g.current == current) {
                    Some(g) => g.hosts.push(host),
                    None => groups.push(Group {
                        hosts: vec![host],
                        current,
                        error: None,
                    }),
                }
            }
            Err(e) => groups.push(Group {
                hosts: vec![host],
                current: None,
                error: Some(e),
            }),
        }
    }
    // Each distinct release the hosts run, from the local store.
    let mut sides: Vec<Option<Side>> = Vec::new();
    for g in &mut groups {
        let side = match (&g.current, &g.error) {
            (Some((name, id)), None) => match from_store(store, name, *id, &g.hosts) {
                Ok(side) => Some(side),
                Err(e) => {
                    g.error = Some(e);
                    None
                }
            },
            _ => None,
        };
        sides.push(side);
    }
    if ctx.out.json {
        let rows: Vec<GroupJson> = groups
            .iter()
            .zip(&sides)
            .map(|(g, side)| GroupJson {
                hosts: g.hosts.clone(),
                current: g.current.as_ref().map(|(name, id)| CurrentJson {
                    name: name.clone(),
                    id: *id,
                }),
                error: g.error.as_ref().map(|e| e.without_host().to_string()),
                diff: g.error.is_none().then(|| Diff::new(side.as_ref(), &to, repo).json()),
            })
            .collect();
        ctx.out.json_value(&rows);
    } else {
        for (i, (g, side)) in groups.iter().zip(&sides).enumerate() {
            if i > 0 && form != Form::Stat {
                ctx.out.data("");
            }
            let hosts = g.hosts.join(", ");
            match &g.error {
                Some(e) => ctx.out.data(&format!("{hosts}: {}", e.without_host())),
                None => Diff::new(side.as_ref(), &to, repo).print(ctx, form, Some(&hosts))?,
            }
        }
    }
    match groups.into_iter().find_map(|g| g.error) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The release `name` (bundle `id`) that `hosts` run, from the local store.
///
/// # Errors
/// When the local store does not have it (exit 1: what the hosts run cannot
/// be compared), or the host does not say which bundle it is.
fn from_store(store: &Store, name: &str, id: Option<Digest>, hosts: &[String]) -> Result<Side> {
    let Some(id) = id else {
        return Err(Error::other(format!(
            "`{name}`, which {} {}, has no bundle id on the host (its `releases/{name}.json` is missing)",
            hosts.join(", "),
            if hosts.len() == 1 { "runs" } else { "run" }
        )));
    };
    if !store.has_bundle(&id) {
        return Err(Error::other(format!(
            "`{name}` ({id}), which {} {}, is not in the local store `{}`; `slipway fetch {name} --from REMOTE` or `slipway import FILE` it to compare",
            hosts.join(", "),
            if hosts.len() == 1 { "runs" } else { "run" },
            store.root().display()
        )));
    }
    // The local record of that bundle: by the host's name, else the one name bound to it.
    let record = match store.record(name) {
        Ok(r) if r.id == id => Some(r),
        _ => store.resolve(&id.to_string()).ok().and_then(|(_, r)| r),
    };
    let mut side = Side::load(store, id, record)?;
    side.name = Some(name.to_string());
    Ok(side)
}

/// A difference ready to print: `from` is `None` for a host that runs nothing.
struct Diff<'a> {
    from: Option<&'a Side>,
    to: &'a Side,
    changes: Vec<Change<'a>>,
    totals: Totals,
    commits: Commits,
}

/// The commits between the two sides, or why there are none to show.
enum Commits {
    Between(Between),
    /// One side was not built from a commit: why.
    Note(String),
    /// Not told: not both in the repository of the working directory.
    Unknown,
}

impl<'a> Diff<'a> {
    fn new(from: Option<&'a Side>, to: &'a Side, repo: Option<&Path>) -> Diff<'a> {
        let before: &[Entry] = from.map_or(&[], |s| s.manifest.entries.as_slice());
        let changes = changes(before, &to.manifest.entries);
        let totals = Totals::of(&changes, before, &to.manifest.entries);
        let commits = match from {
            Some(from) => commits(from, to, repo),
            None => Commits::Unknown,
        };
        Diff {
            from,
            to,
            changes,
            totals,
            commits,
        }
    }

    /// `v1 (3f1c…) -> v2 (9a0b…)`.
    fn header(&self) -> String {
        let from = self.from.map_or_else(|| "nothing".to_string(), Side::label);
        format!("{from} -> {}", self.to.label())
    }

    /// # Errors
    /// When stdout cannot be written (`--name-only`, `--name-status`).
    fn print(&self, ctx: &Context, form: Form, hosts: Option<&str>) -> Result<()> {
        let out = &ctx.out;
        if matches!(form, Form::NameOnly | Form::NameStatus) {
            // Written as they are, tab included: a valid manifest's paths
            // have no control characters.
            let mut text = String::new();
            for c in &self.changes {
                if form == Form::NameStatus {
                    text.push(c.letter());
                    text.push('\t');
                }
                text.push_str(c.path());
                text.push('\n');
            }
            return out
                .raw(text.as_bytes())
                .map_err(|e| Error::other(format!("cannot write to stdout: {}", crate::error::describe_io(&e))));
        }
        match hosts {
            Some(h) => out.data(&format!("{h}: {}", self.header())),
            None => out.data(&self.header()),
        }
        if form == Form::Full {
            let width = self.changes.iter().map(|c| c.path().len()).max().unwrap_or(0).min(40);
            for c in &self.changes {
                out.data(&format!("{}  {:<width$}  {}", c.letter(), c.path(), describe_change(c)));
            }
        }
        out.data(&self.summary());
        if form == Form::Full {
            self.print_commits(ctx);
        }
        Ok(())
    }

    /// The totals on one line.
    fn summary(&self) -> String {
        let t = &self.totals;
        if t.is_empty() {
            return match self.from {
                Some(from) if from.id == self.to.id => "no changes: the same bundle".into(),
                Some(_) => "no changes to the tree (only source_date_epoch differs)".into(),
                None => "no changes: both are empty".into(),
            };
        }
        let mut parts = Vec::new();
        let count = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if t.added > 0 {
            parts.push(format!("{} added ({})", t.added, human_bytes(t.bytes_added)));
        }
        if t.removed > 0 {
            parts.push(format!("{} removed ({})", t.removed, human_bytes(t.bytes_removed)));
        }
        if t.changed > 0 {
            parts.push(format!(
                "{} changed ({} -> {})",
                t.changed,
                human_bytes(t.bytes_changed_before),
                human_bytes(t.bytes_changed_after)
            ));
        }
        if t.modes > 0 {
            parts.push(count(t.modes, "mode", "modes"));
        }
        if t.links > 0 {
            parts.push(count(t.links, "link target", "link targets"));
        }
        if t.kinds > 0 {
            parts.push(count(t.kinds, "kind", "kinds"));
        }
        format!(
            "{}; size {} -> {}",
            parts.join(", "),
            human_bytes(t.size_before),
            human_bytes(t.size_after)
        )
    }

    fn print_commits(&self, ctx: &Context) {
        let out = &ctx.out;
        let (from, to) = (self.from.map(Side::quoted).unwrap_or_default(), self.to.quoted());
        match &self.commits {
            Commits::Unknown => {}
            Commits::Note(why) => out.data(&format!("commits: not shown: {why}")),
            Commits::Between(b) => {
                if b.added.is_empty() && b.undone.is_empty() {
                    out.data("commits: the same commit");
                }
                if !b.added.is_empty() {
                    out.data(&format!("commits in {to}, not in {from} (newest first):"));
                    for c in &b.added {
                        out.data(&format!("  {} {}", c.short, c.subject));
                    }
                }
                if !b.undone.is_empty() {
                    out.data(&format!("commits in {from}, not in {to}, taken back (newest first):"));
                    for c in &b.undone {
                        out.data(&format!("  {} {}", c.short, c.subject));
                    }
                }
            }
        }
    }

    fn json(&self) -> DiffJson<'a> {
        let mut j = DiffJson {
            from: self.from.map(Side::json),
            to: self.to.json(),
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            modes: Vec::new(),
            links: Vec::new(),
            kinds: Vec::new(),
            totals: self.totals,
            commits: None,
            commits_undone: None,
            commits_note: None,
        };
        for c in &self.changes {
            match *c {
                Change::Added(e) => j.added.push(PathEntryJson::of(e)),
                Change::Removed(e) => j.removed.push(PathEntryJson::of(e)),
                Change::Kind { before, after } => j.kinds.push(KindJson {
                    path: &after.path,
                    before: EntryJson::of(before),
                    after: EntryJson::of(after),
                }),
                Change::Modified { before, after } => {
                    let a = c.aspects();
                    if a.content {
                        j.changed.push(ChangedJson {
                            path: &after.path,
                            size_before: before.size,
                            size_after: after.size,
                            sha256_before: before.sha256,
                            sha256_after: after.sha256,
                        });
                    }
                    if a.mode {
                        j.modes.push(ModeJson {
                            path: &after.path,
                            mode_before: format!("{:04o}", before.mode),
                            mode_after: format!("{:04o}", after.mode),
                        });
                    }
                    if a.target {
                        j.links.push(LinkJson {
                            path: &after.path,
                            target_before: before.target.as_deref(),
                            target_after: after.target.as_deref(),
                        });
                    }
                }
            }
        }
        let listed = |cs: &[git::Commit]| {
            cs.iter()
                .map(|c| CommitJson {
                    commit: c.commit.clone(),
                    subject: c.subject.clone(),
                })
                .collect()
        };
        match &self.commits {
            Commits::Between(b) => {
                j.commits = Some(listed(&b.added));
                j.commits_undone = Some(listed(&b.undone));
            }
            Commits::Note(why) => j.commits_note = Some(why.clone()),
            Commits::Unknown => {}
        }
        j
    }
}

/// The commits between `from` and `to` when both were built from commits
/// of the repository at `repo`; a note when one was not built from a commit.
fn commits(from: &Side, to: &Side, repo: Option<&Path>) -> Commits {
    let commit_of = |s: &Side| -> std::result::Result<String, String> {
        match &s.provenance {
            Some(p) => match &p.commit {
                Some(c) => Ok(c.clone()),
                None if p.source == "dir" => Err(format!(
                    "{} was built from a directory (`build --dir`), not a commit",
                    s.quoted()
                )),
                None => Err(format!("the provenance of {} names no commit", s.quoted())),
            },
            None => Err(format!("{} has no provenance in the local store", s.quoted())),
        }
    };
    match (commit_of(from), commit_of(to)) {
        (Ok(a), Ok(b)) => match repo.and_then(|r| git::commits_between(r, &a, &b)) {
            Some(between) => Commits::Between(between),
            None => Commits::Unknown,
        },
        (Err(why), _) | (_, Err(why)) => Commits::Note(why),
    }
}

/// What a line of the full form says after the path.
fn describe_change(c: &Change<'_>) -> String {
    match *c {
        Change::Added(e) | Change::Removed(e) => describe(e),
        Change::Kind { before, after } => {
            let kinded = |e: &Entry| match e.kind {
                Kind::File => format!("file {}", describe(e)),
                _ => describe(e),
            };
            format!("{} -> {}", kinded(before), kinded(after))
        }
        Change::Modified { before, after } => {
            let a = c.aspects();
            let mut parts = Vec::new();
            if a.content {
                parts.push(format!("{} -> {}", human_bytes(before.size), human_bytes(after.size)));
            }
            if a.mode {
                parts.push(format!("mode {:04o} -> {:04o}", before.mode, after.mode));
            }
            if a.target {
                parts.push(format!("target {} -> {}", link_target(before), link_target(after)));
            }
            parts.join(", ")
        }
    }
}

/// `6 B`, `6 B, executable`, `directory`, `symlink to index.html`.
fn describe(e: &Entry) -> String {
    match e.kind {
        Kind::File if e.executable() => format!("{}, executable", human_bytes(e.size)),
        Kind::File => human_bytes(e.size),
        Kind::Dir => "directory".into(),
        Kind::Symlink => format!("symlink to {}", link_target(e)),
    }
}

/// A symlink's target as printed, marked when it leaves the release.
fn link_target(e: &Entry) -> String {
    let t = e.target.as_deref().unwrap_or_default();
    if e.external {
        format!("{t} (outside the release)")
    } else {
        t.to_string()
    }
}

// ---------------------------------------------------------------------------
// `--json` (docs/json.md)

#[derive(Serialize)]
struct ReleaseJson {
    name: Option<String>,
    id: Digest,
}

/// What a path is on one side.
#[derive(Serialize)]
struct EntryJson<'a> {
    kind: Kind,
    size: u64,
    executable: bool,
    target: Option<&'a str>,
}

impl<'a> EntryJson<'a> {
    fn of(e: &'a Entry) -> EntryJson<'a> {
        EntryJson {
            kind: e.kind,
            size: e.size,
            executable: e.kind == Kind::File && e.executable(),
            target: e.target.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct PathEntryJson<'a> {
    path: &'a str,
    #[serde(flatten)]
    entry: EntryJson<'a>,
}

impl<'a> PathEntryJson<'a> {
    fn of(e: &'a Entry) -> PathEntryJson<'a> {
        PathEntryJson {
            path: &e.path,
            entry: EntryJson::of(e),
        }
    }
}

#[derive(Serialize)]
struct ChangedJson<'a> {
    path: &'a str,
    size_before: u64,
    size_after: u64,
    sha256_before: Option<Digest>,
    sha256_after: Option<Digest>,
}

#[derive(Serialize)]
struct ModeJson<'a> {
    path: &'a str,
    mode_before: String,
    mode_after: String,
}

#[derive(Serialize)]
struct LinkJson<'a> {
    path: &'a str,
    target_before: Option<&'a str>,
    target_after: Option<&'a str>,
}

#[derive(Serialize)]
struct KindJson<'a> {
    path: &'a str,
    before: EntryJson<'a>,
    after: EntryJson<'a>,
}

#[derive(Serialize)]
struct CommitJson {
    commit: String,
    subject: String,
}

#[derive(Serialize)]
struct DiffJson<'a> {
    from: Option<ReleaseJson>,
    to: ReleaseJson,
    added: Vec<PathEntryJson<'a>>,
    removed: Vec<PathEntryJson<'a>>,
    changed: Vec<ChangedJson<'a>>,
    modes: Vec<ModeJson<'a>>,
    links: Vec<LinkJson<'a>>,
    kinds: Vec<KindJson<'a>>,
    totals: Totals,
    commits: Option<Vec<CommitJson>>,
    commits_undone: Option<Vec<CommitJson>>,
    commits_note: Option<String>,
}

#[derive(Serialize)]
struct CurrentJson {
    name: String,
    id: Option<Digest>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    hosts: Vec<String>,
    current: Option<CurrentJson>,
    error: Option<String>,
    diff: Option<DiffJson<'a>>,
}
