//! Stored records and the tables that hold them. Keys are tuples so one mesh's rows are one range.

use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::protocol::Pubkey;
use crate::protocol::messages::GroupRef;

/// `mesh_id → Mesh`
pub(crate) const MESHES: TableDefinition<&str, &[u8]> = TableDefinition::new("meshes");
/// `slug → mesh_id`
pub(crate) const MESH_SLUGS: TableDefinition<&str, &str> = TableDefinition::new("mesh_slugs");
/// `(mesh_id, member_id) → Member`
pub(crate) const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// `(mesh_id, pubkey hex) → member_id`
pub(crate) const MEMBER_KEYS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("member_keys");
/// `code → Invite`
pub(crate) const INVITES: TableDefinition<&str, &[u8]> = TableDefinition::new("invites");
/// `(mesh_id, invite_id) → code`: an invite id is registered once, under one code.
pub(crate) const INVITE_IDS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("invite_ids");
/// `(mesh_id, code) → ()`: one mesh's invites, for `list_invites`.
pub(crate) const MESH_INVITES: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("mesh_invites");

/// `(mesh_id, message_id) → first seq (8 bytes, little-endian) + MessageRecord`: a message
/// some recipient has not acknowledged yet. Its n-th recipient's place in its queue is
/// `seq + n`; the queues themselves are kept in memory (`queue::index`).
pub(crate) const QUEUED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("queued");
/// `(mesh_id, message_id, recipient key without its mesh) → acknowledged at (ms)`: the
/// acknowledgements of a message with several recipients, but for the last one (which retires
/// it).
pub(crate) const ACKS: TableDefinition<(&str, &str, &str), i64> = TableDefinition::new("acks");

/// Schema 3's queue tables, read only by the migration to schema 4 (`queue::migrate`), which
/// deletes them.
pub(crate) mod v3 {
    use redb::TableDefinition;

    /// `(mesh_id, message_id) → MessageRecord`
    pub(crate) const MESSAGES: TableDefinition<(&str, &str), &[u8]> =
        TableDefinition::new("messages");
    /// `(recipient key, seq) → message_id`: each recipient's queue, FIFO by seq.
    pub(crate) const QUEUE: TableDefinition<(&str, u64), &str> = TableDefinition::new("queue");
    /// `recipient key → entries in its queue`.
    pub(crate) const QUEUE_COUNTS: TableDefinition<&str, u64> =
        TableDefinition::new("queue_counts");
    /// `(recipient key, message_id) → Delivery`.
    pub(crate) const DELIVERIES: TableDefinition<(&str, &str), &[u8]> =
        TableDefinition::new("deliveries");
    /// `(mesh_id, message_id) → recipients yet to acknowledge` (several recipients only).
    pub(crate) const WAITING: TableDefinition<(&str, &str), u32> = TableDefinition::new("waiting");
}
/// Schema 4's expiry index, deleted by schema 5 (the queues in memory keep waiting messages
/// in the order their retention ends).
pub(crate) mod v4 {
    use redb::TableDefinition;

    /// `(expires_at_ms, mesh_id, message_id) → ()`.
    pub(crate) const EXPIRY: TableDefinition<(u64, &str, &str), ()> =
        TableDefinition::new("expiry");
}
/// `(mesh_id, message_id) → DeliveredRecord`: what is kept of a message once every recipient
/// acknowledged it (no body), for `message_status` and resends, until `keep_until_ms`.
pub(crate) const DELIVERED: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("delivered");
/// `(mesh_id, member_id, client_message_id) → message_id`: a resent message is stored once.
/// Written by stores before `CLIENT_KEYS`; still read and swept.
pub(crate) const CLIENT_IDS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("client_ids");
/// `sha256(mesh_id, member_id, client_message_id)[..16] → message_id`: a resent message is
/// stored once (16 bytes of key per message instead of three strings).
pub(crate) const CLIENT_KEYS: TableDefinition<[u8; 16], &str> = TableDefinition::new("client_keys");
/// `(mesh_id, session pubkey hex) → KnownSession`: sessions that may receive held messages.
pub(crate) const SESSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("sessions");

