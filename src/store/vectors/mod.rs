//! The mesh's vector collections (issue 16, PROTOCOL.md §20). redb holds the collections and
//! their records (the source of truth); an HNSW graph per collection (`ann.rs`) finds nearest
//! neighbours. The graphs are derived data, kept in `<data>/vectors/<mesh>/<collection>/`:
//! opened on a collection's first use, rebuilt from redb when their files are missing,
//! unreadable or behind (each collection counts its changes in redb; a dump records the count
//! it holds), and dumped at shutdown.
//!
//! Embeddings come from the members: the broker stores and searches vectors, it never computes
//! them.

mod ann;
mod flat;
mod index;

use std::collections::HashSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

pub use ann::{EF_SEARCH, EXACT_UP_TO, set_ef_search, set_exact_up_to};
use ann::{dot, squared_l2};
pub use index::VectorIndex;

use super::audit::{self, AuditEvent, AuditNote};
use super::{Actor, Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, collection) → CollectionRecord`
pub(crate) const VECTOR_COLLECTIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("vector_collections");
/// `(mesh_id, collection, record id) → PointRecord`
pub(crate) const VECTOR_POINTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("vector_points");
/// `(mesh_id, collection, slot) → record id`: the live records under the labels the graph
/// knows them by.
pub(crate) const VECTOR_SLOTS: TableDefinition<(&str, &str, u64), &str> =
    TableDefinition::new("vector_slots");

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(VECTOR_COLLECTIONS)?;
    tx.open_table(VECTOR_POINTS)?;
    tx.open_table(VECTOR_SLOTS)?;
    Ok(())
}

/// Most numbers in one vector.
pub const MAX_DIMENSION: usize = 4096;
/// Most collections in one mesh.
pub const MAX_COLLECTIONS: usize = 64;
/// Most records in all of one mesh's collections.
pub const MAX_POINTS_PER_MESH: u64 = 200_000;
/// Most numbers in all of one mesh's records (records × dimension): 320 MB of f32.
pub const MAX_VALUES_PER_MESH: u64 = 80_000_000;
/// Default for the bytes one mesh's records may hold (`claudemesh broker --max-vector-bytes`):
/// their vectors (4 bytes a number), ids, metadata and text, as [`record_bytes`] counts them.
pub const DEFAULT_MAX_VECTOR_BYTES: u64 = 512 << 20;
/// Largest metadata object, as JSON text.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// Largest `filter` object, as JSON text.
pub const MAX_FILTER_BYTES: usize = 4 * 1024;
/// Most results one search returns.
pub const MAX_SEARCH_LIMIT: usize = 100;
/// Longest collection name and record id.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_ID_CHARS: usize = 128;
/// Largest magnitude of one number: sums of products of 4096 of them stay finite in f32.
pub const MAX_ABS_VALUE: f32 = 1e15;

/// How similarity is measured, fixed when a collection is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Cosine similarity (score 1 = same direction); the original's default.
    #[default]
    Cosine,
    /// Inner product (higher is nearer).
    Dot,
    /// Euclidean distance (score = distance; lower is nearer).
    Euclid,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::Euclid => "euclid",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Some(Metric::Cosine),
            "dot" => Some(Metric::Dot),
            "euclid" | "euclidean" => Some(Metric::Euclid),
            _ => None,
        }
    }

    /// The score a result reports: cosine similarity, inner product, or Euclidean distance.
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let norms = (dot(a, a) * dot(b, b)).sqrt();
                if norms > 0.0 { dot(a, b) / norms } else { 0.0 }
            }
            Metric::Dot => dot(a, b),
            Metric::Euclid => squared_l2(a, b).sqrt(),
        }
    }

    /// Whether score `a` ranks before score `b`.
    fn better(self, a: f32, b: f32) -> std::cmp::Ordering {
        match self {
            Metric::Euclid => a.total_cmp(&b),
            Metric::Cosine | Metric::Dot => b.total_cmp(&a),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CollectionRecord {
    pub name: String,
    pub dimension: u32,
    pub metric: Metric,
    pub created_by: String,
    pub member_id: String,
    pub created_at_ms: i64,
    /// Records it holds.
    pub count: u64,
    /// Changes made to it (stores and deletes); its graph's dump records how many it holds.
    pub ops: u64,
    /// The slot the next stored record gets.
    pub next_slot: u64,
    /// What its records weigh against the mesh's byte quota ([`record_bytes`]).
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PointRecord {
    pub id: String,
    pub slot: u64,
    pub vector: Vec<f32>,
    /// A JSON object, as text.
    #[serde(default)]
    pub metadata: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    pub stored_by: String,
    pub member_id: String,
    pub stored_at_ms: i64,
}

impl PointRecord {
    /// What it weighs against the mesh's byte quota.
    pub fn bytes(&self) -> u64 {
        record_bytes(
            &self.id,
            self.vector.len(),
            self.metadata.as_deref(),
            self.text.as_deref(),
        )
    }
}

/// A record's slot and vector, decoded without its text and metadata (a rebuild reads these).
#[derive(Deserialize)]
struct SlotVector {
    slot: u64,
    vector: Vec<f32>,
}

/// A record found by a search, with its score (see [`Metric::score`]).
#[derive(Debug, Clone)]
pub struct VectorHit {
    pub point: PointRecord,
    pub score: f32,
}

/// A request the mesh's collections cannot take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorRefusal {
    #[error("no collection \"{0}\" in this mesh (create it: claudemesh vector create {0} --dim N)")]
    NoCollection(String),
    #[error("collection \"{collection}\" holds {expected}-dimension vectors; this one has {got}")]
    Dimension {
        collection: String,
        expected: usize,
        got: usize,
    },
    #[error("collection \"{name}\" already exists with dimension {dimension} and metric {metric}")]
    Exists {
        name: String,
        dimension: u32,
        metric: &'static str,
    },
    #[error("collection \"{0}\" uses the cosine metric, and a vector of zeros has no direction")]
    ZeroVector(String),
    #[error("this mesh already holds {MAX_COLLECTIONS} collections, the most it may")]
    TooManyCollections,
    #[error("this mesh already holds {MAX_POINTS_PER_MESH} vectors, the most it may")]
    TooManyPoints,
    #[error(
        "this mesh's vectors would hold more than {MAX_VALUES_PER_MESH} numbers (records × dimension), the most they may"
    )]
    TooManyValues,
    #[error(
        "quota: this mesh's vector records may hold at most {0} bytes (vectors, ids, metadata and text; --max-vector-bytes on this broker); delete some records first"
    )]
    TooManyBytes(u64),
}

impl VectorRefusal {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            VectorRefusal::NoCollection(_) => "not_found",
            VectorRefusal::Dimension { .. }
            | VectorRefusal::Exists { .. }
            | VectorRefusal::ZeroVector(_) => "invalid_argument",
            _ => "quota_exceeded",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum VectorError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("vector index: {0}")]
    Index(String),
}

/// A collection name: 1-64 letters, digits, `_`, `-` or `.`, starting with a letter or digit.
pub fn check_collection_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "collection name {name:?} must be 1-{MAX_NAME_CHARS} letters, digits, '_', '-' or '.', starting with a letter or digit"
        ))
    }
}

/// A record id: 1-128 characters, no control characters.
pub fn check_record_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(format!(
            "record id {id:?} must be 1-{MAX_ID_CHARS} characters without control characters"
        ));
    }
    Ok(())
}

pub fn check_dimension(dimension: usize) -> Result<(), String> {
    if (1..=MAX_DIMENSION).contains(&dimension) {
        Ok(())
    } else {
        Err(format!(
            "dimension {dimension} is out of range: 1 to {MAX_DIMENSION}"
        ))
    }
}

/// A vector of 1-4096 finite numbers within ±1e15.
pub fn check_vector(v: &[f32]) -> Result<(), String> {
    check_dimension(v.len()).map_err(|e| format!("vector {e}"))?;
    if let Some(i) = v
        .iter()
        .position(|x| !x.is_finite() || x.abs() > MAX_ABS_VALUE)
    {
        return Err(format!(
            "vector[{i}] is {}: every number must be finite and within ±{MAX_ABS_VALUE:e}",
            v[i]
        ));
    }
    Ok(())
}

/// The numbers of a JSON vector as f32; names the first one that is not a number or does not
/// fit in an f32 (NaN and infinities cannot be written in JSON; overflow is refused here).
pub fn vector_from_json(values: &[serde_json::Value]) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let Some(x) = value.as_f64() else {
            return Err(format!("vector[{i}] is {value}, not a number"));
        };
        out.push(x as f32);
    }
    check_vector(&out)?;
    Ok(out)
}

/// Whether `metadata` (a JSON object) has every key of `filter` with an equal value.
pub fn matches_filter(
    metadata: Option<&str>,
    filter: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    if filter.is_empty() {
        return true;
    }
    let Some(Ok(serde_json::Value::Object(meta))) =
        metadata.map(serde_json::from_str::<serde_json::Value>)
    else {
        return false;
    };
    filter.iter().all(|(k, v)| meta.get(k) == Some(v))
}

/// What a write did to the collection's graph.
struct Applied {
    collection: CollectionRecord,
    /// The new record's slot (a store).
    added: Option<u64>,
    /// The slot whose record is gone (a delete, or a store replacing a record).
    retired: Option<u64>,
}

/// What one record weighs against the mesh's byte quota: 4 bytes per number, its id, its
/// metadata's JSON and its text.
pub fn record_bytes(id: &str, dimension: usize, metadata: Option<&str>, text: Option<&str>) -> u64 {
    (dimension * 4 + id.len() + metadata.map_or(0, str::len) + text.map_or(0, str::len)) as u64
}

/// What all of a mesh's collections hold.
#[derive(Default)]
struct Totals {
    collections: usize,
    points: u64,
    values: u64,
    bytes: u64,
}

fn mesh_totals(tx: &WriteTransaction, mesh_id: &str) -> Result<Totals, StoreError> {
    let table = tx.open_table(VECTOR_COLLECTIONS)?;
    let mut t = Totals::default();
    for row in table.range((mesh_id, "")..)? {
        let (k, v) = row?;
        if k.value().0 != mesh_id {
            break;
        }
        let c: CollectionRecord = decode(v.value())?;
        t.collections += 1;
        t.points += c.count;
        t.values += c.count * u64::from(c.dimension);
        t.bytes += c.bytes;
    }
    Ok(t)
}

/// Creates the collection unless it exists; an existing one of the same dimension and metric
/// is answered as it is.
fn ensure_collection(
    tx: &WriteTransaction,
    mesh_id: &str,
    name: &str,
    dimension: usize,
    metric: Metric,
    by: &Actor,
    now: i64,
) -> Result<Result<CollectionRecord, VectorRefusal>, StoreError> {
    let existing: Option<CollectionRecord> =
        decode_opt(tx.open_table(VECTOR_COLLECTIONS)?.get((mesh_id, name))?)?;
    if let Some(c) = existing {
        if c.dimension as usize == dimension && c.metric == metric {
            return Ok(Ok(c));
        }
        return Ok(Err(VectorRefusal::Exists {
            name: c.name,
            dimension: c.dimension,
            metric: c.metric.as_str(),
        }));
    }
    if mesh_totals(tx, mesh_id)?.collections >= MAX_COLLECTIONS {
        return Ok(Err(VectorRefusal::TooManyCollections));
    }
    let record = CollectionRecord {
        name: name.to_string(),
        dimension: dimension as u32,
        metric,
        created_by: by.name.clone(),
        member_id: by.member_id.clone(),
        created_at_ms: now,
        count: 0,
        ops: 0,
        next_slot: 0,
        bytes: 0,
    };
    tx.open_table(VECTOR_COLLECTIONS)?
        .insert((mesh_id, name), encode(&record).as_slice())?;
    let note = AuditNote::new(AuditEvent::VectorCollectionCreated, by)
        .with("collection", name)
        .with("dimension", dimension)
        .with("metric", metric.as_str());
    audit::append(tx, mesh_id, &note, now)?;
    Ok(Ok(record))
}

/// What a store asks for.
pub struct NewPoint {
    pub collection: String,
    pub id: String,
    pub vector: Vec<f32>,
    pub metadata: Option<String>,
    pub text: Option<String>,
    /// Create the collection (this vector's dimension, cosine) when it does not exist, as the
    /// original does on a first `vector_store`.
    pub create_missing: bool,
}

impl Store {
    async fn create_collection(
        &self,
        mesh_id: String,
        name: String,
        dimension: usize,
        metric: Metric,
        by: Actor,
    ) -> Result<Result<CollectionRecord, VectorRefusal>, StoreError> {
        self.write(move |tx| {
            let now = crate::protocol::time::now_ms();
            ensure_collection(tx, &mesh_id, &name, dimension, metric, &by, now)
        })
        .await
    }

    /// Stores a record unless the mesh would go over a quota (`max_bytes`: its byte quota).
    async fn put_point(
        &self,
        mesh_id: String,
        new: NewPoint,
        max_bytes: u64,
        by: Actor,
    ) -> Result<Result<Applied, VectorRefusal>, StoreError> {
        self.write(move |tx| {
            let now = crate::protocol::time::now_ms();
            let name = new.collection.as_str();
            let exists = tx
                .open_table(VECTOR_COLLECTIONS)?
                .get((mesh_id.as_str(), name))?
                .is_some();
            if !exists && !new.create_missing {
                return Ok(Err(VectorRefusal::NoCollection(new.collection.clone())));
            }
            let dimension = new.vector.len();
            let mut collection = if exists {
                let c: Option<CollectionRecord> = decode_opt(
                    tx.open_table(VECTOR_COLLECTIONS)?
                        .get((mesh_id.as_str(), name))?,
                )?;
                match c {
                    Some(c) => c,
                    None => return Ok(Err(VectorRefusal::NoCollection(name.to_string()))),
                }
            } else {
                match ensure_collection(tx, &mesh_id, name, dimension, Metric::Cosine, &by, now)? {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                }
            };
            if collection.dimension as usize != dimension {
                return Ok(Err(VectorRefusal::Dimension {
                    collection: name.to_string(),
                    expected: collection.dimension as usize,
                    got: dimension,
                }));
            }
            if collection.metric == Metric::Cosine && new.vector.iter().all(|x| *x == 0.0) {
                return Ok(Err(VectorRefusal::ZeroVector(name.to_string())));
            }
            let mut points = tx.open_table(VECTOR_POINTS)?;
            let key = (mesh_id.as_str(), name, new.id.as_str());
            let old: Option<PointRecord> = decode_opt(points.get(key)?)?;
            let bytes = record_bytes(
                &new.id,
                dimension,
                new.metadata.as_deref(),
                new.text.as_deref(),
            );
            let old_bytes = old.as_ref().map_or(0, PointRecord::bytes);
            let totals = mesh_totals(tx, &mesh_id)?;
            if old.is_none() {
                if totals.points >= MAX_POINTS_PER_MESH {
                    return Ok(Err(VectorRefusal::TooManyPoints));
                }
                if totals.values + dimension as u64 > MAX_VALUES_PER_MESH {
                    return Ok(Err(VectorRefusal::TooManyValues));
                }
                collection.count += 1;
            }
            // A replacement is charged what it adds to the record it replaces.
            if bytes > old_bytes && totals.bytes.saturating_sub(old_bytes) + bytes > max_bytes {
                return Ok(Err(VectorRefusal::TooManyBytes(max_bytes)));
            }
            collection.bytes = collection.bytes.saturating_sub(old_bytes) + bytes;
            let slot = collection.next_slot;
            collection.next_slot += 1;
            collection.ops += 1;
            let record = PointRecord {
                id: new.id.clone(),
                slot,
                vector: new.vector,
                metadata: new.metadata,
                text: new.text,
                stored_by: by.name.clone(),
                member_id: by.member_id.clone(),
                stored_at_ms: now,
            };
            points.insert(key, encode(&record).as_slice())?;
            drop(points);
            let mut slots = tx.open_table(VECTOR_SLOTS)?;
            if let Some(old) = &old {
                slots.remove((mesh_id.as_str(), name, old.slot))?;
            }
            slots.insert((mesh_id.as_str(), name, slot), new.id.as_str())?;
            drop(slots);
            tx.open_table(VECTOR_COLLECTIONS)?
                .insert((mesh_id.as_str(), name), encode(&collection).as_slice())?;
            // The id only: never the vector, metadata or text.
            let note = AuditNote::new(AuditEvent::VectorStored, &by)
                .with("collection", name)
                .with("id", &new.id);
            audit::append(tx, &mesh_id, &note, now)?;
            Ok(Ok(Applied {
                collection,
                added: Some(slot),
                retired: old.map(|o| o.slot),
            }))
        })
        .await
    }

    async fn remove_point(
        &self,
        mesh_id: String,
        name: String,
        id: String,
        by: Actor,
    ) -> Result<Result<Applied, VectorRefusal>, StoreError> {
        self.write(move |tx| {
            let mut collection: CollectionRecord = match decode_opt(
                tx.open_table(VECTOR_COLLECTIONS)?
                    .get((mesh_id.as_str(), name.as_str()))?,
            )? {
                Some(c) => c,
                None => return Ok(Err(VectorRefusal::NoCollection(name))),
            };
            let key = (mesh_id.as_str(), name.as_str(), id.as_str());
            let old: Option<PointRecord> = decode_opt(tx.open_table(VECTOR_POINTS)?.remove(key)?)?;
            let Some(old) = old else {
                return Ok(Ok(Applied {
                    collection,
                    added: None,
                    retired: None,
                }));
            };
            tx.open_table(VECTOR_SLOTS)?
                .remove((mesh_id.as_str(), name.as_str(), old.slot))?;
            collection.count = collection.count.saturating_sub(1);
            collection.bytes = collection.bytes.saturating_sub(old.bytes());
            collection.ops += 1;
            tx.open_table(VECTOR_COLLECTIONS)?.insert(
                (mesh_id.as_str(), name.as_str()),
                encode(&collection).as_slice(),
            )?;
            let note = AuditNote::new(AuditEvent::VectorDeleted, &by)
                .with("collection", &name)
                .with("id", &id);
            audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
            Ok(Ok(Applied {
                collection,
                added: None,
                retired: Some(old.slot),
            }))
        })
        .await
    }

    /// Deletes a collection and every record in it, in one transaction; `false` when it does
    /// not exist.
    async fn drop_collection(
        &self,
        mesh_id: String,
        name: String,
        by: Actor,
    ) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let (mesh, name) = (mesh_id.as_str(), name.as_str());
            if tx
                .open_table(VECTOR_COLLECTIONS)?
                .remove((mesh, name))?
                .is_none()
            {
                return Ok(false);
            }
            // Every live record has one slot: the slots name the records to remove.
            let mut slots = tx.open_table(VECTOR_SLOTS)?;
            let mut ids = Vec::new();
            for row in slots.range((mesh, name, 0u64)..=(mesh, name, u64::MAX))? {
                ids.push(row?.1.value().to_string());
            }
            slots.retain_in((mesh, name, 0u64)..=(mesh, name, u64::MAX), |_, _| false)?;
            let mut points = tx.open_table(VECTOR_POINTS)?;
            for id in &ids {
                points.remove((mesh, name, id.as_str()))?;
            }
            let note =
                AuditNote::new(AuditEvent::VectorCollectionDeleted, &by).with("collection", name);
            audit::append(tx, mesh, &note, crate::protocol::time::now_ms())?;
            Ok(true)
        })
        .await
    }

    pub fn vector_collection(
        &self,
        mesh_id: &str,
        name: &str,
    ) -> Result<Option<CollectionRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(VECTOR_COLLECTIONS)?.get((mesh_id, name))?)
    }

    /// The mesh's collections, by name.
    pub fn vector_collections(&self, mesh_id: &str) -> Result<Vec<CollectionRecord>, StoreError> {
        let rt = self.read()?;
        super::rows::mesh_rows(&rt.open_table(VECTOR_COLLECTIONS)?, mesh_id)
    }

    /// Every record's slot and vector, handed to `each` in batches of at most `batch` (a
    /// rebuild holds one batch at a time, never the whole collection, nor any text or
    /// metadata).
    fn vector_batches(
        &self,
        mesh_id: &str,
        name: &str,
        batch: usize,
        mut each: impl FnMut(Vec<(usize, Vec<f32>)>) -> Result<(), String>,
    ) -> Result<(), VectorError> {
        let rt = self.read()?;
        let table = rt.open_table(VECTOR_POINTS).map_err(StoreError::from)?;
        let mut out = Vec::with_capacity(batch);
        for row in table
            .range((mesh_id, name, "")..)
            .map_err(StoreError::from)?
        {
            let (k, v) = row.map_err(StoreError::from)?;
            let (m, c, _) = k.value();
            if m != mesh_id || c != name {
                break;
            }
            let p: SlotVector = decode(v.value())?;
            out.push((p.slot as usize, p.vector));
            if out.len() >= batch {
                each(std::mem::replace(&mut out, Vec::with_capacity(batch)))
                    .map_err(VectorError::Index)?;
            }
        }
        if !out.is_empty() {
            each(out).map_err(VectorError::Index)?;
        }
        Ok(())
    }

    /// The slots of a collection's live records.
    fn vector_live_slots(&self, mesh_id: &str, name: &str) -> Result<HashSet<usize>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(VECTOR_SLOTS)?;
        let mut out = HashSet::new();
        for row in table.range((mesh_id, name, 0u64)..)? {
            let (k, _) = row?;
            let (m, c, slot) = k.value();
            if m != mesh_id || c != name {
                break;
            }
            out.insert(slot as usize);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_is_exact_match_on_top_level_keys() {
        let filter = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        let meta = r#"{"lang":"rust","n":3,"tags":["a"]}"#;
        assert!(matches_filter(Some(meta), &filter(json!({"lang": "rust"}))));
        assert!(matches_filter(
            Some(meta),
            &filter(json!({"lang": "rust", "n": 3}))
        ));
        assert!(!matches_filter(Some(meta), &filter(json!({"lang": "go"}))));
        assert!(!matches_filter(Some(meta), &filter(json!({"missing": 1}))));
        assert!(!matches_filter(None, &filter(json!({"lang": "rust"}))));
        assert!(matches_filter(None, &filter(json!({}))));
    }

    #[test]
    fn bad_vectors_and_names_are_named() {
        assert!(check_vector(&[]).is_err());
        assert!(check_vector(&vec![0.0; MAX_DIMENSION + 1]).is_err());
        let e = check_vector(&[1.0, f32::NAN]).unwrap_err();
        assert!(e.contains("vector[1]"), "{e}");
        assert!(check_vector(&[1.0, f32::INFINITY]).is_err());
        assert!(vector_from_json(&[json!(1.0), json!("x")]).is_err());
        assert!(vector_from_json(&[json!(1e300)]).is_err());
        assert!(check_collection_name("docs-v2.en").is_ok());
        assert!(check_collection_name("../x").is_err());
        assert!(check_collection_name(".hidden").is_err());
        assert!(check_record_id("a\nb").is_err());
    }
}
