//! `slipway diff`: two tags of a repository with every kind of change (a
//! file added, one removed, one changed, a mode change, a symlink
//! retargeted, a file that became a symlink), in each output form, with
//! the commits between them; and against a fleet whose hosts run different
//! releases (or nothing, or one the local store lacks).

use serde_json::json;

use crate::support::scenario::Scene;
use crate::support::{Cmd, Scenario};

/// The two tags' commits and bundle ids.
struct Tags {
    commit2: String,
    id1: String,
    id2: String,
}

/// Tags `v1` and `v2` of the scene's repository (no `slipway.toml`: the
/// whole tree is the release), both built:
///
/// ```text
/// v1                          v2
/// bin/run       (0644)        bin/run       (0755, same bytes)
/// conf          "a=1\n"       conf -> conf.d/prod
///                             conf.d/prod   "a=2\n"
/// gone.css      "x\n"
/// home.html -> index.html     home.html -> about.html
/// index.html    "one\n"       index.html    "two!\n"
///                             about.html    "about\n"
/// ```
fn two_tags(s: &Scene) -> Tags {
    let repo = &s.repo;
    repo.write("index.html", "one\n")
        .write("bin/run", "#!/bin/sh\n")
        .write("gone.css", "x\n")
        .write("conf", "a=1\n")
        .symlink("home.html", "index.html")
        .commit("first release")
        .tag("v1");
    repo.write("index.html", "two!\n")
        .exec("bin/run", "#!/bin/sh\n")
        .remove("gone.css")
        .remove("conf")
        .write("conf.d/prod", "a=2\n")
        .symlink("conf", "conf.d/prod")
        .remove("home.html")
        .symlink("home.html", "about.html")
        .commit("config per environment")
        .write("about.html", "about\n")
        .commit("an about page")
        .tag("v2");
    let commit2 = repo.git(&["rev-parse", "HEAD"]);
    let build = |tag: &str| s.env.slipway().current_dir(&repo.path).args(["build", tag]).ok().line();
    Tags {
        commit2,
        id1: build("v1"),
        id2: build("v2"),
    }
}

/// `slipway` in the repository (so the commits can be told), with the scene's config.
fn in_repo(s: &Scene) -> Cmd {
    s.slipway()
        .current_dir(&s.repo.path)
        .arg("--config")
        .arg(s.env.path("slipway.toml"))
}

/// The first 12 hex digits of `sha256:…`.
fn short(id: &str) -> &str {
    &id[7..19]
}

/// `git log --oneline`'s abbreviation of a commit.
fn abbrev(s: &Scene, commit: &str) -> String {
    s.repo.git(&["rev-parse", "--short", commit])
}

/// The full form of `v1 -> v2` (without the commits section).
fn v1_to_v2(t: &Tags) -> String {
    format!(
        "\
v1 ({}) -> v2 ({})
A  about.html   6 B
M  bin/run      mode 0644 -> 0755
T  conf         file 4 B -> symlink to conf.d/prod
A  conf.d       directory
A  conf.d/prod  4 B
D  gone.css     2 B
M  home.html    target index.html -> about.html
M  index.html   4 B -> 5 B
3 added (10 B), 1 removed (2 B), 1 changed (4 B -> 5 B), 1 mode, 1 link target, 1 kind; size 20 B -> 25 B
",
        short(&t.id1),
        short(&t.id2)
    )
}

#[test]
fn diff_of_two_tags_lists_every_change_in_path_order_then_totals_and_commits() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    let out = in_repo(&s).args(["diff", "v1", "v2"]).ok();
    assert_eq!(
        out.stdout(),
        format!(
            "{}commits in `v2`, not in `v1` (newest first):\n  {} an about page\n  {} config per environment\n",
            v1_to_v2(&t),
            abbrev(&s, &t.commit2),
            abbrev(&s, &format!("{}~1", t.commit2)),
        )
    );
    assert_eq!(out.stderr(), "");
}

#[test]
fn diff_backwards_names_the_commits_it_takes_back() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    let out = in_repo(&s).args(["diff", "v2", "v1"]).ok();
    assert_eq!(
        out.stdout(),
        format!(
            "\
v2 ({}) -> v1 ({})
D  about.html   6 B
M  bin/run      mode 0755 -> 0644
T  conf         symlink to conf.d/prod -> file 4 B
D  conf.d       directory
D  conf.d/prod  4 B
A  gone.css     2 B
M  home.html    target about.html -> index.html
M  index.html   5 B -> 4 B
1 added (2 B), 3 removed (10 B), 1 changed (5 B -> 4 B), 1 mode, 1 link target, 1 kind; size 25 B -> 20 B
commits in `v2`, not in `v1`, taken back (newest first):
  {} an about page
  {} config per environment
",
            short(&t.id2),
            short(&t.id1),
            abbrev(&s, &t.commit2),
            abbrev(&s, &format!("{}~1", t.commit2)),
        )
    );
}

