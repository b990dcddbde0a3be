//! The pieces database-migration tests stand on, proven without slipway: a
//! throwaway PostgreSQL run as a non-root user; the database web service's
//! `bin/migrate` applying each version once (recording it in the database),
//! reverting, and committing nothing when killed; `/health` following the
//! schema; `bin/backup` writing a dump that restores; and nginx's pause
//! flag, toggled by `bin/intake`, refusing writes with 503 while a writer
//! that retries them loses none across a migration and a switch.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::dbapp::{self, Direction, Mode};
use crate::support::load::{self, Writer};
use crate::support::nginx::{self, Nginx};
use crate::support::postgres::{self, Postgres};
use crate::support::sshd::alive;
use crate::support::{Env, wait_for};

/// A test's database and one host's root whose `shared/db.env` reaches it,
/// with the intake flag in `shared/` too.
struct Db {
    env: Env,
    pg: Postgres,
    root: PathBuf,
    flag: PathBuf,
}

impl Db {
    fn new() -> Db {
        let env = Env::new();
        let pg = Postgres::start(&env.path("pg"));
        let root = env.path("host");
        let flag = root.join("shared/intake-paused");
        dbapp::write_db_env(&root, &pg, &flag);
        Db { env, pg, root, flag }
    }

    /// A release tree of the service in the test's directory.
    fn tree(&self, release: &str, schema: u32, mode: Mode) -> PathBuf {
        let dir = self.env.path(release);
        dbapp::write_tree(&dir, release, schema, mode);
        dir
    }

    /// Run `tree`'s `program` as this host's; assert it succeeds; its stdout.
    fn run(&self, tree: &std::path::Path, program: &str, args: &[&str]) -> String {
        dbapp::run(tree, &self.root, program, args).ok().stdout()
    }
}

fn skip(test: &str) -> bool {
    postgres::skip_if_missing(test)
}

/// The real user id of process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .expect("a Uid line")
}

#[test]
fn pg_postgres_runs_as_a_non_root_user_on_loopback_and_stops_with_its_backends_on_drop() {
    if skip("pg_postgres_runs_as_a_non_root_user") {
        return;
    }
    let env = Env::new();
    let mut pg = Postgres::start(&env.path("pg"));
    assert_eq!(pg.psql("select current_user, current_database()"), "postgres|app");
    assert_eq!(pg.psql("show listen_addresses"), "127.0.0.1");
    assert_eq!(pg.psql("show port"), pg.port().to_string());
    assert_eq!(
        pg.psql("show unix_socket_directories"),
        pg.socket_dir().display().to_string()
    );
    assert!(pg.port() > 1024);
    assert!(
        pg.url().ends_with(&format!("@127.0.0.1:{}/app", pg.port())),
        "{}",
        pg.url()
    );
    let uid = uid_of(pg.pid());
    assert_ne!(uid, 0, "the postmaster runs as root");
    if !rustix::process::geteuid().is_root() {
        assert_eq!(
            uid,
            rustix::process::getuid().as_raw(),
            "not root: it runs as the tester"
        );
    }
    // A client connection's backend is one more process of the group.
    let mut psql = std::process::Command::new(pg.bin("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "app",
            "-c",
            "select pg_sleep(30)",
        ])
        .args(["-p", &pg.port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run psql");
    wait_for(10, "the sleeping backend", || {
        pg.psql("select count(*) from pg_stat_activity where query like 'select pg_sleep%'") == "1"
    });
    let (pid, port) = (pg.pid(), pg.port());
    let processes = pg.processes();
    assert!(processes.contains(&pid) && processes.len() >= 3, "{processes:?}");
    assert!(processes.iter().all(|p| uid_of(*p) == uid), "{processes:?}");

    let stopping = Instant::now();
    pg.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stopping.elapsed()
    );
    assert!(!alive(pid));
    let left: Vec<u32> = processes.into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(left, Vec::<u32>::new(), "postgres processes left");
    assert_eq!(pg.processes(), Vec::<u32>::new());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open"
    );
    let status = psql.wait().expect("psql");
    assert!(!status.success(), "psql's session outlived the server");
    drop(pg); // again: a no-op
}

