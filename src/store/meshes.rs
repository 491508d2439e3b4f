//! Meshes, members and invites.

use redb::{ReadableTable, WriteTransaction};

use super::records::{INVITES, MEMBER_KEYS, MEMBERS, MESH_SLUGS, MESHES};
use super::{Invite, Member, MemberRole, Mesh, Store, StoreError, decode, decode_opt, encode};
use crate::crypto;
use crate::protocol::messages::GroupRef;
use crate::protocol::{Pubkey, Signature, canonical, ids};

/// What `create` registers: the owner's public key (never its secret) and the first member.
#[derive(Debug, Clone)]
pub struct CreateMesh {
    pub name: String,
    pub owner_pubkey: Pubkey,
    pub root_key: String,
    pub member_pubkey: Pubkey,
    pub display_name: String,
    pub now_ms: i64,
}

/// Why a claim was refused; `code()` is the wire error and `status()` the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    NotFound,
    Revoked,
    Expired,
    Exhausted,
    BadSignature,
}

impl ClaimError {
    pub fn code(&self) -> &'static str {
        match self {
            ClaimError::NotFound => "not_found",
            ClaimError::Revoked => "revoked",
            ClaimError::Expired => "expired",
            ClaimError::Exhausted => "exhausted",
            ClaimError::BadSignature => "bad_signature",
        }
    }
    pub fn status(&self) -> u16 {
        match self {
            ClaimError::NotFound => 404,
            ClaimError::Revoked | ClaimError::Expired | ClaimError::Exhausted => 410,
            ClaimError::BadSignature => 400,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClaimOk {
    pub mesh: Mesh,
    pub member: Member,
    pub invite: Invite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeError {
    NotFound,
    Forbidden,
    IsOwner,
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

fn insert_member(tx: &WriteTransaction, member: &Member) -> Result<(), StoreError> {
    tx.open_table(MEMBERS)?.insert(
        (member.mesh_id.as_str(), member.id.as_str()),
        encode(member).as_slice(),
    )?;
    let key = member.pubkey.to_hex();
    tx.open_table(MEMBER_KEYS)?
        .insert((member.mesh_id.as_str(), key.as_str()), member.id.as_str())?;
    Ok(())
}

fn read_member_by_pubkey(
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
                root_key: req.root_key,
                created_at_ms: req.now_ms,
                self_editable: true,
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
            Ok((mesh, member))
        })
        .await
    }

    pub fn mesh(&self, mesh_id: &str) -> Result<Option<Mesh>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MESHES)?.get(mesh_id)?)
    }

    pub fn member(&self, mesh_id: &str, member_id: &str) -> Result<Option<Member>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MEMBERS)?.get((mesh_id, member_id))?)
    }

    pub fn member_by_pubkey(
        &self,
        mesh_id: &str,
        pubkey: &Pubkey,
    ) -> Result<Option<Member>, StoreError> {
        let rt = self.read()?;
        read_member_by_pubkey(
            &rt.open_table(MEMBERS)?,
            &rt.open_table(MEMBER_KEYS)?,
            mesh_id,
            pubkey,
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

    pub fn invite(&self, code: &str) -> Result<Option<Invite>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(INVITES)?.get(code)?)
    }

    /// Stores a signed invite; `Ok(false)` when the code is already taken.
    pub async fn create_invite(&self, invite: Invite) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(INVITES)?;
            if table.get(invite.code.as_str())?.is_some() {
                return Ok(false);
            }
            table.insert(invite.code.as_str(), encode(&invite).as_slice())?;
            Ok(true)
        })
        .await
    }

    /// Replaces an invite record as it is (no checks): for operators repairing data, and for
    /// tests that tamper with stored invites to prove the claim re-verifies them.
    pub async fn put_invite(&self, invite: Invite) -> Result<(), StoreError> {
        self.write(move |tx| {
            tx.open_table(INVITES)?
                .insert(invite.code.as_str(), encode(&invite).as_slice())?;
            Ok(())
        })
        .await
    }

    /// Revokes an invite of `mesh_id` on behalf of `by` (owner or admin).
    pub async fn revoke_invite(
        &self,
        mesh_id: String,
        code: String,
        by: String,
    ) -> Result<Result<(), RevokeError>, StoreError> {
        self.write(move |tx| {
            let actor: Option<Member> = decode_opt(
                tx.open_table(MEMBERS)?
                    .get((mesh_id.as_str(), by.as_str()))?,
            )?;
            if !actor.is_some_and(|a| a.role.can_manage() && a.revoked_at_ms.is_none()) {
                return Ok(Err(RevokeError::Forbidden));
            }
            let mut invites = tx.open_table(INVITES)?;
            let found: Option<Invite> = decode_opt(invites.get(code.as_str())?)?;
            let Some(mut invite) = found.filter(|i| i.mesh_id == mesh_id) else {
                return Ok(Err(RevokeError::NotFound));
            };
            invite.revoked = true;
            invites.insert(code.as_str(), encode(&invite).as_slice())?;
            Ok(Ok(()))
        })
        .await
    }

    /// Claims an invite for `member_pubkey`. The checks, the use counter and the member insert
    /// happen in one write transaction, so k concurrent claims of a 1-use invite make exactly
    /// one member. A key that is already a member gets its membership back without using a use.
    pub async fn claim_invite(
        &self,
        code: String,
        member_pubkey: Pubkey,
        display_name: Option<String>,
        now_ms: i64,
    ) -> Result<Result<ClaimOk, ClaimError>, StoreError> {
        self.write(move |tx| {
            let mut invites = tx.open_table(INVITES)?;
            let Some(mut invite) = decode_opt::<Invite>(invites.get(code.as_str())?)? else {
                return Ok(Err(ClaimError::NotFound));
            };
            let Some(mesh) =
                decode_opt::<Mesh>(tx.open_table(MESHES)?.get(invite.mesh_id.as_str())?)?
            else {
                return Ok(Err(ClaimError::NotFound));
            };
            if invite.revoked {
                return Ok(Err(ClaimError::Revoked));
            }
            if invite.expires_at_s.saturating_mul(1000) <= now_ms {
                return Ok(Err(ClaimError::Expired));
            }
            let existing = read_member_by_pubkey(
                &tx.open_table(MEMBERS)?,
                &tx.open_table(MEMBER_KEYS)?,
                &mesh.id,
                &member_pubkey,
            )?;
            if existing.is_none() && invite.used >= invite.max_uses {
                return Ok(Err(ClaimError::Exhausted));
            }
            if !invite_signature_ok(&invite, &mesh) {
                return Ok(Err(ClaimError::BadSignature));
            }
            if let Some(member) = existing {
                if member.revoked_at_ms.is_some() {
                    return Ok(Err(ClaimError::Revoked));
                }
                return Ok(Ok(ClaimOk {
                    mesh,
                    member,
                    invite,
                }));
            }
            invite.used += 1;
            invites.insert(invite.code.as_str(), encode(&invite).as_slice())?;
            drop(invites);
            let display_name = display_name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("member-{}", &member_pubkey.to_hex()[..8]));
            let member = Member {
                id: ids::new_id(),
                mesh_id: mesh.id.clone(),
                pubkey: member_pubkey,
                display_name,
                role: invite.role,
                joined_at_ms: now_ms,
                revoked_at_ms: None,
                groups: Vec::new(),
                last_seen_at_ms: None,
                last_summary: None,
                invite_code: Some(invite.code.clone()),
            };
            insert_member(tx, &member)?;
            Ok(Ok(ClaimOk {
                mesh,
                member,
                invite,
            }))
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
            if !actor.is_some_and(|a| a.role.can_manage() && a.revoked_at_ms.is_none()) {
                return Ok(Err(RevokeError::Forbidden));
            }
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
            member.revoked_at_ms.get_or_insert(now_ms);
            members.insert(
                (mesh_id.as_str(), member.id.as_str()),
                encode(&member).as_slice(),
            )?;
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

/// The broker recomputes the canonical string from its own record and requires both an exact
/// match and a valid owner signature over it.
pub(crate) fn invite_signature_ok(invite: &Invite, mesh: &Mesh) -> bool {
    let expected = canonical::invite_v2(
        &mesh.id,
        &invite.id,
        invite.expires_at_s,
        invite.role.as_str(),
        &mesh.owner_pubkey.to_hex(),
    );
    if expected != invite.canonical {
        return false;
    }
    match Signature::parse(&invite.signature) {
        Ok(sig) => crypto::verify(&sig.0, expected.as_bytes(), &mesh.owner_pubkey.0),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::slugify;

    #[test]
    fn slugs_are_readable() {
        assert_eq!(slugify("My Team!"), "my-team");
        assert_eq!(slugify("  "), "mesh");
        assert_eq!(slugify("a--b"), "a-b");
    }
}
