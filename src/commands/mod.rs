//! One file per verb: orchestration only, no byte-level logic.

pub mod build;
pub mod export;
pub mod gc;
pub mod import;
pub mod inspect;
pub mod list;
pub mod push;
pub mod serve;
pub mod sign;
pub mod verify;

/// `1.2 MiB`-style sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// The first 12 hex digits of an id, for tables.
pub fn short_id(id: &crate::digest::Digest) -> String {
    id.hex()[..12].to_string()
}
