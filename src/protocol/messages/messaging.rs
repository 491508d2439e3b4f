//! Messaging (PROTOCOL.md §4): `send`, `push`, acknowledgements and `message_status`.

use serde::{Deserialize, Serialize};

use crate::protocol::codec::JsonObject;

/// `send` (PROTOCOL.md §4.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub target_spec: String,
    #[serde(default = "default_priority")]
    pub priority: String,
    #[serde(default)]
    pub nonce: String,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<String>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<String>,
    /// This broker: target specs (keys, `@group`, `*`) whose recipients a group or broadcast
    /// `targetSpec` leaves out, because another send of the same message reached them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// The root-key epoch a group or broadcast body is sealed under (PROTOCOL.md §12.4);
    /// absent means 0.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
}

fn default_priority() -> String {
    "next".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// A generic acknowledgement. `send` fills `id`/`messageId`/`queued`; other requests use `ok`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    /// This ack as a JSON frame with its `_reqId`, as serde writes it in an [`Envelope`], with
    /// strings that need no escape copied as they are (every `send` is answered with one).
    ///
    /// [`Envelope`]: super::Envelope
    pub fn write_json(&self, req_id: Option<&str>, out: &mut Vec<u8>) {
        // Every field named: a field added to `Ack` does not compile here until it is written.
        let Ack {
            id,
            message_id,
            queued,
            ok,
            error,
        } = self;
        JsonObject::new(out)
            .text("_reqId", req_id)
            .text("type", Some("ack"))
            .text("id", id.as_deref())
            .text("messageId", message_id.as_deref())
            .value("queued", queued.as_ref())
            .value("ok", ok.as_ref())
            .text("error", error.as_deref())
            .end();
    }
}

/// `push` (PROTOCOL.md §4.3): a message, a reminder or a system event. Its strings are `S`:
/// owned as read, or borrowed from a stored record as the broker writes one (issue 14).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Push<S = String> {
    pub message_id: S,
    pub mesh_id: S,
    pub sender_pubkey: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_pubkey: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_member_id: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<S>,
    pub priority: S,
    pub nonce: S,
    pub ciphertext: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_version: Option<u32>,
    pub created_at: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_spec: Option<S>,
    #[serde(
        rename = "client_message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_message_id: Option<S>,
    #[serde(
        rename = "request_fingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_fingerprint: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_data: Option<serde_json::Value>,
    /// The root-key epoch of a group or broadcast body; absent means 0.
    #[serde(default, skip_serializing_if = "super::is_epoch_zero")]
    pub key_epoch: u64,
    /// This broker: a copy for an observer connection (§3.1), `received` or `sent`; it needs
    /// no `client_ack` and leaves the message queued for the member's sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<S>,
}

impl Push<&str> {
    /// This push as a JSON `push` frame, `type` first and then its fields in order, absent ones
    /// left out: the bytes serde writes for `ServerMessage::Push`, with strings that need no
    /// escape copied as they are (`codec::write_json_str`; issue 14).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Every field named: a field added to `Push` does not compile here until it is written.
        let Push {
            message_id,
            mesh_id,
            sender_pubkey,
            sender_member_pubkey,
            sender_member_id,
            sender_name,
            topic,
            reply_to_id,
            priority,
            nonce,
            ciphertext,
            body_version,
            created_at,
            target_spec,
            client_message_id,
            request_fingerprint,
            subtype,
            event,
            event_data,
            key_epoch,
            mirror,
        } = self;
        JsonObject::new(out)
            .text("type", Some("push"))
            .text("messageId", Some(message_id))
            .text("meshId", Some(mesh_id))
            .text("senderPubkey", Some(sender_pubkey))
            .text("senderMemberPubkey", *sender_member_pubkey)
            .text("senderMemberId", *sender_member_id)
            .text("senderName", *sender_name)
            .text("topic", *topic)
            .text("replyToId", *reply_to_id)
            .text("priority", Some(priority))
            .text("nonce", Some(nonce))
            .text("ciphertext", Some(ciphertext))
            .value("bodyVersion", body_version.as_ref())
            .text("createdAt", Some(created_at))
            .text("targetSpec", *target_spec)
            .text("client_message_id", *client_message_id)
            .text("request_fingerprint", *request_fingerprint)
            .text("subtype", *subtype)
            .text("event", *event)
            .value("eventData", event_data.as_ref())
            .value(
                "keyEpoch",
                Some(key_epoch).filter(|e| !super::is_epoch_zero(e)),
            )
            .text("mirror", *mirror)
            .end();
    }
}

