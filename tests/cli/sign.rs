//! Signed releases. `slipway sign` and `build --sign` with real
//! `ssh-keygen`-made keys (files and an ssh-agent), signatures through
//! `inspect`, `export`/`import` and `push`, and hosts that enforce
//! `.slipway/allowed_signers` — over a local path and over a real sshd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::support::{Cmd, Env, Outcome};

/// A key made by `ssh-keygen` (ed25519 unless made with [`Key::rsa_4096`]).
struct Key {
    path: PathBuf,
    public: String,
    fingerprint: String,
}

impl Key {
    fn new(env: &Env, file: &str, comment: &str) -> Key {
        Key::of_type(env, file, comment, &["-t", "ed25519"])
    }

    /// The largest key in common use: its signatures are the largest a host sees.
    fn rsa_4096(env: &Env, file: &str, comment: &str) -> Key {
        Key::of_type(env, file, comment, &["-t", "rsa", "-b", "4096"])
    }

    fn of_type(env: &Env, file: &str, comment: &str, kind: &[&str]) -> Key {
        let path = env.path(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let st = Command::new("ssh-keygen")
            .args(kind)
            .args(["-q", "-N", "", "-C", comment, "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .status()
            .expect("ssh-keygen (install openssh-client; scripts/test.sh does it)");
        assert!(st.success());
        let pub_path = path.with_extension("pub");
        let public = std::fs::read_to_string(&pub_path).unwrap().trim().to_string();
        let out = Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&pub_path)
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
        Key {
            path,
            public,
            fingerprint,
        }
    }

    fn pub_path(&self) -> PathBuf {
        self.path.with_extension("pub")
    }
}

/// `slipway` with an empty HOME and no ssh-agent, so only what a test sets up is used.
fn slipway(env: &Env) -> Cmd {
    let home = env.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = env.slipway().env("HOME", &home);
    cmd.cmd.env_remove("SSH_AUTH_SOCK");
    cmd
}

/// A host root (canonical, as `serve` names it) whose `allowed_signers` lists `keys`.
fn strict_host(env: &Env, dir: &str, keys: &[(&str, &Key)]) -> PathBuf {
    let root = env.path(dir);
    std::fs::create_dir_all(root.join(".slipway")).unwrap();
    let root = std::fs::canonicalize(root).unwrap();
    let lines: String = keys
        .iter()
        .map(|(principal, key)| format!("{principal} namespaces=\"slipway\" {}\n", key.public))
        .collect();
    std::fs::write(root.join(".slipway/allowed_signers"), lines).unwrap();
    root
}

fn build(env: &Env, name: &str) -> String {
    if !env.path("site/index.html").exists() {
        env.write("site/index.html", "<h1>signed</h1>\n");
        env.write("site/app.js", "console.log(1)\n");
    }
    slipway(env)
        .args(["build", "--dir", "site", "--name", name])
        .ok()
        .line()
}

fn signatures(env: &Env, rel: &str) -> Vec<Value> {
    let info = slipway(env).args(["inspect", rel, "--json"]).ok().json();
    info["signatures"].as_array().cloned().unwrap_or_default()
}

/// Rewrite the store's record of `name` (what an attacker or an accident could do).
fn edit_record(env: &Env, name: &str, edit: impl FnOnce(&mut Value)) {
    let path = env.store.join("names").join(format!("{name}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut record);
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).unwrap();
}

fn host_meta(root: &Path, name: &str) -> Value {
    let path = root.join(".slipway/releases").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn push(env: &Env, rel: &str, root: &Path) -> Cmd {
    slipway(env).args(["push", rel, "-t"]).arg(root)
}

/// Nothing of `name` reached the host: no tree, no metadata, no content.
fn nothing_staged(root: &Path, name: &str) {
    assert!(!root.join("releases").join(name).exists(), "{name} was staged");
    assert!(!root.join(".slipway/releases").join(format!("{name}.json")).exists());
    let objects = std::fs::read_dir(root.join(".slipway/objects"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(objects, 0, "content of {name} was received before the refusal");
}

#[test]
fn sign_stores_an_sshsig_that_ssh_keygen_verifies_and_inspect_shows_it() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let bob = Key::new(&env, "keys/bob", "bob@example.com");
    let id = build(&env, "v1");
    assert!(signatures(&env, "v1").is_empty());
    assert!(
        slipway(&env)
            .args(["inspect", "v1"])
            .ok()
            .stdout()
            .contains("signature   none")
    );

    let out = slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    assert_eq!(
        out.line(),
        format!("signed v1 with {} (alice@example.com)", alice.fingerprint)
    );
    let sigs = signatures(&env, "v1");
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    let s = &sigs[0];
    let statement = format!("slipway-release-v1\nname v1\nid {id}\n");
    assert_eq!(s["format"], "sshsig");
    assert_eq!(s["namespace"], "slipway");
    assert_eq!(s["statement"], statement.as_str());
    assert_eq!(s["key_fingerprint"], alice.fingerprint.as_str());
    assert_eq!(s["public_key"], alice.public.as_str());
    assert_eq!(s["principal"], "alice@example.com");
    assert!(s["signed_by"].as_str().unwrap().starts_with("tester@"), "{s}");
    assert!(s["signed_at"].as_str().unwrap().ends_with('Z'), "{s}");
    let armored = s["signature"].as_str().unwrap();
    assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"), "{armored}");

    // A plain OpenSSH sshsig: ssh-keygen verifies it with no slipway involved.
    let allowed = env.write(
        "allowed",
        format!("alice@example.com namespaces=\"slipway\" {}\n", alice.public),
    );
    let sig_file = env.write("v1.sig", armored);
    let mut check = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-I", "alice@example.com", "-n", "slipway", "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(&sig_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), statement.as_bytes()).unwrap();
    let verdict = check.wait_with_output().unwrap();
    assert!(verdict.status.success(), "{}", String::from_utf8_lossy(&verdict.stderr));

    // Again with the same key: replaced, not duplicated.
    let out = slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    assert!(
        out.line().ends_with("it replaces this key's earlier signature"),
        "{out}"
    );
    assert_eq!(signatures(&env, "v1").len(), 1);
    // Another key (by id prefix, with an explicit principal) adds one.
    let out = slipway(&env)
        .args(["sign", &id[..16], "--principal", "bob-ops", "--json", "--key"])
        .arg(&bob.path)
        .ok()
        .json();
    assert_eq!(out["release"], "v1");
    assert_eq!(out["replaced"], false);
    assert_eq!(out["signature"]["principal"], "bob-ops");
    let sigs = signatures(&env, "v1");
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[1]["key_fingerprint"], bob.fingerprint.as_str());

    let text = slipway(&env).args(["inspect", "v1"]).ok().stdout();
    let line = text
        .lines()
        .find(|l| l.contains(&alice.fingerprint))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with(&format!(
            "signature   {} alice@example.com, signed 20",
            alice.fingerprint
        )),
        "{line}"
    );
    assert!(line.contains(" by tester@"), "{line}");
    assert!(
        text.contains(&format!("signature   {} bob-ops,", bob.fingerprint)),
        "{text}"
    );
}

#[test]
fn build_sign_prints_only_the_id_and_stores_the_signature() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    env.write("site/index.html", "x");
    let out = slipway(&env)
        .args(["build", "--dir", "site", "--name", "v1", "--sign", "--key"])
        .arg(&alice.path)
        .ok();
    let id = out.line();
    assert!(id.starts_with("sha256:") && !id.contains('\n'), "{out}");
    out.stderr_has(&format!("signed v1 with {}", alice.fingerprint));
    let sigs = signatures(&env, "v1");
    assert_eq!(sigs.len(), 1);
    assert_eq!(
        sigs[0]["statement"],
        format!("slipway-release-v1\nname v1\nid {id}\n").as_str()
    );

    // --key without --sign is a usage error, and a missing key fails before building.
    slipway(&env)
        .args(["build", "--dir", "site", "--name", "v2", "--key"])
        .arg(&alice.path)
        .fails(2);
    slipway(&env)
        .args(["build", "--dir", "site", "--name", "v3", "--sign", "--key", "nope"])
        .fails(2)
        .one_line_error()
        .stderr_has("key `nope` does not exist");
    slipway(&env)
        .args(["inspect", "v3"])
        .fails(2)
        .stderr_has("no release or bundle `v3`")
        .stderr_has("(did you mean `v1`?)");
}

#[test]
fn without_key_the_default_key_is_used_and_without_any_it_is_a_usage_error() {
    let env = Env::new();
    build(&env, "v1");
    slipway(&env)
        .args(["sign", "v1"])
        .fails(2)
        .one_line_error()
        .stderr_has(
            "error: no key to sign `v1` with: pass `--key PATH` (a private key, or a `.pub` whose private half is in ssh-agent); \
             there is no ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa or ~/.ssh/id_rsa and no ssh-agent holding a key",
        );
    slipway(&env)
        .args(["sign", "v1", "--principal", "alice smith", "--key", "x"])
        .fails(2)
        .one_line_error()
        .stderr_has("`alice smith` is not a valid principal");
    slipway(&env)
        .args(["sign", "nope"])
        .fails(2)
        .stderr_has("no release or bundle `nope`");
    assert!(signatures(&env, "v1").is_empty());

    let rsa_less = Key::new(&env, "home/.ssh/id_ecdsa", "carol@laptop");
    let out = slipway(&env).args(["sign", "v1"]).ok();
    assert_eq!(
        out.line(),
        format!("signed v1 with {} (carol@laptop)", rsa_less.fingerprint)
    );
    // id_ed25519 comes first when both exist.
    let ed = Key::new(&env, "home/.ssh/id_ed25519", "carol@desktop");
    slipway(&env).args(["sign", "v1"]).ok();
    let sigs = signatures(&env, "v1");
    assert_eq!(sigs.len(), 2);
    assert_eq!(sigs[1]["key_fingerprint"], ed.fingerprint.as_str());
}

#[test]
fn a_host_with_allowed_signers_stages_a_signed_release_and_records_its_signer() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@laptop");
    build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    // The principal comes from allowed_signers, not from the signature's hint.
    let root = strict_host(&env, "host", &[("alice@example.com", &alice)]);
    // A plan names the signer the host accepts, before the push and once
    // the release is staged there (the host then answers from its record).
    let plan = || {
        let p = push(&env, "v1", &root).args(["--plan", "--json"]).ok().json();
        let h = p["hosts"][0].clone();
        (h["signers"].clone(), h["signed_by"].clone())
    };
    let planned = plan();
    assert_eq!(planned.0, "accepted");
    assert!(
        planned.1.as_str().is_some_and(|s| s.contains("alice@example.com")),
        "{planned:?}"
    );
    push(&env, "v1", &root).ok();
    assert_eq!(plan(), planned, "the plan of a staged release");
    assert!(root.join("releases/v1/index.html").is_file());
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signed_by"]["principal"], "alice@example.com");
    assert_eq!(meta["signed_by"]["key_fingerprint"], alice.fingerprint.as_str());
    assert_eq!(meta["signatures"].as_array().map(Vec::len), Some(1));
    assert_eq!(meta["signatures"][0]["principal"], "alice@laptop");
    // No scratch files are left in .slipway/tmp.
    let tmp = crate::support::faults::leftovers(&root);
    assert!(tmp.is_empty(), "{tmp:?}");
}

