//! The stored bundle, sent verbatim to hosts that lack (nearly) all of a
//! release: to one host, spliced from the page cache into its connection;
//! to several, spliced once into a pipe of the pusher's own and duplicated
//! into each host's stream with tee(2) ([`send_bundle_to_all`]).
//!
//! Invariants: the bundle's bytes never pass through this process (the
//! kernel moves page references; a copy is made only where pipes cannot
//! splice); every frame header comes from the codec ([`DataHeader`]); the
//! hosts of a shared stream advance in step, and one that fails is dropped
//! without stopping the others.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use indicatif::ProgressBar;

use super::job::{PushJob, advance, stream_results};
use crate::error::{Error, Result, describe_io};
use crate::fs;
use crate::protocol::{DATA_CHUNK, DataHeader, Message};
use crate::remote::session::{HostChannel, HostSession};

impl HostSession {
    /// Send the stored bundle of `job` verbatim (after [`HostSession::offer`]).
    ///
    /// # Errors
    /// As [`HostSession::push`].
    pub fn send_bundle(&mut self, job: &PushJob<'_>, bar: &ProgressBar) -> Result<()> {
        send_bundle(&mut self.ch, job, bar).map_err(|e| self.fail(e, &format!("the push of `{}`", job.name)))
    }
}

fn send_bundle(ch: &mut HostChannel, job: &PushJob<'_>, bar: &ProgressBar) -> Result<()> {
    let path = job.store.bundle_path(&job.id);
    let mut file = fs::open(&path)?;
    let size = file.metadata().map_err(|e| Error::io("access", &path, e))?.len();
    bar.set_length(size);
    ch.send(&Message::Bundle { size })?;
    ch.send_file_data(&mut file, &path, size, &mut |n| advance(bar, n))?;
    ch.send_end()
}

/// Send the stored bundle of `job` to every session of `group` at once
/// (hosts that lack nearly everything). Each chunk becomes one DATA frame
/// in a pipe of the pusher's own: its header written, its payload spliced
/// from the page cache. Every host but the last is given the frame with
/// tee(2) into its private pipe and a splice from there into its
/// connection; the last gets the frame itself, spliced from the shared
/// pipe. Per host, the kernel only takes references to pages already in a
/// pipe (no page-cache lookups, no copies), and there is no write per host.
/// The hosts advance in step; one that fails is dropped and the others go
/// on. Where pipes cannot do this, each host gets
/// [`HostSession::send_bundle`]. Results in `group`'s order, errors naming
/// their host.
pub fn send_bundle_to_all(job: &PushJob<'_>, group: &mut [(&mut HostSession, ProgressBar)]) -> Vec<Result<()>> {
    let phase = format!("the push of `{}`", job.name);
    let mut failed: Vec<Option<Error>> = group.iter().map(|_| None).collect();
    let shared = match tee_pipes(group.len()) {
        Some(p) if group.len() > 1 => p,
        _ => {
            return group
                .iter_mut()
                .map(|(session, bar)| session.send_bundle(job, bar))
                .collect();
        }
    };
    let streamed = stream_bundle(job, group, &mut failed, &shared);
    stream_results(group, failed, &streamed, &phase)
}

/// The pipes of [`send_bundle_to_all`]: the shared one (read, write), one
/// per host (read, write), `/dev/null` to drain the shared one when the
/// host taking its frame fails, and the payload size of a DATA frame that
/// every pipe holds whole (a pipe holds its size in page-sized slots; the
/// header takes one of them).
struct TeePipes {
    shared: (OwnedFd, OwnedFd),
    hosts: Vec<(OwnedFd, OwnedFd)>,
    null: std::fs::File,
    chunk: usize,
}

