//! Typed calls for reminders (PROTOCOL.md §6): schedule, list (opened) and cancel them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::api::Target;
use super::{ClientError, Identity, MeshClient, unexpected};
use crate::crypto;
use crate::protocol::messages::{Schedule, ScheduledAck, ScheduledEntry};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage};

impl MeshClient {
    /// Schedules a message (a reminder): one-shot at `deliver_at` or recurring by `cron`. The
    /// text is sealed here, like a message, unless `schedule.nonce` says it already is: to one
    /// key (empty `to` is this member's own key) with crypto_box, to a group or everyone under
    /// the mesh root key. The broker stores and delivers ciphertext only.
    pub async fn schedule(&self, mut schedule: Schedule) -> Result<ScheduledAck, ClientError> {
        if schedule.nonce.is_none() {
            if schedule.to.trim().is_empty() {
                schedule.to = self.entry().member_pubkey.clone();
            }
            let target = Target {
                label: schedule.to.clone(),
                spec: schedule.to.clone(),
            };
            let sealed = self.seal(&target, &schedule.message)?;
            // A plain group body (a mesh for original clients) goes as the original sends
            // reminders: the text, no nonce.
            if !sealed.nonce.is_empty() {
                schedule.message = sealed.ciphertext;
                schedule.nonce = Some(sealed.nonce);
                schedule.body_version = sealed.body_version;
                schedule.key_epoch = sealed.key_epoch;
            }
        }
        match self
            .request(ClientMessage::Schedule(Box::new(schedule)))
            .await?
        {
            ServerMessage::ScheduledAck(ack) => Ok(ack),
            other => Err(unexpected(other)),
        }
    }

    /// This member's scheduled messages, soonest first. Sealed ones that this client sealed
    /// come back opened (`nonce` cleared); one it cannot open (sealed by another session)
    /// keeps its `nonce` and says so in `message`.
    pub async fn list_scheduled(&self) -> Result<Vec<ScheduledEntry>, ClientError> {
        match self.request(ClientMessage::ListScheduled {}).await? {
            ServerMessage::ScheduledList { messages } => Ok(messages
                .into_iter()
                .map(|mut m| {
                    if m.nonce.is_some() {
                        match self.open_scheduled(&m) {
                            Ok(text) => {
                                m.message = text;
                                m.nonce = None;
                                m.body_version = None;
                                m.key_epoch = 0;
                            }
                            Err(why) => m.message = format!("[sealed: {why}]"),
                        }
                    }
                    m
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Opens a reminder this member sealed: crypto_box from one of its keys to `to`, or
    /// secretbox under the root key.
    fn open_scheduled(&self, m: &ScheduledEntry) -> Result<String, String> {
        let nonce: [u8; 24] = STANDARD
            .decode(m.nonce.as_deref().unwrap_or_default())
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or("its nonce is not 24 bytes")?;
        let body = STANDARD
            .decode(&m.message)
            .map_err(|_| "its ciphertext is not base64")?;
        let text = if m.body_version == Some(2) {
            let root = self
                .key_ring()
                .get(m.key_epoch)
                .ok_or_else(|| super::missing_epoch(m.key_epoch))?;
            crypto::secretbox_open_easy(&body, &nonce, &root).map_err(|e| e.to_string())?
        } else {
            let to = Pubkey::parse(&m.to).map_err(|e| e.to_string())?;
            let their = crypto::ed25519_pk_to_x25519(&to.0).map_err(|e| e.to_string())?;
            let mut keys = Vec::new();
            if let Identity::Session(k) = &self.options.identity {
                keys.push(k.clone());
            }
            keys.push(self.entry().member_keys().map_err(|e| e.to_string())?);
            keys.iter()
                .find_map(|k| {
                    crypto::box_open_easy(&body, &nonce, &their, &k.to_x25519().secret).ok()
                })
                .ok_or("another session of yours sealed it")?
        };
        String::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_string())
    }

    /// Cancels one of this member's scheduled messages; false when there was none by that id.
    pub async fn cancel_scheduled(&self, id: &str) -> Result<bool, ClientError> {
        match self
            .request(ClientMessage::CancelScheduled {
                scheduled_id: id.into(),
            })
            .await?
        {
            ServerMessage::CancelScheduledAck { ok, .. } => Ok(ok),
            other => Err(unexpected(other)),
        }
    }
}