/// Flip one base64 character inside the signature bytes (still valid base64).
fn tamper(armored: &str) -> String {
    let mut lines: Vec<String> = armored.lines().map(str::to_string).collect();
    let last_body = lines.len() - 2;
    let mut chars: Vec<char> = lines[last_body].chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    lines[last_body] = chars.into_iter().collect();
    lines.join("\n") + "\n"
}

#[test]
fn unsigned_tampered_unlisted_and_misnamed_releases_are_refused_where_allowed_signers_exists() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let mallory = Key::new(&env, "keys/mallory", "mallory@example.com");
    let id = build(&env, "unsigned");
    for name in ["tampered", "unlisted", "misnamed", "other"] {
        build(&env, name);
    }
    for name in ["tampered", "other"] {
        slipway(&env).args(["sign", name, "--key"]).arg(&alice.path).ok();
    }
    slipway(&env)
        .args(["sign", "unlisted", "--key"])
        .arg(&mallory.path)
        .ok();
    edit_record(&env, "tampered", |r| {
        let s = r["signatures"][0]["signature"].as_str().unwrap().to_string();
        r["signatures"][0]["signature"] = Value::from(tamper(&s));
    });
    let others = signatures(&env, "other");
    edit_record(&env, "misnamed", |r| r["signatures"] = Value::from(others));

    let root = strict_host(&env, "strict", &[("alice@example.com", &alice)]);
    let allowed = root.join(".slipway/allowed_signers");
    let (root_s, allowed_s) = (root.display(), allowed.display());
    let cases = [
        (
            "unsigned",
            format!(
                "error: {root_s}: release `unsigned` refused: missing signature: this host accepts only releases signed by a key in `{allowed_s}`; \
                 sign it with `slipway sign unsigned` and push again"
            ),
        ),
        (
            "tampered",
            format!(
                "error: {root_s}: release `tampered` refused: bad signature: the signature by `{}` does not verify for `tampered` {id} (damaged or forged); \
                 sign it again with `slipway sign tampered` and push again",
                alice.fingerprint
            ),
        ),
        (
            "unlisted",
            format!(
                "error: {root_s}: release `unlisted` refused: unknown key: `{}` (mallory@example.com) is not listed (or not valid now) in `{allowed_s}`; \
                 sign it with a key listed there, or ask the host's owner to add this one",
                mallory.fingerprint
            ),
        ),
        (
            "misnamed",
            format!(
                "error: {root_s}: release `misnamed` refused: wrong name: the signature by `{}` binds `other` {id}, not `misnamed` {id}; \
                 sign this release with `slipway sign misnamed` and push again",
                alice.fingerprint
            ),
        ),
    ];
    for (name, error) in &cases {
        let out = push(&env, name, &root).fails(5);
        out.one_line_error();
        assert_eq!(out.stderr().trim_end(), error.as_str(), "{out}");
        nothing_staged(&root, name);
    }

    // The same bundles are welcome on a host without allowed_signers.
    let open = env.path("open");
    for (name, _) in &cases {
        push(&env, name, &open).ok();
        assert!(open.join("releases").join(name).is_dir());
        assert!(host_meta(&open, name).get("signed_by").is_none());
    }

    // Signed properly, the strict host takes it.
    slipway(&env).args(["sign", "unsigned", "--key"]).arg(&alice.path).ok();
    push(&env, "unsigned", &root).ok();
    assert_eq!(
        host_meta(&root, "unsigned")["signed_by"]["principal"],
        "alice@example.com"
    );
}

