//! Who a request names, and bans (PROTOCOL.md §12.2): a ban keeps a member's record but
//! refuses its hellos and claims until it is lifted.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::meshes::read_member_by_pubkey;
use super::records::{MEMBER_KEYS, MEMBERS};
use super::{Member, MemberRole, Store, StoreError, decode, decode_opt, encode};
use crate::protocol::Pubkey;

/// `(mesh_id, member_id) → BanRecord`
pub(crate) const BANS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bans");

/// Most characters of a ban's reason kept.
pub const MAX_BAN_REASON: usize = 500;

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(BANS)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BanRecord {
    pub member_id: String,
    pub pubkey: Pubkey,
    pub display_name: String,
    pub reason: String,
    pub banned_by: String,
    pub banned_at_ms: i64,
}

/// Why a ban or an unban was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanRefusal {
    /// The actor is not (or no longer) owner or admin.
    Forbidden,
    NotFound,
    /// The owner can never be banned.
    IsOwner,
    /// `unban` of a member that is not banned.
    NotBanned,
}

/// The member `target` names in `mesh_id`: a member id, a public key (64 hex), or a display
/// name (ignoring case; a live member before a revoked one).
pub(crate) fn find_member_in(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    keys: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    mesh_id: &str,
    target: &str,
) -> Result<Option<Member>, StoreError> {
    if let Ok(pk) = Pubkey::parse(target) {
        return read_member_by_pubkey(members, keys, mesh_id, &pk);
    }
    if let Some(m) = decode_opt::<Member>(members.get((mesh_id, target))?)? {
        return Ok(Some(m));
    }
    let name = target.to_lowercase();
    let mut revoked = None;
    for row in members.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        let m: Member = decode(v.value())?;
        if m.display_name.to_lowercase() == name {
            if m.revoked_at_ms.is_none() {
                return Ok(Some(m));
            }
            revoked = Some(m);
        }
    }
    Ok(revoked)
}

fn live_manager(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    by: &str,
) -> Result<bool, StoreError> {
    let actor: Option<Member> = decode_opt(members.get((mesh_id, by))?)?;
    Ok(actor.is_some_and(|a| a.role.can_manage() && a.revoked_at_ms.is_none()))
}

/// The member `target` names, when `by` is a live owner or admin (a ban's and an unban's
/// first checks).
fn managed_target(
    tx: &WriteTransaction,
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    by: &str,
    target: &str,
) -> Result<Result<Member, BanRefusal>, StoreError> {
    if !live_manager(members, mesh_id, by)? {
        return Ok(Err(BanRefusal::Forbidden));
    }
    let found = find_member_in(members, &tx.open_table(MEMBER_KEYS)?, mesh_id, target)?;
    Ok(found.ok_or(BanRefusal::NotFound))
}

/// The audit actor for member `by` (its name as stored now).
fn actor_in(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    by: &str,
) -> Result<AuditActor, StoreError> {
    let name = decode_opt::<Member>(members.get((mesh_id, by))?)?
        .map(|m| m.display_name)
        .unwrap_or_default();
    Ok(AuditActor::member(by, name))
}

/// Whether `member_id` is banned, inside a transaction.
pub(crate) fn is_banned_in(
    bans: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    member_id: &str,
) -> Result<bool, StoreError> {
    Ok(bans.get((mesh_id, member_id))?.is_some())
}

/// Whether `member_id` is in the mesh now (a member, neither revoked nor banned), read inside
/// `tx`: a write that checks this commits before a revocation or a ban, or is refused.
pub(crate) fn is_active_in(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    bans: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    member_id: &str,
) -> Result<bool, StoreError> {
    Ok(decode_opt::<Member>(members.get((mesh_id, member_id))?)?
        .is_some_and(|m| m.revoked_at_ms.is_none())
        && !is_banned_in(bans, mesh_id, member_id)?)
}

impl Store {
    /// The member `target` names (member id, pubkey or display name), revoked ones included.
    pub fn find_member(&self, mesh_id: &str, target: &str) -> Result<Option<Member>, StoreError> {
        let rt = self.read()?;
        find_member_in(
            &rt.open_table(MEMBERS)?,
            &rt.open_table(MEMBER_KEYS)?,
            mesh_id,
            target,
        )
    }

