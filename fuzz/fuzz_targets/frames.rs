//! Shared by the two frame targets: what the broker does with a peer's frame, and what a client
//! does with the broker's, in one encoding.

use claudemesh::protocol::{ClientMessage, Encoding, Envelope, ServerMessage, codec};

pub fn check(data: &[u8], encoding: Encoding) {
    // A frame that decodes must survive our own encoding: re-encoded, it decodes again to a
    // frame that encodes to the same bytes (nothing is lost or changed on the way).
    if let Ok(frame) = codec::decode::<Envelope<ClientMessage>>(data, encoding) {
        let bytes = codec::encode(&frame, encoding);
        let again: Envelope<ClientMessage> = codec::decode(&bytes, encoding)
            .unwrap_or_else(|e| panic!("a decoded client frame does not decode again: {e}"));
        assert_eq!(codec::encode(&again, encoding), bytes);
    }
    if let Ok(frame) = codec::decode::<Envelope<ServerMessage>>(data, encoding) {
        let bytes = codec::encode(&frame, encoding);
        let again: Envelope<ServerMessage> = codec::decode(&bytes, encoding)
            .unwrap_or_else(|e| panic!("a decoded server frame does not decode again: {e}"));
        assert_eq!(codec::encode(&again, encoding), bytes);
    }
}
