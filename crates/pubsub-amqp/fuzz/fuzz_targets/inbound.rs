//! Feeds arbitrary bytes, as if the broker sent them, through the frame guard.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how the rest is split into reads.
    if let Some((&split, frames)) = data.split_first() {
        pubsub_amqp::guard::check(frames, usize::from(split) + 1);
    }
});
