//! A push makes durable what it wrote, and only that: another process's
//! unsynced writes on the host's file system (a database's, a log
//! shipper's) are still dirty after it (`Dirty:` in /proc/meminfo). A
//! `syncfs(2)` would flush them all and make the push wait behind them.
//!
//! A test binary of its own, so that no other test writes while it
//! measures: `Dirty:` counts the whole machine's unsynced pages.

use std::path::{Path, PathBuf};
use std::process::Command;

fn slipway(store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SLIPWAY_STORE", store)
        .env("NO_COLOR", "1");
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run slipway");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `key:` of /proc/meminfo, in KiB.
fn meminfo_kib(key: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no `{key}:` in /proc/meminfo"))
}

fn read_u64(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// How much a writer may leave dirty before the kernel starts writing it
/// back by itself (`vm.dirty_background_*`), in KiB: a neighbour of more
/// than that would be flushed whatever the push does.
fn background_threshold_kib() -> u64 {
    let bytes = read_u64("/proc/sys/vm/dirty_background_bytes");
    if bytes > 0 {
        return bytes / 1024;
    }
    meminfo_kib("MemAvailable") * read_u64("/proc/sys/vm/dirty_background_ratio") / 100
}

/// Write `kib` KiB of another process's data at `path` without syncing it;
/// `Dirty:` before and after.
fn neighbour_writes(path: &Path, kib: u64) -> (u64, u64) {
    let before = meminfo_kib("Dirty");
    let status = Command::new("head")
        .arg("-c")
        .arg(format!("{kib}K"))
        .arg("/dev/zero")
        .stdout(std::fs::File::create(path).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    (before, meminfo_kib("Dirty"))
}

fn skip_or_fail(msg: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
}

fn write_tree(dir: &Path, version: u8) {
    for d in 0..8 {
        let sub = dir.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..16 {
            // One file in eight differs between versions.
            let v = if f % 8 == 0 { version } else { 0 };
            let body = format!("file {d}/{f} of version {v}\n").repeat(2000);
            std::fs::write(sub.join(format!("f{f}.txt")), body).unwrap();
        }
    }
}

/// A scratch directory under target/ (not /tmp, which may be a RAM file
/// system, whose pages are never counted as dirty) with a store holding v1
/// and v2 of [`write_tree`] and a host root that has v1: the push of v2 is
/// the one to watch. Returns the directory (removed when dropped), the
/// store and the root.
fn v1_pushed_v2_built() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("slipway-durability-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let store = tmp.path().join("store");
    let host = tmp.path().join("host");
    for v in [1u8, 2] {
        let src = tmp.path().join(format!("src{v}"));
        write_tree(&src, v);
        run(slipway(&store)
            .args(["build", "--dir"])
            .arg(&src)
            .args(["--name", &format!("v{v}")]));
    }
    run(slipway(&store).args(["push", "v1", "-t"]).arg(&host));
    (tmp, store, host)
}

#[test]
fn a_push_leaves_a_neighbours_unsynced_writes_on_the_host_file_system_dirty() {
    let (tmp, store, host) = v1_pushed_v2_built();

    let kib = (background_threshold_kib() / 2).min(256 * 1024);
    if kib < 32 * 1024 {
        return skip_or_fail(&format!(
            "the kernel writes dirty pages back by itself beyond {} KiB here; too little to measure",
            background_threshold_kib()
        ));
    }
    // Start from nothing dirty: what stays dirty after the push is the neighbour's.
    assert!(Command::new("sync").status().unwrap().success());
    let neighbour = tmp.path().join("neighbour.db");
    let (base, before) = neighbour_writes(&neighbour, kib);
    let theirs = before.saturating_sub(base);
    if theirs < kib * 8 / 10 {
        return skip_or_fail(&format!(
            "writes under {} are not counted in `Dirty:` (a RAM file system?): {theirs} of {kib} KiB",
            tmp.path().display()
        ));
    }

    let json = run(slipway(&store).args(["push", "v2", "--json", "-t"]).arg(&host));
    let after = meminfo_kib("Dirty");
    std::fs::remove_file(&neighbour).unwrap();

    // The push did write: new objects, a new tree (and made them durable).
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    // 128 files, 16 of them changed (`f0` and `f8` of each directory).
    assert_eq!(report[0]["objects_reused"], 112, "{json}");
    assert!(report[0]["bytes_needed"].as_u64() > Some(0), "{json}");
    assert!(host.join("releases/v2/d0/f0.txt").is_file());
    let kept = after.saturating_sub(base);
    assert!(
        kept * 2 >= theirs,
        "the push flushed another process's writes: `Dirty:` went from {before} KiB to {after} KiB \
         ({theirs} KiB of the neighbour's before the push, {kept} KiB after; at least half must stay)"
    );
}

/// `strace` of `slipway … args`, following threads and the local host's
/// `serve`: every fsync (with the path of its descriptor) and rename, in
/// the order they were made.
fn traced(store: &Path, log: &Path, args: &[&str], host: &Path) -> Vec<String> {
    if Command::new("strace").arg("-V").output().is_err() {
        skip_or_fail("strace is missing (scripts/test.sh installs it)");
        return Vec::new();
    }
    let status = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-y",
            "-s",
            "4096",
            "-e",
            "trace=fsync,fdatasync,syncfs,sync,rename,renameat,renameat2",
        ])
        .arg("-o")
        .arg(log)
        .arg(env!("CARGO_BIN_EXE_slipway"))
        .env("SLIPWAY_STORE", store)
        .args(args)
        .arg(host)
        .status()
        .unwrap();
    assert!(status.success(), "{args:?} under strace failed");
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The path strace printed for the descriptor of an fsync line
/// (`fsync(7</a/b>) = 0`, or `fsync(7</a/b> <unfinished ...>` when another
/// thread's call came in between).
fn fsynced(line: &str) -> Option<&str> {
    let rest = line.split_once("fsync(")?.1;
    let path = rest.split_once('<')?.1;
    path.split_once('>').map(|(p, _)| p)
}

#[test]
fn a_push_fsyncs_each_file_it_wrote_and_each_directory_it_made_before_the_release_appears_and_nothing_else() {
    let (tmp, store, host) = v1_pushed_v2_built();
    let lines = traced(&store, &tmp.path().join("strace.log"), &["push", "v2", "-t"], &host);
    if lines.is_empty() {
        return;
    }
    let partial = host.join(".slipway/tmp/v2.partial");
    let partial = partial.to_str().unwrap();
    // The rename that makes the release appear.
    let appear = lines
        .iter()
        .position(|l| l.contains("rename") && l.contains(partial) && l.contains("releases/v2"))
        .unwrap_or_else(|| panic!("no rename of {partial} in:\n{}", lines.join("\n")));
    let before: std::collections::HashSet<&str> = lines[..appear].iter().filter_map(|l| fsynced(l)).collect();
    assert!(
        !lines.iter().any(|l| l.contains("syncfs(") || l.contains(" sync(")),
        "a push flushes the whole file system:\n{}",
        lines.join("\n")
    );

    // Every directory of the new tree, and its top.
    let mut missing = Vec::new();
    let want_dir = |rel: &str| {
        if rel.is_empty() {
            partial.to_string()
        } else {
            format!("{partial}/{rel}")
        }
    };
    for d in std::iter::once(String::new()).chain((0..8).map(|d| format!("d{d}"))) {
        if !before.contains(want_dir(&d).as_str()) {
            missing.push(want_dir(&d));
        }
    }
    // Each file whose content this push wrote (f0 and f8 of each directory
    // changed), and the objects/ directory it was linked into.
    let objects = host.join(".slipway/objects");
    for d in 0..8 {
        for f in [0, 8] {
            let file = format!("{partial}/d{d}/f{f}.txt");
            if !before.contains(file.as_str()) {
                missing.push(file);
            }
            let content = std::fs::read(host.join(format!("releases/v2/d{d}/f{f}.txt"))).unwrap();
            let hex: String = sha2_hex(&content);
            let dir = objects.join(&hex[..2]);
            if !before.contains(dir.to_str().unwrap()) {
                missing.push(dir.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not fsynced before the release appeared: {missing:#?}\n{}",
        lines[..appear].join("\n")
    );
    // And what it did not write is not fsynced: the files it linked from objects/.
    let unchanged = format!("{partial}/d0/f1.txt");
    assert!(
        !before.contains(unchanged.as_str()),
        "{unchanged} was fsynced, but the push did not write it"
    );
}

fn sha2_hex(bytes: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}
