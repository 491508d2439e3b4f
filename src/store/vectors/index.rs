//! The collections' search indexes, opened on first use, and the operations that keep them in
//! step with redb: a write is committed first, then applied to the index; a search asks the
//! index for candidates, then reads them from redb (redb decides what exists) and ranks them
//! by the exact score of their stored vectors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::ann::{Ann, Shape, candidates};
use super::{
    CollectionRecord, MAX_SEARCH_LIMIT, Metric, NewPoint, PointRecord, VECTOR_POINTS, VECTOR_SLOTS,
    VectorError, VectorHit, VectorRefusal, matches_filter,
};
use crate::store::{Actor, Store, StoreError, decode, decode_opt};

/// A collection's graph, opened on first use.
type Cell = Arc<Mutex<Option<Arc<Ann>>>>;

/// The vector collections' graphs. Cheap to share behind an `Arc`.
pub struct VectorIndex {
    dir: PathBuf,
    graphs: Mutex<HashMap<(String, String), Cell>>,
}

impl VectorIndex {
    /// Graphs under `dir` (`<data>/vectors`); nothing is read until a collection is used.
    pub fn new(dir: PathBuf) -> VectorIndex {
        VectorIndex {
            dir,
            graphs: Mutex::new(HashMap::new()),
        }
    }

    fn graph_dir(&self, mesh_id: &str, name: &str) -> PathBuf {
        self.dir.join(mesh_id).join(name)
    }

    fn cell(&self, mesh_id: &str, name: &str) -> Cell {
        let mut graphs = match self.graphs.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        graphs
            .entry((mesh_id.to_string(), name.to_string()))
            .or_default()
            .clone()
    }

    /// The collection's graph: as already open, else loaded from its dump, else rebuilt from
    /// redb. Blocking.
    fn graph(
        &self,
        store: &Store,
        mesh_id: &str,
        collection: &CollectionRecord,
    ) -> Result<Arc<Ann>, VectorError> {
        let cell = self.cell(mesh_id, &collection.name);
        let mut slot = match cell.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(ann) = slot.as_ref() {
            return Ok(ann.clone());
        }
        let dir = self.graph_dir(mesh_id, &collection.name);
        // The count of changes as redb says now (the record passed in may be older).
        let current = store
            .vector_collection(mesh_id, &collection.name)?
            .unwrap_or_else(|| collection.clone());
        let shape = Shape {
            metric: current.metric,
            dimension: current.dimension as usize,
            created_at_ms: current.created_at_ms,
        };
        let ann = match Ann::load(&dir, shape, current.ops) {
            Ok(ann) => ann,
            Err(why) => {
                tracing::info!(
                    "rebuilding the vector index of {mesh_id}/{} from storage: {why}",
                    collection.name
                );
                let points = store.vector_points(mesh_id, &collection.name)?;
                let points = points
                    .into_iter()
                    .map(|p| (p.slot as usize, p.vector))
                    .collect();
                Ann::build(shape, points).map_err(VectorError::Index)?
            }
        };
        let ann = Arc::new(ann);
        *slot = Some(ann.clone());
        Ok(ann)
    }

    /// The graph of a collection that exists, off the async runtime.
    async fn graph_of(
        self: &Arc<Self>,
        store: &Store,
        mesh_id: &str,
        collection: &CollectionRecord,
    ) -> Result<Arc<Ann>, VectorError> {
        let (me, store, mesh, c) = (
            self.clone(),
            store.clone(),
            mesh_id.to_string(),
            collection.clone(),
        );
        blocking(move || me.graph(&store, &mesh, &c)).await
    }

    /// Creates a collection (or finds the same one).
    pub async fn create(
        &self,
        store: &Store,
        mesh_id: &str,
        name: &str,
        dimension: usize,
        metric: Metric,
        by: Actor,
    ) -> Result<Result<CollectionRecord, VectorRefusal>, VectorError> {
        Ok(store
            .create_collection(mesh_id.into(), name.into(), dimension, metric, by)
            .await?)
    }

