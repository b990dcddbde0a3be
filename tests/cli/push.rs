//! `slipway push` stages a release exactly as bundled, read-only and not
//! live, sending only what a host lacks and surviving kills and races — on
//! local-path targets (the same `serve` and protocol as over SSH, without
//! SSH) and over a real sshd.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::{Env, Scenario, noise, snapshot, write_file};

/// A release tree with every kind of entry.
fn tree(env: &Env, dir: &str) -> PathBuf {
    let d = env.path(dir);
    write_file(&d.join("index.html"), b"<h1>v1</h1>\n");
    write_file(&d.join("empty"), b"");
    write_file(&d.join("assets/big.bin"), &noise(4 << 20, 1));
    write_file(&d.join("assets/copy.bin"), &noise(4 << 20, 1));
    write_file(&d.join("bin/start"), b"#!/bin/sh\necho start\n");
    std::fs::set_permissions(d.join("bin/start"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(d.join("deep/er/still")).unwrap();
    std::os::unix::fs::symlink("assets/big.bin", d.join("current-asset")).unwrap();
    std::os::unix::fs::symlink("../index.html", d.join("deep/up")).unwrap();
    d
}

/// [`tree`] at `site/`, built as release `v1`; returns the tree.
fn site_v1(env: &Env) -> PathBuf {
    let src = tree(env, "site");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    src
}

fn host_json(out: &crate::support::Outcome) -> serde_json::Value {
    let json = out.json();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{out}");
    json[0].clone()
}

/// Every path under `root` with its mode bits (symlinks excluded).
fn modes(root: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            if !m.file_type().is_symlink() {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.push((rel, m.permissions().mode() & 0o7777, m.is_dir()));
            }
        }
    }
    out
}

#[test]
fn push_stages_a_tree_identical_to_the_bundle_read_only_and_without_going_live() {
    let env = Env::new();
    let src = tree(&env, "site");
    let id = env
        .slipway()
        .args(["build", "--dir", "site", "--name", "v1"])
        .ok()
        .line();
    let root = env.path("srv/app");
    let out = env.slipway().args(["push", "v1", "-t"]).arg(&root).ok();
    assert!(
        out.line()
            .starts_with(&format!("staged v1 on {}: 5 files", root.display())),
        "{out}"
    );

    let release = root.join("releases/v1");
    assert_eq!(snapshot(&release), snapshot(&src));
    for (path, mode, is_dir) in modes(&release) {
        let want = if is_dir || path == "bin/start" { 0o555 } else { 0o444 };
        assert_eq!(mode, want, "{path} has mode {mode:o}");
    }
    // mtime is the bundle's source_date_epoch (1980-01-01 for --dir)
    assert_eq!(
        std::fs::metadata(release.join("index.html")).unwrap().mtime(),
        315_532_800
    );
    // identical contents are one object, linked twice
    let a = std::fs::metadata(release.join("assets/big.bin")).unwrap();
    let b = std::fs::metadata(release.join("assets/copy.bin")).unwrap();
    assert_eq!(a.ino(), b.ino());

    // Nothing of the staging is left in tmp/ but the release's lock file.
    let mut left: Vec<String> = std::fs::read_dir(root.join(".slipway/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "v1.lock")
        .collect();
    left.sort();
    assert!(left.is_empty(), "staging leftovers in .slipway/tmp: {left:?}");

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(".slipway/releases/v1.json")).unwrap()).unwrap();
    assert_eq!(meta["id"], id.as_str());
    assert!(meta["pushed_by"].as_str().unwrap().starts_with("tester@"), "{meta}");
    assert!(meta["pushed_at"].as_str().unwrap().ends_with('Z'), "{meta}");

    assert!(
        std::fs::symlink_metadata(root.join("current")).is_err(),
        "push never activates"
    );
    let tmp = crate::support::faults::leftovers(&root);
    assert!(tmp.is_empty(), "staging leftovers: {tmp:?}");
    for (path, mode, is_dir) in modes(&root.join(".slipway/objects")) {
        if !is_dir {
            assert_eq!(mode & 0o222, 0, "object {path} is writable");
        }
    }
}

