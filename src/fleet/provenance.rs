//! `slipway provenance`: what exactly runs on a target and where it came
//! from, gathered from its hosts (status, and the history records of one
//! bundle id) and, with a promotion gate, from the gate target's hosts.
//!
//! Read-only: nothing here changes a host.

use serde::Serialize;

use super::Fleet;
use crate::digest::{Digest, looks_like_id};
use crate::error::{Error, Result};
use crate::protocol::{HostStatus, Record, Signer};
use crate::provenance::Provenance;

/// One host of the target: whether the release runs there, and since when.
#[derive(Debug, Serialize)]
pub struct HostLive {
    pub host: String,
    /// Whether the release is current there now.
    pub current: bool,
    /// What is current there.
    pub current_release: Option<String>,
    /// Every time it became current there (oldest first).
    pub activated_at: Vec<String>,
    /// The release is staged on this host.
    pub has_release: bool,
    /// The signer this host's `allowed_signers` accepted for it (hosts may
    /// differ, e.g. while a new `allowed_signers` rolls out).
    pub signed_by: Option<Signer>,
}

/// One host of the gate target: when the release passed its health check there.
#[derive(Debug, Serialize)]
pub struct Tested {
    pub target: String,
    pub host: String,
    pub healthy_at: Option<String>,
}

/// What `slipway provenance` reports (`--json`: this object).
#[derive(Debug, Serialize)]
pub struct Report {
    pub release: String,
    pub id: Digest,
    pub provenance: Option<Provenance>,
    pub signed_by: Option<Signer>,
    pub tested_on: Vec<Tested>,
    pub hosts: Vec<HostLive>,
    /// History reasons recorded with its activations (gate overrides, rollbacks).
    pub reasons: Vec<String>,
    /// Without REL on a mixed fleet: a report for each other release some
    /// host runs, in host order (empty when every host runs the same).
    pub others: Vec<Report>,
}

/// The provenance of `rel` (a name or id prefix; default what is current)
/// on `fleet`'s hosts; `tested_on` is left for [`tested_on`].
///
/// # Errors
/// When nothing is current (and no `rel`), the release is on no host, or a
/// host is unreachable.
pub fn gather(fleet: &mut Fleet, target: &str, rel: Option<&str>) -> Result<Report> {
    let mut hosts: Vec<(String, HostStatus)> = Vec::new();
    for (host, r) in fleet.query(|s| s.status()) {
        hosts.push((host, r?));
    }
    // Without REL: the release the first host runs, and (in `others`) each
    // other release some host runs, so a mixed fleet is shown whole.
    let wanted: Vec<String> = match rel {
        Some(r) => vec![r.to_string()],
        None => {
            let mut names: Vec<String> = Vec::new();
            for (_, st) in &hosts {
                if let Some(c) = &st.current
                    && !names.contains(c)
                {
                    names.push(c.clone());
                }
            }
            if names.is_empty() {
                return Err(Error::NothingCurrent {
                    target: target.to_string(),
                });
            }
            names
        }
    };
    let mut reports = Vec::new();
    for name in &wanted {
        reports.push(one(fleet, target, &hosts, name)?);
    }
    let mut first = reports.remove(0);
    first.others = reports;
    Ok(first)
}

/// The report of release `wanted` on `hosts`.
fn one(fleet: &mut Fleet, target: &str, hosts: &[(String, HostStatus)], wanted: &str) -> Result<Report> {
    let found = hosts.iter().find_map(|(_, st)| {
        st.releases
            .iter()
            .find(|r| r.name == wanted || (looks_like_id(wanted) && r.id.matches_prefix(wanted)))
            .cloned()
    });
    let Some(rel) = found else {
        return Err(Error::ReleaseOnNoHost {
            release: wanted.to_string(),
            target: target.to_string(),
        });
    };
    let mut hist: Vec<Vec<Record>> = Vec::new();
    for (_, r) in fleet.query(|s| s.history_of(rel.id)) {
        hist.push(r?);
    }
    let mut report = Report {
        release: rel.name.clone(),
        id: rel.id,
        provenance: rel.provenance.clone(),
        signed_by: rel.signed_by.clone(),
        tested_on: Vec::new(),
        hosts: Vec::new(),
        reasons: Vec::new(),
        others: Vec::new(),
    };
    for ((host, st), hist) in hosts.iter().zip(&hist) {
        let mine: Vec<&Record> = hist
            .iter()
            .rev()
            .filter(|r| r.id == rel.id && r.action != "healthy")
            .collect();
        for r in &mine {
            if let Some(reason) = &r.reason {
                report.reasons.push(format!("{host} {}: {reason}", r.time));
            }
        }
        // Each host's own `allowed_signers` decides who signed it there.
        let here = st.releases.iter().find(|r| r.id == rel.id);
        report.hosts.push(HostLive {
            host: host.clone(),
            current: st.current_id == Some(rel.id),
            current_release: st.current.clone(),
            activated_at: mine.iter().map(|r| r.time.clone()).collect(),
            has_release: here.is_some(),
            signed_by: here.and_then(|r| r.signed_by.clone()),
        });
    }
    Ok(report)
}

pub fn tested_on(gate_fleet: &mut Fleet, gate: &str, id: Digest) -> Vec<Tested> {
    gate_fleet
        .query(|s| s.history_of(id))
        .into_iter()
        .map(|(host, r)| Tested {
            target: gate.to_string(),
            host,
            healthy_at: r.ok().and_then(|recs| {
                recs.into_iter()
                    .find(|x| x.action == "healthy" && x.id == id)
                    .map(|x| x.time)
            }),
        })
        .collect()
}
