//! Pull mode (`deploy`/`push --from REMOTE`): hosts reached over a real
//! sshd download what they lack straight from a real S3 store (Garage, and
//! SeaweedFS for the round trip), and every way that can go wrong leaves
//! every host where it was. The bucket is damaged with raw signed requests
//! (support/s3.rs), never through slipway.

use crate::support::s3::{self, Engine, Store};
use crate::support::scenario::{Scenario, Scene};
use crate::support::sshd::Sshd;
use crate::support::{Cmd, Env, Outcome, bin, wait_for};

const REMOTE: &str = "artifacts";
const PREFIX: &str = "shop";

/// A scene of `hosts` ssh hosts with tags v1 and v2 built, and an S3 store
/// named [`REMOTE`] in its `slipway.toml`.
fn scene(engine: Engine, hosts: usize) -> (Scene, Store) {
    let scene = Scenario::new().tags(["v1", "v2"]).ssh_hosts(hosts).start();
    let s3 = engine.start(&scene.env.path("s3"));
    s3.add_remote(&scene.env.path("slipway.toml"), REMOTE, PREFIX);
    (scene, s3)
}

/// The scene's `slipway` with the store's key in the environment.
fn slipway(scene: &Scene, s3: &Store) -> Cmd {
    let mut cmd = scene.slipway().env("HOME", scene.env.path("home"));
    for (k, v) in s3.credentials() {
        cmd = cmd.env(k, v);
    }
    cmd
}

fn publish(scene: &Scene, s3: &Store, rel: &str) {
    slipway(scene, s3).args(["publish", rel, "--to", REMOTE]).ok();
}

/// The remote's packs, with their bytes.
fn packs(s3: &Store) -> Vec<(String, Vec<u8>)> {
    s3.keys(&format!("{PREFIX}/packs/"))
        .into_iter()
        .filter(|k| k.ends_with(".pack"))
        .map(|k| {
            let bytes = s3.get(&k).expect("a listed pack");
            (k, bytes)
        })
        .collect()
}

/// The sizes of the remote's release manifests (`manifest.zst`).
fn manifest_sizes(s3: &Store) -> Vec<u64> {
    s3.list(&format!("{PREFIX}/releases/"))
        .into_iter()
        .filter(|(k, _)| k.ends_with("/manifest.zst"))
        .map(|(_, size)| size)
        .collect()
}

/// The size of the remote's only release index (`index.zst`).
fn index_size(s3: &Store) -> u64 {
    let sizes: Vec<u64> = s3
        .list(&format!("{PREFIX}/releases/"))
        .into_iter()
        .filter(|(k, _)| k.ends_with("/index.zst"))
        .map(|(_, size)| size)
        .collect();
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    sizes[0]
}

/// A Garage, and target `prod` of one local-path host (its root returned)
/// with `extra` target keys, and the remote.
fn one_local_host(extra: &str) -> (Env, Store, std::path::PathBuf) {
    let env = Env::new();
    let s3 = Engine::Garage.start(&env.path("s3"));
    let root = env.path("host");
    env.write(
        "slipway.toml",
        format!("[targets.prod]\nhosts = [\"{}\"]\n{extra}", root.display()),
    );
    s3.add_remote(&env.path("slipway.toml"), REMOTE, PREFIX);
    (env, s3, root)
}

