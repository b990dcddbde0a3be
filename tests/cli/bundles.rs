//! Bundles in the local store are reproducible and content-addressed: the
//! same tag gives the same id and the same bytes; a name is never rebound;
//! unsafe trees, bad tags and corrupt or lying imports are refused before
//! anything is stored.

use std::os::unix::fs::PermissionsExt;

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;

use rustix::process::Signal;

use crate::support::faults::signal;
use crate::support::{Env, Repo, noise, snapshot, wait_for, write_file};

fn sample(env: &Env) -> Repo {
    let repo = env.repo("app");
    repo.write("src/index.html", "<h1>v1</h1>\n")
        .exec("bin/start", "#!/bin/sh\necho start\n")
        .symlink("public", "src")
        .write(
            "slipway.toml",
            "[build]\ncommand = \"mkdir -p dist && cp -R src bin public dist/ && echo built-by-command\"\noutput = \"dist\"\n",
        )
        .commit("v1")
        .tag("v1");
    repo
}

#[test]
fn build_prints_only_the_id_and_the_same_tag_gives_the_same_id_and_bytes() {
    let env = Env::new();
    let repo = sample(&env);
    let out = env.slipway().args(["build", "v1"]).current_dir(&repo.path).ok();
    let id = out.line();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    assert!(
        out.stderr().contains("built-by-command"),
        "build output goes to stderr: {out}"
    );

    // A dirty working tree and another store change nothing.
    repo.write("src/index.html", "dirty working tree\n");
    repo.write("slipway.toml", "[build]\ncommand = \"exit 7\"\n");
    let other = env
        .slipway()
        .env("SLIPWAY_STORE", env.path("store2"))
        .args(["build", "v1"])
        .current_dir(&repo.path)
        .ok();
    assert_eq!(other.line(), id);

    env.slipway()
        .args(["export", "v1", "-o"])
        .arg(env.path("a.tar.zst"))
        .ok();
    env.slipway()
        .env("SLIPWAY_STORE", env.path("store2"))
        .args(["export", &id, "-o"])
        .arg(env.path("b.tar.zst"))
        .ok();
    assert_eq!(
        std::fs::read(env.path("a.tar.zst")).unwrap(),
        std::fs::read(env.path("b.tar.zst")).unwrap()
    );
}

#[test]
fn export_unpacks_with_plain_tar_into_the_tree_and_the_manifest() {
    let env = Env::new();
    let repo = sample(&env);
    env.slipway().args(["build", "v1"]).current_dir(&repo.path).ok();
    let file = env.path("v1.tar.zst");
    env.slipway().args(["export", "v1", "-o"]).arg(&file).ok();
    let dest = env.path("unpacked");
    std::fs::create_dir_all(&dest).unwrap();
    let st = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&dest)
        .status()
        .unwrap();
    assert!(st.success());
    let tree = snapshot(&dest);
    assert_eq!(
        tree.get("bin/start").map(String::as_str),
        Some("x:#!/bin/sh\necho start\n")
    );
    assert_eq!(tree.get("public").map(String::as_str), Some("-> src"));
    assert_eq!(tree.get("src/index.html").map(String::as_str), Some("<h1>v1</h1>\n"));
    assert!(tree.contains_key(".slipway/manifest.json"));
    assert_eq!(tree.len(), 7, "{tree:?}");
    // The sidecar carries provenance, not the archive.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("v1.tar.zst.meta.json")).unwrap()).unwrap();
    assert_eq!(meta["provenance"]["tag"], "v1");
}

