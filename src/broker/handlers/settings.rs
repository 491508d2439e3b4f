//! A mesh's settings (PROTOCOL.md §5.2): how group and broadcast bodies are written. The owner
//! changes them, signing the choice with the owner key; every live connection that hears events
//! is told, so long-lived clients follow at once.

use serde_json::json;

use super::reply::{answer, refuse};
use crate::broker::connection::Conn;
use crate::broker::router;
use crate::protocol::ServerMessage;
use crate::protocol::messages::{GroupBodies, GroupBodiesProof, MeshSettings};
use crate::store::{Mesh, SettingsRefusal};

/// A mesh's settings as `mesh_settings` (and `hello_ack.meshPolicy`) carry them.
pub(super) fn settings(mesh: &Mesh) -> MeshSettings {
    let (group_bodies_signature, group_bodies_signed_at) =
        GroupBodiesProof::into_wire(mesh.group_bodies_proof.clone());
    MeshSettings {
        self_editable: mesh.self_editable,
        group_bodies: mesh.group_bodies.as_str().into(),
        group_bodies_signature,
        group_bodies_signed_at,
    }
}

pub fn set_mesh_settings(
    conn: &Conn,
    req_id: Option<String>,
    group_bodies: Option<String>,
    proof: Option<GroupBodiesProof>,
) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let store = &broker.store;
        let Some(mesh) = store.mesh(&peer.mesh_id)? else {
            return Err(refuse("not_found", "this mesh no longer exists"));
        };
        let Some(wanted) = group_bodies else {
            return Ok(Some(ServerMessage::MeshSettings(settings(&mesh))));
        };
        let Some(wanted) = GroupBodies::parse(&wanted) else {
            return Err(refuse(
                "invalid_argument",
                format!("groupBodies is \"sealed\" or \"plain\", not {wanted:?}"),
            ));
        };
        let Some(proof) =
            proof.filter(|p| p.verifies(&mesh.owner_pubkey.to_hex(), wanted.as_str()))
        else {
            return Err(refuse(
                "bad_signature",
                "groupBodies must come with the owner key's signature over it",
            ));
        };
        let signed_at = proof.signed_at;
        let changed = store
            .set_group_bodies(
                peer.mesh_id.clone(),
                peer.member_id.clone(),
                wanted,
                proof,
                crate::protocol::time::now_ms(),
            )
            .await?;
        let mesh = match changed {
            Ok(mesh) => mesh,
            Err(SettingsRefusal::NotOwner) => {
                return Err(refuse(
                    "forbidden",
                    "only the mesh's owner may change its settings",
                ));
            }
            Err(SettingsRefusal::Stale { current_signed_at }) => {
                return Err(refuse(
                    "stale_signature",
                    format!(
                        "this groupBodies signature (signedAt {signed_at}) is not newer than the current setting's ({current_signed_at}): sign the change anew"
                    ),
                ));
            }
        };
        let now = settings(&mesh);
        let event = router::system_event(&mesh.id, "mesh_settings", json!(now));
        for other in broker.presence.peers(&mesh.id) {
            if other.hears_events() {
                other.send(&event);
            }
        }
        Ok(Some(ServerMessage::MeshSettings(now)))
    });
}