/// Opens every table once so that read transactions never meet a missing table.
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(MESHES)?;
    tx.open_table(MESH_SLUGS)?;
    tx.open_table(MEMBERS)?;
    tx.open_table(MEMBER_KEYS)?;
    tx.open_table(INVITES)?;
    tx.open_table(INVITE_IDS)?;
    tx.open_table(MESH_INVITES)?;
    tx.open_table(QUEUED)?;
    tx.open_table(ACKS)?;
    tx.open_table(DELIVERED)?;
    tx.open_table(CLIENT_IDS)?;
    tx.open_table(CLIENT_KEYS)?;
    tx.open_table(SESSIONS)?;
    super::files::create_tables(tx)?;
    super::state::create_tables(tx)?;
    super::tasks::create_tables(tx)?;
    super::contexts::create_tables(tx)?;
    super::streams::create_tables(tx)?;
    super::memory::create_tables(tx)?;
    super::schedules::create_tables(tx)?;
    super::grants::create_tables(tx)?;
    super::profile::create_tables(tx)?;
    super::keys::create_tables(tx)?;
    super::audit::create_tables(tx)?;
    super::perms::create_tables(tx)?;
    super::members::create_tables(tx)?;
    super::skills::create_tables(tx)?;
    super::shared_tools::create_tables(tx)?;
    super::vectors::create_tables(tx)?;
    super::deployments::create_tables(tx)?;
    super::vault::create_tables(tx)?;
    super::watches::create_tables(tx)?;
    super::webhooks::create_tables(tx)?;
    super::clock::create_tables(tx)?;
    super::telegram::create_tables(tx)?;
    super::approvals::create_tables(tx)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mesh {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub owner_pubkey: Pubkey,
    /// Only in meshes created before schema 2, whose root key the broker used to keep (it is
    /// still stored as `root_key`): dropped once the owner's or an admin's client proves it
    /// holds the same key. New meshes never have one.
    #[serde(rename = "root_key", default, skip_serializing_if = "Option::is_none")]
    pub legacy_root_key: Option<String>,
    /// `HMAC-SHA256(root_key, "claudemesh-root-key-check")`, 64 hex, when known: a one-way
    /// commitment to the root key, never the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_key_check: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub self_editable: bool,
    /// How clients write group and broadcast bodies in this mesh.
    #[serde(default)]
    pub group_bodies: crate::protocol::messages::GroupBodies,
    /// The owner's signature over `group_bodies`, which clients check before writing plain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bodies_proof: Option<crate::protocol::messages::GroupBodiesProof>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Owner,
    Admin,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Admin => "admin",
            MemberRole::Member => "member",
        }
    }
    /// Roles an invite may grant.
    pub fn parse_invite_role(s: &str) -> Option<MemberRole> {
        match s {
            "admin" => Some(MemberRole::Admin),
            "member" => Some(MemberRole::Member),
            _ => None,
        }
    }
    pub fn can_manage(self) -> bool {
        matches!(self, MemberRole::Owner | MemberRole::Admin)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub mesh_id: String,
    pub pubkey: Pubkey,
    pub display_name: String,
    pub role: MemberRole,
    pub joined_at_ms: i64,
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
    #[serde(default)]
    pub groups: Vec<GroupRef>,
    #[serde(default)]
    pub last_seen_at_ms: Option<i64>,
    #[serde(default)]
    pub last_summary: Option<String>,
    #[serde(default)]
    pub invite_code: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub code: String,
    pub mesh_id: String,
    pub role: MemberRole,
    pub max_uses: u32,
    pub used: u32,
    /// Unix seconds, as signed.
    pub expires_at_s: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub revoked: bool,
    /// The key that signed `canonical` (v3): the owner key or an admin's member key. `None` for
    /// a v2 invite stored before schema 2 (revoked by the migration: v2 binds neither the
    /// code nor the uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_pubkey: Option<Pubkey>,
    pub canonical: String,
    pub signature: String,
}

