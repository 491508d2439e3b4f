//! Meshes, members and invites.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use std::sync::Arc;

use super::audit::{self, AuditEvent, AuditNote};
use super::cache::Key;
use super::records::{INVITE_IDS, INVITES, MEMBER_KEYS, MEMBERS, MESH_INVITES, MESH_SLUGS, MESHES};
use super::{Invite, Member, MemberRole, Mesh, Store, StoreError, decode, decode_opt, encode};
use crate::crypto;
use crate::protocol::messages::{GroupBodies, GroupBodiesProof, GroupRef};
use crate::protocol::{Pubkey, Signature, canonical, ids};

mod invites;
pub use invites::{ClaimError, ClaimOk, InviteRef, InviteRefusal, MAX_UNEXPIRED_INVITES};

/// What `create` registers: the owner's public key (never its secret), the root key's check
/// value (never the key) and the first member.
#[derive(Debug, Clone)]
pub struct CreateMesh {
    pub name: String,
    pub owner_pubkey: Pubkey,
    pub root_key_check: Option<String>,
    pub member_pubkey: Pubkey,
    pub display_name: String,
    pub group_bodies: GroupBodies,
    pub group_bodies_proof: Option<GroupBodiesProof>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeError {
    NotFound,
    Forbidden,
    IsOwner,
}

/// Why a settings change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsRefusal {
    /// Only the mesh's live owner changes its settings.
    NotOwner,
    /// The signature is no newer than the current setting's.
    Stale { current_signed_at: i64 },
}

/// What a root-key proof did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKeyProof {
    /// The check matched: the stored copy is deleted.
    Dropped,
    /// The check differs from the stored key's: nothing changes.
    Mismatch,
    /// The broker holds no root key for this mesh.
    NothingHeld,
    /// Only the owner or an admin may prove.
    Forbidden,
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let mut slug: String = slug.chars().take(40).collect();
    if slug.is_empty() {
        slug = "mesh".into();
    }
    slug
}

pub(crate) fn insert_member(tx: &WriteTransaction, member: &Member) -> Result<(), StoreError> {
    tx.open_table(MEMBERS)?.insert(
        (member.mesh_id.as_str(), member.id.as_str()),
        encode(member).as_slice(),
    )?;
    let key = member.pubkey.to_hex();
    tx.open_table(MEMBER_KEYS)?
        .insert((member.mesh_id.as_str(), key.as_str()), member.id.as_str())?;
    Ok(())
}

pub(crate) fn read_member_by_pubkey(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    keys: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    mesh_id: &str,
    pubkey: &Pubkey,
) -> Result<Option<Member>, StoreError> {
    let hex = pubkey.to_hex();
    let Some(id) = keys.get((mesh_id, hex.as_str()))? else {
        return Ok(None);
    };
    let id = id.value().to_string();
    decode_opt(members.get((mesh_id, id.as_str()))?)
}

