//! The web service with a database that migration tests ship inside a
//! release tree (`dbapp.py`; its docstring is the full contract): every
//! program in `bin/` is a copy of it, doing what its name says, and
//! `bin/check` is the web service's health check (`webapp_check.py`, `GET
//! /health`). Python 3 standard library only; it writes to a
//! [`Postgres`](super::postgres::Postgres).
//!
//! | program              | does                                                            |
//! |----------------------|-----------------------------------------------------------------|
//! | `bin/server`         | serves 127.0.0.1:`$SLIPWAY_PORT`: `POST /write`, `GET /`, `GET /health` |
//! | `bin/check`          | exit 0 when `/health` answers 200 (the schema is the tree's)    |
//! | `bin/migrate`        | brings the database to the tree's `SCHEMA`, once per version    |
//! | `bin/migrate --down` | reverts schema 2 to 1                                           |
//! | `bin/schema`         | prints the tree's `SCHEMA`                                      |
//! | `bin/db-schema`      | prints the database's schema version                            |
//! | `bin/backup`         | `pg_dump`s to `$SLIPWAY_ROOT/shared/backups/TIME.sql`, its last line the path |
//! | `bin/intake off\|on` | creates / removes the flag that pauses writes at nginx          |
//!
//! Every one reads `$SLIPWAY_ROOT/shared/db.env` ([`write_db_env`]): where
//! the database is, where `pg_dump` is, and the intake flag (the file
//! [`Nginx::start_with_pause_flag`](super::nginx::Nginx::start_with_pause_flag)
//! watches). The database itself says what ran: [`migrations`] (one row per
//! version applied or reverted), [`item_ids`] (every write committed); and
//! [`calls`] lists the runs of `migrate` and `backup` on one host, no-ops
//! included.
//!
//! [`HOOKS`] is the `[targets.NAME.hooks]` that runs them (docs/ab-deploys.md,
//! "Complex A/B"). A schema-2 release fails its check until the database is
//! at 2, so its deploy needs `start_after_migrate = true`; a schema-1 release
//! with [`add_accepts`] `[1, 2]` stays healthy across the migration.
//!
//! ```ignore
//! dbapp::add_to(&repo, "v1", 1, Mode::Ok).commit("v1").tag("v1");
//! dbapp::add_to(&repo, "v2", 2, Mode::Ok);
//! dbapp::add_migrate_sleep(&repo, Duration::from_secs(2)).commit("v2: a note per item").tag("v2");
//! dbapp::write_db_env(&host_root, &pg, &flag);
//! ```

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::postgres::Postgres;
use super::webapp::{self, Instance, TreeFile};
use super::{Cmd, Repo};

/// The program (`dbapp.py`).
pub const APP_PY: &str = include_str!("dbapp.py");
/// The command that starts the service (`SLIPWAY_PORT` and `SLIPWAY_ROOT` set).
pub const START: &str = "bin/server";
/// Its check: exit 0 when `GET /health` answers 200 within 2 s, i.e. the
/// database is at the release's schema.
pub const CHECK: &str = "bin/check";
/// Brings the database to the tree's schema (`--down`: from 2 back to 1).
pub const MIGRATE: &str = "bin/migrate";
/// Prints the schema the release expects.
pub const SCHEMA: &str = "bin/schema";
/// Prints the database's schema version (0 before any migration).
pub const DB_SCHEMA: &str = "bin/db-schema";
/// Dumps the database; its last line of stdout is the dump's path.
pub const BACKUP: &str = "bin/backup";
/// `off` pauses writes at the proxy, `on` resumes them.
pub const INTAKE: &str = "bin/intake";
/// The database hooks of a target running this service, as lines of
/// `[targets.NAME.hooks]`.
pub const HOOKS: &str = "schema = \"bin/schema\"\n\
                         db_schema = \"bin/db-schema\"\n\
                         backup = \"bin/backup\"\n\
                         pause = \"bin/intake off\"\n\
                         resume = \"bin/intake on\"\n\
                         migrate = \"bin/migrate\"\n\
                         migrate_down = \"bin/migrate --down\"\n";
/// Every program that is a copy of `dbapp.py`.
pub const PROGRAMS: [&str; 6] = [START, MIGRATE, SCHEMA, DB_SCHEMA, BACKUP, INTAKE];

