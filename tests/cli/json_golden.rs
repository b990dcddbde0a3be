//! `--json` output is a contract (docs/json.md): one fixed scenario runs
//! every command that has a `--json` form, and each output is compared with
//! `tests/snapshots/json/<step>.json`, so a refactor that changes a key, its
//! order, its type or a value is caught.
//!
//! **The normalisation rule** (one rule, applied to every output before it
//! is compared; keys keep their printed order):
//! - the value of every key listed in [`VOLATILE`] (times, durations, free
//!   space and what is expected free, process ids, who runs the test, a signature made with a key
//!   generated for the run) becomes `"<number>"`, `"<string>"`, … by its
//!   JSON type (`"<time>"` for an RFC 3339 UTC time), `null` staying `null`;
//! - inside every other string, the test's temporary directory becomes
//!   `<TMP>`, this machine's host name `<HOSTNAME>`, an RFC 3339 UTC time
//!   `<time>`, a human size or percentage (`73.4 GiB`, `29%`) `<amount>`,
//!   and the test user's name and uid in a host check `<USER>` / `<UID>`.
//!
//! Everything else — keys, their order, ids, sizes, counts, results,
//! reasons — is compared exactly.
//!
//! After a deliberate change to an output (keys are only ever added):
//!
//! ```text
//! UPDATE_SNAPSHOTS=1 cargo test --test cli json_golden
//! git diff tests/snapshots/json     # review, then commit with the change
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::support::{Env, Outcome};

/// Keys whose values differ from run to run (see the module docs).
const VOLATILE: &[&str] = &[
    "time",
    "built_at",
    "started_at",
    "finished_at",
    "pushed_at",
    "last_activated",
    "duration_seconds",
    "seconds",
    "free_bytes",
    "total_bytes",
    "needs_bytes",
    "pid",
    "uid",
    "owner_uid",
    "user",
    "owner",
    "signature",
    "via",
    // A plan's id hashes host names, which hold the test's directory.
    "plan",
];

