//! MessagePack binary frames → `codec::decode::<Envelope<ClientMessage>>` (and `ServerMessage`).
//! Inputs that are JSON are also tried as their MessagePack form, so the JSON seeds and
//! dictionary reach the typed decoding too.
#![no_main]

mod frames;

use claudemesh::protocol::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    frames::check(data, Encoding::MsgPack);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(packed) = rmp_serde::to_vec_named(&value)
    {
        frames::check(&packed, Encoding::MsgPack);
    }
});