/// How the server behaves: the tree's `MODE` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Serves; healthy when the database is at the release's schema.
    Ok,
    /// Serves and writes, but `/health` answers 500.
    FailCheck,
}

impl Mode {
    /// The `MODE` file's text.
    pub fn file_text(self) -> &'static str {
        match self {
            Mode::Ok => "ok\n",
            Mode::FailCheck => "fail-check\n",
        }
    }
}

/// The service's files for `release`, expecting database schema `schema`
/// (1 or 2), behaving as `mode`.
pub fn files(release: &str, schema: u32, mode: Mode) -> Vec<TreeFile> {
    assert!((1..=2).contains(&schema), "dbapp knows schemas 1 and 2, not {schema}");
    let mut out: Vec<TreeFile> = PROGRAMS
        .iter()
        .map(|p| TreeFile {
            path: p,
            contents: APP_PY.to_string(),
            executable: true,
        })
        .collect();
    out.push(TreeFile {
        path: CHECK,
        contents: webapp::CHECK_PY.to_string(),
        executable: true,
    });
    for (path, contents) in [
        ("VERSION", format!("{release}\n")),
        ("SCHEMA", format!("{schema}\n")),
        ("MODE", mode.file_text().to_string()),
    ] {
        out.push(TreeFile {
            path,
            contents,
            executable: false,
        });
    }
    out
}

/// The tree's optional files, which [`add_to`] and [`write_tree`] remove.
const OPTIONAL: [&str; 2] = ["MIGRATE_SLEEP", "ACCEPTS"];

/// Write the service's files into `repo`'s working tree, removing a
/// `MIGRATE_SLEEP` or `ACCEPTS` left by a previous release (commit and tag
/// are the caller's).
pub fn add_to<'r>(repo: &'r Repo, release: &str, schema: u32, mode: Mode) -> &'r Repo {
    for f in files(release, schema, mode) {
        if f.executable {
            repo.exec(f.path, &f.contents);
        } else {
            repo.write(f.path, &f.contents);
        }
    }
    for f in OPTIONAL {
        let _ = std::fs::remove_file(repo.path.join(f));
    }
    repo
}

/// Make `repo`'s migration hold its changes `d` before committing (the
/// tree's `MIGRATE_SLEEP`): a window to observe, or to kill it in.
pub fn add_migrate_sleep(repo: &Repo, d: Duration) -> &Repo {
    repo.write("MIGRATE_SLEEP", format!("{}\n", d.as_secs_f64()))
}

/// Make `repo`'s server healthy on each schema of `schemas` (the tree's
/// `ACCEPTS`), not only its own: a release written to run before and after
/// a migration ("expand, then contract" in docs/ab-deploys.md). A schema-1
/// server does run on schema 2; a schema-2 one does not run on 1.
pub fn add_accepts<'r>(repo: &'r Repo, schemas: &[u32]) -> &'r Repo {
    repo.write("ACCEPTS", accepts_text(schemas))
}

fn accepts_text(schemas: &[u32]) -> String {
    let words: Vec<String> = schemas.iter().map(u32::to_string).collect();
    format!("{}\n", words.join(" "))
}

