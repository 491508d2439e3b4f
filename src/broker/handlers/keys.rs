//! Root-key rotation (PROTOCOL.md §12.4): the owner's or an admin's client seals a new mesh
//! root key to every member that must hold it; the broker checks the set, stores the sealed
//! copies, bumps the key epoch, revokes invites whose links carry the old key, and hands each
//! member its copy (now if connected, at `get_keys` otherwise). It never sees a key.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::router;
use crate::broker::state::Broker;
use crate::protocol::messages::{
    AdminList, EpochKey, KeyHolder, RotateKey, RotateKeyOk, RotationProof,
};
use crate::protocol::{ServerMessage, time};
use crate::store::{AdminListRefusal, Rotation, RotationRefusal};

/// A sealed copy of a 32-byte key: crypto_box_seal adds an ephemeral key (32) and a MAC (16).
const SEALED_KEY_BYTES: usize = 32 + 48;
/// Most sealed copies one `rotate_key` may carry (far above what a frame can hold anyway).
const MAX_SEALED_COPIES: usize = 10_000;

/// Why a group or broadcast body under `epoch` must not be sent: it is not the mesh's current
/// key epoch, so a removed member's old key would protect new traffic. `None` when it is.
pub fn stale_epoch(broker: &Broker, mesh_id: &str, epoch: u64) -> Option<String> {
    let current = broker.store.key_epoch(mesh_id).unwrap_or(0);
    (epoch != current).then(|| {
        format!(
            "stale_key_epoch: this body is sealed under root-key epoch {epoch} but the mesh is at epoch {current}; reconnect (or fetch keys with get_keys) and send again"
        )
    })
}

pub fn rotate_key(conn: &Conn, req_id: Option<String>, req: RotateKey) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        managers_only(&broker, &peer, "can rotate the mesh root key")?;
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if req.check.len() != 64 || !req.check.bytes().all(lower_hex) {
            return Err(refuse(
                "invalid_argument",
                "check must be the new key's check value, 64 lowercase hex",
            ));
        }
        if req.keys.len() > MAX_SEALED_COPIES {
            return Err(refuse(
                "invalid_argument",
                format!("at most {MAX_SEALED_COPIES} sealed copies per rotation"),
            ));
        }
        let mut sealed = BTreeMap::new();
        for k in req.keys {
            let shaped = STANDARD
                .decode(&k.sealed)
                .is_ok_and(|b| b.len() == SEALED_KEY_BYTES);
            if !shaped {
                return Err(refuse(
                    "invalid_argument",
                    format!(
                        "the sealed copy for member {} is not {SEALED_KEY_BYTES} bytes of standard base64 (crypto_box_seal of a 32-byte key)",
                        k.member_id
                    ),
                ));
            }
            if sealed.insert(k.member_id.clone(), k.sealed).is_some() {
                return Err(refuse(
                    "invalid_argument",
                    format!("member {} has more than one sealed copy", k.member_id),
                ));
            }
        }
        let proof = RotationProof {
            check: req.check.clone(),
            signer: req.signer,
            signed_at: req.signed_at,
            signature: req.signature,
            admins: None,
        };
        let rotation = Rotation {
            mesh_id: peer.mesh_id.clone(),
            by: peer.member_id.clone(),
            epoch: req.epoch,
            check: req.check,
            sealed,
            proof,
            now_ms: time::now_ms(),
        };
        let rotated = match broker.store.rotate_root_key(rotation).await? {
            Ok(r) => r,
            Err(RotationRefusal::Forbidden) => {
                return Err(refuse(
                    "forbidden",
                    "only the owner or an admin can rotate the mesh root key",
                ));
            }
            Err(RotationRefusal::WrongEpoch { current }) => {
                return Err(refuse(
                    "stale_key_epoch",
                    format!(
                        "the mesh is at key epoch {current}, so the next rotation is epoch {}, not {}: fetch keys and rotate again",
                        current + 1,
                        req.epoch
                    ),
                ));
            }
            Err(RotationRefusal::Members { missing, extra }) => {
                return Err(refuse(
                    "membership_changed",
                    format!(
                        "the members who must hold the key changed while the key was sealed ({} without a copy, {} who must not get one); nothing was stored: list the key holders and rotate again",
                        missing.len(),
                        extra.len()
                    ),
                ));
            }
            Err(RotationRefusal::Unsigned(why)) => return Err(refuse("unsigned_rotation", why)),
            Err(RotationRefusal::MeshGone) => {
                return Err(refuse("not_found", "this mesh no longer exists"));
            }
        };
        tracing::info!(mesh = %peer.mesh_id, epoch = rotated.epoch, members = rotated.sealed.len(), invites_revoked = rotated.invites_revoked, "root key rotated");
        for other in broker.presence.peers(&peer.mesh_id) {
            if let Some(copy) = rotated.sealed.get(&other.member_id) {
                other.send(&router::system_event(
                    &peer.mesh_id,
                    "key_rotated",
                    json!(EpochKey {
                        epoch: rotated.epoch,
                        sealed: copy.clone(),
                        proof: Some(rotated.proof.clone()),
                    }),
                ));
            }
        }
        Ok(Some(ServerMessage::KeyRotated(RotateKeyOk {
            epoch: rotated.epoch,
            members: rotated.sealed.len(),
            invites_revoked: rotated.invites_revoked,
        })))
    });
}

