//! Frame encodings: JSON text frames (the original's) and MessagePack binary frames with named
//! fields (this broker's addition). Both decode through one path so they behave identically.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How a connection encodes its frames; fixed by the encoding of its hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MsgPack,
}

/// Why a frame could not be decoded, with the protocol error code to answer with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DecodeError {
    pub code: &'static str,
    pub message: String,
    /// The frame's `_reqId`, when it could be read, so the error can be correlated.
    pub req_id: Option<String>,
}

impl DecodeError {
    fn malformed(message: impl Into<String>, req_id: Option<String>) -> Self {
        DecodeError {
            code: "malformed",
            message: message.into(),
            req_id,
        }
    }
}

/// A MessagePack frame nests fewer containers than this, about what serde_json allows a JSON
/// one: reading (and dropping) a value recurses once per level, and rmp-serde's own limit
/// (1 024) overflows a worker thread's stack in a debug build.
const MAX_DEPTH: usize = 128;

/// Reads one frame into `T`. A JSON object is read straight into `T`; only a frame that does
/// not read is read again into a generic value, to say what is wrong with it: an unknown
/// `type` is told apart from a frame that is broken, because the answers differ
/// (`unknown_message_type` vs `malformed`).
pub fn decode<T: DeserializeOwned>(bytes: &[u8], encoding: Encoding) -> Result<T, DecodeError> {
    // Reading through a generic value first was an eighth of a `send`'s CPU on the broker.
    if encoding == Encoding::Json
        && bytes.trim_ascii_start().first() == Some(&b'{')
        && let Ok(frame) = serde_json::from_slice(bytes)
    {
        return Ok(frame);
    }
    let value: serde_json::Value = match encoding {
        Encoding::Json => serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::malformed(format!("frame is not valid JSON: {e}"), None))?,
        Encoding::MsgPack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(MAX_DEPTH);
            serde_json::Value::deserialize(&mut de).map_err(|e| {
                DecodeError::malformed(format!("frame is not valid MessagePack: {e}"), None)
            })?
        }
    };
    decode_value(value)
}

/// The second half of [`decode`], for callers that already hold a parsed value.
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    let Some(object) = value.as_object() else {
        return Err(DecodeError::malformed("frame must be an object", None));
    };
    let req_id = object
        .get("_reqId")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let Some(kind) = object.get("type").and_then(|t| t.as_str()) else {
        return Err(DecodeError::malformed(
            "frame has no string field \"type\"",
            req_id,
        ));
    };
    let unknown_prefix = format!("unknown variant `{kind}`");
    let kind = kind.to_string();
    serde_json::from_value(value).map_err(|e| {
        let message = e.to_string();
        if message.starts_with(&unknown_prefix) {
            DecodeError {
                code: "unknown_message_type",
                message: format!("unknown message type \"{kind}\""),
                req_id: req_id.clone(),
            }
        } else {
            DecodeError::malformed(format!("bad \"{kind}\" frame: {message}"), req_id.clone())
        }
    })
}

