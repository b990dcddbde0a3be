//! Fleet commands through the real binary over three real sshd hosts on
//! loopback: deploy, health checks and reverts, unreachable hosts,
//! hooks and their environment, rolling batches, hook timeouts, rollback,
//! canaries and locks.
//!
//! Every test starts its own three servers; each host is an `ssh://` entry
//! with its own root under the test directory, so the hosts share nothing but
//! the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::sshd::{self, Sshd};
use crate::support::{Cmd, Env, Outcome, hold_lock, noise, wait_for};

/// Three hosts, one `prod` target over them, and a local store.
struct Fleet {
    env: Env,
    hosts: Vec<Sshd>,
    roots: Vec<PathBuf>,
    /// The host entries as written in `slipway.toml` (`ssh://alias/root`).
    labels: Vec<String>,
    ssh_config: PathBuf,
}

impl Fleet {
    /// Start three sshd and write a `prod` target; `extra` goes after `hosts`
    /// (target keys, then e.g. a `[targets.prod.hooks]` table).
    fn start(extra: &str) -> Fleet {
        let hosts: Vec<Sshd> = (0..3).map(|_| Sshd::start()).collect();
        let env = Env::new();
        let refs: Vec<&Sshd> = hosts.iter().collect();
        let ssh_config = sshd::write_ssh_config(&env.path("ssh_config"), &refs);
        let roots: Vec<PathBuf> = (1..=3).map(|i| env.path(&format!("host{i}"))).collect();
        let labels = hosts.iter().zip(&roots).map(|(h, r)| h.url(r)).collect();
        let fleet = Fleet {
            env,
            hosts,
            roots,
            labels,
            ssh_config,
        };
        fleet.configure(extra);
        fleet
    }

    /// Rewrite `slipway.toml` with other target settings.
    fn configure(&self, extra: &str) {
        let hosts: Vec<String> = self.labels.iter().map(|l| format!("\"{l}\"")).collect();
        self.env.write(
            "slipway.toml",
            format!("[targets.prod]\nhosts = [{}]\n{extra}", hosts.join(", ")),
        );
    }

    /// The binary, reaching the hosts through the test's ssh config.
    fn slipway(&self) -> Cmd {
        self.env.slipway().via_ssh(&self.ssh_config)
    }

    /// Build a small release named `name`; returns its id.
    fn build(&self, name: &str) -> String {
        self.env.write("site/index.html", format!("<h1>{name}</h1>\n"));
        self.env.write("site/lib/app.txt", "the same in every release\n");
        self.slipway()
            .args(["build", "--dir", "site", "--name", name])
            .ok()
            .line()
    }

    /// Build each of `names` in turn.
    fn build_all(&self, names: &[&str]) {
        for name in names {
            self.build(name);
        }
    }

    fn deploy(&self, rel: &str) -> Outcome {
        self.slipway().args(["deploy", rel, "-t", "prod"]).ok()
    }

    /// Where `current` points on host `i`, read on the host's file system.
    fn link(&self, i: usize) -> String {
        std::fs::read_link(self.roots[i].join("current"))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|e| format!("(no current: {e})"))
    }

    /// `current` of every host.
    fn links(&self) -> Vec<String> {
        (0..3).map(|i| self.link(i)).collect()
    }

    fn assert_all_on(&self, rel: &str) {
        let want = format!("releases/{rel}");
        assert_eq!(
            self.links(),
            vec![want.clone(), want.clone(), want],
            "every host on {rel}"
        );
    }

    /// `status -t prod --json`.
    fn status(&self) -> Value {
        self.slipway().args(["status", "-t", "prod", "--json"]).ok().json()
    }

    /// Host `i`'s history through `history --json`, oldest first, as
    /// `action from->to`.
    fn history(&self, i: usize) -> Vec<String> {
        let out = self.slipway().args(["history", "-t", "prod", "--json"]).ok();
        let mut rows: Vec<String> = out
            .json()
            .as_array()
            .unwrap_or_else(|| panic!("history is an array: {out}"))
            .iter()
            .filter(|r| r["host"] == self.labels[i].as_str())
            // `healthy` records (promotion gates) are not switches.
            .filter(|r| r["action"] != "healthy")
            .map(|r| {
                format!(
                    "{} {}->{}",
                    r["action"].as_str().unwrap(),
                    r["from"].as_str().unwrap_or("none"),
                    r["to"].as_str().unwrap()
                )
            })
            .collect();
        rows.reverse();
        rows
    }

    /// The host's root as the host sees it (canonical: no symlinks).
    fn canonical_root(&self, i: usize) -> PathBuf {
        std::fs::canonicalize(&self.roots[i]).unwrap()
    }
}

/// The report row of `host` in a fleet `--json` report.
fn row<'a>(report: &'a Value, host: &str) -> &'a Value {
    report
        .as_array()
        .and_then(|a| a.iter().find(|r| r["host"] == host))
        .unwrap_or_else(|| panic!("no row for {host} in {report:#}"))
}

/// Whether `rel` is marked bad in a `status --json` row.
fn bad(status_row: &Value, rel: &str) -> bool {
    status_row["releases"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == rel))
        .unwrap_or_else(|| panic!("no release {rel} in {status_row:#}"))["bad"]
        .as_bool()
        .unwrap()
}

