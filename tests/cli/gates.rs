//! Promotion gates and the audit trail: a gated target takes only bundles
//! that are healthy on every host of its staging target, an override needs
//! a reason that history records, and provenance says where a release was
//! tested and when it went live.

use crate::support::{Env, write_file};

/// A `staging` target of two hosts (a health hook each) and a
/// `production` target gated on it; v1 and v2 built.
fn setup(env: &Env) -> ([std::path::PathBuf; 2], std::path::PathBuf) {
    let staging = [env.path("staging-host1"), env.path("staging-host2")];
    let prod = env.path("prod-host");
    env.write(
        "slipway.toml",
        format!(
            "[targets.staging]\nhosts = [\"{}\", \"{}\"]\n[targets.staging.hooks]\nhealth = \"test -f index.html\"\n\n\
             [targets.production]\nhosts = [\"{}\"]\nrequire_healthy_on = \"staging\"\n",
            staging[0].display(),
            staging[1].display(),
            prod.display()
        ),
    );
    for v in ["v1", "v2"] {
        write_file(&env.path("site/index.html"), v.as_bytes());
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
    }
    (staging, prod)
}

#[test]
fn a_gated_target_accepts_only_ids_healthy_on_every_staging_host() {
    let env = Env::new();
    let (staging, prod) = setup(&env);
    let id = env.slipway().args(["inspect", "v1", "--json"]).ok().json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let gate = |missing: &str| {
        format!(
            "gate: `production` requires a bundle healthy on every host of `staging`, and `v1` ({id}) \
             has not passed its health check on {missing}; deploy it to `staging` first"
        )
    };
    let (one, two) = (staging[0].display().to_string(), staging[1].display().to_string());
    let out = env.slipway().args(["deploy", "v1", "-t", "production"]).fails(1);
    out.one_line_error().stderr_has(&gate(&format!("{one}, {two}")));
    assert!(!prod.join("releases/v1").exists(), "nothing pushed past the gate");

    // Healthy on one staging host of two is not enough.
    env.slipway()
        .args(["deploy", "v1", "-t", "staging", "--hosts", &one])
        .ok();
    assert!(!staging[1].join("releases/v1").exists());
    let out = env.slipway().args(["deploy", "v1", "-t", "production"]).fails(1);
    out.one_line_error().stderr_has(&gate(&two));
    assert!(!prod.join("releases/v1").exists(), "nothing pushed past the gate");

    env.slipway()
        .args(["deploy", "v1", "-t", "staging", "--hosts", &two])
        .ok();
    env.slipway().args(["deploy", "v1", "-t", "production"]).ok();

    // activate is gated too (v2 pushed to production but never healthy on staging)
    env.slipway().args(["push", "v2", "-t", "production"]).ok();
    env.slipway()
        .args(["activate", "v2", "-t", "production"])
        .fails(1)
        .stderr_has("gate:");

    // an override needs a reason (usage error), and the reason is recorded
    env.slipway()
        .args(["activate", "v2", "-t", "production", "--override-gate"])
        .fails(2);
    env.slipway()
        .args([
            "activate",
            "v2",
            "-t",
            "production",
            "--override-gate",
            "--reason",
            "hotfix for INC-42",
        ])
        .ok();
    let hist = env
        .slipway()
        .args(["history", "--json", "-t", "production"])
        .ok()
        .json();
    assert_eq!(hist[0]["to"], "v2");
    assert_eq!(hist[0]["reason"], "gate `staging` overridden: hotfix for INC-42");
    let text = env.slipway().args(["history", "-t", "production"]).ok().stdout();
    assert!(text.contains("hotfix for INC-42"), "{text}");

    // provenance: where it was tested, when it went live
    let p = env
        .slipway()
        .args(["provenance", "v1", "-t", "production", "--json"])
        .ok()
        .json();
    assert_eq!(p["release"], "v1");
    assert_eq!(p["provenance"]["source"], "dir");
    assert!(p["tested_on"][0]["healthy_at"].is_string(), "{p}");
    assert_eq!(p["hosts"][0]["current"], false);
    assert_eq!(p["hosts"][0]["activated_at"].as_array().unwrap().len(), 1);
    let text = env.slipway().args(["provenance", "-t", "production"]).ok().stdout();
    assert!(
        text.contains("release    v2") && text.contains("never healthy"),
        "{text}"
    );
    assert!(text.contains("gate `staging` overridden"), "{text}");
}

#[test]
fn provenance_of_a_mixed_fleet_shows_every_release_and_each_hosts_signer() {
    let env = Env::new();
    let key = env.path("keys/ci");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "ci", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    // Two hosts that name the same key differently (an allowed_signers
    // being rolled out): each host's own signer is what it recorded.
    let hosts = [env.path("a"), env.path("b")];
    for (root, principal) in hosts.iter().zip(["release-ci", "ops"]) {
        write_file(
            &root.join(".slipway/allowed_signers"),
            format!("{principal} namespaces=\"slipway\" {}", public.trim()).as_bytes(),
        );
    }
    env.write(
        "slipway.toml",
        format!(
            "[targets.prod]\nhosts = [\"{}\", \"{}\"]\n",
            hosts[0].display(),
            hosts[1].display()
        ),
    );
    for v in ["v1", "v2"] {
        env.write("site/index.html", v);
        env.slipway().args(["build", "--dir", "site", "--name", v]).ok();
        env.slipway().args(["sign", v, "--key"]).arg(&key).ok();
    }
    env.slipway().args(["deploy", "v1", "-t", "prod"]).ok();
    // One host first: b runs v2, a still v1.
    let b = hosts[1].display().to_string();
    env.slipway().args(["deploy", "v2", "-t", "prod", "--hosts", &b]).ok();

    let p = env.slipway().args(["provenance", "-t", "prod", "--json"]).ok().json();
    assert_eq!(p["release"], "v1", "{p}");
    assert_eq!(p["others"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["others"][0]["release"], "v2", "{p}");
    let principals = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["signed_by"]["principal"].clone())
            .collect()
    };
    assert_eq!(principals(&p), ["release-ci", "ops"], "{p}");
    assert_eq!(p["others"][0]["hosts"][0]["has_release"], false, "{p}");
    assert_eq!(principals(&p["others"][0])[1], "ops", "{p}");

    let out = env.slipway().args(["provenance", "-t", "prod"]).ok();
    let text = out.stdout();
    assert!(
        text.contains("release    v1\n") && text.contains("\nrelease    v2\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("signed by  {}: release-ci (", hosts[0].display()))
            && text.contains(&format!("signed by  {b}: ops (")),
        "{text}"
    );
    out.stderr_has("the hosts of `prod` run different releases (v1, v2): each is shown");
}
