//! Root-key epochs and the sealed copies of each epoch's key (PROTOCOL.md §12.4). The broker
//! never holds a root key: only the current epoch, each member's sealed copy of each epoch's
//! key (`crypto_box_seal` to that member, opaque here) and the current key's check value.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::audit::{self, AuditEvent, AuditNote};
use super::members::{BANS, is_banned_in};
use super::records::{INVITES, MEMBERS, MESH_INVITES, MESHES};
use super::{Invite, Member, MemberRole, Mesh, Store, StoreError, decode, decode_opt, encode};
use crate::protocol::messages::{AdminList, EpochKey, RotationProof};

/// `mesh_id → current key epoch`; a mesh without a row is at epoch 0 (its creation key).
const KEY_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("key_epochs");
/// `(mesh_id, member_id, epoch) → sealed copy` (standard base64).
const SEALED_KEYS: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("sealed_keys");
/// `(mesh_id, epoch) → RotationProof`: who signed each epoch's key, and the admin list that
/// vouched for a signer who is not the owner.
const ROTATION_PROOFS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("rotation_proofs");
/// `mesh_id → AdminList`: the newest admin list the owner signed.
const ADMIN_LISTS: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_lists");

/// Most sealed copies one `keys` answer carries (the newest ones).
pub const MAX_KEYS_RETURNED: usize = 256;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(KEY_EPOCHS)?;
    tx.open_table(SEALED_KEYS)?;
    tx.open_table(ROTATION_PROOFS)?;
    tx.open_table(ADMIN_LISTS)?;
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
    /// What the rotator signed (its `check` is the rotation's).
    pub proof: RotationProof,
    pub now_ms: i64,
}

/// A stored rotation: who got which sealed copy, and how many invites went with the old key.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub epoch: u64,
    pub sealed: BTreeMap<String, String>,
    pub invites_revoked: usize,
    /// As stored: with the admin list that vouched for a signer who is not the owner.
    pub proof: RotationProof,
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
    /// The signature does not make the rotator someone clients trust; the reason.
    Unsigned(String),
    MeshGone,
}

/// Why an admin list was refused (nothing was stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminListRefusal {
    /// Only the owner signs admin lists.
    Forbidden,
    BadSignature,
    /// Not newer than the stored list.
    Stale {
        stored: u64,
    },
    MeshGone,
}

fn epoch_in(
    table: &impl ReadableTable<&'static str, u64>,
    mesh_id: &str,
) -> Result<u64, StoreError> {
    Ok(table.get(mesh_id)?.map(|v| v.value()).unwrap_or(0))
}

