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