#[test]
fn annotated_and_lightweight_tags_and_provenance() {
    let env = Env::new();
    let repo = sample(&env);
    repo.tag_annotated("v1-annotated");
    let a = env.slipway().args(["build", "v1"]).current_dir(&repo.path).ok().line();
    let b = env
        .slipway()
        .args(["build", "v1-annotated"])
        .current_dir(&repo.path)
        .ok()
        .line();
    assert_eq!(a, b, "same commit, same id");
    let info = env.slipway().args(["inspect", "v1-annotated", "--json"]).ok().json();
    let commit = repo.git(&["rev-parse", "v1^{commit}"]);
    assert_eq!(info["provenance"]["commit"], commit.as_str());
    assert_eq!(
        info["provenance"]["tag_object"],
        repo.git(&["rev-parse", "v1-annotated"]).as_str()
    );
    assert_eq!(
        info["provenance"]["builder"].as_str().unwrap().split('@').next(),
        Some("tester")
    );
    assert!(
        info["provenance"]["build_command"]
            .as_str()
            .unwrap()
            .contains("mkdir -p dist")
    );
    assert_eq!(info["files"], 2);
    assert_eq!(info["entries"], 5);
    let text = env.slipway().args(["inspect", "v1"]).ok().stdout();
    assert!(text.contains("lightweight") && text.contains(&commit), "{text}");
}

#[test]
fn no_config_means_the_tag_tree_is_the_bundle_and_export_ignore_is_honoured() {
    let env = Env::new();
    let repo = env.repo("plain");
    repo.write("a.txt", "a")
        .write("secret/notes", "x")
        .write(".gitattributes", "secret export-ignore\n")
        .commit("c")
        .tag("r1");
    let id = env
        .slipway()
        .args(["build", "r1", "--name", "plain-1"])
        .current_dir(&repo.path)
        .ok()
        .line();
    let info = env.slipway().args(["inspect", "plain-1", "--json"]).ok().json();
    assert_eq!(info["id"], id.as_str());
    assert_eq!(info["files"], 2, "a.txt and .gitattributes only: {info}");
}

#[test]
fn build_verbose_says_where_the_time_went_step_by_step_and_only_with_v() {
    let env = Env::new();
    let repo = sample(&env);
    let out = env.slipway().args(["-v", "build", "v1"]).current_dir(&repo.path).ok();
    let stderr = out.stderr();
    let steps: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("build: "))
        .map(|l| l.rsplit_once(": ").map(|(what, _)| what).unwrap_or(l))
        .collect();
    assert_eq!(
        steps,
        [
            "listing the tree",
            "reading, hashing and compressing",
            "  of which waiting for the reader",
            "  of which waiting for a free compressor",
            "the last frames",
            "the manifest",
            "putting it in front",
            "fsync of the bundle",
            "into the store",
        ],
        "{out}"
    );
    for line in stderr.lines().filter(|l| l.starts_with("build: ")) {
        let secs = line.rsplit_once(": ").unwrap().1;
        assert!(
            secs.strip_suffix(" s").and_then(|n| n.parse::<f64>().ok()).is_some(),
            "{line}"
        );
    }
    let quiet = env
        .slipway()
        .env("SLIPWAY_STORE", env.path("store2"))
        .args(["build", "v1"])
        .current_dir(&repo.path)
        .ok();
    assert!(!quiet.stderr().contains("build: "), "{quiet}");
}

#[test]
fn build_refuses_bad_tags_names_and_failing_commands() {
    let env = Env::new();
    let repo = sample(&env);
    env.slipway()
        .args(["build", "v9"])
        .current_dir(&repo.path)
        .fails(2)
        .one_line_error()
        .stderr_has("unknown tag `v9`");
    repo.git(&["tag", "feature/x"]);
    env.slipway()
        .args(["build", "feature/x"])
        .current_dir(&repo.path)
        .fails(2)
        .stderr_has("not a valid release name; give one with `--name`");
    env.slipway()
        .args(["build", "feature/x", "--name", "feature-x"])
        .current_dir(&repo.path)
        .ok();

    repo.write("slipway.toml", "[build]\ncommand = \"echo failing; exit 3\"\n")
        .commit("broken")
        .tag("v2");
    let out = env.slipway().args(["build", "v2"]).current_dir(&repo.path).fails(1);
    out.stderr_has("build command `echo failing; exit 3` failed with exit status 3");
    env.slipway()
        .args(["inspect", "v2"])
        .fails(2)
        .stderr_has("no release or bundle `v2`");

    repo.write("slipway.toml", "[build]\ncomand = \"make\"\n")
        .commit("typo")
        .tag("v3");
    env.slipway()
        .args(["build", "v3"])
        .current_dir(&repo.path)
        .fails(2)
        .stderr_has("`v3:slipway.toml` line 2 (`comand`)");

    env.slipway()
        .args(["build", "v1"])
        .current_dir(env.path(""))
        .fails(2)
        .stderr_has("not inside a git repository");
}