/// Whether a member of `mesh_id` that is not revoked goes by `name` (ignoring case, so
/// `Bob` and `bob` cannot both be addressed by name).
pub(crate) fn name_taken(
    members: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let wanted = crate::protocol::LookAlike::of(name);
    for row in members.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        let m: Member = decode(v.value())?;
        if m.revoked_at_ms.is_none() && wanted.matches(&m.display_name) {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Store {
    /// Registers a mesh and its owner as the first member. The slug is made unique.
    pub async fn create_mesh(&self, req: CreateMesh) -> Result<(Mesh, Member), StoreError> {
        self.write(move |tx| {
            let base = slugify(&req.name);
            let mut slug = base.clone();
            {
                let slugs = tx.open_table(MESH_SLUGS)?;
                let mut n = 2;
                while slugs.get(slug.as_str())?.is_some() {
                    slug = format!("{base}-{n}");
                    n += 1;
                }
            }
            let mesh = Mesh {
                id: ids::new_id(),
                name: req.name,
                slug,
                owner_pubkey: req.owner_pubkey,
                legacy_root_key: None,
                root_key_check: req.root_key_check,
                created_at_ms: req.now_ms,
                self_editable: true,
                group_bodies: req.group_bodies,
                group_bodies_proof: req.group_bodies_proof,
            };
            tx.open_table(MESHES)?
                .insert(mesh.id.as_str(), encode(&mesh).as_slice())?;
            tx.open_table(MESH_SLUGS)?
                .insert(mesh.slug.as_str(), mesh.id.as_str())?;
            let member = Member {
                id: ids::new_id(),
                mesh_id: mesh.id.clone(),
                pubkey: req.member_pubkey,
                display_name: req.display_name,
                role: MemberRole::Owner,
                joined_at_ms: req.now_ms,
                revoked_at_ms: None,
                groups: Vec::new(),
                last_seen_at_ms: None,
                last_summary: None,
                invite_code: None,
            };
            insert_member(tx, &member)?;
            let note = AuditNote::new(AuditEvent::MeshCreated, &member)
                .with("name", &mesh.name)
                .with("slug", &mesh.slug)
                .with("ownerPubkey", mesh.owner_pubkey.to_hex())
                .with("groupBodies", mesh.group_bodies.as_str());
            audit::append(tx, &mesh.id, &note, req.now_ms)?;
            Ok((mesh, member))
        })
        .await
    }

    pub fn mesh(&self, mesh_id: &str) -> Result<Option<Mesh>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MESHES)?.get(mesh_id)?)
    }

    /// How many meshes this broker holds, and the first `limit` of them in id order.
    pub fn meshes(&self, limit: usize) -> Result<(u64, Vec<Mesh>), StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(MESHES)?;
        let mut first = Vec::new();
        for row in table.iter()?.take(limit) {
            first.push(decode(row?.1.value())?);
        }
        Ok((table.len()?, first))
    }

    pub fn member(&self, mesh_id: &str, member_id: &str) -> Result<Option<Member>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MEMBERS)?.get((mesh_id, member_id))?)
    }

    pub fn member_by_pubkey(
        &self,
        mesh_id: &str,
        pubkey: &Pubkey,
    ) -> Result<Option<Arc<Member>>, StoreError> {
        self.caches.member_by_key.get_or_read(
            &self.shared.general_commits,
            Key((mesh_id, pubkey)),
            || {
                let rt = self.read()?;
                read_member_by_pubkey(
                    &rt.open_table(MEMBERS)?,
                    &rt.open_table(MEMBER_KEYS)?,
                    mesh_id,
                    pubkey,
                )
                .map(|m| m.map(Arc::new))
            },
        )
    }

    /// Every member of a mesh, revoked ones included, in id order.
    pub fn members(&self, mesh_id: &str) -> Result<Vec<Member>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(MEMBERS)?;
        let mut out = Vec::new();
        for row in table.range((mesh_id, "")..)? {
            let (k, v) = row?;
            if k.value().0 != mesh_id {
                break;
            }
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Sets how clients write group and broadcast bodies, with the owner key's signature over
    /// the choice (checked by the caller); only the owner may. Returns the mesh
    /// as it now is, or `None` when `member_id` is not its live owner (or it has gone).
    pub async fn set_group_bodies(
        &self,
        mesh_id: String,
        member_id: String,
        group_bodies: GroupBodies,
        proof: GroupBodiesProof,
        now_ms: i64,
    ) -> Result<Result<Mesh, SettingsRefusal>, StoreError> {
        self.write(move |tx| {
            let member: Option<Member> = decode_opt(
                tx.open_table(MEMBERS)?
                    .get((mesh_id.as_str(), member_id.as_str()))?,
            )?;
            let Some(member) =
                member.filter(|m| m.role == MemberRole::Owner && m.revoked_at_ms.is_none())
            else {
                return Ok(Err(SettingsRefusal::NotOwner));
            };
            let mut meshes = tx.open_table(MESHES)?;
            let Some(mut mesh) = decode_opt::<Mesh>(meshes.get(mesh_id.as_str())?)? else {
                return Ok(Err(SettingsRefusal::NotOwner));
            };
            // The owner's signatures are public (every member reads the settings): one no
            // newer than the current is an old choice played back, and must not roll it back.
            if let Some(current) = &mesh.group_bodies_proof
                && proof.signed_at <= current.signed_at
            {
                return Ok(Err(SettingsRefusal::Stale {
                    current_signed_at: current.signed_at,
                }));
            }
            let from = mesh.group_bodies;
            mesh.group_bodies = group_bodies;
            mesh.group_bodies_proof = Some(proof);
            meshes.insert(mesh_id.as_str(), encode(&mesh).as_slice())?;
            let note = AuditNote::new(AuditEvent::SettingsChanged, &member)
                .with("setting", "groupBodies")
                .with("from", from.as_str())
                .with("to", group_bodies.as_str());
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(mesh))
        })
        .await
    }

    /// A member's proof that it holds the mesh root key (its check value): when it matches
    /// the copy a pre-schema-2 broker kept, that copy is deleted.
    pub async fn prove_root_key(
        &self,
        mesh_id: String,
        member_id: String,
        check: String,
        now_ms: i64,
    ) -> Result<RootKeyProof, StoreError> {
        self.write(move |tx| {
            let member: Option<Member> = decode_opt(
                tx.open_table(MEMBERS)?
                    .get((mesh_id.as_str(), member_id.as_str()))?,
            )?;
            let Some(member) = member.filter(|m| m.role.can_manage() && m.revoked_at_ms.is_none())
            else {
                return Ok(RootKeyProof::Forbidden);
            };
            let mut meshes = tx.open_table(MESHES)?;
            let Some(mut mesh) = decode_opt::<Mesh>(meshes.get(mesh_id.as_str())?)? else {
                return Ok(RootKeyProof::NothingHeld);
            };
            let Some(held) = mesh.legacy_root_key.as_deref() else {
                return Ok(RootKeyProof::NothingHeld);
            };
            let expected = crate::identity::decode_root_key(held)
                .map(|k| crate::identity::root_key_check(&k))
                .unwrap_or_default();
            if !crypto::constant_time_eq(expected.as_bytes(), check.as_bytes()) {
                return Ok(RootKeyProof::Mismatch);
            }
            mesh.legacy_root_key = None;
            mesh.root_key_check = Some(expected);
            meshes.insert(mesh_id.as_str(), encode(&mesh).as_slice())?;
            let note = AuditNote::new(AuditEvent::RootKeyDropped, &member);
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(RootKeyProof::Dropped)
        })
        .await
    }

    /// Revokes a member (by id or pubkey hex) on behalf of `by`, who must be owner or admin.
    pub async fn revoke_member(
        &self,
        mesh_id: String,
        target: String,
        by: String,
        now_ms: i64,
    ) -> Result<Result<Member, RevokeError>, StoreError> {
        self.write(move |tx| {
            let mut members = tx.open_table(MEMBERS)?;
            let actor: Option<Member> = decode_opt(members.get((mesh_id.as_str(), by.as_str()))?)?;
            let Some(actor) = actor.filter(|a| a.role.can_manage() && a.revoked_at_ms.is_none())
            else {
                return Ok(Err(RevokeError::Forbidden));
            };
            let found = match Pubkey::parse(&target) {
                Ok(pk) => {
                    read_member_by_pubkey(&members, &tx.open_table(MEMBER_KEYS)?, &mesh_id, &pk)?
                }
                Err(_) => decode_opt(members.get((mesh_id.as_str(), target.as_str()))?)?,
            };
            let Some(mut member): Option<Member> = found else {
                return Ok(Err(RevokeError::NotFound));
            };
            if member.role == MemberRole::Owner {
                return Ok(Err(RevokeError::IsOwner));
            }
            if member.revoked_at_ms.is_some() {
                return Ok(Ok(member));
            }
            member.revoked_at_ms = Some(now_ms);
            members.insert(
                (mesh_id.as_str(), member.id.as_str()),
                encode(&member).as_slice(),
            )?;
            drop(members);
            // A revoked member's secrets must not outlive it (nor reach a service it deployed).
            super::vault::purge_member(tx, &mesh_id, &member.id)?;
            // Nor its watches and webhooks (issue 17): nothing polls or delivers for it.
            super::watches::purge_member(tx, &mesh_id, &member.id)?;
            super::webhooks::purge_member(tx, &mesh_id, &member.id)?;
            let note = AuditNote::new(AuditEvent::MemberRevoked, &actor)
                .with("memberId", &member.id)
                .with("name", &member.display_name)
                .with("pubkey", member.pubkey.to_hex())
                .with("role", member.role.as_str());
            audit::append(tx, &mesh_id, &note, now_ms)?;
            Ok(Ok(member))
        })
        .await
    }

    /// Records what a member was doing when its last session went away, and its groups.
    pub async fn update_member_presence(
        &self,
        mesh_id: String,
        member_id: String,
        groups: Option<Vec<GroupRef>>,
        last_seen_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut members = tx.open_table(MEMBERS)?;
            let Some(mut m): Option<Member> =
                decode_opt(members.get((mesh_id.as_str(), member_id.as_str()))?)?
            else {
                return Ok(());
            };
            if let Some(g) = groups {
                m.groups = g;
            }
            if last_seen_at_ms.is_some() {
                m.last_seen_at_ms = last_seen_at_ms;
            }
            members.insert(
                (mesh_id.as_str(), member_id.as_str()),
                encode(&m).as_slice(),
            )?;
            Ok(())
        })
        .await
    }
}