#[test]
fn a_key_listed_for_another_namespace_is_refused() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    let root = strict_host(&env, "host", &[]);
    std::fs::write(
        root.join(".slipway/allowed_signers"),
        format!("alice@example.com namespaces=\"git\" {}\n", alice.public),
    )
    .unwrap();
    push(&env, "v1", &root)
        .fails(5)
        .one_line_error()
        .stderr_has(&format!(
            "release `v1` refused: unknown key: `{}` is listed for `alice@example.com` in `{}` but may not sign for namespace `slipway` now",
            alice.fingerprint,
            root.join(".slipway/allowed_signers").display()
        ));
    nothing_staged(&root, "v1");
}

#[test]
fn signing_after_pushing_adds_the_signature_on_the_host() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    build(&env, "v1");
    let root = env.path("host");
    push(&env, "v1", &root).ok();
    assert!(host_meta(&root, "v1").get("signatures").is_none());

    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    let out = push(&env, "v1", &root).ok();
    assert!(out.line().contains("already staged"), "{out}");
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signatures"][0]["key_fingerprint"], alice.fingerprint.as_str());
    assert!(meta.get("signed_by").is_none(), "nothing is enforced yet");

    // The host's owner turns enforcement on: a re-push records the signer…
    let root = strict_host(&env, "host", &[("alice", &alice)]);
    push(&env, "v1", &root).ok();
    assert_eq!(host_meta(&root, "v1")["signed_by"]["principal"], "alice");
    // …and an unsigned release staged before is refused now (its tree stays).
    env.write("site/index.html", "v2");
    build(&env, "v2");
    let loose = env.path("loose");
    push(&env, "v2", &loose).ok();
    let loose = strict_host(&env, "loose", &[("alice", &alice)]);
    push(&env, "v2", &loose)
        .fails(5)
        .one_line_error()
        .stderr_has("release `v2` refused: missing signature");
    assert!(loose.join("releases/v2").is_dir());
    assert!(host_meta(&loose, "v2").get("signed_by").is_none());
}

