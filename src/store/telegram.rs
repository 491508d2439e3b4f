//! The Telegram bridge's table (PROTOCOL.md §24): per mesh, the bot token sealed to the
//! broker's service key, the `getUpdates` offset (so an update is handled once, across
//! restarts too), the pending join codes (hashed) and the Telegram users who joined, each with
//! the secret half of its key sealed to the service key.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::meshes::{insert_member, name_taken};
use super::records::MEMBERS;
use super::{Member, Store, StoreError, decode_opt, encode};

/// `mesh_id → TelegramRecord`
pub(crate) const TELEGRAM: TableDefinition<&str, &[u8]> = TableDefinition::new("telegram");
/// `(mesh_id, epoch) → root key sealed to the service key`: what the bridge opens group and
/// broadcast messages with. Only while connected, and only when the connecting client
/// handed the keys over.
pub(crate) const TELEGRAM_ROOT_KEYS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("telegram_root_keys");

/// Most unexpired join codes a mesh keeps; the oldest go first.
pub const MAX_INVITES: usize = 100;

/// Opens the table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(TELEGRAM)?;
    tx.open_table(TELEGRAM_ROOT_KEYS)?;
    Ok(())
}

/// The epochs whose root key a mesh's bridge holds.
fn key_epochs_in(
    table: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    mesh_id: &str,
) -> Result<Vec<u64>, StoreError> {
    table
        .range((mesh_id, 0)..=(mesh_id, u64::MAX))?
        .map(|row| row.map(|(k, _)| k.value().1).map_err(StoreError::from))
        .collect()
}

/// Whether a mesh's bridge is connected and holds root keys (and so takes new epochs).
fn holds_root_keys(tx: &WriteTransaction, mesh_id: &str) -> Result<bool, StoreError> {
    Ok(connected_row(&tx.open_table(TELEGRAM)?, mesh_id)?.is_some()
        && !key_epochs_in(&tx.open_table(TELEGRAM_ROOT_KEYS)?, mesh_id)?.is_empty())
}

/// The Telegram users of a mesh whose bridge holds no root key: they must not be sealed a new
/// root key at a rotation (the broker keeps their secret keys), see `keys::holders_in`.
pub(crate) fn keyless_users(
    telegram: &impl ReadableTable<&'static str, &'static [u8]>,
    root_keys: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    mesh_id: &str,
) -> Result<Vec<String>, StoreError> {
    let Some(record) = decode_opt::<TelegramRecord>(telegram.get(mesh_id)?)? else {
        return Ok(Vec::new());
    };
    if !key_epochs_in(root_keys, mesh_id)?.is_empty() {
        return Ok(Vec::new());
    }
    Ok(record.users.into_iter().map(|u| u.member_id).collect())
}

/// Deletes the bridge's root keys and the copies rotations sealed to its users.
fn forget_root_keys(
    tx: &WriteTransaction,
    mesh_id: &str,
    users: &[TelegramUserRecord],
) -> Result<(), StoreError> {
    let mut table = tx.open_table(TELEGRAM_ROOT_KEYS)?;
    for epoch in key_epochs_in(&table, mesh_id)? {
        table.remove((mesh_id, epoch))?;
    }
    let ids: Vec<String> = users.iter().map(|u| u.member_id.clone()).collect();
    super::keys::forget_sealed_copies(tx, mesh_id, &ids)
}

/// A root key handed to the bridge: its epoch, the check value of the opened key (computed by
/// the broker) and the key sealed to the service key.
#[derive(Debug, Clone)]
pub struct BridgeRootKey {
    pub epoch: u64,
    pub check: String,
    pub sealed: Vec<u8>,
}

/// Why root keys were refused (nothing was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeKeyRefusal {
    /// The key's check value is not the one stored for its epoch.
    Mismatch { epoch: u64 },
}