/// `KEY=VALUE` lines of a file a hook wrote.
fn env_file(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the hook wrote no {}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn fleet_deploy_to_three_hosts_over_ssh_converges_and_reports_each_host() {
    let f = Fleet::start("");
    let v1 = f.build("v1");
    let v2 = f.build("v2");
    f.deploy("v1");
    f.assert_all_on("v1");
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).ok();
    f.assert_all_on("v2");
    for root in &f.roots {
        assert_eq!(
            std::fs::read_to_string(root.join("current/index.html")).unwrap(),
            "<h1>v2</h1>\n"
        );
    }

    // One object per host, in the target's order, `host` first.
    let report = out.json();
    let rows = report.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{out}");
    for (r, label) in rows.iter().zip(&f.labels) {
        assert_eq!(r["host"], label.as_str(), "{out}");
        assert_eq!(r["result"], "ok", "{out}");
        assert_eq!(r["phase"], "done", "{out}");
        assert_eq!(r["current"], "v2", "{out}");
        assert_eq!(r["previous"], "v1", "{out}");
    }
    let text = out.stdout();
    let lines: Vec<&str> = text.lines().collect();
    let objects = lines.iter().filter(|l| **l == "  {").count();
    assert_eq!(objects, 3, "{out}");
    for (i, l) in lines.iter().enumerate() {
        if *l == "  {" {
            assert!(
                lines[i + 1].starts_with("    \"host\": "),
                "`host` is the first key: {out}"
            );
        }
    }

    let status = f.status();
    for (i, label) in f.labels.iter().enumerate() {
        let s = &status[i];
        assert_eq!(s["host"], label.as_str(), "{status:#}");
        assert_eq!(s["current"], "v2", "{status:#}");
        assert_eq!(s["current_id"], v2.as_str(), "{status:#}");
        assert_eq!(s["previous"], "v1", "{status:#}");
        assert!(!bad(s, "v1") && !bad(s, "v2"), "{status:#}");
        assert_eq!(s["releases"][0]["id"], v1.as_str(), "{status:#}");
    }
    let text = f.slipway().args(["status", "-t", "prod"]).ok().stdout();
    assert!(
        text.starts_with("converged: all 3 hosts on v2\n"),
        "status starts with the summary: {text}"
    );
    for i in 0..3 {
        assert_eq!(f.history(i), ["activate none->v1", "activate v1->v2"]);
    }

    // Deploying what every host already runs changes nothing.
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).ok();
    for r in out.json().as_array().unwrap() {
        assert_eq!(r["result"], "unchanged", "{out}");
    }
    assert_eq!(f.history(0).len(), 2);
}

#[test]
fn fleet_health_failing_on_one_host_switches_every_host_back_and_exits_3() {
    let f = Fleet::start("");
    let ids: Vec<String> = ["v1", "v2", "v3"].iter().map(|r| f.build(r)).collect();
    f.deploy("v1");
    f.deploy("v2");
    // Health fails on the second host only; after_activate logs every run.
    f.configure(&format!(
        "shared = [\"log\"]\n[targets.prod.hooks]\n\
         after_activate = 'echo \"$SLIPWAY_RELEASE $SLIPWAY_PREVIOUS $SLIPWAY_ID\" >> \"$SLIPWAY_ROOT/shared/log/after\"'\n\
         health = 'test \"$SLIPWAY_HOST\" != \"{}\"'\nhealth_timeout = \"2s\"\n",
        f.labels[1]
    ));
    let out = f.slipway().args(["deploy", "v3", "-t", "prod", "--json"]).fails(3);
    f.assert_all_on("v2");

    let report = out.json();
    assert_eq!(report.as_array().unwrap().len(), 3, "{out}");
    let failed = row(&report, &f.labels[1]);
    assert_eq!(failed["phase"], "health", "{out}");
    assert_eq!(failed["result"], "reverted", "{out}");
    assert_eq!(failed["current"], "v2", "{out}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.starts_with("health hook `test "), "{out}");
    assert!(reason.contains("failed with exit status 1"), "{out}");
    for i in [0, 2] {
        let r = row(&report, &f.labels[i]);
        assert_eq!(r["phase"], "revert", "{out}");
        assert_eq!(r["result"], "reverted", "{out}");
        assert_eq!(r["current"], "v2", "{out}");
        assert_eq!(r["previous"], "v2", "{out}");
    }
    out.stderr_has(&format!(
        "error: activation failed on {} (health): health hook `",
        f.labels[1]
    ))
    .stderr_has("every host that was switched is back on its previous release");

    let status = f.status();
    for i in 0..3 {
        assert_eq!(status[i]["current"], "v2", "{status:#}");
        assert!(bad(&status[i], "v3"), "v3 is marked bad on host {i}: {status:#}");
        assert!(!bad(&status[i], "v2"), "{status:#}");
        assert_eq!(
            f.history(i),
            [
                "activate none->v1",
                "activate v1->v2",
                "activate v2->v3",
                "revert v3->v2"
            ]
        );
        // after_activate ran for v3, then again for v2 once switched back,
        // with the environment of each switch.
        let log = std::fs::read_to_string(f.roots[i].join("shared/log/after")).unwrap();
        assert_eq!(
            log,
            format!("v3 v2 {}\nv2 v3 {}\n", ids[2], ids[1]),
            "after_activate on host {i}"
        );
    }
}

