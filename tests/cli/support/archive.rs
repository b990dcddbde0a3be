//! Hostile archives made by hand, and the world they are imported into.
//!
//! Tar headers are written raw ([`Member`]: nothing is checked, so `..`,
//! absolute paths and lying sizes are possible) and zstd frames of zeros as
//! hand-made RLE blocks ([`rle_zeros`]: a 4 GiB bomb costs a few hundred KiB
//! and no time to make). [`honest`] is the bundle every case starts from;
//! [`World`] imports a case and checks that it was refused, stored nothing
//! and wrote nothing outside the store; [`measured`] runs a command while
//! watching its peak resident memory (`VmHWM` in `/proc/<pid>/status`).
//!
//! Invariant: [`archive`] of [`honest`] is a bundle slipway accepts (a test
//! checks it), so every refusal is caused by the one thing its case changes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use slipway::digest::Digest;
use slipway::manifest::{Entry, Manifest};
use tar::{EntryType, Header};

use super::{Cmd, Env, Outcome};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
/// Bound on the peak RSS of `slipway import` for every bomb.
pub const RSS_LIMIT: u64 = 100 * MIB;

// ---------------------------------------------------------------------------
// zstd frames written by hand

/// A zstd frame header: magic, no content size, no checksum, window 2^`window_log`.
fn frame_header(window_log: u8) -> Vec<u8> {
    let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00];
    f.push((window_log - 10) << 3);
    f
}