#[test]
fn pg_migrate_applies_each_version_once_records_it_in_the_database_and_reverts() {
    if skip("pg_migrate_applies_each_version_once") {
        return;
    }
    let db = Db::new();
    let v1 = db.tree("v1", 1, Mode::Ok);
    let v2 = db.tree("v2", 2, Mode::Ok);
    assert_eq!(db.run(&v1, dbapp::DB_SCHEMA, &[]).trim(), "0");
    assert_eq!(db.run(&v2, dbapp::SCHEMA, &[]).trim(), "2");

    let out = db.run(&v1, dbapp::MIGRATE, &[]);
    assert!(out.contains("from schema 0 to 1 (v1)"), "{out}");
    assert_eq!(db.run(&v1, dbapp::DB_SCHEMA, &[]).trim(), "1");
    assert!(!dbapp::has_note_column(&db.pg));
    let out = db.run(&v1, dbapp::MIGRATE, &[]);
    assert!(out.contains("at schema 1: nothing to do"), "{out}");

    let out = db.run(&v2, dbapp::MIGRATE, &[]);
    assert!(out.contains("from schema 1 to 2 (v2)"), "{out}");
    db.run(&v2, dbapp::MIGRATE, &[]);
    // v1's migrate leaves a database ahead of it alone.
    let out = db.run(&v1, dbapp::MIGRATE, &[]);
    assert!(out.contains("ahead of v1 (1): nothing to do"), "{out}");
    assert_eq!(dbapp::db_schema(&db.pg), 2);
    assert!(dbapp::has_note_column(&db.pg));
    let up = |r: &str, v| (r.to_string(), v, Direction::Up);
    assert_eq!(dbapp::migration_summary(&db.pg), [up("v1", 1), up("v2", 2)]);
    let root = db.root.display().to_string();
    assert!(dbapp::migrations(&db.pg).iter().all(|m| m.root == root));

    // Down: 2 -> 1 once, then nothing.
    db.run(&v2, dbapp::MIGRATE, &["--down"]);
    let out = db.run(&v2, dbapp::MIGRATE, &["--down"]);
    assert!(out.contains("at schema 1: nothing to do"), "{out}");
    assert_eq!(dbapp::db_schema(&db.pg), 1);
    assert!(!dbapp::has_note_column(&db.pg));
    let summary = dbapp::migration_summary(&db.pg);
    assert_eq!(
        summary.last(),
        Some(&("v2".to_string(), 2, Direction::Down)),
        "{summary:?}"
    );
    assert_eq!(summary.len(), 3, "{summary:?}");

    // Every call is in the host's log, the ones that did nothing too.
    let calls = dbapp::calls(&db.root);
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(calls[0].starts_with("migrate v1 up pid="), "{calls:?}");
    assert!(calls[6].starts_with("migrate v2 down pid="), "{calls:?}");

    // A fresh database goes straight to 2 with v2's migrate: two versions, two rows.
    db.pg.psql("drop table items, schema_version, migrations");
    db.run(&v2, dbapp::MIGRATE, &[]);
    assert_eq!(dbapp::migration_summary(&db.pg), [up("v2", 1), up("v2", 2)]);

    // Bad usage says so.
    dbapp::run(&v2, &db.root, dbapp::MIGRATE, &["--sideways"])
        .fails(2)
        .stderr_has("usage: migrate [--down]");
}

#[test]
fn pg_migrate_killed_while_holding_its_changes_commits_nothing_and_two_at_once_apply_once() {
    if skip("pg_migrate_killed_while_holding_its_changes") {
        return;
    }
    let db = Db::new();
    let v1 = db.tree("v1", 1, Mode::Ok);
    let v2 = db.tree("v2", 2, Mode::Ok);
    db.run(&v1, dbapp::MIGRATE, &[]);
    dbapp::set_migrate_sleep(&v2, Some(Duration::from_secs(30)));

    // Killed inside its transaction, after the ALTER: nothing of it stays.
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = dbapp::run(&v2, &db.root, dbapp::MIGRATE, &[]).cmd;
    let mut child = cmd.stdout(out.reopen().unwrap()).spawn().expect("run migrate");
    wait_for(10, "migrate to hold version 2", || {
        std::fs::read_to_string(out.path()).is_ok_and(|t| t.contains("holding version 2 for 30 s before commit"))
    });
    // Its ALTER holds items: a write waits (here: a statement timeout says so).
    let blocked = db.pg.try_psql(
        "app",
        &[
            "-c",
            "set statement_timeout = 200; insert into items values ('x', 'test')",
        ],
    );
    assert!(
        blocked.as_ref().is_err_and(|e| e.contains("statement timeout")),
        "{blocked:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for(10, "the killed migrate's session to end", || {
        db.pg
            .psql("select count(*) from pg_stat_activity where application_name = 'dbapp'")
            == "0"
    });
    assert_eq!(dbapp::db_schema(&db.pg), 1);
    assert!(!dbapp::has_note_column(&db.pg));
    assert_eq!(dbapp::migration_summary(&db.pg).len(), 1);

    // Two at once, from two hosts: the advisory lock makes one wait for
    // the other, then find nothing to do. One row, naming the host that
    // applied it; each host logged its call.
    let root2 = db.env.path("host2");
    dbapp::write_db_env(&root2, &db.pg, &db.flag);
    dbapp::set_migrate_sleep(&v2, Some(Duration::from_millis(500)));
    let spawn = |root: &std::path::Path| {
        let mut cmd = dbapp::run(&v2, root, dbapp::MIGRATE, &[]).cmd;
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run migrate")
    };
    let (one, two) = (spawn(&db.root), spawn(&root2));
    let outs: Vec<String> = [one, two]
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{o:?}");
            String::from_utf8_lossy(&o.stdout).into_owned()
        })
        .collect();
    let applied: Vec<&String> = outs.iter().filter(|o| o.contains("from schema 1 to 2")).collect();
    let idle: Vec<&String> = outs
        .iter()
        .filter(|o| o.contains("at schema 2: nothing to do"))
        .collect();
    assert_eq!((applied.len(), idle.len()), (1, 1), "{outs:?}");
    let runs = dbapp::migrations(&db.pg);
    assert_eq!(runs.len(), 2, "{runs:?}");
    let roots = [db.root.display().to_string(), root2.display().to_string()];
    assert!(roots.contains(&runs[1].root), "{runs:?}");
    assert_eq!(dbapp::calls(&db.root).len(), 3); // v1, the killed one, this one
    assert_eq!(dbapp::calls(&root2).len(), 1);
    assert_eq!(dbapp::db_schema(&db.pg), 2);
}

