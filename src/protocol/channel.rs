//! A connection as the two ends use it: control messages and data
//! sequences (DATA frames up to END) in both directions, over any
//! reader/writer pair (a child's pipes, an SSH channel, stdin/stdout).
//!
//! Invariants: a peer's `error` message comes back as an `Err` with its
//! kind (and [`Channel::peer_failed`] says so); a message in the middle of
//! a data sequence, or data where a message was expected, is refused; a
//! data sequence is read with no more than one frame in memory.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use super::codec::{DATA_CHUNK, DataHeader, FrameReader, FrameType, FrameWriter, Peer};
use super::kind::ErrorKind;
use super::messages::Message;
use crate::error::{Error, Result, describe_io};

/// Both directions of one connection.
pub struct Channel<R, W: Write> {
    reader: FrameReader<R>,
    writer: Option<FrameWriter<W>>,
    peer: Peer,
    peer_failed: bool,
    data_bytes_closed: u64,
}

impl<R: Read, W: Write> Channel<R, W> {
    /// The stream messages are read from (to wait on it).
    pub fn reader(&self) -> &R {
        self.reader.get_ref()
    }

    /// A channel to `peer` over `reader`/`writer`.
    pub fn new(reader: R, writer: W, peer: Peer) -> Channel<R, W> {
        Channel {
            reader: FrameReader::new(reader, peer),
            writer: Some(FrameWriter::new(writer, peer)),
            peer,
            peer_failed: false,
            data_bytes_closed: 0,
        }
    }

    pub fn peer(&self) -> Peer {
        self.peer
    }

    /// True once the peer sent an `error` message.
    pub fn peer_failed(&self) -> bool {
        self.peer_failed
    }

    fn writer(&mut self) -> Result<&mut FrameWriter<W>> {
        let peer = self.peer;
        self.writer
            .as_mut()
            .ok_or_else(|| Error::connection(format!("the connection to the {peer} is closed")))
    }

