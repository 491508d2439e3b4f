//! Invites: registered signed by the owner or an admin, listed, revoked, and claimed (the
//! checks, the use count and the new member in one transaction).

use super::*;

/// Most invites of one mesh that have not expired yet (any state: a revoked one still holds
/// its id until it expires).
pub const MAX_UNEXPIRED_INVITES: usize = 1000;

/// Why a claim was refused; `code()` is the wire error and `status()` the HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    NotFound,
    Revoked,
    Expired,
    Exhausted,
    BadSignature,
    /// A member of the mesh already has that display name (compared without case).
    NameTaken,
    /// The claiming key is a banned member's; the ban's reason.
    Banned(String),
}

impl ClaimError {
    pub fn code(&self) -> &'static str {
        match self {
            ClaimError::NotFound => "not_found",
            ClaimError::Revoked => "revoked",
            ClaimError::Expired => "expired",
            ClaimError::Exhausted => "exhausted",
            ClaimError::BadSignature => "bad_signature",
            ClaimError::NameTaken => "name_taken",
            ClaimError::Banned(_) => "banned",
        }
    }
    pub fn status(&self) -> u16 {
        match self {
            ClaimError::NotFound => 404,
            ClaimError::Revoked | ClaimError::Expired | ClaimError::Exhausted => 410,
            ClaimError::BadSignature => 400,
            ClaimError::NameTaken => 409,
            ClaimError::Banned(_) => 403,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClaimOk {
    pub mesh: Mesh,
    pub member: Member,
    pub invite: Invite,
}

/// Why an invite registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteRefusal {
    /// The registering member is not (or no longer) owner or admin.
    Forbidden,
    /// The signer is neither the owner key nor the registering admin's own key.
    BadSigner,
    CodeTaken,
    /// This invite id was registered before (under any code).
    IdTaken,
    TooMany,
    MeshGone,
}

/// How an invite is named in `revoke_invite`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteRef {
    Code(String),
    Id(String),
}