/// The members that must hold the mesh's root key. Telegram users are among them only while
/// the mesh's bridge holds root keys (the broker keeps their secret keys: sealing a new key to
/// them would hand it to a broker that was never given one).
fn holders_in(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bans: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    keyless: &[String],
    mesh_id: &str,
) -> Result<Vec<Member>, StoreError> {
    let mut out = Vec::new();
    for row in members.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        let m: Member = decode(v.value())?;
        if holds_keys(&m, is_banned_in(bans, mesh_id, &m.id)?) && !keyless.contains(&m.id) {
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
        let keyless = super::telegram::keyless_users(
            &rt.open_table(super::telegram::TELEGRAM)?,
            &rt.open_table(super::telegram::TELEGRAM_ROOT_KEYS)?,
            mesh_id,
        )?;
        Ok((
            epoch,
            holders_in(
                &rt.open_table(MEMBERS)?,
                &rt.open_table(BANS)?,
                &keyless,
                mesh_id,
            )?,
        ))
    }

    /// The current epoch and `member_id`'s sealed copies of the epochs after `since` (the
    /// newest [`MAX_KEYS_RETURNED`]), oldest first, each with its rotation's proof.
    pub fn sealed_keys(
        &self,
        mesh_id: &str,
        member_id: &str,
        since: u64,
    ) -> Result<(u64, Vec<EpochKey>), StoreError> {
        let rt = self.read()?;
        let current = epoch_in(&rt.open_table(KEY_EPOCHS)?, mesh_id)?;
        let table = rt.open_table(SEALED_KEYS)?;
        let proofs = rt.open_table(ROTATION_PROOFS)?;
        let from = since.saturating_add(1);
        let mut out = Vec::new();
        for row in table
            .range((mesh_id, member_id, from)..=(mesh_id, member_id, u64::MAX))?
            .rev()
        {
            let (k, v) = row?;
            let epoch = k.value().2;
            out.push(EpochKey {
                epoch,
                sealed: v.value().to_string(),
                proof: decode_opt(proofs.get((mesh_id, epoch))?)?,
            });
            if out.len() == MAX_KEYS_RETURNED {
                break;
            }
        }
        out.reverse();
        Ok((current, out))
    }

    /// The newest admin list the owner signed, if any.
    pub fn admin_list(&self, mesh_id: &str) -> Result<Option<AdminList>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(ADMIN_LISTS)?.get(mesh_id)?)
    }

    /// Stores a new admin list: `by` is the live owner, the owner key signed it, and it is
    /// newer than the stored one.
    pub async fn set_admin_list(
        &self,
        mesh_id: &str,
        by: &str,
        list: AdminList,
        now_ms: i64,
    ) -> Result<Result<AdminList, AdminListRefusal>, StoreError> {
        let (mesh_id, by) = (mesh_id.to_owned(), by.to_owned());
        self.write(move |tx| {
            let mesh_id = mesh_id.as_str();
            let Some(mesh) = decode_opt::<Mesh>(tx.open_table(MESHES)?.get(mesh_id)?)? else {
                return Ok(Err(AdminListRefusal::MeshGone));
            };
            let actor: Option<Member> =
                decode_opt(tx.open_table(MEMBERS)?.get((mesh_id, by.as_str()))?)?;
            let Some(actor) =
                actor.filter(|a| a.role == MemberRole::Owner && a.revoked_at_ms.is_none())
            else {
                return Ok(Err(AdminListRefusal::Forbidden));
            };
            if !list.verifies(mesh_id, &mesh.owner_pubkey.to_hex()) {
                return Ok(Err(AdminListRefusal::BadSignature));
            }
            let mut lists = tx.open_table(ADMIN_LISTS)?;
            let stored = decode_opt::<AdminList>(lists.get(mesh_id)?)?.map_or(0, |l| l.version);
            if list.version <= stored {
                return Ok(Err(AdminListRefusal::Stale { stored }));
            }
            lists.insert(mesh_id, encode(&list).as_slice())?;
            let note = AuditNote::new(AuditEvent::AdminsChanged, &actor)
                .with("version", list.version)
                .with("admins", list.admins.len());
            audit::append(tx, mesh_id, &note, now_ms)?;
            Ok(Ok(list))
        })
        .await
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
            let mut proof = rotation.proof.clone();
            if let Err(why) = vouch(tx, &mesh, &actor, rotation.epoch, &mut proof)? {
                return Ok(Err(RotationRefusal::Unsigned(why)));
            }
            let mut epochs = tx.open_table(KEY_EPOCHS)?;
            let current = epoch_in(&epochs, mesh_id)?;
            if rotation.epoch != current.saturating_add(1) {
                return Ok(Err(RotationRefusal::WrongEpoch { current }));
            }
            let keyless = super::telegram::keyless_users(
                &tx.open_table(super::telegram::TELEGRAM)?,
                &tx.open_table(super::telegram::TELEGRAM_ROOT_KEYS)?,
                mesh_id,
            )?;
            let holders = holders_in(&members, &bans, &keyless, mesh_id)?;
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
            tx.open_table(ROTATION_PROOFS)?
                .insert((mesh_id, rotation.epoch), encode(&proof).as_slice())?;
            mesh.root_key_check = Some(rotation.check.clone());
            meshes.insert(mesh_id, encode(&mesh).as_slice())?;
            let invites_revoked = revoke_usable_invites(tx, mesh_id, rotation.now_ms)?;
            let note = AuditNote::new(AuditEvent::KeyRotated, &actor)
                .with("epoch", rotation.epoch)
                .with("members", rotation.sealed.len())
                .with("invitesRevoked", invites_revoked);
            audit::append(tx, mesh_id, &note, rotation.now_ms)?;
            Ok(Ok(Rotated {
                proof,
                epoch: rotation.epoch,
                sealed: rotation.sealed,
                invites_revoked,
            }))
        })
        .await
    }
}