/// Encodes a frame. Serialising our own types cannot fail short of a bug, which is logged and
/// answered with an empty object rather than a panic in a connection task.
pub fn encode<T: Serialize>(frame: &T, encoding: Encoding) -> Vec<u8> {
    let out = match encoding {
        Encoding::Json => serde_json::to_vec(frame).map_err(|e| e.to_string()),
        Encoding::MsgPack => rmp_serde::to_vec_named(frame).map_err(|e| e.to_string()),
    };
    out.unwrap_or_else(|e| {
        tracing::error!("cannot encode frame: {e}");
        b"{}".to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::messages::{ClientMessage, Envelope};

    #[test]
    fn unknown_type_and_malformed_are_told_apart() {
        let err =
            decode::<Envelope<ClientMessage>>(br#"{"type":"bogus","_reqId":"7"}"#, Encoding::Json)
                .unwrap_err();
        assert_eq!(err.code, "unknown_message_type");
        assert_eq!(err.req_id.as_deref(), Some("7"));
        let err = decode::<Envelope<ClientMessage>>(b"{not json", Encoding::Json).unwrap_err();
        assert_eq!(err.code, "malformed");
        let err =
            decode::<Envelope<ClientMessage>>(br#"{"type":"hello"}"#, Encoding::Json).unwrap_err();
        assert_eq!(err.code, "malformed");
    }

    /// A well-formed frame reads straight into its type with the same result as through a
    /// generic value; a frame that is not an object is still refused as one.
    #[test]
    fn a_frame_reads_the_same_straight_or_through_a_value() {
        let frame = br#" {"type":"send","_reqId":"r1","targetSpec":"*","priority":"now","nonce":"","ciphertext":"aGk=","clientMessageId":"c1"}"#;
        let straight = decode::<Envelope<ClientMessage>>(frame, Encoding::Json).unwrap();
        let value = serde_json::from_slice(frame).unwrap();
        let through = decode_value::<Envelope<ClientMessage>>(value).unwrap();
        assert_eq!(
            serde_json::to_value(&straight).unwrap(),
            serde_json::to_value(&through).unwrap()
        );
        assert_eq!(straight.req_id.as_deref(), Some("r1"));
        let err = decode::<Envelope<ClientMessage>>(br#"["send"]"#, Encoding::Json).unwrap_err();
        assert_eq!(err.message, "frame must be an object");
    }

    /// `{"type":"set_state","key":"k","value":[[…]]}` in MessagePack, `depth` containers deep:
    /// the frame's own map and `depth - 1` arrays around a nil.
    fn nested_set_state(depth: usize) -> Vec<u8> {
        let mut bytes = vec![0x83, 0xa4];
        bytes.extend_from_slice(b"type");
        bytes.push(0xa9);
        bytes.extend_from_slice(b"set_state");
        bytes.extend_from_slice(&[0xa3, b'k', b'e', b'y', 0xa1, b'k', 0xa5]);
        bytes.extend_from_slice(b"value");
        bytes.extend(std::iter::repeat_n(0x91, depth - 1)); // fixarray of one element
        bytes.push(0xc0);
        bytes
    }

    #[test]
    fn messagepack_nests_as_deep_as_json_may_and_no_deeper() {
        let ok = nested_set_state(MAX_DEPTH - 1);
        assert!(decode::<Envelope<ClientMessage>>(&ok, Encoding::MsgPack).is_ok());
        let err =
            decode::<Envelope<ClientMessage>>(&nested_set_state(MAX_DEPTH), Encoding::MsgPack)
                .unwrap_err();
        assert_eq!(err.code, "malformed");
        assert!(err.message.contains("depth"), "{}", err.message);
    }

    /// What a peer sends is passed on as it was sent: a decoded frame encodes to bytes that
    /// decode to the same frame.
    fn round_trips(frame: &[u8], encoding: Encoding) {
        let decoded: Envelope<ClientMessage> = decode(frame, encoding).unwrap();
        let bytes = encode(&decoded, encoding);
        let again: Envelope<ClientMessage> = decode(&bytes, encoding).unwrap();
        assert_eq!(encode(&again, encoding), bytes);
    }

    #[test]
    fn long_decimals_survive_a_round_trip() {
        // Found by the frame_json fuzz target: without serde_json's `float_roundtrip`, a long
        // decimal parsed to a float one ULP away from the one its shortest form parses to, so
        // a number changed on its way through the broker.
        round_trips(
            br#"{"type":"schedule","to":"*","message":"stand up","deliverAt":555595555555555555555555555555555555555555555555555555555555555555555555555555555555555555555170000000}"#,
            Encoding::Json,
        );
        round_trips(
            br#"{"type":"set_state","key":"k","value":[0.30000000000000004,1.7976931348623157e308,5e-324,2.2250738585072011e-308]}"#,
            Encoding::Json,
        );
    }

    #[test]
    fn msgpack_and_json_decode_alike() {
        let json = br#"{"type":"revoke_member","member":"abc","_reqId":"r1"}"#;
        let value: serde_json::Value = serde_json::from_slice(json).unwrap();
        let packed = rmp_serde::to_vec_named(&value).unwrap();
        let a: Envelope<ClientMessage> = decode(json, Encoding::Json).unwrap();
        let b: Envelope<ClientMessage> = decode(&packed, Encoding::MsgPack).unwrap();
        assert_eq!(a.req_id, b.req_id);
        assert_eq!(encode(&a, Encoding::Json), encode(&b, Encoding::Json));
    }
}