impl Store {
    pub fn invite(&self, code: &str) -> Result<Option<Invite>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(INVITES)?.get(code)?)
    }

    /// Registers a signed invite on behalf of member `by`, who must be owner or admin (checked
    /// in the same transaction, so a revoke that commits first wins). The signer must be the
    /// owner key or `by`'s own key; the code and the invite id must both be new.
    pub async fn create_invite(
        &self,
        invite: Invite,
        by: String,
        now_ms: i64,
    ) -> Result<Result<(), InviteRefusal>, StoreError> {
        self.write(move |tx| {
            let mesh_id = invite.mesh_id.as_str();
            let Some(mesh) = decode_opt::<Mesh>(tx.open_table(MESHES)?.get(mesh_id)?)? else {
                return Ok(Err(InviteRefusal::MeshGone));
            };
            let actor = crate::store::perms::member_perms_in(tx, mesh_id, &by)?;
            let Some(actor) = actor
                .filter(|a| a.may_invite(invite.role))
                .map(|a| a.member)
            else {
                return Ok(Err(InviteRefusal::Forbidden));
            };
            let signer = invite.signer_pubkey;
            if signer != Some(mesh.owner_pubkey) && signer != Some(actor.pubkey) {
                return Ok(Err(InviteRefusal::BadSigner));
            }
            let mut ids = tx.open_table(INVITE_IDS)?;
            if ids.get((mesh_id, invite.id.as_str()))?.is_some() {
                return Ok(Err(InviteRefusal::IdTaken));
            }
            let mut invites = tx.open_table(INVITES)?;
            if invites.get(invite.code.as_str())?.is_some() {
                return Ok(Err(InviteRefusal::CodeTaken));
            }
            // Expired invites can go: a copy of one could not be registered again anyway (its
            // signed expiry is in the past), so their ids need no keeping.
            let mut listed = tx.open_table(MESH_INVITES)?;
            let mut unexpired = 0;
            let mut expired = Vec::new();
            for row in listed.range((mesh_id, "")..)? {
                let (k, _) = row?;
                let (m, code) = k.value();
                if m != mesh_id {
                    break;
                }
                match decode_opt::<Invite>(invites.get(code)?)? {
                    Some(old) if old.is_expired(now_ms) => expired.push((code.to_string(), old.id)),
                    Some(_) => unexpired += 1,
                    None => {}
                }
            }
            if unexpired >= MAX_UNEXPIRED_INVITES {
                return Ok(Err(InviteRefusal::TooMany));
            }
            for (code, id) in expired {
                invites.remove(code.as_str())?;
                listed.remove((mesh_id, code.as_str()))?;
                if ids
                    .get((mesh_id, id.as_str()))?
                    .is_some_and(|c| c.value() == code)
                {
                    ids.remove((mesh_id, id.as_str()))?;
                }
            }
            invites.insert(invite.code.as_str(), encode(&invite).as_slice())?;
            ids.insert((mesh_id, invite.id.as_str()), invite.code.as_str())?;
            listed.insert((mesh_id, invite.code.as_str()), ())?;
            // The id, never the code: the code lets its holder in.
            let note = AuditNote::new(AuditEvent::InviteCreated, &actor)
                .with("inviteId", &invite.id)
                .with("role", invite.role.as_str())
                .with("maxUses", invite.max_uses)
                .with(
                    "expiresAt",
                    crate::protocol::time::iso(invite.expires_at_s.saturating_mul(1000)),
                );
            audit::append(tx, mesh_id, &note, now_ms)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Every stored invite of a mesh, in code order.
    pub fn invites(&self, mesh_id: &str) -> Result<Vec<Invite>, StoreError> {
        let rt = self.read()?;
        let listed = rt.open_table(MESH_INVITES)?;
        let invites = rt.open_table(INVITES)?;
        let mut out = Vec::new();
        for row in listed.range((mesh_id, "")..)? {
            let (k, _) = row?;
            let (m, code) = k.value();
            if m != mesh_id {
                break;
            }
            if let Some(inv) = decode_opt::<Invite>(invites.get(code)?)? {
                out.push(inv);
            }
        }
        Ok(out)
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

    /// Revokes an invite of `mesh_id`, named by code or id, on behalf of `by` (owner or admin).
    /// Returns the revoked invite.
    pub async fn revoke_invite(
        &self,
        mesh_id: String,
        which: InviteRef,
        by: String,
        now_ms: i64,
    ) -> Result<Result<Invite, RevokeError>, StoreError> {
        self.write(move |tx| {
            let actor = crate::store::perms::member_perms_in(tx, &mesh_id, &by)?;
            let Some(actor) =
                actor.filter(|a| a.holds(crate::protocol::messages::Permission::Invite))
            else {
                return Ok(Err(RevokeError::Forbidden));
            };
            let code = match which {
                InviteRef::Code(code) => code,
                InviteRef::Id(id) => {
                    let ids = tx.open_table(INVITE_IDS)?;
                    let Some(code) = ids.get((mesh_id.as_str(), id.as_str()))? else {
                        return Ok(Err(RevokeError::NotFound));
                    };
                    code.value().to_string()
                }
            };
            let mut invites = tx.open_table(INVITES)?;
            let found: Option<Invite> = decode_opt(invites.get(code.as_str())?)?;
            // A member that is not the owner or an admin revokes only its own invites.
            let Some(mut invite) = found.filter(|i| {
                i.mesh_id == mesh_id
                    && (actor.member.role.can_manage() || i.created_by == actor.member.id)
            }) else {
                return Ok(Err(RevokeError::NotFound));
            };
            let newly = !invite.revoked;
            invite.revoked = true;
            invites.insert(code.as_str(), encode(&invite).as_slice())?;
            if newly {
                let note = AuditNote::new(AuditEvent::InviteRevoked, &actor.member)
                    .with("inviteId", &invite.id);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(Ok(invite))
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
            if invite.is_expired(now_ms) {
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
            // A member's invite lives as long as its signer may still make it, and lets in
            // nobody who may do more than the signer: `inviter` is that signer's capabilities.
            let mut inviter = None;
            let signer_ok = match invite.signer_pubkey {
                Some(signer) if signer == mesh.owner_pubkey => true,
                Some(signer) => {
                    let by = read_member_by_pubkey(
                        &tx.open_table(MEMBERS)?,
                        &tx.open_table(MEMBER_KEYS)?,
                        &mesh.id,
                        &signer,
                    )?;
                    inviter = match by {
                        Some(m) => crate::store::perms::member_perms_in(tx, &mesh.id, &m.id)?
                            .filter(|p| p.may_invite(invite.role)),
                        None => None,
                    };
                    inviter.is_some()
                }
                None => false,
            };
            if !signer_ok || !invite_signature_ok(&invite, &mesh) {
                return Ok(Err(ClaimError::BadSignature));
            }
            if let Some(member) = existing {
                let ban: Option<crate::store::BanRecord> = decode_opt(
                    tx.open_table(crate::store::members::BANS)?
                        .get((mesh.id.as_str(), member.id.as_str()))?,
                )?;
                if let Some(ban) = ban {
                    return Ok(Err(ClaimError::Banned(ban.reason)));
                }
                if member.revoked_at_ms.is_some() {
                    return Ok(Err(ClaimError::Revoked));
                }
                return Ok(Ok(ClaimOk {
                    mesh,
                    member,
                    invite,
                }));
            }
            let display_name = display_name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("member-{}", &member_pubkey.to_hex()[..8]));
            // Names are how people address each other (`send bob`): one member per name.
            if name_taken(&tx.open_table(MEMBERS)?, &mesh.id, &display_name)? {
                return Ok(Err(ClaimError::NameTaken));
            }
            invite.used += 1;
            invites.insert(invite.code.as_str(), encode(&invite).as_slice())?;
            drop(invites);
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
            let note = AuditNote::new(AuditEvent::MemberJoined, &member)
                .with("memberId", &member.id)
                .with("pubkey", member.pubkey.to_hex())
                .with("role", member.role.as_str())
                .with("inviteId", &invite.id);
            let note = crate::store::perms::limit_to_inviter(tx, &member, inviter.as_ref(), note)?;
            audit::append(tx, &mesh.id, &note, now_ms)?;
            Ok(Ok(ClaimOk {
                mesh,
                member,
                invite,
            }))
        })
        .await
    }
}