#[test]
fn diff_stat_prints_the_header_and_the_totals_only() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    let out = in_repo(&s).args(["diff", "v1", "v2", "--stat"]).ok();
    let full = v1_to_v2(&t);
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(out.stdout(), format!("{}\n{}\n", lines[0], lines[lines.len() - 1]));
}

#[test]
fn diff_name_only_and_name_status_print_one_path_per_line_for_scripts() {
    let s = Scenario::new().start();
    two_tags(&s);
    let out = in_repo(&s).args(["diff", "v1", "v2", "--name-only"]).ok();
    assert_eq!(
        out.stdout(),
        "about.html\nbin/run\nconf\nconf.d\nconf.d/prod\ngone.css\nhome.html\nindex.html\n"
    );
    let out = in_repo(&s).args(["diff", "v1", "v2", "--name-status"]).ok();
    assert_eq!(
        out.stdout(),
        "A\tabout.html\nM\tbin/run\nT\tconf\nA\tconf.d\nA\tconf.d/prod\nD\tgone.css\nM\thome.html\nM\tindex.html\n"
    );
    // The same release twice: nothing at all.
    let out = in_repo(&s).args(["diff", "v2", "v2", "--name-status"]).ok();
    assert_eq!(out.stdout(), "");
    in_repo(&s)
        .args(["diff", "v1", "v2", "--name-only", "--stat"])
        .fails(2)
        .stderr_has("cannot be used with");
}

/// `diff v1 v2 --json`, as docs/json.md documents it.
fn v1_to_v2_json(t: &Tags) -> serde_json::Value {
    let sha = |s: &str| format!("sha256:{}", slipway::digest::Digest::of(s.as_bytes()).hex());
    json!({
        "from": {"name": "v1", "id": t.id1},
        "to": {"name": "v2", "id": t.id2},
        "added": [
            {"path": "about.html", "kind": "file", "size": 6, "executable": false, "target": null},
            {"path": "conf.d", "kind": "dir", "size": 0, "executable": false, "target": null},
            {"path": "conf.d/prod", "kind": "file", "size": 4, "executable": false, "target": null},
        ],
        "removed": [
            {"path": "gone.css", "kind": "file", "size": 2, "executable": false, "target": null},
        ],
        "changed": [
            {"path": "index.html", "size_before": 4, "size_after": 5,
             "sha256_before": sha("one\n"), "sha256_after": sha("two!\n")},
        ],
        "modes": [{"path": "bin/run", "mode_before": "0644", "mode_after": "0755"}],
        "links": [{"path": "home.html", "target_before": "index.html", "target_after": "about.html"}],
        "kinds": [{
            "path": "conf",
            "before": {"kind": "file", "size": 4, "executable": false, "target": null},
            "after": {"kind": "symlink", "size": 0, "executable": false, "target": "conf.d/prod"},
        }],
        "totals": {
            "added": 3, "removed": 1, "changed": 1, "modes": 1, "links": 1, "kinds": 1,
            "bytes_added": 10, "bytes_removed": 2,
            "bytes_changed_before": 4, "bytes_changed_after": 5,
            "size_before": 20, "size_after": 25,
        },
        "commits": [
            {"commit": t.commit2, "subject": "an about page"},
            {"commit": "PARENT", "subject": "config per environment"},
        ],
        "commits_undone": [],
        "commits_note": null,
    })
}

#[test]
fn diff_json_has_every_change_with_sizes_digests_and_commits() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    let mut want = v1_to_v2_json(&t);
    want["commits"][1]["commit"] = json!(s.repo.git(&["rev-parse", &format!("{}~1", t.commit2)]));
    let out = in_repo(&s).args(["diff", "v1", "v2", "--json"]).ok();
    assert_eq!(out.json(), want);
    // Backwards, the same commits are the ones taken back.
    let back = in_repo(&s).args(["diff", "v2", "v1", "--json"]).ok().json();
    assert_eq!(back["commits"], json!([]));
    assert_eq!(back["commits_undone"], want["commits"]);
    assert_eq!(back["totals"]["bytes_added"], json!(2));
}

