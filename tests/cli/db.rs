//! The database steps of a deploy (docs/ab-deploys.md, "Complex A/B") with
//! a stand-in database: a directory of files that the hooks read and write
//! the way a migration tool would (its schema version, one line per
//! migration run, one line per pause and resume). Every step's ordering,
//! run-once and always-resume promise is checked here over real sshd;
//! `tests/cli/pg.rs` and `tests/cli/dbdeploy.rs` do it with PostgreSQL.

use std::path::{Path, PathBuf};

use crate::support::scenario::{Scenario, Scene, TARGET};

/// The stand-in database and the target's hooks over it.
struct Db {
    dir: PathBuf,
}

impl Db {
    fn new(scene: &Scene) -> Db {
        let dir = scene.env.path("db");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("schema"), "1\n").unwrap();
        Db { dir }
    }

    /// `[targets.prod.hooks]` over this database; `extra`: more keys.
    fn hooks(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!(
            "[targets.{TARGET}.hooks]\n\
             schema = \"cat SCHEMA\"\n\
             db_schema = \"cat {d}/schema\"\n\
             backup = \"cp {d}/schema {d}/backup-$SLIPWAY_RELEASE && echo {d}/backup-$SLIPWAY_RELEASE\"\n\
             pause = \"echo pause $SLIPWAY_HOST >> {d}/intake\"\n\
             resume = \"echo resume $SLIPWAY_HOST >> {d}/intake\"\n\
             migrate = \"test ! -e {d}/fail-migrate && echo $SLIPWAY_RELEASE >> {d}/runs && cp SCHEMA {d}/schema && echo migrated\"\n\
             after_activate = \"true\"\n\
             {extra}"
        )
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    fn runs(&self) -> Vec<String> {
        self.read("runs").lines().map(str::to_string).collect()
    }

    /// `pause` and `resume` lines: every pause is followed by its resume.
    fn assert_resumed(&self) {
        let intake = self.read("intake");
        let paused = intake.lines().filter(|l| l.starts_with("pause ")).count();
        let resumed = intake.lines().filter(|l| l.starts_with("resume ")).count();
        assert_eq!(paused, resumed, "every pause is resumed:\n{intake}");
    }
}

/// A scene of two ssh hosts whose releases `v1`… expect the schemas given.
fn scene(schemas: &[(&str, &str)], extra: &str) -> (Scene, Db) {
    let s = Scenario::new().ssh_hosts(2).start();
    let db = Db::new(&s);
    let labels = format!("\"{}\", \"{}\"", s.label(0), s.label(1));
    s.env.write(
        "slipway.toml",
        format!("[targets.{TARGET}]\nhosts = [{labels}]\n{}", db.hooks(extra)),
    );
    for (tag, schema) in schemas {
        s.repo.write("SCHEMA", format!("{schema}\n"));
        s.tag(tag);
    }
    (s, db)
}