#[test]
fn fleet_with_an_unreachable_host_activates_nothing_anywhere() {
    let mut f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    f.hosts[2].stop();
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "-q"]).fails(1);
    out.one_line_error()
        .stderr_has(&format!("error: push failed on 1 of 3 host(s) ({}): ", f.labels[2]));
    out.stderr_has("; nothing was activated, and a re-run sends only what is missing");
    assert_eq!(f.link(0), "releases/v1");
    assert_eq!(f.link(1), "releases/v1");
    assert_eq!(f.link(2), "releases/v1");

    // v2 is staged on the reachable hosts now; activating it still needs every host.
    let out = f.slipway().args(["activate", "v2", "-t", "prod", "-q"]).fails(1);
    out.one_line_error().stderr_has(&format!(
        "error: activation: connecting failed on 1 of 3 host(s) ({}): ",
        f.labels[2]
    ));
    for i in 0..3 {
        assert_eq!(f.link(i), "releases/v1");
    }
    let out = f
        .slipway()
        .args(["history", "-t", "prod", "--json", "--hosts"])
        .arg(format!("{},{}", f.labels[0], f.labels[1]))
        .ok();
    assert_eq!(
        out.json().as_array().unwrap().len(),
        2,
        "one activation per host: {out}"
    );
}

#[test]
fn fleet_hooks_see_their_environment_and_a_failing_before_activate_switches_nothing() {
    let f = Fleet::start("");
    let hooks = "shared = [\"log\"]\n[targets.prod.hooks]\n\
        before_activate = 'printf \"%s\\n\" \"pwd=$(pwd)\" \"current=$(readlink \"$SLIPWAY_ROOT/current\")\" \"release=$SLIPWAY_RELEASE\" > \"$SLIPWAY_ROOT/shared/log/before-$SLIPWAY_RELEASE\"'\n\
        after_activate = 'printf \"%s\\n\" \"release=$SLIPWAY_RELEASE\" \"id=$SLIPWAY_ID\" \"previous=$SLIPWAY_PREVIOUS\" \"root=$SLIPWAY_ROOT\" \"host=$SLIPWAY_HOST\" \"pwd=$(pwd)\" > \"$SLIPWAY_ROOT/shared/log/after-$SLIPWAY_RELEASE\"; echo \"reloaded $SLIPWAY_RELEASE\"'\n";
    f.configure(hooks);
    let v1 = f.build("v1");
    let v2 = f.build("v2");
    f.deploy("v1");
    let out = f.deploy("v2");
    f.assert_all_on("v2");
    for i in 0..3 {
        let root = f.canonical_root(i);
        let log = f.roots[i].join("shared/log");
        let after = env_file(&log.join("after-v2"));
        let want = |k: &str, v: &str| assert_eq!(after.get(k).map(String::as_str), Some(v), "{k} on host {i}");
        want("release", "v2");
        want("id", &v2);
        want("previous", "v1");
        want("root", &root.display().to_string());
        want("host", &f.labels[i]);
        want("pwd", &root.join("releases/v2").display().to_string());
        let first = env_file(&log.join("after-v1"));
        assert_eq!(first["previous"], "", "nothing was current before v1");
        assert_eq!(first["id"], v1);

        // before_activate ran in the staged release, before the switch.
        let before = env_file(&log.join("before-v2"));
        assert_eq!(before["pwd"], root.join("releases/v2").display().to_string());
        assert_eq!(before["current"], "releases/v1");
        assert_eq!(before["release"], "v2");

        // Hook output is shown prefixed by the host.
        out.stderr_has(&format!("[{}] reloaded v2", f.labels[i]));
    }

    // A before_activate that fails on one host stops the deploy: nothing switched.
    f.configure(&format!(
        "shared = [\"log\"]\n[targets.prod.hooks]\nbefore_activate = 'echo checking; test \"$SLIPWAY_HOST\" != \"{}\"'\n",
        f.labels[0]
    ));
    f.build("v3");
    let out = f.slipway().args(["deploy", "v3", "-t", "prod", "--json"]).fails(1);
    f.assert_all_on("v2");
    out.stderr_has(&format!(
        "error: activation: before_activate failed on 1 of 3 host(s) ({}): before_activate hook `",
        f.labels[0]
    ))
    .stderr_has("; nothing changed");
    let report = out.json();
    let failed = row(&report, &f.labels[0]);
    assert_eq!(failed["phase"], "before_activate", "{out}");
    assert_eq!(failed["result"], "failed", "{out}");
    assert_eq!(failed["output"], "checking", "{out}");
    for i in 0..3 {
        assert_eq!(f.history(i), ["activate none->v1", "activate v1->v2"]);
    }
}

#[test]
fn fleet_rolling_deploy_stops_at_the_failing_batch_and_reverts_the_switched_hosts() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    f.configure(&format!(
        "[targets.prod.hooks]\nhealth = 'test \"$SLIPWAY_HOST\" != \"{}\"'\nhealth_timeout = \"1s\"\n",
        f.labels[1]
    ));
    let out = f
        .slipway()
        .args(["deploy", "v2", "-t", "prod", "--batch", "1", "--json"])
        .fails(3);
    f.assert_all_on("v1");
    out.stderr_has(&format!("batch 1: {}", f.labels[0]))
        .stderr_has(&format!("batch 2: {}", f.labels[1]));
    assert!(!out.stderr().contains("batch 3"), "{out}");
    assert_eq!(f.history(0), ["activate none->v1", "activate v1->v2", "revert v2->v1"]);
    assert_eq!(f.history(1), ["activate none->v1", "activate v1->v2", "revert v2->v1"]);
    assert_eq!(f.history(2), ["activate none->v1"], "the third host was never switched");
    let report = out.json();
    assert_eq!(row(&report, &f.labels[0])["result"], "reverted", "{out}");
    assert_eq!(row(&report, &f.labels[1])["phase"], "health", "{out}");
    assert_eq!(row(&report, &f.labels[2])["result"], "not_started", "{out}");
    let status = f.status();
    assert!(bad(&status[0], "v2") && bad(&status[1], "v2"), "{status:#}");
    assert!(!bad(&status[2], "v2"), "never activated there: {status:#}");
}