/// Compares each key with its epoch's stored check value (writes nothing): the keys that
/// can be kept. A key whose epoch has no stored check value (epoch 0 after a rotation) is left
/// out, since nothing tells it is right.
fn check_root_keys(
    tx: &WriteTransaction,
    mesh_id: &str,
    keys: &[BridgeRootKey],
) -> Result<Result<Vec<BridgeRootKey>, BridgeKeyRefusal>, StoreError> {
    let mut checked = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(expected) = super::keys::epoch_check(tx, mesh_id, key.epoch)? else {
            continue;
        };
        if !crate::crypto::constant_time_eq(expected.as_bytes(), key.check.as_bytes()) {
            return Ok(Err(BridgeKeyRefusal::Mismatch { epoch: key.epoch }));
        }
        checked.push(key.clone());
    }
    Ok(Ok(checked))
}

/// Stores `keys` after [`check_root_keys`] passed them.
fn insert_root_keys(
    tx: &WriteTransaction,
    mesh_id: &str,
    keys: &[BridgeRootKey],
) -> Result<(), StoreError> {
    let mut table = tx.open_table(TELEGRAM_ROOT_KEYS)?;
    for key in keys {
        table.insert((mesh_id, key.epoch), key.sealed.as_slice())?;
    }
    Ok(())
}