/// `slipway deploy REL` started and left running (to be killed), its output discarded.
fn deploy_in_background(s: &Scene, rel: &str) -> std::process::Child {
    s.slipway()
        .args(["deploy", rel, "-t", TARGET])
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn history(s: &Scene) -> Vec<serde_json::Value> {
    let o = s.slipway().args(["history", "-t", TARGET, "--json"]).ok();
    o.json().as_array().unwrap().clone()
}

#[test]
fn a_migration_runs_once_on_migrate_on_between_pause_and_the_switch_and_intake_is_always_resumed() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2"), ("v3", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    assert!(db.runs().is_empty(), "v1 expects the schema the database is at");
    let d = s.slipway().args(["deploy", "v2", "-t", TARGET]).ok();
    assert_eq!(db.runs(), ["v2"], "{d}");
    assert_eq!(db.read("schema"), "2\n");
    // Ordering: backup before pause before the migration before the switch before resume.
    let err = d.stderr();
    let at = |needle: &str| err.find(needle).unwrap_or_else(|| panic!("no {needle:?}: {d}"));
    assert!(at("backup-v2") < at("intake paused on 2 host(s)"), "{d}");
    assert!(at("intake paused on 2 host(s)") < at("running migrate in v2"), "{d}");
    assert!(at("running migrate in v2") < at("v1 -> v2"), "{d}");
    assert!(at("v1 -> v2") < at("intake was paused for"), "{d}");
    assert!(db.read("intake").lines().count() == 4, "{}", db.read("intake"));
    db.assert_resumed();
    // History on every host: the schema, the database's version, the backup,
    // and how long intake was paused.
    let h = history(&s);
    for host in [s.label(0), s.label(1)] {
        let switch = h
            .iter()
            .find(|r| r["host"] == host && r["action"] == "activate" && r["to"] == "v2")
            .unwrap_or_else(|| panic!("{h:?}"));
        assert_eq!(switch["schema"], "2");
        assert_eq!(switch["db_schema"], "2");
        assert_eq!(switch["backup"], format!("{}/backup-v2", db.dir.display()), "{switch}");
        let resume = h
            .iter()
            .find(|r| r["host"] == host && r["action"] == "resume")
            .unwrap_or_else(|| panic!("{h:?}"));
        assert!(resume["paused_ms"].as_u64().is_some(), "{resume}");
        // Durations are seconds in --json (docs/json.md); `paused_ms` stays for scripts.
        assert_eq!(
            resume["paused_seconds"].as_f64(),
            resume["paused_ms"].as_f64().map(|ms| ms / 1000.0),
            "{resume}"
        );
    }
    // v3 expects the same schema: no migration, no pause.
    s.slipway().args(["deploy", "v3", "-t", TARGET]).ok();
    assert_eq!(db.runs(), ["v2"]);
    assert_eq!(db.read("intake").lines().count(), 4);
    // Deploying v2 again finds the database already there.
    s.slipway().args(["deploy", "v2", "-t", TARGET]).ok();
    assert_eq!(db.runs(), ["v2"]);
    // Unless asked.
    s.slipway().args(["activate", "v3", "-t", TARGET]).ok();
    s.slipway().args(["deploy", "v2", "-t", TARGET, "--migrate-again"]).ok();
    assert_eq!(db.runs(), ["v2", "v2"]);
    db.assert_resumed();
}

#[test]
fn a_rollback_across_a_schema_change_is_refused_with_exit_7_unless_allowed_or_migrated_down() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    s.slipway().args(["deploy", "v2", "-t", TARGET]).ok();
    let refused = s.slipway().args(["rollback", "-t", TARGET]).fails(7);
    refused.stderr_has("v1 expects schema 1, but the database is at schema 2");
    assert_eq!(s.current(0).as_deref(), Some("v2"));
    assert_eq!(s.current(1).as_deref(), Some("v2"));
    s.slipway()
        .args(["activate", "v1", "-t", TARGET])
        .fails(7)
        .stderr_has("nothing was switched");
    s.slipway()
        .args(["rollback", "-t", TARGET, "--allow-schema-rollback"])
        .ok();
    assert_eq!(s.current(0).as_deref(), Some("v1"));
    assert_eq!(db.read("schema"), "2\n", "nothing touched the database");

    // With migrate_down, the release being left takes the database back.
    let d = db.dir.display();
    s.env.write(
        "slipway.toml",
        format!(
            "[targets.{TARGET}]\nhosts = [\"{}\", \"{}\"]\n{}",
            s.label(0),
            s.label(1),
            db.hooks(&format!(
                "migrate_down = \"echo down-$SLIPWAY_RELEASE >> {d}/runs && echo 1 > {d}/schema\"\n"
            ))
        ),
    );
    s.slipway().args(["activate", "v2", "-t", TARGET]).ok();
    let r = s.slipway().args(["rollback", "-t", TARGET, "--to", "v1"]).ok();
    assert!(r.stderr().contains("running migrate_down in v2"), "{r}");
    assert_eq!(db.read("schema"), "1\n");
    assert_eq!(db.runs().last().map(String::as_str), Some("down-v2"));
    assert_eq!(s.current(1).as_deref(), Some("v1"));
    db.assert_resumed();
}