/// The broker recomputes the v3 canonical string from its own record (code, uses, expiry,
/// role, signer) and requires both an exact match and a valid signature by that signer. A v2
/// invite (no signer recorded) never passes.
pub(crate) fn invite_signature_ok(invite: &Invite, mesh: &Mesh) -> bool {
    let Some(signer) = invite.signer_pubkey else {
        return false;
    };
    let expected = canonical::invite_v3(
        &mesh.id,
        &invite.id,
        &invite.code,
        invite.max_uses,
        invite.expires_at_s,
        invite.role.as_str(),
        &signer.to_hex(),
    );
    if expected != invite.canonical {
        return false;
    }
    match Signature::parse(&invite.signature) {
        Ok(sig) => crypto::verify(&sig.0, expected.as_bytes(), &signer.0),
        Err(_) => false,
    }
}

/// Schema 1 → 2: the broker stops holding root keys and v2 invites. Each mesh whose root key
/// is stored gets its check value (the key itself stays until a manager's client proves it
/// holds the same key, see [`Store::prove_root_key`]); every v2 invite is revoked, because
/// v2 binds neither the code nor the uses (it may be a copy) and its link carries no root
/// key; every invite is indexed by id and by mesh.
pub(crate) fn migrate_to_v2(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut meshes = tx.open_table(MESHES)?;
    let mut updated = Vec::new();
    for row in meshes.iter()? {
        let (_, v) = row?;
        let mut mesh: Mesh = decode(v.value())?;
        if let Some(key) = mesh.legacy_root_key.as_deref()
            && let Ok(key) = crate::identity::decode_root_key(key)
        {
            mesh.root_key_check = Some(crate::identity::root_key_check(&key));
            updated.push(mesh);
        }
    }
    for mesh in updated {
        meshes.insert(mesh.id.as_str(), encode(&mesh).as_slice())?;
    }
    let mut invites = tx.open_table(INVITES)?;
    let mut ids = tx.open_table(INVITE_IDS)?;
    let mut listed = tx.open_table(MESH_INVITES)?;
    let mut all = Vec::new();
    for row in invites.iter()? {
        let (_, v) = row?;
        all.push(decode::<Invite>(v.value())?);
    }
    for mut invite in all {
        if invite.signer_pubkey.is_none() {
            invite.revoked = true;
            invites.insert(invite.code.as_str(), encode(&invite).as_slice())?;
        }
        let key = (invite.mesh_id.as_str(), invite.id.as_str());
        if ids.get(key)?.is_none() {
            ids.insert(key, invite.code.as_str())?;
        }
        listed.insert((invite.mesh_id.as_str(), invite.code.as_str()), ())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) use tests::{test_member, test_mesh, test_revoked};