#[test]
fn pg_health_follows_the_database_schema_and_writes_name_their_release() {
    if skip("pg_health_follows_the_database_schema") {
        return;
    }
    let db = Db::new();
    let v1 = db.tree("v1", 1, Mode::Ok);
    let v2 = db.tree("v2", 2, Mode::Ok);
    let sick = db.tree("v1-sick", 1, Mode::FailCheck);
    let expand = db.tree("v1-expand", 1, Mode::Ok);
    dbapp::set_accepts(&expand, &[1, 2]);
    let a = dbapp::start_server(&v1, &db.root);
    let b = dbapp::start_server(&v2, &db.root);
    let c = dbapp::start_server(&sick, &db.root);
    let d = dbapp::start_server(&expand, &db.root);
    let health = |i: &crate::support::webapp::Instance| load::get(i.addr(), "/health").expect("GET /health");

    // Before any migration: unhealthy, and says why.
    let h = health(&a);
    assert_eq!(
        (h.status, h.text()),
        (500, "schema mismatch: the database is at 0, v1 expects 1\n".into())
    );
    assert!(!crate::support::webapp::check(&v1, a.port()).0.success());

    db.run(&v1, dbapp::MIGRATE, &[]);
    assert_eq!(health(&a).status, 200);
    assert_eq!(health(&a).text(), "ok schema=1\n");
    assert!(crate::support::webapp::check(&v1, a.port()).0.success());
    assert_eq!(health(&b).status, 500);
    let h = health(&c);
    assert_eq!((h.status, h.text()), (500, "failing (MODE fail-check)\n".into()));
    assert_eq!(health(&d).text(), "ok schema=1\n");
    let root = load::get(a.addr(), "/").unwrap().text();
    assert_eq!(root, format!("v1 pid={} schema=1\n", a.pid()));
    let w = load::post(a.addr(), "/write", b"from-v1").unwrap();
    assert_eq!((w.status, w.text()), (200, "wrote from-v1\n".into()));
    // The same id again: acknowledged, one row.
    assert_eq!(load::post(a.addr(), "/write", b"from-v1").unwrap().status, 200);
    // v2 writes its note, which schema 1 has no column for.
    let w = load::post(b.addr(), "/write", b"from-v2").unwrap();
    assert_eq!(w.status, 500, "{}", w.text());
    assert!(w.text().contains("column \"note\""), "{}", w.text());

    db.run(&v2, dbapp::MIGRATE, &[]);
    let h = health(&a);
    assert_eq!(
        (h.status, h.text()),
        (500, "schema mismatch: the database is at 2, v1 expects 1\n".into())
    );
    assert_eq!(health(&d).text(), "ok schema=2\n", "ACCEPTS 1 2");
    assert_eq!(health(&b).text(), "ok schema=2\n");
    assert_eq!(load::post(b.addr(), "/write", b"from-v2").unwrap().status, 200);
    // A schema-1 server still writes to schema 2 (the new column is nullable).
    assert_eq!(load::post(a.addr(), "/write", b"late-v1").unwrap().status, 200);
    assert_eq!(
        db.pg
            .psql("select id, release, coalesce(note, '-') from items order by id"),
        "from-v1|v1|-\nfrom-v2|v2|written by v2\nlate-v1|v1|-"
    );
    assert_eq!(load::post(a.addr(), "/write", b"").unwrap().status, 400);
}

