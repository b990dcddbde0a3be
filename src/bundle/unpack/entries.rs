//! Reading some entries of a bundle file ([`read_entries`]): with the
//! bundle's index ([`crate::bundle::index`]), only the body frames that
//! hold them are decoded; without a valid index the bundle is read whole
//! ([`read_bundle`]).
//!
//! Invariant: the index only says where to start decoding, never what the
//! bytes are. Every entry handed out is checked as `read_bundle` checks it,
//! the manifest frame is hashed against the expected id, and an index that
//! points at the wrong member is an integrity error, never other bytes.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::members::{
    Members, ZSTD_WINDOW_LOG_MAX, check_member, corrupt, damaged, manifest_member, read_file, skip_file,
};
use super::whole::{Visitor, read_bundle};
use crate::bundle::format::MANIFEST_PATH;
use crate::bundle::index;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::fs;
use crate::manifest::{Entry, Kind, Manifest};

/// Bytes `pos..end` of a file, read by offset (`pread`): several readers of
/// one file never disturb each other.
struct Span<'f> {
    file: &'f File,
    pos: u64,
    end: u64,
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.end.saturating_sub(self.pos)) as usize;
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

type SpanDecoder<'f> = zstd::stream::read::Decoder<'static, io::BufReader<Span<'f>>>;

/// A zstd decoder of the frames in bytes `pos..end` of `file`.
fn decoder_at<'f>(file: &'f File, pos: u64, end: u64, origin: &str) -> Result<SpanDecoder<'f>> {
    let mut decoder = zstd::stream::read::Decoder::new(Span { file, pos, end }).map_err(|e| corrupt(origin, e))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| corrupt(origin, e))?;
    Ok(decoder)
}

/// Call `f` with each `wanted` manifest index (strictly ascending), its entry
/// and its content (empty for directories and symlinks), read from the
/// bundle at `path`, which must hold `manifest` (id `id`).
///
/// With the bundle's index ([`crate::bundle::index`]) only the frames holding the
/// wanted entries are decoded: for each wanted entry a decoder starts at the
/// frame where its header starts, unless the current decoder is at or before
/// that frame's first entry already (then it reads on, skipping the members
/// in between unhashed). A bundle without a valid index (built before it
/// existed, or damaged there) is read whole, from the start.
///
/// Everything `f` sees is checked like [`read_bundle`] checks it: the member
/// must be exactly the expected manifest entry, and the content's size and
/// sha256 are verified after `f` returns, so a consumer must not commit what
/// it read until the next call or until `read_entries` returns `Ok`. The
/// index is only a hint: one that points at the wrong member gives an
/// integrity error, never other bytes. The bundle's own manifest is hashed
/// and must be `id`.
///
/// # Errors
/// Integrity error (exit 5) naming the bundle, and the entry when there is
/// one, for any mismatch or damage (callers add what to run next, e.g.
/// `slipway verify NAME`); `f`'s own errors; an error when `wanted` is not
/// strictly ascending or names an entry the manifest does not have.
pub fn read_entries(
    path: &Path,
    manifest: &Manifest,
    id: Digest,
    wanted: &[u32],
    f: &mut dyn FnMut(u32, &Entry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let origin = path.display().to_string();
    let origin = origin.as_str();
    if let Some(w) = wanted.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::other(format!(
            "entries of bundle `{origin}` asked for out of order ({} after {})",
            w[1], w[0]
        )));
    }
    if let Some(&last) = wanted.last()
        && last as usize >= manifest.entries.len()
    {
        return Err(Error::other(format!(
            "bundle `{origin}` has {} entries; there is no entry {last}",
            manifest.entries.len()
        )));
    }
    let file = fs::open(path)?;
    if wanted.is_empty() {
        return Ok(());
    }
    let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    let Some(index) = index::read(&file, len, manifest) else {
        return read_whole(&file, origin, id, wanted, f);
    };
    check_manifest_frame(&file, index.body_offset, id, origin)?;
    let body_end = index.frame_offset(index.frames.len());
    let mut w = 0;
    while w < wanted.len() {
        let Some((frame, first, offset)) = index.frame_of(wanted[w]) else {
            return Err(Error::integrity(format!(
                "bundle `{origin}` has an index without entry 0"
            )));
        };
        let mut decoder = decoder_at(&file, index.frame_offset(frame), body_end, origin)?;
        let skipped =
            io::copy(&mut (&mut decoder).take(u64::from(offset)), &mut io::sink()).map_err(|e| corrupt(origin, e))?;
        if skipped != u64::from(offset) {
            return Err(damaged(
                origin,
                format!("body frame {frame} ends before the header its index points at"),
            ));
        }
        let mut archive = tar::Archive::new(decoder);
        let entries = archive.entries().map_err(|e| corrupt(origin, e))?.raw(true);
        let mut members = Members { entries, origin };
        // The manifest index of the next member `members` yields.
        let mut next = first;
        loop {
            let j = wanted[w];
            while next <= j {
                let expected = &manifest.entries[next as usize];
                let Some(mut member) = members.next()? else {
                    return Err(damaged(origin, format!("archive ends before `{}`", expected.path)));
                };
                if next == first && member.path.trim_end_matches('/') != expected.path {
                    return Err(Error::integrity(format!(
                        "bundle `{origin}`: its index points at `{}` where `{}` starts",
                        member.path.escape_debug(),
                        expected.path
                    )));
                }
                check_member(&member, expected, origin)?;
                if next == j && expected.kind == Kind::File {
                    read_file(&mut member, expected, origin, |content| f(j, expected, content))?;
                } else if next == j {
                    f(j, expected, &mut io::empty())?;
                } else if expected.kind == Kind::File {
                    skip_file(&mut member, expected, origin)?;
                }
                next += 1;
            }
            w += 1;
            // Read on unless the next wanted entry starts in a frame whose
            // first entry is beyond the position: then decode from there.
            match wanted.get(w).and_then(|&j| index.frame_of(j)) {
                Some((_, first, _)) if first <= next => {}
                _ => break,
            }
        }
    }
    Ok(())
}

