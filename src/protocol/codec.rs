//! The frame codec: every byte either side sends is a frame, and this is
//! the one place that builds and parses them.
//!
//! ```text
//! u32 big-endian payload length | u8 frame type | payload
//!   1 MESSAGE  one JSON object with a "type" key (see `messages`)
//!   2 DATA     a chunk of a byte sequence (manifest, bundle, batch of objects, index list)
//!   3 END      the end of that byte sequence (empty payload)
//! ```
//!
//! Invariants: no frame is larger than [`MAX_FRAME`], checked before
//! anything is allocated, and unknown frame types are refused, so memory
//! per connection is bounded by one frame whatever the size of the files;
//! an END frame is empty. Content may reach the connection without passing
//! through this process (splice/tee from the page cache), but its frame
//! header always comes from here.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::version::PROTOCOL;
use crate::error::{Error, Result, describe_io};

/// Largest frame payload accepted (16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Payload size of the DATA frames slipway writes (1 MiB).
pub const DATA_CHUNK: usize = 1024 * 1024;
/// Bytes of a frame header (length and type).
pub const FRAME_HEADER: usize = 5;

/// The kind of a frame (its type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Message,
    Data,
    End,
}

impl FrameType {
    pub fn code(self) -> u8 {
        match self {
            FrameType::Message => 1,
            FrameType::Data => 2,
            FrameType::End => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<FrameType> {
        match code {
            1 => Some(FrameType::Message),
            2 => Some(FrameType::Data),
            3 => Some(FrameType::End),
            _ => None,
        }
    }
}

/// Who is on the other end of a channel (named in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Host,
    Client,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Host => "host",
            Peer::Client => "client",
        })
    }
}

/// Reads frames, refusing oversized and unknown ones.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    len: usize,
    peer: Peer,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R, peer: Peer) -> FrameReader<R> {
        FrameReader {
            inner,
            buf: Vec::new(),
            len: 0,
            peer,
        }
    }

    /// The stream this reads from.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next frame's type; its payload is [`FrameReader::payload`].
    /// `None` at a clean end of the stream (between frames).
    ///
    /// # Errors
    /// Connection error on I/O failure or a stream cut inside a frame;
    /// "oversized frame" and "unknown frame type" errors.
    pub fn next_frame(&mut self) -> Result<Option<FrameType>> {
        let peer = self.peer;
        let mut head = [0u8; FRAME_HEADER];
        let mut got = 0;
        while got < FRAME_HEADER {
            match self.inner.read(&mut head[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(truncated(peer)),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(peer, &e)),
            }
        }
        let (ty, len) = parse_header(&head, peer)?;
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.inner.read_exact(&mut self.buf[..len]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                truncated(peer)
            } else {
                read_error(peer, &e)
            }
        })?;
        self.len = len;
        Ok(Some(ty))
    }

    /// The payload of the last frame read.
    pub fn payload(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn truncated(peer: Peer) -> Error {
    Error::connection(format!("the {peer} closed the connection in the middle of a transfer"))
}

fn read_error(peer: Peer, e: &io::Error) -> Error {
    Error::connection(format!("cannot read from the {peer}: {}", describe_io(e)))
}

fn write_error(peer: Peer, e: &io::Error) -> Error {
    Error::connection(format!("cannot send to the {peer}: {}", describe_io(e)))
}

/// The header of a frame of type `ty` carrying `len` bytes (at most
/// [`MAX_FRAME`], which the callers check).
fn frame_header(ty: FrameType, len: usize) -> [u8; FRAME_HEADER] {
    let mut head = [0u8; FRAME_HEADER];
    head[..4].copy_from_slice(&(len as u32).to_be_bytes());
    head[4] = ty.code();
    head
}

/// The type and payload length a header from `peer` announces.
fn parse_header(head: &[u8; FRAME_HEADER], peer: Peer) -> Result<(FrameType, usize)> {
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let ty = FrameType::from_code(head[4]).ok_or_else(|| {
        Error::other(format!(
            "unknown frame type {} from the {peer} (protocol {PROTOCOL} knows types 1-3)",
            head[4]
        ))
    })?;
    if len > MAX_FRAME {
        return Err(Error::other(format!(
            "oversized frame from the {peer}: {len} bytes, more than the limit of {MAX_FRAME}"
        )));
    }
    if ty == FrameType::End && len != 0 {
        return Err(Error::other(format!("the {peer} sent an END frame with a payload")));
    }
    Ok((ty, len))
}

/// The header of one DATA frame whose payload the caller moves to the
/// connection itself, e.g. spliced or tee'd from a pipe that holds the
/// header and the payload back to back (see [`FrameWriter::spliced_data`]).
/// The content never passes through this process; the header is built here
/// like every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    bytes: [u8; FRAME_HEADER],
    payload: usize,
}

