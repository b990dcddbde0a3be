//! Remote stores: `publish`, `fetch` and `gc --remote` against a real
//! S3-compatible store (a throwaway Garage, and SeaweedFS for the round
//! trip and the race), through the real binary. The bucket is looked at
//! and damaged with raw signed requests (support/s3.rs), never through
//! slipway.
//!
//! Every remote here is `shelf`, at `s3://releases/shop` (a prefix, as
//! most buckets are shared); [`World::key`] is a key of the remote as the
//! bucket holds it.

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use serde_json::json;

use crate::support::s3::{self, Engine, Store};
use crate::support::{Cmd, Env, Outcome, noise, wait_for};

const REMOTE: &str = "shelf";
const PREFIX: &str = "shop";

/// A test's directory, its S3 store and `slipway.toml` naming it.
struct World {
    // Dropped first (fields drop in order): the server stops before its
    // directory is removed.
    s3: Store,
    env: Env,
}

impl World {
    fn start(engine: Engine) -> World {
        let env = Env::new();
        let s3 = engine.start(&env.path("s3"));
        s3.add_remote(&env.path("slipway.toml"), REMOTE, PREFIX);
        std::fs::create_dir_all(env.path("home")).unwrap();
        World { s3, env }
    }

    /// `slipway` on the default store, with the store's key in the
    /// environment, an empty HOME (no ~/.aws), no ssh-agent and no HTTP
    /// proxy (slipway's HTTP client would use one for 127.0.0.1 too).
    fn slipway(&self) -> Cmd {
        let mut cmd = self.env.slipway().env("HOME", self.env.path("home"));
        cmd.cmd.env_remove("SSH_AUTH_SOCK");
        for var in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.cmd.env_remove(var);
        }
        for (k, v) in self.s3.credentials() {
            cmd = cmd.env(k, v);
        }
        cmd
    }

    /// [`World::slipway`] on the local store at `store` (under the test dir).
    fn slipway_in(&self, store: &str) -> Cmd {
        self.slipway().env("SLIPWAY_STORE", self.env.path(store))
    }

    /// The bucket's key of the remote's `rel`.
    fn key(&self, rel: &str) -> String {
        format!("{PREFIX}/{rel}")
    }

    /// The remote's keys under `rel` (without the prefix).
    fn keys(&self, rel: &str) -> Vec<String> {
        self.s3
            .keys(&self.key(rel))
            .into_iter()
            .map(|k| k[PREFIX.len() + 1..].to_string())
            .collect()
    }

    /// The remote's packs (`packs/<sha>.pack`) and their sizes.
    fn packs(&self) -> Vec<(String, u64)> {
        self.s3
            .list(&self.key("packs/"))
            .into_iter()
            .filter(|(k, _)| k.ends_with(".pack"))
            .map(|(k, size)| (k[PREFIX.len() + 1..].to_string(), size))
            .collect()
    }

    /// A tree of `n` files of incompressible bytes (sizes 1–3 KB), `seed`
    /// telling trees apart, built as `name` into `store`: its id.
    fn build(&self, store: &str, dir: &str, name: &str, n: usize, seed: u64) -> String {
        for i in 0..n {
            let len = 1000 + (i * 37) % 2000;
            self.env
                .write(&format!("{dir}/f{i:02}.bin"), noise(len, seed * 1000 + i as u64));
        }
        self.slipway_in(store)
            .args(["build", "--dir", dir, "--name", name])
            .ok()
            .line()
    }

    fn publish(&self, store: &str, rel: &str) -> Cmd {
        self.slipway_in(store).args(["publish", rel, "--to", REMOTE, "--json"])
    }

    fn fetch(&self, store: &str, rel: &str) -> Cmd {
        self.slipway_in(store).args(["fetch", rel, "--from", REMOTE, "--json"])
    }

    /// Nothing of release `name` in the local store `store`: no name, no bundle.
    fn nothing_stored(&self, store: &str, name: &str) {
        let root = self.env.path(store);
        assert!(
            !root.join("names").join(format!("{name}.json")).exists(),
            "{name} was bound"
        );
        let bundles = std::fs::read_dir(root.join("bundles")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(bundles, 0, "a bundle was stored");
        let list = self.slipway_in(store).args(["list", "--json"]).ok().json();
        assert_eq!(list, json!([]), "{list}");
    }
}

