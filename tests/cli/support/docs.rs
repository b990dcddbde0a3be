//! The doc runner: every command shown in `README.md` and `docs/*.md` runs,
//! as written, against throwaway sshd hosts on 127.0.0.1 — so the docs cannot
//! rot. The tests that drive it are in `tests/cli/docs.rs`.
//!
//! # The convention (README's "Tests" section says it in short)
//!
//! - Every fenced block names its language. ```` ```sh ````, ```` ```bash ````
//!   and ```` ```shell ```` blocks are commands: each line (with its `\`
//!   continuations and here-document) is one command; comment lines are
//!   ignored. ```` ```console ```` blocks are sessions: `$ ` lines are
//!   commands and the lines below one are its exact stdout. Anything else
//!   (```` ```text ```` for output and diagrams, `toml`, `json`, `ini`) is not
//!   run; ```` ```toml ```` blocks must parse as `slipway.toml`, with every
//!   target resolving.
//! - `slipway …` code spans in the prose must name real subcommands and
//!   flags (placeholders such as `REL` and `[--dir DIR]` are fine).
//! - The commands of one file run in order, in one `bash` (so `cd` and
//!   variables carry over, `pipefail` on), and each must exit 0.
//! - A command that cannot run here is marked, visibly, in an HTML comment
//!   on the line(s) right before its block — never skipped silently:
//!
//!   | directive | effect |
//!   | --- | --- |
//!   | `<!-- doc-test: skip (why) -->` | the block is not run |
//!   | ``<!-- doc-test: skip `PREFIX` (why) -->`` | its commands starting with PREFIX are not run |
//!   | ``<!-- doc-test: exit N `PREFIX` -->`` | those commands (all, without PREFIX) must exit N |
//!   | ``<!-- doc-test: given `COMMAND` (why) -->`` | COMMAND runs first: state the block assumes |
//!   | `<!-- doc-test: in checkout -->` | the block runs in slipway's own checkout (`scripts/…`) |
//!
//!   A directive that matches nothing, or is not followed by a shell
//!   block, fails the test.
//!
//! # The world each file runs in
//!
//! A temp directory with a `HOME` of its own (`~/.ssh/id_ed25519`, the
//! default local store under `~/.local/share/slipway`), `slipway` (this
//! build) on `PATH`, and seven throwaway sshds whose `Host` aliases carry the
//! docs' host names (`app1`…`app3`, `staging1`, `staging2`,
//! `app1.example.com`, `app2.example.com`) in the ssh config named by
//! `SLIPWAY_SSH_CONFIG`. Each host's sessions get a `HOME` of their own and a
//! `slipway` on `PATH` that moves every absolute `--root` (`/srv/shop`) into
//! that host's directory, so the documented roots run unchanged. At the end
//! the test checks that none of the absolute paths the docs name (to two
//! components: `/srv/shop`, `/opt/slipway`), nor the real `HOME`'s slipway
//! store and config, appeared during the run.
//!
//! The working directory is a sample git repository, `shop`: README.md
//! starts from a repository with no `slipway.toml` and no tag (its Quickstart
//! runs `slipway init`); every other file starts from the same repository with
//! the `slipway.toml` of [`SHOP_TOML`], tags `v1.4.0`…`v1.4.3` all built
//! (`v1.4.2`'s id really starts with the docs' example prefix, `sha256:3f1c`),
//! and `production` running `v1.4.1` (after `v1.4.0`). `docs/control.md` also
//! gets the promotion gate of its own example (`require_healthy_on = "staging"`).
//!
//! Files run in parallel; a failure names the file, line and command and
//! shows the end of that file's session. `SLIPWAY_DOC_TEST_LOGS=DIR` keeps
//! every file's whole session (what each command printed) in `DIR`.
//!
//! Invariant: a documented command is either run, checked for its exit code
//! (and, in a `console` block, its exact stdout), or listed as not run with
//! its reason, so nothing is skipped silently; and the documented roots
//! (`/srv/shop`) stay inside the test's temp directory.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sshd::Sshd;
use super::{Env, Repo, bin, write_file};

/// Languages whose blocks are run.
const SHELL: [&str; 3] = ["sh", "bash", "shell"];
const CONSOLE: &str = "console";

/// The host names the docs use; each is an sshd of its own.
const HOSTS: [&str; 7] = [
    "app1",
    "app2",
    "app3",
    "staging1",
    "staging2",
    "app1.example.com",
    "app2.example.com",
];