impl Invite {
    /// True while it can still let someone in.
    pub fn is_active(&self, now_ms: i64) -> bool {
        !self.revoked && !self.is_expired(now_ms) && self.used < self.max_uses
    }

    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_s.saturating_mul(1000) <= now_ms
    }

    /// `valid`, `revoked`, `expired` or `exhausted` (the landing page and `invite list`).
    pub fn status(&self, now_ms: i64) -> &'static str {
        if self.revoked {
            "revoked"
        } else if self.is_expired(now_ms) {
            "expired"
        } else if self.used >= self.max_uses {
            "exhausted"
        } else {
            "valid"
        }
    }
}

/// One sent message, as the broker keeps it: ciphertext only.
///
/// Stored as a MessagePack array (fields by position, no names; records written before schema
/// 6 are maps by name and still read). The first five fields are the head that the
/// queues, a retirement and the sweeps read alone (`queue::index::QueuedHead`): keep them first
/// and in this order. New fields go at the end with `#[serde(default)]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    pub sender_member_id: String,
    #[serde(with = "compact_key")]
    pub target_spec: String,
    #[serde(default)]
    pub client_message_id: Option<String>,
    pub expires_at_ms: i64,
    /// Recipient keys (see [`RecipientKey`]) with their display names.
    pub recipients: Vec<(String, String)>,
    pub id: String,
    pub mesh_id: String,
    /// The key the sender spoke with (session or member), hex.
    #[serde(with = "compact_key")]
    pub sender_pubkey: String,
    #[serde(with = "compact_key")]
    pub sender_member_pubkey: String,
    pub sender_name: String,
    pub priority: Priority,
    pub nonce: String,
    pub ciphertext: String,
    #[serde(default)]
    pub body_version: Option<u32>,
    #[serde(default)]
    pub reply_to_id: Option<String>,
    #[serde(default)]
    pub mentions: Option<Vec<String>>,
    #[serde(default)]
    pub request_fingerprint: Option<String>,
    #[serde(default)]
    pub subtype: Option<String>,
    pub created_at_ms: i64,
    /// The root-key epoch of a group or broadcast body (0: the mesh's first key).
    #[serde(default)]
    pub key_epoch: u64,
}

/// How urgent a message is; gates delivery by the recipient's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Now,
    Next,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Now => "now",
            Priority::Next => "next",
            Priority::Low => "low",
        }
    }
}

/// A recipient's entry for one message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub seq: u64,
    pub mesh_id: String,
    #[serde(default)]
    pub delivered_at_ms: Option<i64>,
}

/// What is kept of a message once every recipient acknowledged it: its body and per-recipient
/// rows are dropped. Stored as a MessagePack array (fields by position, ~150 bytes); new fields
/// go at the end with `#[serde(default)]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveredRecord {
    pub sender_member_id: String,
    #[serde(with = "compact_key")]
    pub target_spec: String,
    pub client_message_id: Option<String>,
    /// `(recipient key, display name, acknowledged at ms)`.
    pub recipients: Vec<(String, String, i64)>,
    /// When the record is dropped (its key in the expiry index).
    pub keep_until_ms: i64,
}

/// A string that is a key (64 lowercase hex: a target spec, a sender's key) is kept as its 32
/// bytes, any other as text.
pub(crate) mod compact_key {
    use serde::{Deserializer, Serializer, de};

    use crate::protocol::keys::Pubkey;

    pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
        // (Lowercase only, as `Pubkey::parse` reads: an uppercase key would not read back as
        // written.)
        match Pubkey::parse(text) {
            Ok(key) => s.serialize_bytes(&key.0),
            Err(_) => s.serialize_str(text),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        struct Text;
        impl de::Visitor<'_> for Text {
            type Value = String;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("text, or a key's 32 bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                Ok(v.to_string())
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<String, E> {
                Ok(text_of(v))
            }
        }
        d.deserialize_any(Text)
    }