/// Check that the manifest frame of an indexed bundle (the bytes before
/// `body_offset`) holds the manifest of `id`, by hashing it.
fn check_manifest_frame(file: &File, body_offset: u64, id: Digest, origin: &str) -> Result<()> {
    let mut archive = tar::Archive::new(decoder_at(file, 0, body_offset, origin)?);
    let entries = archive.entries().map_err(|e| corrupt(origin, e))?.raw(true);
    let mut members = Members { entries, origin };
    let mut first = manifest_member(&mut members, origin)?;
    let size = first.size;
    let mut content = HashingReader::new((&mut first.entry).take(size));
    io::copy(&mut content, &mut io::sink()).map_err(|e| corrupt(origin, e))?;
    let (_, digest, count) = content.into_parts();
    if count != size {
        return Err(damaged(origin, format!("`{MANIFEST_PATH}` is truncated")));
    }
    if digest != id {
        return Err(not_holding(origin, id, digest));
    }
    Ok(())
}

fn not_holding(origin: &str, id: Digest, got: Digest) -> Error {
    Error::integrity(format!("bundle `{origin}` holds {got}, not {id}"))
}

/// [`read_entries`] without an index: the whole bundle, verified by
/// [`read_bundle`], handing the wanted entries to `f`.
fn read_whole(
    file: &File,
    origin: &str,
    id: Digest,
    wanted: &[u32],
    f: &mut dyn FnMut(u32, &Entry, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    struct Pick<'a> {
        id: Digest,
        origin: &'a str,
        wanted: &'a [u32],
        /// Position in `wanted`, and the manifest index of the next entry.
        next: usize,
        index: u32,
        f: &'a mut dyn FnMut(u32, &Entry, &mut dyn Read) -> Result<()>,
    }
    impl Visitor for Pick<'_> {
        fn manifest(&mut self, _manifest: &Manifest, id: Digest) -> Result<()> {
            if id != self.id {
                return Err(not_holding(self.origin, self.id, id));
            }
            Ok(())
        }
        fn wants_content(&mut self, _entry: &Entry) -> bool {
            self.wanted.get(self.next) == Some(&self.index)
        }
        fn entry(&mut self, entry: &Entry, content: Option<&mut dyn Read>) -> Result<()> {
            let i = self.index;
            self.index += 1;
            if self.wanted.get(self.next) != Some(&i) {
                return Ok(());
            }
            self.next += 1;
            match content {
                Some(content) => (self.f)(i, entry, content),
                None => (self.f)(i, entry, &mut io::empty()),
            }
        }
    }
    let mut pick = Pick {
        id,
        origin,
        wanted,
        next: 0,
        index: 0,
        f,
    };
    read_bundle(file, origin, &mut pick)?;
    if pick.next != wanted.len() {
        return Err(Error::integrity(format!(
            "bundle `{origin}` has no entry {}",
            wanted[pick.next]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::bundle::index::{Frame, Index};
    use crate::bundle::pack::BundleWriter;
    use crate::bundle::unpack::VerifyOnly;
    use crate::error::Exit;

    /// Small body frames, so a small bundle has many frame boundaries.
    const CHUNK: u32 = 8192;

    struct Fixture {
        dir: tempfile::TempDir,
        path: PathBuf,
        manifest: Manifest,
        id: Digest,
        /// Per entry: the content (empty for directories and symlinks).
        contents: Vec<Vec<u8>>,
    }

    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// A bundle of small files of many sizes, a file spanning several body
    /// frames, paths and a link target long enough for GNU long-name
    /// entries, symlinks and empty files, in body frames of [`CHUNK`] bytes.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("b/{}", "long-name-".repeat(13));
        let mut w = BundleWriter::with_chunk_size(dir.path(), 315_532_800, 2, CHUNK).unwrap();
        let mut contents = Vec::new();
        let mut add = |w: &mut BundleWriter, path: &str, content: Vec<u8>| {
            w.add_file(
                path,
                false,
                content.len() as u64,
                &mut content.as_slice(),
                Path::new(path),
            )
            .unwrap();
            contents.push(content);
        };
        w.add_dir("a").unwrap();
        add(&mut w, "a/empty", Vec::new());
        let sizes = [
            1usize, 511, 512, 513, 3000, 700, 9000, 100, 0, 4095, 4096, 2500, 12_000, 5,
        ];
        for i in 0..60 {
            let size = sizes[i % sizes.len()];
            // Every third file compresses well, the others not at all.
            let content = if i % 3 == 0 {
                format!("file {i} ").repeat(size / 7 + 1).into_bytes()[..size].to_vec()
            } else {
                noise(i as u64, size)
            };
            add(&mut w, &format!("a/f{i:03}"), content);
        }
        w.add_dir("b").unwrap();
        add(&mut w, &long, noise(1000, 3333));
        w.add_dir("c").unwrap();
        add(&mut w, "c/big", noise(1001, 5 * CHUNK as usize + 123));
        add(&mut w, "c/small", b"after the big one".to_vec());
        w.add_symlink("d", &long, false).unwrap();
        add(&mut w, "e", noise(1002, 700));
        // Paths over 100 bytes: each header follows a GNU long-name entry,
        // which is where the index says the entry starts.
        w.add_dir("l").unwrap();
        for i in 0..40 {
            add(
                &mut w,
                &format!("l/{i:03}-{}", "x".repeat(110)),
                noise(2000 + i, 900 + 37 * i as usize),
            );
        }
        let packed = w.finish().unwrap();
        let path = dir.path().join("bundle.tar.zst");
        packed.file.persist(&path).unwrap();
        let manifest = packed.manifest;
        let mut contents = contents.into_iter();
        let contents = manifest
            .entries
            .iter()
            .map(|e| {
                if e.kind == Kind::File {
                    contents.next().unwrap()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let id = manifest.id();
        Fixture {
            dir,
            path,
            manifest,
            id,
            contents,
        }
    }

    impl Fixture {
        fn index(&self) -> Index {
            let file = File::open(&self.path).unwrap();
            let len = file.metadata().unwrap().len();
            index::read(&file, len, &self.manifest).expect("an index")
        }

        fn index_of(&self, path: &str) -> u32 {
            self.manifest.entries.iter().position(|e| e.path == path).unwrap() as u32
        }

        /// Read `wanted` from `path` (a variant of the fixture's bundle).
        fn read_from(&self, path: &Path, wanted: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
            let mut got = Vec::new();
            read_entries(path, &self.manifest, self.id, wanted, &mut |i, entry, content| {
                assert_eq!(entry, &self.manifest.entries[i as usize]);
                let mut bytes = Vec::new();
                content
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::other(e.to_string()))?;
                got.push((i, bytes));
                Ok(())
            })?;
            Ok(got)
        }

        /// Read `wanted` from `path` and check that exactly those entries came, with their contents.
        fn check(&self, path: &Path, wanted: &[u32]) {
            let got = self.read_from(path, wanted).unwrap();
            let indices: Vec<u32> = got.iter().map(|(i, _)| *i).collect();
            assert_eq!(indices, wanted);
            for (i, bytes) in got {
                assert!(bytes == self.contents[i as usize], "content of entry {i}");
            }
        }

        /// Write a variant of the bundle: the prefix, the body frames (each
        /// given by its uncompressed bytes, after `edit`) and `index` (the
        /// frame sizes filled in), as `name`.
        fn rewrite(&self, name: &str, edit: impl Fn(usize, &mut Vec<u8>), index: impl Fn(&mut Vec<Frame>)) -> PathBuf {
            let bytes = std::fs::read(&self.path).unwrap();
            let old = self.index();
            let mut out = bytes[..old.body_offset as usize].to_vec();
            let mut frames = old.frames.clone();
            for (k, frame) in frames.iter_mut().enumerate() {
                let at = old.frame_offset(k) as usize;
                let mut chunk = zstd::decode_all(&bytes[at..at + frame.size as usize]).unwrap();
                edit(k, &mut chunk);
                let mut c = zstd::bulk::Compressor::new(3).unwrap();
                c.include_checksum(true).unwrap();
                let compressed = c.compress(&chunk).unwrap();
                frame.size = compressed.len() as u32;
                out.extend(compressed);
            }
            index(&mut frames);
            out.extend(Index::new(old.body_offset, old.chunk_size, old.entries, frames).encode());
            let path = self.dir.path().join(name);
            std::fs::write(&path, out).unwrap();
            path
        }

        fn variant(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    fn integrity(e: Error) -> String {
        assert_eq!(e.exit(), Exit::Integrity, "{e}");
        e.to_string()
    }

    /// Wanted sets that start, end and cross frames in every way the fixture allows.
    fn wanted_sets(fx: &Fixture) -> Vec<Vec<u32>> {
        let n = fx.manifest.entries.len() as u32;
        let mut boundaries = Vec::new();
        for f in fx.index().frames {
            if let Some((j, _)) = f.first {
                boundaries.extend([j.saturating_sub(1), j]);
            }
        }
        boundaries.dedup();
        let big = fx.index_of("c/big");
        let long = fx.index_of("l") + 1;
        vec![
            vec![],
            (0..n).collect(),
            vec![0],
            vec![n - 1],
            (0..n).step_by(7).collect(),
            (3..n).step_by(11).collect(),
            boundaries,
            vec![big],
            vec![big, big + 1],
            vec![big - 1, big + 1],
            vec![fx.index_of("b"), fx.index_of("d")],
            vec![1, 2, 3, n - 2],
            vec![long, long + 5, long + 17, long + 18, n - 1],
            vec![fx.index_of("b") + 1],
        ]
    }

    #[test]
    fn random_access_returns_exactly_the_wanted_entries() {
        let fx = fixture();
        let index = fx.index();
        assert!(index.frames.len() > 20, "{} frames", index.frames.len());
        assert!(
            index.frames.iter().filter(|f| f.first.is_none()).count() >= 3,
            "c/big covers whole frames"
        );
        let long_starts = index
            .frames
            .iter()
            .filter_map(|f| f.first)
            .filter(|&(j, _)| fx.manifest.entries[j as usize].path.len() > 100)
            .count();
        assert!(
            long_starts >= 3,
            "frames starting with a long-named entry: {long_starts}"
        );
        for wanted in wanted_sets(&fx) {
            fx.check(&fx.path, &wanted);
        }
    }

    #[test]
    fn with_an_index_only_the_frames_holding_wanted_entries_are_decoded() {
        let fx = fixture();
        let index = fx.index();
        // Damage one frame in the middle of the body; entries elsewhere still read.
        let k = index.frames.len() / 2;
        let mut bytes = std::fs::read(&fx.path).unwrap();
        let at = index.frame_offset(k) as usize + index.frames[k].size as usize / 2;
        bytes[at] ^= 0xff;
        let damaged = fx.variant("damaged", &bytes);
        let n = fx.manifest.entries.len() as u32;
        let before = index.frames[..k].iter().rev().find_map(|f| f.first).unwrap().0;
        let after = index.frames[k + 1..].iter().find_map(|f| f.first).unwrap().0;
        fx.check(&damaged, &[0, before.saturating_sub(1), after, n - 1]);
        // The whole bundle does not read, and neither does an entry in that frame.
        let e = read_bundle(bytes.as_slice(), "damaged", &mut VerifyOnly).err().unwrap();
        integrity(e);
        let inside: Vec<u32> = (before..after).collect();
        let e = fx.read_from(&damaged, &inside).err().unwrap();
        integrity(e);
    }

    #[test]
    fn a_bundle_without_an_index_is_read_whole() {
        let fx = fixture();
        let bytes = std::fs::read(&fx.path).unwrap();
        let index = fx.index();
        let body_end = index.frame_offset(index.frames.len()) as usize;
        // As written before the index existed: the manifest frame, the
        // padding, then the body as one zstd frame.
        let mut old = bytes[..index.body_offset as usize].to_vec();
        let tar = zstd::decode_all(&bytes[index.body_offset as usize..body_end]).unwrap();
        old.extend(zstd::encode_all(tar.as_slice(), 3).unwrap());
        let padded = fx.variant("old-padded", &old);
        // Older still: everything in one frame.
        let whole = zstd::decode_all(bytes.as_slice()).unwrap();
        let single = fx.variant("old-single", &zstd::encode_all(whole.as_slice(), 3).unwrap());
        // The index cut off.
        let stripped = fx.variant("stripped", &bytes[..body_end]);
        for path in [&padded, &single, &stripped] {
            for wanted in wanted_sets(&fx) {
                fx.check(path, &wanted);
            }
        }
    }

    #[test]
    fn a_malformed_index_falls_back_to_reading_everything() {
        let fx = fixture();
        let bytes = std::fs::read(&fx.path).unwrap();
        let n = bytes.len();
        let index = fx.index();
        let table = index.frame_offset(index.frames.len()) as usize + 24;
        let mut variants = Vec::new();
        // The footer's magic, version and frame count; a frame's size; the body offset.
        for at in [n - 1, n - 8, n - 12, table, table - 16] {
            let mut b = bytes.clone();
            b[at] ^= 0x40;
            variants.push(fx.variant(&format!("flip-{at}"), &b));
        }
        // First entries that do not increase.
        variants.push(fx.rewrite(
            "not-increasing",
            |_, _| {},
            |frames| {
                let k = frames.iter().rposition(|f| f.first.is_some()).unwrap();
                frames[k].first = Some((0, 0));
            },
        ));
        for path in &variants {
            let wanted: Vec<u32> = (0..fx.manifest.entries.len() as u32).step_by(5).collect();
            fx.check(path, &wanted);
        }
    }

    #[test]
    fn an_index_pointing_at_the_wrong_member_is_an_integrity_error() {
        let fx = fixture();
        let index = fx.index();
        // A frame whose first entry j is followed by j + 1 in the same frame:
        // claim the frame starts with j + 1.
        let (k, j) = index
            .frames
            .iter()
            .enumerate()
            .zip(index.frames.iter().skip(1))
            .find_map(|((k, f), next)| {
                let (j, _) = f.first?;
                (k > 0 && next.first.is_some_and(|(n, _)| n > j + 1)).then_some((k, j))
            })
            .unwrap();
        let moved = fx.rewrite(
            "moved",
            |_, _| {},
            |frames| frames[k].first = frames[k].first.map(|(_, offset)| (j + 1, offset)),
        );
        let e = fx.read_from(&moved, &[j + 1]).err().unwrap();
        let text = integrity(e);
        let (want, found) = (
            &fx.manifest.entries[j as usize + 1].path,
            &fx.manifest.entries[j as usize].path,
        );
        assert!(
            text.contains(&format!("its index points at `{found}` where `{want}` starts")),
            "{text}"
        );
        // An offset into the middle of a member.
        let shifted = fx.rewrite(
            "shifted",
            |_, _| {},
            |frames| frames[k].first = frames[k].first.map(|(j, offset)| (j, offset + 512)),
        );
        let e = fx.read_from(&shifted, &[j]).err().unwrap();
        integrity(e);
    }

    #[test]
    fn content_that_differs_from_the_manifest_is_an_integrity_error_naming_the_entry() {
        let fx = fixture();
        let big = fx.index_of("c/big");
        let index = fx.index();
        let (k, _, _) = index.frame_of(big).unwrap();
        // Change one byte of c/big's content, in the frame after its header.
        let edited = fx.rewrite(
            "edited",
            |f, chunk| {
                if f == k + 2 {
                    chunk[100] ^= 1
                }
            },
            |_| {},
        );
        let e = fx.read_from(&edited, &[big]).err().unwrap();
        let text = integrity(e);
        assert!(
            text.contains("content of `c/big` does not match its sha256") && text.contains("edited"),
            "{text}"
        );
        // Entries elsewhere still read.
        fx.check(&edited, &[0, big + 1]);
    }

    #[test]
    fn another_bundle_or_a_truncated_one_is_an_integrity_error() {
        let fx = fixture();
        let other = fixture();
        // The same entries, another source_date_epoch: another id.
        let mut m = fx.manifest.clone();
        m.source_date_epoch += 1;
        let e = read_entries(&other.path, &m, m.id(), &[0], &mut |_, _, _| Ok(()))
            .err()
            .unwrap();
        let text = integrity(e);
        assert!(text.contains(&format!("holds {}, not {}", fx.id, m.id())), "{text}");

        let bytes = std::fs::read(&fx.path).unwrap();
        let index = fx.index();
        let n = bytes.len();
        let body_end = index.frame_offset(index.frames.len()) as usize;
        let all: Vec<u32> = (0..fx.manifest.entries.len() as u32).collect();
        for cut in [
            n - 1,
            n - 12,
            body_end + 8,
            body_end - 1,
            n / 2,
            index.body_offset as usize + 10,
        ] {
            let path = fx.variant(&format!("cut-{cut}"), &bytes[..cut]);
            let e = fx.read_from(&path, &all).err().unwrap();
            let text = integrity(e);
            assert!(text.contains("is corrupt or truncated"), "cut at {cut}: {text}");
        }
    }

    #[test]
    fn wanted_entries_must_be_ascending_and_in_the_manifest() {
        let fx = fixture();
        let n = fx.manifest.entries.len() as u32;
        for wanted in [vec![3, 2], vec![1, 1], vec![n]] {
            let e = fx.read_from(&fx.path, &wanted).err().unwrap();
            assert_eq!(e.exit(), Exit::Error, "{e}");
        }
    }
}