#[test]
fn diff_shows_commits_only_where_they_can_be_told_and_says_why_not_for_a_directory_build() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    // Outside the repository: the commits are silently left out.
    let out = s.slipway().args(["diff", "v1", "v2"]).ok();
    assert_eq!(out.stdout(), v1_to_v2(&t));
    let json = s.slipway().args(["diff", "v1", "v2", "--json"]).ok().json();
    assert_eq!(
        (&json["commits"], &json["commits_undone"], &json["commits_note"]),
        (&json!(null), &json!(null), &json!(null))
    );

    // A release built from a directory has no commit: one line says so.
    s.env.write("site/index.html", "two!\n");
    s.slipway().args(["build", "--dir", "site", "--name", "ci-7"]).ok();
    let out = in_repo(&s).args(["diff", "v2", "ci-7"]).ok();
    assert!(
        out.stdout()
            .ends_with("commits: not shown: `ci-7` was built from a directory (`build --dir`), not a commit\n"),
        "{out}"
    );
    let json = in_repo(&s).args(["diff", "v2", "ci-7", "--json"]).ok().json();
    assert_eq!(
        json["commits_note"],
        json!("`ci-7` was built from a directory (`build --dir`), not a commit")
    );
    assert_eq!(json["commits"], json!(null));

    // By id prefix: the same diff, the same names (each id has one name).
    let out = in_repo(&s).args(["diff", &t.id1[..13], &t.id2[7..20], "--stat"]).ok();
    assert_eq!(
        out.stdout(),
        in_repo(&s).args(["diff", "v1", "v2", "--stat"]).ok().stdout()
    );
}

#[test]
fn diff_of_the_same_release_says_no_changes_and_exits_0() {
    let s = Scenario::new().start();
    let t = two_tags(&s);
    let out = in_repo(&s).args(["diff", "v2", "v2"]).ok();
    assert_eq!(
        out.stdout(),
        format!(
            "v2 ({0}) -> v2 ({0})\nno changes: the same bundle\ncommits: the same commit\n",
            short(&t.id2)
        )
    );
}

#[test]
fn diff_of_an_unknown_release_exits_2_and_suggests_the_closest_name() {
    let s = Scenario::new().start();
    two_tags(&s);
    let out = in_repo(&s).args(["diff", "v1", "v2x"]).fails(2);
    out.one_line_error();
    assert_eq!(
        out.stderr(),
        format!(
            "error: no release or bundle `v2x` in the store `{}` (did you mean `v2`?); `slipway list` shows what is there\n",
            s.env.store.display()
        )
    );
    assert_eq!(out.stdout(), "");
    in_repo(&s).args(["diff", "v1"]).fails(2);
}

#[test]
fn diff_against_a_mixed_fleet_shows_one_diff_per_release_the_hosts_run() {
    let s = Scenario::new().local_hosts(3).start();
    let t = two_tags(&s);
    in_repo(&s)
        .args(["deploy", "v1", "-t", "prod", "--hosts", s.label(0)])
        .ok();
    in_repo(&s)
        .args(["deploy", "v2", "-t", "prod", "--hosts", s.label(1)])
        .ok();
    let before = crate::support::snapshot(&s.env.dir.path().join("host1"));

    let out = in_repo(&s).args(["diff", "v2", "-t", "prod"]).ok();
    let v1_v2 = v1_to_v2(&t);
    let commits = format!(
        "commits in `v2`, not in `v1` (newest first):\n  {} an about page\n  {} config per environment\n",
        abbrev(&s, &t.commit2),
        abbrev(&s, &format!("{}~1", t.commit2)),
    );
    let (host1, host2, host3) = (s.label(0), s.label(1), s.label(2));
    let id2 = short(&t.id2);
    assert_eq!(
        out.stdout(),
        format!(
            "\
{host1}: {v1_v2}{commits}
{host2}: v2 ({id2}) -> v2 ({id2})
no changes: the same bundle
commits: the same commit

{host3}: nothing -> v2 ({id2})
A  about.html   6 B
A  bin          directory
A  bin/run      10 B, executable
A  conf         symlink to conf.d/prod
A  conf.d       directory
A  conf.d/prod  4 B
A  home.html    symlink to about.html
A  index.html   5 B
8 added (25 B); size 0 B -> 25 B
"
        )
    );
    // Read-only: the hosts are as they were.
    assert_eq!(crate::support::snapshot(&s.env.dir.path().join("host1")), before);

    // --stat: a header and the totals per release.
    let out = in_repo(&s).args(["diff", "v2", "-t", "prod", "--stat"]).ok();
    let id1 = short(&t.id1);
    let last = v1_v2.lines().last().unwrap();
    assert_eq!(
        out.stdout(),
        format!(
            "\
{host1}: v1 ({id1}) -> v2 ({id2})
{last}
{host2}: v2 ({id2}) -> v2 ({id2})
no changes: the same bundle
{host3}: nothing -> v2 ({id2})
8 added (25 B); size 0 B -> 25 B
"
        )
    );

    // --json: one object per release run, each diff as `diff A B --json` has it.
    let groups = in_repo(&s).args(["diff", "v2", "-t", "prod", "--json"]).ok().json();
    let pair = in_repo(&s).args(["diff", "v1", "v2", "--json"]).ok().json();
    assert_eq!(groups.as_array().map(Vec::len), Some(3), "{groups}");
    assert_eq!(
        (&groups[0]["hosts"], &groups[0]["current"], &groups[0]["error"]),
        (&json!([s.label(0)]), &json!({"name": "v1", "id": t.id1}), &json!(null))
    );
    assert_eq!(groups[0]["diff"], pair);
    assert_eq!(groups[1]["current"], json!({"name": "v2", "id": t.id2}));
    assert_eq!(groups[1]["diff"]["totals"]["added"], json!(0));
    assert_eq!(groups[1]["diff"]["commits"], json!([]));
    assert_eq!(
        (&groups[2]["hosts"], &groups[2]["current"], &groups[2]["diff"]["from"]),
        (&json!([s.label(2)]), &json!(null), &json!(null))
    );
    assert_eq!(groups[2]["diff"]["totals"]["added"], json!(8));

    // Two hosts on one release share one diff.
    in_repo(&s)
        .args(["deploy", "v1", "-t", "prod", "--hosts", s.label(2)])
        .ok();
    let groups = in_repo(&s).args(["diff", "v2", "-t", "prod", "--json"]).ok().json();
    assert_eq!(groups[0]["hosts"], json!([s.label(0), s.label(2)]));
    assert_eq!(groups.as_array().map(Vec::len), Some(2));
    in_repo(&s)
        .args(["diff", "v2", "-t", "prod", "--name-only"])
        .fails(2)
        .stderr_has("cannot be used with");
}

