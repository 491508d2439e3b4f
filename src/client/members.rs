//! Typed calls of the members area: invites (register, list, revoke), kick, disconnect, ban.

use super::{ClientError, Link, MeshClient};
use crate::crypto::SignKeyPair;
use crate::identity::{MeshEntry, key_fingerprint};
use crate::protocol::messages::{BanEntry, Capability, CreateInvite, InviteCreated, InviteEntry};
use crate::protocol::{ClientMessage, ServerMessage, canonical, ids};

/// A fresh code is random; on the rare clash the broker says so and another is drawn.
const CODE_ATTEMPTS: usize = 3;

/// A registered invite and the link to hand out.
pub struct NewInvite {
    pub created: InviteCreated,
    pub link: String,
    /// False when this machine holds no root key: the link lacks its `#…` part, and whoever
    /// joins with it cannot read or send group and broadcast messages.
    pub has_root_key: bool,
}

impl MeshClient {
    /// Creates an invite as `claudemesh invite` does: signed with the owner key where this
    /// machine holds it, else with this member's own key (the broker checks that it holds the
    /// `invite` capability); the link carries the key of the mesh's current epoch, which
    /// connecting fetched. `expires_at` is unix seconds.
    pub async fn new_invite(
        &self,
        role: &str,
        max_uses: u32,
        expires_at: i64,
    ) -> Result<NewInvite, ClientError> {
        let mut entry = self.entry().clone();
        let signer = match entry.owner_keys() {
            Some(owner) => owner?,
            None => entry.member_keys()?,
        };
        let created = self
            .create_invite(&signer, role, max_uses, expires_at)
            .await?;
        let ring = self.key_ring();
        if let Some(key) = ring.get(ring.current_epoch()) {
            entry.set_sealed_root_key(ring.current_epoch(), &key);
        }
        Ok(NewInvite {
            link: invite_link(&created.url, &entry, &signer),
            has_root_key: !entry.root_key.is_empty(),
            created,
        })
    }

    /// Signs a v3 invite with `signer` (the mesh owner key, or this member's own key when it
    /// is an admin) and registers it. `expires_at` is unix seconds.
    pub async fn create_invite(
        &self,
        signer: &SignKeyPair,
        role: &str,
        max_uses: u32,
        expires_at: i64,
    ) -> Result<InviteCreated, ClientError> {
        let mut last = None;
        for _ in 0..CODE_ATTEMPTS {
            let invite_id = ids::new_id();
            let code = ids::new_invite_code();
            let signed = canonical::invite_v3(
                &self.entry().mesh_id,
                &invite_id,
                &code,
                max_uses,
                expires_at,
                role,
                &signer.public_hex(),
            );
            let req = ClientMessage::CreateInvite(CreateInvite {
                invite_id,
                code,
                role: role.to_string(),
                max_uses,
                expires_at,
                signer_pubkey: signer.public_hex(),
                capability_v3: Some(Capability {
                    signature: hex::encode(signer.sign(signed.as_bytes())),
                    canonical: signed,
                }),
            });
            match self.request(req).await {
                Ok(ServerMessage::InviteCreated(inv)) => return Ok(inv),
                Ok(other) => return Err(ClientError::Protocol(format!("{other:?}"))),
                Err(e) if e.code() == Some("conflict") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ClientError::Closed))
    }

    /// The mesh's invites (owner and admins only); `true` when the broker left some out.
    pub async fn list_invites(&self) -> Result<(Vec<InviteEntry>, bool), ClientError> {
        match self.request(ClientMessage::ListInvites {}).await? {
            ServerMessage::InviteList { invites, truncated } => Ok((invites, truncated)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Revokes the invite with this code, or else with this id.
    pub async fn revoke_invite(&self, code_or_id: &str) -> Result<(), ClientError> {
        if ids::is_invite_code(code_or_id) {
            let by_code = ClientMessage::RevokeInvite {
                code: Some(code_or_id.to_string()),
                invite_id: None,
            };
            match self.request(by_code).await {
                Err(e) if e.code() == Some("not_found") => {}
                other => return other.map(drop),
            }
        }
        self.request(ClientMessage::RevokeInvite {
            code: None,
            invite_id: Some(code_or_id.to_string()),
        })
        .await
        .map(drop)
    }
}

impl MeshClient {
    /// Closes every connection of a member (id, pubkey or display name); it may come back.
    pub async fn kick(&self, member: &str, reason: Option<String>) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Kick {
            member: member.to_string(),
            reason,
        })
        .await
    }

    /// Closes one connection, named by its key, session id or presence id.
    pub async fn disconnect(&self, session: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Disconnect {
            session: session.to_string(),
        })
        .await
    }

    /// Bans a member until [`MeshClient::unban`].
    pub async fn ban(&self, member: &str, reason: Option<String>) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Ban {
            member: member.to_string(),
            reason,
        })
        .await
    }

    pub async fn unban(&self, member: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::Unban {
            member: member.to_string(),
        })
        .await
    }

    /// The mesh's bans, newest first; `true` when the broker left some out.
    pub async fn list_bans(&self) -> Result<(Vec<BanEntry>, bool), ClientError> {
        match self.request(ClientMessage::ListBans {}).await? {
            ServerMessage::Bans { bans, truncated } => Ok((bans, truncated)),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Why the broker ended this client's connection for good (a kick's, a ban's or a
    /// disconnect's reason, `revoked`), once its push stream has ended; `None` when the
    /// connection was only lost or closed here.
    pub fn removal(&self) -> Option<String> {
        match &*self.link().borrow() {
            Link::Down(why) if why != super::CLOSED_HERE && why != super::LOST => Some(why.clone()),
            _ => None,
        }
    }
}

/// The link to hand out: the broker's URL and, after `#` (a URL fragment is never sent to a
/// server), `ROOT.OWNER[.SIGNER]`: the mesh root key, the fingerprint of the owner key, and the
/// fingerprint of the signing admin's key when an admin signed (PROTOCOL.md §9). The joiner
/// checks the broker's answer against these, so nobody on the way can swap the owner.
///
/// After a rotation the key part is `KEY~EPOCH` (PROTOCOL.md §12.4): the current key and its
/// epoch; a key without `~` is epoch 0, as every link before rotations was.
pub fn invite_link(url: &str, entry: &MeshEntry, signer: &SignKeyPair) -> String {
    let key = match (entry.root_key.as_str(), entry.key_epoch) {
        ("", _) => String::new(),
        (key, 0) => key.to_string(),
        (key, epoch) => format!("{key}~{epoch}"),
    };
    let Ok(owner) = crate::protocol::Pubkey::parse(&entry.owner_pubkey) else {
        // A config without a usable owner key (never written by this version): the old form.
        return match key.as_str() {
            "" => url.to_string(),
            key => format!("{url}#{key}"),
        };
    };
    let mut link = format!("{url}#{key}.{}", key_fingerprint(&owner.0));
    if signer.public_hex() != entry.owner_pubkey {
        link.push('.');
        link.push_str(&key_fingerprint(&signer.public));
    }
    link
}