    /// Stores (or replaces) a record; returns once a search finds it.
    pub async fn store(
        self: &Arc<Self>,
        store: &Store,
        mesh_id: &str,
        new: NewPoint,
        by: Actor,
    ) -> Result<Result<(), VectorRefusal>, VectorError> {
        // The graph is opened before the write, so the write does not make it look behind.
        if let Some(c) = store.vector_collection(mesh_id, &new.collection)? {
            self.graph_of(store, mesh_id, &c).await?;
        }
        let vector = new.vector.clone();
        let applied = match store.put_point(mesh_id.into(), new, by).await? {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let ann = self.graph_of(store, mesh_id, &applied.collection).await?;
        blocking(move || {
            if let Some(old) = applied.retired {
                ann.retire(old as usize).map_err(VectorError::Index)?;
            }
            if let Some(slot) = applied.added {
                ann.insert(slot as usize, &vector)
                    .map_err(VectorError::Index)?;
            }
            Ok(())
        })
        .await?;
        Ok(Ok(()))
    }

    /// Deletes a record; `false` when the collection has no such record.
    pub async fn delete(
        self: &Arc<Self>,
        store: &Store,
        mesh_id: &str,
        name: &str,
        id: &str,
        by: Actor,
    ) -> Result<Result<bool, VectorRefusal>, VectorError> {
        let Some(c) = store.vector_collection(mesh_id, name)? else {
            return Ok(Err(VectorRefusal::NoCollection(name.to_string())));
        };
        let ann = self.graph_of(store, mesh_id, &c).await?;
        let applied = match store
            .remove_point(mesh_id.into(), name.into(), id.into(), by)
            .await?
        {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        match applied.retired {
            Some(slot) => {
                ann.retire(slot as usize).map_err(VectorError::Index)?;
                Ok(Ok(true))
            }
            None => Ok(Ok(false)),
        }
    }

    /// Deletes a collection, its records and its index files; `false` when it does not exist.
    pub async fn drop_collection(
        &self,
        store: &Store,
        mesh_id: &str,
        name: &str,
        by: Actor,
    ) -> Result<bool, VectorError> {
        if !store
            .drop_collection(mesh_id.into(), name.into(), by)
            .await?
        {
            return Ok(false);
        }
        // redb no longer has it: forget its open index and remove its files, so a collection
        // created later under the same name starts empty.
        let cell = {
            let mut graphs = match self.graphs.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            graphs.remove(&(mesh_id.to_string(), name.to_string()))
        };
        if let Some(cell) = cell
            && let Ok(mut slot) = cell.lock()
        {
            slot.take();
        }
        let dir = self.graph_dir(mesh_id, name);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("vector index files of {mesh_id}/{name} not removed: {e}");
        }
        Ok(true)
    }

    /// The `limit` records nearest to `query` whose metadata has every key of `filter` with an
    /// equal value, nearest first.
    pub async fn search(
        self: &Arc<Self>,
        store: &Store,
        mesh_id: &str,
        name: &str,
        query: Vec<f32>,
        limit: usize,
        filter: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Result<Vec<VectorHit>, VectorRefusal>, VectorError> {
        let Some(c) = store.vector_collection(mesh_id, name)? else {
            return Ok(Err(VectorRefusal::NoCollection(name.to_string())));
        };
        if query.len() != c.dimension as usize {
            return Ok(Err(VectorRefusal::Dimension {
                collection: name.to_string(),
                expected: c.dimension as usize,
                got: query.len(),
            }));
        }
        if c.metric == Metric::Cosine && query.iter().all(|x| *x == 0.0) {
            return Ok(Err(VectorRefusal::ZeroVector(name.to_string())));
        }
        let ann = self.graph_of(store, mesh_id, &c).await?;
        let (store, mesh, name) = (store.clone(), mesh_id.to_string(), name.to_string());
        let limit = limit.clamp(1, MAX_SEARCH_LIMIT);
        let hits =
            blocking(move || nearest(&ann, &store, &mesh, &name, c.metric, &query, limit, &filter))
                .await?;
        Ok(Ok(hits))
    }

    /// Dumps every graph changed since it was opened (at shutdown, after the last request).
    pub fn close(&self, store: &Store) {
        let graphs: Vec<((String, String), Cell)> = match self.graphs.lock() {
            Ok(mut g) => g.drain().collect(),
            Err(_) => return,
        };
        for ((mesh, name), cell) in graphs {
            let Some(ann) = cell.lock().ok().and_then(|mut s| s.take()) else {
                continue;
            };
            if !ann.changed() {
                continue;
            }
            let dumped = (|| -> Result<(), String> {
                let ops = store
                    .vector_collection(&mesh, &name)
                    .map_err(|e| e.to_string())?
                    .map_or(0, |c| c.ops);
                let live = store
                    .vector_live_slots(&mesh, &name)
                    .map_err(|e| e.to_string())?;
                let dir = self.graph_dir(&mesh, &name);
                if !ann.holds_all(live) {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err("the index is missing records; it will be rebuilt".into());
                }
                ann.save(&dir, ops)
            })();
            if let Err(e) = dumped {
                tracing::warn!("vector index of {mesh}/{name} not saved: {e}");
            }
        }
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, VectorError> + Send + 'static,
) -> Result<T, VectorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorError::Index(format!("search task failed: {e}")))?
}

/// The search itself: the graph, then redb for the records (redb decides what exists). When a
/// filter leaves the graph's candidates short of `limit`, every record of the collection is
/// compared instead, so a selective filter still finds what it matches.
#[allow(clippy::too_many_arguments)]
fn nearest(
    ann: &Ann,
    store: &Store,
    mesh_id: &str,
    name: &str,
    metric: Metric,
    query: &[f32],
    limit: usize,
    filter: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<VectorHit>, VectorError> {
    let rt = store.read()?;
    let slots = rt.open_table(VECTOR_SLOTS).map_err(StoreError::from)?;
    let points = rt.open_table(VECTOR_POINTS).map_err(StoreError::from)?;
    let record = |slot: usize| -> Option<PointRecord> {
        let id = slots.get((mesh_id, name, slot as u64)).ok()??;
        let id = id.value().to_string();
        decode_opt(points.get((mesh_id, name, id.as_str())).ok()?).ok()?
    };
    let keep =
        |slot: usize| record(slot).is_some_and(|p| matches_filter(p.metadata.as_deref(), filter));
    let wanted = candidates(limit);
    let found = if filter.is_empty() {
        ann.search(query, wanted, None)
    } else {
        ann.search(query, wanted, Some(&keep))
    }
    .map_err(VectorError::Index)?;
    let mut hits: Vec<VectorHit> = found
        .into_iter()
        .filter_map(&record)
        .filter(|p| matches_filter(p.metadata.as_deref(), filter))
        .map(|point| VectorHit {
            score: metric.score(query, &point.vector),
            point,
        })
        .collect();
    hits.sort_by(|a, b| metric.better(a.score, b.score));
    hits.truncate(limit);
    if !filter.is_empty() && hits.len() < limit {
        hits.clear();
        for row in points
            .range((mesh_id, name, "")..)
            .map_err(StoreError::from)?
        {
            let (k, v) = row.map_err(StoreError::from)?;
            let (m, c, _) = k.value();
            if m != mesh_id || c != name {
                break;
            }
            let point: PointRecord = decode(v.value())?;
            if matches_filter(point.metadata.as_deref(), filter) {
                hits.push(VectorHit {
                    score: metric.score(query, &point.vector),
                    point,
                });
            }
        }
        hits.sort_by(|a, b| metric.better(a.score, b.score));
        hits.truncate(limit);
    }
    Ok(hits)
}
