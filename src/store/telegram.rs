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
const TELEGRAM: TableDefinition<&str, &[u8]> = TableDefinition::new("telegram");

/// Most unexpired join codes a mesh keeps; the oldest go first.
pub const MAX_INVITES: usize = 100;

/// Opens the table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(TELEGRAM)?;
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

    /// Stores a checked token (sealed) and the target; joined users are kept. The offset is
    /// kept only when it is the same bot. Audited (bot name and target, never the token).
    pub async fn connect_telegram(
        &self,
        mesh_id: String,
        sealed_token: Vec<u8>,
        bot_username: Option<String>,
        target: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(TELEGRAM)?;
            let old: Option<TelegramRecord> = decode_opt(table.get(mesh_id.as_str())?)?;
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
                users: old.as_ref().map(|o| o.users.clone()).unwrap_or_default(),
                invites: old.map(|o| o.invites).unwrap_or_default(),
            };
            table.insert(mesh_id.as_str(), encode(&record).as_slice())?;
            let note = AuditNote::new(AuditEvent::TelegramConnected, by)
                .with("bot", bot_username.unwrap_or_default())
                .with("target", &target);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(())
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
            if was {
                let note = AuditNote::new(AuditEvent::TelegramDisconnected, by);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(was)
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
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(()))
        })
        .await
    }
}
