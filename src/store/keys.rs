//! Root-key epochs and the sealed copies of each epoch's key (PROTOCOL.md §12.4). The broker
//! never holds a root key: only the current epoch, each member's sealed copy of each epoch's
//! key (`crypto_box_seal` to that member, opaque here) and the current key's check value.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::audit::{self, AuditEvent, AuditNote};
use super::members::{BANS, is_banned_in};
use super::records::{INVITES, MEMBERS, MESH_INVITES, MESHES};
use super::{Invite, Member, Mesh, Store, StoreError, decode, decode_opt, encode};

/// `mesh_id → current key epoch`; a mesh without a row is at epoch 0 (its creation key).
const KEY_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("key_epochs");
/// `(mesh_id, member_id, epoch) → sealed copy` (standard base64).
const SEALED_KEYS: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("sealed_keys");

/// Most sealed copies one `keys` answer carries (the newest ones).
pub const MAX_KEYS_RETURNED: usize = 256;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(KEY_EPOCHS)?;
    tx.open_table(SEALED_KEYS)?;
    Ok(())
}

/// The one rule for who must hold a mesh's root key: every member still in it and not banned.
/// A rotation seals the new key to exactly these members, and the broker refuses one that
/// misses any of them or includes anyone else.
pub fn holds_keys(member: &Member, banned: bool) -> bool {
    member.revoked_at_ms.is_none() && !banned
}

/// A rotation as the broker checks and stores it.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub mesh_id: String,
    /// The owner or admin rotating.
    pub by: String,
    pub epoch: u64,
    pub check: String,
    /// member id → sealed copy.
    pub sealed: BTreeMap<String, String>,
    pub now_ms: i64,
}

/// A stored rotation: who got which sealed copy, and how many invites went with the old key.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub epoch: u64,
    pub sealed: BTreeMap<String, String>,
    pub invites_revoked: usize,
}

/// Why a rotation was refused (nothing was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationRefusal {
    Forbidden,
    /// The epoch is not the current one plus 1 (another rotation came first).
    WrongEpoch {
        current: u64,
    },
    /// The sealed copies are not exactly one per member that must hold keys (membership
    /// changed since the client asked): ids missing and ids that must not be there.
    Members {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    MeshGone,
}

fn epoch_in(
    table: &impl ReadableTable<&'static str, u64>,
    mesh_id: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(mesh_id)?.map(|v| v.value()).unwrap_or(0))
}

fn holders_in(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bans: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
) -> Result<Vec<Member>, StoreError> {
    let mut out = Vec::new();
    for row in members.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        let m: Member = decode(v.value())?;
        if holds_keys(&m, is_banned_in(bans, mesh_id, &m.id)?) {
            out.push(m);
        }
    }
    Ok(out)
}

impl Store {
    /// The mesh's current key epoch (0 until its first rotation).
    pub fn key_epoch(&self, mesh_id: &str) -> Result<u64, StoreError> {
        let rt = self.read()?;
        epoch_in(&rt.open_table(KEY_EPOCHS)?, mesh_id)
    }

    /// The current epoch and the members that must hold its key, in one snapshot.
    pub fn key_holders(&self, mesh_id: &str) -> Result<(u64, Vec<Member>), StoreError> {
        let rt = self.read()?;
        let epoch = epoch_in(&rt.open_table(KEY_EPOCHS)?, mesh_id)?;
        Ok((
            epoch,
            holders_in(&rt.open_table(MEMBERS)?, &rt.open_table(BANS)?, mesh_id)?,
        ))
    }

    /// The current epoch and `member_id`'s sealed copies of the epochs after `since` (the
    /// newest [`MAX_KEYS_RETURNED`]), oldest first.
    pub fn sealed_keys(
        &self,
        mesh_id: &str,
        member_id: &str,
        since: u64,
    ) -> Result<(u64, Vec<(u64, String)>), StoreError> {
        let rt = self.read()?;
        let current = epoch_in(&rt.open_table(KEY_EPOCHS)?, mesh_id)?;
        let table = rt.open_table(SEALED_KEYS)?;
        let from = since.saturating_add(1);
        let mut out = Vec::new();
        for row in table
            .range((mesh_id, member_id, from)..=(mesh_id, member_id, u64::MAX))?
            .rev()
        {
            let (k, v) = row?;
            out.push((k.value().2, v.value().to_string()));
            if out.len() == MAX_KEYS_RETURNED {
                break;
            }
        }
        out.reverse();
        Ok((current, out))
    }