#[test]
fn a_name_is_never_rebound_to_another_id() {
    let env = Env::new();
    env.write("d/a", "one");
    let first = env
        .slipway()
        .args(["build", "--dir", "d", "--name", "ci-1"])
        .ok()
        .line();
    env.slipway().args(["build", "--dir", "d", "--name", "ci-1"]).ok();
    env.write("d/a", "two");
    let out = env.slipway().args(["build", "--dir", "d", "--name", "ci-1"]).fails(1);
    let other = env
        .slipway()
        .args(["build", "--dir", "d", "--name", "ci-2"])
        .ok()
        .line();
    assert_eq!(
        out.stderr(),
        format!(
            "error: release `ci-1` is already bound to {first} in this store, not {other}; \
             a name is never rebound to another bundle: build it under another name with `--name`\n"
        )
    );
    assert_eq!(
        env.slipway().args(["inspect", "ci-1", "--json"]).ok().json()["id"],
        first.as_str()
    );
}

#[test]
fn build_dir_refuses_unsafe_trees_before_storing_anything() {
    let env = Env::new();
    type Make = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Make, &str)> = vec![
        (
            "abs-link",
            Box::new(|d| std::os::unix::fs::symlink("/etc/passwd", d.join("l")).unwrap()),
            "leaves the release tree",
        ),
        (
            "up-link",
            Box::new(|d| std::os::unix::fs::symlink("../../x", d.join("l")).unwrap()),
            "leaves the release tree",
        ),
        (
            "fifo",
            Box::new(|d| {
                assert!(
                    std::process::Command::new("mkfifo")
                        .arg(d.join("f"))
                        .status()
                        .unwrap()
                        .success()
                );
            }),
            "is a special file",
        ),
        (
            "non-utf8",
            Box::new(|d| {
                use std::os::unix::ffi::OsStrExt;
                std::fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff")), "x").unwrap();
            }),
            "not valid UTF-8",
        ),
        (
            "reserved",
            Box::new(|d| write_file(&d.join(".slipway/x"), b"x")),
            "`.slipway` is reserved",
        ),
    ];
    for (name, make, msg) in cases {
        let dir = env.path(name);
        write_file(&dir.join("ok.txt"), b"fine");
        make(&dir);
        let out = env
            .slipway()
            .args(["build", "--dir"])
            .arg(&dir)
            .args(["--name", name])
            .run();
        assert_ne!(out.out.status.code(), Some(0), "{out}");
        out.one_line_error().stderr_has(msg);
    }
    let names = std::fs::read_dir(env.store.join("names")).unwrap().count();
    let bundles = std::fs::read_dir(env.store.join("bundles")).unwrap().count();
    assert_eq!((names, bundles), (0, 0), "nothing stored");
}