    /// Whether `member_id` is in the mesh now: a member, neither revoked nor banned.
    pub fn is_active_member(&self, mesh_id: &str, member_id: &str) -> Result<bool, StoreError> {
        let rt = self.read()?;
        is_active_in(
            &rt.open_table(MEMBERS)?,
            &rt.open_table(BANS)?,
            mesh_id,
            member_id,
        )
    }

    /// The ban on a member, while there is one: the one answer to "is this member banned?".
    pub fn ban_of(&self, mesh_id: &str, member_id: &str) -> Result<Option<BanRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(BANS)?.get((mesh_id, member_id))?)
    }

    /// Bans `target` on behalf of `by` (owner or admin, checked in the transaction). Banning
    /// again replaces the reason. Returns the ban.
    pub async fn ban_member(
        &self,
        mesh_id: String,
        target: String,
        by: String,
        reason: String,
        now_ms: i64,
    ) -> Result<Result<BanRecord, BanRefusal>, StoreError> {
        self.write(move |tx| {
            let members = tx.open_table(MEMBERS)?;
            let member = match managed_target(tx, &members, &mesh_id, &by, &target)? {
                Ok(m) => m,
                Err(refused) => return Ok(Err(refused)),
            };
            if member.role == MemberRole::Owner {
                return Ok(Err(BanRefusal::IsOwner));
            }
            let ban = BanRecord {
                member_id: member.id.clone(),
                pubkey: member.pubkey,
                display_name: member.display_name,
                reason: reason.chars().take(MAX_BAN_REASON).collect(),
                banned_by: by,
                banned_at_ms: now_ms,
            };
            tx.open_table(BANS)?.insert(
                (mesh_id.as_str(), member.id.as_str()),
                encode(&ban).as_slice(),
            )?;
            let note = AuditNote::new(
                AuditEvent::MemberBanned,
                actor_in(&members, &mesh_id, &ban.banned_by)?,
            )
            .with("memberId", &ban.member_id)
            .with("name", &ban.display_name)
            .with("reason", &ban.reason);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(ban))
        })
        .await
    }

    /// Lifts the ban on `target` on behalf of `by` (owner or admin). Returns the lifted ban.
    pub async fn unban_member(
        &self,
        mesh_id: String,
        target: String,
        by: String,
    ) -> Result<Result<BanRecord, BanRefusal>, StoreError> {
        self.write(move |tx| {
            let members = tx.open_table(MEMBERS)?;
            let member = match managed_target(tx, &members, &mesh_id, &by, &target)? {
                Ok(m) => m,
                Err(refused) => return Ok(Err(refused)),
            };
            let removed = tx
                .open_table(BANS)?
                .remove((mesh_id.as_str(), member.id.as_str()))?
                .map(|v| decode::<BanRecord>(v.value()))
                .transpose()?;
            if let Some(ban) = &removed {
                let note = AuditNote::new(
                    AuditEvent::MemberUnbanned,
                    actor_in(&members, &mesh_id, &by)?,
                )
                .with("memberId", &ban.member_id)
                .with("name", &ban.display_name);
                audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
            }
            Ok(removed.ok_or(BanRefusal::NotBanned))
        })
        .await
    }

    /// Every ban of a mesh, newest first.
    pub fn bans(&self, mesh_id: &str) -> Result<Vec<BanRecord>, StoreError> {
        let rt = self.read()?;
        let mut out: Vec<BanRecord> = Vec::new();
        for row in rt.open_table(BANS)?.range((mesh_id, "")..)? {
            let (k, v) = row?;
            if k.value().0 != mesh_id {
                break;
            }
            out.push(decode(v.value())?);
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.banned_at_ms));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Mesh;
    use crate::store::meshes::{test_member, test_mesh, test_revoked};
    use crate::store::test_store;

    /// A display name finds its member in its own mesh only, ignoring case, and a live member
    /// before a revoked one of the same name (the one `ban bob` means).
    #[tokio::test]
    async fn a_name_finds_the_live_member_of_its_own_mesh() {
        let (_dir, store) = test_store();
        let (team, _) = test_mesh(&store).await;
        let (other, _) = test_mesh(&store).await;
        test_member(&store, &other, "carol", MemberRole::Member, 5).await;
        // "Bob-id" sorts before "bob-id": the revoked one is met first.
        let old = test_member(&store, &team, "Bob", MemberRole::Member, 3).await;
        let old = test_revoked(&store, old).await;
        let live = test_member(&store, &team, "bob", MemberRole::Member, 4).await;
        let found = |mesh: &str, name: &str| store.find_member(mesh, name).unwrap().map(|m| m.id);
        assert_eq!(found(&team.id, "BOB"), Some(live.id.clone()));
        assert_eq!(found(&team.id, "carol"), None, "another mesh's member");
        assert_eq!(found(&other.id, "carol"), Some("carol-id".into()));
        test_revoked(&store, live).await;
        let revoked = found(&team.id, "bob").expect("a revoked member still answers");
        assert!(revoked == old.id || revoked == "bob-id", "{revoked}");
    }

    /// Only a live owner or admin bans and unbans: the store refuses a plain member and a
    /// revoked admin itself, whatever the handler checked first.
    #[tokio::test]
    async fn only_a_live_manager_bans() {
        let (_dir, store) = test_store();
        let (team, owner) = test_mesh(&store).await;
        let plain = test_member(&store, &team, "bob", MemberRole::Member, 3).await;
        let admin = test_member(&store, &team, "carol", MemberRole::Admin, 4).await;
        let admin = test_revoked(&store, admin).await;
        test_member(&store, &team, "dave", MemberRole::Member, 5).await;
        let ban = |by: &Member| {
            store.ban_member(
                team.id.clone(),
                "dave".into(),
                by.id.clone(),
                "spam".into(),
                3,
            )
        };
        assert!(matches!(
            ban(&plain).await.unwrap(),
            Err(BanRefusal::Forbidden)
        ));
        assert!(matches!(
            ban(&admin).await.unwrap(),
            Err(BanRefusal::Forbidden)
        ));
        assert!(store.ban_of(&team.id, "dave-id").unwrap().is_none());
        let unban = |by: &Member| store.unban_member(team.id.clone(), "dave".into(), by.id.clone());
        ban(&owner).await.unwrap().expect("the owner bans");
        assert!(matches!(
            unban(&plain).await.unwrap(),
            Err(BanRefusal::Forbidden)
        ));
        assert!(store.ban_of(&team.id, "dave-id").unwrap().is_some());
        unban(&owner).await.unwrap().expect("the owner unbans");
    }

    /// A mesh's ban list holds its own bans only, newest first.
    #[tokio::test]
    async fn the_ban_list_is_the_meshs_own() {
        let (_dir, store) = test_store();
        let (team, owner) = test_mesh(&store).await;
        let (other, other_owner) = test_mesh(&store).await;
        for (mesh, by, name, key, at) in [
            (&team, &owner, "bob", 3, 10),
            (&team, &owner, "dave", 4, 20),
            (&other, &other_owner, "erin", 5, 15),
        ] {
            test_member(&store, mesh, name, MemberRole::Member, key).await;
            let banned = store.ban_member(
                mesh.id.clone(),
                name.into(),
                by.id.clone(),
                String::new(),
                at,
            );
            banned.await.unwrap().expect("banned");
        }
        let names = |mesh: &Mesh| -> Vec<String> {
            let bans = store.bans(&mesh.id).unwrap();
            bans.into_iter().map(|b| b.display_name).collect()
        };
        assert_eq!(names(&team), ["dave", "bob"]);
        assert_eq!(names(&other), ["erin"]);
    }

    /// Active means a member, neither revoked nor banned (what a deployed service, a vault
    /// read, a watch or a webhook of the member checks before it acts).
    #[tokio::test]
    async fn active_means_neither_revoked_nor_banned() {
        let (_dir, store) = test_store();
        let (team, owner) = test_mesh(&store).await;
        let active = |id: &str| store.is_active_member(&team.id, id).unwrap();
        test_member(&store, &team, "bob", MemberRole::Member, 3).await;
        let carol = test_member(&store, &team, "carol", MemberRole::Member, 4).await;
        test_revoked(&store, carol).await;
        test_member(&store, &team, "dave", MemberRole::Member, 5).await;
        let ban = store.ban_member(
            team.id.clone(),
            "dave".into(),
            owner.id.clone(),
            String::new(),
            3,
        );
        ban.await.unwrap().expect("banned");
        assert!(active("bob-id"));
        assert!(!active("carol-id"), "revoked");
        assert!(!active("dave-id"), "banned");
        assert!(!active("nobody"), "not a member");
    }
}