/// Checks that the rotation's signer is someone clients will trust, and attaches the admin list
/// that says so when it is not the owner: the owner (signing with the owner key), or an admin
/// signing with its own member key whom the stored owner-signed list names.
fn vouch(
    tx: &WriteTransaction,
    mesh: &Mesh,
    actor: &Member,
    epoch: u64,
    proof: &mut RotationProof,
) -> Result<Result<(), String>, StoreError> {
    let owner = mesh.owner_pubkey.to_hex();
    let by_owner = actor.role == MemberRole::Owner && proof.signer == owner;
    if !by_owner {
        if proof.signer != actor.pubkey.to_hex() {
            return Ok(Err(
                "the rotation must be signed with the rotator's own member key (or, by the owner, the owner key)".into(),
            ));
        }
        proof.admins = decode_opt(tx.open_table(ADMIN_LISTS)?.get(mesh.id.as_str())?)?;
        if !proof
            .admins
            .as_ref()
            .is_some_and(|l| l.names(&proof.signer))
        {
            return Ok(Err(format!(
                "members accept a rotation only from the owner or an admin the owner's signed admin list names, and it does not name {}: the owner runs `claudemesh perms set {} --role admin` (from the machine that holds the owner key), then rotate again",
                actor.display_name, actor.display_name
            )));
        }
    }
    Ok(proof.refusal(&mesh.id, epoch, &owner).map_or(Ok(()), Err))
}

/// The check value of `epoch`'s root key, when the broker knows it: the one its rotation
/// signed, or the mesh's stored check for its current epoch (for epoch 0 that is the creation
/// check, which the first rotation replaces: after it, epoch 0's check is unknown).
pub(crate) fn epoch_check(
    tx: &WriteTransaction,
    mesh_id: &str,
    epoch: u64,
) -> Result<Option<String>, StoreError> {
    let proof: Option<RotationProof> =
        decode_opt(tx.open_table(ROTATION_PROOFS)?.get((mesh_id, epoch))?)?;
    if let Some(p) = proof {
        return Ok(Some(p.check));
    }
    if epoch_in(&tx.open_table(KEY_EPOCHS)?, mesh_id)? != epoch {
        return Ok(None);
    }
    let mesh: Option<Mesh> = decode_opt(tx.open_table(MESHES)?.get(mesh_id)?)?;
    Ok(mesh.and_then(|m| m.root_key_check))
}

/// `member_id`'s sealed copy of `epoch`'s root key, if a rotation made one.
pub(crate) fn sealed_copy(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
    epoch: u64,
) -> Result<Option<String>, StoreError> {
    let table = tx.open_table(SEALED_KEYS)?;
    let copy = table.get((mesh_id, member_id, epoch))?;
    Ok(copy.map(|c| c.value().to_string()))
}

