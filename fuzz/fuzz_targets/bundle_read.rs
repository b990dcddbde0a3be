//! `read_bundle` with the verify-only visitor on arbitrary bytes. The first
//! byte chooses how the rest reaches it:
//!
//! - bit 0 clear: verbatim (exercises the zstd decoder on garbage);
//! - bit 0 set: compressed with zstd first, so the fuzzer's bytes reach the
//!   tar reader and the manifest checks;
//! - bit 1 set (with bit 0): every 512-byte block gets a correct tar header
//!   checksum before compression, so mutated headers are not all refused at
//!   the checksum.
//!
//! It must return `Ok` or `Err`, never panic, hang or allocate without bound;
//! what it accepts must hash to the id of a valid manifest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::bundle::unpack::{VerifyOnly, read_bundle};

fn fix_checksums(tar: &mut [u8]) {
    for block in tar.chunks_exact_mut(512) {
        if block.iter().all(|b| *b == 0) {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut tar = rest.to_vec();
        if mode & 2 != 0 {
            fix_checksums(&mut tar);
        }
        match zstd::encode_all(tar.as_slice(), 1) {
            Ok(z) => z,
            Err(_) => return,
        }
    };
    if let Ok((m, id)) = read_bundle(input.as_slice(), "fuzz", &mut VerifyOnly) {
        assert!(m.validate().is_ok());
        assert_eq!(m.id(), id);
    }
});