/// The hex of an id (`sha256:HEX`), as bucket keys have it.
fn hex(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// An ed25519 key made by `ssh-keygen`: its path and fingerprint.
fn keygen(env: &Env, name: &str) -> (PathBuf, String) {
    let path = env.path(&format!("keys/{name}"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("{name}@example.com"),
            "-f",
        ])
        .arg(&path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen (install openssh-client; scripts/test.sh does it)");
    assert!(st.success());
    let out = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(path.with_extension("pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    (path, fingerprint)
}

/// The key fingerprints of `rel`'s signatures in `store`, sorted.
fn signers(w: &World, store: &str, rel: &str) -> Vec<String> {
    let info = w.slipway_in(store).args(["inspect", rel, "--json"]).ok().json();
    let mut out: Vec<String> = info["signatures"]
        .as_array()
        .unwrap_or_else(|| panic!("{info}"))
        .iter()
        .map(|s| s["key_fingerprint"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// A slipway started in the background; killed (and reaped) if dropped
/// unfinished, so none outlives a failing test.
struct Running {
    child: Option<Child>,
    desc: String,
}

impl Running {
    fn spawn(mut cmd: Cmd) -> Running {
        let desc = format!("{:?}", cmd.cmd);
        let child = cmd
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run slipway");
        Running {
            child: Some(child),
            desc,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn exited(&mut self) -> bool {
        self.child.as_mut().expect("running").try_wait().unwrap().is_some()
    }

    fn finish(mut self) -> Outcome {
        let out: Output = self.child.take().expect("running").wait_with_output().unwrap();
        Outcome {
            desc: self.desc.clone(),
            out,
        }
    }

    /// SIGKILL, then reap.
    fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        let _ = child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `SLIPWAY_REMOTE_PAUSE=point:file` for `cmd`.
fn paused(cmd: Cmd, point: &str, file: &Path) -> Cmd {
    cmd.env("SLIPWAY_REMOTE_PAUSE", format!("{point}:{}", file.display()))
}

/// Wait until `run` has reached its pause point (`file.<pid>` exists).
fn wait_paused(run: &mut Running, file: &Path) {
    let marker = PathBuf::from(format!("{}.{}", file.display(), run.pid()));
    wait_for(60, &format!("{} to pause", run.desc), || {
        assert!(!run.exited(), "exited before its pause point: {}", run.desc);
        marker.exists()
    });
}

fn round_trip(engine: Engine, test: &str) {
    if s3::skip_if_missing(engine, test) {
        return;
    }
    let w = World::start(engine);
    let id = w.build("store", "site", "v1", 50, 1);
    let (alice, alice_fp) = keygen(&w.env, "alice");
    w.slipway().args(["sign", "v1", "--key"]).arg(&alice).ok();

    let out = w.publish("store", "v1").ok().json();
    crate::json_doc::assert_documented("slipway publish REL --to REMOTE --json", &out);
    let packs = w.packs();
    assert_eq!(packs.len(), 1, "{packs:?}");
    assert_eq!(
        out,
        json!({
            "name": "v1", "id": id, "remote": REMOTE, "new": true,
            "objects_uploaded": 50, "bytes_uploaded": packs[0].1, "objects_reused": 0,
            "packs_uploaded": 1, "signatures_added": 1,
        })
    );
    // Everything under the prefix: the pack and its index, the release,
    // the name bound; no claim, no lock left.
    let h = hex(&id);
    let pack = packs[0].0.strip_suffix(".pack").unwrap();
    let sigs = w.keys(&format!("releases/{h}/signatures/"));
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    let mut want = vec![
        format!("{pack}.idx"),
        format!("{pack}.pack"),
        format!("releases/{h}/index.zst"),
        format!("releases/{h}/manifest.zst"),
        format!("releases/{h}/provenance.json"),
        sigs[0].clone(),
        format!("names/v1/{h}"),
    ];
    want.sort();
    assert_eq!(w.keys(""), want);
    assert!(w.s3.keys("").iter().all(|k| k.starts_with("shop/")));

    // A fresh store gets the same release: id, contents, provenance, signer.
    let out = w.fetch("fresh", "v1").ok().json();
    crate::json_doc::assert_documented("slipway fetch REL --from REMOTE --json", &out);
    assert_eq!(
        out,
        json!({
            "name": "v1", "id": id, "remote": REMOTE, "new": true,
            "objects_downloaded": 50, "bytes_downloaded": packs[0].1, "signatures": 1,
        })
    );
    let here = w.slipway().args(["inspect", "v1", "--json"]).ok().json();
    let there = w.slipway_in("fresh").args(["inspect", "v1", "--json"]).ok().json();
    assert_eq!(there["id"], id.as_str());
    assert_eq!(signers(&w, "fresh", "v1"), vec![alice_fp]);
    assert_eq!(here, there);
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
    assert!(!w.env.path(&format!("fresh/tmp/fetch-{h}")).exists());

    // Again: nothing to download.
    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!(
        (&out["new"], &out["objects_downloaded"], &out["signatures"]),
        (&json!(false), &json!(0), &json!(1))
    );
}

#[test]
fn remote_publish_then_fetch_into_a_fresh_store_on_garage() {
    round_trip(Engine::Garage, "remote_publish_then_fetch_into_a_fresh_store_on_garage");
}

#[test]
fn remote_publish_then_fetch_into_a_fresh_store_on_seaweedfs() {
    round_trip(
        Engine::Seaweed,
        "remote_publish_then_fetch_into_a_fresh_store_on_seaweedfs",
    );
}

#[test]
fn remote_publish_uploads_only_what_the_bucket_lacks_and_signatures_made_since() {
    if s3::skip_if_missing(Engine::Garage, "remote_publish_uploads_only_what_the_bucket_lacks") {
        return;
    }
    let w = World::start(Engine::Garage);
    let v1 = w.build("store", "site", "v1", 50, 1);
    let (alice, alice_fp) = keygen(&w.env, "alice");
    let (bob, bob_fp) = keygen(&w.env, "bob");
    w.slipway().args(["sign", "v1", "--key"]).arg(&alice).ok();
    let first = w.publish("store", "v1").ok().json();
    assert_eq!(first["objects_uploaded"], 50);

    // Again: nothing uploaded, the name was bound already.
    let again = w.publish("store", "v1").ok().json();
    assert_eq!(
        again,
        json!({
            "name": "v1", "id": v1, "remote": REMOTE, "new": false,
            "objects_uploaded": 0, "bytes_uploaded": 0, "objects_reused": 50,
            "packs_uploaded": 0, "signatures_added": 0,
        })
    );

    // One file of 50 changed: one object, in a pack of its own.
    w.env.write("site/f07.bin", noise(1500, 777));
    let v2 = w.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok().line();
    let before: Vec<String> = w.packs().into_iter().map(|(k, _)| k).collect();
    let out = w.publish("store", "v2").ok().json();
    let new_pack: Vec<(String, u64)> = w.packs().into_iter().filter(|(k, _)| !before.contains(k)).collect();
    assert_eq!(new_pack.len(), 1, "{new_pack:?}");
    assert_eq!(
        out,
        json!({
            "name": "v2", "id": v2, "remote": REMOTE, "new": true,
            "objects_uploaded": 1, "bytes_uploaded": new_pack[0].1, "objects_reused": 49,
            "packs_uploaded": 1, "signatures_added": 0,
        })
    );

    // Signed again since: publishing adds that one signature, nothing else.
    w.slipway().args(["sign", "v1", "--key"]).arg(&bob).ok();
    let out = w.publish("store", "v1").ok().json();
    assert_eq!(
        (&out["new"], &out["objects_uploaded"], &out["signatures_added"]),
        (&json!(false), &json!(0), &json!(1)),
        "{out}"
    );
    assert_eq!(w.keys(&format!("releases/{}/signatures/", hex(&v1))).len(), 2);
    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!((&out["id"], &out["signatures"]), (&json!(v1), &json!(2)));
    let mut both = vec![alice_fp, bob_fp];
    both.sort();
    assert_eq!(signers(&w, "fresh", "v1"), both);
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
    // v2 shares 49 contents with v1, already in the fresh store: it gets all 50
    // (the local store keeps bundles whole), from both packs.
    let out = w.fetch("fresh", "v2").ok().json();
    assert_eq!((&out["id"], &out["objects_downloaded"]), (&json!(v2), &json!(50)));
}

#[test]
fn remote_another_id_under_a_published_name_is_refused() {
    if s3::skip_if_missing(Engine::Garage, "remote_another_id_under_a_published_name_is_refused") {
        return;
    }
    let w = World::start(Engine::Garage);
    let a = w.build("store", "site", "v1", 5, 1);
    w.publish("store", "v1").ok();
    let listing = w.keys("");

    // Another build called v1, in another store.
    let b = w.build("other", "site-b", "v1", 5, 2);
    assert_ne!(a, b);
    let out = w.publish("other", "v1").fails(1);
    out.one_line_error().stderr_has(&format!(
        "release `v1` is already published as {a} in remote `{REMOTE}`, not {b}"
    ));
    assert_eq!(w.keys(""), listing, "the refused publish wrote to the bucket");

    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!(out["id"], a.as_str());
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
}

/// `n` local stores `store-NAME-0`… each with its own build of `name`
/// (sharing four small files, and one of `own` bytes of its own); their ids.
fn rivals(w: &World, name: &str, n: usize, own: usize, seed: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            let dir = format!("tree-{name}-{i}");
            for f in 0..4 {
                w.env
                    .write(&format!("{dir}/shared{f}.bin"), noise(2000, seed * 100 + f));
            }
            w.env
                .write(&format!("{dir}/own.bin"), noise(own, seed * 100 + 50 + i as u64));
            w.slipway_in(&format!("store-{name}-{i}"))
                .args(["build", "--dir", &dir, "--name", name])
                .ok()
                .line()
        })
        .collect()
}

/// After a race for `name` among `ids`: at most one publisher won, every
/// other was refused (exit 1, one line), the name resolves to the
/// winner's id (or fetch says it is not published), and no claim is left.
fn one_winner_at_most(w: &World, name: &str, ids: &[String], outcomes: &[Outcome]) -> Option<String> {
    let mut winners = Vec::new();
    for (id, o) in ids.iter().zip(outcomes) {
        match o.out.status.code() {
            Some(0) => {
                assert_eq!(o.json()["id"], id.as_str(), "{o}");
                assert_eq!(o.json()["new"], true, "{o}");
                winners.push(id.clone());
            }
            Some(1) => {
                o.one_line_error().stderr_has(&format!("release `{name}`"));
            }
            _ => panic!("a racing publisher neither won nor was refused: {o}"),
        }
    }
    assert!(
        winners.len() <= 1,
        "{} publishers bound `{name}`: {winners:?}",
        winners.len()
    );
    let names = w.keys(&format!("names/{name}/"));
    assert!(!names.iter().any(|k| k.ends_with(".claim")), "claims left: {names:?}");
    let bound: Vec<String> = winners.iter().map(|id| format!("names/{name}/{}", hex(id))).collect();
    assert_eq!(names, bound);
    let fresh = format!("fresh-{name}");
    match winners.first() {
        Some(id) => {
            let out = w.fetch(&fresh, name).ok().json();
            assert_eq!(out["id"], id.as_str());
        }
        None => {
            w.fetch(&fresh, name)
                .fails(2)
                .stderr_has(&format!("`{name}` is not published in remote `{REMOTE}`"));
            w.nothing_stored(&fresh, name);
        }
    }
    assert!(w.keys("locks/").is_empty(), "locks left: {:?}", w.keys("locks/"));
    winners.pop()
}

#[test]
fn remote_two_publishers_lined_up_at_the_claim_never_both_bind_the_name() {
    if s3::skip_if_missing(Engine::Garage, "remote_two_publishers_lined_up_at_the_claim") {
        return;
    }
    let w = World::start(Engine::Garage);

    // Both have listed the name (unbound, unclaimed), neither has claimed
    // it: released together, they claim and list again at the same moment.
    let ids = rivals(&w, "v1", 2, 1000, 1);
    let go = w.env.path("go-v1");
    let mut runs: Vec<Running> = (0..2)
        .map(|i| Running::spawn(paused(w.publish(&format!("store-v1-{i}"), "v1"), "before-claim", &go)))
        .collect();
    for r in &mut runs {
        wait_paused(r, &go);
    }
    assert!(w.keys("names/v1/").is_empty());
    std::fs::write(&go, "").unwrap();
    let outcomes: Vec<Outcome> = runs.into_iter().map(Running::finish).collect();
    let winner = one_winner_at_most(&w, "v1", &ids, &outcomes);
    eprintln!("lined up at before-claim: won by {winner:?}");

    // One claims while the other has listed but not yet claimed: the
    // second claimant sees the first's claim when it lists again, removes
    // its own and is refused; the first then binds the name.
    let ids = rivals(&w, "v2", 2, 1000, 2);
    let (go_a, go_b) = (w.env.path("go-a"), w.env.path("go-b"));
    let mut a = Running::spawn(paused(w.publish("store-v2-0", "v2"), "before-claim", &go_a));
    wait_paused(&mut a, &go_a);
    let mut b = Running::spawn(paused(w.publish("store-v2-1", "v2"), "after-claim", &go_b));
    wait_paused(&mut b, &go_b);
    assert_eq!(w.keys("names/v2/"), vec![format!("names/v2/{}.claim", hex(&ids[1]))]);
    std::fs::write(&go_a, "").unwrap();
    let a = a.finish();
    assert_eq!(a.out.status.code(), Some(1), "{a}");
    a.one_line_error().stderr_has(&format!(
        "release `v2` was published at the same moment as {} in remote `{REMOTE}`, not {}",
        ids[1], ids[0]
    ));
    assert_eq!(w.keys("names/v2/"), vec![format!("names/v2/{}.claim", hex(&ids[1]))]);
    std::fs::write(&go_b, "").unwrap();
    let b = b.finish();
    assert_eq!(b.out.status.code(), Some(0), "{b}");
    let winner = one_winner_at_most(&w, "v2", &ids, &[a, b]);
    assert_eq!(winner.as_deref(), Some(ids[1].as_str()));
}

fn sixteen_publishers(engine: Engine, test: &str) {
    if s3::skip_if_missing(engine, test) {
        return;
    }
    let w = World::start(engine);
    // Each uploads 1 MiB of its own: their uploads overlap, so many reach
    // the claim before any has bound the name.
    let ids = rivals(&w, "v1", 16, 1 << 20, 3);
    let runs: Vec<Running> = (0..16)
        .map(|i| Running::spawn(w.publish(&format!("store-v1-{i}"), "v1")))
        .collect();
    let outcomes: Vec<Outcome> = runs.into_iter().map(Running::finish).collect();
    let winner = one_winner_at_most(&w, "v1", &ids, &outcomes);
    let refused = |why: &str| outcomes.iter().filter(|o| o.stderr().contains(why)).count();
    eprintln!(
        "{test}: won by {winner:?}; refused: {} bound already, {} claimed, {} at the same moment",
        refused("is already published as"),
        refused("is being published as"),
        refused("was published at the same moment as")
    );
}

#[test]
fn remote_sixteen_publishers_of_one_name_on_garage_bind_it_once_at_most() {
    sixteen_publishers(Engine::Garage, "remote_sixteen_publishers_of_one_name_on_garage");
}

#[test]
fn remote_sixteen_publishers_of_one_name_on_seaweedfs_bind_it_once_at_most() {
    sixteen_publishers(Engine::Seaweed, "remote_sixteen_publishers_of_one_name_on_seaweedfs");
}

#[test]
fn remote_damaged_or_missing_objects_are_refused_and_nothing_is_stored() {
    if s3::skip_if_missing(Engine::Garage, "remote_damaged_or_missing_objects_are_refused") {
        return;
    }
    let w = World::start(Engine::Garage);
    let id = w.build("store", "site", "v1", 50, 1);
    w.publish("store", "v1").ok();
    let (pack, _) = w.packs().pop().unwrap();
    let original = w.s3.get(&w.key(&pack)).unwrap();

    // One byte flipped in the middle of the pack (incompressible contents:
    // a byte of some file, stored as is in its zstd frame).
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    w.s3.put(&w.key(&pack), &bad);
    let out = w.fetch("fresh", "v1").fails(5);
    out.one_line_error()
        .stderr_has(&format!("remote `{REMOTE}`: content sha256:"))
        .stderr_has(&format!("of `v1` (in `{}` at ", w.key(&pack)))
        .stderr_has("does not match its sha256");
    w.nothing_stored("fresh", "v1");

    // A manifest that is not the id's.
    w.s3.put(&w.key(&pack), &original);
    let mkey = format!("releases/{}/manifest.zst", hex(&id));
    let manifest = w.s3.get(&w.key(&mkey)).unwrap();
    let mut raw = zstd::bulk::decompress(&manifest, 64 << 20).unwrap();
    let at = raw.len() - 2;
    raw[at] ^= 0x01;
    w.s3.put(&w.key(&mkey), &zstd::bulk::compress(&raw, 3).unwrap());
    w.fetch("fresh2", "v1")
        .fails(5)
        .one_line_error()
        .stderr_has(&format!("remote `{REMOTE}`: `{mkey}` hashes to sha256:"))
        .stderr_has(&format!("not to {id}"));
    w.nothing_stored("fresh2", "v1");
    w.s3.put(&w.key(&mkey), &manifest);

    // The pack gone.
    w.s3.delete(&w.key(&pack));
    let out = w.fetch("fresh3", "v1").fails(1);
    out.one_line_error().stderr_has(&format!(
        "remote `{REMOTE}` (s3://releases/{PREFIX} at {}): GET `{}`: the store answered 404",
        w.s3.endpoint,
        w.key(&pack)
    ));
    w.nothing_stored("fresh3", "v1");

    // Back: a fetch works again.
    w.s3.put(&w.key(&pack), &original);
    assert_eq!(w.fetch("fresh3", "v1").ok().json()["id"], id.as_str());
    w.slipway_in("fresh3").args(["verify", "v1"]).ok();
}

#[test]
fn remote_wrong_credentials_or_no_server_fail_in_one_line() {
    if s3::skip_if_missing(Engine::Garage, "remote_wrong_credentials_or_no_server_fail_in_one_line") {
        return;
    }
    let w = World::start(Engine::Garage);
    w.build("store", "site", "v1", 3, 1);
    let out = w
        .publish("store", "v1")
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .fails(1);
    out.one_line_error()
        .stderr_has(&format!("remote `{REMOTE}`"))
        .stderr_has("the store answered 403")
        .stderr_has("check the credentials (from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
    assert!(!out.stderr().contains("not-the-secret"), "{out}");
    assert!(!out.stderr().contains(&w.s3.secret_key), "{out}");
    assert!(w.s3.keys("").is_empty(), "{:?}", w.s3.keys(""));

    w.publish("store", "v1").ok();
    let out = w
        .fetch("fresh", "v1")
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .fails(1);
    out.one_line_error()
        .stderr_has("the store answered 403")
        .stderr_has("check the credentials");
    w.nothing_stored("fresh", "v1");

    // A remote slipway.toml does not have, a release the remote does not have.
    w.slipway()
        .args(["publish", "v1", "--to", "nowhere"])
        .fails(2)
        .one_line_error()
        .stderr_has("no remote `nowhere`: `slipway.toml` has shelf");
    w.fetch("fresh", "v9")
        .fails(2)
        .one_line_error()
        .stderr_has(&format!("`v9` is not published in remote `{REMOTE}`"));
    w.nothing_stored("fresh", "v9");

    // Nothing listening at the endpoint.
    let port = crate::support::free_port();
    let config = w.env.path("nowhere.toml");
    std::fs::write(
        &config,
        format!(
            "[remotes.{REMOTE}]\nurl = \"s3://releases\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"garage\"\n"
        ),
    )
    .unwrap();
    let out = w.publish("store", "v1").arg("--config").arg(&config).fails(1);
    out.one_line_error()
        .stderr_has(&format!("remote `{REMOTE}` (s3://releases at http://127.0.0.1:{port})"))
        .stderr_has("cannot reach the endpoint");
}

/// Make the lock `locks/...` of a killed process look as old as a lock
/// nobody renewed for 11 minutes (its age is in its key).
fn age_lock(w: &World, key: &str) -> String {
    let (kind_and_millis, rest) = key.split_at(key.find('-').unwrap() + 1);
    let (millis, tail) = rest.split_once('-').unwrap();
    let old: u128 = millis.parse::<u128>().unwrap() - 11 * 60 * 1000;
    let aged = format!("{kind_and_millis}{old}-{tail}");
    let bytes = w.s3.get(&w.key(key)).unwrap();
    w.s3.put(&w.key(&aged), &bytes);
    w.s3.delete(&w.key(key));
    aged
}

#[test]
fn remote_gc_removes_a_killed_publish_its_claim_and_what_only_it_uploaded() {
    if s3::skip_if_missing(Engine::Garage, "remote_gc_removes_a_killed_publish") {
        return;
    }
    let w = World::start(Engine::Garage);
    let v1 = w.build("store", "site", "v1", 10, 1);
    w.publish("store", "v1").ok();
    let v1_keys = w.keys("");

    // v2 (9 files of v1 and one of its own) killed once it has claimed the name.
    for i in 0..10 {
        let f = format!("f{i:02}.bin");
        w.env.write(
            &format!("site-b/{f}"),
            std::fs::read(w.env.path(&format!("site/{f}"))).unwrap(),
        );
    }
    w.env.write("site-b/f03.bin", noise(1800, 4242));
    let killed = w
        .slipway_in("store-b")
        .args(["build", "--dir", "site-b", "--name", "v2"])
        .ok()
        .line();
    let go = w.env.path("go");
    let mut run = Running::spawn(paused(w.publish("store-b", "v2"), "after-claim", &go));
    wait_paused(&mut run, &go);
    run.kill();
    let claim = format!("names/v2/{}.claim", hex(&killed));
    assert_eq!(w.keys("names/v2/"), vec![claim.clone()]);
    let locks = w.keys("locks/");
    assert_eq!(locks.len(), 1, "{locks:?}");
    let orphan_pack: Vec<(String, u64)> =
        w.s3.list(&w.key("packs/"))
            .into_iter()
            .map(|(k, s)| (k[PREFIX.len() + 1..].to_string(), s))
            .filter(|(k, _)| !v1_keys.contains(k))
            .collect();
    assert_eq!(orphan_pack.len(), 2, "{orphan_pack:?}"); // .idx and .pack

    // A third id under v2 is refused while the claim is there, before it uploads anything.
    w.env.write("site-c/only.bin", noise(1200, 99));
    let third = w
        .slipway_in("store-c")
        .args(["build", "--dir", "site-c", "--name", "v2"])
        .ok()
        .line();
    let listing = w.keys("");
    let out = w.publish("store-c", "v2").fails(1);
    out.one_line_error()
        .stderr_has(&format!("release `v2` is being published as {killed} to remote `{REMOTE}` by someone else, or such a publish was killed"))
        .stderr_has(&format!("`slipway gc --remote {REMOTE}`"));
    assert_eq!(w.keys(""), listing, "the refused publish wrote to the bucket");

    // The killed publish's lock keeps gc out until it is stale (10 minutes).
    w.slipway()
        .args(["gc", "--remote", REMOTE, "--dry-run"])
        .fails(4)
        .one_line_error()
        .stderr_has(&format!("a publish of remote `{REMOTE}` is running"));
    let aged = age_lock(&w, &locks[0]);

    let listing = w.keys("");
    let expect = |dry_run: bool| {
        json!({
            "remote": REMOTE, "releases": [killed], "packs": 1,
            "bytes": orphan_pack.iter().map(|(_, s)| s).sum::<u64>(), "claims": 1, "locks": 1,
            "dry_run": dry_run,
        })
    };
    let out = w
        .slipway()
        .args(["gc", "--remote", REMOTE, "--dry-run", "--json"])
        .ok()
        .json();
    crate::json_doc::assert_documented("slipway gc --remote REMOTE --json", &out);
    assert_eq!(out, expect(true));
    assert_eq!(w.keys(""), listing, "a dry run removed something");
    let out = w.slipway().args(["gc", "--remote", REMOTE, "--json"]).ok().json();
    assert_eq!(out, expect(false));
    // The killed publish's lock (aged past LOCK_STALE) goes too.
    assert!(w.keys("").iter().all(|k| *k != aged));
    assert_eq!(w.keys(""), v1_keys);

    // Now v2 can be published (the third id), and v1 is untouched.
    let out = w.publish("store-c", "v2").ok().json();
    assert_eq!((&out["id"], &out["new"]), (&json!(third), &json!(true)));
    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!(out["id"], v1.as_str());
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
    assert_eq!(w.fetch("fresh", "v2").ok().json()["id"], third.as_str());
    w.slipway_in("fresh").args(["verify", "v2"]).ok();
    // Nothing more to collect.
    let out = w.slipway().args(["gc", "--remote", REMOTE, "--json"]).ok().json();
    assert_eq!(
        (&out["releases"], &out["packs"], &out["claims"]),
        (&json!([]), &json!(0), &json!(0))
    );
}

#[test]
fn remote_gc_and_publish_wait_for_each_other() {
    if s3::skip_if_missing(Engine::Garage, "remote_gc_and_publish_wait_for_each_other") {
        return;
    }
    let w = World::start(Engine::Garage);
    let v1 = w.build("store", "site", "v1", 5, 1);
    let go = w.env.path("go");
    let mut run = Running::spawn(paused(w.publish("store", "v1"), "after-claim", &go));
    wait_paused(&mut run, &go);
    let listing = w.keys("");
    w.slipway()
        .args(["gc", "--remote", REMOTE])
        .fails(4)
        .one_line_error()
        .stderr_has(&format!(
            "a publish of remote `{REMOTE}` is running (its lock was renewed "
        ));
    assert_eq!(w.keys(""), listing, "the refused gc changed the bucket");
    std::fs::write(&go, "").unwrap();
    let out = run.finish();
    assert_eq!(out.out.status.code(), Some(0), "{out}");
    assert_eq!(out.json()["id"], v1.as_str());
    let out = w.slipway().args(["gc", "--remote", REMOTE, "--json"]).ok().json();
    assert_eq!(
        out,
        json!({"remote": REMOTE, "releases": [], "packs": 0, "bytes": 0, "claims": 0, "locks": 0, "dry_run": false})
    );

    // A gc running (its lock, fresh): a publish is refused before it uploads.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let gc_lock = format!("locks/gc-{millis}-1-0");
    w.s3.put(&w.key(&gc_lock), b"someone");
    w.env.write("site/new.bin", noise(700, 5));
    w.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    let listing = w.keys("");
    w.publish("store", "v2")
        .fails(4)
        .one_line_error()
        .stderr_has(&format!("a gc of remote `{REMOTE}` is running"));
    assert_eq!(w.keys(""), listing, "the refused publish changed the bucket");
    w.s3.delete(&w.key(&gc_lock));
    assert_eq!(w.publish("store", "v2").ok().json()["new"], true);
}

#[test]
fn remote_credentials_from_an_aws_profile() {
    if s3::skip_if_missing(Engine::Garage, "remote_credentials_from_an_aws_profile") {
        return;
    }
    let w = World::start(Engine::Garage);
    w.build("store", "site", "v1", 3, 1);
    let creds = w.env.write(
        "aws/credentials",
        format!(
            "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n\
             [ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [stale]\naws_access_key_id = {}\naws_secret_access_key = wrong\n",
            w.s3.access_key, w.s3.secret_key, w.s3.access_key
        ),
    );
    let config = w.env.path("aws/config");
    let with_profile = |profile: &str| {
        let mut cmd = w.publish("store", "v1");
        cmd.cmd
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        cmd.env("AWS_PROFILE", profile)
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .env("AWS_CONFIG_FILE", &config)
    };

    let out = with_profile("nope").fails(2);
    out.one_line_error().stderr_has(&format!(
        "AWS profile `nope` is not in {} nor in {}",
        creds.display(),
        config.display()
    ));
    let out = with_profile("stale").fails(1);
    out.one_line_error()
        .stderr_has("the store answered 403")
        .stderr_has(&format!(
            "check the credentials (from profile `stale` in {})",
            creds.display()
        ));
    assert!(w.s3.keys("").is_empty(), "{:?}", w.s3.keys(""));

    let out = with_profile("ci").ok().json();
    assert_eq!((&out["new"], &out["objects_uploaded"]), (&json!(true), &json!(3)));
}

#[test]
fn remote_a_killed_fetch_resumes_where_it_stopped() {
    if s3::skip_if_missing(Engine::Garage, "remote_a_killed_fetch_resumes_where_it_stopped") {
        return;
    }
    let w = World::start(Engine::Garage);
    let id = w.build("store", "site", "v1", 50, 1);
    w.publish("store", "v1").ok();

    // Killed after writing its first content (all 50 come in one request).
    let go = w.env.path("go");
    let mut run = Running::spawn(paused(w.fetch("fresh", "v1"), "after-object", &go));
    wait_paused(&mut run, &go);
    run.kill();
    let partial = w.env.path(&format!("fresh/tmp/fetch-{}", hex(&id)));
    let kept = std::fs::read_dir(&partial).unwrap().count();
    assert_eq!(kept, 1, "{}", partial.display());
    w.nothing_stored("fresh", "v1");

    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!((&out["id"], &out["new"]), (&json!(id), &json!(true)));
    assert_eq!(out["objects_downloaded"], 49, "{out}");
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
    assert!(!partial.exists());
}

#[test]
fn remote_a_publish_killed_before_binding_is_finished_and_a_lost_pack_uploaded_again() {
    let test = "remote_a_publish_killed_before_binding_is_finished_and_a_lost_pack_uploaded_again";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let w = World::start(Engine::Garage);
    let id = w.build("store", "site", "v1", 20, 1);
    // Killed after everything was uploaded, before the name was bound.
    let go = w.env.path("go");
    let mut run = Running::spawn(paused(w.publish("store", "v1"), "before-claim", &go));
    wait_paused(&mut run, &go);
    run.kill();
    let packs = w.packs();
    assert_eq!(packs.len(), 1);
    // Its pack lost since (say, a gc killed half way): a publish must not
    // bind the name to a release the bucket cannot serve.
    w.s3.delete(&w.key(&packs[0].0));
    let out = w.publish("store", "v1").ok().json();
    assert_eq!(
        (&out["new"], &out["objects_uploaded"]),
        (&json!(true), &json!(20)),
        "{out}"
    );
    let out = w.fetch("fresh", "v1").ok().json();
    assert_eq!(out["id"], id.as_str());
    w.slipway_in("fresh").args(["verify", "v1"]).ok();
    // Killed the same way with the bucket intact: finished without uploading.
    let v2 = w.build("store", "site2", "v2", 5, 2);
    let go2 = w.env.path("go2");
    let mut run = Running::spawn(paused(w.publish("store", "v2"), "before-claim", &go2));
    wait_paused(&mut run, &go2);
    run.kill();
    let out = w.publish("store", "v2").ok().json();
    assert_eq!(
        (&out["new"], &out["objects_uploaded"]),
        (&json!(true), &json!(0)),
        "{out}"
    );
    assert_eq!(w.fetch("fresh", "v2").ok().json()["id"], v2.as_str());
}

/// Every key of the bucket under the remote's prefix, with its size.
fn bucket(w: &World) -> Vec<(String, u64)> {
    let mut all = w.s3.list(&w.key(""));
    all.sort();
    all
}

/// `publish REL --plan --json` from `store`, asserting the bucket is as it was.
fn publish_plan(w: &World, store: &str, rel: &str) -> (Outcome, serde_json::Value) {
    let before = bucket(w);
    let o = w
        .slipway_in(store)
        .args(["publish", rel, "--to", REMOTE, "--plan", "--json"])
        .run();
    assert_eq!(bucket(w), before, "the plan wrote to the bucket: {o}");
    let v = o.json();
    crate::json_doc::assert_documented("slipway publish REL --to REMOTE --plan --json", &v);
    (o, v)
}

#[test]
fn remote_publish_plan_lists_what_the_bucket_lacks_and_then_publish_does_that_writing_nothing() {
    if s3::skip_if_missing(Engine::Garage, "remote_publish_plan") {
        return;
    }
    let w = World::start(Engine::Garage);
    let v1 = w.build("store", "site", "v1", 20, 1);
    let (alice, _) = keygen(&w.env, "alice");
    w.slipway().args(["sign", "v1", "--key"]).arg(&alice).ok();
    let sizes: u64 = (0..20).map(|i| 1000 + (i * 37) % 2000).sum::<usize>() as u64;

    // An empty bucket: every content is missing, the name would be bound.
    let (o, p) = publish_plan(&w, "store", "v1");
    assert_eq!(o.out.status.code(), Some(0), "{o}");
    assert_eq!(
        (
            &p["id"],
            &p["bound"],
            &p["binds"],
            &p["objects_missing"],
            &p["bytes_missing"]
        ),
        (&json!(v1), &json!(null), &json!(true), &json!(20), &json!(sizes)),
        "{p:#}"
    );
    assert_eq!((&p["signatures_added"], &p["exit"]), (&json!(1), &json!(0)), "{p:#}");
    let text = w.slipway().args(["publish", "v1", "--to", REMOTE, "--plan"]).ok();
    assert!(text.stdout().contains("20 missing"), "{text}");
    assert!(text.stdout().contains("plan id: "), "{text}");
    // The publish does what the plan said.
    let done = w.publish("store", "v1").ok().json();
    assert_eq!(
        (&done["new"], &done["objects_uploaded"], &done["signatures_added"]),
        (&json!(true), &json!(20), &json!(1)),
        "{done}"
    );
    for key in p["writes"].as_array().unwrap() {
        let key = key.as_str().unwrap();
        assert!(!w.s3.keys(&w.key(key)).is_empty(), "{key} was not written");
    }

    // One file changed: one content missing, its bytes.
    w.env.write("site/f07.bin", noise(1500, 777));
    w.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    let (_, p) = publish_plan(&w, "store", "v2");
    assert_eq!(
        (&p["objects_missing"], &p["bytes_missing"]),
        (&json!(1), &json!(1500)),
        "{p:#}"
    );
    assert_eq!(w.publish("store", "v2").ok().json()["objects_uploaded"], 1);

    // Published already: nothing missing, nothing to bind.
    let (_, p) = publish_plan(&w, "store", "v1");
    assert_eq!(
        (&p["bound"], &p["binds"], &p["objects_missing"], &p["writes"]),
        (&json!(v1), &json!(false), &json!(0), &json!([])),
        "{p:#}"
    );
}

#[test]
fn remote_publish_plan_of_a_name_bound_elsewhere_exits_1_and_expect_plan_refuses_a_moved_bucket() {
    if s3::skip_if_missing(Engine::Garage, "remote_publish_plan_refused") {
        return;
    }
    let w = World::start(Engine::Garage);
    let a = w.build("store", "site", "v1", 5, 1);
    w.publish("store", "v1").ok();
    // Another build called v1: refused, as the publish is, naming the bound id.
    let b = w.build("other", "site-b", "v1", 5, 2);
    let (o, p) = publish_plan(&w, "other", "v1");
    assert_eq!(o.out.status.code(), Some(1), "{o}");
    assert_eq!(p["exit"], 1);
    assert!(
        p["refused"]
            .as_str()
            .unwrap()
            .contains(&format!("already published as {a}")),
        "{p:#}"
    );
    let listing = bucket(&w);
    w.publish("other", "v1").fails(1);
    assert_eq!(bucket(&w), listing);
    assert_ne!(a, b);

    // A plan approved, then the bucket moves (v2 published by someone
    // else first): --expect-plan refuses, writing nothing.
    w.env.write("site/f01.bin", noise(1200, 99));
    w.slipway().args(["build", "--dir", "site", "--name", "v2"]).ok();
    let (_, p) = publish_plan(&w, "store", "v2");
    let approved = p["plan"].as_str().unwrap().to_string();
    assert_eq!(p["binds"], true);
    w.slipway().args(["publish", "v2", "--to", REMOTE]).ok();
    let listing = bucket(&w);
    let refused = w
        .slipway()
        .args(["publish", "v2", "--to", REMOTE, "--expect-plan", &approved])
        .fails(6);
    refused.stderr_has(&format!("not {approved} (--expect-plan)"));
    assert_eq!(bucket(&w), listing, "a refused --expect-plan wrote to the bucket");
    // A gc running (its lock fresh): the plan exits 4 as the publish does,
    // and leaves the lock alone.
    let gc_lock = w.key(&format!(
        "locks/gc-{}-1-0",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    ));
    w.s3.put(&gc_lock, b"someone");
    let (o, p) = publish_plan(&w, "store", "v2");
    assert_eq!((o.out.status.code(), &p["exit"]), (Some(4), &json!(4)), "{o}");
    w.slipway().args(["publish", "v2", "--to", REMOTE]).fails(4);
    w.s3.delete(&gc_lock);
    // The plan as it is now goes through.
    let (_, p) = publish_plan(&w, "store", "v2");
    let now = p["plan"].as_str().unwrap().to_string();
    assert_ne!(now, approved);
    w.slipway()
        .args(["publish", "v2", "--to", REMOTE, "--expect-plan", &now])
        .ok();
}
