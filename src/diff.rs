//! The difference between two releases, read from their manifests alone:
//! which paths were added or removed, which files have other contents or
//! another executable bit, which symlinks point elsewhere, which paths
//! changed kind (file, directory, symlink), and the totals of each.
//!
//! Invariant: the changes come in path order, at most one per path, and
//! cost time and memory linear in the two manifests: both are strictly
//! sorted by path (bytes, as [`crate::manifest::Manifest::validate`]
//! requires), so the difference is one merge of two sorted lists.

use std::cmp::Ordering;

use serde::Serialize;

use crate::manifest::{Entry, Kind};

/// What happened to one path between `from` and `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Only in `to`.
    Added(&'a Entry),
    /// Only in `from`.
    Removed(&'a Entry),
    /// The same kind on both sides, but a file's contents or executable
    /// bit, or a symlink's target, differ (see [`Change::aspects`]).
    Modified { before: &'a Entry, after: &'a Entry },
    /// A file became a directory or a symlink, or the other way round.
    Kind { before: &'a Entry, after: &'a Entry },
}

/// What differs in a [`Change::Modified`] entry; several can at once (a
/// file whose contents and executable bit both changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aspects {
    pub content: bool,
    pub mode: bool,
    pub target: bool,
}

impl Aspects {
    fn of(before: &Entry, after: &Entry) -> Aspects {
        match before.kind {
            Kind::File => Aspects {
                content: before.sha256 != after.sha256 || before.size != after.size,
                mode: before.executable() != after.executable(),
                target: false,
            },
            Kind::Symlink => Aspects {
                target: before.target != after.target || before.external != after.external,
                ..Aspects::default()
            },
            // Directories have one mode and nothing else.
            Kind::Dir => Aspects::default(),
        }
    }

    fn any(self) -> bool {
        self.content || self.mode || self.target
    }
}

impl<'a> Change<'a> {
    pub fn path(&self) -> &'a str {
        match self {
            Change::Added(e) | Change::Removed(e) => &e.path,
            Change::Modified { after, .. } | Change::Kind { after, .. } => &after.path,
        }
    }

    /// The letter `git diff --name-status` would print: `A`dded,
    /// `D`eleted, `M`odified (contents, executable bit or link target),
    /// `T`ype changed.
    pub fn letter(&self) -> char {
        match self {
            Change::Added(_) => 'A',
            Change::Removed(_) => 'D',
            Change::Modified { .. } => 'M',
            Change::Kind { .. } => 'T',
        }
    }

    /// What differs (all false unless [`Change::Modified`]).
    pub fn aspects(&self) -> Aspects {
        match self {
            Change::Modified { before, after } => Aspects::of(before, after),
            _ => Aspects::default(),
        }
    }
}