impl DataHeader {
    /// The header of a DATA frame of `payload` bytes.
    ///
    /// # Errors
    /// When `payload` is larger than [`MAX_FRAME`].
    pub fn new(payload: usize) -> Result<DataHeader> {
        if payload > MAX_FRAME {
            return Err(Error::other(format!(
                "cannot send a {payload} byte frame: the limit is {MAX_FRAME}"
            )));
        }
        Ok(DataHeader {
            bytes: frame_header(FrameType::Data, payload),
            payload,
        })
    }

    /// The header's bytes, to write ahead of the payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes of payload the frame carries.
    pub fn payload_len(&self) -> usize {
        self.payload
    }

    /// Bytes of the whole frame, header and payload: what it takes in a
    /// pipe and on the connection.
    pub fn frame_len(&self) -> usize {
        FRAME_HEADER + self.payload
    }
}

/// Writes frames (buffered) and counts the data bytes written.
pub struct FrameWriter<W: Write> {
    inner: io::BufWriter<W>,
    peer: Peer,
    data_bytes: u64,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(inner: W, peer: Peer) -> FrameWriter<W> {
        FrameWriter {
            inner: io::BufWriter::with_capacity(64 * 1024, inner),
            peer,
            data_bytes: 0,
        }
    }

    fn frame(&mut self, ty: FrameType, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_FRAME {
            return Err(Error::other(format!(
                "cannot send a {} byte frame: the limit is {MAX_FRAME}",
                payload.len()
            )));
        }
        let head = frame_header(ty, payload.len());
        self.inner
            .write_all(&head)
            .and_then(|()| self.inner.write_all(payload))
            .map_err(|e| write_error(self.peer, &e))
    }

    /// Send one MESSAGE frame holding `json`, one encoded control message.
    ///
    /// # Errors
    /// When `json` is larger than [`MAX_FRAME`]; connection error on I/O failure.
    pub fn message(&mut self, json: &[u8]) -> Result<()> {
        self.frame(FrameType::Message, json)
    }

    /// Send `bytes` as DATA frames of at most [`DATA_CHUNK`] bytes.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn data(&mut self, bytes: &[u8]) -> Result<()> {
        for chunk in bytes.chunks(DATA_CHUNK) {
            self.frame(FrameType::Data, chunk)?;
            self.data_bytes += (FRAME_HEADER + chunk.len()) as u64;
        }
        Ok(())
    }

    /// End a data sequence.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn end(&mut self) -> Result<()> {
        self.frame(FrameType::End, &[])?;
        self.data_bytes += FRAME_HEADER as u64;
        Ok(())
    }

    /// # Errors
    /// Connection error on I/O failure.
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush().map_err(|e| write_error(self.peer, &e))
    }

    /// Bytes of DATA and END frames (headers included) written so far.
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The writer underneath, with everything written flushed into it.
    #[cfg(test)]
    pub(super) fn into_inner(self) -> W {
        self.inner
            .into_inner()
            .unwrap_or_else(|_| panic!("cannot flush the frames"))
    }
}