#[test]
fn fleet_hung_hook_is_killed_at_its_timeout_and_the_host_switched_back() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    let pids = f.env.path("hook-pids");
    f.configure(&format!(
        "[targets.prod.hooks]\nhook_timeout = \"2s\"\n\
         after_activate = 'if [ \"$SLIPWAY_HOST\" = \"{}\" ]; then echo $$ >> \"{}\"; exec sleep 30; fi'\n",
        f.labels[1],
        pids.display()
    ));
    let started = Instant::now();
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).fails(1);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "the hook was not killed in time: {took:?}"
    );
    f.assert_all_on("v1");
    let report = out.json();
    let hung = row(&report, &f.labels[1]);
    assert_eq!(hung["phase"], "after_activate", "{out}");
    assert_eq!(hung["result"], "reverted", "{out}");
    assert!(
        hung["reason"].as_str().unwrap().contains("was killed after 2 s"),
        "{out}"
    );
    // The hook hung once for v2 and once more after the switch back to v1;
    // both sleeps are gone.
    let recorded = std::fs::read_to_string(&pids).unwrap();
    let recorded: Vec<u32> = recorded.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(recorded.len(), 2, "{out}");
    for pid in recorded {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !sshd::alive(pid) || !String::from_utf8_lossy(&cmdline).contains("sleep"),
            "the hook's sleep ({pid}) outlived its timeout"
        );
    }
}

#[test]
fn fleet_rollback_goes_back_everywhere_and_refuses_when_hosts_disagree() {
    let f = Fleet::start("");
    f.build_all(&["v1", "v2", "v3"]);
    f.deploy("v1");
    f.deploy("v2");
    let out = f.slipway().args(["rollback", "-t", "prod", "--json"]).ok();
    f.assert_all_on("v1");
    for r in out.json().as_array().unwrap() {
        assert_eq!(r["result"], "ok", "{out}");
    }
    let status = f.status();
    for i in 0..3 {
        assert!(bad(&status[i], "v2"), "a rollback marks the release it left bad");
        assert_eq!(f.history(i).last().unwrap(), "rollback v2->v1");
    }

    // Back to v2 everywhere, then v3 on the first host only: the hosts now
    // disagree about what "previous" is.
    f.slipway().args(["activate", "v2", "-t", "prod"]).ok();
    f.slipway()
        .args(["deploy", "v3", "-t", "prod", "--hosts", &f.labels[0]])
        .ok();
    assert_eq!(f.links(), ["releases/v3", "releases/v2", "releases/v2"]);
    let out = f.slipway().args(["rollback", "-t", "prod", "-q"]).fails(1);
    out.one_line_error().stderr_has(&format!(
        "error: the hosts of `prod` disagree about what to roll back to: {} (on v2), {} (on v2) -> v1; {} (on v3) -> v2; choose one with `--to REL`",
        f.labels[1], f.labels[2], f.labels[0]
    ));
    assert_eq!(f.links(), ["releases/v3", "releases/v2", "releases/v2"]);

    f.slipway().args(["rollback", "-t", "prod", "--to", "v1"]).ok();
    f.assert_all_on("v1");
}

#[test]
fn fleet_rollback_with_a_host_down_changes_nothing_unless_told_to_skip_it() {
    let mut f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    f.deploy("v2");
    f.hosts[1].stop();
    let out = f.slipway().args(["rollback", "-t", "prod", "-q"]).fails(1);
    out.one_line_error().stderr_has(&format!(
        "error: rollback: connecting failed on 1 of 3 host(s) ({}): ",
        f.labels[1]
    ));
    f.assert_all_on("v2");

    let out = f
        .slipway()
        .args(["rollback", "-t", "prod", "--skip-unreachable", "--json"])
        .ok();
    assert_eq!(f.links(), ["releases/v1", "releases/v2", "releases/v1"]);
    out.stderr_has(&format!("warning: skipping {}: ", f.labels[1]));
    let report = out.json();
    assert_eq!(row(&report, &f.labels[0])["result"], "ok", "{out}");
    assert_eq!(row(&report, &f.labels[1])["result"], "unreachable", "{out}");
    assert_eq!(row(&report, &f.labels[2])["result"], "ok", "{out}");
}

#[test]
fn fleet_canary_deploy_touches_only_the_named_host_and_status_shows_divergence() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    let out = f
        .slipway()
        .args(["deploy", "v2", "-t", "prod", "--json", "--hosts", &f.labels[1]])
        .ok();
    let report = out.json();
    assert_eq!(report.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(report[0]["host"], f.labels[1].as_str());
    assert_eq!(f.links(), ["releases/v1", "releases/v2", "releases/v1"]);
    assert!(!f.roots[0].join("releases/v2").exists(), "not even pushed elsewhere");
    assert!(!f.roots[2].join("releases/v2").exists(), "not even pushed elsewhere");
    let text = f.slipway().args(["status", "-t", "prod"]).ok().stdout();
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(first, format!("diverged: 2 of 3 hosts on v1; {} on v2", f.labels[1]));

    // An unknown host is a usage error naming the target's hosts.
    let out = f
        .slipway()
        .args(["deploy", "v2", "-t", "prod", "--hosts", "app9"])
        .fails(2);
    out.one_line_error()
        .stderr_has("error: `app9` is not a host of target `prod` (its hosts: ");
}