    /// The text of a value stored as bytes (a key's 32).
    pub fn text_of(bytes: &[u8]) -> String {
        match <[u8; 32]>::try_from(bytes) {
            Ok(key) => Pubkey(key).to_hex(),
            Err(_) => hex::encode(bytes),
        }
    }
}

/// Who a queue belongs to: a member (any of its sessions) or one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecipientKey {
    Member { mesh_id: String, member_id: String },
    Session { mesh_id: String, session: Pubkey },
}

impl RecipientKey {
    /// The string form used as a table key: `m/<mesh>/<member>` or `s/<mesh>/<session hex>`.
    pub fn encode(&self) -> String {
        match self {
            RecipientKey::Member { mesh_id, member_id } => ["m/", mesh_id, "/", member_id].concat(),
            RecipientKey::Session { mesh_id, session } => {
                ["s/", mesh_id, "/", &session.to_hex()].concat()
            }
        }
    }

    pub fn decode(s: &str) -> Option<RecipientKey> {
        let mut parts = s.splitn(3, '/');
        let (kind, mesh_id, rest) = (parts.next()?, parts.next()?, parts.next()?);
        match kind {
            "m" => Some(RecipientKey::Member {
                mesh_id: mesh_id.into(),
                member_id: rest.into(),
            }),
            "s" => Some(RecipientKey::Session {
                mesh_id: mesh_id.into(),
                session: Pubkey::parse(rest).ok()?,
            }),
            _ => None,
        }
    }
}

/// A session key that has said hello in a mesh, so messages to it can wait while it is away.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KnownSession {
    pub member_id: String,
    pub display_name: String,
    pub last_seen_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivered record's target spec after a round trip through its stored form, and the
    /// size of that form.
    fn round_trip(target: &str) -> (String, usize) {
        let record = DeliveredRecord {
            sender_member_id: "m1".into(),
            target_spec: target.into(),
            client_message_id: None,
            recipients: vec![],
            keep_until_ms: 1,
        };
        let bytes = rmp_serde::to_vec(&record).expect("encodes");
        let back: DeliveredRecord = rmp_serde::from_slice(&bytes).expect("decodes");
        (back.target_spec, bytes.len())
    }

    #[test]
    fn a_target_spec_reads_back_as_written_and_a_key_takes_32_bytes() {
        let key = "0123456789abcdef".repeat(4);
        let group = format!("@{}", "g".repeat(63));
        for target in [
            key.as_str(),
            "*",
            "@all",
            "@team/backend",
            &group,
            &format!("#{}", "t".repeat(63)),
            &key.to_uppercase(),
            &"zz".repeat(32),
            &key[..62],
        ] {
            assert_eq!(round_trip(target).0, target, "{target}");
        }
        let (key_len, text_len) = (round_trip(&key).1, round_trip(&group).1);
        assert!(
            key_len + 30 < text_len,
            "a key is kept as its 32 bytes: {key_len} bytes against {text_len} for 64 characters"
        );
    }

    #[test]
    fn a_recipient_key_reads_back_from_its_string_form() {
        let session = Pubkey::parse(&"ab".repeat(32)).expect("a key");
        let member = RecipientKey::Member {
            mesh_id: "mesh1".into(),
            member_id: "member/with/slashes".into(),
        };
        let by_session = RecipientKey::Session {
            mesh_id: "mesh1".into(),
            session,
        };
        assert_eq!(member.encode(), "m/mesh1/member/with/slashes");
        assert_eq!(by_session.encode(), format!("s/mesh1/{}", "ab".repeat(32)));
        for key in [member, by_session] {
            assert_eq!(RecipientKey::decode(&key.encode()), Some(key));
        }
        for bad in ["x/mesh1/m", "m/mesh1", "s/mesh1/not-a-key", ""] {
            assert_eq!(RecipientKey::decode(bad), None, "{bad}");
        }
    }
}