fn round_trip(engine: Engine, test: &str) {
    if s3::skip_if_missing(engine, test) {
        return;
    }
    let (scene, s3) = scene(engine, 2);
    std::fs::create_dir_all(scene.env.path("home")).unwrap();
    publish(&scene, &s3, "v1");
    let v1_packs: Vec<String> = packs(&s3).into_iter().map(|(k, _)| k).collect();
    let v1_manifest = manifest_sizes(&s3);
    assert_eq!(v1_manifest.len(), 1);
    publish(&scene, &s3, "v2");
    let new_pack: u64 = packs(&s3)
        .into_iter()
        .filter(|(k, _)| !v1_packs.contains(k))
        .map(|(_, b)| b.len() as u64)
        .sum();

    // First deploy: each host downloads the whole release from the bucket,
    // the manifest and exactly the packs, and the client tells it where
    // each of its two objects is (no index); the operator's connection
    // carries no content.
    let v1_bytes: u64 = packs(&s3)
        .into_iter()
        .filter(|(k, _)| v1_packs.contains(k))
        .map(|(_, b)| b.len() as u64)
        .sum();
    let rows = slipway(&scene, &s3)
        .args(["push", "v1", "-t", "prod", "--from", REMOTE, "--json"])
        .ok()
        .json();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["result"], "ok", "{row}");
        let needed = row["bytes_needed"].as_u64().unwrap();
        assert!(needed > 0, "{row}");
        assert_eq!(row["bytes_downloaded"], v1_manifest[0] + v1_bytes, "{row}");
        // Two locations of 20 bytes, in one DATA frame and an END.
        assert!(row["bytes_sent"].as_u64().unwrap() < 100, "{row}");
    }
    slipway(&scene, &s3)
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .ok()
        .stderr_has("v1 already staged");
    assert_eq!(
        (scene.current(0).as_deref(), scene.current(1).as_deref()),
        (Some("v1"), Some("v1"))
    );

    // The next release: only index.html changed (the one object of v2's
    // pack), and that is all a host downloads. The client sends the
    // manifest as a delta against v1's and the object's location, even
    // from an empty local store (v1's manifest comes from the bucket).
    let rows = slipway(&scene, &s3)
        .env("SLIPWAY_STORE", scene.env.path("empty-store"))
        .args(["push", "v2", "-t", "prod", "--from", REMOTE, "--json"])
        .ok()
        .json();
    for row in rows.as_array().unwrap() {
        assert_eq!(row["objects_reused"], 1, "app.js is reused: {row}");
        assert_eq!(row["bytes_downloaded"], new_pack, "{row}");
        let sent = row["bytes_sent"].as_u64().unwrap();
        assert!(sent > 0 && sent < 1024, "a delta and a location: {row}");
    }
    slipway(&scene, &s3)
        .args(["deploy", "v2", "-t", "prod", "--from", REMOTE])
        .ok();
    assert_eq!(
        (scene.current(0).as_deref(), scene.current(1).as_deref()),
        (Some("v2"), Some("v2"))
    );
    slipway(&scene, &s3).args(["verify", "-t", "prod"]).ok();
    for i in 0..2 {
        let page = std::fs::read_to_string(scene.root(i).join("current/index.html")).unwrap();
        assert_eq!(page, "<h1>v2</h1>\n");
    }

    // An operator with an empty store deploys by name from the bucket.
    slipway(&scene, &s3)
        .env("SLIPWAY_STORE", scene.env.path("empty-store"))
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .ok();
    assert_eq!(scene.current(0).as_deref(), Some("v1"));
}

#[test]
fn pull_deploy_over_ssh_sends_no_content_on_garage() {
    round_trip(Engine::Garage, "pull_deploy_over_ssh_sends_no_content_on_garage");
}

#[test]
fn pull_deploy_over_ssh_sends_no_content_on_seaweedfs() {
    round_trip(Engine::Seaweed, "pull_deploy_over_ssh_sends_no_content_on_seaweedfs");
}

#[test]
fn pull_damaged_or_missing_objects_fail_on_the_host_and_nothing_switches() {
    let test = "pull_damaged_or_missing_objects_fail_on_the_host_and_nothing_switches";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let (scene, s3) = scene(Engine::Garage, 2);
    std::fs::create_dir_all(scene.env.path("home")).unwrap();
    publish(&scene, &s3, "v1");
    slipway(&scene, &s3)
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .ok();
    publish(&scene, &s3, "v2");

    // Every pack damaged: the object a host lacks cannot match its sha256.
    let originals = packs(&s3);
    for (key, bytes) in &originals {
        let bad: Vec<u8> = bytes.iter().map(|b| b ^ 0x5a).collect();
        s3.put(key, &bad);
    }
    slipway(&scene, &s3)
        .args(["deploy", "v2", "-t", "prod", "--from", REMOTE])
        .fails(5)
        .stderr_has("remote `artifacts`")
        .stderr_has("does not match its sha256");
    for i in 0..2 {
        assert_eq!(scene.current(i).as_deref(), Some("v1"));
        assert!(!scene.root(i).join("releases/v2").exists());
    }

    // Missing: the host names the pack it could not get.
    for (key, _) in &originals {
        s3.delete(key);
    }
    slipway(&scene, &s3)
        .args(["deploy", "v2", "-t", "prod", "--from", REMOTE])
        .fails(1)
        .stderr_has("/packs/")
        .stderr_has("404");
    assert_eq!(scene.current(0).as_deref(), Some("v1"));

    // Repaired: the same command goes through.
    for (key, bytes) in &originals {
        s3.put(key, bytes);
    }
    slipway(&scene, &s3)
        .args(["deploy", "v2", "-t", "prod", "--from", REMOTE])
        .ok();
    assert_eq!(
        (scene.current(0).as_deref(), scene.current(1).as_deref()),
        (Some("v2"), Some("v2"))
    );
}