#[test]
fn signatures_survive_export_import_and_push() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let bob = Key::new(&env, "keys/bob", "bob@example.com");
    let id = build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    let file = env.path("v1.tar.zst");
    slipway(&env).args(["export", "v1", "-o"]).arg(&file).ok();
    let sidecar: Value = serde_json::from_slice(&std::fs::read(env.path("v1.tar.zst.meta.json")).unwrap()).unwrap();
    assert_eq!(sidecar["signatures"].as_array().map(Vec::len), Some(1));

    let ops = env.path("ops-store");
    let in_ops = || slipway(&env).env("SLIPWAY_STORE", &ops);
    in_ops().args(["import"]).arg(&file).ok();
    let imported = in_ops().args(["inspect", "v1", "--json"]).ok().json();
    assert_eq!(imported["signatures"], sidecar["signatures"]);
    let root = strict_host(&env, "prod", &[("alice@example.com", &alice)]);
    in_ops().args(["push", "v1", "-t"]).arg(&root).ok();
    assert_eq!(host_meta(&root, "v1")["signed_by"]["principal"], "alice@example.com");

    // Bob signs in the build store; importing again adds his signature.
    slipway(&env).args(["sign", "v1", "--key"]).arg(&bob.path).ok();
    slipway(&env).args(["export", "v1", "-o"]).arg(&file).ok();
    in_ops().args(["import"]).arg(&file).ok();
    let sigs = in_ops().args(["inspect", "v1", "--json"]).ok().json()["signatures"].clone();
    assert_eq!(sigs.as_array().map(Vec::len), Some(2), "{sigs}");

    // Imported under another name, the signatures do not apply: dropped, with a warning.
    let out = slipway(&env)
        .env("SLIPWAY_STORE", env.path("third"))
        .args(["import", "--name", "renamed"])
        .arg(&file)
        .ok();
    out.stderr_has(&format!(
        "warning: not importing a signature from `{}.meta.json` for `renamed` {id}: the signature by `{}` binds `v1` {id}, not `renamed` {id}",
        file.display(),
        alice.fingerprint
    ));
    let renamed = slipway(&env)
        .env("SLIPWAY_STORE", env.path("third"))
        .args(["inspect", "renamed", "--json"])
        .ok()
        .json();
    assert_eq!(renamed["signatures"], Value::Array(vec![]));

    // A damaged signature in a sidecar never enters a store.
    let mut damaged = sidecar.clone();
    let s = damaged["signatures"][0]["signature"].as_str().unwrap().to_string();
    damaged["signatures"][0]["signature"] = Value::from(tamper(&s));
    std::fs::write(env.path("v1.tar.zst.meta.json"), serde_json::to_vec(&damaged).unwrap()).unwrap();
    let fourth = env.path("fourth");
    slipway(&env)
        .env("SLIPWAY_STORE", &fourth)
        .args(["import"])
        .arg(&file)
        .ok()
        .stderr_has("does not verify against the public key it names");
    let info = slipway(&env)
        .env("SLIPWAY_STORE", &fourth)
        .args(["inspect", "v1", "--json"])
        .ok()
        .json();
    assert_eq!(info["signatures"], Value::Array(vec![]));
}

