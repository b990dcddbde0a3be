//! One file per verb: orchestration only, no byte-level logic.

pub mod activate;
pub mod build;
pub mod completions;
pub mod deploy;
pub mod diff;
pub mod export;
pub mod fetch;
pub mod forget;
pub mod gate;
pub mod gc;
pub mod history;
pub mod host;
pub mod import;
pub mod init;
pub mod inspect;
pub mod list;
pub mod man;
pub mod plan;
pub mod provenance;
pub mod prune;
pub mod publish;
pub mod push;
pub mod rollback;
pub mod serve;
pub mod service;
pub mod sign;
pub mod status;
pub mod verify;

// Sizes are formatted where all output is (the host's errors use it too);
// the commands and the fleet keep naming it here.
pub use crate::output::human_bytes;

/// Resolve `-t TARGET` against `--config` (or `./slipway.toml`).
///
/// # Errors
/// Usage error when an explicit `--config` is missing or the target is unknown.
pub fn load_target(ctx: &crate::Context, target: &str) -> crate::error::Result<crate::remote::Target> {
    if ctx.config_explicit && crate::fs::symlink_metadata_optional(&ctx.config_path)?.is_none() {
        return Err(crate::error::Error::usage(format!(
            "config file `{}` does not exist",
            ctx.config_path.display()
        )));
    }
    let project = crate::config::load_project(&ctx.config_path)?;
    crate::remote::resolve_target(target, project.as_ref(), &ctx.config_path.display().to_string())
}

/// Open remote `name` of `--config` (or `./slipway.toml`).
///
/// # Errors
/// Usage error when an explicit `--config` is missing or the remote is not configured.
pub fn load_remote(ctx: &crate::Context, name: &str) -> crate::error::Result<crate::bucket::Remote> {
    if ctx.config_explicit && crate::fs::symlink_metadata_optional(&ctx.config_path)?.is_none() {
        return Err(crate::error::Error::usage(format!(
            "config file `{}` does not exist",
            ctx.config_path.display()
        )));
    }
    let project = crate::config::load_project(&ctx.config_path)?;
    crate::bucket::open(project.as_ref(), name, &ctx.config_path.display().to_string())
}

/// What `push` and `deploy` stage: a release of the local store, sent
/// over SSH, or (with `--from`, or the target's `from`) one the hosts pull
/// from a remote store.
pub struct Staging {
    pub record: crate::store::ReleaseRecord,
    pub manifest: crate::manifest::Manifest,
    pub pull: Option<crate::protocol::PullSource>,
    /// Pull mode: what the client tells hosts to spare them downloads.
    pub assist: Option<crate::remote::push::PullAssist<'static>>,
}

/// Resolve REL for `verb` on `target`, pulling from `from` (else the
/// target's `from`) when set.
///
/// # Errors
/// As [`named_release`], or [`crate::bucket::hosts::pulled`] in pull mode.
pub fn staging(
    ctx: &crate::Context,
    store: &crate::store::Store,
    rel: &str,
    verb: &str,
    target: &crate::remote::Target,
    from: Option<&str>,
) -> crate::error::Result<Staging> {
    let Some(remote_name) = from.or(target.config.from.as_deref()) else {
        let record = named_release(store, rel, verb)?;
        let manifest = store.manifest(&record.id)?;
        shared_fits(target, &record.name, &manifest)?;
        return Ok(Staging {
            record,
            manifest,
            pull: None,
            assist: None,
        });
    };
    let project = crate::config::load_project(&ctx.config_path)?;
    let remote = crate::bucket::open(project.as_ref(), remote_name, &ctx.config_path.display().to_string())?;
    let lifetime = match project
        .as_ref()
        .and_then(|p| p.remotes.get(remote_name))
        .and_then(|r| r.url_lifetime.as_deref())
    {
        Some(v) => crate::config::parse_duration(v, &format!("remotes.{remote_name}.url_lifetime"))?,
        None => crate::bucket::hosts::DEFAULT_LIFETIME,
    };
    let pulled = crate::bucket::hosts::pulled(store, &remote, rel, lifetime)?;
    shared_fits(target, &pulled.record.name, &pulled.manifest)?;
    // A host that has an earlier release gets the manifest as a delta
    // against it: from the local store's copy of that release, else from
    // the remote's (checked against its id).
    let base = move |id: &crate::digest::Digest| {
        crate::bucket::fetch::manifest(&remote, id)
            .ok()
            .map(|m| m.canonical_bytes())
    };
    Ok(Staging {
        record: pulled.record,
        manifest: pulled.manifest,
        pull: Some(pulled.source),
        assist: Some(crate::remote::push::PullAssist {
            locations: pulled.locations,
            base: Box::new(base),
        }),
    })
}

