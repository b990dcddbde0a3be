//! Pull mode: a host downloads a release from a remote store instead of
//! receiving it on the SSH connection — one of the two places content can
//! come from in [`super::stage`] (the other is the push stream). The
//! staging path after it is the same: same tree, same hardlinks, same
//! durability, same signature checks.
//!
//! ```text
//! offer.source (URLs presigned by the client) ─▶ allowed? (.slipway/remotes.toml when confined)
//!   ─▶ manifest.zst, or from the client a delta against a manifest the host has
//!      (its sha256 must be the offered id either way)
//!   ─▶ what the host lacks (as a push) ─▶ index.zst, or from the client the
//!      locations of those objects when they are few (`assist`)
//!   ─▶ range GETs, 4 at a time (bucket::pull),
//!      each object checked against its sha256 ─▶ a channel ─▶ the same Feed a push writes to
//! ```
//!
//! The client's help is what makes a small change a small download: a
//! 20,000-file manifest is 800 KB compressed and its index 140 KB, while a
//! release that changed ten files lacks a few hundred KB.
//!
//! Invariants: the host never contacts a URL a confined client chose
//! unless the host's owner allowed its prefix; every URL names exactly the
//! object it must (the id's manifest and index, the index's packs); no byte
//! reaches the tree before its sha256 matched the manifest.

use std::collections::HashMap;

use super::layout::Layout;
use crate::bucket::format::{self, Loc, ReleaseIndex};
use crate::bucket::pull::{self, Want};
use crate::bucket::s3::{self, MAX_SMALL};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest};
use crate::protocol::{Location, PullSource};

/// The most packs one pull may name (each is one URL on the connection).
pub const MAX_PACKS: usize = 100_000;
/// The longest URL accepted.
const MAX_URL: usize = 8 * 1024;
/// Range requests in flight per host.
pub const PARALLEL: usize = 4;

/// `.slipway/remotes.toml`: the URL prefixes a confined `serve` may pull from.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Allowed {
    #[serde(default)]
    allow: Vec<String>,
}

pub fn remotes_path(layout: &Layout) -> std::path::PathBuf {
    layout.meta_dir().join("remotes.toml")
}

/// Check every URL of `src` before any is used: http(s), bounded, naming
/// the object it must, and (when `confined`) under a prefix the host's
/// `.slipway/remotes.toml` allows.
///
/// # Errors
/// [`Error::Restricted`] (exit 2) for a URL the host may not use; usage
/// error for a malformed one.
pub fn check_source(layout: &Layout, src: &PullSource, id: &Digest, confined: bool) -> Result<()> {
    if src.packs.len() > MAX_PACKS {
        return Err(Error::usage(format!(
            "a pull naming {} packs is more than the {MAX_PACKS} a host accepts",
            src.packs.len()
        )));
    }
    let allowed = if confined {
        let path = remotes_path(layout);
        let list: Allowed = match crate::fs::read_optional(&path)? {
            Some(bytes) => crate::config::parse_toml(&String::from_utf8_lossy(&bytes), &path.display().to_string())?,
            None => Allowed::default(),
        };
        if list.allow.is_empty() {
            return Err(Error::Restricted(format!(
                "this host pulls from no remote store for a restricted key: its owner lists the URLs it may pull from in `{}` (`allow = [\"https://…/bucket/prefix/\"]`, docs/remote-store.md)",
                path.display()
            )));
        }
        Some((list.allow, path))
    } else {
        None
    };
    let hex = id.hex();
    let check = |url: &str, tail: &str| -> Result<()> {
        if url.len() > MAX_URL {
            return Err(Error::usage(format!("a pull URL of {} bytes is too long", url.len())));
        }
        let parsed: url::Url = url
            .parse()
            .map_err(|e| Error::usage(format!("pull URL `{}` is not a URL: {e}", crate::error::one_line(url))))?;
        if !matches!(parsed.scheme(), "http" | "https") || !parsed.path().ends_with(tail) {
            return Err(Error::Restricted(format!(
                "pull URL `{}` does not name `{tail}` over http(s)",
                strip_query(url)
            )));
        }
        if let Some((list, path)) = &allowed {
            let plain = strip_query(url);
            if !list.iter().any(|p| plain.starts_with(p.as_str())) {
                return Err(Error::Restricted(format!(
                    "this host may not pull from `{plain}`: `{}` allows only {}",
                    path.display(),
                    list.join(", ")
                )));
            }
        }
        Ok(())
    };
    check(&src.manifest, &format!("/releases/{hex}/manifest.zst"))?;
    check(&src.index, &format!("/releases/{hex}/index.zst"))?;
    for p in &src.packs {
        check(p, ".pack")?;
    }
    Ok(())
}

