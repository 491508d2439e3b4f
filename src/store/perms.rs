//! Capabilities per member (PROTOCOL.md §12.1): the role's defaults, and each member's
//! overrides kept beside its membership. Everything that decides is read at check time, so a
//! change applies at once to connections already in.

use std::collections::BTreeSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditEvent, AuditNote};
use super::cache::Key;
use super::members::find_member_in;
use super::records::{MEMBER_KEYS, MEMBERS};
use super::{Member, MemberRole, Store, StoreError, decode_opt, encode};
use crate::protocol::messages::Permission;

/// `(mesh_id, member_id) → Overrides`
pub(crate) const PERMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("perms");

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(PERMS)?;
    Ok(())
}

impl MemberRole {
    /// What a role may do without overrides: the owner everything, an admin all but deleting
    /// the mesh, a member its everyday work.
    pub fn default_permissions(self) -> BTreeSet<Permission> {
        match self {
            MemberRole::Owner => Permission::ALL.into_iter().collect(),
            MemberRole::Admin => Permission::ALL
                .into_iter()
                .filter(|p| *p != Permission::DeleteMesh)
                .collect(),
            MemberRole::Member => [
                Permission::Send,
                Permission::State,
                Permission::Files,
                Permission::Tools,
            ]
            .into_iter()
            .collect(),
        }
    }
}

/// One member's departures from its role's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default)]
    pub granted: BTreeSet<Permission>,
    #[serde(default)]
    pub denied: BTreeSet<Permission>,
}

/// A member with what it may do.
#[derive(Debug, Clone)]
pub struct MemberPerms {
    pub member: Member,
    pub overrides: Overrides,
}

impl MemberPerms {
    /// Role defaults + granted − denied. The owner's are never reduced.
    pub fn effective(&self) -> BTreeSet<Permission> {
        let mut caps = self.member.role.default_permissions();
        if self.member.role == MemberRole::Owner {
            return caps;
        }
        caps.extend(self.overrides.granted.iter().copied());
        caps.retain(|p| !self.overrides.denied.contains(p));
        caps
    }

    pub fn holds(&self, p: Permission) -> bool {
        self.effective().contains(&p)
    }
}

/// What `set_perms` asks to change.
#[derive(Debug, Clone, Default)]
pub struct PermsChange {
    pub grant: BTreeSet<Permission>,
    pub deny: BTreeSet<Permission>,
    pub reset: BTreeSet<Permission>,
    pub role: Option<MemberRole>,
}

/// Why `set_perms` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermsRefusal {
    NotFound,
    /// The actor lacks `perms` (or is gone).
    NoPermsCapability,
    /// Nobody changes the owner's capabilities or role.
    IsOwner,
    /// Only the owner or an admin changes an admin's capabilities.
    AdminTarget,
    /// Only the owner changes roles.
    RoleByOwnerOnly,
    /// You cannot grant (or give back) a capability you do not hold.
    NotHeld(Permission),
}

fn read_perms(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    member: Member,
) -> Result<MemberPerms, StoreError> {
    let overrides = decode_opt(table.get((member.mesh_id.as_str(), member.id.as_str()))?)?;
    Ok(MemberPerms {
        member,
        overrides: overrides.unwrap_or_default(),
    })
}

type Rows = (&'static str, &'static str);

/// What a member may do as it acts now: nothing when it is revoked or banned (a banned
/// member's invites stop letting anyone in, and no frame of its passes a check). The one rule
/// for checks in a write transaction ([`member_perms_in`]) and on reads ([`Store::holds`]).
fn acting_perms(
    members: &impl ReadableTable<Rows, &'static [u8]>,
    bans: &impl ReadableTable<Rows, &'static [u8]>,
    perms: &impl ReadableTable<Rows, &'static [u8]>,
    mesh_id: &str,
    member_id: &str,
) -> Result<Option<MemberPerms>, StoreError> {
    if super::members::is_banned_in(bans, mesh_id, member_id)? {
        return Ok(None);
    }
    live_perms(members, perms, mesh_id, member_id)
}

/// A member's capabilities unless it is revoked (bans aside: [`acting_perms`] adds them).
fn live_perms(
    members: &impl ReadableTable<Rows, &'static [u8]>,
    perms: &impl ReadableTable<Rows, &'static [u8]>,
    mesh_id: &str,
    member_id: &str,
) -> Result<Option<MemberPerms>, StoreError> {
    let member: Option<Member> = decode_opt(members.get((mesh_id, member_id))?)?;
    match member.filter(|m| m.revoked_at_ms.is_none()) {
        Some(m) => read_perms(perms, m).map(Some),
        None => Ok(None),
    }
}

