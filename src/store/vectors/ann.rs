//! The approximate-nearest-neighbour index of one collection: an HNSW graph (`hnsw_rs`) over the
//! collection's vectors, labelled by each record's slot. Derived data: redb holds the records,
//! and this graph is dumped beside redb at shutdown and rebuilt from redb when its files are
//! missing, unreadable or behind.
//!
//! HNSW cannot remove a point. A deleted or replaced record's slot joins `dead`, which every
//! search filters out; the next start-up rebuilds a graph that is mostly dead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};

use hnsw_rs::prelude::{Distance, FilterT, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};

use super::Metric;

/// Links per node and layer (HNSW's M).
const MAX_CONNECTIONS: usize = 24;
/// Candidates examined while linking a new point.
const EF_CONSTRUCTION: usize = 200;
/// Candidates examined per search (at least the number of results asked for); see
/// BENCHMARKS.md for the recall and latency it buys.
pub const EF_SEARCH: usize = 160;
/// The candidates examined per search in this process ([`EF_SEARCH`] unless a benchmark
/// sweeps it with [`set_ef_search`]).
static EF: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(EF_SEARCH);

/// Changes the candidates examined per search (benchmarks compare recall and latency).
pub fn set_ef_search(ef: usize) {
    EF.store(ef.max(1), Ordering::Relaxed);
}
const MAX_LAYERS: usize = 16;
/// Bump when the graph's layout or distances change: an index of another version is rebuilt.
const INDEX_VERSION: u32 = 1;
const BASENAME: &str = "graph";
const STATE_FILE: &str = "state.json";

/// The distance the graph orders by, one per metric. HNSW wants a distance that is never
/// negative and smaller for better matches; each metric maps to one, keeping its order.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricDistance(Metric);

impl Distance<f32> for MetricDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.0 {
            // Vectors are normalised before they reach the graph.
            Metric::Cosine => (1.0 - dot(a, b)).max(0.0),
            // 1/(1+d) for d ≥ 0, 1-d below: positive and strictly decreasing in d.
            Metric::Dot => {
                let d = dot(a, b);
                if d >= 0.0 { 1.0 / (1.0 + d) } else { 1.0 - d }
            }
            Metric::Euclid => squared_l2(a, b),
        }
    }
}