/// A JSON value that keeps its keys in the order they were printed (key
/// order is part of the contract, and `serde_json::Value` sorts them).
pub(crate) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
                Ok(Json::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(n)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("not a JSON number"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element()? {
                    out.push(v);
                }
                Ok(Json::Array(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    out.push((k, v));
                }
                Ok(Json::Object(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(t) => s.serialize_str(t),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/json")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Replace what `is_at` recognises at each position with `with`.
fn replace_matches(s: &str, is_at: impl Fn(&[u8]) -> Option<usize>, with: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let boundary = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        match is_at(&b[i..]).filter(|_| boundary) {
            Some(n) if n > 0 => {
                out.push_str(&s[copied..i]);
                out.push_str(with);
                i += n;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// `2026-12-06T03:09:17Z`, with optional fraction, at the start of `b`.
fn timestamp_len(b: &[u8]) -> Option<usize> {
    let shape = b"dddd-dd-ddTdd:dd:dd";
    if b.len() < shape.len() + 1 {
        return None;
    }
    for (c, want) in b.iter().zip(shape) {
        let ok = if *want == b'd' { c.is_ascii_digit() } else { c == want };
        if !ok {
            return None;
        }
    }
    let mut n = shape.len();
    if b.get(n) == Some(&b'.') {
        n += 1;
        while b.get(n).is_some_and(u8::is_ascii_digit) {
            n += 1;
        }
    }
    (b.get(n) == Some(&b'Z')).then_some(n + 1)
}

/// A human size (`73.4 GiB`) or a percentage (`29%`) at the start of `b`.
fn amount_len(b: &[u8]) -> Option<usize> {
    let mut n = 0;
    while b.get(n).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
        n += 1;
    }
    if n == 0 {
        return None;
    }
    if b.get(n) == Some(&b'%') {
        return Some(n + 1);
    }
    ["B", "KiB", "MiB", "GiB", "TiB"].iter().find_map(|unit| {
        let u = format!(" {unit}");
        b[n..].starts_with(u.as_bytes()).then_some(n + u.len())
    })
}

/// The normalisation rule of the module docs.
struct Rule {
    tmp: String,
    host: String,
    user: String,
}

impl Rule {
    fn string(&self, s: &str) -> String {
        let mut t = s.replace(&self.tmp, "<TMP>");
        if !self.host.is_empty() {
            t = t.replace(&self.host, "<HOSTNAME>");
        }
        if !self.user.is_empty() {
            t = t.replace(&format!("`{}` (uid ", self.user), "`<USER>` (uid ");
        }
        t = replace_matches(&t, timestamp_len, "<time>");
        t = replace_matches(&t, amount_len, "<amount>");
        replace_matches(
            &t,
            |b| {
                let p = b"uid ";
                (b.starts_with(p) && b.get(p.len()).is_some_and(u8::is_ascii_digit))
                    .then(|| p.len() + b[p.len()..].iter().take_while(|c| c.is_ascii_digit()).count())
            },
            "uid <UID>",
        )
    }

    fn apply(&self, v: &mut Json) {
        match v {
            Json::String(s) => *s = self.string(s),
            Json::Array(items) => items.iter_mut().for_each(|i| self.apply(i)),
            Json::Object(entries) => {
                for (k, val) in entries.iter_mut() {
                    if !VOLATILE.contains(&k.as_str()) {
                        self.apply(val);
                        continue;
                    }
                    let placeholder = match val {
                        Json::Null => continue,
                        Json::Number(_) => "<number>",
                        Json::String(t) if timestamp_len(t.as_bytes()) == Some(t.len()) => "<time>",
                        Json::String(_) => "<string>",
                        Json::Array(_) => "<array>",
                        Json::Bool(_) => "<bool>",
                        Json::Object(_) => "<object>",
                    };
                    *val = Json::String(placeholder.into());
                }
            }
            Json::Number(_) | Json::Bool(_) | Json::Null => {}
        }
    }
}

/// Collects each step's normalised output and compares them all at the end,
/// so one run reports every step that changed.
struct Golden {
    rule: Rule,
    mismatches: Vec<String>,
    update: bool,
}

impl Golden {
    fn new(env: &Env) -> Golden {
        let user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Golden {
            rule: Rule {
                tmp: env.dir.path().display().to_string(),
                host: hostname(),
                user,
            },
            mismatches: Vec::new(),
            update: crate::support::update_snapshots(),
        }
    }

    fn check(&mut self, step: &str, out: &Outcome) {
        let mut v: Json =
            serde_json::from_slice(&out.out.stdout).unwrap_or_else(|e| panic!("{step}: not JSON ({e}): {out}"));
        self.rule.apply(&mut v);
        let text = format!("{}\n", serde_json::to_string_pretty(&v).unwrap());
        let path = snapshot_dir().join(format!("{step}.json"));
        if self.update {
            std::fs::create_dir_all(snapshot_dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
            return;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {}
            Ok(want) => self.mismatches.push(format!(
                "{step}: `--json` output changed\n--- {}\n{want}--- now\n{text}",
                path.display()
            )),
            Err(e) => self
                .mismatches
                .push(format!("{step}: cannot read {}: {e}", path.display())),
        }
    }

    fn finish(self) {
        assert!(
            self.mismatches.is_empty(),
            "{}\n(after a deliberate change: UPDATE_SNAPSHOTS=1 cargo test --test cli json_golden)",
            self.mismatches.join("\n")
        );
    }
}

#[test]
fn json_output_of_every_command_matches_its_golden_file() {
    let env = Env::new();
    let repo = env.repo("app");
    let hosts = [env.path("hosts/a"), env.path("hosts/b")];
    // The tag's own slipway.toml builds; the operator's (outside the repo,
    // naming temporary paths) holds the target, so commits and ids are fixed.
    let target = |health: &str| {
        format!(
            "[targets.prod]\nhosts = [\"{}\", \"{}\"]\nkeep = 5\n[targets.prod.hooks]\nhealth = \"{health}\"\nhealth_timeout = \"1s\"\n",
            hosts[0].display(),
            hosts[1].display()
        )
    };
    repo.write(
        "slipway.toml",
        "[build]\ncommand = \"mkdir -p out && cp index.html out/ && ln -sf index.html out/home.html\"\noutput = \"out\"\n",
    )
    .write("index.html", "one\n")
    .commit("first")
    .tag("v1");
    repo.write("index.html", "two\n")
        .write("about.html", "about\n")
        .commit("second")
        .tag("v2");
    env.write("ops.toml", target("test -f index.html"));
    let sl = || {
        env.slipway()
            .current_dir(&repo.path)
            .arg("--config")
            .arg(env.path("ops.toml"))
    };
    sl().args(["build", "v1"]).ok();
    let mut g = Golden::new(&env);
    g.check("build", &sl().args(["build", "v2", "--json"]).ok());

    g.check("list", &sl().args(["list", "--json"]).ok());
    g.check("inspect", &sl().args(["inspect", "v1", "--json"]).ok());
    g.check("verify-local", &sl().args(["verify", "v1", "--json"]).ok());
    let file = env.path("v1.tar.zst");
    g.check(
        "export",
        &sl().args(["export", "v1", "-o"]).arg(&file).arg("--json").ok(),
    );
    g.check(
        "import",
        &sl()
            .env("SLIPWAY_STORE", env.path("other-store"))
            .arg("import")
            .arg(&file)
            .arg("--json")
            .ok(),
    );
    let key = env.path("signer");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "release@example.com", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(keygen.success());
    g.check("sign", &sl().args(["sign", "v1", "--key"]).arg(&key).arg("--json").ok());
    g.check("forget", &sl().args(["forget", "v2", "--dry-run", "--json"]).ok());
    g.check("gc", &sl().args(["gc", "--json"]).ok());
    std::fs::create_dir_all(env.path("fresh")).unwrap();
    g.check(
        "init",
        &env.slipway()
            .current_dir(env.path("fresh"))
            .args(["init", "--json"])
            .ok(),
    );

    g.check("push", &sl().args(["push", "v1", "-t", "prod", "--json"]).ok());
    g.check("activate", &sl().args(["activate", "v1", "-t", "prod", "--json"]).ok());
    g.check(
        "deploy-plan",
        &sl().args(["deploy", "v2", "-t", "prod", "--plan", "--json"]).ok(),
    );
    g.check("deploy", &sl().args(["deploy", "v2", "-t", "prod", "--json"]).ok());
    g.check("rollback", &sl().args(["rollback", "-t", "prod", "--json"]).ok());
    g.check(
        "activate-expect-mismatch",
        &sl()
            .args(["activate", "v2", "-t", "prod", "--expect", "v2", "--json"])
            .fails(6),
    );
    // A release whose health check fails: switched back everywhere, exit 3.
    env.write("bad.toml", target("false"));
    g.check(
        "deploy-health-failed",
        &env.slipway()
            .current_dir(&repo.path)
            .arg("--config")
            .arg(env.path("bad.toml"))
            .args(["deploy", "v2", "-t", "prod", "--json"])
            .fails(3),
    );
    // A host that cannot be reached: the others stage, the failed one is reported.
    env.write("blocker", "a file where a directory should be");
    env.write(
        "broken.toml",
        format!(
            "[targets.broken]\nhosts = [\"{}\", \"{}\"]\n",
            env.path("blocker/root").display(),
            hosts[1].display()
        ),
    );
    g.check(
        "push-one-host-failed",
        &env.slipway()
            .current_dir(&repo.path)
            .arg("--config")
            .arg(env.path("broken.toml"))
            .args(["push", "v2", "-t", "broken", "--json"])
            .fails(1),
    );
    g.check(
        "status-unreachable",
        &env.slipway()
            .current_dir(&repo.path)
            .arg("--config")
            .arg(env.path("broken.toml"))
            .args(["status", "-t", "broken", "--json"])
            .fails(1),
    );
    g.check("status", &sl().args(["status", "-t", "prod", "--json"]).ok());
    // One host: a target's records interleave by time, which varies.
    g.check(
        "history",
        &sl().arg("history").arg("-t").arg(&hosts[0]).arg("--json").ok(),
    );
    g.check("verify-target", &sl().args(["verify", "-t", "prod", "--json"]).ok());
    g.check("host-check", &sl().args(["host", "check", "-t", "prod", "--json"]).ok());
    g.check("provenance", &sl().args(["provenance", "-t", "prod", "--json"]).ok());
    g.check("diff", &sl().args(["diff", "v1", "v2", "--json"]).ok());
    g.check("diff-target", &sl().args(["diff", "v2", "-t", "prod", "--json"]).ok());
    g.check(
        "prune",
        &sl().args(["prune", "-t", "prod", "--keep", "0", "--json"]).ok(),
    );
    // A push that fails on one host (its `serve` stops once the objects are
    // in): nothing is activated, and each host reports the release it is on.
    g.check(
        "deploy-push-failed",
        &sl()
            .env(
                "SLIPWAY_FAULT",
                format!("after-objects@{}", std::fs::canonicalize(&hosts[0]).unwrap().display()),
            )
            .args(["deploy", "v2", "-t", "prod", "--json"])
            .fails(1),
    );
    g.finish();
}