#[test]
fn pull_urls_that_expired_before_the_host_used_them_fail_clearly() {
    let test = "pull_urls_that_expired_before_the_host_used_them_fail_clearly";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let (env, s3, root) = one_local_host(&format!("from = \"{REMOTE}\"\n"));
    let toml = std::fs::read_to_string(env.path("slipway.toml")).unwrap();
    std::fs::write(env.path("slipway.toml"), format!("{toml}url_lifetime = \"1s\"\n")).unwrap();
    env.write("site/index.html", "v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    let creds = s3.credentials();
    let with = |cmd: Cmd| creds.iter().fold(cmd, |c, (k, v)| c.env(k, v));
    with(env.slipway()).args(["publish", "v1", "--to", REMOTE]).ok();
    // The host (a local `serve`, which inherits the environment) waits at
    // its first download until the URLs have expired.
    let gate = env.path("go");
    let mut cmd = with(env.slipway())
        .args(["deploy", "v1", "-t", "prod"])
        .env("SLIPWAY_REMOTE_PAUSE", format!("host-before-pull:{}", gate.display()));
    let mut child = cmd
        .cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(30, "the host to reach its first download", || {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = std::io::Read::read_to_string(e, &mut err);
            }
            panic!("the deploy ended ({status}) before the host paused: {err}");
        }
        std::fs::read_dir(env.path(""))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("go."))
    });
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::fs::write(&gate, "").unwrap();
    let out = Outcome {
        desc: "deploy with expired URLs".into(),
        out: child.wait_with_output().unwrap(),
    };
    assert_eq!(out.out.status.code(), Some(1), "{out}");
    out.stderr_has("expired");
    assert!(!root.join("current").exists());
    assert!(!root.join("releases/v1").exists());
}

#[test]
fn pull_under_a_restricted_key_only_from_what_the_host_owner_allows() {
    let test = "pull_under_a_restricted_key_only_from_what_the_host_owner_allows";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let env = Env::new();
    let s3 = Engine::Garage.start(&env.path("s3"));
    let root = env.path("srv/app");
    let line = format!("restrict,command=\"{} serve --root {}\"", bin(), root.display());
    let host = Sshd::builder().key_options(&line).start();
    let url = host.url(&root);
    s3.add_remote(&env.path("slipway.toml"), REMOTE, PREFIX);
    env.write("site/index.html", "v1");
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    let creds = s3.credentials();
    let run = |args: &[&str]| {
        creds
            .iter()
            .fold(env.slipway().via_ssh(host.ssh_config_path()), |c, (k, v)| c.env(k, v))
            .args(args)
    };
    run(&["publish", "v1", "--to", REMOTE]).ok();
    // The first contact makes the root; no remotes.toml yet: refused.
    run(&["deploy", "v1", "-t", &url, "--from", REMOTE])
        .fails(2)
        .one_line_error()
        .stderr_has("remotes.toml");
    assert!(!root.join("releases/v1").exists());

    // A prefix the owner allows, but not this one.
    let allow = |prefix: &str| {
        std::fs::write(root.join(".slipway/remotes.toml"), format!("allow = [\"{prefix}\"]\n")).unwrap();
    };
    allow(&format!("{}/{}/elsewhere/", s3.endpoint, s3::BUCKET));
    run(&["deploy", "v1", "-t", &url, "--from", REMOTE])
        .fails(2)
        .stderr_has("may not pull from");
    assert!(!root.join("releases/v1").exists());

    allow(&format!("{}/{}/{PREFIX}/", s3.endpoint, s3::BUCKET));
    run(&["deploy", "v1", "-t", &url, "--from", REMOTE]).ok();
    assert_eq!(
        std::fs::read_link(root.join("current")).unwrap().to_string_lossy(),
        "releases/v1"
    );
}

#[test]
fn pull_a_host_with_allowed_signers_takes_a_signed_release_and_refuses_an_unsigned_one() {
    let test = "pull_a_host_with_allowed_signers_takes_a_signed_release_and_refuses_an_unsigned_one";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let (scene, s3) = scene(Engine::Garage, 1);
    std::fs::create_dir_all(scene.env.path("home")).unwrap();
    let key = scene.env.path("keys/ci");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci@example.com", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let root = scene.root(0).to_path_buf();
    std::fs::create_dir_all(root.join(".slipway")).unwrap();
    std::fs::write(
        root.join(".slipway/allowed_signers"),
        format!("ci@example.com namespaces=\"slipway\" {}", public.trim()),
    )
    .unwrap();
    // v1 published unsigned: refused before a byte is downloaded.
    publish(&scene, &s3, "v1");
    slipway(&scene, &s3)
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .fails(5);
    assert!(!root.join("releases/v1").exists());
    // v2 signed, then published: the host takes it, and records the signer,
    // deployed from a store that never had the signature.
    slipway(&scene, &s3).args(["sign", "v2", "--key"]).arg(&key).ok();
    publish(&scene, &s3, "v2");
    slipway(&scene, &s3)
        .env("SLIPWAY_STORE", scene.env.path("empty-store"))
        .args(["deploy", "v2", "-t", "prod", "--from", REMOTE])
        .ok();
    assert_eq!(scene.current(0).as_deref(), Some("v2"));
    let meta = std::fs::read_to_string(root.join(".slipway/releases/v2.json")).unwrap();
    assert!(meta.contains("ci@example.com"), "{meta}");
}