#[test]
fn fleet_activate_fails_fast_on_a_held_lock_naming_the_holder_or_waits_for_it() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.build("v3");
    f.deploy("v1");
    f.deploy("v2");
    let release = f.env.path("release-lock");
    let mut holder = hold_lock(&f.roots[1], &release);

    let out = f.slipway().args(["activate", "v1", "-t", "prod", "-q"]).fails(4);
    out.one_line_error()
        .stderr_has(&format!(
            "error: activation: locking failed on 1 of 3 host(s) ({}): `{}` is locked by alice@laptop, running `slipway activate v9` since 2026-01-01T00:00:00Z (",
            f.labels[1],
            f.canonical_root(1).display()
        ))
        .stderr_has(" days ago; host pid 1); retry when it is done, or pass `--wait SECS`; nothing changed");
    f.assert_all_on("v2");
    // A deploy pushes everywhere (a push may run beside a lock holder), then stops.
    let out = f.slipway().args(["deploy", "v3", "-t", "prod", "--json"]).fails(4);
    out.stderr_has("is locked by alice@laptop");
    let report = out.json();
    assert_eq!(row(&report, &f.labels[1])["phase"], "lock", "{out}");
    assert_eq!(row(&report, &f.labels[1])["result"], "failed", "{out}");
    for i in [0, 2] {
        assert_eq!(row(&report, &f.labels[i])["result"], "not_started", "{out}");
        assert!(f.roots[i].join("releases/v3").is_dir(), "staged on host {i}");
    }
    f.assert_all_on("v2");
    for i in 0..3 {
        assert_eq!(f.history(i).len(), 2, "nothing recorded on host {i}");
    }

    // With --wait, it takes the other hosts' locks, waits for this one, then switches.
    let waiting = f
        .slipway()
        .args(["activate", "v1", "-t", "prod", "--wait", "10"])
        .cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let info = f.roots[0].join(".slipway/lock.info");
    wait_for(20, "the waiting activate to lock the first host", || {
        std::fs::read_to_string(&info).is_ok_and(|t| t.contains("--wait 10"))
    });
    assert_eq!(f.link(1), "releases/v2", "nothing switched while waiting");
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().success());
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "activate --wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    f.assert_all_on("v1");
}

#[test]
fn fleet_host_whose_connection_drops_after_switching_is_reconnected_and_switched_back() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    // The second host's `serve` dies during its health check: the host is
    // fine, its connection is gone.
    f.configure(&format!(
        "[targets.prod.hooks]\nhealth = 'if [ \"$SLIPWAY_HOST\" = \"{}\" ]; then kill -9 $PPID; fi'\n",
        f.labels[1]
    ));
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).fails(1);
    f.assert_all_on("v1");
    out.stderr_has(&format!("{}: switched back to v1", f.labels[1]))
        .stderr_has("every host that was switched is back on its previous release");
    let report = out.json();
    let lost = row(&report, &f.labels[1]);
    assert_eq!(lost["phase"], "health", "{out}");
    assert_eq!(lost["result"], "reverted", "{out}");
    assert!(lost["reason"].as_str().unwrap().contains("connection lost"), "{out}");
    assert_eq!(f.history(1), ["activate none->v1", "activate v1->v2", "revert v2->v1"]);
}

#[test]
fn fleet_host_that_cannot_be_switched_back_is_reported_and_the_exit_is_not_3() {
    let f = Fleet::start("");
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    // The second host goes away entirely (its sshd and its session) while
    // its health check runs: nobody can switch it back.
    f.configure(&format!(
        "[targets.prod.hooks]\nhealth = 'if [ \"$SLIPWAY_HOST\" = \"{}\" ]; then kill -9 {} $PPID; fi'\n",
        f.labels[1],
        f.hosts[1].pid()
    ));
    let out = f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).fails(1);
    assert_eq!(f.links(), ["releases/v1", "releases/v2", "releases/v1"]);
    out.stderr_has(&format!(
        "these hosts were lost during the switch and could not be checked: {}",
        f.labels[1]
    ));
    let report = out.json();
    let stuck = row(&report, &f.labels[1]);
    assert_eq!(stuck["result"], "failed", "{out}");
    assert_eq!(stuck["current"], "v2", "{out}");
    let reason = stuck["reason"].as_str().unwrap();
    assert!(reason.contains("connection lost"), "the first failure is kept: {out}");
    assert!(
        reason.contains("could not reconnect to check whether it switched"),
        "{out}"
    );
    for i in [0, 2] {
        assert_eq!(row(&report, &f.labels[i])["result"], "reverted", "{out}");
    }
}