/// The working copy's `slipway.toml` (and the tags' own) for every file but README.md.
const SHOP_TOML: &str = r#"[build]
command = "mkdir -p public && cp -R www/. public/"
output = "public"

[targets.production]
hosts = ["app1", "app2", "app3"]
root = "/srv/shop"
shared = ["uploads"]

[targets.production.hooks]
health = "test -f index.html"

[targets.staging]
hosts = ["staging1", "staging2"]
root = "/srv/shop"

[targets.staging.hooks]
health = "test -f index.html"
"#;

/// remote-store.md's remote, as the page shows it.
const REMOTE_TOML: &str = r#"[remotes.artifacts]
url = "s3://releases/shop"
endpoint = "http://127.0.0.1:3900"
region = "garage"
"#;

/// A whole file's run may take this long before it is killed.
const FILE_TIMEOUT: Duration = Duration::from_secs(300);

// ---------------------------------------------------------------------------
// Reading the docs

#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    Skip { prefix: Option<String>, reason: String },
    Exit { code: i32, prefix: Option<String> },
    Given { command: String },
    InCheckout,
}

/// One command of a block.
#[derive(Debug, Clone)]
pub struct DocCommand {
    pub line: usize,
    pub text: String,
    /// For a `console` block: the exact stdout shown under it.
    pub stdout: Option<String>,
}

/// One fenced block that is run (or marked not to be).
#[derive(Debug)]
pub struct Block {
    pub line: usize,
    pub directives: Vec<(usize, Directive)>,
    pub commands: Vec<DocCommand>,
}

/// What a markdown file holds for this test.
#[derive(Debug, Default)]
pub struct Page {
    pub blocks: Vec<Block>,
    /// `(line, text)` of each ```toml block.
    pub tomls: Vec<(usize, String)>,
}