#[test]
fn verify_detects_a_corrupt_bundle_with_exit_5() {
    let env = Env::new();
    env.write(
        "d/big.bin",
        (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>(),
    );
    let id = env.slipway().args(["build", "--dir", "d", "--name", "r"]).ok().line();
    env.slipway().args(["verify", "r"]).ok();
    let path = env.store.join("bundles").join(format!("{}.tar.zst", &id[7..]));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    env.slipway().args(["verify", "r"]).fails(5).one_line_error();
    std::fs::write(&path, &bytes[..n / 2]).unwrap();
    env.slipway()
        .args(["verify", "r"])
        .fails(5)
        .one_line_error()
        .stderr_has("corrupt or truncated");
}

#[test]
fn import_verifies_before_binding_and_refuses_lies() {
    let env = Env::new();
    env.write("d/a.txt", "alpha");
    env.write("d/b.txt", "bravo");
    let id = env.slipway().args(["build", "--dir", "d", "--name", "r1"]).ok().line();
    let file = env.path("r1.tar.zst");
    env.slipway().args(["export", "r1", "-o"]).arg(&file).ok();

    // A clean import into another store, with the sidecar's name.
    let other = env.path("other");
    let imported = env
        .slipway()
        .env("SLIPWAY_STORE", &other)
        .arg("import")
        .arg(&file)
        .ok()
        .line();
    assert_eq!(imported, id);
    env.slipway().env("SLIPWAY_STORE", &other).args(["verify", "r1"]).ok();

    // A manifest that disagrees with the contents: rewrite one file's bytes, same length.
    let lie = env.path("lie");
    std::fs::create_dir_all(&lie).unwrap();
    assert!(
        std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(&file)
            .arg("-C")
            .arg(&lie)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(lie.join("a.txt"), "ALPHA").unwrap();
    let crafted = env.path("crafted.tar.zst");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && tar --format=gnu -cf - .slipway/manifest.json a.txt b.txt | zstd -q -o {}",
            lie.display(),
            crafted.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let third = env.path("third");
    env.slipway()
        .env("SLIPWAY_STORE", &third)
        .arg("import")
        .arg(&crafted)
        .args(["--name", "evil"])
        .fails(5)
        .one_line_error()
        .stderr_has("content of `a.txt` does not match its sha256");
    assert_eq!(std::fs::read_dir(third.join("names")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(third.join("bundles")).unwrap().count(), 0);

    // Without a sidecar a name is required.
    let bare = env.path("bare.tar.zst");
    std::fs::copy(&file, &bare).unwrap();
    env.slipway()
        .arg("import")
        .arg(&bare)
        .fails(2)
        .stderr_has("pass `--name NAME`");
}

#[test]
fn ids_resolve_by_unique_prefix_and_ambiguity_lists_candidates() {
    let env = Env::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        env.write(&format!("d{i}/f"), format!("{i}"));
        ids.push(
            env.slipway()
                .args(["build", "--dir", &format!("d{i}"), "--name", &format!("r{i}")])
                .ok()
                .line(),
        );
    }
    // find two ids sharing a first hex digit
    let (a, b) = ids
        .iter()
        .enumerate()
        .find_map(|(i, a)| {
            ids[i + 1..]
                .iter()
                .find(|b| b[7..8] == a[7..8])
                .map(|b| (a.clone(), b.clone()))
        })
        .unwrap();
    let out = env.slipway().args(["inspect", &a[7..8]]).fails(2);
    out.one_line_error()
        .stderr_has(&format!("error: `{}` is ambiguous: it matches ", &a[7..8]))
        .stderr_has(&a)
        .stderr_has(&b)
        .stderr_has("; give more digits of the id\n");
    let full = env.slipway().args(["inspect", &a[..20], "--json"]).ok().json();
    assert_eq!(full["id"], a.as_str());
    let bare = env.slipway().args(["--json", "inspect", &a[7..30]]).ok().json();
    assert_eq!(bare["id"], a.as_str());
}

#[test]
fn global_flags_go_before_or_after_and_list_gc_work() {
    let env = Env::new();
    env.write("d/f", "x");
    let store = env.path("elsewhere");
    env.slipway()
        .args(["build", "--dir", "d", "--name", "r1", "--store"])
        .arg(&store)
        .ok();
    let list = env
        .slipway()
        .arg("--store")
        .arg(&store)
        .args(["list", "--json"])
        .ok()
        .json();
    assert_eq!(list[0]["name"], "r1");
    let json = env
        .slipway()
        .args(["--json", "build", "--dir", "d", "--name", "r2"])
        .ok()
        .json();
    assert_eq!(json["name"], "r2");
    assert_eq!(json["new"], true);

    // an unnamed bundle (name file removed) is collected by gc
    std::fs::remove_file(env.store.join("names/r2.json")).unwrap();
    let gc = env.slipway().args(["gc", "--json"]).ok().json();
    assert_eq!(gc["bundles"].as_array().unwrap().len(), 1);
    env.slipway().args(["inspect", json["id"].as_str().unwrap()]).fails(2);
}

/// Files and bytes under `dir`.
fn usage(dir: &std::path::Path) -> (u64, u64) {
    let mut total = (0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (f, b) = usage(&e.path());
            total = (total.0 + f, total.1 + b);
        } else {
            total = (total.0 + 1, total.1 + m.len());
        }
    }
    total
}

/// Process `pid` is stopped (or gone): its state in `/proc/<pid>/stat`.
fn frozen(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_none_or(|state| matches!(state, 'T' | 't' | 'Z' | 'X'))
}

#[test]
fn a_killed_build_leaves_the_store_as_it_was() {
    let env = Env::new();
    // 64 MiB that does not compress (each file its own noise: a repeated
    // chunk would, within zstd's window), so the bundle grows as it is built.
    for i in 0..64 {
        write_file(&env.path(&format!("big/f{i:02}")), &noise(1 << 20, i + 1));
    }
    // A store with something in it, to compare against after each kill.
    env.write("small/index.html", "small\n");
    env.slipway().args(["build", "--dir", "small", "--name", "small"]).ok();
    let durable = || {
        let mut s = snapshot(&env.store);
        s.retain(|path, _| !path.starts_with("tmp/"));
        s
    };
    let before = durable();
    // Kill points by what the build has done, not by the clock: a first new
    // file anywhere in the store; 16 MiB written; 40 MiB written.
    let points: [(&str, u64, u64); 3] = [
        ("its first file", 1, 0),
        ("16 MiB written", 0, 16 << 20),
        ("40 MiB written", 0, 40 << 20),
    ];
    for (point, more_files, more_bytes) in points {
        let (files0, bytes0) = usage(&env.store);
        let reached = || {
            let (files, bytes) = usage(&env.store);
            files >= files0 + more_files && bytes >= bytes0 + more_bytes
        };
        let mut child = env
            .slipway()
            .args(["build", "--dir", "big", "--name", "big"])
            .cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Step the build: frozen (SIGSTOP) while the point is checked, so
        // however the machine schedules, the kill lands where it is aimed.
        let pid = child.id();
        loop {
            signal(pid, Signal::STOP);
            wait_for(10, "the build to stop", || frozen(pid));
            if reached() {
                break;
            }
            let done = child.try_wait().unwrap();
            assert!(done.is_none(), "the build ended ({done:?}) before {point}");
            signal(pid, Signal::CONT);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the kill at {point} found the build already over ({status})"
        );
        assert_eq!(
            durable(),
            before,
            "a build killed at {point} changed the store outside tmp/"
        );
        env.slipway().args(["inspect", "big"]).fails(2);
        env.slipway().args(["verify", "small"]).ok();
    }
    env.slipway().args(["build", "--dir", "big", "--name", "big"]).ok();
    env.slipway().args(["verify", "big"]).ok();
    env.slipway().arg("gc").ok();
    assert_eq!(std::fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);
}

#[test]
fn the_zstd_worker_count_changes_neither_the_id_nor_the_bytes() {
    let env = Env::new();
    // Two zstd jobs' worth (8 MiB each at level 3) of half noise, half text.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..(6 << 20))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    env.write("d/noise.bin", noise);
    env.write("d/text.txt", "a line of text that compresses well\n".repeat(200_000));
    let mut files = Vec::new();
    for workers in ["1", "2"] {
        let store = env.path(&format!("store-{workers}"));
        let id = env
            .slipway()
            .env("SLIPWAY_ZSTD_WORKERS", workers)
            .env("SLIPWAY_STORE", &store)
            .args(["build", "--dir", "d", "--name", "r"])
            .ok()
            .line();
        let file = env.path(&format!("r-{workers}.tar.zst"));
        env.slipway()
            .env("SLIPWAY_STORE", &store)
            .args(["export", &id, "-o"])
            .arg(&file)
            .ok();
        files.push((id, std::fs::read(&file).unwrap()));
    }
    assert_eq!(files[0].0, files[1].0);
    assert!(files[0].1 == files[1].1, "exports differ between 1 and 2 zstd workers");
}