#[test]
fn a_failed_migration_switches_nothing_resumes_intake_and_runs_again_next_time() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    std::fs::write(db.dir.join("fail-migrate"), "").unwrap();
    let f = s.slipway().args(["deploy", "v2", "-t", TARGET]).fails(1);
    f.stderr_has("(migrate)").stderr_has("nothing was switched");
    assert_eq!(s.current(0).as_deref(), Some("v1"));
    assert_eq!(s.current(1).as_deref(), Some("v1"));
    db.assert_resumed();
    let st = s.slipway().args(["status", "-t", TARGET, "--json"]).ok().json();
    assert_eq!(st[0]["migration"]["state"], "failed", "{st}");
    std::fs::remove_file(db.dir.join("fail-migrate")).unwrap();
    s.slipway().args(["deploy", "v2", "-t", TARGET]).ok();
    assert_eq!(db.runs(), ["v2"]);
    db.assert_resumed();
}

#[test]
fn a_failing_pause_or_backup_names_the_step_and_host_and_leaves_nothing_paused() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    let d = db.dir.display().to_string();
    // pause fails on the second host only.
    let failing = toml.replace(
        "pause = \"echo pause $SLIPWAY_HOST",
        &format!(
            "pause = \"test \\\"$SLIPWAY_HOST\\\" != \\\"{}\\\" && echo pause $SLIPWAY_HOST",
            s.label(1)
        ),
    );
    s.env.write("slipway.toml", &failing);
    let f = s.slipway().args(["deploy", "v2", "-t", TARGET]).fails(1);
    f.stderr_has(&format!("on {} (pause)", s.label(1)));
    assert!(db.runs().is_empty(), "no migration after a failed pause");
    let intake = db.read("intake");
    assert_eq!(
        intake.lines().filter(|l| l.starts_with("resume ")).count(),
        2,
        "{intake}"
    );
    for i in 0..2 {
        let st = s.slipway().args(["status", "-t", TARGET, "--json"]).ok().json();
        assert!(st[i]["paused_since"].is_null(), "{st}");
        assert_eq!(s.current(i).as_deref(), Some("v1"));
    }
    // backup fails: nothing paused at all.
    let failing = toml.replace("backup = \"cp ", "backup = \"false && cp ");
    s.env.write("slipway.toml", &failing);
    std::fs::remove_file(db.dir.join("intake")).unwrap();
    s.slipway()
        .args(["deploy", "v2", "-t", TARGET])
        .fails(1)
        .stderr_has(&format!("on {} (backup)", s.label(0)));
    assert_eq!(db.read("intake"), "", "nothing was paused");
    assert!(Path::new(&d).join("schema").exists());
}

#[test]
fn a_client_killed_with_intake_paused_has_it_resumed_by_the_host_within_seconds() {
    // The migration waits for a file, so the client can be killed while
    // every host has intake paused.
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let d = db.dir.display().to_string();
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    s.env.write(
        "slipway.toml",
        toml.replace(
            "migrate = \"",
            &format!("migrate = \"touch {d}/migrating; while [ ! -e {d}/go ]; do sleep 0.05; done; "),
        ),
    );
    let mut child = deploy_in_background(&s, "v2");
    crate::support::wait_for(30, "the migration to start", || db.dir.join("migrating").exists());
    child.kill().unwrap();
    child.wait().unwrap();
    // The host that is not migrating resumes at once; the migrating one
    // finishes its migration first.
    crate::support::wait_for(10, "the idle host to resume intake", || {
        db.read("intake").contains(&format!("resume {}", s.label(1)))
    });
    std::fs::write(db.dir.join("go"), "").unwrap();
    crate::support::wait_for(10, "the migrating host to resume intake", || {
        db.read("intake").contains(&format!("resume {}", s.label(0)))
    });
    db.assert_resumed();
    // The migration ran to its end, once; the next deploy does not run it again.
    crate::support::wait_for(10, "the migration to finish", || db.runs() == ["v2"]);
    // The next command says what the hosts did on their own.
    s.slipway()
        .args(["deploy", "v2", "-t", TARGET, "--wait", "30"])
        .ok()
        .stderr_has("intake was resumed at")
        .stderr_has("the session that paused intake ended without resuming it");
    assert_eq!(db.runs(), ["v2"]);
    assert_eq!(s.current(0).as_deref(), Some("v2"));
    // The history says who resumed, and why.
    let h = history(&s);
    assert!(
        h.iter().any(|r| r["action"] == "resume"
            && r["reason"]
                .as_str()
                .is_some_and(|t| t.contains("ended without resuming"))),
        "{h:?}"
    );
}

