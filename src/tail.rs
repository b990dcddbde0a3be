//! Keeping the end of a child process's output: a thread reads a pipe to
//! its end and keeps only the last bytes, so a chatty (or hostile) child
//! costs bounded memory and never blocks on a full pipe.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Read `from` to its end on a thread of its own, appending to `into` and
/// keeping only its last `limit` bytes.
pub fn keep_tail(from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>, limit: usize) -> JoinHandle<()> {
    spawn_reader(from, into, limit, None)
}

/// [`keep_tail`], also sending each complete line (lossily decoded, at most
/// 4 KiB of it) to `lines` as it arrives, for output streamed while the
/// child runs.
pub fn keep_tail_and_lines(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
    limit: usize,
    lines: std::sync::mpsc::Sender<String>,
) -> JoinHandle<()> {
    spawn_reader(from, into, limit, Some(lines))
}

fn spawn_reader(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
    limit: usize,
    lines: Option<std::sync::mpsc::Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        let mut pending: Vec<u8> = Vec::new();
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = into.lock() {
                b.extend_from_slice(&chunk[..n]);
                let len = b.len();
                if len > limit {
                    b.drain(..len - limit);
                }
            }
            let Some(lines) = &lines else { continue };
            pending.extend_from_slice(&chunk[..n]);
            while let Some(i) = pending.iter().position(|c| *c == b'\n') {
                let line: Vec<u8> = pending.drain(..=i).collect();
                let text = &line[..(line.len() - 1).min(4096)];
                let _ = lines.send(String::from_utf8_lossy(text).into_owned());
            }
            if pending.len() > 4096 {
                let _ = lines.send(String::from_utf8_lossy(&pending).into_owned());
                pending.clear();
            }
        }
        if let Some(lines) = &lines
            && !pending.is_empty()
        {
            let _ = lines.send(String::from_utf8_lossy(&pending).into_owned());
        }
    })
}