/// A URL without its query (the signature), for messages.
fn strip_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(a, _)| a)
}

/// GET a whole (small) object through a presigned URL, retrying what is
/// worth retrying (no connection, 5xx, 429) as range requests do.
fn get_all(agent: &ureq::Agent, url: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
    let mut last = None;
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(200 << attempt));
        }
        match get_all_once(agent, url, limit, what) {
            Ok(bytes) => return Ok(bytes),
            Err((true, e)) => last = Some(e),
            Err((false, e)) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::other("no attempt was made")))
}

/// One attempt of [`get_all`]; an error says whether it is worth retrying.
fn get_all_once(agent: &ureq::Agent, url: &str, limit: u64, what: &str) -> std::result::Result<Vec<u8>, (bool, Error)> {
    let parsed: url::Url = url
        .parse()
        .map_err(|e| (false, Error::usage(format!("pull URL is not a URL: {e}"))))?;
    let mut resp = agent.get(parsed.as_str()).call().map_err(|e| {
        (
            true,
            Error::Remote(format!("{what}: cannot download `{}`: {e}", strip_query(url))),
        )
    })?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let retry = status >= 500 || status == 429;
        return Err((
            retry,
            Error::Remote(format!(
                "{what}: `{}` answered {status}{}{}",
                strip_query(url),
                s3::s3_error(&body),
                s3::url_hint(status, &body)
            )),
        ));
    }
    let mut out = Vec::new();
    use std::io::Read;
    resp.body_mut()
        .as_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            (
                true,
                Error::Remote(format!("{what}: the download of `{}` broke off: {e}", strip_query(url))),
            )
        })?;
    if out.len() as u64 > limit {
        return Err((
            false,
            Error::integrity(format!("{what}: `{}` is larger than {limit} bytes", strip_query(url))),
        ));
    }
    Ok(out)
}

/// The manifest of the offered release, from the bucket, checked against
/// `id`; with its size and the bytes downloaded.
///
/// # Errors
/// A failed download; integrity error when it does not hash to `id`.
pub fn manifest(agent: &ureq::Agent, src: &PullSource, id: &Digest, name: &str) -> Result<(Manifest, u64, u64)> {
    let what = format!("remote `{}`: the manifest of `{name}`", src.remote);
    let bytes = get_all(agent, &src.manifest, MAX_SMALL, &what)?;
    let raw = format::decompress(&bytes, MAX_MANIFEST_BYTES, &what)?;
    let got = Digest::of(&raw);
    if got != *id {
        return Err(Error::integrity(format!(
            "{what} hashes to {got}, not to the offered id {id}: the bucket's copy is damaged or was tampered with"
        )));
    }
    let m = Manifest::parse(&raw).map_err(|e| Error::integrity(format!("{what}: {e}")))?;
    Ok((m, raw.len() as u64, bytes.len() as u64))
}

