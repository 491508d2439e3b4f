//! The collections' search indexes, opened on first use, and the operations that keep them in
//! step with redb: a write is committed first, then applied to the index; a search asks the
//! index for candidates, then reads them from redb (redb decides what exists) and ranks them
//! by the exact score of their stored vectors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::ann::{Ann, Shape, candidates};
use super::{
    CollectionRecord, DEFAULT_MAX_VECTOR_BYTES, MAX_SEARCH_LIMIT, Metric, NewPoint, PointRecord,
    VECTOR_POINTS, VECTOR_SLOTS, VectorError, VectorHit, VectorRefusal, matches_filter,
};
use crate::store::turns::Turns;
use crate::store::{Actor, Store, StoreError, decode, decode_opt};

/// A collection's graph, opened on first use.
type Cell = Arc<Mutex<Option<Arc<Ann>>>>;

/// Vector searches running at once, all meshes together; others wait their turn.
const MAX_SEARCHING: usize = 2;
/// Records a rebuild reads from redb and adds at once: with 4096-dimension vectors, 64 MB.
const REBUILD_BATCH: usize = 4096;

/// The vector collections' graphs. Cheap to share behind an `Arc`.
pub struct VectorIndex {
    dir: PathBuf,
    graphs: Mutex<HashMap<(String, String), Cell>>,
    /// Searches running at once: one per mesh, [`MAX_SEARCHING`] in all (a filtered search
    /// may read the whole collection).
    searching: Turns,
    /// The bytes one mesh's records may hold ([`super::record_bytes`]).
    max_bytes: u64,
}

impl VectorIndex {
    /// Graphs under `dir` (`<data>/vectors`); nothing is read until a collection is used.
    pub fn new(dir: PathBuf) -> VectorIndex {
        VectorIndex {
            dir,
            graphs: Mutex::new(HashMap::new()),
            searching: Turns::new(MAX_SEARCHING),
            max_bytes: DEFAULT_MAX_VECTOR_BYTES,
        }
    }

    /// The same, with another byte quota per mesh (`--max-vector-bytes`).
    pub fn with_max_bytes(mut self, max_bytes: u64) -> VectorIndex {
        self.max_bytes = max_bytes;
        self
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
        let ann = match Ann::load(&dir, Shape::of(&current), current.ops, current.count) {
            Ok(ann) => ann,
            Err(why) => {
                tracing::info!(
                    "rebuilding the vector index of {mesh_id}/{} from storage: {why}",
                    collection.name
                );
                rebuilt(store, mesh_id, &current)?
            }
        };
        let ann = Arc::new(ann);
        *slot = Some(ann.clone());
        Ok(ann)
    }

    /// Replaces `stale` (the collection's index, past [`Ann::needs_compaction`]) with one
    /// rebuilt from redb, unless another caller already did. Blocking: the collection's other
    /// requests wait for it, as for a first load.
    fn compact(&self, store: &Store, mesh_id: &str, name: &str, stale: &Arc<Ann>) {
        let cell = self.cell(mesh_id, name);
        let mut slot = match cell.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !slot.as_ref().is_some_and(|a| Arc::ptr_eq(a, stale)) {
            return;
        }
        let fresh = (|| -> Result<Ann, VectorError> {
            let Some(current) = store.vector_collection(mesh_id, name)? else {
                return Err(VectorError::Index("the collection is gone".into()));
            };
            rebuilt(store, mesh_id, &current)
        })();
        match fresh {
            Ok(fresh) => {
                tracing::info!(
                    "vector index of {mesh_id}/{name} rebuilt without its {} deleted vectors",
                    stale.dead()
                );
                *slot = Some(Arc::new(fresh));
            }
            Err(e) => tracing::warn!("vector index of {mesh_id}/{name} not compacted: {e}"),
        }
    }

