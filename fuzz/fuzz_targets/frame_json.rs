//! JSON text frames → `codec::decode::<Envelope<ClientMessage>>` (and `ServerMessage`).
#![no_main]

mod frames;

use claudemesh::protocol::Encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| frames::check(data, Encoding::Json));