fn block_header(last: bool, kind: u32, size: usize) -> [u8; 3] {
    let h = u32::from(last) | (kind << 1) | ((size as u32) << 3);
    let b = h.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// `n` zeros as one frame of RLE blocks (4 bytes per 128 KiB).
pub fn rle_zeros(n: u64, window_log: u8) -> Vec<u8> {
    rle(0, n, window_log)
}

/// `n` times `byte` as one frame of RLE blocks.
pub fn rle(byte: u8, n: u64, window_log: u8) -> Vec<u8> {
    let mut f = frame_header(window_log);
    let max = 128 * 1024u64;
    let mut left = n;
    if left == 0 {
        f.extend(block_header(true, 0, 0));
    }
    while left > 0 {
        let b = left.min(max);
        left -= b;
        f.extend(block_header(left == 0, 1, b as usize));
        f.push(byte);
    }
    f
}

/// `bytes` stored verbatim as one frame of raw blocks (no compression work).
pub fn raw_frame(bytes: &[u8]) -> Vec<u8> {
    let mut f = frame_header(17);
    if bytes.is_empty() {
        f.extend(block_header(true, 0, 0));
    }
    let mut chunks = bytes.chunks(128 * 1024).peekable();
    while let Some(c) = chunks.next() {
        f.extend(block_header(chunks.peek().is_none(), 0, c.len()));
        f.extend_from_slice(c);
    }
    f
}

// ---------------------------------------------------------------------------
// tar members written raw

#[derive(Clone)]
pub enum Body {
    Bytes(Vec<u8>),
    /// That many zeros, as an RLE frame.
    Zeros(u64),
    /// That many spaces (JSON whitespace), as an RLE frame.
    Spaces(u64),
}

/// One tar member exactly as it will be written: the header's fields are
/// taken as given (nothing is checked), then the body padded to 512.
#[derive(Clone)]
pub struct Member {
    pub path: Vec<u8>,
    pub ty: EntryType,
    pub link: Vec<u8>,
    pub size: u64,
    pub body: Body,
    pub mode: u32,
    pub device: Option<(u32, u32)>,
}

impl Member {
    pub fn raw(path: &[u8], ty: EntryType) -> Member {
        Member {
            path: path.to_vec(),
            ty,
            link: Vec::new(),
            size: 0,
            body: Body::Bytes(Vec::new()),
            mode: if ty == EntryType::Directory { 0o755 } else { 0o644 },
            device: None,
        }
    }
    pub fn file(path: &str, content: &[u8]) -> Member {
        Member::raw(path.as_bytes(), EntryType::Regular).content(content)
    }
    pub fn dir(path: &str) -> Member {
        Member::raw(path.as_bytes(), EntryType::Directory)
    }
    pub fn symlink(path: &str, target: &str) -> Member {
        let mut m = Member::raw(path.as_bytes(), EntryType::Symlink);
        m.link = target.as_bytes().to_vec();
        m.mode = 0o777;
        m
    }
    /// Body and header size both set from `content`.
    pub fn content(mut self, content: &[u8]) -> Member {
        self.size = content.len() as u64;
        self.body = Body::Bytes(content.to_vec());
        self
    }
    /// The header's size field, whatever the body is (a lie when they differ).
    pub fn size(mut self, size: u64) -> Member {
        self.size = size;
        self
    }
    pub fn zeros(mut self, n: u64) -> Member {
        self.body = Body::Zeros(n);
        self
    }
    /// Body and header size both `n` spaces.
    pub fn spaces(mut self, n: u64) -> Member {
        self.size = n;
        self.body = Body::Spaces(n);
        self
    }

    /// A GNU long-name (`L`) or long-link (`K`) member holding `name`.
    pub fn gnu_long(ty: EntryType, name: &[u8]) -> Member {
        let mut data = name.to_vec();
        data.push(0);
        Member::raw(b"././@LongLink", ty).content(&data)
    }

    /// A pax extended header (`x`) with these records.
    pub fn pax(records: &[(&str, &str)]) -> Member {
        let mut data = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            data.extend(format!("{len}{rest}").into_bytes());
        }
        Member::raw(b"PaxHeaders/x", EntryType::XHeader).content(&data)
    }

    pub fn header(&self) -> [u8; 512] {
        let mut h = Header::new_gnu();
        h.set_entry_type(self.ty);
        h.set_mode(self.mode);
        h.set_size(self.size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if let Some((major, minor)) = self.device {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        let gnu = h.as_gnu_mut().unwrap();
        let n = self.path.len().min(100);
        gnu.name[..n].copy_from_slice(&self.path[..n]);
        let n = self.link.len().min(100);
        gnu.linkname[..n].copy_from_slice(&self.link[..n]);
        h.set_cksum();
        let mut out = [0u8; 512];
        out.copy_from_slice(h.as_bytes());
        out
    }
}

/// A `.tar.zst` under construction: tar bytes are compressed in frames, and
/// runs of zeros become hand-made RLE frames.
#[derive(Default)]
pub struct Zst {
    out: Vec<u8>,
    pending: Vec<u8>,
}

impl Zst {
    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.out.extend(zstd::encode_all(self.pending.as_slice(), 3).unwrap());
            self.pending.clear();
        }
    }
    pub fn tar(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }
    pub fn zeros(&mut self, n: u64, window_log: u8) {
        self.flush();
        self.out.extend(rle_zeros(n, window_log));
    }
    pub fn member(&mut self, m: &Member) {
        self.tar(&m.header());
        match &m.body {
            Body::Bytes(b) => {
                self.tar(b);
                self.tar(&vec![0u8; (512 - b.len() % 512) % 512]);
            }
            Body::Zeros(n) => self.zeros(n.div_ceil(512) * 512, 17),
            Body::Spaces(n) => {
                self.flush();
                self.out.extend(rle(b' ', *n, 17));
                self.tar(&vec![0u8; ((512 - n % 512) % 512) as usize]);
            }
        }
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.flush();
        self.out
    }
}

/// The archive of `members` followed by the tar end-of-archive blocks.
pub fn archive(members: &[Member]) -> Vec<u8> {
    let mut z = Zst::default();
    for m in members {
        z.member(m);
    }
    z.tar(&[0u8; 1024]);
    z.finish()
}

// ---------------------------------------------------------------------------
// the honest bundle every case starts from

pub const EPOCH: i64 = 1_700_000_000;