/// An `ssh-agent` run by the test (in the foreground, so it is killed with the guard).
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(env: &Env) -> Agent {
        let sock = env.path("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (install openssh-client)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sock.exists() {
            assert!(std::time::Instant::now() < deadline, "ssh-agent did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Agent { child, sock }
    }

    fn add(&self, key: &Key) {
        let out = Command::new("ssh-add")
            .arg(&key.path)
            .env("SSH_AUTH_SOCK", &self.sock)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn signing_through_ssh_agent_with_a_public_key_or_no_key_at_all() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let stranger = Key::new(&env, "keys/stranger", "stranger@example.com");
    let agent = Agent::start(&env);
    agent.add(&alice);
    // Only the agent can sign now: the private key files are gone.
    std::fs::remove_file(&alice.path).unwrap();
    std::fs::remove_file(&stranger.path).unwrap();
    build(&env, "v1");
    let with_agent = || slipway(&env).env("SSH_AUTH_SOCK", &agent.sock);

    let out = with_agent().args(["sign", "v1", "--key"]).arg(alice.pub_path()).ok();
    assert_eq!(
        out.line(),
        format!("signed v1 with {} (alice@example.com)", alice.fingerprint)
    );
    let root = strict_host(&env, "host", &[("alice@example.com", &alice)]);
    push(&env, "v1", &root).ok();
    assert_eq!(
        host_meta(&root, "v1")["signed_by"]["key_fingerprint"],
        alice.fingerprint.as_str()
    );

    // No --key: the agent's key.
    env.write("site/index.html", "v2");
    build(&env, "v2");
    with_agent().args(["sign", "v2"]).ok();
    assert_eq!(signatures(&env, "v2")[0]["key_fingerprint"], alice.fingerprint.as_str());

    // A public key whose private half is nowhere: one line saying what to do.
    let out = with_agent()
        .args(["sign", "v2", "--key"])
        .arg(stranger.pub_path())
        .fails(1);
    out.one_line_error()
        .stderr_has(&format!(
            "error: cannot sign `v2` with `{}`: ",
            stranger.pub_path().display()
        ))
        .stderr_has("add the private key to ssh-agent (`ssh-add KEY`), or pass the private key file with `--key`");
    assert_eq!(signatures(&env, "v2").len(), 1);
}

fn stderr_line(out: &Outcome) -> String {
    out.stderr().trim_end().to_string()
}

#[test]
fn over_real_sshd_a_signed_release_is_staged_and_an_unsigned_one_refused() {
    let host = crate::support::sshd::Sshd::start();
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let root = strict_host(&env, "srv", &[("alice@example.com", &alice)]);
    let url = host.url(&root);
    build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    slipway(&env)
        .via_ssh(host.ssh_config_path())
        .args(["push", "v1", "-t", &url])
        .ok();
    assert_eq!(host_meta(&root, "v1")["signed_by"]["principal"], "alice@example.com");
    assert!(root.join("releases/v1/index.html").is_file());

    env.write("site/index.html", "v2");
    build(&env, "v2");
    let out = slipway(&env)
        .via_ssh(host.ssh_config_path())
        .args(["push", "v2", "-t", &url])
        .fails(5);
    out.one_line_error();
    assert!(
        stderr_line(&out).starts_with(&format!(
            "error: {url}: release `v2` refused: missing signature: this host accepts only releases signed by a key in `{}`",
            root.join(".slipway/allowed_signers").display()
        )),
        "{out}"
    );
    assert!(!root.join("releases/v2").exists());
}

#[test]
fn one_acceptable_signature_among_several_is_enough_and_otherwise_each_reason_is_named() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let mallory = Key::new(&env, "keys/mallory", "mallory@example.com");
    build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&mallory.path).ok();
    edit_record(&env, "v1", |r| {
        r["signatures"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"format": "x509", "blob": "…"}))
    });
    let root = strict_host(&env, "host", &[("alice@example.com", &alice)]);
    let allowed = root.join(".slipway/allowed_signers");
    let out = push(&env, "v1", &root).fails(5);
    out.one_line_error();
    assert_eq!(
        stderr_line(&out),
        format!(
            "error: {}: release `v1` refused: none of its 2 signatures is acceptable: \
             unknown key (`{}` (mallory@example.com) is not listed (or not valid now) in `{a}`); \
             unsupported signature (a signature in format `x509`, which this slipway cannot check); \
             sign it with a key listed in `{a}` (`slipway sign v1`) and push again",
            root.display(),
            mallory.fingerprint,
            a = allowed.display()
        )
    );
    nothing_staged(&root, "v1");

    // Alice's signature next to those: accepted, and every signature is kept.
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    push(&env, "v1", &root).ok();
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signed_by"]["principal"], "alice@example.com");
    assert_eq!(meta["signatures"].as_array().map(Vec::len), Some(3));
    let text = slipway(&env).args(["inspect", "v1"]).ok().stdout();
    assert!(
        text.contains("signature   (a signature in format `x509`, which this slipway cannot read)"),
        "{text}"
    );
}