/// The target's `shared` and `shared_files` against the release, before
/// any host is contacted (every host would refuse it the same way).
///
/// # Errors
/// The refusal, naming the target, the release and both ways to fix it.
fn shared_fits(
    target: &crate::remote::Target,
    name: &str,
    manifest: &crate::manifest::Manifest,
) -> crate::error::Result<()> {
    crate::manifest::check_shared(manifest, &target.config.shared, &target.config.shared_files).map_err(|e| {
        e.reworded(format!(
            "release `{name}` cannot go to target `{}`: {e}; no host was contacted",
            target.name
        ))
    })
}

/// REL as a named release whose bundle is in the store, for `verb` (push, deploy).
///
/// # Errors
/// When REL does not resolve, names a bundle with no single name, or its bundle is missing.
pub fn named_release(
    store: &crate::store::Store,
    rel: &str,
    verb: &str,
) -> crate::error::Result<crate::store::ReleaseRecord> {
    use crate::error::Error;
    let (id, record) = store.resolve(rel)?;
    let record = record.ok_or_else(|| {
        Error::usage(format!(
            "`{rel}` is bundle {id}, which has no single release name; {verb} it by name (`slipway list` shows them)"
        ))
    })?;
    if !store.has_bundle(&id) {
        return Err(Error::BundleMissing {
            release: record.name.clone(),
            id: id.to_string(),
            store: store.root().to_path_buf(),
        });
    }
    Ok(record)
}

/// Name each symlink of release `name` that leaves the release, on stderr
/// (`import`, `push`, `deploy`): the builder allowed it, and a host accepts
/// it only where its `.slipway/allowed_links` lists it.
pub fn note_external_links(ctx: &crate::Context, name: &str, manifest: &crate::manifest::Manifest) {
    for link in manifest.external_links() {
        ctx.out.warn(&format!(
            "`{name}` links out of the release: `{}` (a host accepts it only if its `.slipway/allowed_links` lists it)",
            link.escape_debug()
        ));
    }
}

/// Switch every host of `fleet` to `goal` as `activate` and `rollback` do
/// (their `--wait` and `--skip-unreachable`, no batches, no prune; with
/// `--expect-plan`, the hosts as `approved`), then print each host's report.
///
/// # Errors
/// As [`crate::fleet::Fleet::switch`].
pub fn switch_and_report(
    ctx: &crate::Context,
    fleet: &mut crate::fleet::Fleet,
    goal: &crate::fleet::Goal,
    args: &crate::cli::SwitchArgs,
    approved: Option<crate::fleet::Approved>,
) -> crate::error::Result<()> {
    let opts = crate::fleet::SwitchOptions {
        approved,
        ..switch_options(args)
    };
    let result = fleet.switch(goal, &opts);
    crate::fleet::print_reports(ctx, &fleet.reports());
    result
}

/// The switch `activate` and `rollback` make: their `--wait` and
/// `--skip-unreachable`, no batches, no prune.
pub fn switch_options(args: &crate::cli::SwitchArgs) -> crate::fleet::SwitchOptions {
    crate::fleet::SwitchOptions {
        wait: args.wait.map(std::time::Duration::from_secs),
        skip_unreachable: args.skip_unreachable,
        batch: None,
        prune_keep: None,
        command: command_line(),
        allow_schema_rollback: args.allow_schema_rollback,
        migrate_again: args.migrate_again,
        approved: None,
    }
}

/// `slipway VERB ARGS…` as typed, for the lock holder's details.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("slipway {}", args.join(" "))
}

/// The first 12 hex digits of an id, for tables.
pub fn short_id(id: &crate::digest::Digest) -> String {
    id.hex()[..12].to_string()
}
