//! The docs are tested: every command shown in `README.md` and `docs/*.md`
//! runs as written against throwaway sshd hosts, `toml` examples parse, and
//! the commands and flags named in the prose exist. The convention a doc
//! follows (which blocks run, the `doc-test` markers) and the world each
//! file runs in are described in [`support::docs`](crate::support::docs).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::docs::{
    Plan, check_inline, checkout, doc_files, inline_commands, parse_page, plan, read_pages, run_file,
};

#[test]
fn docs_blocks_are_marked_and_toml_examples_parse() {
    let mut errors = Vec::new();
    let mut tomls = 0;
    for (file, page) in read_pages() {
        for (line, text) in &page.tomls {
            tomls += 1;
            let origin = format!("{file}:{line}");
            let config = match slipway::config::parse_project(text, &origin) {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{origin}: {e}"));
                    continue;
                }
            };
            for target in config.targets.keys() {
                if let Err(e) = slipway::remote::resolve_target(target, Some(&config), &origin) {
                    errors.push(format!("{origin}: target `{target}`: {e}"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "docs: {}", errors.join("\n"));
    assert!(tomls >= 3, "only {tomls} toml blocks found");
}

/// Where a documented command could write outside the test's directory,
/// if the doc test's world leaked: every absolute path a command run or a
/// `toml` example names (cut to its first two components, `/srv/shop`,
/// `/opt/slipway`), and the real `HOME`'s slipway store and config; each
/// only when it does not exist yet, so that its appearance is the leak.
fn guarded_paths(pages: &[(String, crate::support::docs::Page)], plans: &[(String, Plan)]) -> Vec<PathBuf> {
    let mut texts: Vec<&str> = plans
        .iter()
        .flat_map(|(_, p)| p.steps.iter().map(|s| s.text.as_str()))
        .collect();
    texts.extend(pages.iter().flat_map(|(_, p)| p.tomls.iter().map(|(_, t)| t.as_str())));
    let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
    for text in texts {
        for word in text.split(|c: char| c.is_whitespace() || "\"'=,[]()<>;|`".contains(c)) {
            let Some(rest) = word.strip_prefix('/') else { continue };
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).take(2).collect();
            if parts
                .iter()
                .all(|p| p.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
                && !parts.is_empty()
            {
                paths.insert(PathBuf::from(format!("/{}", parts.join("/"))));
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        paths.insert(home.join(".local/share/slipway"));
        paths.insert(home.join(".config/slipway"));
    }
    paths.into_iter().filter(|p| !p.exists()).collect()
}

#[test]
fn docs_every_documented_command_runs() {
    let pages = read_pages();
    let plans: Vec<(String, Plan)> = pages.iter().map(|(f, p)| (f.clone(), plan(p))).collect();
    let guarded = guarded_paths(&pages, &plans);

    let results: Vec<(String, Result<Duration, String>)> = std::thread::scope(|s| {
        let running: Vec<_> = plans
            .iter()
            .filter(|(_, p)| !p.steps.is_empty())
            .map(|(file, p)| (file.clone(), s.spawn(move || run_file(file, p))))
            .collect();
        running
            .into_iter()
            .map(|(f, h)| {
                let r = h.join().unwrap_or_else(|e| {
                    Err(match e.downcast_ref::<String>() {
                        Some(m) => m.clone(),
                        None => format!("{:?}", e.downcast_ref::<&str>()),
                    })
                });
                (f, r)
            })
            .collect()
    });

    let mut report = String::new();
    let (mut blocks, mut run, mut skipped) = (0, 0, 0);
    for (file, p) in plans.iter().filter(|(_, p)| p.blocks > 0) {
        blocks += p.blocks;
        run += p.steps.iter().filter(|s| !s.given).count();
        skipped += p.skipped.len();
        let time = results
            .iter()
            .find(|(f, _)| f == file)
            .and_then(|(_, r)| r.as_ref().ok())
            .map(|d| format!(" in {:.1}s", d.as_secs_f64()))
            .unwrap_or_default();
        let _ = writeln!(
            report,
            "{file}: {} block(s), {} command(s) run{time}, {} marked not to run",
            p.blocks,
            p.steps.iter().filter(|s| !s.given).count(),
            p.skipped.len()
        );
        for (line, cmd, why) in &p.skipped {
            let _ = writeln!(report, "  not run {file}:{line}: `{cmd}` ({why})");
        }
    }
    let _ = writeln!(
        report,
        "docs: {blocks} shell blocks, {run} commands run, {skipped} marked not to run"
    );
    eprint!("{report}");

    let failures: Vec<&String> = results.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n\n")
    );
    let outside: BTreeSet<String> = guarded
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "the doc test wrote outside its temp directory: {outside:?}"
    );
    assert!(
        guarded.iter().any(|p| p.starts_with("/srv")),
        "the documented roots are not watched: {guarded:?}"
    );
    // The count when this floor was last raised: a new `skip` marker (or a
    // block that stopped being read) shows here. Raise it when docs grow.
    const FLOOR: usize = 59;
    assert!(
        run >= FLOOR,
        "only {run} documented commands ran, fewer than the {FLOOR} of before: run them, or lower FLOOR and say why"
    );
}

#[test]
fn docs_blocks_are_read_the_way_the_convention_says() {
    let md = "text\n\n<!-- doc-test: skip `cargo` (slow) -->\n<!-- doc-test: exit 3 `slipway deploy` -->\n```sh\n\
              # a comment\ncargo install --path .   # here\nslipway deploy v1 \\\n  -t production\n\
              cat > f <<'EOF'\nline\nEOF\n```\n\n```console\n$ slipway build x\nsha256:1\n$ true\n```\n\n```text\n$ no\n```\n";
    let page = parse_page("t.md", md).expect("parses");
    assert_eq!(page.blocks.len(), 2);
    let texts: Vec<&str> = page.blocks[0].commands.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "cargo install --path .   # here",
            "slipway deploy v1 \\\n  -t production",
            "cat > f <<'EOF'\nline\nEOF"
        ]
    );
    let p = plan(&page);
    assert_eq!(p.skipped.len(), 1);
    assert_eq!(p.steps[0].exit, 3);
    assert_eq!(p.steps[2].stdout.as_deref(), Some("sha256:1\n"));
    assert_eq!(p.steps[3].stdout.as_deref(), Some(""));

    let bad = |md: &str| parse_page("t.md", md).unwrap_err().join("\n");
    assert!(bad("```\nx\n```\n").contains("without a language"));
    assert!(bad("<!-- doc-test: skip -->\n```sh\nx\n```\n").contains("needs a reason"));
    assert!(bad("<!-- doc-test: skip `y` (z) -->\n```sh\nx\n```\n").contains("starts with `y`"));
    assert!(bad("<!-- doc-test: skip (z) -->\ntext\n```sh\nx\n```\n").contains("right before"));
    assert!(bad("<!-- doc-test: skip (z) -->\n```text\nx\n```\n").contains("never run"));
    assert!(bad("<!-- doc-test: maybe -->\n```sh\nx\n```\n").contains("unknown doc-test directive"));
}

#[test]
fn docs_inline_commands_name_real_verbs_and_flags() {
    use clap::CommandFactory;
    let mut cli = slipway::cli::Cli::command();
    cli.build();
    // The checker itself: what it accepts and what it catches.
    for ok in [
        "slipway build [TAG] [--dir DIR --name NAME]",
        "slipway history -t TARGET --json [-n N]",
        "slipway deploy|activate|rollback … --json",
        "slipway completions bash\\|zsh\\|fish",
        "slipway build v1.4.2 && slipway deploy v1.4.2 -t production",
        "slipway COMMAND --help",
    ] {
        assert_eq!(check_inline(&cli, ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("slipway deploy v1 --hots app1", "`slipway deploy` has no flag `--hots`"),
        ("slipway host chek -t prod", "`slipway host` has no subcommand `chek`"),
        (
            "slipway build v1 && slipway deplo v1",
            "`slipway` has no subcommand `deplo`",
        ),
        ("slipway push v1 -x", "`slipway push` has no flag `-x`"),
    ] {
        assert_eq!(check_inline(&cli, bad), Err(why.to_string()), "{bad}");
    }

    let mut errors = Vec::new();
    let mut seen = 0;
    for file in doc_files() {
        let text = std::fs::read_to_string(checkout().join(&file)).expect("read a doc");
        for (line, span) in inline_commands(&text) {
            seen += 1;
            if let Err(e) = check_inline(&cli, &span) {
                errors.push(format!("{file}:{line}: `{span}`: {e}"));
            }
        }
    }
    assert!(errors.is_empty(), "docs: {}", errors.join("\n"));
    assert!(seen >= 50, "only {seen} inline `slipway …` spans found");
}
