//! `--plan` and `--expect-plan` through the real binary over three real
//! sshd hosts: a plan shows what the command then does (compared with the
//! command's own `--json`), changes nothing on any host (every file's
//! path, size, mode and link target, and the history's bytes), exits with
//! the code the command would, and `--expect-plan` refuses (exit 6,
//! changing nothing) once a host moved since the plan was shown.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::scenario::Scene;
use crate::support::{Outcome, Scenario, hold_lock};

/// What a host's root is, as `find ROOT -printf '%p %s %m %l\n'` sorted
/// says it, plus the bytes of its history: a plan must leave it as it was.
pub(crate) fn tree(root: &Path) -> String {
    if !root.exists() {
        return "(no root)".to_string();
    }
    let out = Command::new("find")
        .arg(root)
        .args(["-printf", "%p %s %m %l\\n"])
        .output()
        .expect("find");
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    // A directory's own size is the file system's business (every entry in
    // it is listed); its mode is not.
    for l in &mut lines {
        let fields: Vec<&str> = l.split(' ').collect();
        if let [p, _size, mode, ..] = fields[..]
            && Path::new(p).is_dir()
            && !Path::new(p).is_symlink()
        {
            *l = format!("{p} dir {mode}");
        }
    }
    lines.sort();
    let history = std::fs::read(root.join(".slipway/history.jsonl")).unwrap_or_default();
    format!(
        "{}\n--- history\n{}",
        lines.join("\n"),
        String::from_utf8_lossy(&history)
    )
}

fn trees(s: &Scene) -> Vec<String> {
    (0..3).map(|i| tree(s.root(i))).collect()
}

/// The plan's object for host `i`.
fn host<'a>(plan: &'a Value, s: &Scene, i: usize) -> &'a Value {
    plan["hosts"]
        .as_array()
        .and_then(|a| a.iter().find(|h| h["host"] == s.label(i)))
        .unwrap_or_else(|| panic!("no host {} in {plan:#}", s.label(i)))
}

/// The row of host `i` in a command's `--json` array.
fn row<'a>(report: &'a Value, s: &Scene, i: usize) -> &'a Value {
    report
        .as_array()
        .and_then(|a| a.iter().find(|r| r["host"] == s.label(i)))
        .unwrap_or_else(|| panic!("no row for {} in {report:#}", s.label(i)))
}

fn three_hosts(toml: &str) -> Scene {
    Scenario::new().tags(["v1", "v2"]).ssh_hosts(3).toml(toml).start()
}

/// Run `args` with `--plan --json`, asserting it changed nothing on any host.
fn plan(s: &Scene, args: &[&str]) -> (Outcome, Value) {
    let before = trees(s);
    let o = s.slipway().args(args).args(["--plan", "--json"]).run();
    assert_eq!(trees(s), before, "the plan changed a host: {o}");
    let v = o.json();
    (o, v)
}