/// Deletes every sealed copy the rotations made for `member_ids` (Telegram users, whose
/// secret keys the broker keeps, when the bridge gives up its root keys).
pub(crate) fn forget_sealed_copies(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_ids: &[String],
) -> Result<(), StoreError> {
    let mut table = tx.open_table(SEALED_KEYS)?;
    for member_id in member_ids {
        let member = member_id.as_str();
        let epochs: Vec<u64> = table
            .range((mesh_id, member, 0)..=(mesh_id, member, u64::MAX))?
            .map(|row| row.map(|(k, _)| k.value().2))
            .collect::<Result<_, _>>()?;
        for epoch in epochs {
            table.remove((mesh_id, member, epoch))?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meshes::{test_member, test_mesh};
    use crate::store::test_store;

    fn dummy_proof() -> RotationProof {
        RotationProof {
            check: "00".repeat(32),
            signer: "00".repeat(32),
            signed_at: 1,
            signature: "00".repeat(64),
            admins: None,
        }
    }

    /// Only a live owner or admin who holds the keys may rotate: the store refuses a plain
    /// member and a banned admin itself, before it looks at any signature.
    #[tokio::test]
    async fn a_plain_member_or_a_banned_admin_may_not_rotate() {
        let (_dir, store) = test_store();
        let (mesh, owner) = test_mesh(&store).await;
        let plain = test_member(&store, &mesh, "bob", MemberRole::Member, 3).await;
        let admin = test_member(&store, &mesh, "carol", MemberRole::Admin, 4).await;
        let ban = store.ban_member(
            mesh.id.clone(),
            "carol".into(),
            owner.id.clone(),
            String::new(),
            2,
        );
        ban.await.unwrap().expect("banned");
        for by in [&plain, &admin] {
            let rotation = Rotation {
                mesh_id: mesh.id.clone(),
                by: by.id.clone(),
                epoch: 1,
                check: "00".repeat(32),
                sealed: BTreeMap::new(),
                proof: dummy_proof(),
                now_ms: 3,
            };
            let refused = store.rotate_root_key(rotation).await.unwrap();
            assert_eq!(
                refused.err(),
                Some(RotationRefusal::Forbidden),
                "{}",
                by.display_name
            );
        }
        assert_eq!(store.key_epoch(&mesh.id).unwrap(), 0);
    }

    /// Only the owner member stores an admin list: an admin is refused by the store itself,
    /// before the list's signature is looked at.
    #[tokio::test]
    async fn only_the_owner_stores_an_admin_list() {
        let (_dir, store) = test_store();
        let (mesh, _) = test_mesh(&store).await;
        let admin = test_member(&store, &mesh, "carol", MemberRole::Admin, 4).await;
        let list = AdminList {
            version: 1,
            admins: vec![admin.pubkey.to_hex()],
            signed_at: 1,
            signature: "00".repeat(64),
        };
        let refused = store
            .set_admin_list(&mesh.id, &admin.id, list, 2)
            .await
            .unwrap();
        assert_eq!(refused.err(), Some(AdminListRefusal::Forbidden));
        assert_eq!(store.admin_list(&mesh.id).unwrap(), None);
    }

    /// When a Telegram bridge gives up its root keys, the copies rotations sealed to its users
    /// go too (the broker keeps those users' secret keys, so a kept copy would be a root key it
    /// can open); other members' copies stay.
    #[tokio::test]
    async fn forgotten_sealed_copies_are_gone_in_every_epoch_and_only_theirs() {
        let (_dir, store) = test_store();
        let (mesh, _owner) = test_mesh(&store).await;
        let id = mesh.id.clone();
        store
            .write(move |tx| {
                let mut table = tx.open_table(SEALED_KEYS)?;
                for member in ["tg-ann", "tg-ben", "bob"] {
                    for epoch in 1..=3 {
                        table.insert((id.as_str(), member, epoch), "c2VhbGVk")?;
                    }
                }
                drop(table);
                forget_sealed_copies(tx, &id, &["tg-ann".into(), "tg-ben".into()])
            })
            .await
            .unwrap();
        for gone in ["tg-ann", "tg-ben"] {
            assert!(store.sealed_keys(&mesh.id, gone, 0).unwrap().1.is_empty());
        }
        let kept = store.sealed_keys(&mesh.id, "bob", 0).unwrap().1;
        assert_eq!(kept.iter().map(|k| k.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