fn tee_pipes(hosts: usize) -> Option<TeePipes> {
    let pipe = || -> Option<(OwnedFd, OwnedFd, usize)> {
        let (r, w) = rustix::pipe::pipe().ok()?;
        let _ = rustix::pipe::fcntl_setpipe_size(&w, DATA_CHUNK);
        let size = rustix::pipe::fcntl_getpipe_size(&w).ok()?;
        Some((r, w, size))
    };
    let (r, w, mut size) = pipe()?;
    let mut pipes = Vec::with_capacity(hosts);
    for _ in 0..hosts {
        let (hr, hw, host_size) = pipe()?;
        size = size.min(host_size);
        pipes.push((hr, hw));
    }
    let page = rustix::param::page_size();
    let chunk = (size.min(DATA_CHUNK) / page).checked_sub(1)? * page;
    if chunk == 0 {
        return None;
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").ok()?;
    Some(TeePipes {
        shared: (r, w),
        hosts: pipes,
        null,
        chunk,
    })
}

/// Splice `n` bytes from `from` to `to`, counting them in `moved`.
fn splice_exactly(
    from: BorrowedFd<'_>,
    mut offset: Option<&mut u64>,
    to: BorrowedFd<'_>,
    n: usize,
    moved: &mut usize,
) -> std::io::Result<()> {
    while *moved < n {
        match rustix::pipe::splice(
            from,
            offset.as_deref_mut(),
            to,
            None,
            n - *moved,
            rustix::pipe::SpliceFlags::empty(),
        ) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => *moved += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn stream_bundle(
    job: &PushJob<'_>,
    group: &mut [(&mut HostSession, ProgressBar)],
    failed: &mut [Option<Error>],
    pipes: &TeePipes,
) -> Result<()> {
    let path = job.store.bundle_path(&job.id);
    let file = fs::open(&path)?;
    let size = file.metadata().map_err(|e| Error::io("access", &path, e))?.len();
    for ((session, bar), failed) in group.iter_mut().zip(failed.iter_mut()) {
        bar.set_length(size);
        if let Err(e) = session.ch.send(&Message::Bundle { size }) {
            *failed = Some(e);
        }
    }
    let sending = |e: &std::io::Error| Error::connection(format!("cannot send to the host: {}", describe_io(e)));
    let mut offset = 0u64;
    while offset < size {
        let n = usize::try_from((size - offset).min(pipes.chunk as u64)).unwrap_or(pipes.chunk);
        // The shared pipe is empty: the header and payload fit it whole.
        let header = DataHeader::new(n)?;
        let frame = header.frame_len();
        let head = header.as_bytes();
        let written = match rustix::io::write(&pipes.shared.1, head) {
            Ok(k) if k == head.len() => Ok(()),
            Ok(k) => Err(format!("{k} of {} bytes written", head.len())),
            Err(e) => Err(describe_io(&e.into())),
        };
        if let Err(why) = written {
            return Err(Error::other(format!(
                "this machine's pipe for the bundle stream failed ({why}); nothing was staged, push again"
            )));
        }
        splice_exactly(file.as_fd(), Some(&mut offset), pipes.shared.1.as_fd(), n, &mut 0)
            .map_err(|e| Error::io("read", &path, e))?;
        let Some(last) = failed.iter().rposition(Option::is_none) else {
            return Err(Error::other("every host of the bundle stream failed"));
        };
        for (((session, bar), failed), host) in group.iter_mut().zip(failed.iter_mut()).zip(&pipes.hosts).take(last) {
            if failed.is_some() {
                continue;
            }
            let sent = (|| -> Result<()> {
                // The host's own pipe is empty and holds the frame whole: one tee.
                match rustix::pipe::tee(&pipes.shared.0, &host.1, frame, rustix::pipe::SpliceFlags::empty()) {
                    Ok(k) if k == frame => {}
                    result => {
                        let why = match result {
                            Ok(k) => format!("{k} of {frame} bytes duplicated"),
                            Err(e) => describe_io(&e.into()),
                        };
                        return Err(Error::other(format!(
                            "cannot copy the bundle into this host's stream (tee: {why}); push to this host again (`--hosts`)"
                        )));
                    }
                }
                let out = session.ch.spliced_data(&header)?;
                splice_exactly(host.0.as_fd(), None, out, frame, &mut 0).map_err(|e| sending(&e))?;
                advance(bar, n as u64);
                Ok(())
            })();
            if let Err(e) = sent {
                *failed = Some(e);
            }
        }
        // The last host takes the frame itself, emptying the shared pipe.
        let (session, bar) = &mut group[last];
        let mut moved = 0;
        let sent = session.ch.spliced_data(&header).and_then(|out| {
            splice_exactly(pipes.shared.0.as_fd(), None, out, frame, &mut moved).map_err(|e| sending(&e))
        });
        match sent {
            Ok(()) => advance(bar, n as u64),
            Err(e) => {
                failed[last] = Some(e);
                splice_exactly(pipes.shared.0.as_fd(), None, pipes.null.as_fd(), frame - moved, &mut 0)
                    .map_err(|e| Error::other(format!("cannot drain the bundle pipe: {}", describe_io(&e))))?;
            }
        }
    }
    for ((session, _), failed) in group.iter_mut().zip(failed.iter_mut()) {
        if failed.is_none()
            && let Err(e) = session.ch.send_end()
        {
            *failed = Some(e);
        }
    }
    Ok(())
}