    /// Send a control message (buffered until the next receive or flush).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send(&mut self, msg: &Message) -> Result<()> {
        let w = self.writer()?;
        let json = serde_json::to_vec(msg).map_err(|e| Error::other(format!("cannot encode a message: {e}")))?;
        w.message(&json)
    }

    /// Send `bytes` as a data sequence (DATA frames, then END).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_blob(&mut self, bytes: &[u8]) -> Result<()> {
        let w = self.writer()?;
        w.data(bytes)?;
        w.end()
    }

    /// Send `bytes` as DATA frames (part of a sequence ended by [`Channel::send_end`]).
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_data(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer()?.data(bytes)
    }

    /// See [`FrameWriter::spliced_data`].
    ///
    /// # Errors
    /// As [`FrameWriter::spliced_data`], or when this side of the
    /// connection is closed.
    pub fn spliced_data(&mut self, header: &DataHeader) -> Result<std::os::fd::BorrowedFd<'_>>
    where
        W: AsFd,
    {
        self.writer()?.spliced_data(header)
    }

    /// Send `len` bytes of `file` as DATA frames (see [`FrameWriter::file_data`]).
    ///
    /// # Errors
    /// As [`FrameWriter::file_data`].
    pub fn send_file_data(
        &mut self,
        file: &mut File,
        path: &Path,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()>
    where
        W: AsFd,
    {
        self.writer()?.file_data(file, path, len, progress)
    }

    /// End a data sequence.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn send_end(&mut self) -> Result<()> {
        self.writer()?.end()
    }

    /// # Errors
    /// Connection error on I/O failure.
    pub fn flush(&mut self) -> Result<()> {
        self.writer()?.flush()
    }

    /// Read whatever the peer still sends until it closes, and return its
    /// `error` message if there is one (after a broken exchange, it explains why).
    pub fn drain_for_error(&mut self) -> Option<Error> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(FrameType::Message)) => {
                    if let Err(e) = self.decode()
                        && self.peer_failed
                    {
                        return Some(e);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Flush and close the sending direction: the peer reads end-of-stream.
    pub fn close_write(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = w.flush();
            self.data_bytes_closed = w.data_bytes();
        }
    }

    /// Bytes of DATA and END frames sent so far (what `bytes_sent` reports).
    pub fn data_bytes_sent(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.data_bytes_closed, FrameWriter::data_bytes)
    }

    fn decode(&mut self) -> Result<Message> {
        let peer = self.peer;
        let msg: Message = serde_json::from_slice(self.reader.payload()).map_err(|e| {
            Error::other(format!(
                "the {peer} sent a message this slipway does not understand: {e}"
            ))
        })?;
        if let Message::Error { kind, message } = msg {
            self.peer_failed = true;
            return Err(ErrorKind::from_old_host(kind, &message).error(message));
        }
        Ok(msg)
    }

    /// The next control message, or `None` at a clean end of the stream.
    /// An `error` message from the peer comes back as `Err` with its kind.
    ///
    /// # Errors
    /// The peer's error; connection errors; a DATA or END frame where a
    /// message was expected.
    pub fn recv_optional(&mut self) -> Result<Option<Message>> {
        if let Some(w) = self.writer.as_mut() {
            w.flush()?;
        }
        let peer = self.peer;
        match self.reader.next_frame()? {
            None => Ok(None),
            Some(FrameType::Message) => self.decode().map(Some),
            Some(_) => Err(Error::other(format!(
                "the {peer} sent data where a message was expected"
            ))),
        }
    }

    /// The next control message; end of stream is a connection error.
    ///
    /// # Errors
    /// As [`Channel::recv_optional`], and when the peer closed the connection.
    pub fn recv(&mut self) -> Result<Message> {
        let peer = self.peer;
        self.recv_optional()?
            .ok_or_else(|| Error::connection(format!("the {peer} closed the connection")))
    }

    /// Read a whole data sequence of at most `limit` bytes; `what` names it in errors.
    ///
    /// # Errors
    /// When it is longer than `limit`, or on connection errors.
    pub fn recv_blob(&mut self, limit: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = self.data_reader();
        let res = (&mut reader).take(limit.saturating_add(1)).read_to_end(&mut out);
        if let Some(e) = reader.take_error() {
            return Err(e);
        }
        res.map_err(|e| Error::connection(format!("cannot read {what}: {}", describe_io(&e))))?;
        if out.len() as u64 > limit {
            return Err(Error::other(format!(
                "{what} is larger than the limit of {limit} bytes"
            )));
        }
        reader.finish()?;
        Ok(out)
    }

    /// A reader over the next data sequence (DATA frames up to END).
    pub fn data_reader(&mut self) -> DataReader<'_, R, W> {
        DataReader {
            ch: self,
            pos: 0,
            len: 0,
            done: false,
            error: None,
        }
    }

    /// A writer that sends what it is given as DATA frames; [`DataWriter::finish`] sends END.
    pub fn data_writer(&mut self) -> DataWriter<'_, R, W> {
        DataWriter {
            ch: self,
            buf: Vec::with_capacity(DATA_CHUNK),
            error: None,
        }
    }
}

/// The `error` that a `serve` wrote in `output`, when `output` is one:
/// what a command run over ssh prints when a forced command in
/// `authorized_keys` ran `serve` instead (its `hello`, then its refusal,
/// typically [`Error::Restricted`]).
pub fn refusal(output: &[u8]) -> Option<Error> {
    let mut ch = Channel::new(output, io::sink(), Peer::Host);
    loop {
        match ch.recv() {
            Ok(_) => {}
            Err(e) => return ch.peer_failed().then_some(e),
        }
    }
}

/// `Read` over one data sequence. Protocol failures are kept: after an
/// `io::Error`, [`DataReader::take_error`] returns the real one.
pub struct DataReader<'a, R, W: Write> {
    ch: &'a mut Channel<R, W>,
    pos: usize,
    len: usize,
    done: bool,
    error: Option<Error>,
}

impl<R: Read, W: Write> DataReader<'_, R, W> {
    /// The error behind the last `io::Error`, if it came from the protocol.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn fail(&mut self, e: Error) -> io::Error {
        let text = e.to_string();
        self.error = Some(e);
        io::Error::other(text)
    }

    /// Read up to END, refusing any data left over.
    ///
    /// # Errors
    /// When data remains, or on connection errors.
    pub fn finish(&mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => {
                let peer = self.ch.peer;
                Err(Error::other(format!("the {peer} sent more data than it announced")))
            }
            Err(e) => Err(self.take_error().unwrap_or_else(|| Error::connection(describe_io(&e)))),
        }
    }
}