    /// Stores a rotation, all or nothing: the actor is a live owner or admin, the epoch is the
    /// current one plus 1, there is exactly one sealed copy per member that must hold keys;
    /// then the copies, the new check value and the epoch are written and every invite of the
    /// mesh that could still be used is revoked (its link carries the old key).
    pub async fn rotate_root_key(
        &self,
        rotation: Rotation,
    ) -> Result<Result<Rotated, RotationRefusal>, StoreError> {
        self.write(move |tx| {
            let mesh_id = rotation.mesh_id.as_str();
            let mut meshes = tx.open_table(MESHES)?;
            let Some(mut mesh) = decode_opt::<Mesh>(meshes.get(mesh_id)?)? else {
                return Ok(Err(RotationRefusal::MeshGone));
            };
            let members = tx.open_table(MEMBERS)?;
            let actor: Option<Member> = decode_opt(members.get((mesh_id, rotation.by.as_str()))?)?;
            let bans = tx.open_table(BANS)?;
            let banned = match &actor {
                Some(a) => is_banned_in(&bans, mesh_id, &a.id)?,
                None => false,
            };
            let Some(actor) = actor.filter(|a| a.role.can_manage() && holds_keys(a, banned)) else {
                return Ok(Err(RotationRefusal::Forbidden));
            };
            let mut epochs = tx.open_table(KEY_EPOCHS)?;
            let current = epoch_in(&epochs, mesh_id)?;
            if rotation.epoch != current.saturating_add(1) {
                return Ok(Err(RotationRefusal::WrongEpoch { current }));
            }
            let holders = holders_in(&members, &bans, mesh_id)?;
            let missing: Vec<String> = holders
                .iter()
                .filter(|m| !rotation.sealed.contains_key(&m.id))
                .map(|m| m.id.clone())
                .collect();
            let extra: Vec<String> = rotation
                .sealed
                .keys()
                .filter(|id| !holders.iter().any(|m| &m.id == *id))
                .cloned()
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Ok(Err(RotationRefusal::Members { missing, extra }));
            }
            let mut sealed = tx.open_table(SEALED_KEYS)?;
            for (member_id, copy) in &rotation.sealed {
                sealed.insert((mesh_id, member_id.as_str(), rotation.epoch), copy.as_str())?;
            }
            epochs.insert(mesh_id, rotation.epoch)?;
            mesh.root_key_check = Some(rotation.check.clone());
            meshes.insert(mesh_id, encode(&mesh).as_slice())?;
            let invites_revoked = revoke_usable_invites(tx, mesh_id, rotation.now_ms)?;
            let note = AuditNote::new(AuditEvent::KeyRotated, &actor)
                .with("epoch", rotation.epoch)
                .with("members", rotation.sealed.len())
                .with("invitesRevoked", invites_revoked);
            audit::append(tx, mesh_id, &note, rotation.now_ms)?;
            Ok(Ok(Rotated {
                epoch: rotation.epoch,
                sealed: rotation.sealed,
                invites_revoked,
            }))
        })
        .await
    }
}

/// Revokes every invite of `mesh_id` that could still let someone in; returns how many.
fn revoke_usable_invites(
    tx: &WriteTransaction,
    mesh_id: &str,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let listed = tx.open_table(MESH_INVITES)?;
    let mut invites = tx.open_table(INVITES)?;
    let mut usable = Vec::new();
    for row in listed.range((mesh_id, "")..)? {
        let (k, _) = row?;
        let (m, code) = k.value();
        if m != mesh_id {
            break;
        }
        if let Some(invite) = decode_opt::<Invite>(invites.get(code)?)?
            && invite.is_active(now_ms)
        {
            usable.push(invite);
        }
    }
    for invite in &mut usable {
        invite.revoked = true;
        invites.insert(invite.code.as_str(), encode(&*invite).as_slice())?;
    }
    Ok(usable.len())
}