/// The sum of `term(a[i], b[i])`, in eight running sums so the compiler can keep them in SIMD
/// lanes.
#[inline(always)]
fn sum_of(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += term(x[i], y[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_of(a, b, |x, y| x * y)
}

pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    sum_of(a, b, |x, y| (x - y) * (x - y))
}

/// The vector as the graph holds it: unit length for cosine, as given otherwise. `None` for a
/// zero vector under cosine (it has no direction).
pub fn prepared(metric: Metric, v: &[f32]) -> Option<Vec<f32>> {
    match metric {
        Metric::Cosine => {
            let norm = dot(v, v).sqrt();
            (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
        }
        Metric::Dot | Metric::Euclid => Some(v.to_vec()),
    }
}

/// What the graph's files say about themselves.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    metric: Metric,
    dimension: usize,
    /// The collection's change counter the dump holds everything up to.
    ops: u64,
    /// Slots in the graph whose records are gone.
    dead: Vec<usize>,
    points: usize,
}

/// One collection's graph.
pub struct Ann {
    graph: Hnsw<'static, f32, MetricDistance>,
    metric: Metric,
    dimension: usize,
    /// Every slot in the graph, dead or alive.
    present: Mutex<HashSet<usize>>,
    dead: RwLock<HashSet<usize>>,
    /// Changed since it was loaded (or never saved): dumped at shutdown.
    changed: AtomicBool,
}

impl Ann {
    fn empty(metric: Metric, dimension: usize, expected: usize) -> Ann {
        Ann {
            graph: Hnsw::new(
                MAX_CONNECTIONS,
                expected.max(1024),
                MAX_LAYERS,
                EF_CONSTRUCTION,
                MetricDistance(metric),
            ),
            metric,
            dimension,
            present: Mutex::new(HashSet::new()),
            dead: RwLock::new(HashSet::new()),
            changed: AtomicBool::new(true),
        }
    }

    /// A new graph of `points` (slot, vector as stored), built on all cores.
    pub fn build(metric: Metric, dimension: usize, points: Vec<(usize, Vec<f32>)>) -> Ann {
        let ann = Ann::empty(metric, dimension, points.len());
        let prepared: Vec<(Vec<f32>, usize)> = points
            .into_iter()
            .filter_map(|(slot, v)| prepared(metric, &v).map(|p| (p, slot)))
            .collect();
        let refs: Vec<(&Vec<f32>, usize)> = prepared.iter().map(|(v, s)| (v, *s)).collect();
        ann.graph.parallel_insert(&refs);
        if let Ok(mut present) = ann.present.lock() {
            present.extend(prepared.iter().map(|(_, s)| *s));
        }
        ann
    }

    /// Opens the dump in `dir` if it holds exactly `ops` changes of a collection of this
    /// metric and dimension; why not otherwise.
    pub fn load(dir: &Path, metric: Metric, dimension: usize, ops: u64) -> Result<Ann, String> {
        let text = std::fs::read_to_string(dir.join(STATE_FILE))
            .map_err(|e| format!("no readable {STATE_FILE}: {e}"))?;
        let state: State =
            serde_json::from_str(&text).map_err(|e| format!("unreadable {STATE_FILE}: {e}"))?;
        if state.version != INDEX_VERSION || state.metric != metric || state.dimension != dimension
        {
            return Err("it is of another version, metric or dimension".into());
        }
        if state.ops != ops {
            return Err(format!("it holds {} of {ops} changes", state.ops));
        }
        if state.dead.len() > 1024 && state.dead.len() * 2 > state.points {
            return Err(format!(
                "{} of its {} points are deleted",
                state.dead.len(),
                state.points
            ));
        }
        // hnsw_rs checks its files with assertions: a damaged file panics, which here means
        // "rebuild", not "stop the broker".
        let dir_owned = dir.to_path_buf();
        let loaded = std::panic::catch_unwind(move || load_graph(&dir_owned, metric))
            .map_err(|_| "its graph files are damaged".to_string())??;
        if loaded.get_nb_point() != state.points {
            return Err(format!(
                "its graph holds {} points, its state {}",
                loaded.get_nb_point(),
                state.points
            ));
        }
        let present: HashSet<usize> = {
            let mut all = HashSet::with_capacity(state.points);
            for point in loaded.get_point_indexation() {
                all.insert(point.get_origin_id());
            }
            all
        };
        Ok(Ann {
            graph: loaded,
            metric,
            dimension,
            present: Mutex::new(present),
            dead: RwLock::new(state.dead.into_iter().collect()),
            changed: AtomicBool::new(false),
        })
    }

    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// Adds a stored record's vector under its slot (unless the graph has it: a graph rebuilt
    /// from redb after the record was written already does).
    pub fn insert(&self, slot: usize, vector: &[f32]) {
        let Some(v) = prepared(self.metric, vector) else {
            return;
        };
        {
            let Ok(mut present) = self.present.lock() else {
                return;
            };
            if !present.insert(slot) {
                return;
            }
        }
        self.changed.store(true, Ordering::Relaxed);
        self.graph.insert_slice((&v, slot));
    }

    /// A slot whose record was deleted or replaced: searches no longer return it.
    pub fn retire(&self, slot: usize) {
        self.changed.store(true, Ordering::Relaxed);
        if let Ok(mut dead) = self.dead.write() {
            dead.insert(slot);
        }
    }

    /// The `limit` nearest live slots to `query` that `keep` accepts, nearest first.
    pub fn search(
        &self,
        query: &[f32],
        limit: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<usize> {
        let Some(q) = prepared(self.metric, query) else {
            return Vec::new();
        };
        let ef = EF.load(Ordering::Relaxed).max(limit);
        let dead = match self.dead.read() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        let found = if dead.is_empty() && keep.is_none() {
            self.graph.search(&q, limit, ef)
        } else {
            let filter = |id: &usize| !dead.contains(id) && keep.is_none_or(|k| k(*id));
            self.graph
                .search_filter(&q, limit, ef, Some(&filter as &dyn FilterT))
        };
        found.into_iter().map(|n| n.d_id).collect()
    }

    /// Writes the graph and its state to `dir` (through a sibling directory renamed into
    /// place), as holding `ops` changes with `live` the slots of the records in redb. Writes
    /// nothing, and removes any older dump, when the graph lacks one of them.
    pub fn dump(&self, dir: &Path, ops: u64, live: &HashSet<usize>) -> Result<(), String> {
        let present = match self.present.lock() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if !live.is_subset(&present) {
            let _ = std::fs::remove_dir_all(dir);
            return Err("the graph is missing records; it will be rebuilt".into());
        }
        let dead: Vec<usize> = present.difference(live).copied().collect();
        let staging = sibling(dir, "new");
        let _ = std::fs::remove_dir_all(&staging);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&staging)
                .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        }
        if !present.is_empty() {
            use hnsw_rs::api::AnnT;
            self.graph
                .file_dump(&staging, BASENAME)
                .map_err(|e| e.to_string())?;
        }
        let state = State {
            version: INDEX_VERSION,
            metric: self.metric,
            dimension: self.dimension,
            ops,
            dead,
            points: self.graph.get_nb_point(),
        };
        let text = serde_json::to_string(&state).map_err(|e| e.to_string())?;
        std::fs::write(staging.join(STATE_FILE), text).map_err(|e| e.to_string())?;
        let old = sibling(dir, "old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| e.to_string())?;
        }
        std::fs::rename(&staging, dir).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

fn load_graph(dir: &Path, metric: Metric) -> Result<Hnsw<'static, f32, MetricDistance>, String> {
    if !dir.join(format!("{BASENAME}.hnsw.graph")).is_file() {
        // An empty collection is dumped without graph files.
        return Ok(Ann::empty(metric, 0, 0).graph);
    }
    // The loader lends its buffers to the graph it returns for as long as the graph lives;
    // graphs live until shutdown, and one loader (a few hundred bytes) is kept per load.
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, BASENAME)));
    io.load_hnsw_with_dist::<f32, MetricDistance>(MetricDistance(metric))
        .map_err(|e| format!("cannot load its graph: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_distance_orders_by_inner_product() {
        let d = MetricDistance(Metric::Dot);
        let q = [1.0, 0.0];
        let near = d.eval(&q, &[5.0, 0.0]);
        let mid = d.eval(&q, &[0.5, 0.0]);
        let far = d.eval(&q, &[-3.0, 0.0]);
        assert!(near < mid && mid < far, "{near} {mid} {far}");
        assert!(near >= 0.0);
    }

    #[test]
    fn chunked_sums_match_plain_ones() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 3.0 - i as f32).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((squared_l2(&a, &b) - plain).abs() < 1e-2);
    }
}