impl SendMessage {
    /// This send as a JSON frame with its `_reqId`, as serde writes it in an [`Envelope`], with
    /// strings that need no escape copied as they are (the busiest frame a client writes).
    ///
    /// [`Envelope`]: super::Envelope
    pub fn write_json(&self, req_id: Option<&str>, out: &mut Vec<u8>) {
        let SendMessage {
            id,
            target_spec,
            priority,
            nonce,
            ciphertext,
            body_version,
            reply_to_id,
            mentions,
            client_message_id,
            request_fingerprint,
            exclude,
            key_epoch,
        } = self;
        JsonObject::new(out)
            .text("_reqId", req_id)
            .text("type", Some("send"))
            .text("id", id.as_deref())
            .text("targetSpec", Some(target_spec))
            .text("priority", Some(priority))
            .text("nonce", Some(nonce))
            .text("ciphertext", Some(ciphertext))
            .value("bodyVersion", body_version.as_ref())
            .text("replyToId", reply_to_id.as_deref())
            .value("mentions", mentions.as_ref())
            .text("client_message_id", client_message_id.as_deref())
            .text("request_fingerprint", request_fingerprint.as_deref())
            .value("exclude", Some(exclude).filter(|e| !e.is_empty()))
            .value(
                "keyEpoch",
                Some(key_epoch).filter(|e| !super::is_epoch_zero(e)),
            )
            .end();
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientStatus {
    pub name: String,
    pub pubkey: String,
    /// `delivered` (pushed to one of its connections, or acknowledged), `held` or
    /// `disconnected`.
    pub status: String,
    /// This broker: the recipient acknowledged it (`client_ack`).
    #[serde(default)]
    pub acknowledged: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusResult {
    pub message_id: String,
    pub target_spec: String,
    pub delivered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// This broker: every recipient acknowledged it.
    #[serde(default)]
    pub acknowledged: bool,
    pub recipients: Vec<RecipientStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Encoding, Envelope, ServerMessage, codec};

    /// Texts with what JSON escapes (and what it does not) at every place a check of sixteen
    /// bytes at a time could miss it.
    fn texts() -> Vec<String> {
        let mut texts: Vec<String> = [
            "",
            "plain",
            "a\"quote",
            "back\\slash",
            "\u{1}control",
            "tab\tnew\nline\r",
            "\u{1f}unit separator",
            "\u{7f} delete and / slash are not escaped",
            "é unicode ✓ 𝄞",
            "</script>",
        ]
        .map(String::from)
        .to_vec();
        for len in [15, 16, 17, 31, 32, 33, 48] {
            for at in [0, len / 2, len - 1] {
                for special in ['"', '\\', '\n', '\u{0}'] {
                    let mut text: Vec<char> = vec!['x'; len];
                    text[at] = special;
                    texts.push(text.into_iter().collect());
                }
            }
        }
        texts
    }

    /// A push with every field set but some left out, its strings `text`.
    fn sample<'a, S: From<&'a str>>(text: &'a str, i: usize) -> Push<S> {
        let s = |n: usize| (!i.is_multiple_of(n)).then(|| S::from(text));
        Push {
            message_id: S::from(text),
            mesh_id: S::from(text),
            sender_pubkey: S::from(text),
            sender_member_pubkey: s(2),
            sender_member_id: s(3),
            sender_name: s(5),
            topic: s(7),
            reply_to_id: s(2),
            priority: S::from(text),
            nonce: S::from(text),
            ciphertext: S::from(text),
            body_version: i.is_multiple_of(2).then_some(i as u32),
            created_at: S::from(text),
            target_spec: s(3),
            client_message_id: s(5),
            request_fingerprint: s(7),
            subtype: s(2),
            event: s(3),
            event_data: i
                .is_multiple_of(3)
                .then(|| serde_json::json!({"text": text, "n": i})),
            key_epoch: (i % 4) as u64,
            mirror: s(5),
        }
    }

    /// A frame written by hand (`by_hand`) is byte for byte serde's JSON of `frame`.
    fn assert_written_as_serde_writes<T: Serialize>(
        by_hand: &[u8],
        frame: &Envelope<T>,
        text: &str,
    ) {
        let by_serde = codec::encode(frame, Encoding::Json);
        assert_eq!(
            String::from_utf8_lossy(by_hand),
            String::from_utf8_lossy(&by_serde),
            "{text:?}"
        );
    }

    #[test]
    fn a_send_written_by_hand_is_what_serde_writes() {
        use crate::protocol::ClientMessage;
        for (i, text) in texts().iter().enumerate() {
            let s = |n: usize| (!i.is_multiple_of(n)).then(|| text.clone());
            let send = SendMessage {
                id: s(2),
                target_spec: text.clone(),
                priority: text.clone(),
                nonce: text.clone(),
                ciphertext: text.clone(),
                body_version: i.is_multiple_of(2).then_some(i as u32),
                reply_to_id: s(3),
                mentions: s(5).map(|t| vec![t, "b".into()]),
                client_message_id: s(2),
                request_fingerprint: s(7),
                exclude: s(3).into_iter().collect(),
                key_epoch: (i % 4) as u64,
            };
            let req_id = s(5);
            let mut by_hand = Vec::new();
            send.write_json(req_id.as_deref(), &mut by_hand);
            let frame = Envelope {
                req_id,
                body: ClientMessage::Send(Box::new(send)),
            };
            assert_written_as_serde_writes(&by_hand, &frame, text);
        }
    }

    #[test]
    fn an_ack_written_by_hand_is_what_serde_writes() {
        for (i, text) in texts().iter().enumerate() {
            let s = |n: usize| (!i.is_multiple_of(n)).then(|| text.clone());
            let b = |n: usize| (!i.is_multiple_of(n)).then_some(i.is_multiple_of(2));
            let ack = Ack {
                id: s(2),
                message_id: s(3),
                queued: b(5),
                ok: b(3),
                error: s(7),
            };
            let req_id = s(5);
            let mut by_hand = Vec::new();
            ack.write_json(req_id.as_deref(), &mut by_hand);
            let frame = Envelope {
                req_id,
                body: ServerMessage::Ack(ack),
            };
            assert_written_as_serde_writes(&by_hand, &frame, text);
        }
    }

    #[test]
    fn a_push_written_by_hand_is_what_serde_writes() {
        for (i, text) in texts().iter().enumerate() {
            let mut by_hand = Vec::new();
            sample::<&str>(text, i).write_json(&mut by_hand);
            let push = ServerMessage::Push(Box::new(sample::<String>(text, i)));
            assert_written_as_serde_writes(&by_hand, &Envelope::new(push), text);
        }
    }
}