/// A mesh's bridge record, if a bot is connected.
fn connected_row(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    mesh_id: &str,
) -> Result<Option<TelegramRecord>, StoreError> {
    Ok(decode_opt::<TelegramRecord>(table.get(mesh_id)?)?.filter(|r| r.sealed_token.is_some()))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramRecord {
    pub mesh_id: String,
    /// The bot token sealed to the service key; `None` once disconnected.
    pub sealed_token: Option<Vec<u8>>,
    pub bot_username: Option<String>,
    /// Where Telegram users' messages go: a member pubkey, `@group` or `*`.
    pub target: String,
    /// The next `getUpdates` offset (the last handled `update_id` + 1).
    pub offset: i64,
    pub last_poll_ms: Option<i64>,
    pub last_error: Option<String>,
    pub users: Vec<TelegramUserRecord>,
    pub invites: Vec<TelegramInvite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramUserRecord {
    pub user_id: i64,
    pub chat_id: i64,
    pub username: String,
    pub member_id: String,
    /// The member's ed25519 secret key (hex) sealed to the service key.
    pub sealed_secret: Vec<u8>,
    pub joined_at_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelegramInvite {
    /// SHA-256 of the code, hex.
    pub code_hash: String,
    pub expires_at_ms: i64,
    /// The member who made it (`None` in codes stored before it was kept): the code lets
    /// someone in while that member may still invite, and with no capability it lacks then.
    #[serde(default)]
    pub created_by: Option<String>,
}

/// Why a `/join` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TelegramJoinRefusal {
    /// No such code, used already, or expired.
    BadCode,
    AlreadyJoined,
    NameTaken,
    NotConnected,
}

impl Store {
    pub fn telegram(&self, mesh_id: &str) -> Result<Option<TelegramRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(TELEGRAM)?.get(mesh_id)?)
    }

    /// Every mesh's bridge record (connected or not).
    pub fn telegram_bridges(&self) -> Result<Vec<TelegramRecord>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(TELEGRAM)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(super::decode(v.value())?);
        }
        Ok(out)
    }

    /// Stores a checked token (sealed), the target and the root keys handed over (replacing
    /// those held; none: direct messages only); joined users are kept. Each key is compared
    /// with its epoch's stored check value first: one that does not match refuses it all. The
    /// offset is kept only when it is the same bot. Audited (bot name, target and key epochs,
    /// never the token or a key).
    #[allow(clippy::too_many_arguments)]
    pub async fn connect_telegram(
        &self,
        mesh_id: String,
        sealed_token: Vec<u8>,
        bot_username: Option<String>,
        target: String,
        root_keys: Vec<BridgeRootKey>,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<Result<Vec<u64>, BridgeKeyRefusal>, StoreError> {
        self.write(move |tx| {
            let root_keys = match check_root_keys(tx, &mesh_id, &root_keys)? {
                Ok(keys) => keys,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let old: Option<TelegramRecord> =
                decode_opt(tx.open_table(TELEGRAM)?.get(mesh_id.as_str())?)?;
            let users = old.as_ref().map(|o| o.users.clone()).unwrap_or_default();
            forget_root_keys(tx, &mesh_id, &users)?;
            insert_root_keys(tx, &mesh_id, &root_keys)?;
            let mut table = tx.open_table(TELEGRAM)?;
            let same_bot = old.as_ref().is_some_and(|o| o.bot_username == bot_username);
            let record = TelegramRecord {
                mesh_id: mesh_id.clone(),
                sealed_token: Some(sealed_token),
                offset: if same_bot {
                    old.as_ref().map_or(0, |o| o.offset)
                } else {
                    0
                },
                bot_username: bot_username.clone(),
                target: target.clone(),
                last_poll_ms: None,
                last_error: None,
                users,
                invites: old.map(|o| o.invites).unwrap_or_default(),
            };
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            drop(table);
            let epochs: Vec<u64> = root_keys.iter().map(|k| k.epoch).collect();
            let listed: Vec<String> = epochs.iter().map(u64::to_string).collect();
            let note = AuditNote::new(AuditEvent::TelegramConnected, by)
                .with("bot", bot_username.unwrap_or_default())
                .with("target", &target)
                .with("keyEpochs", listed.join(","));
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(epochs))
        })
        .await
    }

    /// Deletes the token and the pending join codes; whether a bridge was connected. The
    /// joined users stay members (their messages wait until a bridge is connected again).
    pub async fn disconnect_telegram(
        &self,
        mesh_id: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(TELEGRAM)?;
            let Some(mut record) = decode_opt::<TelegramRecord>(table.get(mesh_id.as_str())?)?
            else {
                return Ok(false);
            };
            let was = record.sealed_token.take().is_some();
            record.invites.clear();
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            drop(table);
            forget_root_keys(tx, &mesh_id, &record.users)?;
            if was {
                let note = AuditNote::new(AuditEvent::TelegramDisconnected, by);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(was)
        })
        .await
    }

    /// The epochs whose root key the mesh's bridge holds (none: direct messages only).
    pub fn telegram_key_epochs(&self, mesh_id: &str) -> Result<Vec<u64>, StoreError> {
        let rt = self.read()?;
        key_epochs_in(&rt.open_table(TELEGRAM_ROOT_KEYS)?, mesh_id)
    }

    /// The bridge's root key of `epoch`, sealed to the service key.
    pub fn telegram_root_key(
        &self,
        mesh_id: &str,
        epoch: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(TELEGRAM_ROOT_KEYS)?;
        let key = table.get((mesh_id, epoch))?;
        Ok(key.map(|k| k.value().to_vec()))
    }

    /// A Telegram user's sealed copy of `epoch`'s root key (made by a rotation) and the check
    /// value that rotation stored, when the bridge is connected and holds root keys (it takes
    /// new epochs only then).
    pub async fn telegram_rotated_key(
        &self,
        mesh_id: String,
        member_id: String,
        epoch: u64,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.write(move |tx| {
            let mesh_id = mesh_id.as_str();
            if !holds_root_keys(tx, mesh_id)? {
                return Ok(None);
            }
            let Some(copy) = super::keys::sealed_copy(tx, mesh_id, &member_id, epoch)? else {
                return Ok(None);
            };
            Ok(super::keys::epoch_check(tx, mesh_id, epoch)?.map(|check| (copy, check)))
        })
        .await
    }

    /// Adds the root key of a later epoch to a bridge that holds root keys (taken from a
    /// Telegram user's sealed copy), after comparing it with the epoch's check value; whether
    /// it was stored.
    pub async fn add_telegram_root_key(
        &self,
        mesh_id: String,
        key: BridgeRootKey,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mesh_id = mesh_id.as_str();
            if !holds_root_keys(tx, mesh_id)? {
                return Ok(false);
            }
            match check_root_keys(tx, mesh_id, std::slice::from_ref(&key))? {
                Ok(keys) if !keys.is_empty() => {
                    insert_root_keys(tx, mesh_id, &keys)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    /// Keeps a join code's hash until `expires_at_ms`; false when no bridge is connected.
    pub async fn add_telegram_invite(
        &self,
        mesh_id: String,
        invite: TelegramInvite,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(TELEGRAM)?;
            let Some(mut record) = connected_row(&table, &mesh_id)? else {
                return Ok(false);
            };
            record.invites.retain(|i| i.expires_at_ms > now_ms);
            if record.invites.len() >= MAX_INVITES {
                record.invites.remove(0);
            }
            record.invites.push(invite);
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            Ok(true)
        })
        .await
    }

    /// Records a `getUpdates` round: the next offset (never moved back), when, and the error
    /// if it failed. Nothing is written for a bridge disconnected meanwhile.
    pub async fn telegram_polled(
        &self,
        mesh_id: String,
        next_offset: Option<i64>,
        error: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(TELEGRAM)?;
            let Some(mut record) = connected_row(&table, &mesh_id)? else {
                return Ok(());
            };
            if let Some(next) = next_offset {
                record.offset = record.offset.max(next);
            }
            if error.is_none() {
                record.last_poll_ms = Some(now_ms);
            }
            record.last_error = error;
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            Ok(())
        })
        .await
    }

    /// A Telegram user's `/join <code>`: uses up the code (by its hash), makes `member` and
    /// records `user`, in one transaction. Audited as a member joining.
    pub async fn join_telegram(
        &self,
        code_hash: String,
        user: TelegramUserRecord,
        member: Member,
        now_ms: i64,
    ) -> Result<Result<(), TelegramJoinRefusal>, StoreError> {
        self.write(move |tx| {
            let mesh_id = member.mesh_id.clone();
            let mut table = tx.open_table(TELEGRAM)?;
            let Some(mut record) = connected_row(&table, &mesh_id)? else {
                return Ok(Err(TelegramJoinRefusal::NotConnected));
            };
            if record.users.iter().any(|u| u.user_id == user.user_id) {
                return Ok(Err(TelegramJoinRefusal::AlreadyJoined));
            }
            let Some(at) = record
                .invites
                .iter()
                .position(|i| i.code_hash == code_hash && i.expires_at_ms > now_ms)
            else {
                return Ok(Err(TelegramJoinRefusal::BadCode));
            };
            // As for a member's invite (PROTOCOL.md §12.1): valid while its maker may
            // invite, and the newcomer gets no capability its maker lacks.
            let inviter = match &record.invites[at].created_by {
                Some(by) => match crate::store::perms::member_perms_in(tx, &mesh_id, by)? {
                    Some(p) if p.may_invite(member.role) => Some(p),
                    _ => return Ok(Err(TelegramJoinRefusal::BadCode)),
                },
                None => None,
            };
            if name_taken(&tx.open_table(MEMBERS)?, &mesh_id, &member.display_name)? {
                return Ok(Err(TelegramJoinRefusal::NameTaken));
            }
            record.invites.remove(at);
            record.users.push(user);
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            drop(table);
            insert_member(tx, &member)?;
            let note = AuditNote::new(AuditEvent::MemberJoined, &member)
                .with("memberId", &member.id)
                .with("pubkey", member.pubkey.to_hex())
                .with("role", member.role.as_str())
                .with("via", "telegram");
            let note = crate::store::perms::limit_to_inviter(tx, &member, inviter.as_ref(), note)?;
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(()))
        })
        .await
    }
}
