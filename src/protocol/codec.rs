//! Frame encodings: JSON text frames (the original's) and MessagePack binary frames with named
//! fields (this broker's addition). Both decode through one path so they behave identically.

use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, StringDeserializer};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::messages::Envelope;

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

/// A frame enum (`ClientMessage`, `ServerMessage`) whose busiest variants are read straight
/// into their own struct, in one pass. serde reads an internally tagged enum inside a
/// flattened envelope by copying the whole frame into a buffer of its own and reading that
/// again: for a client reading `push` frames that was over a quarter of its CPU (issue 14).
pub trait Frame: DeserializeOwned {
    /// The rest of a frame tagged `kind` (its fields after `type`, with `_reqId` taken out
    /// wherever it comes) read as that variant; `Ok(None)` for the kinds not read this way.
    fn read_rest<'de, A: MapAccess<'de>>(kind: &str, rest: A) -> Result<Option<Self>, A::Error>;
}

/// Reads one frame: a busy kind straight into its struct ([`Frame`]) when its `type` comes
/// first (after `_reqId`, if that comes first), as every frame this crate writes does; every
/// other frame, and every one that does not read that way, as [`decode`] reads it, with its
/// answers.
pub fn decode_frame<M: Frame>(
    bytes: &[u8],
    encoding: Encoding,
) -> Result<Envelope<M>, DecodeError> {
    straight(bytes, encoding).map_or_else(|| decode(bytes, encoding), Ok)
}

/// The frame read straight, or `None`.
fn straight<M: Frame>(bytes: &[u8], encoding: Encoding) -> Option<Envelope<M>> {
    match encoding {
        Encoding::Json => straight_json(serde_json::de::SliceRead::new(bytes)),
        Encoding::MsgPack => {
            let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
            de.set_max_depth(MAX_DEPTH);
            de.deserialize_map(Straight::<M>(PhantomData))
                .ok()
                .flatten()
        }
    }
}

/// A frame as the WebSocket layer hands it over: text (JSON, whose UTF-8 it checked) or
/// binary (MessagePack).
#[derive(Clone, Copy)]
pub enum Received<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Received<'_> {
    pub fn encoding(&self) -> Encoding {
        match self {
            Received::Text(_) => Encoding::Json,
            Received::Binary(_) => Encoding::MsgPack,
        }
    }
}

/// [`decode_frame`] of a frame off a WebSocket: a text frame's strings are not checked for
/// UTF-8 again one by one.
pub fn decode_received<M: Frame>(frame: Received<'_>) -> Result<Envelope<M>, DecodeError> {
    match frame {
        Received::Text(text) => straight_json(serde_json::de::StrRead::new(text))
            .map_or_else(|| decode(text.as_bytes(), Encoding::Json), Ok),
        Received::Binary(bytes) => decode_frame(bytes, Encoding::MsgPack),
    }
}

/// A JSON frame read straight, or `None`.
fn straight_json<'de, R: serde_json::de::Read<'de>, M: Frame>(read: R) -> Option<Envelope<M>> {
    let mut de = serde_json::Deserializer::new(read);
    de.deserialize_map(Straight::<M>(PhantomData))
        .ok()
        .flatten()
        .filter(|_| de.end().is_ok())
}

/// The visitor of [`decode_frame`]: `None` for a frame to read the generic way.
struct Straight<M>(PhantomData<M>);

impl<'de, M: Frame> Visitor<'de> for Straight<M> {
    type Value = Option<Envelope<M>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut req_id = None;
        let kind = loop {
            match map.next_key_seed(KeySeed)?.as_deref() {
                Some("_reqId") if req_id.is_none() => req_id = Some(map.next_value()?),
                Some("type") => break map.next_value_seed(KeySeed)?,
                // A field before the type, or none: the generic path reads this one.
                _ => return Ok(None),
            }
        };
        let mut rest = Rest {
            map,
            req_id: &mut req_id,
        };
        let Some(body) = M::read_rest(&kind, &mut rest)? else {
            return Ok(None);
        };
        Ok(Some(Envelope {
            req_id: req_id.flatten(),
            body,
        }))
    }
}

/// A frame's fields after its `type`, `_reqId` set aside.
struct Rest<'r, A> {
    map: A,
    /// `Some` once `_reqId` was read (a second one is refused).
    req_id: &'r mut Option<Option<String>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Rest<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        loop {
            let key = match self.map.next_key_seed(KeySeed)? {
                None => return Ok(None),
                Some(key) if key == "_reqId" => {
                    if self.req_id.is_some() {
                        return Err(serde::de::Error::duplicate_field("_reqId"));
                    }
                    *self.req_id = Some(self.map.next_value()?);
                    continue;
                }
                Some(key) => key,
            };
            return match key {
                Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)),
                Cow::Owned(k) => seed.deserialize(StringDeserializer::new(k)),
            }
            .map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key or tag as a string, borrowed from the frame where it can be.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// Reads `rest` as a `T` (a [`Frame`] variant's struct).