#[test]
fn pg_backup_prints_the_path_of_a_dump_that_restores_with_psql() {
    if skip("pg_backup_prints_the_path_of_a_dump") {
        return;
    }
    let db = Db::new();
    let v2 = db.tree("v2", 2, Mode::Ok);
    db.run(&v2, dbapp::MIGRATE, &[]);
    db.pg
        .psql("insert into items select 'id-' || n, 'v2', 'it''s ' || n from generate_series(1, 500) n");

    let out = db.run(&v2, dbapp::BACKUP, &[]);
    let path = PathBuf::from(out.lines().last().expect("a last line"));
    assert!(path.starts_with(db.root.join("shared/backups")), "{out}");
    assert!(path.extension().is_some_and(|e| e == "sql"), "{out}");
    assert!(path.is_file(), "{out}");
    let second = db.run(&v2, dbapp::BACKUP, &[]);
    assert_ne!(
        second.lines().last(),
        Some(path.to_str().unwrap()),
        "two backups, two files"
    );
    let calls = dbapp::calls(&db.root);
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("backup v2 ")).count(),
        2,
        "{calls:?}"
    );

    db.pg.psql_db("postgres", "create database restored");
    db.pg.psql_file("restored", &path);
    let query = "select count(*), count(note), max(note), (select version from schema_version) from items";
    assert_eq!(db.pg.psql_db("restored", query), "500|500|it's 99|2");
    assert_eq!(db.pg.psql_db("restored", query), db.pg.psql(query));
    assert_eq!(
        db.pg.psql_db("restored", "select release, version from migrations"),
        "v2|1\nv2|2"
    );

    // The database gone: it fails, and leaves no partial dump.
    let mut pg = db.pg;
    pg.stop();
    let failed = dbapp::run(&v2, &db.root, dbapp::BACKUP, &[]).fails(1);
    failed.stderr_has("backup: ");
    let dumps: Vec<_> = std::fs::read_dir(db.root.join("shared/backups")).unwrap().collect();
    assert_eq!(dumps.len(), 2, "{dumps:?}");
}

#[test]
fn pg_nginx_pause_flag_refuses_writes_with_503_itself_and_passes_reads() {
    if skip("pg_nginx_pause_flag") || nginx::skip_if_missing("pg_nginx_pause_flag") {
        return;
    }
    let db = Db::new();
    let v1 = db.tree("v1", 1, Mode::Ok);
    db.run(&v1, dbapp::MIGRATE, &[]);
    let app = dbapp::start_server(&v1, &db.root);
    let upstream = db.env.path("upstream.conf");
    nginx::write_upstream(&upstream, app.port());
    let proxy = Nginx::start_with_pause_flag(&db.env.path("nginx"), &upstream, &db.flag);
    assert_eq!(proxy.pause_flag(), Some(db.flag.as_path()));

    assert_eq!(load::post(proxy.addr(), "/write", b"before").unwrap().status, 200);
    let out = db.run(&v1, dbapp::INTAKE, &["off"]);
    assert!(db.flag.is_file(), "{out}");
    for (i, method) in ["POST", "PUT", "DELETE", "PATCH"].into_iter().enumerate() {
        let id = format!("paused-{i}");
        let r = crate::support::load::post(proxy.addr(), "/write", id.as_bytes());
        let r = if method == "POST" {
            r
        } else {
            request(proxy.addr(), method, &id)
        };
        let r = r.unwrap();
        assert_eq!(
            (r.status, r.headers.get("retry-after").map(String::as_str), r.text()),
            (503, Some("1"), "paused\n".to_string()),
            "{method}"
        );
        assert!(!r.headers.contains_key("x-upstream"), "{method} reached the upstream");
    }
    let get = load::get(proxy.addr(), "/").unwrap();
    assert_eq!(get.text(), format!("v1 pid={} schema=1\n", app.pid()));
    assert_eq!(get.headers.get("x-upstream"), Some(&app.addr().to_string()));
    assert_eq!(load::get(proxy.addr(), "/health").unwrap().status, 200);
    db.run(&v1, dbapp::INTAKE, &["off"]); // twice: still off

    db.run(&v1, dbapp::INTAKE, &["on"]);
    assert!(!db.flag.exists());
    assert_eq!(load::post(proxy.addr(), "/write", b"after").unwrap().status, 200);
    db.run(&v1, dbapp::INTAKE, &["on"]); // twice: still on
    assert_eq!(
        dbapp::item_ids(&db.pg).into_iter().collect::<Vec<_>>(),
        ["after", "before"],
        "a refused write reached the database"
    );
    assert!(!proxy.error_log().contains("[error]"), "{}", proxy.error_log());

    // The plain nginx has no pause: the same flag changes nothing.
    let plain = Nginx::start(&db.env.path("nginx-plain"), &upstream);
    std::fs::write(&db.flag, "").unwrap();
    assert_eq!(load::post(plain.addr(), "/write", b"unpaused").unwrap().status, 200);
    dbapp::run(&v1, &db.root, dbapp::INTAKE, &["sideways"])
        .fails(2)
        .stderr_has("usage: intake off|on");
}

