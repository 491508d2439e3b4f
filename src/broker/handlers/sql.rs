//! Per-mesh SQL (PROTOCOL.md §18): `mesh_query`, `mesh_execute`, `mesh_schema`. The engine and
//! every limit live in `store::sql`; this file turns frames into calls and results into frames.

use super::reply::{Refusal, answer, me, refuse};
use crate::broker::connection::Conn;
use crate::broker::limits::{DEFAULT_PAGE_ITEMS, PAGE_BYTES};
use crate::broker::page::page_items;
use crate::protocol::messages::{
    MeshExecuteResult, MeshQueryResult, MeshSchemaResult, SqlColumnEntry, SqlRowsEntry,
    SqlStatement, SqlTableEntry,
};
use crate::protocol::{ServerMessage, time};
use crate::store::sql::{PageSpec, Params, SqlRows};
use crate::store::{AuditActor, AuditEvent, AuditNote, SqlError};

impl From<SqlError> for Refusal {
    fn from(e: SqlError) -> Self {
        refuse(e.code(), e.to_string())
    }
}

fn rows_entry(r: SqlRows) -> SqlRowsEntry {
    SqlRowsEntry {
        row_count: r.rows.len(),
        columns: r.columns,
        rows: r.rows,
        next_offset: r.next_offset,
        truncated: r.note.is_some(),
        note: r.note,
    }
}

fn page(req: &SqlStatement) -> PageSpec {
    PageSpec {
        offset: req.offset.unwrap_or(0),
        limit: page_items(req.limit, DEFAULT_PAGE_ITEMS),
        max_bytes: PAGE_BYTES,
    }
}

fn statement(req: &SqlStatement) -> Result<(String, Params), Refusal> {
    if req.sql.trim().is_empty() {
        return Err(SqlError::Empty.into());
    }
    Ok((req.sql.clone(), Params::from_json(req.params.clone())?))
}

/// `mesh_query{sql, params?, offset?, limit?}` → `mesh_query_result`: one read-only statement,
/// one page of its rows.
pub fn mesh_query(conn: &Conn, req_id: Option<String>, req: SqlStatement) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let (sql, params) = statement(&req)?;
        let page = page(&req);
        let rows = broker.sql.query(&peer.mesh_id, sql, params, page).await?;
        Ok(Some(ServerMessage::MeshQueryResult(Box::new(
            MeshQueryResult {
                rows: rows_entry(rows),
                offset: page.offset,
            },
        ))))
    });
}

/// `mesh_execute{sql, params?}` → `mesh_execute_result`: one statement in a transaction of its
/// own, audited (`sql.executed`: what it wrote, never the SQL or its values) before it commits.
pub fn mesh_execute(conn: &Conn, req_id: Option<String>, req: SqlStatement) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let (sql, params) = statement(&req)?;
        let page = PageSpec {
            offset: 0,
            ..page(&req)
        };
        let runtime = tokio::runtime::Handle::current();
        let store = broker.store.clone();
        let mesh_id = peer.mesh_id.clone();
        let actor = AuditActor::member(peer.member_id.clone(), peer.display_name.clone());
        let audit = move |done: &crate::store::sql::Executed| {
            let note = AuditNote::new(AuditEvent::SqlExecuted, actor)
                .with("writes", done.writes.join(", "))
                .with("changes", done.changes);
            // On the SQL worker thread, outside the runtime: wait for the audit commit there.
            runtime
                .block_on(store.record_audit(&mesh_id, note, time::now_ms()))
                .map_err(|e| e.to_string())
        };
        let done = broker
            .sql
            .execute(&peer.mesh_id, sql, params, page, audit)
            .await?;
        Ok(Some(ServerMessage::MeshExecuteResult(Box::new(
            MeshExecuteResult {
                changes: done.changes,
                last_insert_rowid: done.last_insert_rowid,
                rows: rows_entry(done.rows),
            },
        ))))
    });
}

/// `mesh_schema{}` → `mesh_schema_result{tables, bytes, maxBytes}`.
pub fn mesh_schema(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let schema = broker.sql.schema(&peer.mesh_id).await?;
        let mut tables = schema.tables.into_iter().map(|t| SqlTableEntry {
            name: t.name,
            kind: t.kind,
            columns: t
                .columns
                .into_iter()
                .map(|c| SqlColumnEntry {
                    name: c.name,
                    decl_type: c.decl_type,
                    nullable: c.nullable,
                    primary_key: c.primary_key,
                })
                .collect(),
        });
        // Within one page's bytes, so the answer fits any client's frame.
        let mut listed = Vec::new();
        let mut bytes = 0;
        let truncated = loop {
            let Some(t) = tables.next() else {
                break false;
            };
            bytes += serde_json::to_string(&t).map_or(usize::MAX, |s| s.len());
            if bytes > PAGE_BYTES {
                break true;
            }
            listed.push(t);
        };
        Ok(Some(ServerMessage::MeshSchemaResult(MeshSchemaResult {
            tables: listed,
            bytes: schema.bytes,
            max_bytes: schema.max_bytes,
            truncated,
        })))
    });
}