pub fn get_keys(conn: &Conn, req_id: Option<String>, since: u64) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let (current, keys) = broker
            .store
            .sealed_keys(&peer.mesh_id, &peer.member_id, since)?;
        let admins = broker.store.admin_list(&peer.mesh_id)?;
        Ok(Some(ServerMessage::Keys {
            current,
            keys,
            admins,
        }))
    });
}

pub fn list_key_holders(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        // The first step of a rotation: refused as the rotation it is part of.
        managers_only(&broker, &peer, "can rotate the mesh root key")?;
        let (epoch, holders) = broker.store.key_holders(&peer.mesh_id)?;
        let members = holders
            .into_iter()
            .map(|m| KeyHolder {
                member_id: m.id,
                pubkey: m.pubkey.to_hex(),
                display_name: m.display_name,
            })
            .collect();
        Ok(Some(ServerMessage::KeyHolders { epoch, members }))
    });
}

pub fn get_admins(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let list = broker.store.admin_list(&peer.mesh_id)?;
        Ok(Some(ServerMessage::Admins { list }))
    });
}

pub fn set_admins(conn: &Conn, req_id: Option<String>, list: AdminList) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let stored = broker
            .store
            .set_admin_list(&peer.mesh_id, &peer.member_id, list, time::now_ms())
            .await?;
        let why = match stored {
            Ok(list) => return Ok(Some(ServerMessage::Admins { list: Some(list) })),
            Err(AdminListRefusal::Forbidden) => {
                return Err(refuse("forbidden", "only the owner signs the admin list"));
            }
            Err(AdminListRefusal::MeshGone) => {
                return Err(refuse("not_found", "this mesh no longer exists"));
            }
            Err(AdminListRefusal::BadSignature) => {
                "the admin list is not signed by this mesh's owner key (keys ascending, no repeats)"
                    .to_string()
            }
            Err(AdminListRefusal::Stale { stored }) => format!(
                "the stored admin list is version {stored}; a new one must have a higher version: fetch it and sign again"
            ),
        };
        Err(refuse("invalid_argument", why))
    });
}

/// Refuses anyone but the owner or an admin (as stored now): "only the owner or an admin {what}".
fn managers_only(broker: &Broker, peer: &Peer, what: &str) -> Result<(), Refusal> {
    if super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id) {
        return Ok(());
    }
    Err(refuse(
        "forbidden",
        format!("only the owner or an admin {what}"),
    ))
}