#[test]
fn plan_shows_what_deploy_then_does_and_changes_nothing_on_any_host() {
    let s = three_hosts("[targets.prod.hooks]\nbefore_activate = \"true\"\nhealth = \"test -f index.html\"\n");
    // Two hosts on v1; the third never had a release (no root at all).
    let two = format!("{},{}", s.label(0), s.label(1));
    s.slipway().args(["deploy", "v1", "-t", "prod", "--hosts", &two]).ok();
    assert!(!s.root(2).exists());

    let (o, p) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert!(!s.root(2).exists(), "a plan creates no root: {o}");
    assert_eq!(p["command"], "deploy");
    assert_eq!(p["release"], "v2");
    assert_eq!(p["exit"], 0);
    let id = p["plan"].as_str().unwrap();
    assert!(id.len() == 12 && id.bytes().all(|c| c.is_ascii_hexdigit()), "{p:#}");
    for i in 0..2 {
        let h = host(&p, &s, i);
        assert_eq!(h["current"], "v1", "{p:#}");
        assert_eq!(h["next"], "v2", "{p:#}");
        // Only index.html changed: app.js is there already.
        assert_eq!(h["lacks_objects"], 1, "{p:#}");
        assert_eq!(
            h["steps"],
            serde_json::json!(["push", "before_activate", "switch", "health", "prune"]),
            "{p:#}"
        );
        assert_eq!(h["signers"], "not_enforced");
    }
    let fresh = host(&p, &s, 2);
    assert_eq!(fresh["current"], Value::Null, "{p:#}");
    assert_eq!(fresh["next"], "v2", "{p:#}");
    assert_eq!(fresh["lacks_objects"], 2, "{p:#}");

    // The same plan twice: the same id (nothing moved), for another
    // operator too, with a store of their own elsewhere.
    let (_, again) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    assert_eq!(again["plan"], p["plan"]);
    let other_store = s.env.path("bobs-store");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(s.env.path("store"))
        .arg(&other_store)
        .status()
        .unwrap();
    assert!(copied.success());
    let bob = s
        .slipway()
        .env("USER", "bob")
        .env("SLIPWAY_STORE", &other_store)
        .args(["deploy", "v2", "-t", "prod", "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(bob["plan"], p["plan"], "the id depends on who asks: {bob:#}");

    // What a push sends is what the plan said each host lacks.
    let pushed = s.slipway().args(["push", "v2", "-t", "prod", "--json"]).ok().json();
    for i in 0..3 {
        assert_eq!(
            row(&pushed, &s, i)["bytes_needed"],
            host(&p, &s, i)["lacks_bytes"],
            "host {i}: {pushed:#} vs {p:#}"
        );
    }
    // And the deploy goes from each host's `current` to its `next`.
    let deployed = s.slipway().args(["deploy", "v2", "-t", "prod", "--json"]).ok().json();
    for i in 0..3 {
        let (r, h) = (row(&deployed, &s, i), host(&p, &s, i));
        assert_eq!(r["previous"], h["current"], "host {i}: {deployed:#} vs {p:#}");
        assert_eq!(r["current"], h["next"], "host {i}: {deployed:#} vs {p:#}");
    }

    // Deploying it again changes no host: nothing to send, only the prune.
    let (_, same) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    for i in 0..3 {
        let h = host(&same, &s, i);
        assert_eq!(
            (&h["current"], &h["next"]),
            (&Value::from("v2"), &Value::from("v2")),
            "{same:#}"
        );
        assert_eq!(h["lacks_bytes"], 0, "{same:#}");
        assert_eq!(h["steps"], serde_json::json!(["prune"]), "{same:#}");
    }

    // A rollback's plan: the release each host goes back to, then the rollback.
    let (o, rb) = plan(&s, &["rollback", "-t", "prod", "--hosts", &two]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    let rolled = s
        .slipway()
        .args(["rollback", "-t", "prod", "--hosts", &two, "--json"])
        .ok()
        .json();
    for i in 0..2 {
        let (r, h) = (row(&rolled, &s, i), host(&rb, &s, i));
        assert_eq!(h["next"], "v1", "{rb:#}");
        assert_eq!(h["steps"], serde_json::json!(["switch", "health"]), "{rb:#}");
        assert_eq!(r["previous"], h["current"], "host {i}: {rolled:#} vs {rb:#}");
        assert_eq!(r["current"], h["next"], "host {i}: {rolled:#} vs {rb:#}");
    }
}

#[test]
fn plan_of_a_release_allowed_signers_refuses_exits_as_the_command_would() {
    let s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // The second host now takes only signed releases; v2 is unsigned.
    std::fs::write(
        s.root(1).join(".slipway/allowed_signers"),
        "alice@example.com namespaces=\"slipway\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0wS8hBHhZ0pT3x3BiGrR+9wD6VwL3Tq1m9ZJX3T1cD\n",
    )
    .unwrap();
    for cmd in [&["push", "v2", "-t", "prod"][..], &["deploy", "v2", "-t", "prod"][..]] {
        let (o, p) = plan(&s, cmd);
        assert_eq!(o.out.status.code(), Some(5), "{o}");
        assert_eq!(p["exit"], 5, "{p:#}");
        let h = host(&p, &s, 1);
        assert_eq!(h["signers"], "refused", "{p:#}");
        assert_eq!(h["exit"], 5, "{p:#}");
        assert!(h["refused"].as_str().unwrap().contains("missing signature"), "{p:#}");
        assert_eq!(host(&p, &s, 0)["signers"], "not_enforced", "{p:#}");
        // The push goes on where it can (the real push of the first round
        // staged it there for the second); nothing switches anywhere.
        let pushed = if cmd[0] == "push" { vec!["push"] } else { vec![] };
        assert_eq!(host(&p, &s, 0)["steps"], serde_json::json!(pushed), "{p:#}");
        assert_eq!(host(&p, &s, 0)["next"], "v1", "{p:#}");
        // The command itself: the same exit code.
        let real = s.slipway().args(cmd).run();
        assert_eq!(real.out.status.code(), o.out.status.code(), "{real}");
    }
    // Activating v1 (unsigned) is refused there as well, and said so first.
    let (o, p) = plan(&s, &["activate", "v1", "-t", "prod"]);
    let real = s.slipway().args(["activate", "v1", "-t", "prod"]).run();
    assert_eq!(host(&p, &s, 1)["signers"], "refused", "{p:#}");
    assert_eq!(real.out.status.code(), o.out.status.code(), "{o}\n{real}");
    assert_eq!(o.out.status.code(), Some(5), "{o}");
}

#[test]
fn plan_of_a_deploy_whose_gate_is_not_met_exits_as_the_deploy_would() {
    let s = three_hosts("require_healthy_on = \"staging\"\n");
    let staging = s.env.path("staging-host");
    let toml = std::fs::read_to_string(s.env.path("slipway.toml")).unwrap();
    s.env.write(
        "slipway.toml",
        format!(
            "{toml}[targets.staging]\nhosts = [\"{}\"]\n[targets.staging.hooks]\nhealth = \"true\"\n",
            staging.display()
        ),
    );
    let (o, p) = plan(&s, &["deploy", "v1", "-t", "prod"]);
    assert_eq!(p["gate"]["required"], "staging", "{p:#}");
    assert_eq!(p["gate"]["met"], false, "{p:#}");
    // Refused before any host is contacted: nothing would run anywhere.
    for i in 0..3 {
        assert_eq!(host(&p, &s, i)["steps"], serde_json::json!([]), "{p:#}");
    }
    let real = s.slipway().args(["deploy", "v1", "-t", "prod"]).run();
    assert_eq!(real.out.status.code(), Some(1), "{real}");
    assert_eq!(o.out.status.code(), real.out.status.code(), "{o}");
    assert_eq!(p["exit"], 1, "{p:#}");

    // Healthy on staging: the gate is met, and the plan says the deploy would go through.
    s.slipway().args(["deploy", "v1", "-t", "staging"]).ok();
    let (o, p) = plan(&s, &["deploy", "v1", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(p["gate"]["met"], true, "{p:#}");
}

#[test]
fn expect_plan_refuses_once_a_host_moved_and_goes_through_when_nothing_did() {
    let s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    s.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
    s.tag("v3");
    // `--expect` that no host meets: the plan exits 6 as the activation does.
    let (o, _) = plan(&s, &["activate", "v1", "-t", "prod", "--expect", "v1"]);
    assert_eq!(o.out.status.code(), Some(6), "{o}");
    s.slipway()
        .args(["activate", "v1", "-t", "prod", "--expect", "v1"])
        .fails(6);
    let (_, p) = plan(&s, &["deploy", "v3", "-t", "prod"]);
    let approved = p["plan"].as_str().unwrap().to_string();

    // Another operator rolls one host back in between.
    s.slipway().args(["rollback", "-t", "prod", "--hosts", s.label(1)]).ok();
    let before = trees(&s);
    let refused = s
        .slipway()
        .args(["deploy", "v3", "-t", "prod", "--expect-plan", &approved])
        .fails(6);
    refused.stderr_has(&format!("not {approved} (--expect-plan)"));
    assert_eq!(trees(&s), before, "a refused --expect-plan changed a host: {refused}");

    // The new plan says what moved; approved as it is, it runs.
    let (_, p) = plan(&s, &["deploy", "v3", "-t", "prod"]);
    assert_eq!(host(&p, &s, 1)["current"], "v1", "{p:#}");
    let now = p["plan"].as_str().unwrap().to_string();
    assert_ne!(now, approved);
    s.slipway()
        .args(["deploy", "v3", "-t", "prod", "--expect-plan", &now])
        .ok();
    for i in 0..3 {
        assert_eq!(s.current(i).as_deref(), Some("v3"));
    }
}

#[test]
fn plan_with_a_host_lock_held_exits_4_as_the_deploy_would_and_leaves_the_lock_alone() {
    let s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    let release = s.env.path("release-lock");
    let holder = hold_lock(s.root(2), &release);
    let (o, p) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(4), "{o}");
    let h = host(&p, &s, 2);
    assert_eq!(h["exit"], 4, "{p:#}");
    assert!(
        h["refused"]
            .as_str()
            .unwrap()
            .contains("alice@laptop, running `slipway activate v9`"),
        "the plan names the holder: {p:#}"
    );
    assert_eq!(host(&p, &s, 0)["exit"], 0, "{p:#}");
    // The deploy itself stops on that lock, with the same code.
    let real = s.slipway().args(["deploy", "v2", "-t", "prod"]).run();
    assert_eq!(real.out.status.code(), Some(4), "{real}");
    std::fs::write(&release, "").unwrap();
    drop(holder);
}

#[test]
fn plan_names_the_hooks_and_database_steps_in_the_order_the_deploy_runs_them_and_a_schema_refusal() {
    // Every hook appends its name to `<root>.log`; `schema` and `db_schema`
    // only read (the database is a file beside the roots).
    let log = |kind: &str| format!("{kind} = \"echo {kind} >> \\\"$SLIPWAY_ROOT.log\\\"\"\n");
    let mut hooks = String::from("[targets.prod.hooks]\n");
    for kind in ["before_activate", "health", "backup", "pause", "resume"] {
        hooks.push_str(&log(kind));
    }
    hooks.push_str(
        "migrate = \"echo migrate >> \\\"$SLIPWAY_ROOT.log\\\" && echo 2 > \\\"$SLIPWAY_ROOT/../db\\\"\"\n\
         schema = \"case $SLIPWAY_RELEASE in v1) echo 1;; *) echo 2;; esac\"\n\
         db_schema = \"cat \\\"$SLIPWAY_ROOT/../db\\\" 2>/dev/null || echo 1\"\n",
    );
    let s = three_hosts(&hooks);
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    s.slipway().args(["push", "v2", "-t", "prod"]).ok();
    let logs = || -> Vec<Vec<String>> {
        (0..3)
            .map(|i| {
                let path = format!("{}.log", std::fs::canonicalize(s.root(i)).unwrap().display());
                let text = std::fs::read_to_string(path).unwrap_or_default();
                text.lines().map(str::to_string).collect()
            })
            .collect()
    };
    let before = logs();

    let (o, p) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(logs(), before, "the plan ran a hook that is not read-only: {o}");
    let db = &p["database"];
    assert_eq!(db["on"], s.label(0), "{p:#}");
    assert_eq!(db["runs"], "migrate", "{p:#}");
    assert_eq!(
        (&db["schema"], &db["db_schema"]),
        (&Value::from("2"), &Value::from("1")),
        "{p:#}"
    );
    let steps = |i: usize| -> Vec<String> {
        host(&p, &s, i)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        steps(0),
        [
            "before_activate",
            "backup",
            "pause",
            "migrate",
            "switch",
            "health",
            "resume",
            "prune"
        ],
        "{p:#}"
    );
    assert_eq!(
        steps(1),
        ["before_activate", "pause", "switch", "health", "resume", "prune"],
        "{p:#}"
    );

    // The deploy runs exactly those hooks, in that order, on each host.
    s.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
    let after = logs();
    for i in 0..3 {
        let ran = &after[i][before[i].len()..];
        let hooks: Vec<String> = steps(i)
            .into_iter()
            .filter(|s| !["push", "switch", "settle", "prune"].contains(&s.as_str()))
            .collect();
        assert_eq!(ran, hooks.as_slice(), "host {i}: ran {ran:?}, planned {:?}", steps(i));
    }

    // Back to v1 (schema 1) on a database now at 2, with no migrate_down:
    // the plan says the rollback would be refused with exit 7, as it is.
    let (o, p) = plan(&s, &["rollback", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(7), "{o}");
    assert_eq!(p["exit"], 7, "{p:#}");
    s.slipway().args(["rollback", "-t", "prod"]).fails(7);
}

#[test]
fn prune_plan_lists_what_prune_then_removes_and_changes_nothing() {
    let s = three_hosts("");
    s.tag("v3");
    for rel in ["v1", "v2", "v3"] {
        s.slipway().args(["deploy", rel, "-t", "prod"]).ok();
    }
    let (o, p) = plan(&s, &["prune", "-t", "prod", "--keep", "0"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(p["command"], "prune");
    let pruned = s
        .slipway()
        .args(["prune", "-t", "prod", "--keep", "0", "--json"])
        .ok()
        .json();
    for i in 0..3 {
        let (h, r) = (host(&p, &s, i), row(&pruned, &s, i));
        // v3 is current, v2 what a rollback goes back to: v1 goes.
        assert_eq!(h["prunes"]["releases"], serde_json::json!(["v1"]), "{p:#}");
        assert_eq!(h["prunes"]["releases"], r["releases"], "host {i}: {p:#} vs {pruned:#}");
        assert_eq!(h["steps"], serde_json::json!(["prune"]), "{p:#}");
        assert_eq!((&h["current"], &h["next"]), (&Value::from("v3"), &Value::from("v3")));
    }
    // A held lock: the plan exits 4, as prune does; nothing is touched.
    let release = s.env.path("release-lock");
    let holder = hold_lock(s.root(0), &release);
    let (o, p) = plan(&s, &["prune", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(4), "{o}");
    assert_eq!(host(&p, &s, 0)["exit"], 4, "{p:#}");
    s.slipway().args(["prune", "-t", "prod"]).fails(4);
    std::fs::write(&release, "").unwrap();
    drop(holder);
}

#[test]
fn expect_plan_is_checked_again_under_the_locks_and_refuses_a_host_switched_after_the_check() {
    let s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    s.slipway().args(["deploy", "v2", "-t", "prod"]).ok();
    s.tag("v3");
    // Approved while nobody holds a lock (`--wait`: a held lock is waited for, not a refusal).
    let (_, p) = plan(&s, &["deploy", "v3", "-t", "prod", "--wait", "30"]);
    let approved = p["plan"].as_str().unwrap().to_string();

    // Another operator holds the third host: the deploy checks the plan
    // (unchanged), pushes, locks the first two hosts and waits there.
    let release = s.env.path("release-lock");
    let holder = hold_lock(s.root(2), &release);
    let mut cmd = s
        .slipway()
        .args(["deploy", "v3", "-t", "prod", "--wait", "30", "--expect-plan", &approved])
        .cmd;
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run slipway");
    let first_lock = s.root(0).join(".slipway/lock");
    crate::support::wait_for(30, "the deploy to lock the first host", || {
        Command::new("flock")
            .args(["-n", "-s"])
            .arg(&first_lock)
            .arg("true")
            .status()
            .is_ok_and(|st| !st.success())
    });
    // ... and while it waits, that operator switches the third host back
    // to v1 (what a rollback leaves: `current` renamed over) and lets go.
    let link = s.root(2).join("current.tmp");
    std::os::unix::fs::symlink("releases/v1", &link).unwrap();
    std::fs::rename(&link, s.root(2).join("current")).unwrap();
    std::fs::write(&release, "").unwrap();
    drop(holder);

    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("as in the approved plan (--expect-plan)"), "{stderr}");
    assert_eq!(s.current(0).as_deref(), Some("v2"), "nothing switched: {stderr}");
    assert_eq!(s.current(1).as_deref(), Some("v2"), "nothing switched: {stderr}");
    assert_eq!(s.current(2).as_deref(), Some("v1"));
}

#[test]
fn plan_with_a_host_down_exits_as_the_deploy_would_and_leaves_it_out_when_told_to() {
    let mut s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    s.stop_host(1);
    let (o, p) = plan(&s, &["deploy", "v2", "-t", "prod"]);
    let real = s.slipway().args(["deploy", "v2", "-t", "prod"]).run();
    assert_eq!(o.out.status.code(), Some(1), "{o}");
    assert_eq!(real.out.status.code(), o.out.status.code(), "{real}");
    assert_eq!(host(&p, &s, 1)["reached"], false, "{p:#}");
    assert_eq!(host(&p, &s, 1)["exit"], 1, "{p:#}");

    let (o, p) = plan(&s, &["deploy", "v2", "-t", "prod", "--skip-unreachable"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    let down = host(&p, &s, 1);
    assert_eq!(
        (&down["reached"], &down["exit"]),
        (&Value::from(false), &Value::from(0)),
        "{p:#}"
    );
    assert_eq!(down["steps"], serde_json::json!([]), "{p:#}");
    assert_eq!(host(&p, &s, 0)["next"], "v2", "{p:#}");
    let text = s
        .slipway()
        .args(["deploy", "v2", "-t", "prod", "--skip-unreachable", "--plan"])
        .ok();
    assert!(
        text.stdout().contains(&format!("{}: not reached", s.label(1))),
        "{text}"
    );
}

#[test]
fn service_plan_on_hosts_without_a_service_definition_is_refused_as_the_command_is() {
    let s = three_hosts("");
    s.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // No `[service]` and no host's own `.slipway/service.toml`: starting a
    // slot is refused before anything starts, and so is its plan.
    let (o, p) = plan(&s, &["service", "start", "-t", "prod", "--slot", "a"]);
    assert_eq!(o.out.status.code(), Some(2), "{o}");
    o.stderr_has("no service is defined for this host");
    assert_eq!(p["command"], "service start");
    assert_eq!(host(&p, &s, 0)["exit"], 2, "{p:#}");
    s.slipway()
        .args(["service", "start", "-t", "prod", "--slot", "a"])
        .fails(2)
        .stderr_has("no service is defined for this host");
    // `service start` with no slot holding a release has nothing to do and
    // succeeds without a definition; so does its plan.
    let (o, p) = plan(&s, &["service", "start", "-t", "prod"]);
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(host(&p, &s, 0)["service"]["steps"], serde_json::json!([]), "{p:#}");
    s.slipway().args(["service", "start", "-t", "prod"]).ok();
}