/// A live member's capabilities inside a write transaction (for checks that must commit with
/// what they allow): [`acting_perms`].
pub(crate) fn member_perms_in(
    tx: &WriteTransaction,
    mesh_id: &str,
    member_id: &str,
) -> Result<Option<MemberPerms>, StoreError> {
    acting_perms(
        &tx.open_table(MEMBERS)?,
        &tx.open_table(super::members::BANS)?,
        &tx.open_table(PERMS)?,
        mesh_id,
        member_id,
    )
}

/// Denies `member` (just joined through an invite `inviter` made: a link signed by a member
/// key, a Telegram join code) every capability of its role's defaults that `inviter` lacks, so
/// someone let in by a member may do no more than that member could when it was claimed; the
/// capabilities denied are added to the join's audit `note` (`denied`). No `inviter` (an
/// invite of the mesh's own): no limit.
pub(crate) fn limit_to_inviter(
    tx: &WriteTransaction,
    member: &Member,
    inviter: Option<&MemberPerms>,
    note: AuditNote,
) -> Result<AuditNote, StoreError> {
    let Some(inviter) = inviter else {
        return Ok(note);
    };
    let allowed = inviter.effective();
    let denied: BTreeSet<Permission> = member
        .role
        .default_permissions()
        .into_iter()
        .filter(|p| !allowed.contains(p))
        .collect();
    if denied.is_empty() {
        return Ok(note);
    }
    let names: Vec<&str> = denied.iter().map(|p| p.as_str()).collect();
    let overrides = Overrides {
        granted: BTreeSet::new(),
        denied,
    };
    tx.open_table(PERMS)?.insert(
        (member.mesh_id.as_str(), member.id.as_str()),
        encode(&overrides).as_slice(),
    )?;
    Ok(note.with("denied", names.join(",")))
}

impl MemberPerms {
    /// May make (and keep valid) an invite for `role`: the `invite` capability, and for an
    /// admin invite the owner's or an admin's role (nobody invites above themselves).
    pub fn may_invite(&self, role: MemberRole) -> bool {
        self.holds(Permission::Invite)
            && (role == MemberRole::Member || self.member.role.can_manage())
    }
}

impl Store {
    /// A member's capabilities as they are now, for showing (`perms show`); `None` when it is
    /// not a live member. A banned member's are shown; it acts with none
    /// ([`Store::acting_member_perms`]).
    pub fn member_perms(
        &self,
        mesh_id: &str,
        member_id: &str,
    ) -> Result<Option<MemberPerms>, StoreError> {
        let rt = self.read()?;
        live_perms(
            &rt.open_table(MEMBERS)?,
            &rt.open_table(PERMS)?,
            mesh_id,
            member_id,
        )
    }

    /// A member's capabilities as it acts now ([`acting_perms`]): `None` when it is revoked,
    /// banned or unknown. What checks ask; [`Store::member_perms`] is what `perms show` shows.
    pub fn acting_member_perms(
        &self,
        mesh_id: &str,
        member_id: &str,
    ) -> Result<Option<MemberPerms>, StoreError> {
        let rt = self.read()?;
        acting_perms(
            &rt.open_table(MEMBERS)?,
            &rt.open_table(super::members::BANS)?,
            &rt.open_table(PERMS)?,
            mesh_id,
            member_id,
        )
    }

    /// Whether `member_id` may do `p` now: what every guarded handler asks. Answered from
    /// memory until the next commit outside the message queue (`cache.rs`).
    pub fn holds(&self, mesh_id: &str, member_id: &str, p: Permission) -> Result<bool, StoreError> {
        let caps = self.caches.capabilities.get_or_read(
            &self.shared.general_commits,
            Key((mesh_id, member_id)),
            || {
                Ok(self
                    .acting_member_perms(mesh_id, member_id)?
                    .map(|m| std::sync::Arc::new(m.effective())))
            },
        )?;
        Ok(caps.is_some_and(|c| c.contains(&p)))
    }

    /// Every live member's capabilities, in member id order.
    pub fn all_perms(&self, mesh_id: &str) -> Result<Vec<MemberPerms>, StoreError> {
        let rt = self.read()?;
        let perms = rt.open_table(PERMS)?;
        let mut out = Vec::new();
        for row in rt.open_table(MEMBERS)?.range((mesh_id, "")..)? {
            let (k, v) = row?;
            if k.value().0 != mesh_id {
                break;
            }
            let member: Member = super::decode(v.value())?;
            if member.revoked_at_ms.is_none() {
                out.push(read_perms(&perms, member)?);
            }
        }
        Ok(out)
    }

