//! Downloading contents from packs: which byte ranges to GET (neighbouring
//! objects of a pack in one request), a few requests at once, and every
//! object decompressed and checked against its sha256 before anyone sees
//! it. Used by `fetch` (into the local store); the transport is the
//! caller's (a signed request, or a URL presigned for a host).

use super::format::Loc;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};

/// One content to get.
#[derive(Debug, Clone)]
pub struct Want {
    pub digest: Digest,
    pub size: u64,
    pub loc: Loc,
}

/// One GET: `len` bytes at `start` of pack number `pack`, holding `items`.
#[derive(Debug)]
pub struct Range {
    pub pack: u32,
    pub start: u64,
    pub len: u64,
    pub items: Vec<Want>,
}

/// Objects closer than this in a pack are fetched in one request (the
/// bytes between them are downloaded and dropped).
pub const GAP: u64 = 64 * 1024;
/// A request grows to at most this many bytes (one larger object alone may exceed it).
pub const MAX_RANGE: u64 = 16 << 20;

/// Group `wants` into ranges, by pack and offset.
pub fn ranges(mut wants: Vec<Want>) -> Vec<Range> {
    wants.sort_by_key(|w| (w.loc.0, w.loc.1));
    let mut out: Vec<Range> = Vec::new();
    for w in wants {
        let (pack, off, len) = (w.loc.0, w.loc.1, w.loc.2);
        if let Some(r) = out.last_mut()
            && r.pack == pack
            && off >= r.start + r.len
            && off - (r.start + r.len) <= GAP
            && off + len - r.start <= MAX_RANGE
        {
            r.len = off + len - r.start;
            r.items.push(w);
            continue;
        }
        out.push(Range {
            pack,
            start: off,
            len,
            items: vec![w],
        });
    }
    out
}

/// Get every range (`parallel` at a time) with `get(pack, start, len)`,
/// check each object, and hand it to `deliver` (from several threads).
/// `name` says what an object is in errors (`remote r: sha256:… of v2`).
///
/// # Errors
/// The first failed request, an object whose bytes do not decompress or
/// do not match its sha256 (integrity, exit 5), or `deliver`'s error.
pub fn download(
    ranges: Vec<Range>,
    parallel: usize,
    get: &(dyn Fn(u32, u64, u64) -> Result<Vec<u8>> + Sync),
    deliver: &(dyn Fn(&Want, Vec<u8>) -> Result<()> + Sync),
    name: &(dyn Fn(&Want) -> String + Sync),
) -> Result<()> {
    let results = crate::parallel::try_map(ranges, parallel.max(1), |r| -> Result<()> {
        let bytes = get(r.pack, r.start, r.len)?;
        for w in &r.items {
            let at = usize::try_from(w.loc.1 - r.start).unwrap_or(usize::MAX);
            let end = at.saturating_add(usize::try_from(w.loc.2).unwrap_or(usize::MAX));
            let frame = bytes
                .get(at..end)
                .ok_or_else(|| Error::integrity(format!("{}: the pack is shorter than its index says", name(w))))?;
            let content = unpack(frame, w).map_err(|why| Error::integrity(format!("{}: {why}", name(w))))?;
            deliver(w, content)?;
        }
        Ok(())
    });
    results.into_iter().flatten().collect::<Result<Vec<()>>>().map(|_| ())
}

/// Decompress one object's frame and check its size and sha256.
fn unpack(frame: &[u8], w: &Want) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(usize::try_from(w.size.min(64 << 20)).unwrap_or(0));
    let mut dec = zstd::stream::read::Decoder::with_buffer(frame).map_err(|e| {
        format!("its bytes in the bucket are damaged ({e}): the bucket's copy does not match its sha256")
    })?;
    (&mut dec).take(w.size + 1).read_to_end(&mut out).map_err(|e| {
        format!(
            "its bytes in the bucket are damaged ({}): the bucket's copy does not match its sha256",
            crate::error::describe_io(&e)
        )
    })?;
    let mut h = Hasher::new();
    h.update(&out);
    if out.len() as u64 != w.size || h.finish() != w.digest {
        return Err("the bucket's copy does not match its sha256 (damaged or tampered with)".to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(pack: u32, off: u64, len: u64) -> Want {
        Want {
            digest: Digest::of(&off.to_le_bytes()),
            size: 1,
            loc: Loc(pack, off, len),
        }
    }

    #[test]
    fn neighbours_share_a_request_and_far_ones_do_not() {
        let r = ranges(vec![
            want(0, 100, 10),
            want(0, 0, 100),
            want(1, 0, 5),
            want(0, 110 + GAP + 1, 10),
        ]);
        let got: Vec<(u32, u64, u64, usize)> = r.iter().map(|r| (r.pack, r.start, r.len, r.items.len())).collect();
        assert_eq!(got, vec![(0, 0, 110, 2), (0, 110 + GAP + 1, 10, 1), (1, 0, 5, 1)]);
    }

    #[test]
    fn a_request_stops_growing_at_the_limit() {
        let r = ranges(vec![want(0, 0, MAX_RANGE - 10), want(0, MAX_RANGE - 10, 20)]);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn damaged_or_substituted_bytes_are_refused() {
        let content = b"hello".to_vec();
        let frame = zstd::bulk::compress(&content, 3).unwrap();
        let mut w = Want {
            digest: Digest::of(&content),
            size: 5,
            loc: Loc(0, 0, frame.len() as u64),
        };
        assert_eq!(unpack(&frame, &w).unwrap(), content);
        let other = zstd::bulk::compress(b"hellO", 3).unwrap();
        assert!(unpack(&other, &w).unwrap_err().contains("does not match"));
        let mut bad = frame.clone();
        let n = bad.len();
        bad[n - 2] ^= 0xff;
        assert!(unpack(&bad, &w).is_err());
        w.size = 4;
        assert!(unpack(&frame, &w).is_err());
    }
}
