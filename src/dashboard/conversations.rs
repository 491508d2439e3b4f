//! The conversations the dashboard shows: every message this member received or sent since the
//! dashboard started (the broker keeps no readable history: it holds ciphertext until the
//! recipients acknowledge), decrypted here, threaded by peer or group.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::client::MeshClient;
use crate::protocol::Pubkey;
use crate::protocol::messages::Push;

/// How many messages the dashboard keeps in memory.
const KEEP: usize = 2_000;

/// One message as the page shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    /// The thread: the other member's (or session's) pubkey, `@group`, `*`, or a push
    /// subtype such as `reminder`.
    pub thread: String,
    /// `received` or `sent`.
    pub direction: &'static str,
    /// Who wrote it (a display name).
    pub from: String,
    /// The target spec it was sent to.
    pub to: String,
    pub priority: String,
    pub created_at: String,
    /// The text, or why it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
}

#[derive(Default)]
pub struct Log {
    messages: Mutex<VecDeque<Message>>,
}

impl Log {
    /// Keeps `m` unless a message with its id is kept already; true when it is new.
    pub fn add(&self, m: Message) -> bool {
        let Ok(mut all) = self.messages.lock() else {
            return false;
        };
        if !m.id.is_empty() && all.iter().any(|k| k.id == m.id) {
            return false;
        }
        if all.len() >= KEEP {
            all.pop_front();
        }
        all.push_back(m);
        true
    }

    pub fn all(&self) -> Vec<Message> {
        self.messages
            .lock()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Whether a message push is a copy of what this member sent: the broker's mirror says so
/// (PROTOCOL.md §3.1), or, on a broker without mirrors, its sender is this member.
fn is_sent(client: &MeshClient, push: &Push) -> bool {
    match push.mirror.as_deref() {
        Some(side) => side == "sent",
        None => {
            let me = client.entry().member_pubkey.as_str();
            push.sender_member_pubkey.as_deref() == Some(me) || push.sender_pubkey == me
        }
    }
}

/// A message push, decrypted. A copy of a direct message this member sent is a crypto_box
/// between its key and the recipient's, which it opens with the recipient's public key.
pub fn from_push(client: &MeshClient, push: &Push) -> Message {
    let sent = is_sent(client, push);
    let target = push.target_spec.clone().unwrap_or_default();
    let direct = Pubkey::is_shape(&target);
    let text = if sent && direct {
        let mut turned = push.clone();
        turned.sender_pubkey = target.clone();
        client.decrypt(&turned)
    } else {
        client.decrypt(push)
    };
    let thread = match (&push.subtype, direct, sent) {
        (Some(subtype), _, _) => subtype.clone(),
        (None, true, true) => target.clone(),
        (None, true, false) => push
            .sender_member_pubkey
            .clone()
            .unwrap_or_else(|| push.sender_pubkey.clone()),
        (None, false, _) => target.clone(),
    };
    let (text, problem) = match text {
        Ok(t) => (Some(t), None),
        // PROTOCOL.md §3.1: a session's key stays in that session.
        Err(_) if sent && direct => (
            None,
            Some("sent by one of your sessions with its own key, which only it holds".into()),
        ),
        Err(p) => (None, Some(p)),
    };
    Message {
        id: push.message_id.clone(),
        thread,
        direction: if sent { "sent" } else { "received" },
        from: push
            .sender_name
            .clone()
            .unwrap_or_else(|| push.sender_pubkey.chars().take(8).collect()),
        to: target,
        priority: push.priority.clone(),
        created_at: push.created_at.clone(),
        text,
        problem,
        subtype: push.subtype.clone(),
    }
}