pub fn sha(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

pub fn file_entry(path: &str, content: &[u8]) -> Entry {
    Entry::file(path.into(), false, content.len() as u64, sha(content))
}

/// `b.txt`, `d/`, `d/a.txt`, `l -> d`: one of each kind.
pub fn entries() -> Vec<Entry> {
    vec![
        file_entry("b.txt", b"bravo"),
        Entry::dir("d".into()),
        file_entry("d/a.txt", b"alpha"),
        Entry::symlink("l".into(), "d".into()),
    ]
}

pub fn body() -> Vec<Member> {
    vec![
        Member::file("b.txt", b"bravo"),
        Member::dir("d"),
        Member::file("d/a.txt", b"alpha"),
        Member::symlink("l", "d"),
    ]
}

pub fn manifest(entries: Vec<Entry>) -> Vec<u8> {
    Manifest {
        version: 1,
        source_date_epoch: EPOCH,
        entries,
    }
    .canonical_bytes()
}

/// `.slipway/`, then the manifest, then `body`.
pub fn with_manifest(manifest: &[u8], body: Vec<Member>) -> Vec<Member> {
    let mut m = vec![
        Member::dir(".slipway"),
        Member::file(".slipway/manifest.json", manifest),
    ];
    m.extend(body);
    m
}

/// The honest bundle of [`entries`], as members.
pub fn honest() -> Vec<Member> {
    with_manifest(&manifest(entries()), body())
}

/// `honest()` with the member at `path` replaced by `with` (several allowed).
pub fn replace(path: &str, with: Vec<Member>) -> Vec<Member> {
    replace_in(honest(), path, with)
}

pub fn replace_in(members: Vec<Member>, path: &str, with: Vec<Member>) -> Vec<Member> {
    let mut out = Vec::new();
    for m in members {
        if m.path == path.as_bytes() {
            out.extend(with.iter().cloned());
        } else {
            out.push(m);
        }
    }
    out
}

/// The honest bundle whose `b.txt` is `n` zeros (manifest and all).
pub fn zeros_manifest(n: u64) -> Vec<u8> {
    let mut e = entries();
    let mut h = slipway::digest::Hasher::new();
    let chunk = vec![0u8; MIB as usize];
    let mut left = n;
    while left > 0 {
        let c = left.min(MIB);
        h.update(&chunk[..c as usize]);
        left -= c;
    }
    e[0] = Entry::file("b.txt".into(), false, n, h.finish());
    manifest(e)
}

// ---------------------------------------------------------------------------
// running import and checking that nothing was written

/// A test world: the store, a canary directory beside it, and a directory
/// (`outside/`) that hostile symlinks point at, which must stay empty.
pub struct World {
    pub env: Env,
}

/// Paths under `root` (skipping `skip`) with their kind and size.
fn listing(root: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p == skip {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                walk(&p, skip, out);
                "dir".into()
            } else {
                format!("{} bytes", m.len())
            };
            out.insert(p, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, skip, &mut out);
    out
}

impl World {
    pub fn new() -> World {
        let env = Env::new();
        env.write("canary/keep", "canary");
        std::fs::create_dir_all(env.path("outside")).unwrap();
        World { env }
    }

    /// Where hostile symlinks point: a directory outside the store.
    pub fn outside(&self) -> String {
        self.env.path("outside").display().to_string()
    }

    /// Write a crafted input (also into `$SLIPWAY_HOSTILE_KEEP/`, when set,
    /// to replay it by hand: `slipway import FILE --name x`, `tar --zstd -tvf FILE`).
    pub fn file(&self, case: &str, bytes: &[u8]) -> PathBuf {
        let p = self.env.path(&format!("in/{case}.tar.zst"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        if let Some(keep) = std::env::var_os("SLIPWAY_HOSTILE_KEEP") {
            let keep = Path::new(&keep);
            std::fs::create_dir_all(keep).unwrap();
            std::fs::write(keep.join(format!("{case}.tar.zst")), bytes).unwrap();
        }
        p
    }

    pub fn import(&self, file: &Path) -> Cmd {
        self.env.slipway().arg("import").arg(file).args(["--name", "x"])
    }

    pub fn assert_nothing_stored(&self, case: &str) {
        let store = &self.env.store;
        for sub in ["names", "bundles", "tmp"] {
            let left: Vec<_> = std::fs::read_dir(store.join(sub))
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{case}: {sub}/ holds {left:?}");
        }
    }

    /// Import `bytes`; it must be refused with `code` and a one-line error
    /// containing `msg`, store nothing and write nothing elsewhere.
    pub fn refused(&self, case: &str, bytes: &[u8], code: i32, msg: &str) -> Outcome {
        let file = self.file(case, bytes);
        let before = listing(self.env.dir.path(), &self.env.store);
        let out = self.import(&file).run();
        assert_eq!(out.out.status.code(), Some(code), "{case}: expected exit {code}: {out}");
        out.one_line_error().stderr_has(msg);
        self.assert_nothing_stored(case);
        assert_eq!(
            listing(self.env.dir.path(), &self.env.store),
            before,
            "{case}: something was written outside the store"
        );
        assert_eq!(std::fs::read_to_string(self.env.path("canary/keep")).unwrap(), "canary");
        std::fs::remove_file(&file).unwrap();
        out
    }

    /// Like [`World::refused`], and also within `secs` and [`RSS_LIMIT`].
    pub fn refused_fast(&self, case: &str, bytes: &[u8], code: i32, msg: &str, secs: u64) -> Peak {
        let file = self.file(case, bytes);
        let before = listing(self.env.dir.path(), &self.env.store);
        let (out, peak) = measured(self.import(&file), GIB);
        assert_eq!(out.out.status.code(), Some(code), "{case}: expected exit {code}: {out}");
        out.one_line_error().stderr_has(msg);
        peak.assert_within(case, RSS_LIMIT, Duration::from_secs(secs));
        self.assert_nothing_stored(case);
        assert_eq!(listing(self.env.dir.path(), &self.env.store), before, "{case}");
        std::fs::remove_file(&file).unwrap();
        peak
    }
}

/// Peak resident memory and wall time of a child.
#[derive(Debug, Clone, Copy)]
pub struct Peak {
    pub rss: u64,
    pub time: Duration,
}

impl Peak {
    pub fn assert_within(&self, case: &str, rss: u64, time: Duration) {
        // 0 means the child's `/proc/<pid>/status` was never read. That must
        // not pass as "small": it is accepted only when this machine's /proc
        // can be read at all (our own VmHWM) and the child was gone within a
        // second — a refusal before any reading, whose sampler thread did not
        // get the CPU in time on a loaded machine.
        if self.rss == 0 {
            assert!(
                vm_hwm(std::process::id()).is_some(),
                "{case}: the peak RSS cannot be measured here (no VmHWM in /proc/<pid>/status)"
            );
            assert!(
                self.time < Duration::from_secs(1),
                "{case}: the peak RSS was never measured, though the command ran {:?}",
                self.time
            );
        }
        assert!(
            self.rss < rss,
            "{case}: peak RSS {} MiB, more than {} MiB",
            self.rss / MIB,
            rss / MIB
        );
        assert!(self.time < time, "{case}: took {:?}, more than {time:?}", self.time);
    }
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Run `cmd`, polling its peak RSS (`VmHWM`); kill it if it passes `kill_at`
/// (so a memory bomb fails the test instead of the machine).
pub fn measured(cmd: Cmd, kill_at: u64) -> (Outcome, Peak) {
    let mut cmd = cmd.cmd;
    let desc = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn slipway");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let mut rss = 0;
    let status = loop {
        if let Some(r) = vm_hwm(pid) {
            rss = rss.max(r);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if rss > kill_at {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let time = start.elapsed();
    let out = Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    };
    (Outcome { desc, out }, Peak { rss, time })
}