impl<W: Write + AsFd> FrameWriter<W> {
    /// Hand the connection to the caller for one whole DATA frame, `header`
    /// and its payload, that the caller moves there itself (e.g. with
    /// splice(2) from a pipe holding both): pending frames are flushed
    /// first, and the frame counts as sent.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn spliced_data(&mut self, header: &DataHeader) -> Result<std::os::fd::BorrowedFd<'_>> {
        let peer = self.peer;
        self.inner.flush().map_err(|e| write_error(peer, &e))?;
        self.data_bytes += header.frame_len() as u64;
        Ok(self.inner.get_ref().as_fd())
    }

    /// Send the next `len` bytes of `file` (from its current position) as
    /// DATA frames. Where the connection is a pipe (both transports), the
    /// bytes move with splice(2): the kernel hands the page-cache pages to
    /// the pipe and this process copies nothing, so pushing one bundle to
    /// many hosts costs each host a few system calls, not a pass over the
    /// bytes. Elsewhere, or where the file system cannot splice, they are
    /// read and written.
    ///
    /// # Errors
    /// Connection error when the connection breaks; an error naming `path`
    /// when the file cannot be read or ends before `len` bytes.
    pub fn file_data(&mut self, file: &mut File, path: &Path, len: u64, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let peer = self.peer;
        let mut splice = rustix::fs::fstat(self.inner.get_ref())
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo);
        let mut buf = Vec::new();
        let short = || Error::integrity(format!("`{}` ended before its announced size", path.display()));
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(DATA_CHUNK as u64)).unwrap_or(DATA_CHUNK);
            let head = frame_header(FrameType::Data, n);
            self.inner.write_all(&head).map_err(|e| write_error(peer, &e))?;
            let mut sent = 0;
            if splice {
                // The header must reach the pipe before the spliced bytes.
                self.inner.flush().map_err(|e| write_error(peer, &e))?;
            }
            while sent < n {
                if splice {
                    match rustix::pipe::splice(
                        &*file,
                        None,
                        self.inner.get_ref(),
                        None,
                        n - sent,
                        rustix::pipe::SpliceFlags::empty(),
                    ) {
                        Ok(0) => return Err(short()),
                        Ok(k) => {
                            sent += k;
                            progress(k as u64);
                            continue;
                        }
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET) => {
                            return Err(write_error(peer, &io::Error::from(io::ErrorKind::BrokenPipe)));
                        }
                        // Not spliceable here (file system, kernel): copy the rest.
                        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::AGAIN) => {
                            splice = false;
                        }
                        Err(e) => return Err(Error::io("read", path, e.into())),
                    }
                }
                if buf.is_empty() {
                    buf = vec![0u8; DATA_CHUNK];
                }
                let want = n - sent;
                let k = match file.read(&mut buf[..want]) {
                    Ok(0) => return Err(short()),
                    Ok(k) => k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read", path, e)),
                };
                self.inner.write_all(&buf[..k]).map_err(|e| write_error(peer, &e))?;
                sent += k;
                progress(k as u64);
            }
            self.data_bytes += (FRAME_HEADER + n) as u64;
            left -= n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> FrameReader<&[u8]> {
        FrameReader::new(bytes, Peer::Client)
    }

    /// A file sent through a pipe (spliced) and through a regular file
    /// (read and written) gives the same frames and the same byte count.
    #[test]
    fn file_data_is_the_same_frames_spliced_or_copied() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let content: Vec<u8> = (0..(DATA_CHUNK * 2 + 12345)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &content).unwrap();
        let len = content.len() as u64;

        let (mut rx, tx) = std::io::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            rx.read_to_end(&mut all).unwrap();
            all
        });
        let mut w = FrameWriter::new(tx, Peer::Host);
        let mut progress = 0;
        w.file_data(&mut File::open(&src).unwrap(), &src, len, &mut |n| progress += n)
            .unwrap();
        w.end().unwrap();
        let spliced_bytes = w.data_bytes();
        drop(w);
        let spliced = reader.join().unwrap();
        assert_eq!(progress, len);

        let out = dir.path().join("out");
        let mut w = FrameWriter::new(File::create(&out).unwrap(), Peer::Host);
        w.file_data(&mut File::open(&src).unwrap(), &src, len, &mut |_| {})
            .unwrap();
        w.end().unwrap();
        assert_eq!(w.data_bytes(), spliced_bytes);
        drop(w);
        assert_eq!(std::fs::read(&out).unwrap(), spliced);

        let mut r = frames(&spliced);
        let mut got = Vec::new();
        while let Some(FrameType::Data) = r.next_frame().unwrap() {
            got.extend_from_slice(r.payload());
        }
        assert_eq!(got, content);

        // A file shorter than announced is an error naming it.
        let mut w = FrameWriter::new(File::create(dir.path().join("short")).unwrap(), Peer::Host);
        let e = w
            .file_data(&mut File::open(&src).unwrap(), &src, len + 1, &mut |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("ended before its announced size"), "{e}");
    }

    /// A frame assembled by the caller (header from [`DataHeader`], payload
    /// moved by itself) reads back like one the writer sent.
    #[test]
    fn a_data_header_frames_what_follows_it() {
        let h = DataHeader::new(3).unwrap();
        assert_eq!(h.frame_len(), FRAME_HEADER + 3);
        assert_eq!(h.payload_len(), 3);
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let mut r = frames(&bytes);
        assert_eq!(r.next_frame().unwrap(), Some(FrameType::Data));
        assert_eq!(r.payload(), b"abc");
        assert!(r.next_frame().unwrap().is_none());

        let mut w = FrameWriter::new(Vec::new(), Peer::Host);
        w.data(b"abc").unwrap();
        assert_eq!(w.into_inner(), bytes);
        assert!(DataHeader::new(MAX_FRAME + 1).is_err());
    }

    #[test]
    fn oversized_unknown_and_truncated_frames_are_refused() {
        let mut big = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        big.push(2);
        let e = frames(&big).next_frame().unwrap_err().to_string();
        assert!(e.starts_with("oversized frame from the client"), "{e}");
        let e = frames(&[0, 0, 0, 0, 9]).next_frame().unwrap_err().to_string();
        assert!(e.contains("unknown frame type 9"), "{e}");
        let e = frames(&[0, 0, 0, 4, 2, 1]).next_frame().unwrap_err();
        assert!(e.is_connection(), "{e}");
        assert!(frames(&[]).next_frame().unwrap().is_none());
    }
}