#[test]
fn diff_against_a_host_it_cannot_compare_names_it_and_exits_1_after_the_others() {
    let s = Scenario::new().local_hosts(2).start();
    let t = two_tags(&s);
    in_repo(&s)
        .args(["deploy", "v1", "-t", "prod", "--hosts", s.label(0)])
        .ok();
    // Host 2 runs a release built and deployed from another store.
    s.env.write("other/index.html", "elsewhere\n");
    let other = s.env.path("other-store");
    let id = s
        .slipway()
        .env("SLIPWAY_STORE", &other)
        .args(["build", "--dir", "other", "--name", "v0"])
        .ok()
        .line();
    s.slipway()
        .env("SLIPWAY_STORE", &other)
        .args(["deploy", "v0", "-t", "prod", "--hosts", s.label(1)])
        .ok();

    let out = in_repo(&s).args(["diff", "v2", "-t", "prod", "--stat"]).fails(1);
    let missing = format!(
        "`v0` ({id}), which {} runs, is not in the local store `{}`; `slipway fetch v0 --from REMOTE` or `slipway import FILE` it to compare",
        s.label(1),
        s.env.store.display()
    );
    assert_eq!(
        out.stdout(),
        format!(
            "{}: v1 ({}) -> v2 ({})\n{}\n{}: {missing}\n",
            s.label(0),
            short(&t.id1),
            short(&t.id2),
            v1_to_v2(&t).lines().last().unwrap(),
            s.label(1),
        )
    );
    assert_eq!(out.stderr(), format!("error: {missing}\n"));
    let out = in_repo(&s).args(["diff", "v2", "-t", "prod", "--json"]).fails(1);
    let groups = out.json();
    assert_eq!(
        groups[1],
        json!({"hosts": [s.label(1)], "current": {"name": "v0", "id": id}, "error": missing, "diff": null})
    );

    // A host that cannot be reached is named with its error; the others are compared.
    s.env.write("blocker", "a file where a directory should be");
    let blocked = s.env.path("blocker/root").display().to_string();
    s.env.write(
        "ops.toml",
        format!("[targets.half]\nhosts = [\"{blocked}\", \"{}\"]\n", s.label(0)),
    );
    let out = s
        .slipway()
        .current_dir(&s.repo.path)
        .arg("--config")
        .arg(s.env.path("ops.toml"))
        .args(["diff", "v2", "-t", "half", "--stat"])
        .fails(1);
    let unreachable = format!("cannot access `{blocked}/.slipway`: not a directory");
    assert_eq!(
        out.stdout(),
        format!(
            "{blocked}: {unreachable}\n{}: v1 ({}) -> v2 ({})\n{}\n",
            s.label(0),
            short(&t.id1),
            short(&t.id2),
            v1_to_v2(&t).lines().last().unwrap(),
        )
    );
    assert_eq!(out.stderr(), format!("error: {blocked}: {unreachable}\n"));
}
