//! A mesh's settings (PROTOCOL.md §5.2): how group and broadcast bodies are written. The owner
//! changes them; every live connection is told, so long-lived clients follow at once.

use serde_json::json;

use super::reply::{answer, refuse};
use crate::broker::connection::Conn;
use crate::broker::router;
use crate::protocol::ServerMessage;
use crate::protocol::messages::{GroupBodies, MeshSettings};
use crate::store::Mesh;

fn settings(mesh: &Mesh) -> MeshSettings {
    MeshSettings {
        self_editable: mesh.self_editable,
        group_bodies: mesh.group_bodies.as_str().into(),
    }
}

pub fn set_mesh_settings(conn: &Conn, req_id: Option<String>, group_bodies: Option<String>) {
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
                format!("groupBodies is \"sealed\" or \"plain\", not \"{wanted}\""),
            ));
        };
        let Some(mesh) = store
            .set_group_bodies(peer.mesh_id.clone(), peer.member_id.clone(), wanted)
            .await?
        else {
            return Err(refuse(
                "forbidden",
                "only the mesh's owner may change its settings",
            ));
        };
        let now = settings(&mesh);
        let event = router::system_event(
            &mesh.id,
            "mesh_settings",
            json!({
                "selfEditable": now.self_editable,
                "groupBodies": now.group_bodies,
            }),
        );
        for other in broker.presence.peers(&mesh.id) {
            other.send(&event);
        }
        Ok(Some(ServerMessage::MeshSettings(now)))
    });
}
