//! `Manifest::parse` on arbitrary bytes: it must return `Ok` or `Err`, never
//! panic, loop or allocate without bound; what it accepts must be canonical
//! and valid, so re-serialising gives the input back byte for byte.

#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        assert_eq!(m.canonical_bytes(), data, "accepted a manifest that is not canonical");
        assert!(m.validate().is_ok());
        // What receivers compute from an accepted manifest must not panic either.
        let _ = m.total_size();
        let _ = m.file_count();
        for (key, _) in m.objects() {
            let _ = key.rel_path();
        }
        assert_eq!(m.id(), slipway::digest::Digest::of(data));
    }
});