    /// Applies `change` to `target` (member id, pubkey or display name) on behalf of `by`,
    /// checking every rule in the same transaction as the write.
    pub async fn set_perms(
        &self,
        mesh_id: String,
        by: String,
        target: String,
        change: PermsChange,
    ) -> Result<Result<MemberPerms, PermsRefusal>, StoreError> {
        self.write(move |tx| {
            let mut members = tx.open_table(MEMBERS)?;
            let mut table = tx.open_table(PERMS)?;
            let actor: Option<Member> = decode_opt(members.get((mesh_id.as_str(), by.as_str()))?)?;
            let Some(actor) = actor.filter(|a| a.revoked_at_ms.is_none()) else {
                return Ok(Err(PermsRefusal::NoPermsCapability));
            };
            let actor = read_perms(&table, actor)?;
            if !actor.holds(Permission::Perms) {
                return Ok(Err(PermsRefusal::NoPermsCapability));
            }
            let found = find_member_in(&members, &tx.open_table(MEMBER_KEYS)?, &mesh_id, &target)?;
            let Some(target) = found.filter(|m| m.revoked_at_ms.is_none()) else {
                return Ok(Err(PermsRefusal::NotFound));
            };
            if target.role == MemberRole::Owner {
                return Ok(Err(PermsRefusal::IsOwner));
            }
            if target.role == MemberRole::Admin && !actor.member.role.can_manage() {
                return Ok(Err(PermsRefusal::AdminTarget));
            }
            if change.role.is_some() && actor.member.role != MemberRole::Owner {
                return Ok(Err(PermsRefusal::RoleByOwnerOnly));
            }
            let mut target = read_perms(&table, target)?;
            if let Some(role) = change.role {
                target.member.role = role;
            }
            let before = target.effective();
            let o = &mut target.overrides;
            for p in &change.reset {
                o.granted.remove(p);
                o.denied.remove(p);
            }
            for p in &change.grant {
                o.denied.remove(p);
                o.granted.insert(*p);
            }
            for p in &change.deny {
                o.granted.remove(p);
                o.denied.insert(*p);
            }
            // Overrides equal to the role's default say nothing: drop them.
            let defaults = target.member.role.default_permissions();
            o.granted.retain(|p| !defaults.contains(p));
            o.denied.retain(|p| defaults.contains(p));
            // Nobody hands out what they do not hold themselves (a role change included).
            let held = actor.effective();
            if let Some(p) = target
                .effective()
                .difference(&before)
                .find(|p| !held.contains(p))
            {
                return Ok(Err(PermsRefusal::NotHeld(*p)));
            }
            let key = (mesh_id.as_str(), target.member.id.as_str());
            if target.overrides == Overrides::default() {
                table.remove(key)?;
            } else {
                table.insert(key, encode(&target.overrides).as_slice())?;
            }
            if change.role.is_some() {
                members.insert(key, encode(&target.member).as_slice())?;
            }
            let names = |set: &BTreeSet<Permission>| {
                set.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
            };
            let note = AuditNote::new(AuditEvent::PermsChanged, &actor.member)
                .with("memberId", &target.member.id)
                .with("role", target.member.role.as_str())
                .with("granted", names(&target.overrides.granted))
                .with("denied", names(&target.overrides.denied));
            audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
            Ok(Ok(target))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    /// Checks and writes share one rule: a banned member acts with no capability, on a read
    /// (`holds`, cached) as inside a write transaction, while `perms show` still shows its own.
    #[tokio::test]
    async fn a_banned_member_holds_nothing_on_reads_as_on_writes() {
        let (_dir, store) = test_store();
        let (mesh, owner) = crate::store::meshes::test_mesh(&store).await;
        let bob =
            crate::store::meshes::test_member(&store, &mesh, "bob", MemberRole::Member, 3).await;
        let in_write = |store: &Store| {
            let (mesh_id, id) = (mesh.id.clone(), bob.id.clone());
            let store = store.clone();
            async move {
                store
                    .write(move |tx| Ok(member_perms_in(tx, &mesh_id, &id)?.is_some()))
                    .await
                    .unwrap()
            }
        };
        assert!(store.holds(&mesh.id, &bob.id, Permission::Send).unwrap());
        assert!(in_write(&store).await);

        let banned = store
            .ban_member(
                mesh.id.clone(),
                bob.id.clone(),
                owner.id.clone(),
                "spam".into(),
                3,
            )
            .await
            .unwrap();
        assert!(banned.is_ok(), "{banned:?}");
        assert!(!store.holds(&mesh.id, &bob.id, Permission::Send).unwrap());
        assert!(!store.holds(&mesh.id, &bob.id, Permission::State).unwrap());
        assert!(!in_write(&store).await);
        assert!(
            store
                .acting_member_perms(&mesh.id, &bob.id)
                .unwrap()
                .is_none()
        );
        let shown = store
            .member_perms(&mesh.id, &bob.id)
            .unwrap()
            .expect("shown");
        assert!(
            shown.holds(Permission::Send),
            "perms show keeps what it would get back"
        );
    }
}