#[test]
fn a_one_file_change_sends_kilobytes_and_shares_unchanged_files_by_inode() {
    let env = Env::new();
    site_v1(&env);
    let root = env.path("host");
    let first = env.slipway().args(["push", "v1", "--json", "-t"]).arg(&root).ok();
    let first = host_json(&first);
    assert!(first["bytes_sent"].as_u64().unwrap() > 4 << 20, "{first}");
    assert_eq!(first["objects_reused"], 0);

    env.write("site/index.html", "<h1>v2</h1>\n");
    let id2 = env
        .slipway()
        .args(["build", "--dir", "site", "--name", "v2"])
        .ok()
        .line();
    let out = env.slipway().args(["--json", "push", "v2", "-t"]).arg(&root).ok();
    // The documented key order.
    let text = out.stdout();
    let keys = [
        "host",
        "release",
        "id",
        "files",
        "bytes_needed",
        "bytes_sent",
        "objects_reused",
        "seconds",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("no {k}: {out}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    let second = host_json(&out);
    assert_eq!(second["host"], root.display().to_string());
    assert_eq!(second["release"], "v2");
    assert_eq!(second["id"], id2.as_str());
    assert_eq!(second["files"], 5);
    assert_eq!(second["bytes_needed"], 12);
    assert_eq!(second["objects_reused"], 3);
    assert!(second["seconds"].is_f64(), "{second}");
    let sent = second["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < 16 * 1024, "a one-file change sent {sent} bytes");

    let big1 = std::fs::metadata(root.join("releases/v1/assets/big.bin")).unwrap();
    let big2 = std::fs::metadata(root.join("releases/v2/assets/big.bin")).unwrap();
    assert_eq!(big1.ino(), big2.ino(), "an unchanged file is one inode");
    assert_eq!(
        std::fs::read_to_string(root.join("releases/v2/index.html")).unwrap(),
        "<h1>v2</h1>\n"
    );

    // Pushing again is a successful no-op: nothing sent, nothing rewritten
    // (the release's record is the same file, not a copy of it) and not
    // even a mode set again on its tree (a chmod changes the ctime).
    let record = || {
        let m = std::fs::metadata(root.join(".slipway/releases/v2.json")).unwrap();
        let tree = std::fs::metadata(root.join("releases/v2")).unwrap();
        (m.ino(), m.modified().unwrap(), tree.ctime(), tree.ctime_nsec())
    };
    let before = record();
    let again = env.slipway().args(["push", "v2", "--json", "-t"]).arg(&root).ok();
    assert_eq!(record(), before, "a push of a staged release rewrote its record");
    let again = host_json(&again);
    assert_eq!(again["bytes_sent"], 0);
    assert_eq!(again["bytes_needed"], 0);
    let again = env.slipway().args(["push", "v2", "-t"]).arg(&root).ok().stdout();
    assert!(again.contains("already staged"), "{again}");
    // by id prefix too
    env.slipway().args(["push", &id2[..20], "-t"]).arg(&root).ok();
    assert!(std::fs::symlink_metadata(root.join("current")).is_err());
}

#[test]
fn a_name_bound_to_another_id_on_the_host_is_refused() {
    let env = Env::new();
    env.write("a/f", "one");
    env.write("b/f", "two");
    let first = env.slipway().args(["build", "--dir", "a", "--name", "r"]).ok().line();
    let root = env.path("host");
    env.slipway().args(["push", "r", "-t"]).arg(&root).ok();
    let other_store = env.path("store2");
    let second = env
        .slipway()
        .env("SLIPWAY_STORE", &other_store)
        .args(["build", "--dir", "b", "--name", "r"])
        .ok()
        .line();
    let out = env
        .slipway()
        .env("SLIPWAY_STORE", &other_store)
        .args(["push", "r", "-t"])
        .arg(&root)
        .fails(1);
    out.one_line_error().stderr_has(&format!(
        "error: {}: release `r` on this host is {first}, not {second}; a name is never rebound to another bundle: \
             give this bundle another name (`--name` of `slipway build` or `slipway import`) and push that\n",
        root.display()
    ));
    assert_eq!(std::fs::read_to_string(root.join("releases/r/f")).unwrap(), "one");
}

/// What is at `releases/<name>` must be the tree the record describes: a
/// directory nobody recorded, or a record whose tree was replaced by a
/// symlink, is named and left alone, before a byte of content is sent.
#[test]
fn a_release_path_that_is_not_the_recorded_tree_is_refused_before_any_content() {
    let env = Env::new();
    site_v1(&env);
    // A directory where the release would go, without a record.
    let root = env.path("host");
    std::fs::create_dir_all(root.join(".slipway")).unwrap();
    std::fs::create_dir_all(root.join("releases/v1")).unwrap();
    std::fs::write(root.join("releases/v1/mine.txt"), "someone's").unwrap();
    env.slipway()
        .args(["push", "v1", "-t"])
        .arg(&root)
        .fails(1)
        .one_line_error()
        .stderr_has(&format!(
            "`{}` exists but `{}` does not; move the directory away and push again",
            root.join("releases/v1").display(),
            root.join(".slipway/releases/v1.json").display()
        ));
    let objects = std::fs::read_dir(root.join(".slipway/objects")).map_or(0, |d| d.count());
    assert_eq!(objects, 0, "content was sent before the refusal");
    assert_eq!(std::fs::read_dir(root.join("releases/v1")).unwrap().count(), 1);

    // A recorded release whose tree is now a symlink to a directory.
    let root = env.path("host2");
    env.slipway().args(["push", "v1", "-t"]).arg(&root).ok();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(root.join("releases"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(root.join("releases/v1"), env.path("moved-v1")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("releases/v1")).unwrap();
    let record = std::fs::read(root.join(".slipway/releases/v1.json")).unwrap();
    env.slipway()
        .args(["push", "v1", "-t"])
        .arg(&root)
        .fails(1)
        .one_line_error()
        .stderr_has(&format!(
            "`{}` is not a directory; move it away and push again",
            root.join("releases/v1").display()
        ));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert_eq!(std::fs::read(root.join(".slipway/releases/v1.json")).unwrap(), record);
}

#[test]
fn bad_targets_and_releases_are_usage_errors() {
    let env = Env::new();
    env.write("a/f", "one");
    env.slipway().args(["build", "--dir", "a", "--name", "r"]).ok();
    env.slipway()
        .args(["push", "r", "-t", "nowhere"])
        .fails(2)
        .one_line_error()
        .stderr_has("unknown target `nowhere`");
    env.slipway()
        .args(["push", "r", "-t", "prod", "--config", "missing.toml"])
        .fails(2)
        .one_line_error()
        .stderr_has("config file `missing.toml` does not exist");
    env.slipway()
        .args(["push", "nope", "-t", "./host"])
        .fails(2)
        .one_line_error()
        .stderr_has("no release or bundle `nope`")
        .stderr_has("; `slipway list` shows what is there");
    env.write(
        "slipway.toml",
        format!("[targets.prod]\nhosts = [\"{}\"]\n", env.path("h1").display()),
    );
    let out = env.slipway().args(["push", "r", "-t", "prod", "--json"]).ok().json();
    assert_eq!(out[0]["host"], env.path("h1").display().to_string());
}

#[test]
fn a_push_killed_mid_transfer_on_either_side_leaves_no_release_and_a_rerun_sends_only_the_rest() {
    const TOTAL: usize = 4000;
    let env = Env::new();
    // Incompressible files: 2000 small ones (the host's first group of
    // objects), then 96 MiB of larger ones. The host writes each file into
    // the tree it builds and links whole groups into `objects/` from
    // another thread; each kill below waits for a file 200 files after the
    // first group to be written, so the first group is handed over to be
    // linked (and is kept) while 90 MiB are still to come.
    let dir = env.path("many");
    let mut files = Vec::new();
    for i in 0..TOTAL as u64 {
        let (rel, size) = if i < 2000 {
            (format!("a{}/f{i}", i % 20), 4 * 1024)
        } else {
            (format!("b{}/f{i}", i % 50), 48 * 1024)
        };
        let content = noise(size, i + 10);
        write_file(&dir.join(&rel), &content);
        files.push((rel, slipway::digest::Digest::of(&content).hex(), size as u64));
    }
    // Files arrive in manifest (path) order, so the n-th file shows how far a push got.
    files.sort();
    env.slipway().args(["build", "--dir", "many", "--name", "big"]).ok();
    let bundle_size: u64 = std::fs::read_dir(env.store.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let root = env.path("host");
    let objects = root.join(".slipway/objects");
    let nth_written = |n: usize| root.join(".slipway/tmp/big.partial").join(&files[n].0);
    let count = || -> usize {
        std::fs::read_dir(&objects)
            .map(|d| {
                d.map(|e| std::fs::read_dir(e.unwrap().path()).map_or(0, Iterator::count))
                    .sum()
            })
            .unwrap_or(0)
    };

    let mut child = env
        .slipway()
        .args(["push", "big", "-t"])
        .arg(&root)
        .cmd
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !nth_written(2200).exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push finished before it could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "the push never got that far");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The host's `serve` notices the client is gone and stops; prune's lock waits for it.
    let lock = std::fs::File::open(root.join(".slipway/stage.lock")).unwrap();
    lock.lock().unwrap();
    drop(lock);

    assert!(!root.join("releases/big").exists(), "no partial release is visible");
    assert!(
        !root.join(".slipway/releases/big.json").exists(),
        "the name is not bound"
    );
    assert!(!root.join(".slipway/tmp/big.partial").exists());
    assert!(!root.join(".slipway/tmp/big.incoming").exists());
    let kept = count();
    // The first group was handed over before the kill, and is kept.
    assert!((2000..TOTAL - 300).contains(&kept), "{kept} objects kept");

    // Now the host side dies mid-transfer: one line naming the host, exit 1.
    let mut child = env
        .slipway()
        .args(["push", "big", "-t"])
        .arg(&root)
        .cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !nth_written(kept + 200).exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push finished before its host could be killed"
        );
        assert!(std::time::Instant::now() < deadline, "the push never got that far");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let children = format!("/proc/{0}/task/{0}/children", child.id());
    let serve = std::fs::read_to_string(children).unwrap();
    let serve = serve.split_whitespace().next().expect("serve runs as a child of push");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", serve])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "error: {}: connection lost during the push of `big`",
            root.display()
        )),
        "{stderr}"
    );
    assert!(!root.join("releases/big").exists());
    let kept = count();

    let out = env.slipway().args(["push", "big", "--json", "-t"]).arg(&root).ok();
    let report = host_json(&out);
    assert_eq!(report["objects_reused"].as_u64(), Some(kept as u64), "{out}");
    let sent = report["bytes_sent"].as_u64().unwrap();
    let expected: u64 = files[kept..].iter().map(|f| f.2).sum();
    assert!(
        sent < expected + bundle_size / 20,
        "the re-run sent {sent} bytes for {} missing objects ({expected} bytes; bundle: {bundle_size})",
        TOTAL - kept
    );
    assert_eq!(snapshot(&root.join("releases/big")), snapshot(&dir));
    assert!(
        !root.join(".slipway/tmp/big.incoming").exists(),
        "leftovers of the killed host are gone"
    );
}

#[test]
fn link_mode_copy_gives_independent_files() {
    let env = Env::new();
    env.write("a/f", "one");
    env.slipway().args(["build", "--dir", "a", "--name", "r"]).ok();
    env.write(
        "slipway.toml",
        format!(
            "[targets.copy]\nhosts = [\"{}\"]\nlink_mode = \"copy\"\n",
            env.path("h").display()
        ),
    );
    env.slipway().args(["push", "r", "-t", "copy"]).ok();
    let f = std::fs::metadata(env.path("h/releases/r/f")).unwrap();
    assert_eq!(f.nlink(), 1);
    assert_eq!(f.permissions().mode() & 0o777, 0o444);
    assert_eq!(f.mtime(), 315_532_800);
}

#[test]
fn concurrent_pushes_of_one_release_and_of_releases_sharing_objects_all_succeed() {
    let env = Env::new();
    let src = site_v1(&env);
    env.write("site/extra.txt", "more");
    env.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    let root = env.path("host");
    let children: Vec<_> = ["v1", "v1", "v2", "v2"]
        .iter()
        .map(|rel| {
            env.slipway()
                .args(["push", rel, "--json", "-t"])
                .arg(&root)
                .cmd
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut sent = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        sent += json[0]["bytes_sent"].as_u64().unwrap();
    }
    // The second push of each release waits for the first, then sends nothing:
    // at most one bundle per release crossed.
    let bundle = env.slipway().args(["inspect", "v2", "--json"]).ok().json()["compressed_size"]
        .as_u64()
        .unwrap();
    assert!(sent <= 2 * bundle + 64 * 1024, "{sent} bytes for bundles of {bundle}");
    assert_eq!(snapshot(&root.join("releases/v2")), snapshot(&src));
    std::fs::remove_file(src.join("extra.txt")).unwrap();
    assert_eq!(snapshot(&root.join("releases/v1")), snapshot(&src));
}

#[test]
fn leftovers_of_a_killed_push_are_removed_when_the_release_is_pushed_again() {
    let env = Env::new();
    env.write("a/f", "one");
    env.slipway().args(["build", "--dir", "a", "--name", "r"]).ok();
    let root = env.path("host");
    // What a push killed while building the tree leaves: read-only directories.
    let partial = root.join(".slipway/tmp/r.partial");
    write_file(&partial.join("d/stale"), b"x");
    write_file(&root.join(".slipway/tmp/r.incoming/1"), b"half an object");
    for d in [partial.join("d"), partial.clone()] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    env.slipway().args(["push", "r", "-t"]).arg(&root).ok();
    assert!(!partial.exists());
    assert!(!root.join(".slipway/tmp/r.incoming").exists());
    assert_eq!(std::fs::read_to_string(root.join("releases/r/f")).unwrap(), "one");
}

#[test]
fn push_over_real_sshd_to_a_two_host_target_then_incrementally() {
    let mut s = Scenario::new().ssh_hosts(2).start();
    site_v1(&s.env);
    let out = s.slipway().args(["push", "v1", "-t", "prod", "--json"]).ok();
    let hosts = out.json();
    assert_eq!(hosts.as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(hosts[0]["host"], s.label(0));
    for i in 0..2 {
        assert_eq!(
            snapshot(&s.root(i).join("releases/v1")),
            snapshot(&s.env.path("site")),
            "staged over ssh = the tree"
        );
    }
    s.env.write("site/index.html", "<h1>v2</h1>\n");
    s.env.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    let out = s.slipway().args(["push", "v2", "-t", "prod", "--json"]).ok();
    for h in out.json().as_array().unwrap() {
        let sent = h["bytes_sent"].as_u64().unwrap();
        assert!(sent < 16 * 1024, "incremental push over ssh sent {sent} bytes: {out}");
    }
    // An unreachable host: one line naming it, exit 1.
    s.stop_host(0);
    let out = s.slipway().args(["push", "v2", "-t", "prod"]).fails(1);
    out.one_line_error().stderr_has(s.label(0));
}

/// A mistyped root (`-t /etc`) or another tool's deploy root is refused
/// before anything is created in it; a root holding only slipway's own
/// layout (e.g. `shared/` prepared by hand) is fine.
#[test]
fn push_refuses_a_directory_that_holds_other_files_and_is_not_a_root() {
    let env = Env::new();
    site_v1(&env);
    let foreign = env.path("etc");
    std::fs::create_dir_all(foreign.join("ssh")).unwrap();
    std::fs::write(foreign.join("passwd"), "root:x:0:0\n").unwrap();
    let out = env.slipway().args(["push", "v1", "-t"]).arg(&foreign).fails(1);
    out.one_line_error().stderr_has(&format!(
        "`{}` is not a slipway root: it holds `passwd`, `ssh` and no `.slipway/`; give the target a new or empty directory as its root",
        foreign.display()
    ));
    let mut names: Vec<_> = std::fs::read_dir(&foreign)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["passwd", "ssh"], "nothing was added");

    let prepared = env.path("srv/app");
    std::fs::create_dir_all(prepared.join("shared/uploads")).unwrap();
    env.slipway().args(["push", "v1", "-t"]).arg(&prepared).ok();
    assert!(prepared.join("releases/v1").is_dir());
}

/// The body frames of an indexed bundle (the index at its end, see
/// docs/bundles.md): `(offset, compressed size)` of each, and where the
/// index frame starts.
fn body_frames(bundle: &[u8]) -> (Vec<(usize, usize)>, usize) {
    let u32_at = |at: usize| u32::from_le_bytes(bundle[at..at + 4].try_into().unwrap()) as usize;
    let n = bundle.len();
    assert_eq!(&bundle[n - 4..], b"SLWX", "an indexed bundle");
    let count = u32_at(n - 12);
    let index_at = n - (36 + 12 * count);
    let mut at = u64::from_le_bytes(bundle[index_at + 8..index_at + 16].try_into().unwrap()) as usize;
    let mut frames = Vec::new();
    for k in 0..count {
        let size = u32_at(index_at + 24 + 12 * k);
        frames.push((at, size));
        at += size;
    }
    assert_eq!(at, index_at);
    (frames, index_at)
}

#[test]
fn an_incremental_push_decodes_only_the_frames_it_needs_and_checks_what_it_sends() {
    let env = Env::new();
    site_v1(&env);
    for host in ["host1", "host2"] {
        env.slipway().args(["push", "v1", "-t"]).arg(env.path(host)).ok();
    }
    env.write("site/index.html", "<h1>v2</h1>\n");
    let id2 = env
        .slipway()
        .args(["build", "--dir", "site", "--name", "v2"])
        .ok()
        .line();
    let bundle = env.store.join(format!("bundles/{}.tar.zst", &id2["sha256:".len()..]));
    let pristine = std::fs::read(&bundle).unwrap();
    let (frames, index_at) = body_frames(&pristine);
    // assets/big.bin and assets/copy.bin (8 MiB of noise) come first, then
    // the small files, index.html last: 3 frames of 4 MiB.
    assert_eq!(frames.len(), 3);

    // Damage the first frame, inside assets/big.bin: the push needs only
    // index.html, in the last frame, and never decodes the first.
    let mut damaged = pristine.clone();
    damaged[frames[0].0 + 100_000] ^= 0xff;
    std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&bundle, &damaged).unwrap();
    let out = env
        .slipway()
        .args(["--json", "push", "v2", "-t"])
        .arg(env.path("host1"))
        .ok();
    assert_eq!(host_json(&out)["bytes_needed"], 12, "{out}");
    assert_eq!(
        std::fs::read_to_string(env.path("host1/releases/v2/index.html")).unwrap(),
        "<h1>v2</h1>\n"
    );
    // `verify` reads everything and finds the damage.
    env.slipway().args(["verify", "v2"]).fails(5);

    // Change index.html's content in the bundle (a well-formed frame, the
    // index updated): the push refuses to send it.
    let (last, size) = frames[2];
    let mut tar = zstd::decode_all(&pristine[last..last + size]).unwrap();
    let at = tar.windows(11).position(|w| w == b"<h1>v2</h1>").unwrap();
    tar[at + 5] = b'9';
    let mut forged = pristine[..last].to_vec();
    let frame = zstd::bulk::Compressor::new(3).unwrap().compress(&tar).unwrap();
    forged.extend_from_slice(&frame);
    let mut index = pristine[index_at..].to_vec();
    index[24 + 24..24 + 28].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    forged.extend(index);
    std::fs::write(&bundle, &forged).unwrap();
    env.slipway()
        .args(["push", "v2", "-t"])
        .arg(env.path("host2"))
        .fails(5)
        .stderr_has(&format!("bundle `{}`", bundle.display()))
        .stderr_has("content of `index.html` does not match its sha256")
        .stderr_has("; run `slipway verify v2`")
        .one_line_error();
    assert!(!env.path("host2/releases/v2").exists());
}

/// An ed25519 key made by `ssh-keygen` at `env`'s `keys/<name>`.
fn keygen(env: &Env, name: &str) -> PathBuf {
    let path = env.path(&format!("keys/{name}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("ssh-keygen (install openssh-client; scripts/test.sh does it)");
    assert!(st.success());
    path
}

/// Pushing a staged release again after `slipway sign` sends no content
/// but records the signatures: the line says how many it added (`--json`:
/// `signatures_added`, `deploy` too), and only a re-push that adds nothing
/// says "nothing sent".
#[test]
fn re_pushing_a_staged_release_after_signing_says_how_many_signatures_it_added() {
    let env = Env::new();
    site_v1(&env);
    let root = env.path("host");
    let t = root.to_str().unwrap();
    let home = env.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let slipway = || {
        let mut cmd = env.slipway().env("HOME", &home);
        cmd.cmd.env_remove("SSH_AUTH_SOCK");
        cmd
    };
    let sign = |key: &str| {
        slipway().args(["sign", "v1", "--key"]).arg(keygen(&env, key)).ok();
    };
    let first = host_json(&slipway().args(["push", "v1", "-t", t, "--json"]).ok());
    assert_eq!(first["signatures_added"], 0, "{first}");

    sign("alice");
    sign("bob");
    let out = slipway().args(["push", "v1", "-t", t]).ok();
    assert_eq!(
        out.line(),
        format!("v1 is already staged on {t}; added 2 signatures, no content sent")
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(".slipway/releases/v1.json")).unwrap()).unwrap();
    assert_eq!(meta["signatures"].as_array().map(Vec::len), Some(2), "{meta}");

    sign("carol");
    let again = host_json(&slipway().args(["push", "v1", "-t", t, "--json"]).ok());
    assert_eq!(again["signatures_added"], 1, "{again}");
    assert_eq!(again["bytes_sent"], 0, "{again}");
    assert_eq!(again["result"], "ok", "{again}");

    let out = slipway().args(["push", "v1", "-t", t]).ok();
    assert_eq!(out.line(), format!("v1 is already staged on {t}; nothing sent"));
    let none = host_json(&slipway().args(["push", "v1", "-t", t, "--json"]).ok());
    assert_eq!(none["signatures_added"], 0, "{none}");

    sign("dave");
    slipway()
        .args(["deploy", "v1", "-t", t])
        .ok()
        .stderr_has(&format!("{t}: v1 already staged; added 1 signature\n"));
}