/// Download what the host lacks (`wanted`: content → size) and hand each
/// checked object to `deliver`, on this thread; returns the bytes
/// downloaded (the index when it was read, and every range). `located`:
/// the client's locations of the missing entries (pull mode with
/// `assist`), used instead of the release's index.
///
/// # Errors
/// A failed download, an object that does not match, `deliver`'s error.
pub fn contents(
    agent: &ureq::Agent,
    src: &PullSource,
    manifest: &Manifest,
    name: &str,
    wanted: &HashMap<Digest, u64>,
    located: Option<&[(u32, Location)]>,
    deliver: &mut dyn FnMut(Digest, Vec<u8>) -> Result<()>,
) -> Result<u64> {
    if wanted.is_empty() {
        return Ok(0);
    }
    crate::bucket::fault_point("host-before-pull");
    let (wants, index_bytes, packs) = match located {
        Some(located) => (from_locations(src, manifest, wanted, located)?, 0, None),
        None => {
            let (wants, bytes, index) = from_index(agent, src, manifest, name, wanted)?;
            (wants, bytes, Some(index.packs))
        }
    };
    let urls: Vec<url::Url> = src
        .packs
        .iter()
        .map(|u| {
            u.parse()
                .map_err(|e| Error::usage(format!("pull URL is not a URL: {e}")))
        })
        .collect::<Result<_>>()?;
    let ranges = pull::ranges(wants);
    let downloaded = index_bytes + ranges.iter().map(|r| r.len).sum::<u64>();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(Digest, Vec<u8>)>(16);
    std::thread::scope(|scope| {
        let downloader = scope.spawn(move || {
            let get = |pack: u32, start: u64, len: u64| -> Result<Vec<u8>> {
                let url = &urls[pack as usize];
                s3::get_range_url(agent, url, start, len).map_err(|why| {
                    Error::Remote(format!(
                        "remote `{}`: `{}` (bytes {start}..{}): {why}",
                        src.remote,
                        strip_query(url.as_str()),
                        start + len
                    ))
                })
            };
            let send = |w: &Want, content: Vec<u8>| -> Result<()> {
                tx.send((w.digest, content))
                    .map_err(|_| Error::ThreadStopped("writing the pulled objects"))
            };
            let describe = |w: &Want| {
                let pack = match &packs {
                    Some(p) => p[w.loc.0 as usize].clone(),
                    None => strip_query(&src.packs[w.loc.0 as usize])
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches(".pack")
                        .to_string(),
                };
                format!(
                    "remote `{}`: content {} of `{name}` (in pack {pack} at {})",
                    src.remote, w.digest, w.loc.1
                )
            };
            pull::download(ranges, PARALLEL, &get, &send, &describe)
        });
        let mut delivered = Ok(());
        for (d, content) in rx.iter() {
            if let Err(e) = deliver(d, content) {
                delivered = Err(e);
                break;
            }
        }
        // Dropping the receiver (by leaving the loop early) stops the downloader.
        drop(rx);
        let fetched = downloader
            .join()
            .unwrap_or_else(|_| Err(Error::other("the download stopped unexpectedly")));
        match (fetched, delivered) {
            (Err(Error::ThreadStopped(_)), Err(e)) | (Ok(()), Err(e)) | (Err(e), _) => Err(e),
            (Ok(()), Ok(())) => Ok(downloaded),
        }
    })
}

/// What to download, from the release's index (read from the bucket):
/// the wants, the index's size, and the index.
fn from_index(
    agent: &ureq::Agent,
    src: &PullSource,
    manifest: &Manifest,
    name: &str,
    wanted: &HashMap<Digest, u64>,
) -> Result<(Vec<Want>, u64, ReleaseIndex)> {
    let what = format!("remote `{}`: the index of `{name}`", src.remote);
    let bytes = get_all(agent, &src.index, MAX_SMALL, &what)?;
    let index = ReleaseIndex::decode(&bytes, MAX_SMALL, &what)?;
    let all = format::contents(manifest);
    format::check_index(&index, all.len(), &what)?;
    if index.packs.len() != src.packs.len() {
        return Err(Error::usage(format!(
            "{what} names {} packs, but the client sent {} URLs",
            index.packs.len(),
            src.packs.len()
        )));
    }
    for (i, p) in index.packs.iter().enumerate() {
        if !strip_query(&src.packs[i]).ends_with(&format!("/packs/{p}.pack")) {
            return Err(Error::Restricted(format!(
                "pull URL `{}` is not pack {p} of the index",
                strip_query(&src.packs[i])
            )));
        }
    }
    let wants = all
        .iter()
        .zip(&index.objects)
        .filter(|((d, _), _)| wanted.contains_key(d))
        .map(|((d, size), loc)| Want {
            digest: *d,
            size: *size,
            loc: *loc,
        })
        .collect();
    Ok((wants, bytes.len() as u64, index))
}