/// Every path that differs between the entries of two manifests, in path
/// order. Both lists must be sorted by path, as a valid manifest's are.
pub fn changes<'a>(from: &'a [Entry], to: &'a [Entry]) -> Vec<Change<'a>> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < from.len() || j < to.len() {
        let order = match (from.get(i), to.get(j)) {
            (Some(a), Some(b)) => a.path.as_bytes().cmp(b.path.as_bytes()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                out.push(Change::Removed(&from[i]));
                i += 1;
            }
            Ordering::Greater => {
                out.push(Change::Added(&to[j]));
                j += 1;
            }
            Ordering::Equal => {
                let (before, after) = (&from[i], &to[j]);
                if before.kind != after.kind {
                    out.push(Change::Kind { before, after });
                } else if Aspects::of(before, after).any() {
                    out.push(Change::Modified { before, after });
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The counts and sizes of a difference: the `totals` object of `slipway
/// diff --json` (docs/json.md). A file whose contents and executable bit
/// both changed counts in `changed` and in `modes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Paths only in `to` (files, directories and symlinks).
    pub added: usize,
    /// Paths only in `from`.
    pub removed: usize,
    /// Files whose contents differ.
    pub changed: usize,
    /// Files whose executable bit differs.
    pub modes: usize,
    /// Symlinks whose target differs.
    pub links: usize,
    /// Paths whose kind differs.
    pub kinds: usize,
    /// Size of the added files.
    pub bytes_added: u64,
    /// Size of the removed files.
    pub bytes_removed: u64,
    /// Size of the changed files in `from`.
    pub bytes_changed_before: u64,
    /// Size of the changed files in `to`.
    pub bytes_changed_after: u64,
    /// Size of every file of `from`.
    pub size_before: u64,
    /// Size of every file of `to`.
    pub size_after: u64,
}

impl Totals {
    /// The totals of `changes` between `from` and `to` (sizes saturate: a
    /// manifest may declare sizes whose sum does not fit).
    pub fn of(changes: &[Change<'_>], from: &[Entry], to: &[Entry]) -> Totals {
        let sum = |entries: &[Entry]| entries.iter().fold(0u64, |s, e| s.saturating_add(e.size));
        let mut t = Totals {
            size_before: sum(from),
            size_after: sum(to),
            ..Totals::default()
        };
        for c in changes {
            match *c {
                Change::Added(e) => {
                    t.added += 1;
                    t.bytes_added = t.bytes_added.saturating_add(e.size);
                }
                Change::Removed(e) => {
                    t.removed += 1;
                    t.bytes_removed = t.bytes_removed.saturating_add(e.size);
                }
                Change::Kind { .. } => t.kinds += 1,
                Change::Modified { before, after } => {
                    let a = Aspects::of(before, after);
                    if a.content {
                        t.changed += 1;
                        t.bytes_changed_before = t.bytes_changed_before.saturating_add(before.size);
                        t.bytes_changed_after = t.bytes_changed_after.saturating_add(after.size);
                    }
                    t.modes += usize::from(a.mode);
                    t.links += usize::from(a.target);
                }
            }
        }
        t
    }

    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added + self.removed + self.changed + self.modes + self.links + self.kinds == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn f(p: &str, content: &str) -> Entry {
        Entry::file(p.into(), false, content.len() as u64, Digest::of(content.as_bytes()))
    }
    fn x(p: &str, content: &str) -> Entry {
        Entry::file(p.into(), true, content.len() as u64, Digest::of(content.as_bytes()))
    }
    fn d(p: &str) -> Entry {
        Entry::dir(p.into())
    }
    fn l(p: &str, t: &str) -> Entry {
        Entry::symlink(p.into(), t.into())
    }
    /// `LETTER PATH` of each change.
    fn listed(changes: &[Change<'_>]) -> Vec<String> {
        changes.iter().map(|c| format!("{} {}", c.letter(), c.path())).collect()
    }

    #[test]
    fn the_merge_finds_each_kind_of_change_in_path_order() {
        let from = vec![
            d("bin"),
            f("bin/run", "#!/bin/sh\n"),
            f("conf", "a=1\n"),
            f("gone.css", "x"),
            l("home.html", "index.html"),
            f("index.html", "one\n"),
            f("same.js", "same"),
        ];
        let to = vec![
            f("about.html", "about\n"),
            d("bin"),
            x("bin/run", "#!/bin/sh\n"),
            l("conf", "conf.d/prod"),
            d("conf.d"),
            f("conf.d/prod", "a=2\n"),
            l("home.html", "about.html"),
            f("index.html", "two!\n"),
            f("same.js", "same"),
        ];
        let changes = changes(&from, &to);
        assert_eq!(
            listed(&changes),
            [
                "A about.html",
                "M bin/run",
                "T conf",
                "A conf.d",
                "A conf.d/prod",
                "D gone.css",
                "M home.html",
                "M index.html",
            ]
        );
        let aspects: Vec<Aspects> = changes.iter().map(Change::aspects).collect();
        assert_eq!(
            aspects[1],
            Aspects {
                mode: true,
                ..Aspects::default()
            }
        );
        assert_eq!(
            aspects[6],
            Aspects {
                target: true,
                ..Aspects::default()
            }
        );
        assert_eq!(
            aspects[7],
            Aspects {
                content: true,
                ..Aspects::default()
            }
        );
        assert_eq!(
            Totals::of(&changes, &from, &to),
            Totals {
                added: 3,
                removed: 1,
                changed: 1,
                modes: 1,
                links: 1,
                kinds: 1,
                // about.html (6) + conf.d/prod (4); conf (4) became a link: a kind
                bytes_added: 10,
                bytes_removed: 1,
                bytes_changed_before: 4,
                bytes_changed_after: 5,
                size_before: 10 + 4 + 1 + 4 + 4,
                size_after: 6 + 10 + 4 + 5 + 4,
            }
        );
    }

    #[test]
    fn contents_and_mode_changing_together_count_in_both() {
        let from = [f("run", "a")];
        let to = [x("run", "bb")];
        let changes = changes(&from, &to);
        assert_eq!(listed(&changes), ["M run"]);
        let t = Totals::of(&changes, &from, &to);
        assert_eq!(
            (t.changed, t.modes, t.bytes_changed_before, t.bytes_changed_after),
            (1, 1, 1, 2)
        );
    }

    #[test]
    fn identical_or_empty_sides() {
        let m = [d("a"), f("a/b", "x"), l("c", "a/b")];
        assert!(changes(&m, &m).is_empty());
        assert!(Totals::of(&[], &m, &m).is_empty());
        let all_added = changes(&[], &m);
        assert_eq!(listed(&all_added), ["A a", "A a/b", "A c"]);
        let all_removed = changes(&m, &[]);
        assert_eq!(listed(&all_removed), ["D a", "D a/b", "D c"]);
        assert_eq!(Totals::of(&all_removed, &m, &[]).bytes_removed, 1);
    }

    #[test]
    fn paths_order_by_bytes_as_manifests_do() {
        // `a-b` < `a/b` < `a0` in bytes ('-' 0x2d, '/' 0x2f, '0' 0x30).
        let from = [f("a-b", "1"), d("a"), f("a0", "1")];
        let mut from = from.to_vec();
        from.sort_by(|x, y| x.path.as_bytes().cmp(y.path.as_bytes()));
        let to = vec![d("a"), f("a/b", "1"), f("a0", "2")];
        assert_eq!(listed(&changes(&from, &to)), ["D a-b", "A a/b", "M a0"]);
    }

    #[test]
    fn twenty_thousand_entries_take_one_pass() {
        let n = 20_000;
        let from: Vec<Entry> = (0..n).map(|i| f(&format!("f{i:05}"), "x")).collect();
        let to: Vec<Entry> = (0..n)
            .map(|i| {
                if i % 10 == 0 {
                    f(&format!("f{i:05}"), "y")
                } else {
                    from[i].clone()
                }
            })
            .collect();
        let start = std::time::Instant::now();
        let changes = changes(&from, &to);
        assert_eq!(changes.len(), n / 10);
        // About a millisecond; the bound leaves room for a loaded debug build.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
