//! The mesh's graph (PROTOCOL.md §19): `graph_query` and `graph_execute` on the asking
//! member's mesh, through `store::graph` (the engine, its worker processes and time budget).

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::protocol::messages::{GraphRequest, GraphResult, MAX_CYPHER_BYTES};
use crate::protocol::{ServerMessage, time};
use crate::store::graph::{GraphError, GraphMode};
use crate::store::{AuditActor, AuditEvent, AuditNote};

impl From<GraphError> for Refusal {
    fn from(e: GraphError) -> Self {
        let code = match &e {
            GraphError::Query(_) | GraphError::Param(_) => "invalid_argument",
            GraphError::ReadOnly(_) => "read_only",
            GraphError::Timeout(_) => "timeout",
            GraphError::Busy(_) => "busy",
            GraphError::Quota(..) | GraphError::TooBig(_) => "quota_exceeded",
            GraphError::Limit(_) => "payload_too_large",
            GraphError::Storage(_) => "internal",
        };
        refuse(code, e.to_string())
    }
}

fn checked(req: &GraphRequest) -> Result<(), Refusal> {
    if req.cypher.len() > MAX_CYPHER_BYTES {
        return Err(refuse(
            "payload_too_large",
            format!(
                "the Cypher statement is {} bytes; the limit is {MAX_CYPHER_BYTES} (pass data as params)",
                req.cypher.len()
            ),
        ));
    }
    if req.cypher.trim().is_empty() {
        return Err(refuse("invalid_argument", "cypher is empty"));
    }
    Ok(())
}

/// `graph_query{cypher, params?}` → `graph_result`: read-only, for any member of the mesh.
pub fn graph_query(conn: &Conn, req_id: Option<String>, req: GraphRequest) {
    run(conn, req_id, req, GraphMode::Read);
}

/// `graph_execute{cypher, params?}` → `graph_result` (needs `state`, §12.1). Committed to disk
/// before the answer; then logged as `graph.written` (size only).
pub fn graph_execute(conn: &Conn, req_id: Option<String>, req: GraphRequest) {
    run(conn, req_id, req, GraphMode::Write);
}

fn run(conn: &Conn, req_id: Option<String>, req: GraphRequest, mode: GraphMode) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        checked(&req)?;
        let a = broker
            .graphs
            .run(&peer.mesh_id, mode, &req.cypher, req.params.as_ref())
            .await?;
        if mode == GraphMode::Write {
            let note = AuditNote::new(
                AuditEvent::GraphWritten,
                AuditActor::member(peer.member_id.clone(), peer.display_name.clone()),
            )
            .with("bytes", req.cypher.len())
            .with("records", a.records.len());
            broker
                .store
                .record_audit(&peer.mesh_id, note, time::now_ms())
                .await?;
        }
        Ok(Some(ServerMessage::GraphResult(GraphResult {
            records: a.records,
            truncated: a.truncated,
        })))
    });
}
