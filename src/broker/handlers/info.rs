//! `mesh_info`: the mesh at a glance.

use std::collections::BTreeSet;

use super::reply::{answer, refuse};
use crate::broker::connection::Conn;
use crate::protocol::ServerMessage;
use crate::protocol::messages::{MeshInfo, TaskCountsEntry};

pub fn mesh_info(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let store = &broker.store;
        let mesh_id = peer.mesh_id.as_str();
        let mesh = store
            .mesh(mesh_id)?
            .ok_or_else(|| refuse("not_found", "this mesh no longer exists"))?;
        let live: Vec<_> = broker
            .presence
            .peers(mesh_id)
            .into_iter()
            .filter(|p| !p.control_plane && p.is_live())
            .collect();
        let mut groups: BTreeSet<String> = BTreeSet::new();
        for m in store.members(mesh_id)? {
            if m.revoked_at_ms.is_none() {
                groups.extend(m.groups.into_iter().map(|g| g.name));
            }
        }
        for p in &live {
            groups.extend(p.state().groups.iter().map(|g| g.name.clone()));
        }
        let tasks = store.task_counts(mesh_id)?;
        // An overview: the first names only (`mesh_schema` lists them with their columns).
        let mut tables = broker.sql.tables(mesh_id).await.unwrap_or_else(|e| {
            tracing::warn!("mesh_info: the SQL tables of {mesh_id}: {e}");
            Vec::new()
        });
        tables.truncate(crate::broker::limits::DEFAULT_PAGE_ITEMS);
        let info = MeshInfo {
            mesh: mesh.name,
            mesh_id: mesh.id,
            slug: mesh.slug,
            peers: live.len(),
            groups: groups.into_iter().collect(),
            // An overview, not the board: the first keys only (`list_state` pages them all).
            state_keys: store.state_keys(mesh_id, crate::broker::limits::DEFAULT_PAGE_ITEMS)?,
            memory_count: store.memory_count(mesh_id)?,
            file_count: store.file_count(mesh_id)? as u64,
            tasks: TaskCountsEntry {
                open: tasks.open,
                claimed: tasks.claimed,
                done: tasks.done,
            },
            streams: store
                .streams(mesh_id)?
                .into_iter()
                .map(|s| s.name)
                .collect(),
            your_name: peer.display_name.clone(),
            your_groups: peer.state().groups.clone(),
            group_bodies: mesh.group_bodies.as_str().into(),
            tables,
            collections: store
                .vector_collections(mesh_id)?
                .into_iter()
                .take(crate::broker::limits::DEFAULT_PAGE_ITEMS)
                .map(|c| c.name)
                .collect(),
        };
        Ok(Some(ServerMessage::MeshInfoResult(Box::new(info))))
    });
}