/// README.md and docs/*.md, relative to the checkout, in a stable order.
pub fn doc_files() -> Vec<String> {
    let root = checkout();
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .map(|e| e.expect("docs/ entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

pub fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parse one file; `Err` lists every problem with its line.
pub fn parse_page(file: &str, text: &str) -> Result<Page, Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut page = Page::default();
    let mut errors = Vec::new();
    let mut pending: Vec<(usize, Directive)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("<!-- doc-test:") {
            match rest.trim_end().strip_suffix("-->") {
                Some(body) => match parse_directive(body.trim()) {
                    Ok(d) => pending.push((i + 1, d)),
                    Err(e) => errors.push(format!("{file}:{}: {e}", i + 1)),
                },
                None => errors.push(format!(
                    "{file}:{}: a doc-test directive must end with `-->` on its line",
                    i + 1
                )),
            }
            i += 1;
            continue;
        }
        if let Some(info) = t.strip_prefix("```") {
            let indent = line.len() - t.len();
            let lang = info.split_whitespace().next().unwrap_or("").to_string();
            let Some(end) = (i + 1..lines.len()).find(|&j| lines[j].trim() == "```") else {
                errors.push(format!("{file}:{}: this ``` block is never closed", i + 1));
                break;
            };
            let body: Vec<(usize, &str)> = (i + 1..end).map(|j| (j + 1, dedent(lines[j], indent))).collect();
            let directives = std::mem::take(&mut pending);
            if lang.is_empty() {
                errors.push(format!(
                    "{file}:{}: a fenced block without a language; say ```sh for commands to run, ```text for output or diagrams",
                    i + 1
                ));
            } else if SHELL.contains(&lang.as_str()) || lang == CONSOLE {
                let commands = if lang == CONSOLE {
                    console_commands(&body)
                } else {
                    shell_commands(&body)
                };
                page.blocks.push(Block {
                    line: i + 1,
                    directives,
                    commands,
                });
            } else {
                if let Some((l, _)) = directives.first() {
                    errors.push(format!(
                        "{file}:{l}: a doc-test directive before a ```{lang} block, which is never run"
                    ));
                }
                if lang == "toml" {
                    let text: String = body.iter().map(|(_, l)| format!("{l}\n")).collect();
                    page.tomls.push((i + 1, text));
                }
            }
            i = end + 1;
            continue;
        }
        if !t.is_empty()
            && let Some((l, _)) = pending.first()
        {
            errors.push(format!(
                "{file}:{l}: a doc-test directive must come right before a ```sh or ```console block"
            ));
            pending.clear();
        }
        i += 1;
    }
    if let Some((l, _)) = pending.first() {
        errors.push(format!("{file}:{l}: a doc-test directive at the end of the file"));
    }
    // Every prefix must match a command of its block, so a stale marker cannot hide anything.
    for b in &page.blocks {
        for (l, d) in &b.directives {
            let prefix = match d {
                Directive::Skip { prefix: Some(p), .. } | Directive::Exit { prefix: Some(p), .. } => p,
                _ => continue,
            };
            if !b.commands.iter().any(|c| c.text.starts_with(prefix.as_str())) {
                errors.push(format!(
                    "{file}:{l}: no command of the block at line {} starts with `{prefix}`",
                    b.line
                ));
            }
        }
    }
    if errors.is_empty() { Ok(page) } else { Err(errors) }
}

/// Remove up to `indent` leading spaces (a block inside a list item).
fn dedent(line: &str, indent: usize) -> &str {
    let spaces = line.len() - line.trim_start_matches(' ').len();
    &line[spaces.min(indent)..]
}

/// `skip (why)`, ``skip `PREFIX` (why)``, ``exit N [`PREFIX`]``, ``given `COMMAND` (why)``, `in checkout`.
fn parse_directive(body: &str) -> Result<Directive, String> {
    let (word, rest) = body.split_once(' ').unwrap_or((body, ""));
    let rest = rest.trim();
    // An optional `code span` first, then an optional (reason).
    let (code, rest) = match rest.strip_prefix('`') {
        Some(r) => {
            let (c, after) = r.split_once('`').ok_or("an unclosed ` in a doc-test directive")?;
            (Some(c.to_string()), after.trim())
        }
        None => (None, rest),
    };
    let reason = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    match word {
        "skip" => Ok(Directive::Skip {
            prefix: code,
            reason: reason.ok_or("`doc-test: skip` needs a reason in parentheses")?,
        }),
        "given" => {
            reason.ok_or("`doc-test: given` needs a reason in parentheses")?;
            Ok(Directive::Given {
                command: code.ok_or("`doc-test: given` needs a `command`")?,
            })
        }
        "exit" => {
            let (n, after) = rest.split_once(' ').unwrap_or((rest, ""));
            let code_n: i32 = n
                .parse()
                .map_err(|_| format!("`doc-test: exit` needs a number, not `{n}`"))?;
            let prefix = match after.trim().strip_prefix('`') {
                Some(r) => Some(
                    r.split_once('`')
                        .ok_or("an unclosed ` in a doc-test directive")?
                        .0
                        .to_string(),
                ),
                None => None,
            };
            Ok(Directive::Exit { code: code_n, prefix })
        }
        "in" if rest == "checkout" => Ok(Directive::InCheckout),
        _ => Err(format!(
            "unknown doc-test directive `{body}` (skip, exit, given, in checkout: see tests/cli/support/docs.rs)"
        )),
    }
}

/// The commands of a ```sh block: one per line, with `\` continuations and
/// here-documents; blank and comment lines are not commands.
fn shell_commands(body: &[(usize, &str)]) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < body.len() {
        let (line, first) = body[k];
        k += 1;
        let t = first.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut text = first.to_string();
        let mut last = first;
        loop {
            if let Some((word, strip_tabs)) = heredoc_word(last) {
                while k < body.len() {
                    let l = body[k].1;
                    k += 1;
                    text.push('\n');
                    text.push_str(l);
                    let end = if strip_tabs { l.trim_start_matches('\t') } else { l };
                    if end == word {
                        break;
                    }
                }
                last = "";
            }
            if last.ends_with('\\') && k < body.len() {
                last = body[k].1;
                k += 1;
                text.push('\n');
                text.push_str(last);
                continue;
            }
            break;
        }
        out.push(DocCommand {
            line,
            text,
            stdout: None,
        });
    }
    out
}

/// The word ending a here-document started on `line` (`<<EOF`, `<<'EOF'`,
/// `<<-"EOF"`), and whether leading tabs are stripped (`<<-`).
fn heredoc_word(line: &str) -> Option<(String, bool)> {
    let at = line.find("<<")?;
    let rest = &line[at + 2..];
    if rest.starts_with('<') {
        return None; // a here-string
    }
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start().trim_start_matches(['\'', '"']);
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some((word, strip_tabs))
}