#[test]
fn fleet_expect_that_one_host_does_not_match_switches_nothing_and_exits_6() {
    let f = Fleet::start(
        "[targets.prod.hooks]\nafter_activate = 'echo \"$SLIPWAY_RELEASE\" >> \"$SLIPWAY_ROOT/.after\"'\n",
    );
    f.build_all(&["v1", "v2", "v3"]);
    f.deploy("v1");
    f.slipway()
        .args(["deploy", "v2", "-t", "prod", "--hosts", &f.labels[2]])
        .ok();
    f.slipway().args(["push", "v3", "-t", "prod"]).ok();
    let out = f
        .slipway()
        .args(["activate", "v3", "-t", "prod", "--expect", "v1", "-q", "--json"])
        .fails(6);
    out.one_line_error().stderr_has(&format!(
        "error: activation failed on 1 of 3 host(s) ({}): the host is on `v2`, not `v1` (--expect); nothing changed",
        f.labels[2]
    ));
    let report = out.json();
    assert_eq!(row(&report, &f.labels[2])["result"], "failed", "{out}");
    assert_eq!(row(&report, &f.labels[0])["result"], "not_started", "{out}");
    assert_eq!(f.links(), ["releases/v1", "releases/v1", "releases/v2"]);
    let status = f.status();
    for i in 0..3 {
        assert!(!bad(&status[i], "v3"), "v3 did nothing wrong: {status:#}");
        let hooks_ran = std::fs::read_to_string(f.roots[i].join(".after")).unwrap();
        assert!(!hooks_ran.contains("v3"), "no host switched to v3: {hooks_ran}");
    }
    assert_eq!(f.history(0), ["activate none->v1"]);

    // `activate` re-activates a host already on the release (it succeeds
    // and is recorded: `releases.rs`), so `--expect` is checked there too.
    f.slipway()
        .args(["activate", "v2", "-t", "prod", "--expect", "v1", "--json"])
        .fails(6);
    let hosts = format!("{},{}", f.labels[0], f.labels[1]);
    f.slipway()
        .args(["activate", "v3", "-t", "prod", "--expect", "v1", "--hosts", &hosts])
        .ok();
    assert_eq!(f.links(), ["releases/v3", "releases/v3", "releases/v2"]);
}

/// Two hosts fail for different reasons: the exit code and the reason
/// quoted come from the same host (it used to exit 6 while quoting
/// another host's "not on this host").
#[test]
fn fleet_error_quotes_the_host_whose_failure_gives_the_exit_code() {
    let f = Fleet::start("");
    f.build_all(&["v1", "v2", "v3"]);
    f.deploy("v1");
    f.slipway()
        .args(["deploy", "v2", "-t", "prod", "--hosts", &f.labels[2]])
        .ok();
    let others = format!("{},{}", f.labels[1], f.labels[2]);
    f.slipway().args(["push", "v3", "-t", "prod", "--hosts", &others]).ok();
    let out = f
        .slipway()
        .args(["activate", "v3", "-t", "prod", "--expect", "v1"])
        .fails(6);
    out.one_line_error().stderr_has(&format!(
        "error: activation failed on 2 of 3 host(s) ({}, {}): the host is on `v2`, not `v1` (--expect); nothing changed",
        f.labels[2], f.labels[0]
    ));
    assert_eq!(f.links(), ["releases/v1", "releases/v1", "releases/v2"]);
}

/// Hosts lacking the whole release share one bundle stream: tee(2) gives
/// each frame to every host but the last, which takes the frame itself. A
/// host that dies mid-stream, the first or the last, is dropped: the
/// others stage the release whole, the failure names the host, and a
/// re-run completes it.
#[test]
fn fleet_push_with_a_host_dying_mid_stream_stages_the_others_and_a_rerun_completes_it() {
    let f = Fleet::start("");
    f.env.write("site/a.txt", "the same in every release\n");
    for (rel, victim, seed) in [("v1", 0, 1), ("v2", 2, 3)] {
        // Two files of several stream chunks each: the host stops once the
        // first is verified, with megabytes of the second still to come.
        let b1 = noise(3 << 20, seed);
        let b2 = noise(3 << 20, seed + 1);
        f.env.write("site/b1.bin", &b1);
        f.env.write("site/b2.bin", &b2);
        f.slipway().args(["build", "--dir", "site", "--name", rel]).ok();
        std::fs::create_dir_all(&f.roots[victim]).unwrap();
        let fired = f.env.path(&format!("{rel}.fault"));
        let out = f
            .slipway()
            .env(
                "SLIPWAY_REMOTE_BIN",
                format!(
                    "env SLIPWAY_FAULT=mid-objects@{} SLIPWAY_FAULT_ONCE={} {}",
                    f.canonical_root(victim).display(),
                    fired.display(),
                    crate::support::bin()
                ),
            )
            .args(["push", rel, "-t", "prod", "--json"])
            .fails(1);
        // --json still reports every host: scripts learn which ones have it.
        let rows = out.json();
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), f.labels.len(), "one row per host: {out}");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["host"], f.labels[i].as_str(), "{out}");
            if i == victim {
                assert_eq!(row["result"], "failed", "{out}");
                assert!(row["reason"].as_str().unwrap().contains("connection lost"), "{out}");
                assert!(row["bytes_sent"].is_null(), "{out}");
            } else {
                assert_eq!(row["result"], "ok", "{out}");
                assert!(row["reason"].is_null(), "{out}");
                assert!(row["bytes_sent"].as_u64().unwrap() > 6 << 20, "{out}");
            }
        }
        out.one_line_error()
            .stderr_has(&format!(
                "error: push failed on 1 of 3 host(s) ({}): connection lost during the push of `{rel}`",
                f.labels[victim]
            ))
            .stderr_has("fault injected at `mid-objects`");
        assert!(fired.exists(), "{rel}: the fault fired");
        for (i, root) in f.roots.iter().enumerate() {
            let staged = root.join("releases").join(rel);
            assert_eq!(staged.exists(), i != victim, "{rel} on host {i}: {out}");
            if i != victim {
                assert!(std::fs::read(staged.join("b1.bin")).unwrap() == b1, "{rel} on host {i}");
                assert!(std::fs::read(staged.join("b2.bin")).unwrap() == b2, "{rel} on host {i}");
            }
        }

        // The re-run sends nothing to the hosts that have it.
        let out = f.slipway().args(["push", rel, "-t", "prod", "--json"]).ok();
        for (i, row) in out.json().as_array().unwrap().iter().enumerate() {
            let sent = row["bytes_needed"].as_u64().unwrap();
            assert_eq!(sent > 0, i == victim, "{rel}: host {i} needed {sent} bytes: {out}");
        }
        for root in &f.roots {
            assert!(std::fs::read(root.join("releases").join(rel).join("b2.bin")).unwrap() == b2);
        }
    }
    f.slipway().args(["verify", "-t", "prod"]).ok();
}

