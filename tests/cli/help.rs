//! Help pages are part of the interface. `slipway --help` and
//! `slipway COMMAND --help` (nested ones too: `host check`) are compared with
//! `tests/snapshots/help/<slipway|command[-sub]>.txt`, at a fixed width of
//! 100 columns.
//!
//! After adding a flag or changing a help text:
//!
//! ```text
//! UPDATE_SNAPSHOTS=1 cargo test --test cli help
//! git diff tests/snapshots/help     # review, then commit with the change
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::support::bin;

/// Every page: `[]` for `slipway`, `["host", "check"]` for `slipway host check`.
fn pages() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(path.clone());
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut out = Vec::new();
    walk(&slipway::cli::Cli::command(), Vec::new(), &mut out);
    out
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/help")
}

fn file_name(page: &[String]) -> String {
    if page.is_empty() {
        "slipway.txt".into()
    } else {
        format!("{}.txt", page.join("-"))
    }
}

/// `slipway PAGE… FLAG` at 100 columns, with nothing from the caller's environment.
fn help(page: &[String], flag: &str) -> String {
    let out = Command::new(bin())
        .args(page)
        .arg(flag)
        .env("COLUMNS", "100")
        .env_remove("SLIPWAY_STORE")
        .env_remove("SLIPWAY_SSH_CONFIG")
        .env_remove("SLIPWAY_REMOTE_BIN")
        .output()
        .expect("run slipway");
    assert!(out.status.success(), "slipway {page:?} {flag} failed: {out:?}");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// A line diff (`-` snapshot, `+` actual), with two lines of context.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(format!("  {}", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(format!("- {}", a[i]));
            i += 1;
        } else {
            ops.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| !ops[k].starts_with("  ")).collect();
    let mut shown = Vec::new();
    let mut last = None;
    for (k, op) in ops.iter().enumerate() {
        if changed.iter().any(|&c| k + 2 >= c && k <= c + 2) {
            if last.is_some_and(|l: usize| k > l + 1) {
                shown.push("  …".to_string());
            }
            shown.push(op.clone());
            last = Some(k);
        }
    }
    shown.join("\n")
}

#[test]
fn help_pages_match_their_snapshots() {
    let update = crate::support::update_snapshots();
    let dir = snapshot_dir();
    if update {
        std::fs::create_dir_all(&dir).expect("create the snapshot directory");
    }
    let mut failures = Vec::new();
    let mut names = BTreeSet::new();
    for page in pages() {
        let name = file_name(&page);
        let actual = help(&page, "--help");
        let path = dir.join(&name);
        names.insert(name.clone());
        if update {
            std::fs::write(&path, &actual).expect("write a snapshot");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "`slipway {} --help` differs from tests/snapshots/help/{name}:\n{}",
                page.join(" "),
                diff(&expected, &actual)
            )),
            Err(_) => failures.push(format!("tests/snapshots/help/{name} is missing")),
        }
    }
    for entry in std::fs::read_dir(&dir).expect("read the snapshot directory") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        if !names.contains(&name) {
            if update {
                std::fs::remove_file(dir.join(&name)).expect("remove a stale snapshot");
            } else {
                failures.push(format!("tests/snapshots/help/{name} belongs to no command any more"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended, rewrite the snapshots and review them:\n  UPDATE_SNAPSHOTS=1 cargo test --test cli help\n  git diff tests/snapshots/help",
        failures.join("\n\n")
    );
}

#[test]
fn every_command_has_examples_and_short_help_is_the_same_page() {
    for page in pages() {
        let long = help(&page, "--help");
        assert!(
            long.contains("\nExamples:\n  slipway "),
            "`slipway {} --help` has no examples:\n{long}",
            page.join(" ")
        );
        assert!(
            long.lines().all(|l| l.chars().count() <= 100),
            "`slipway {} --help` is wider than 100 columns:\n{long}",
            page.join(" ")
        );
        assert_eq!(help(&page, "-h"), long, "`slipway {} -h`", page.join(" "));
    }
}

#[test]
fn the_diff_shows_what_changed_with_context() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nD\ne\nf\ng\n");
    assert_eq!(d, "  b\n  c\n- d\n+ D\n  e\n  f");
}

/// A command's own flags come first under `Options:`; the flags every
/// command accepts are listed apart, under `Global options:`, on every page.
#[test]
fn global_flags_are_listed_apart_from_a_commands_own() {
    let global = ["--store <DIR>", "--config <FILE>", "--json", "--quiet", "--verbose"];
    for page in pages() {
        let text = help(&page, "--help");
        let name = format!("slipway {}", page.join(" "));
        let (own, rest) = text
            .split_once("\nGlobal options:\n")
            .unwrap_or_else(|| panic!("`{name} --help` has no `Global options:` heading:\n{text}"));
        let globals = rest.split("\n\n").next().unwrap_or_default();
        for flag in global {
            assert!(
                globals.contains(flag),
                "`{name} --help` lists `{flag}` outside `Global options:`:\n{text}"
            );
            assert!(
                !own.contains(flag),
                "`{name} --help` lists `{flag}` among the command's own options:\n{text}"
            );
        }
    }
}