/// The longest frame an object of `size` bytes may take in a pack: what
/// zstd needs for incompressible data, and a margin.
fn max_frame(size: u64) -> u64 {
    size.saturating_add(size / 128).saturating_add(1024)
}

/// What to download, from the client's locations: each must name a pack
/// of the pull and a frame no longer than its object could take. A wrong
/// offset only fails the object's check on arrival (exit 5).
fn from_locations(
    src: &PullSource,
    manifest: &Manifest,
    wanted: &HashMap<Digest, u64>,
    located: &[(u32, Location)],
) -> Result<Vec<Want>> {
    let mut wants = Vec::with_capacity(located.len());
    let mut seen = std::collections::HashSet::new();
    for &(i, l) in located {
        let Some(digest) = manifest.entries.get(i as usize).and_then(|e| e.sha256) else {
            return Err(Error::integrity(format!(
                "the client located entry {i}, which is not a file"
            )));
        };
        let Some(&size) = wanted.get(&digest) else { continue };
        if l.pack as usize >= src.packs.len() || l.len > max_frame(size) || l.offset.checked_add(l.len).is_none() {
            return Err(Error::integrity(format!(
                "the client located content {digest} ({size} bytes) at pack number {} of {}, {} bytes at {}: not where it can be",
                l.pack,
                src.packs.len(),
                l.len,
                l.offset
            )));
        }
        if seen.insert(digest) {
            wants.push(Want {
                digest,
                size,
                loc: Loc(l.pack, l.offset, l.len),
            });
        }
    }
    Ok(wants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(packs: usize) -> PullSource {
        PullSource {
            remote: "r".into(),
            manifest: "http://s/b/releases/x/manifest.zst".into(),
            index: "http://s/b/releases/x/index.zst".into(),
            packs: (0..packs).map(|i| format!("http://s/b/packs/{i}.pack")).collect(),
            assist: true,
        }
    }

    #[test]
    fn a_clients_locations_are_taken_only_where_they_can_be() {
        let m = crate::manifest::sized_for_tests(&[1000, 10, 0]);
        let digest = |i: usize| m.entries[i].sha256.unwrap();
        let wanted: HashMap<Digest, u64> = [(digest(0), 1000), (digest(1), 10)].into();
        let at = |pack, offset, len| Location { pack, offset, len };
        let ok = from_locations(
            &source(2),
            &m,
            &wanted,
            &[(0, at(1, 50, 1000 + 7 + 1024)), (1, at(0, 0, 12))],
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(
            (ok[0].digest, ok[0].size, ok[0].loc),
            (digest(0), 1000, Loc(1, 50, 2031))
        );
        // Not wanted (the host has it): left out.
        assert!(
            from_locations(&source(2), &m, &wanted, &[(2, at(0, 0, 1))])
                .unwrap()
                .is_empty()
        );
        // A pack the pull does not name, a frame longer than the object
        // can take, a range past the end of any file, an entry that is no file.
        for bad in [
            vec![(1, at(2, 0, 12))],
            vec![(0, at(0, 0, 2032))],
            vec![(1, at(0, u64::MAX, 1))],
            vec![(7, at(0, 0, 1))],
        ] {
            assert!(from_locations(&source(2), &m, &wanted, &bad).is_err(), "{bad:?}");
        }
    }
}
