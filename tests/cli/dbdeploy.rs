//! Complex A/B with real parts: a throwaway PostgreSQL, two hosts over
//! sshd each with a real nginx that answers writes 503 + Retry-After while
//! intake is paused, and the database web app of `support/dbapp` as the
//! release. A writer sends rows through both proxies the whole time the
//! deploys, the migration, the failed deploy and the rollbacks run: no
//! acknowledged write may be lost, and writes are refused only inside the
//! deploy that paused intake.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::dbapp::{self, Mode};
use crate::support::load::Writer;
use crate::support::nginx::{self, Nginx};
use crate::support::postgres::{self, Postgres};
use crate::support::scenario::{Scenario, Scene, TARGET};
use crate::support::{Outcome, free_port};

/// A release of the shop: name, schema, mode, schemas it also runs on, and
/// how long its migration holds before it commits.
type Release<'a> = (&'a str, u32, Mode, &'a [u32], Option<Duration>);

/// Two hosts with slots behind nginx, one database.
struct Shop {
    scene: Scene,
    pg: Postgres,
    nginx: Vec<Nginx>,
}

impl Shop {
    fn new(releases: &[Release<'_>], hooks: &str) -> Shop {
        let scene = Scenario::new().ssh_hosts(2).start();
        let pg = Postgres::start(&scene.env.path("pg"));
        let mut nginx = Vec::new();
        let mut entries = Vec::new();
        for i in 0..2 {
            let ports = [free_port(), free_port()];
            let dir = scene.env.path(&format!("proxy{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            let upstream = dir.join("upstream.conf");
            nginx::write_upstream(&upstream, ports[0]);
            let flag = dir.join("intake-paused");
            let proxy = Nginx::start_with_pause_flag(&dir.join("nginx"), &upstream, &flag);
            dbapp::write_db_env(scene.root(i), &pg, &flag);
            entries.push(format!(
                "{{ host = \"{}\", ports = [{}, {}], upstream = \"{}\", reload = \"{}\" }}",
                scene.label(i),
                ports[0],
                ports[1],
                upstream.display(),
                proxy.reload_command().replace('"', "\\\"")
            ));
            nginx.push(proxy);
        }
        scene.env.write(
            "slipway.toml",
            format!(
                "[targets.{TARGET}]\nhosts = [{}]\n\n[targets.{TARGET}.service]\nstart = \"{}\"\ncheck = \"{}\"\ncheck_timeout = \"5s\"\nstop_timeout = \"5s\"\ndrain = \"1s\"\n\n[targets.{TARGET}.hooks]\nstart_after_migrate = true\n{hooks}",
                entries.join(", "),
                dbapp::START,
                dbapp::CHECK,
            ),
        );
        let shop = Shop { scene, pg, nginx };
        for (name, schema, mode, accepts, sleep) in releases {
            dbapp::add_to(&shop.scene.repo, name, *schema, *mode);
            if !accepts.is_empty() {
                dbapp::add_accepts(&shop.scene.repo, accepts);
            }
            match sleep {
                Some(d) => {
                    dbapp::add_migrate_sleep(&shop.scene.repo, *d);
                }
                None if shop.scene.repo.path.join("MIGRATE_SLEEP").exists() => {
                    shop.scene.repo.remove("MIGRATE_SLEEP");
                }
                None => {}
            }
            shop.scene.repo.commit(&format!("release {name}")).tag(name);
            shop.scene
                .env
                .slipway()
                .current_dir(&shop.scene.repo.path)
                .args(["build", name])
                .ok();
        }
        shop
    }

    fn slipway(&self, args: &[&str]) -> crate::support::Cmd {
        self.scene.slipway().args(args)
    }

    fn roots(&self) -> Vec<PathBuf> {
        (0..2).map(|i| self.scene.root(i).to_path_buf()).collect()
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        for root in self.roots() {
            for slot in ["a", "b"] {
                let p = root.join(format!(".slipway/service/{slot}.json"));
                if let Ok(text) = std::fs::read_to_string(p)
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                    && let Some(pid) = v["pid"].as_u64()
                    && let Some(p) = rustix::process::Pid::from_raw(pid as i32)
                {
                    let _ = rustix::process::kill_process_group(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

fn said(o: &Outcome) -> String {
    format!("{}{}", o.stdout(), o.stderr())
}

#[test]
fn a_migration_deploy_with_writes_arriving_loses_no_write_and_rollback_knows_the_schema() {
    if postgres::skip_if_missing("dbdeploy") || nginx::skip_if_missing("dbdeploy") {
        return;
    }
    // v1 runs on schema 1 and stays healthy on 2 (expand/contract); v2
    // adds a column; v3 fails its check. No migrate_down: the rollback
    // across the change is refused until allowed.
    let hooks = dbapp::HOOKS.replace("migrate_down = \"bin/migrate --down\"\n", "");
    let shop = Shop::new(
        &[
            ("v1", 1, Mode::Ok, &[1, 2], None),
            ("v2", 2, Mode::Ok, &[], None),
            ("v3", 2, Mode::FailCheck, &[], None),
        ],
        &hooks,
    );
    shop.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    assert_eq!(dbapp::db_schema(&shop.pg), 1);
    let writers: Vec<Writer> = shop.nginx.iter().map(|n| Writer::start(&n.url("/write"))).collect();
    for w in &writers {
        w.wait_acked(20, 10);
    }

    // v2: backup, pause, migrate once, start and check, switch, resume.
    let from = Instant::now();
    let d = shop.slipway(&["deploy", "v2", "-t", TARGET]).ok();
    let to = Instant::now();
    let text = said(&d);
    assert!(text.contains("intake was paused for"), "{text}");
    assert_eq!(dbapp::db_schema(&shop.pg), 2);
    let ups: Vec<_> = dbapp::migrations(&shop.pg)
        .into_iter()
        .filter(|m| m.version == 2)
        .collect();
    assert_eq!(ups.len(), 1, "the migration to 2 ran exactly once: {ups:?}");
    let history = shop.slipway(&["history", "-t", TARGET, "--json"]).ok().json();
    let backups: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["to"] == "v2" && r["action"] == "activate")
        .filter_map(|r| r["backup"].as_str())
        .collect();
    assert_eq!(backups.len(), 2, "both hosts record the backup: {history}");
    assert!(std::path::Path::new(backups[0]).is_file(), "{}", backups[0]);
    // The backup ran before the migration, on migrate_on only.
    let calls = dbapp::calls(shop.scene.root(0));
    let backup_at = calls.iter().position(|c| c.contains("backup"));
    let migrate_at = calls.iter().rposition(|c| c.contains("migrate"));
    assert!(backup_at.is_some() && backup_at < migrate_at, "{calls:?}");
    assert!(
        dbapp::calls(shop.scene.root(1)).is_empty(),
        "host 2 ran no backup or migration"
    );

    // v3 fails its check: it never takes a request, nothing is migrated.
    shop.slipway(&["deploy", "v3", "-t", TARGET]).fails(3);
    // Rollback to v1 crosses the schema change: refused, then allowed.
    let refused = shop.slipway(&["rollback", "-t", TARGET]).fails(7);
    assert!(
        refused
            .stderr()
            .contains("v1 expects schema 1, but the database is at schema 2"),
        "{refused}"
    );
    shop.slipway(&["rollback", "-t", TARGET, "--allow-schema-rollback"])
        .ok();
    for i in 0..2 {
        assert_eq!(shop.scene.current(i).as_deref(), Some("v1"));
    }
    std::thread::sleep(Duration::from_secs(1));

    let per_release = dbapp::items_per_release(&shop.pg);
    assert!(!per_release.contains_key("v3"), "v3 answered a write: {per_release:?}");
    assert!(
        per_release.contains_key("v2") && per_release.contains_key("v1"),
        "{per_release:?}"
    );
    let reports: Vec<_> = writers.into_iter().map(Writer::stop).collect();
    let stored = dbapp::item_ids(&shop.pg);
    assert!(
        reports.iter().any(|r| r.refused_503 > 0),
        "intake was paused during the migration: {}",
        reports[0]
    );
    for report in reports {
        assert_eq!(report.failures, 0, "{report}");
        assert!(
            report.refused_outside(from, to).is_empty(),
            "writes were refused outside the deploy that paused intake: {report}"
        );
        let lost: Vec<_> = report.acked_set().difference(&stored).cloned().collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
    assert_eq!(
        dbapp::migrations(&shop.pg).iter().filter(|m| m.version == 2).count(),
        1,
        "nothing migrated again"
    );
}

#[test]
fn a_client_killed_mid_migration_leaves_the_migration_done_once_intake_on_and_no_write_lost() {
    if postgres::skip_if_missing("dbdeploy kill") || nginx::skip_if_missing("dbdeploy kill") {
        return;
    }
    let shop = Shop::new(
        &[
            ("v1", 1, Mode::Ok, &[1, 2], None),
            ("v2", 2, Mode::Ok, &[], Some(Duration::from_secs(3))),
        ],
        dbapp::HOOKS,
    );
    shop.slipway(&["deploy", "v1", "-t", TARGET]).ok();
    let writers: Vec<Writer> = shop.nginx.iter().map(|n| Writer::start(&n.url("/write"))).collect();
    for w in &writers {
        w.wait_acked(20, 10);
    }
    // Kill the client while v2's migration holds its transaction.
    let mut child = shop
        .slipway(&["deploy", "v2", "-t", TARGET])
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::support::wait_for(30, "v2's migration to start", || {
        dbapp::calls(shop.scene.root(0)).iter().any(|c| c.contains("migrate"))
            && shop
                .pg
                .psql("select count(*) from pg_locks where locktype = 'advisory'")
                != "0"
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The host finishes the migration, then resumes intake on its own.
    crate::support::wait_for(30, "the migration to commit", || dbapp::db_schema(&shop.pg) == 2);
    crate::support::wait_for(15, "intake to be resumed on every host", || {
        (0..2).all(|i| !shop.scene.env.path(&format!("proxy{}/intake-paused", i + 1)).exists())
    });
    // The next deploy completes without migrating again.
    shop.slipway(&["deploy", "v2", "-t", TARGET, "--wait", "60"]).ok();
    for i in 0..2 {
        assert_eq!(shop.scene.current(i).as_deref(), Some("v2"));
    }
    assert_eq!(
        dbapp::migrations(&shop.pg).iter().filter(|m| m.version == 2).count(),
        1,
        "the migration ran once"
    );
    std::thread::sleep(Duration::from_millis(500));
    let reports: Vec<_> = writers.into_iter().map(Writer::stop).collect();
    let stored = dbapp::item_ids(&shop.pg);
    for report in reports {
        // A host whose client is gone resumes intake at once, while the
        // migration on migrate_on may still hold its locks: a write can
        // then wait past the writer's 2 s timeout. That is the only failure
        // allowed; none is a refusal or an error answer.
        for f in &report.first_failures {
            assert!(
                f.contains("os error 11") || f.contains("timed out"),
                "a write failed other than by waiting on the migration: {report}"
            );
        }
        let lost: Vec<_> = report.acked_set().difference(&stored).cloned().collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
}
