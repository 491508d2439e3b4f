//! `vector_create`, `vector_store`, `vector_search`, `vector_delete`, `list_collections`,
//! `vector_delete_collection` (PROTOCOL.md §20): the mesh's vector collections.

use super::reply::{MAX_TEXT, Refusal, actor, answer, ok_ack, refuse, text};
use crate::broker::connection::Conn;
use crate::protocol::messages::{
    CollectionEntry, VectorCreate, VectorResult, VectorSearch, VectorStore,
};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{
    CollectionRecord, MAX_FILTER_BYTES, MAX_METADATA_BYTES, MAX_SEARCH_LIMIT, Metric, NewPoint,
    VectorError, VectorRefusal, check_collection_name, check_dimension, check_record_id,
    check_vector,
};

/// Results a search returns unless it asks for another number.
const DEFAULT_LIMIT: usize = 10;

impl From<VectorRefusal> for Refusal {
    fn from(e: VectorRefusal) -> Self {
        refuse(e.code(), e.to_string())
    }
}

impl From<VectorError> for Refusal {
    fn from(e: VectorError) -> Self {
        refuse("internal", e.to_string())
    }
}

fn invalid(message: String) -> Refusal {
    refuse("invalid_argument", message)
}

fn entry(c: CollectionRecord) -> CollectionEntry {
    CollectionEntry {
        name: c.name,
        dimension: c.dimension,
        metric: c.metric.as_str().to_string(),
        count: c.count,
        created_by: c.created_by,
        created_at: time::iso(c.created_at_ms),
    }
}

/// A JSON object, at most `max` bytes as JSON text, as that text.
fn object_text(what: &str, value: &serde_json::Value, max: usize) -> Result<String, Refusal> {
    if !value.is_object() {
        return Err(invalid(format!(
            "{what} must be a JSON object, not {value}"
        )));
    }
    let text = value.to_string();
    if text.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes as JSON; the most is {max}",
            text.len()
        )));
    }
    Ok(text)
}

pub fn vector_create(conn: &Conn, req_id: Option<String>, req: VectorCreate) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        check_collection_name(&req.collection).map_err(invalid)?;
        check_dimension(req.dimension).map_err(invalid)?;
        let metric = match req.metric.as_deref() {
            None => Metric::Cosine,
            Some(m) => Metric::parse(m).ok_or_else(|| {
                invalid(format!("metric {m:?} is not one of cosine, dot, euclid"))
            })?,
        };
        let by = actor(&broker, &peer);
        let created = broker
            .vectors
            .create(
                &broker.store,
                &peer.mesh_id,
                &req.collection,
                req.dimension,
                metric,
                by,
            )
            .await??;
        Ok(Some(ServerMessage::VectorCollection(entry(created))))
    });
}

pub fn vector_store(conn: &Conn, req_id: Option<String>, req: VectorStore) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        check_collection_name(&req.collection).map_err(invalid)?;
        check_vector(&req.vector).map_err(invalid)?;
        let id = match req.id {
            Some(id) => {
                check_record_id(&id).map_err(invalid)?;
                id
            }
            None => ids::new_id(),
        };
        let metadata = match &req.metadata {
            None | Some(serde_json::Value::Null) => None,
            Some(m) => Some(object_text("metadata", m, MAX_METADATA_BYTES)?),
        };
        let text_field = match req.text {
            Some(t) => Some(text("text", &t, MAX_TEXT)?),
            None => None,
        };
        let new = NewPoint {
            collection: req.collection,
            id: id.clone(),
            vector: req.vector,
            metadata,
            text: text_field,
            create_missing: true,
        };
        // Answers once the record is durable in redb and a search finds it.
        let by = actor(&broker, &peer);
        broker
            .vectors
            .store(&broker.store, &peer.mesh_id, new, by)
            .await??;
        Ok(Some(ServerMessage::VectorStored { id }))
    });
}

pub fn vector_search(conn: &Conn, req_id: Option<String>, req: VectorSearch) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        check_collection_name(&req.collection).map_err(invalid)?;
        check_vector(&req.vector).map_err(invalid)?;
        let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_SEARCH_LIMIT).contains(&limit) {
            return Err(invalid(format!(
                "limit {limit} is out of range: 1 to {MAX_SEARCH_LIMIT}"
            )));
        }
        let filter = match &req.filter {
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(f) => {
                object_text("filter", f, MAX_FILTER_BYTES)?;
                f.as_object().cloned().unwrap_or_default()
            }
        };
        let hits = broker
            .vectors
            .search(
                &broker.store,
                &peer.mesh_id,
                &req.collection,
                req.vector,
                limit,
                filter,
            )
            .await??;
        let results = hits
            .into_iter()
            .map(|h| VectorResult {
                id: h.point.id,
                score: h.score,
                text: h.point.text,
                metadata: h.point.metadata.and_then(|m| serde_json::from_str(&m).ok()),
            })
            .collect();
        Ok(Some(ServerMessage::VectorResults { results }))
    });
}

pub fn vector_delete(conn: &Conn, req_id: Option<String>, collection: String, id: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        check_collection_name(&collection).map_err(invalid)?;
        check_record_id(&id).map_err(invalid)?;
        let by = actor(&broker, &peer);
        let deleted = broker
            .vectors
            .delete(&broker.store, &peer.mesh_id, &collection, &id, by)
            .await??;
        if !deleted {
            return Err(refuse(
                "not_found",
                format!("no record {id:?} in collection \"{collection}\""),
            ));
        }
        Ok(Some(ok_ack()))
    });
}

pub fn vector_delete_collection(conn: &Conn, req_id: Option<String>, collection: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        check_collection_name(&collection).map_err(invalid)?;
        let by = actor(&broker, &peer);
        let deleted = broker
            .vectors
            .drop_collection(&broker.store, &peer.mesh_id, &collection, by)
            .await?;
        if !deleted {
            return Err(VectorRefusal::NoCollection(collection).into());
        }
        Ok(Some(ok_ack()))
    });
}

pub fn list_collections(conn: &Conn, req_id: Option<String>) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let broker = conn.broker.clone();
    answer(conn, req_id, async move {
        let details: Vec<CollectionEntry> = broker
            .store
            .vector_collections(&peer.mesh_id)?
            .into_iter()
            .map(entry)
            .collect();
        Ok(Some(ServerMessage::CollectionList {
            collections: details.iter().map(|c| c.name.clone()).collect(),
            details,
        }))
    });
}
