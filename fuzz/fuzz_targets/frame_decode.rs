//! The protocol frame decoder (`slipway::protocol`) on arbitrary bytes, as
//! `serve` reads a client: frames one after the other until the end or an
//! error, and every MESSAGE payload
//! decoded as a `Message` the way `Channel` does. It must return frames or
//! errors, never panic, and never hand out a payload over `MAX_FRAME`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use slipway::protocol::{FrameReader, FrameType, MAX_FRAME, Message, Peer};

fuzz_target!(|data: &[u8]| {
    let mut frames = FrameReader::new(data, Peer::Client);
    while let Ok(Some(ty)) = frames.next_frame() {
        let payload = frames.payload();
        assert!(payload.len() <= MAX_FRAME);
        if ty == FrameType::Message {
            let _ = serde_json::from_slice::<Message>(payload);
        }
    }
});