    /// The collection's index if it is open (without opening it).
    fn open_now(&self, mesh_id: &str, name: &str) -> Option<Arc<Ann>> {
        let cell = self.cell(mesh_id, name);
        let slot = match cell.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        slot.clone()
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
        let name = new.collection.clone();
        let applied = match store
            .put_point(mesh_id.into(), new, self.max_bytes, by)
            .await?
        {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let ann = self.graph_of(store, mesh_id, &applied.collection).await?;
        let (me, mesh) = (self.clone(), mesh_id.to_string());
        blocking(move || {
            let apply = |ann: &Ann| -> Result<(), VectorError> {
                if let Some(old) = applied.retired {
                    ann.retire(old as usize).map_err(VectorError::Index)?;
                }
                if let Some(slot) = applied.added {
                    ann.insert(slot as usize, &vector)
                        .map_err(VectorError::Index)?;
                }
                Ok(())
            };
            apply(&ann)?;
            // A compaction that replaced the index meanwhile may have read redb before this
            // write: the index in place gets it too (both steps are idempotent).
            if let Some(now) = me.open_now(&mesh, &name)
                && !Arc::ptr_eq(&now, &ann)
            {
                apply(&now)?;
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
        let Some(slot) = applied.retired else {
            return Ok(Ok(false));
        };
        let (me, store, mesh, name) = (
            self.clone(),
            store.clone(),
            mesh_id.to_string(),
            name.to_string(),
        );
        blocking(move || {
            ann.retire(slot as usize).map_err(VectorError::Index)?;
            // A compaction that replaced the index meanwhile may have read redb before this
            // delete: the index in place forgets the slot too.
            if let Some(now) = me.open_now(&mesh, &name)
                && !Arc::ptr_eq(&now, &ann)
            {
                now.retire(slot as usize).map_err(VectorError::Index)?;
            }
            if ann.needs_compaction() {
                me.compact(&store, &mesh, &name, &ann);
            }
            Ok(())
        })
        .await?;
        Ok(Ok(true))
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
        let _turn = self
            .searching
            .take(&mesh)
            .await
            .map_err(|_| VectorError::Index("the broker is shutting down".into()))?;
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

/// A new index of the collection's records in redb, read and added [`REBUILD_BATCH`] at a time.
fn rebuilt(store: &Store, mesh_id: &str, c: &CollectionRecord) -> Result<Ann, VectorError> {
    let ann = Ann::empty(Shape::of(c), c.count as usize).map_err(VectorError::Index)?;
    store.vector_batches(mesh_id, &c.name, REBUILD_BATCH, |batch| ann.add_all(&batch))?;
    Ok(ann)
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
    // Ranked candidates: the first `limit` records that exist are the answer, and only those
    // are read; other candidates are all read and ranked on their exact vectors.
    let read = if found.ranked {
        limit
    } else {
        found.slots.len()
    };
    let mut hits: Vec<VectorHit> = found
        .slots
        .into_iter()
        .filter_map(&record)
        .filter(|p| matches_filter(p.metadata.as_deref(), filter))
        .take(read)
        .map(|point| VectorHit {
            score: metric.score(query, &point.vector),
            point,
        })
        .collect();
    hits.sort_by(|a, b| metric.better(a.score, b.score));
    hits.truncate(limit);
    if !filter.is_empty() && hits.len() < limit {
        // One record decoded at a time; only the best `limit` kept.
        let mut best = Best::new(metric, limit);
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
                best.offer(VectorHit {
                    score: metric.score(query, &point.vector),
                    point,
                });
            }
        }
        hits = best.hits;
    }
    Ok(hits)
}

/// The best `limit` hits offered so far, best first.
struct Best {
    metric: Metric,
    limit: usize,
    hits: Vec<VectorHit>,
}

impl Best {
    fn new(metric: Metric, limit: usize) -> Best {
        Best {
            metric,
            limit,
            hits: Vec::with_capacity(limit + 1),
        }
    }

    fn offer(&mut self, hit: VectorHit) {
        let metric = self.metric;
        if self.hits.len() >= self.limit
            && self.hits.last().is_none_or(|worst| {
                metric.better(hit.score, worst.score) != std::cmp::Ordering::Less
            })
        {
            return;
        }
        let at = self
            .hits
            .partition_point(|h| metric.better(h.score, hit.score) != std::cmp::Ordering::Greater);
        self.hits.insert(at, hit);
        self.hits.truncate(self.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::super::ann::COMPACT_AT_DEAD;
    use super::*;
    use crate::store::test_store;

    fn actor() -> Actor {
        Actor {
            member_id: "m".into(),
            name: "tester".into(),
            manages: false,
        }
    }

    fn point(i: usize) -> NewPoint {
        NewPoint {
            collection: "c".into(),
            id: format!("p{i}"),
            vector: vec![i as f32, 1.0],
            metadata: None,
            text: None,
            create_missing: true,
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn deletions_past_the_threshold_rebuild_the_index_without_the_dead() {
        let (dir, store) = test_store();
        let index = Arc::new(VectorIndex::new(dir.path().join("vectors")));
        index
            .create(&store, "M", "c", 2, Metric::Euclid, actor())
            .await
            .unwrap()
            .unwrap();
        let n = COMPACT_AT_DEAD + 100;
        for i in 0..n {
            index
                .store(&store, "M", point(i), actor())
                .await
                .unwrap()
                .unwrap();
        }
        let graph = |index: &VectorIndex| index.open_now("M", "c").expect("open");
        for i in 0..COMPACT_AT_DEAD - 1 {
            assert!(
                index
                    .delete(&store, "M", "c", &format!("p{i}"), actor())
                    .await
                    .unwrap()
                    .unwrap()
            );
        }
        let before = graph(&index);
        assert_eq!(
            before.dead(),
            COMPACT_AT_DEAD - 1,
            "kept until the threshold"
        );
        // The deletion that reaches the threshold (more dead than live) rebuilds the index.
        let last = format!("p{}", COMPACT_AT_DEAD - 1);
        assert!(
            index
                .delete(&store, "M", "c", &last, actor())
                .await
                .unwrap()
                .unwrap()
        );
        let after = graph(&index);
        assert!(!Arc::ptr_eq(&before, &after), "a new index");
        assert_eq!((after.live(), after.dead()), (100, 0));
        // It holds every live record and none of the deleted ones.
        let hits = index
            .search(&store, "M", "c", vec![0.0, 1.0], 3, Default::default())
            .await
            .unwrap()
            .unwrap();
        let ids: Vec<&str> = hits.iter().map(|h| h.point.id.as_str()).collect();
        let first = COMPACT_AT_DEAD;
        assert_eq!(
            ids,
            [
                format!("p{first}"),
                format!("p{}", first + 1),
                format!("p{}", first + 2)
            ]
        );
        store.close();
    }
}