/// The commands of a ```console block: `$ ` lines, each followed by its stdout.
fn console_commands(body: &[(usize, &str)]) -> Vec<DocCommand> {
    let mut out: Vec<DocCommand> = Vec::new();
    for &(line, l) in body {
        if let Some(cmd) = l.strip_prefix("$ ") {
            out.push(DocCommand {
                line,
                text: cmd.to_string(),
                stdout: Some(String::new()),
            });
        } else if let Some(c) = out.last_mut() {
            let s = c.stdout.get_or_insert_with(String::new);
            s.push_str(l);
            s.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The plan: what runs, what is marked not to

/// One step of a file's session.
pub struct Step {
    pub line: usize,
    pub text: String,
    pub exit: i32,
    pub stdout: Option<String>,
    pub in_checkout: bool,
    pub given: bool,
}

#[derive(Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// `(line, command, reason)` of every command marked not to run.
    pub skipped: Vec<(usize, String, String)>,
    pub blocks: usize,
}

pub fn plan(page: &Page) -> Plan {
    let mut plan = Plan::default();
    for b in &page.blocks {
        plan.blocks += 1;
        let in_checkout = b.directives.iter().any(|(_, d)| *d == Directive::InCheckout);
        let whole_skip = b.directives.iter().find_map(|(_, d)| match d {
            Directive::Skip { prefix: None, reason } => Some(reason.clone()),
            _ => None,
        });
        if let Some(reason) = whole_skip {
            for c in &b.commands {
                plan.skipped.push((c.line, first_line(&c.text), reason.clone()));
            }
            continue;
        }
        for (l, d) in &b.directives {
            if let Directive::Given { command } = d {
                plan.steps.push(Step {
                    line: *l,
                    text: command.clone(),
                    exit: 0,
                    stdout: None,
                    in_checkout,
                    given: true,
                });
            }
        }
        'commands: for c in &b.commands {
            let mut exit = 0;
            for (_, d) in &b.directives {
                match d {
                    Directive::Skip {
                        prefix: Some(p),
                        reason,
                    } if c.text.starts_with(p.as_str()) => {
                        plan.skipped.push((c.line, first_line(&c.text), reason.clone()));
                        continue 'commands;
                    }
                    Directive::Exit { code, prefix }
                        if prefix.as_ref().is_none_or(|p| c.text.starts_with(p.as_str())) =>
                    {
                        exit = *code;
                    }
                    _ => {}
                }
            }
            plan.steps.push(Step {
                line: c.line,
                text: c.text.clone(),
                exit,
                stdout: c.stdout.clone(),
                in_checkout,
                given: false,
            });
        }
    }
    plan
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// `'text'` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What every session script starts with: `doc_check WHERE COMMAND STATUS
/// EXPECTED` and `doc_same WHERE COMMAND FILE` (stdout as documented) stop
/// the session with one line saying what went wrong.
const PRELUDE: &str = r#"set -o pipefail
doc_check() {
  [ "$3" = "$4" ] || { printf '\ndoc-test: %s: `%s` exited %s, expected %s\n' "$1" "$2" "$3" "$4"; exit 97; }
}
doc_same() {
  diff -u --label documented --label actual "$3" "$DOC_TEST_OUT" ||
    { printf '\ndoc-test: %s: `%s` printed other output than documented (diff above)\n' "$1" "$2"; exit 97; }
}
"#;

/// The bash script of one file's session; documented outputs go to `expected_dir/N`.
fn script(file: &str, plan: &Plan, expected_dir: &Path) -> String {
    let mut s = String::from(PRELUDE);
    for (n, step) in plan.steps.iter().enumerate() {
        let at = sh_quote(&format!("{file}:{}", step.line));
        let shown = sh_quote(&first_line(&step.text));
        let given = if step.given { " (given)" } else { "" };
        let _ = writeln!(s, "\nprintf '\\n$ %s    # %s%s\\n' {shown} {at} '{given}'");
        // The command as written, in this shell (so `cd` and variables carry
        // over) or in a subshell in the checkout; stdin closed. The newline
        // before the closing brace ends a trailing `# comment`.
        let (open, close) = if step.in_checkout {
            ("( cd \"$DOC_TEST_CHECKOUT\" || exit 1", ")")
        } else {
            ("{", "}")
        };
        let to_file = if step.stdout.is_some() {
            " >\"$DOC_TEST_OUT\""
        } else {
            ""
        };
        let _ = writeln!(s, "{open}\n{}\n{close} </dev/null{to_file}\ndoc_rc=$?", step.text);
        if step.stdout.is_some() {
            s.push_str("cat \"$DOC_TEST_OUT\"\n");
        }
        let _ = writeln!(s, "doc_check {at} {shown} \"$doc_rc\" {}", step.exit);
        if let Some(expected) = &step.stdout {
            let path = expected_dir.join(n.to_string());
            write_file(&path, expected.as_bytes());
            let _ = writeln!(s, "doc_same {at} {shown} {}", sh_quote(&path.display().to_string()));
        }
    }
    s.push_str("\nprintf '\\ndoc-test: done\\n'\n");
    s
}

// ---------------------------------------------------------------------------
// The world a file runs in

struct World {
    // Stopped before the directory they serve goes.
    _hosts: Vec<Sshd>,
    /// remote-store.md's bucket: a throwaway Garage.
    s3: Option<crate::support::s3::Store>,
    env: Env,
    home: PathBuf,
    work: PathBuf,
    bin_dir: PathBuf,
    ssh_config: PathBuf,
}

/// How a file's world starts.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// A repository with content only (README's Quickstart runs `slipway init`).
    Fresh,
    /// The shop: `slipway.toml`, tags built, production running v1.4.1.
    Shop,
    /// The shop with control.md's promotion gate.
    ShopGated,
    /// The shop with a remote store (`[remotes.artifacts]`, a real Garage).
    ShopRemote,
}

fn start_for(file: &str) -> Start {
    match file {
        "README.md" => Start::Fresh,
        "docs/control.md" => Start::ShopGated,
        "docs/remote-store.md" => Start::ShopRemote,
        _ => Start::Shop,
    }
}

/// The `slipway` every host runs: the real one, with each absolute `--root`
/// moved under the host's own directory (`$DOC_TEST_HOST`).
fn host_wrapper() -> String {
    format!(
        "#!/bin/sh\n# doc-test host: every absolute --root lives under this host's directory\nprev=\n\
         for a do\n  shift\n  case $prev in --root) case $a in /*) a=$DOC_TEST_HOST$a ;; esac ;; esac\n  \
         set -- \"$@\" \"$a\"\n  prev=$a\ndone\nexec {} \"$@\"\n",
        bin()
    )
}

fn executable(p: &Path, text: &str) {
    write_file(p, text.as_bytes());
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `initdb` / `pg_ctl` for the docs' commands: PostgreSQL's own, which
/// refuses to run as root; when the suite runs as root (CI), the wrapper
/// runs it as `postgres`, owning the `-D` directory and able to reach it.
fn pg_wrapper(real: &Path) -> String {
    format!(
        "#!/bin/sh\n# doc-test: PostgreSQL refuses root; as root, run it as postgres\n\
         real={}\n\
         [ \"$(id -u)\" != 0 ] && exec \"$real\" \"$@\"\n\
         dir=; prev=\n\
         for a do case $prev in -D) dir=$a ;; esac; prev=$a; done\n\
         if [ -n \"$dir\" ]; then\n  mkdir -p \"$dir\" && chown postgres:postgres \"$dir\"\n  \
         d=$(dirname \"$dir\"); while [ \"$d\" != / ]; do chmod o+x \"$d\"; d=$(dirname \"$d\"); done\nfi\n\
         exec setpriv --reuid=postgres --regid=postgres --init-groups \"$real\" \"$@\"\n",
        real.display()
    )
}

impl World {
    fn new(start: Start) -> World {
        let env = Env::new();
        let home = env.path("home");
        let bin_dir = env.path("bin");
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir ~/.ssh");
        std::fs::create_dir_all(&bin_dir).expect("mkdir bin");
        std::os::unix::fs::symlink(bin(), bin_dir.join("slipway")).expect("symlink slipway");
        if let Some(pg) = crate::support::postgres::bin_dir() {
            for program in ["initdb", "pg_ctl"] {
                executable(&bin_dir.join(program), &pg_wrapper(&pg.join(program)));
            }
        }
        crate::support::sshd::keygen(&home.join(".ssh/id_ed25519"));

        // One after the other, from this thread: each sshd dies with the
        // thread that started it (`setpriv --pdeathsig`).
        let hosts: Vec<Sshd> = HOSTS
            .iter()
            .map(|name| {
                let dir = env.path(&format!("hosts/{name}"));
                executable(&dir.join("bin/slipway"), &host_wrapper());
                std::fs::create_dir_all(dir.join("home")).expect("mkdir host home");
                Sshd::builder()
                    .set_env(&format!("HOME={}", dir.join("home").display()))
                    .set_env(&format!(
                        "PATH={}:/usr/local/bin:/usr/bin:/bin",
                        dir.join("bin").display()
                    ))
                    .set_env(&format!("DOC_TEST_HOST={}", dir.display()))
                    .start()
            })
            .collect();
        let config: Vec<String> = HOSTS
            .iter()
            .zip(&hosts)
            .map(|(name, h)| {
                h.config_block()
                    .replacen(&format!("Host {}\n", h.alias()), &format!("Host {name}\n"), 1)
            })
            .collect();
        let ssh_config = env.write("ssh_config", config.join("\n"));

        let repo = env.repo("shop");
        let work = repo.path.clone();
        let s3 = (start == Start::ShopRemote).then(|| crate::support::s3::Engine::Garage.start(&env.path("s3")));
        let world = World {
            _hosts: hosts,
            s3,
            env,
            home,
            work,
            bin_dir,
            ssh_config,
        };
        world.check_hosts_are_sandboxed();
        match start {
            Start::Fresh => {
                repo.write("index.html", "<h1>shop</h1>\n").commit("first page");
            }
            Start::Shop | Start::ShopGated => world.shop(&repo, start == Start::ShopGated),
            Start::ShopRemote => {
                world.shop(&repo, false);
                // The docs' own remote, as written there; the environment's
                // AWS_ENDPOINT_URL (the real Garage) wins over its endpoint.
                let toml = format!("{SHOP_TOML}\n{REMOTE_TOML}");
                write_file(&repo.path.join("slipway.toml"), toml.as_bytes());
            }
        }
        world
    }

    /// Refuse to run anything if a host session's HOME is not its own
    /// directory: `slipway host install` writes to `~/.local/bin` there.
    fn check_hosts_are_sandboxed(&self) {
        for name in HOSTS {
            let out = Command::new("ssh")
                .arg("-F")
                .arg(&self.ssh_config)
                .args([name, "echo \"$HOME\"; command -v slipway"])
                .stdin(Stdio::null())
                .output()
                .expect("run ssh");
            let text = String::from_utf8_lossy(&out.stdout);
            let dir = self.env.path(&format!("hosts/{name}"));
            let want = format!(
                "{}\n{}\n",
                dir.join("home").display(),
                dir.join("bin/slipway").display()
            );
            assert_eq!(
                text,
                want,
                "host {name}'s sessions must have their own HOME and slipway: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The shop repository and its fleet: four tags built, production on v1.4.1.
    fn shop(&self, repo: &Repo, gated: bool) {
        repo.write("slipway.toml", SHOP_TOML)
            .write("www/style.css", "body { font-family: sans-serif }\n");
        for v in ["v1.4.0", "v1.4.1", "v1.4.2", "v1.4.3"] {
            repo.write("www/index.html", format!("<h1>shop {v}</h1>\n"))
                .commit(&format!("release {v}"));
            if v == "v1.4.2" {
                aim_id(repo, v, ID_PREFIX);
            }
            repo.tag_annotated(v);
        }
        for v in ["v1.4.0", "v1.4.1", "v1.4.2", "v1.4.3"] {
            let id = self.slipway(&["build", v]);
            assert!(
                v != "v1.4.2" || id.starts_with(&format!("sha256:{ID_PREFIX}")),
                "doc-test fixture: v1.4.2 is {id}, not sha256:{ID_PREFIX}…: aim_id no longer predicts \
                 the build (did SHOP_TOML's build or the manifest format change?)"
            );
        }
        self.slipway(&["deploy", "v1.4.0", "-t", "production"]);
        self.slipway(&["deploy", "v1.4.1", "-t", "production"]);
        if gated {
            let toml = SHOP_TOML.replace(
                "shared = [\"uploads\"]\n",
                "shared = [\"uploads\"]\nrequire_healthy_on = \"staging\"\n",
            );
            write_file(&repo.path.join("slipway.toml"), toml.as_bytes());
        }
    }

    /// The operator's environment, shared by the fixture and the docs' commands.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let path = std::env::var("PATH").unwrap_or_default();
        c.current_dir(&self.work)
            .env("PATH", format!("{}:{path}", self.bin_dir.display()))
            .env("HOME", &self.home)
            .env("USER", "alice")
            .env("SLIPWAY_SSH_CONFIG", &self.ssh_config)
            .env("SLIPWAY_BIN", bin())
            .env("NO_COLOR", "1")
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_NAME", "Alice")
            .env("GIT_AUTHOR_EMAIL", "alice@example.com")
            .env("GIT_COMMITTER_NAME", "Alice")
            .env("GIT_COMMITTER_EMAIL", "alice@example.com")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("DOC_TEST_CHECKOUT", checkout())
            .stdin(Stdio::null());
        for var in crate::support::AWS_VARS {
            c.env_remove(var);
        }
        if let Some(s3) = &self.s3 {
            for (k, v) in s3.credentials() {
                c.env(k, v);
            }
            c.env("AWS_ENDPOINT_URL", &s3.endpoint);
        }
        for var in [
            "SLIPWAY_STORE",
            "SLIPWAY_REMOTE_BIN",
            "SOURCE_DATE_EPOCH",
            "SSH_AUTH_SOCK",
            "XDG_DATA_HOME",
            "XDG_CONFIG_HOME",
            "CARGO_TARGET_DIR",
            "DEMO_KEEP",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Run slipway as the operator; the fixture's own steps must succeed. Returns stdout.
    fn slipway(&self, args: &[&str]) -> String {
        let out = self.command(bin()).args(args).output().expect("run slipway");
        assert!(
            out.status.success(),
            "doc-test fixture: slipway {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The id prefix the docs use as an example (`rollback --to sha256:3f1c`):
/// the shop's v1.4.2 really has it.
const ID_PREFIX: &str = "3f1c";

/// Amend the commit at HEAD so that building it (with [`SHOP_TOML`]: `www/`
/// becomes the bundle) gives an id starting with `prefix`: a counter in
/// `www/index.html`, found by computing the manifest the build will make.
fn aim_id(repo: &Repo, v: &str, prefix: &str) {
    use slipway::digest::Digest;
    use slipway::manifest::{Entry, Manifest};
    let epoch: i64 = repo.git(&["log", "-1", "--format=%ct"]).parse().expect("commit time");
    let css = std::fs::read(repo.path.join("www/style.css")).expect("read style.css");
    let file = |path: &str, bytes: &[u8]| Entry::file(path.to_string(), false, bytes.len() as u64, Digest::of(bytes));
    let page = |n: u32| format!("<h1>shop {v}</h1>\n<p>build {n}</p>\n");
    let n = (0..u32::MAX)
        .find(|&n| {
            let manifest = Manifest {
                version: 1,
                source_date_epoch: epoch,
                entries: vec![file("index.html", page(n).as_bytes()), file("style.css", &css)],
            };
            manifest.id().hex().starts_with(prefix)
        })
        .expect("a counter");
    repo.write("www/index.html", page(n));
    repo.git(&["commit", "-q", "-a", "--amend", "--no-edit"]);
}

/// Run one file's plan in its world; `Err` is the failure report.
pub fn run_file(file: &str, plan: &Plan) -> Result<Duration, String> {
    let t0 = Instant::now();
    if start_for(file) == Start::ShopRemote
        && crate::support::s3::skip_if_missing(crate::support::s3::Engine::Garage, &format!("the doc test of {file}"))
    {
        return Ok(t0.elapsed());
    }
    let world = World::new(start_for(file));
    let expected = world.env.path("expected");
    let script_path = world.env.path("session.sh");
    write_file(&script_path, script(file, plan, &expected).as_bytes());
    let log_path = world.env.path("session.log");
    let log = std::fs::File::create(&log_path).expect("create session log");
    let status = world
        .command("timeout")
        .args([
            "-k",
            "5",
            &FILE_TIMEOUT.as_secs().to_string(),
            "bash",
            "--noprofile",
            "--norc",
        ])
        .arg(&script_path)
        .env("DOC_TEST_OUT", world.env.path("stdout"))
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .status()
        .expect("run bash");
    // What a failed run left behind (a proxy, a service instance the doc
    // would have stopped at its end) does not outlive it.
    kill_left_in(world.env.dir.path());
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Some(dir) = std::env::var_os("SLIPWAY_DOC_TEST_LOGS") {
        let dest = Path::new(&dir).join(format!("{}.log", file.replace('/', "_")));
        write_file(&dest, text.as_bytes());
    }
    if status.success() && text.ends_with("doc-test: done\n") {
        return Ok(t0.elapsed());
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(60)..].join("\n");
    let why = match status.code() {
        Some(124) => format!("timed out after {FILE_TIMEOUT:?}"),
        Some(c) => format!("exit {c}"),
        None => "killed".to_string(),
    };
    Err(format!(
        "{file}: the documented commands failed ({why}); the end of the session:\n{tail}"
    ))
}

/// SIGKILL every process working in `dir`, or naming it on its command
/// line, with the session it leads (a daemon's workers name nothing).
fn kill_left_in(dir: &Path) {
    let stat = |pid: u32| -> Option<u32> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        text[text.rfind(')')? + 1..].split_whitespace().nth(3)?.parse().ok()
    };
    let pids = || -> Vec<u32> {
        std::fs::read_dir("/proc")
            .map(|d| {
                d.flatten()
                    .filter_map(|p| p.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mine = stat(std::process::id());
    let kill = |pid: u32| {
        if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    };
    for pid in pids() {
        if pid == std::process::id() {
            continue;
        }
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let in_dir = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|d| d.starts_with(dir))
            || std::fs::read(proc_dir.join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*dir.to_string_lossy()));
        if !in_dir {
            continue;
        }
        match stat(pid) {
            // It leads a session of its own: all of it goes.
            Some(sid) if sid == pid && Some(sid) != mine => {
                for other in pids().into_iter().filter(|o| stat(*o) == Some(sid)) {
                    kill(other);
                }
            }
            _ => kill(pid),
        }
    }
}

// ---------------------------------------------------------------------------
// Reading every page, and the prose's inline commands

/// Every doc file, parsed; fails the test listing every problem.
pub fn read_pages() -> Vec<(String, Page)> {
    let mut pages = Vec::new();
    let mut errors = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(checkout().join(&file)).expect("read a doc");
        match parse_page(&file, &text) {
            Ok(p) => pages.push((file, p)),
            Err(e) => errors.extend(e),
        }
    }
    assert!(errors.is_empty(), "docs: {}", errors.join("\n"));
    pages
}

/// The `slipway …` code spans in the prose (outside fenced blocks) of `text`: `(line, span)`.
pub fn inline_commands(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans: text between backticks (a double-backtick span holds single ones).
        let mut rest = line;
        while let Some(start) = rest.find('`') {
            let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
            let after = &rest[start + ticks..];
            let Some(end) = after.find(&"`".repeat(ticks)) else {
                break;
            };
            let span = after[..end].trim();
            if span.starts_with("slipway ") {
                out.push((i + 1, span.to_string()));
            }
            rest = &after[end + ticks..];
        }
    }
    out
}

/// Check the verbs and flags of one `slipway …` span against the real
/// command line; placeholders (`REL`, `[--dir DIR]`, `…`) are fine.
pub fn check_inline(cli: &clap::Command, span: &str) -> Result<(), String> {
    let tokens: Vec<&str> = span.split_whitespace().collect();
    let mut i = 0;
    while i < tokens.len() {
        // Each `slipway` (the span may chain commands with `&&`) starts over.
        if tokens[i] != "slipway" {
            i += 1;
            continue;
        }
        i += 1;
        let mut cmd = cli;
        while let Some(&raw) = tokens.get(i) {
            if matches!(raw, "&&" | "||" | "|" | ";" | "#") {
                break;
            }
            i += 1;
            let tok = raw.trim_matches(|c| c == '[' || c == ']');
            if let Some(flag) = tok.strip_prefix("--") {
                let name = flag.split('=').next().unwrap_or_default();
                if !cmd.get_arguments().any(|a| a.get_long() == Some(name)) {
                    return Err(format!(
                        "`{}` has no flag `--{name}`",
                        cmd.get_bin_name().unwrap_or("slipway")
                    ));
                }
            } else if let Some(shorts) = tok.strip_prefix('-').filter(|s| !s.is_empty()) {
                for c in shorts.chars() {
                    if !cmd.get_arguments().any(|a| a.get_short() == Some(c)) {
                        return Err(format!(
                            "`{}` has no flag `-{c}`",
                            cmd.get_bin_name().unwrap_or("slipway")
                        ));
                    }
                }
            } else if cmd.has_subcommands() {
                // A verb, or alternatives (`deploy|activate`, `bash\|zsh`), or a placeholder (`COMMAND`).
                if tok.chars().all(|c| c.is_ascii_uppercase()) {
                    break;
                }
                let names: Vec<&str> = tok.split('|').map(|n| n.trim_end_matches('\\')).collect();
                for n in &names {
                    if cmd.find_subcommand(n).is_none() {
                        return Err(format!(
                            "`{}` has no subcommand `{n}`",
                            cmd.get_bin_name().unwrap_or("slipway")
                        ));
                    }
                }
                match names.as_slice() {
                    [one] => cmd = cmd.find_subcommand(one).expect("checked above"),
                    _ => break,
                }
            }
        }
    }
    Ok(())
}
