//! Keeping the end of a child process's output: a thread reads a pipe to
//! its end and keeps only the last bytes, so a chatty (or hostile) child
//! costs bounded memory and never blocks on a full pipe.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Read `from` to its end on a thread of its own, appending to `into` and
/// keeping only its last `limit` bytes.
pub fn keep_tail(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>, limit: usize) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
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
        }
    })
}