/// A rollback whose health check fails on one host is undone everywhere,
/// like a deploy, and its target is marked bad on the hosts that were
/// switched: the next plain rollback goes past it instead of repeating it.
#[test]
fn fleet_rollback_failing_its_health_check_is_undone_and_marks_its_target_bad() {
    let f = Fleet::start("");
    f.build_all(&["v1", "v2", "v3"]);
    for r in ["v1", "v2", "v3"] {
        f.deploy(r);
    }
    // v2 fails its health check on the second host.
    f.configure(&format!(
        "[targets.prod.hooks]\nhealth = 'test \"$SLIPWAY_HOST $SLIPWAY_RELEASE\" != \"{} v2\"'\nhealth_timeout = \"2s\"\n",
        f.labels[1]
    ));
    let out = f.slipway().args(["rollback", "-t", "prod", "--json"]).fails(3);
    f.assert_all_on("v3");
    out.stderr_has("every host that was switched is back on its previous release");
    let status = f.status();
    for i in 0..3 {
        assert!(
            bad(&status[i], "v2"),
            "the failed target v2 is marked bad on host {i}: {status:#}"
        );
        assert!(
            !bad(&status[i], "v3"),
            "v3 runs again, unmarked, on host {i}: {status:#}"
        );
        assert_eq!(f.history(i)[3..], ["rollback v3->v2", "revert v2->v3"], "host {i}");
    }

    // The next rollback skips v2.
    let out = f.slipway().args(["rollback", "-t", "prod", "--json"]).ok();
    f.assert_all_on("v1");
    for r in out.json().as_array().unwrap() {
        assert_eq!(r["result"], "ok", "{out}");
    }
}

#[test]
fn fleet_deploy_skip_unreachable_deploys_the_reachable_hosts_and_says_how_when_not_asked() {
    let mut s = crate::support::Scenario::new().tags(["v1"]).ssh_hosts(2).start();
    s.stop_host(1);
    let f = s.slipway().args(["deploy", "v1", "-t", "prod"]).run();
    assert_ne!(f.out.status.code(), Some(0), "{f}");
    assert!(
        f.stderr().contains("--skip-unreachable"),
        "a failed push says how to go on: {f}"
    );
    assert_eq!(s.current(0), None, "nothing was activated");
    let o = s
        .slipway()
        .args(["deploy", "v1", "-t", "prod", "--skip-unreachable", "--json"])
        .ok();
    let report = o.json();
    assert_eq!(report[0]["result"], "ok", "{o}");
    assert_eq!(report[1]["result"], "unreachable", "{o}");
    assert_eq!(s.current(0).as_deref(), Some("v1"));
    assert!(o.stderr().contains(&format!("skipping {}", s.label(1))), "{o}");
}

#[test]
fn fleet_a_target_that_reaches_one_root_twice_is_refused_instead_of_hanging() {
    let env = Env::new();
    let root = env.path("srv/a");
    std::fs::create_dir_all(&root).unwrap();
    let twice = format!("{}/../a", root.display());
    env.write(
        "slipway.toml",
        format!("[targets.prod]\nhosts = [\"{}\", \"{twice}\"]\n", root.display()),
    );
    for i in 0..20 {
        env.write(&format!("site/f{i}.bin"), noise(100_000, i));
    }
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    // Before: the second `serve` waited forever for the release's staging
    // lock, and the client for its answer.
    let mut cmd = env.slipway().args(["deploy", "v1", "-t", "prod"]);
    let mut child = cmd.cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the deploy hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Outcome {
        desc: "deploy to one root twice".into(),
        out: child.wait_with_output().unwrap(),
    };
    assert_eq!(out.out.status.code(), Some(2), "{out}");
    out.stderr_has("for this same command: the target reaches this one root through two of its entries");
    assert!(!root.join("current").exists(), "{out}");
}

/// A deploy of v2 to the fleet (on v1) whose health check fails on every
/// host and retries for a minute, started in the background; returns once
/// every host is switched and its check is retrying. Each attempt appends
/// a line to `attempts.<n>` in the test directory.
fn deploy_into_a_failing_health_check(f: &Fleet) -> std::process::Child {
    f.build("v1");
    f.build("v2");
    f.deploy("v1");
    let attempts = f.env.path("attempts");
    f.configure(&format!(
        "[targets.prod.hooks]\n\
         health = 'echo x >> \"{}.$(basename \"$SLIPWAY_ROOT\")\"; test \"$SLIPWAY_RELEASE\" != v2'\n\
         health_timeout = \"60s\"\n",
        attempts.display()
    ));
    let child = spawn_piped(f.slipway().args(["deploy", "v2", "-t", "prod", "--json"]));
    wait_for(30, "every host's health check to retry", || {
        (1..=3).all(|i| {
            std::fs::read_to_string(f.env.path(&format!("attempts.host{i}"))).is_ok_and(|s| s.lines().count() >= 2)
        })
    });
    child
}

/// Start `cmd` in the background, its output captured.
fn spawn_piped(mut cmd: Cmd) -> std::process::Child {
    cmd.cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run slipway")
}