/// Write the service's files into `dir` (created if need be).
pub fn write_tree(dir: &Path, release: &str, schema: u32, mode: Mode) {
    for f in files(release, schema, mode) {
        let p = dir.join(f.path);
        super::write_file(&p, f.contents.as_bytes());
        let mode = if f.executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for f in OPTIONAL {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

/// Set the `ACCEPTS` of the tree in `dir` (see [`add_accepts`]).
pub fn set_accepts(dir: &Path, schemas: &[u32]) {
    super::write_file(&dir.join("ACCEPTS"), accepts_text(schemas).as_bytes());
}

/// Set (or with `None` remove) the `MIGRATE_SLEEP` of the tree in `dir`.
pub fn set_migrate_sleep(dir: &Path, d: Option<Duration>) {
    let p = dir.join("MIGRATE_SLEEP");
    match d {
        Some(d) => super::write_file(&p, format!("{}\n", d.as_secs_f64()).as_bytes()),
        None => {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The text of `db.env` for `pg`, pausing writes with `intake_flag`.
pub fn db_env_text(pg: &Postgres, intake_flag: &Path) -> String {
    let mut text = String::from("# Written by tests/cli/support/dbapp.rs.\n");
    for (k, v) in pg.env() {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str(&format!("PGBIN={}\n", pg.bin_dir().display()));
    text.push_str(&format!("INTAKE_FLAG={}\n", intake_flag.display()));
    text
}

/// Write `root/shared/db.env` (creating `shared/`): host `root`'s releases
/// then reach `pg`, and `bin/intake` toggles `intake_flag`. Returns its path.
pub fn write_db_env(root: &Path, pg: &Postgres, intake_flag: &Path) -> PathBuf {
    let p = root.join("shared/db.env");
    super::write_file(&p, db_env_text(pg, intake_flag).as_bytes());
    p
}

/// Run `tree`'s `program` (e.g. [`MIGRATE`]) with `args` as a host would:
/// in `tree`, with `SLIPWAY_ROOT=root` and otherwise a clean environment.
pub fn run(tree: &Path, root: &Path, program: &str, args: &[&str]) -> Cmd {
    let mut cmd = Command::new(tree.join(program));
    cmd.args(args)
        .current_dir(tree)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLIPWAY_ROOT", root)
        .stdin(Stdio::null());
    Cmd { cmd }
}

/// Start `tree`'s server as host `root`'s (on a free port; killed when
/// dropped).
pub fn start_server(tree: &Path, root: &Path) -> Instance {
    let root = root.to_string_lossy();
    Instance::start_env(tree, &[("SLIPWAY_ROOT", root.as_ref())])
}

/// Which way a migration went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// One row of the `migrations` table: a version applied or reverted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// The release whose `bin/migrate` did it.
    pub release: String,
    pub version: u32,
    pub direction: Direction,
    /// The `SLIPWAY_ROOT` it ran with: which host.
    pub root: String,
}

/// Every migration the database recorded, oldest first (none before the
/// first `bin/migrate`).
pub fn migrations(pg: &Postgres) -> Vec<Migration> {
    if pg.psql("select to_regclass('migrations') is null") == "t" {
        return Vec::new();
    }
    let rows = pg.psql("select release, version, direction, coalesce(root, '') from migrations order by at, ctid");
    rows.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '|').collect();
            assert_eq!(f.len(), 4, "a migrations row: {l:?}");
            Migration {
                release: f[0].to_string(),
                version: f[1].parse().unwrap_or_else(|e| panic!("version {:?}: {e}", f[1])),
                direction: match f[2] {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    other => panic!("direction {other:?}"),
                },
                root: f[3].to_string(),
            }
        })
        .collect()
}

/// `(release, version, direction)` of every migration, for comparing.
pub fn migration_summary(pg: &Postgres) -> Vec<(String, u32, Direction)> {
    migrations(pg)
        .into_iter()
        .map(|m| (m.release, m.version, m.direction))
        .collect()
}

/// The database's schema version, from SQL (0 before any migration).
pub fn db_schema(pg: &Postgres) -> u32 {
    if pg.psql("select to_regclass('schema_version') is null") == "t" {
        return 0;
    }
    pg.psql("select version from schema_version")
        .parse()
        .expect("a version")
}

/// The id of every row in `items`.
pub fn item_ids(pg: &Postgres) -> BTreeSet<String> {
    pg.psql("select id from items")
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `release -> rows` written by each release's server.
pub fn items_per_release(pg: &Postgres) -> std::collections::BTreeMap<String, usize> {
    pg.psql("select release, count(*) from items group by release")
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(r, n)| (r.to_string(), n.parse().expect("a count")))
        .collect()
}

/// Whether `items` has the `note` column (schema 2).
pub fn has_note_column(pg: &Postgres) -> bool {
    pg.psql("select count(*) from information_schema.columns where table_name = 'items' and column_name = 'note'")
        == "1"
}

/// The runs of `bin/migrate` and `bin/backup` with `SLIPWAY_ROOT=root`,
/// one a line (`migrate v2 up pid=42`, `backup v2 pid=43`), no-ops included.
pub fn calls(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("shared/dbapp-calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