pub fn read_struct<'de, T: Deserialize<'de>, A: MapAccess<'de>>(rest: A) -> Result<T, A::Error> {
    T::deserialize(MapAccessDeserializer::new(rest))
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
        Encoding::Json => in_scratch(|b| serde_json::to_writer(b, frame), owned),
        Encoding::MsgPack => in_scratch(|b| rmp_serde::encode::write_named(b, frame), owned),
    };
    out.unwrap_or_else(|e| {
        tracing::error!("cannot encode frame: {e}");
        b"{}".to_vec()
    })
}

/// A JSON object written field by field as serde writes a struct: fields in order, an absent
/// one left out, strings through [`write_json_str`]. For the busiest frames (issue 14).
pub(crate) struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, empty: true }
    }

    /// The next field's name (one that needs no escape).
    fn name(&mut self, name: &str) {
        if !std::mem::replace(&mut self.empty, false) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A text field, left out when `None`.
    pub(crate) fn text(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(value) = value {
            self.name(name);
            write_json_str(self.out, value);
        }
        self
    }

    /// Any other field, as serde_json writes it, left out when `None`.
    pub(crate) fn value<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        value: Option<&T>,
    ) -> &mut Self {
        if let Some(value) = value {
            self.name(name);
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *self.out, value);
        }
        self
    }

    pub(crate) fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// Writes `s` as a JSON string, as serde_json writes it: as it is between quotes when nothing
/// in it needs escaping (checked sixteen bytes at a time), else through serde_json. Its byte by
/// byte escaping loop was the largest single cost of writing a push (issue 14).
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escaping(s.as_bytes()) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether a JSON string of these bytes needs an escape: a control character, a quote or a
/// backslash (what serde_json escapes; nothing else).
fn needs_escaping(bytes: &[u8]) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let (chunks, rest) = bytes.as_chunks::<16>();
    chunks
        .iter()
        .any(|chunk| chunk.iter().fold(false, |any, &b| any | escaped(b)))
        || rest.iter().any(|&b| escaped(b))
}

/// What `write` wrote, written in this thread's scratch buffer and copied out at its size.
pub fn written(write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    in_scratch(
        |b| {
            write(b);
            Ok::<(), std::convert::Infallible>(())
        },
        |w| w.map_or_else(|never| match never {}, <[u8]>::to_vec),
    )
}

/// An encoding copied out of the scratch buffer at its exact size.
fn owned<E: ToString>(written: Result<&[u8], E>) -> Result<Vec<u8>, String> {
    written.map(<[u8]>::to_vec).map_err(|e| e.to_string())
}