/// Send `child` SIGINT (as Ctrl-C does) and wait for it: its output, and
/// how long it took to end.
fn interrupt(child: std::process::Child) -> (std::process::Output, Duration) {
    let pid = child.id().to_string();
    let interrupted = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    (out, interrupted.elapsed())
}

/// The attempts each host's health check made so far.
fn health_attempts(f: &Fleet) -> Vec<usize> {
    (1..=3)
        .map(|i| {
            std::fs::read_to_string(f.env.path(&format!("attempts.host{i}")))
                .map(|s| s.lines().count())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn fleet_ctrl_c_during_a_failing_health_check_switches_every_host_back_at_once() {
    let f = Fleet::start("");
    let child = deploy_into_a_failing_health_check(&f);
    f.assert_all_on("v2");
    let (out, took) = interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Well before the check's minute: the hosts stopped their checks, and
    // the client switched every host back as a failed check does.
    assert!(took < Duration::from_secs(20), "took {took:?}: {stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("slipway: interrupted: ending the switch"), "{stderr}");
    assert!(stderr.contains("error: interrupted: "), "{stderr}");
    f.assert_all_on("v1");
    let status = f.status();
    for i in 0..3 {
        assert!(bad(&status[i], "v2"), "{status:#}");
        assert_eq!(
            f.history(i).last().map(String::as_str),
            Some("revert v2->v1"),
            "{stderr}"
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.as_array().map(Vec::len), Some(3), "{report:#}");
    // No check runs on any host any more, and no host holds its lock.
    let attempts = health_attempts(&f);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health_attempts(&f), attempts);
    f.slipway().args(["activate", "v1", "-t", "prod"]).ok();
}

#[test]
fn fleet_a_client_killed_during_a_health_check_frees_every_host_at_once() {
    let f = Fleet::start("");
    let mut child = deploy_into_a_failing_health_check(&f);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    // Each host's `serve` sees its client gone, stops the check and ends
    // the session: the lock is free for the way back at once, not after
    // the check's minute.
    let out = f.slipway().args(["rollback", "-t", "prod"]).ok();
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}: {out}",
        killed.elapsed()
    );
    f.assert_all_on("v1");
    let attempts = health_attempts(&f);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health_attempts(&f), attempts, "a check still runs");
}

#[test]
fn fleet_ctrl_c_during_the_push_stops_at_once_and_says_nothing_was_activated() {
    // One host answers at once; the other is a server that never speaks
    // SSH, so the push waits there (up to its 30 s connect timeout).
    let env = Env::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let config = env.write("ssh_config", "Host *\n  BatchMode yes\n  StrictHostKeyChecking no\n");
    let root = env.path("host");
    env.write(
        "slipway.toml",
        format!(
            "[targets.prod]\nhosts = [\"{}\", \"ssh://127.0.0.1:{port}/srv/app\"]\nconnect_timeout = \"30s\"\n",
            root.display()
        ),
    );
    env.write("site/index.html", "v1\n");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    let child = spawn_piped(env.slipway().via_ssh(&config).args(["deploy", "v1", "-t", "prod"]));
    std::thread::sleep(Duration::from_millis(1500));
    let (out, took) = interrupt(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(5), "{stderr}");
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted during the push: nothing was activated"),
        "{stderr}"
    );
    assert!(!root.join("current").exists());
    drop(silent);
}

/// `current` in a fleet command's `--json` is what each host is on when the
/// command ends, whatever failed (docs/json.md): a push that fails on one
/// host (its `serve` dies once the objects are in), a host that cannot be
/// reached at all, leave the others on the release they ran, and the report
/// says so instead of `null`; only the host nobody could ask stays `null`.
#[test]
fn fleet_deploy_whose_push_fails_reports_the_release_each_host_is_still_on() {
    let mut f = Fleet::start("");
    f.build_all(&["v1", "v2"]);
    f.deploy("v1");
    let fired = f.env.path("after-objects.fired");
    let out = f
        .slipway()
        .env(
            "SLIPWAY_REMOTE_BIN",
            format!(
                "env SLIPWAY_FAULT=after-objects@{} SLIPWAY_FAULT_ONCE={} {}",
                f.canonical_root(1).display(),
                fired.display(),
                crate::support::bin()
            ),
        )
        .args(["deploy", "v2", "-t", "prod", "--json"])
        .fails(1);
    out.stderr_has("fault injected at `after-objects`");
    let report = out.json();
    for label in &f.labels {
        assert_eq!(row(&report, label)["current"], "v1", "{label}: {out}");
        assert_eq!(row(&report, label)["previous"], "v1", "{label}: {out}");
    }
    assert_eq!(row(&report, &f.labels[1])["phase"], "push", "{out}");
    assert_eq!(row(&report, &f.labels[1])["result"], "failed", "{out}");
    f.assert_all_on("v1");

    f.hosts[2].stop();
    for cmd in ["deploy", "activate"] {
        let out = f.slipway().args([cmd, "v2", "-t", "prod", "--json"]).fails(1);
        let report = out.json();
        for label in &f.labels[..2] {
            assert_eq!(row(&report, label)["current"], "v1", "{cmd}: {label}: {out}");
        }
        assert!(row(&report, &f.labels[2])["current"].is_null(), "{cmd}: {out}");
        assert_eq!(row(&report, &f.labels[2])["result"], "failed", "{cmd}: {out}");
    }
    assert_eq!(f.link(0), "releases/v1");
    assert_eq!(f.link(1), "releases/v1");
}