#[test]
fn hosts_that_leave_out_migrate_on_are_refused_when_a_migration_may_run() {
    let (s, _db) = scene(&[("v1", "1")], "");
    let label = s.label(1).to_string();
    s.slipway()
        .args(["deploy", "v1", "-t", TARGET, "--hosts", &label])
        .fails(2)
        .stderr_has("(`migrate_on`), which --hosts leaves out");
    // A migrate_on that is not a host of the target.
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    s.env.write(
        "slipway.toml",
        toml.replace(
            &format!("[targets.{TARGET}.hooks]"),
            &format!("migrate_on = \"nope\"\n[targets.{TARGET}.hooks]"),
        ),
    );
    s.slipway()
        .args(["status", "-t", TARGET])
        .fails(2)
        .stderr_has("`migrate_on = \"nope\"` of target `prod` is not one of its hosts");
}

#[test]
fn a_client_killed_at_backup_pause_switch_or_resume_leaves_intake_on_and_the_next_deploy_completes() {
    // Each step waits for a file, so the client can be killed inside it
    // (`after_activate` stands for the switch: it runs inside each host's turn).
    for step in ["backup", "pause", "after_activate", "resume"] {
        let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
        s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
        let d = db.dir.display().to_string();
        let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
        let waiting = toml.replace(
            &format!("{step} = \""),
            &format!("{step} = \"touch {d}/in-{step}; while [ ! -e {d}/go ]; do sleep 0.05; done; "),
        );
        s.env.write("slipway.toml", &waiting);
        let mut child = deploy_in_background(&s, "v2");
        crate::support::wait_for(30, &format!("{step} to start"), || {
            db.dir.join(format!("in-{step}")).exists()
        });
        child.kill().unwrap();
        child.wait().unwrap();
        std::fs::write(db.dir.join("go"), "").unwrap();
        s.env.write("slipway.toml", &toml);
        // Intake is on again everywhere within seconds, without another command.
        crate::support::wait_for(15, &format!("intake resumed after a kill in {step}"), || {
            let intake = db.read("intake");
            intake.lines().filter(|l| l.starts_with("pause ")).count()
                == intake.lines().filter(|l| l.starts_with("resume ")).count()
        });
        // The next deploy completes; a migration that completed is not run again.
        s.slipway().args(["deploy", "v2", "-t", TARGET, "--wait", "30"]).ok();
        assert_eq!(s.current(0).as_deref(), Some("v2"), "after a kill in {step}");
        assert_eq!(db.runs(), ["v2"], "after a kill in {step}");
        db.assert_resumed();
        let st = s.slipway().args(["status", "-t", TARGET, "--json"]).ok().json();
        assert!(
            st[0]["paused_since"].is_null() && st[1]["paused_since"].is_null(),
            "{st}"
        );
    }
}