#[test]
fn pull_a_storage_node_killed_during_a_fleet_pull_changes_nothing() {
    let test = "pull_a_storage_node_killed_during_a_fleet_pull_changes_nothing";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let scene = Scenario::new().tags(["v1"]).local_hosts(3).start();
    let mut cluster = s3::Cluster::garage(&scene.env.path("cluster"));
    cluster.nodes[0].add_remote(&scene.env.path("slipway.toml"), REMOTE, PREFIX);
    std::fs::create_dir_all(scene.env.path("home")).unwrap();
    publish(&scene, &cluster.nodes[0], "v1");

    // Every host stops at its first download; then node 2 (not the one
    // serving S3) dies; then they go on.
    let gate = scene.env.path("go");
    let mut cmd = slipway(&scene, &cluster.nodes[0])
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .env("SLIPWAY_REMOTE_PAUSE", format!("host-before-pull:{}", gate.display()));
    let child = cmd
        .cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let paused = || {
        std::fs::read_dir(scene.env.path(""))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("go."))
            .count()
    };
    wait_for(60, "every host to reach its first download", || paused() == 3);
    let killed = cluster.nodes[2].pid();
    cluster.nodes[2].stop();
    assert!(!crate::support::sshd::alive(killed));
    std::fs::write(&gate, "").unwrap();
    let out = Outcome {
        desc: "deploy with a storage node dead".into(),
        out: child.wait_with_output().unwrap(),
    };
    assert_eq!(out.out.status.code(), Some(0), "{out}");
    for i in 0..3 {
        assert_eq!(scene.current(i).as_deref(), Some("v1"));
    }
    slipway(&scene, &cluster.nodes[0]).args(["verify", "-t", "prod"]).ok();
}

#[test]
fn pull_a_host_killed_midway_downloads_only_the_rest_next_time() {
    let test = "pull_a_host_killed_midway_downloads_only_the_rest_next_time";
    if s3::skip_if_missing(Engine::Garage, test) {
        return;
    }
    let (env, s3, root) = one_local_host("");
    // More objects than one group a host links into objects/ at a time (2000).
    for i in 0..2100 {
        env.write(&format!("site/f{i:04}.txt"), format!("file {i}\n"));
    }
    env.slipway().args(["build", "--dir", "site", "--name", "v1"]).ok();
    let creds = s3.credentials();
    let with = |cmd: Cmd| creds.iter().fold(cmd, |c, (k, v)| c.env(k, v));
    with(env.slipway()).args(["publish", "v1", "--to", REMOTE]).ok();

    // The host dies (kill -9 as far as the disk can tell) right after its
    // first group of pulled objects is durable in objects/.
    with(env.slipway())
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .env("SLIPWAY_FAULT", "after-commit")
        .fails(1);
    assert!(!root.join("current").exists());
    assert!(!root.join("releases/v1").exists());

    // The next attempt downloads only what was not kept.
    let rows = with(env.slipway())
        .args(["push", "v1", "-t", "prod", "--from", REMOTE, "--json"])
        .ok()
        .json();
    assert_eq!(rows[0]["objects_reused"], 2000, "{rows}");
    let needed = rows[0]["bytes_needed"].as_u64().unwrap();
    let downloaded = rows[0]["bytes_downloaded"].as_u64().unwrap();
    with(env.slipway())
        .args(["deploy", "v1", "-t", "prod", "--from", REMOTE])
        .ok();
    with(env.slipway()).args(["verify", "-t", "prod"]).ok();
    // Against a fresh host that lacks everything.
    let fresh = env.path("fresh");
    let rows = with(env.slipway())
        .args([
            "push",
            "v1",
            "-t",
            &fresh.display().to_string(),
            "--from",
            REMOTE,
            "--json",
        ])
        .ok()
        .json();
    let whole = rows[0]["bytes_downloaded"].as_u64().unwrap();
    let whole_needed = rows[0]["bytes_needed"].as_u64().unwrap();
    // 100 of 2100 files were still missing: the client told the host where
    // they are; the fresh host lacks more than a client sends locations
    // for (1024), so it read the release's index, the manifest and every pack.
    assert!(needed * 10 < whole_needed, "resumed {needed} B of {whole_needed} B");
    let packed: u64 = packs(&s3).iter().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(whole, manifest_sizes(&s3)[0] + index_size(&s3) + packed, "{rows}");
    assert!(
        downloaded < manifest_sizes(&s3)[0] + packed / 10,
        "resumed {downloaded} B, whole {whole} B"
    );
}