impl<R: Read, W: Write> Read for DataReader<'_, R, W> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.len {
                let n = out.len().min(self.len - self.pos);
                out[..n].copy_from_slice(&self.ch.reader.payload()[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done || out.is_empty() {
                return Ok(0);
            }
            let peer = self.ch.peer;
            match self.ch.reader.next_frame() {
                Ok(Some(FrameType::Data)) => {
                    self.pos = 0;
                    self.len = self.ch.reader.payload().len();
                }
                Ok(Some(FrameType::End)) => {
                    self.done = true;
                    return Ok(0);
                }
                Ok(Some(FrameType::Message)) => {
                    let e = match self.ch.decode() {
                        Err(e) => e,
                        Ok(m) => Error::other(format!(
                            "the {peer} sent `{}` in the middle of a data sequence",
                            m.name()
                        )),
                    };
                    return Err(self.fail(e));
                }
                Ok(None) => {
                    return Err(self.fail(Error::connection(format!(
                        "the {peer} closed the connection in the middle of a transfer"
                    ))));
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }
}

/// `Write` into DATA frames of [`DATA_CHUNK`] bytes. Protocol failures are
/// kept: after an `io::Error`, [`DataWriter::take_error`] returns the real one.
pub struct DataWriter<'a, R, W: Write> {
    ch: &'a mut Channel<R, W>,
    buf: Vec<u8>,
    error: Option<Error>,
}

impl<R: Read, W: Write> DataWriter<'_, R, W> {
    /// The error behind the last `io::Error`, if it came from the protocol.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }

    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.ch.writer().and_then(|w| w.data(&self.buf));
        self.buf.clear();
        res.map_err(|e| {
            let text = e.to_string();
            self.error = Some(e);
            io::Error::other(text)
        })
    }

    /// Send what is buffered, then END.
    ///
    /// # Errors
    /// Connection error on I/O failure.
    pub fn finish(mut self) -> Result<()> {
        if let Err(e) = self.emit() {
            return Err(self.take_error().unwrap_or_else(|| Error::connection(describe_io(&e))));
        }
        self.ch.writer()?.end()
    }
}

impl<R: Read, W: Write> Write for DataWriter<'_, R, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = bytes.len().min(DATA_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&bytes[..n]);
        if self.buf.len() == DATA_CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::FRAME_HEADER;

    #[test]
    fn frames_round_trip_and_count_data() {
        let mut ch = Channel::new(io::empty(), Vec::new(), Peer::Host);
        ch.send(&Message::hello()).unwrap();
        ch.send_blob(&vec![7u8; DATA_CHUNK + 10]).unwrap();
        assert_eq!(ch.data_bytes_sent(), (3 * FRAME_HEADER + DATA_CHUNK + 10) as u64);
        ch.flush().unwrap();
        let bytes = ch.writer.take().unwrap().into_inner();
        let mut back = Channel::new(bytes.as_slice(), io::sink(), Peer::Client);
        assert_eq!(back.recv().unwrap(), Message::hello());
        assert_eq!(back.recv_blob(1 << 30, "x").unwrap().len(), DATA_CHUNK + 10);
        assert!(back.recv_optional().unwrap().is_none());
    }

    #[test]
    fn errors_keep_their_kind() {
        let mut ch = Channel::new(io::empty(), Vec::new(), Peer::Client);
        ch.send(&Message::error(&Error::integrity("bad bytes"))).unwrap();
        ch.flush().unwrap();
        let bytes = ch.writer.take().unwrap().into_inner();
        let mut back = Channel::new(bytes.as_slice(), io::sink(), Peer::Host);
        let e = back.recv().unwrap_err();
        assert_eq!(e.exit().code(), 5);
        assert_eq!(e.to_string(), "bad bytes");
        assert!(back.peer_failed());
    }

    #[test]
    fn a_forced_commands_refusal_is_read_from_its_output() {
        let mut ch = Channel::new(io::empty(), Vec::new(), Peer::Client);
        ch.send(&Message::hello()).unwrap();
        ch.send(&Message::error(&Error::Restricted("this key may only run …".into())))
            .unwrap();
        ch.flush().unwrap();
        let bytes = ch.writer.take().unwrap().into_inner();
        assert!(matches!(refusal(&bytes), Some(Error::Restricted(_))));
        assert!(refusal(b"Linux x86_64\n").is_none());
        assert!(refusal(b"").is_none());
    }
}