/// `METHOD /write` with `body` over HTTP/1.0 (the load client sends GET and POST only).
fn request(addr: std::net::SocketAddr, method: &str, body: &str) -> Result<load::Response, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(load::TIMEOUT)).map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} /write HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(load::Response {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    })
}

#[test]
fn pg_writes_paused_around_a_migration_and_a_switch_are_all_acknowledged_and_none_is_lost() {
    if skip("pg_writes_paused_around_a_migration") || nginx::skip_if_missing("pg_writes_paused_around_a_migration") {
        return;
    }
    let db = Db::new();
    let v1 = db.tree("v1", 1, Mode::Ok);
    let v2 = db.tree("v2", 2, Mode::Ok);
    dbapp::set_migrate_sleep(&v2, Some(Duration::from_millis(700)));
    db.run(&v1, dbapp::MIGRATE, &[]);
    let a = dbapp::start_server(&v1, &db.root);
    let upstream = db.env.path("upstream.conf");
    nginx::write_upstream(&upstream, a.port());
    let proxy = Nginx::start_with_pause_flag(&db.env.path("nginx"), &upstream, &db.flag);

    let writer = Writer::start(&proxy.url("/write"));
    writer.wait_acked(50, 10);

    // The deploy's middle, by hand: pause, migrate, switch, resume.
    let paused = Instant::now();
    db.run(&v1, dbapp::INTAKE, &["off"]);
    // The writer is sequential: once it is refused, nothing is in flight.
    writer.wait_refused(1, 10);
    assert_eq!(
        load::get(proxy.addr(), "/").unwrap().status,
        200,
        "reads pass while paused"
    );
    let out = db.run(&v2, dbapp::MIGRATE, &[]);
    assert!(out.contains("from schema 1 to 2 (v2)"), "{out}");
    let b = dbapp::start_server(&v2, &db.root);
    assert!(crate::support::webapp::check(&v2, b.port()).0.success());
    nginx::write_upstream(&upstream, b.port());
    proxy.reload();
    proxy.wait_reloaded(1, 10);
    wait_for(10, "v2 behind nginx", || {
        load::get(proxy.addr(), "/").is_ok_and(|r| r.text().starts_with("v2 pid="))
    });
    let refused_while_paused = writer.refused_count();
    db.run(&v2, dbapp::INTAKE, &["on"]);
    let resumed = Instant::now();
    writer.wait_acked(50, 10);
    let report = writer.stop();
    eprintln!("{report}");

    assert_eq!(report.failures, 0, "{report}");
    assert!(refused_while_paused >= 10, "{report}");
    assert!(report.refused_outside(paused, resumed).is_empty(), "{report}");
    let (first, last) = report.refused_span().expect("refusals");
    assert!(last.duration_since(first) >= Duration::from_millis(700), "{report}");
    assert_eq!(report.pending, None, "{report}");
    // Every acknowledged write is in the table, and nothing else is.
    assert_eq!(report.acked.len(), report.acked_set().len(), "an id acknowledged twice");
    assert_eq!(dbapp::item_ids(&db.pg), report.acked_set(), "{report}");
    let per_release = dbapp::items_per_release(&db.pg);
    assert!(per_release["v1"] >= 50 && per_release["v2"] >= 50, "{per_release:?}");
    assert_eq!(
        db.pg
            .psql("select count(*) from items where release = 'v2' and note is null"),
        "0"
    );
    // The write refused first is the one acknowledged after the pause.
    let first_refused = report
        .samples
        .iter()
        .find(|s| s.outcome == load::WriteOutcome::Refused)
        .unwrap();
    assert!(report.acked.contains(&first_refused.id), "{report}");
    assert_eq!(dbapp::migrations(&db.pg).len(), 2);
}