/// `current`'s target, e.g. `releases/v2`.
fn current(root: &Path) -> PathBuf {
    std::fs::read_link(root.join("current")).unwrap()
}

fn history_lines(root: &Path) -> usize {
    std::fs::read_to_string(root.join(".slipway/history.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn releases_staged_before_enforcement_cannot_be_activated_or_rolled_back_to() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    // Staged and activated while the host enforced nothing: no signatures.
    let root = env.path("host");
    for name in ["v1", "v2", "v3"] {
        build(&env, name);
        env.write("site/index.html", format!("<h1>{name}</h1>\n"));
        push(&env, name, &root).ok();
    }
    for name in ["v1", "v2"] {
        slipway(&env).args(["activate", name, "-t"]).arg(&root).ok();
    }
    let root = std::fs::canonicalize(root).unwrap();
    let allowed = root.join(".slipway/allowed_signers");
    std::fs::write(
        &allowed,
        format!("alice@example.com namespaces=\"slipway\" {}\n", alice.public),
    )
    .unwrap();
    let before = history_lines(&root);

    let refusal = |name: &str| {
        format!(
            "release `{name}` refused: missing signature: this host accepts only releases signed by a key in `{}`; \
             sign it with `slipway sign {name}` and push again",
            allowed.display()
        )
    };
    let attempts: [(&[&str], &str); 3] = [
        (&["activate", "v3"], "v3"),
        (&["rollback", "--to", "v1"], "v1"),
        (&["rollback"], "v1"),
    ];
    for (args, refused) in attempts {
        let out = slipway(&env).args(args).arg("-t").arg(&root).fails(5);
        out.one_line_error().stderr_has(&refusal(refused));
        assert_eq!(current(&root), Path::new("releases/v2"), "{args:?} moved current");
        assert_eq!(history_lines(&root), before, "{args:?} wrote history");
        assert_ne!(host_meta(&root, "v2")["bad"], true, "{args:?} marked v2 bad");
    }

    // Signed and pushed again (signatures only), the same release goes live.
    slipway(&env).args(["sign", "v1", "--key"]).arg(&alice.path).ok();
    push(&env, "v1", &root).ok();
    slipway(&env).args(["rollback", "--to", "v1", "-t"]).arg(&root).ok();
    assert_eq!(current(&root), Path::new("releases/v1"));
}

/// A signature object slipway cannot check (it is kept, and refused as
/// unsupported) that is exactly `bytes` long as compact JSON, the size a
/// host measures.
fn filler(i: usize, bytes: usize) -> Value {
    let mut v = serde_json::json!({"format": "x509", "n": i, "blob": ""});
    let empty = serde_json::to_vec(&v).unwrap().len();
    v["blob"] = Value::String("A".repeat(bytes - empty));
    assert_eq!(serde_json::to_vec(&v).unwrap().len(), bytes);
    v
}

/// Make the store's record of `name` carry `fillers` and then its own
/// (real) signatures, last, so a host looks through all the others first.
fn pad_signatures(env: &Env, name: &str, fillers: impl IntoIterator<Item = Value>) {
    edit_record(env, name, |r| {
        let own = r["signatures"].as_array().cloned().unwrap_or_default();
        r["signatures"] = Value::Array(fillers.into_iter().chain(own).collect());
    });
}

#[test]
fn a_host_keeps_and_checks_exactly_32_signatures_and_refuses_more() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let root = strict_host(&env, "host", &[("alice@example.com", &alice)]);
    for name in ["v1", "v2"] {
        build(&env, name);
        slipway(&env).args(["sign", name, "--key"]).arg(&alice.path).ok();
    }
    // 31 signatures the host cannot use, then alice's: 32, the limit, all
    // looked at, at staging and again at activation.
    pad_signatures(&env, "v1", (1..32).map(|i| filler(i, 100)));
    assert_eq!(signatures(&env, "v1").len(), 32);
    push(&env, "v1", &root).ok();
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signatures"].as_array().map(Vec::len), Some(32));
    assert_eq!(meta["signed_by"]["principal"], "alice@example.com");
    slipway(&env).args(["activate", "v1", "-t"]).arg(&root).ok();
    assert_eq!(current(&root), Path::new("releases/v1"));

    // 33 offered: refused before anything is looked at.
    pad_signatures(&env, "v2", (1..33).map(|i| filler(i, 100)));
    let out = push(&env, "v2", &root).fails(5);
    out.one_line_error().stderr_has(&format!(
        "{}: release `v2` refused: the push offers 33 signatures, more than the 32 a host keeps",
        root.display()
    ));
    assert!(!root.join(".slipway/releases/v2.json").exists());
    assert!(!root.join("releases/v2").exists());

    // One more for v1 on top of the 32 the host keeps: refused too, and
    // the host's 32 stay as they were.
    edit_record(&env, "v1", |r| r["signatures"] = Value::Array(vec![filler(99, 100)]));
    let out = push(&env, "v1", &root).fails(5);
    out.one_line_error().stderr_has(
        "release `v1` refused: with the push's signatures it would carry 33, more than the 32 a host keeps",
    );
    assert_eq!(host_meta(&root, "v1"), meta);
}

#[test]
fn a_signature_of_exactly_16_kib_is_accepted_and_one_byte_more_refused() {
    let env = Env::new();
    let alice = Key::new(&env, "keys/alice", "alice@example.com");
    let root = strict_host(&env, "host", &[("alice@example.com", &alice)]);
    for name in ["v1", "v2"] {
        build(&env, name);
        slipway(&env).args(["sign", name, "--key"]).arg(&alice.path).ok();
    }
    pad_signatures(&env, "v1", [filler(1, 16 * 1024)]);
    push(&env, "v1", &root).ok();
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signatures"].as_array().map(Vec::len), Some(2));
    assert_eq!(meta["signed_by"]["principal"], "alice@example.com");

    pad_signatures(&env, "v2", [filler(1, 16 * 1024 + 1)]);
    let out = push(&env, "v2", &root).fails(5);
    out.one_line_error().stderr_has(&format!(
        "{}: release `v2` refused: signature 1 of the push is 16385 bytes, more than the 16384 a host accepts",
        root.display()
    ));
    assert!(!root.join(".slipway/releases/v2.json").exists());
}

#[test]
fn an_rsa_4096_signature_is_accepted_and_activated() {
    let env = Env::new();
    let carol = Key::rsa_4096(&env, "keys/carol", "carol@example.com");
    build(&env, "v1");
    slipway(&env).args(["sign", "v1", "--key"]).arg(&carol.path).ok();
    let sig = &signatures(&env, "v1")[0];
    // Far larger than an ed25519 signature (about 600 bytes): a limit of a
    // kilobyte or two would refuse it.
    let size = serde_json::to_vec(sig).unwrap().len();
    assert!(size > 2048, "an RSA-4096 signature object of {size} bytes");
    let root = strict_host(&env, "host", &[("carol@example.com", &carol)]);
    push(&env, "v1", &root).ok();
    let meta = host_meta(&root, "v1");
    assert_eq!(meta["signed_by"]["principal"], "carol@example.com");
    assert_eq!(meta["signed_by"]["key_fingerprint"], carol.fingerprint.as_str());
    slipway(&env).args(["activate", "v1", "-t"]).arg(&root).ok();
    assert_eq!(current(&root), Path::new("releases/v1"));
}