/// A scratch buffer bigger than this after an encoding is let go rather than kept.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    /// This thread's buffer to encode into: grown once, not once per frame or record.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `write` on this thread's scratch buffer, emptied first, and hands what it wrote (or its
/// error) to `read`: an encoding grows no buffer of its own step by step (`read` copies it out
/// at its exact size, or uses it in place). A nested call gets a buffer of its own.
pub(crate) fn in_scratch<E, R>(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    read: impl FnOnce(Result<&[u8], E>) -> R,
) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let out = read(write(&mut buf).map(|()| buf.as_slice()));
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            out
        }
        Err(_) => {
            let mut buf = Vec::new();
            read(write(&mut buf).map(|()| buf.as_slice()))
        }
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

    /// `frame` in both encodings: read straight (`decode_frame`) it is the frame the generic
    /// path reads, `_reqId` included.
    fn reads_straight_as_through_serde<M: Frame + Serialize>(frame: &str) {
        let value: serde_json::Value = serde_json::from_str(frame).unwrap();
        let packed = rmp_serde::to_vec_named(&value).unwrap();
        for (bytes, encoding) in [
            (frame.as_bytes(), Encoding::Json),
            (&packed[..], Encoding::MsgPack),
        ] {
            assert!(
                straight::<M>(bytes, encoding).is_some(),
                "{frame} is read straight"
            );
            let straight: Envelope<M> = decode_frame(bytes, encoding).unwrap();
            let generic: Envelope<M> = decode(bytes, encoding).unwrap();
            if encoding == Encoding::Json {
                let text = straight_json::<_, M>(serde_json::de::StrRead::new(frame));
                assert!(text.is_some(), "{frame} is read straight as text");
                let text: Envelope<M> = decode_received(Received::Text(frame)).unwrap();
                assert_eq!(encode(&text, encoding), encode(&straight, encoding));
            }
            assert_eq!(straight.req_id, generic.req_id);
            assert_eq!(
                encode(&straight, Encoding::Json),
                encode(&generic, Encoding::Json)
            );
            assert_eq!(
                serde_json::to_value(&straight).unwrap(),
                value,
                "nothing lost"
            );
        }
    }

    #[test]
    fn the_busiest_frames_read_straight_as_through_serde() {
        use crate::protocol::ServerMessage;
        reads_straight_as_through_serde::<ClientMessage>(
            r#"{"_reqId":"r1","type":"send","targetSpec":"*","priority":"now","nonce":"bg==","ciphertext":"aGk=","client_message_id":"c1"}"#,
        );
        reads_straight_as_through_serde::<ClientMessage>(
            r#"{"type":"client_ack","brokerMessageId":"m1","_reqId":"r2"}"#,
        );
        reads_straight_as_through_serde::<ServerMessage>(
            r#"{"type":"ack","id":"c1","messageId":"m1","queued":true,"_reqId":"r3"}"#,
        );
        let push = crate::protocol::messages::Push {
            message_id: "m1".into(),
            mesh_id: "mesh".into(),
            sender_pubkey: "ab".into(),
            ciphertext: "aGk=".into(),
            client_message_id: Some("c1".into()),
            ..Default::default()
        };
        let frame = String::from_utf8(encode(
            &Envelope::new(ServerMessage::Push(Box::new(push))),
            Encoding::Json,
        ))
        .unwrap();
        reads_straight_as_through_serde::<ServerMessage>(&frame);
    }

    /// Read straight or not, a broken frame gets the generic path's answer, and a struct is
    /// never read out of an array.
    #[test]
    fn frames_that_do_not_read_straight_get_the_generic_answers() {
        // Text frames as the broker and the client read them.
        let read = |text: &str| decode_received::<ClientMessage>(Received::Text(text));
        let err = read(r#"{"type":"send","_reqId":"7"}"#).unwrap_err();
        assert_eq!(err.code, "malformed");
        assert!(err.message.contains("targetSpec"), "{}", err.message);
        assert_eq!(err.req_id.as_deref(), Some("7"));
        let err = read(r#"{"type":"bogus","_reqId":"8"}"#).unwrap_err();
        assert_eq!(err.code, "unknown_message_type");
        let err = read(r#"{"type":"client_ack","brokerMessageId":"m1"} {}"#).unwrap_err();
        assert_eq!(
            err.code, "malformed",
            "trailing characters: {}",
            err.message
        );
        // A field before the type: read the generic way, to the same frame.
        let late = r#"{"targetSpec":"*","type":"send","priority":"now","nonce":"","ciphertext":"aGk=","_reqId":"9"}"#;
        assert!(straight::<ClientMessage>(late.as_bytes(), Encoding::Json).is_none());
        let frame = read(late).unwrap();
        assert_eq!(frame.req_id.as_deref(), Some("9"));
        assert!(matches!(frame.body, ClientMessage::Send(m) if m.target_spec == "*"));
        let array = r#"["client_ack","m1"]"#;
        let err = read(array).unwrap_err();
        assert_eq!(err.message, "frame must be an object");
        let value: serde_json::Value = serde_json::from_str(array).unwrap();
        let packed = rmp_serde::to_vec_named(&value).unwrap();
        let err = decode_frame::<ClientMessage>(&packed, Encoding::MsgPack).unwrap_err();
        assert_eq!(err.message, "frame must be an object");
    }

    /// Encodings share one buffer per thread: one made while another is being written (a
    /// nested call) must not clobber it, and a big one must not stay held.
    #[test]
    fn an_encoding_inside_another_and_the_next_one_stand_alone() {
        let put = |b: &mut Vec<u8>, bytes: &[u8]| -> Result<(), ()> {
            b.extend_from_slice(bytes);
            Ok(())
        };
        let text = |r: Result<&[u8], ()>| String::from_utf8(r.unwrap().to_vec()).unwrap();
        let outer = in_scratch(
            |b| {
                b.extend_from_slice(b"outer ");
                let inner = in_scratch(|b| put(b, b"inner"), text);
                b.extend_from_slice(inner.as_bytes());
                Ok(())
            },
            text,
        );
        assert_eq!(outer, "outer inner");
        let big = vec![7u8; SCRATCH_KEPT * 2];
        assert_eq!(
            in_scratch(|b| put(b, &big), |r: Result<&[u8], ()>| r.unwrap().len()),
            big.len()
        );
        SCRATCH.with(|b| assert!(b.borrow().capacity() <= SCRATCH_KEPT));
        let frame = serde_json::json!({"type": "ack", "id": "m1"});
        assert_eq!(
            encode(&frame, Encoding::Json),
            br#"{"type":"ack","id":"m1"}"#
        );
    }
}