#[test]
fn a_failing_schema_or_db_schema_hook_names_the_step_and_host_and_switches_nothing() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    for (key, broken) in [
        ("schema = \"", "schema = \"false && "),
        ("db_schema = \"", "db_schema = \"false && "),
    ] {
        s.env.write("slipway.toml", toml.replacen(key, broken, 1));
        let f = s.slipway().args(["deploy", "v2", "-t", TARGET]).fails(1);
        let hook = key.trim_end_matches(" = \"");
        f.stderr_has(&format!("{}: {hook} hook", s.label(0)));
        assert_eq!(s.current(0).as_deref(), Some("v1"));
        assert!(db.runs().is_empty());
        assert_eq!(db.read("intake"), "", "nothing was paused");
    }
}

#[test]
fn a_failing_resume_fails_the_command_naming_the_host_and_the_host_resumes_when_it_can() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let d = db.dir.display().to_string();
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    // resume fails on the second host while `stuck` exists.
    s.env.write(
        "slipway.toml",
        toml.replace(
            "resume = \"",
            &format!(
                "resume = \"test \\\"$SLIPWAY_HOST\\\" != \\\"{}\\\" -o ! -e {d}/stuck && ",
                s.label(1)
            ),
        ),
    );
    std::fs::write(db.dir.join("stuck"), "").unwrap();
    let f = s.slipway().args(["deploy", "v2", "-t", TARGET]).fails(1);
    f.stderr_has(&format!("{}: resume hook", s.label(1)))
        .stderr_has("intake is still paused there");
    // The switch itself stood.
    assert_eq!(s.current(1).as_deref(), Some("v2"));
    let st = s.slipway().args(["status", "-t", TARGET, "--json"]).ok().json();
    assert!(st[1]["paused_since"].is_string(), "{st}");
    assert!(st[0]["paused_since"].is_null(), "{st}");
    // Once it can, the next command that takes the lock resumes it.
    std::fs::remove_file(db.dir.join("stuck")).unwrap();
    s.slipway().args(["deploy", "v2", "-t", TARGET]).ok();
    let st = s.slipway().args(["status", "-t", TARGET, "--json"]).ok().json();
    assert!(st[1]["paused_since"].is_null(), "{st}");
    db.assert_resumed();
}

#[test]
fn the_migrations_output_reaches_the_operator_while_it_runs() {
    let (s, db) = scene(&[("v1", "1"), ("v2", "2")], "");
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let d = db.dir.display().to_string();
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    s.env.write(
        "slipway.toml",
        toml.replace(
            "migrate = \"",
            &format!("migrate = \"echo step one of the migration; while [ ! -e {d}/go ]; do sleep 0.05; done; "),
        ),
    );
    let mut child = s
        .slipway()
        .args(["deploy", "v2", "-t", TARGET])
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The line arrives while the migration still waits: it was streamed.
    let want = format!("[{}] step one of the migration", s.label(0));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l == &want) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the migration's output did not arrive while it ran: {seen:?}"),
        }
    }
    assert!(!db.dir.join("go").exists());
    std::fs::write(db.dir.join("go"), "").unwrap();
    assert!(child.wait().unwrap().success());
    // Shown once, not again when it ended.
    let rest: Vec<String> = rx.iter().collect();
    assert!(!rest.contains(&want), "{rest:?}");
    assert_eq!(db.runs(), ["v2"]);
}

#[test]
fn a_switch_that_fails_after_the_migration_says_the_database_stays_migrated_and_names_the_backup() {
    let (s, db) = scene(
        &[("v1", "1"), ("v2", "2")],
        "health = \"test \\\"$SLIPWAY_RELEASE\\\" != v2\"\nhealth_timeout = \"1s\"\n",
    );
    s.slipway().args(["deploy", "v1", "-t", TARGET]).ok();
    let f = s.slipway().args(["deploy", "v2", "-t", TARGET]).fails(3);
    f.stderr_has("(health)")
        .stderr_has("the database was migrated to schema 2 and stays there")
        .stderr_has(&format!("the backup taken before it is {}/backup-v2", db.dir.display()));
    assert_eq!(s.current(0).as_deref(), Some("v1"));
    assert_eq!(db.read("schema"), "2\n");
    db.assert_resumed();
}
