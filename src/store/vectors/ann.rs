//! The nearest-neighbour index of one collection: a `usearch` index (HNSW graph with SIMD
//! distance kernels) over the collection's vectors, keyed by each record's slot. Derived data:
//! redb holds the records, and this index is saved beside redb at shutdown and rebuilt from
//! redb when its files are missing, unreadable or behind.
//!
//! Cosine collections keep their vectors in the index as 8-bit integers (usearch's `i8`
//! quantisation of the unit vector): a quarter of the memory and of the bytes each comparison
//! reads. The index proposes a few times more candidates than asked for, and the caller ranks
//! them by the exact score of the f32 vectors in redb. Dot and Euclid collections keep f32
//! (their values are not bounded, so 8 bits would clip them).
//!
//! A collection of at most [`exact_up_to`] records is searched by comparing every vector: a
//! cosine collection over its contiguous 4-bit and 8-bit copies ([`super::flat`], both cores), the others
//! with usearch's exact search; a larger one, and any search with a filter, by walking the
//! graph. See BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::flat::Flat;
use super::{CollectionRecord, Metric};

/// Links per node and layer (HNSW's M).
const CONNECTIVITY: usize = 16;
/// Candidates examined while linking a new point. Small: searches without a filter compare
/// every vector (the graph serves filtered searches only), and a wider one made a 100 000
/// load several times slower (BENCHMARKS.md).
const EXPANSION_ADD: usize = 32;
/// Candidates examined per graph search; see BENCHMARKS.md for the recall and latency it buys.
pub const EF_SEARCH: usize = 256;
/// Collections of at most this many records are searched exactly (every vector compared):
/// all of them, as a mesh holds at most 200 000. On the benchmark's data the graph walk
/// needed ef 2048 and 34 ms for the recall the exact search gives in a few ms.
pub const EXACT_UP_TO: usize = super::MAX_POINTS_PER_MESH as usize;
/// Candidates the index proposes per result asked for, ranked again on the exact vectors.
pub const CANDIDATES_PER_RESULT: usize = 4;
/// Fewest candidates the index proposes.
const MIN_CANDIDATES: usize = 40;
/// A deleted record's vector stays in the index (usearch marks it removed, and a later add
/// reuses its place): scanned by every exact search, kept in memory and in the saved file.
/// Once at least this many are dead and they outnumber the live ones, the collection's index
/// is rebuilt from redb without them ([`Ann::needs_compaction`]).
pub const COMPACT_AT_DEAD: usize = 512;

/// The values in force in this process (the constants unless a benchmark sweeps them).
static EF: AtomicUsize = AtomicUsize::new(EF_SEARCH);
static EXACT: AtomicUsize = AtomicUsize::new(EXACT_UP_TO);

/// Changes the candidates examined per graph search (benchmarks compare recall and latency).
pub fn set_ef_search(ef: usize) {
    EF.store(ef.max(1), Ordering::Relaxed);
}

/// Changes the largest collection searched exactly (benchmarks compare both ways).
pub fn set_exact_up_to(points: usize) {
    EXACT.store(points, Ordering::Relaxed);
}

/// The largest collection searched exactly in this process.
pub fn exact_up_to() -> usize {
    EXACT.load(Ordering::Relaxed)
}

/// How many candidates a search for `limit` results asks the index for.
pub fn candidates(limit: usize) -> usize {
    (limit * CANDIDATES_PER_RESULT).max(MIN_CANDIDATES)
}

/// Bump when the index's layout or quantisation change: an index of another version is rebuilt.
const INDEX_VERSION: u32 = 4;
const INDEX_FILE: &str = "index.usearch";
/// A cosine collection's rows for the exact scan ([`Flat`]).
const FLAT_FILE: &str = "flat.bin";
const STATE_FILE: &str = "state.json";

/// What the index's files say about themselves.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    metric: Metric,
    dimension: usize,
    /// When the collection was created: a collection deleted and created again under the same
    /// name never opens the files of the first.
    created_at_ms: i64,
    /// The collection's change counter the saved index holds everything up to.
    ops: u64,
    points: usize,
    /// Deleted vectors still in the index (see [`COMPACT_AT_DEAD`]).
    #[serde(default)]
    dead: usize,
}

/// What the index must belong to.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub metric: Metric,
    pub dimension: usize,
    pub created_at_ms: i64,
}

impl Shape {
    /// The shape of a collection's index.
    pub fn of(c: &CollectionRecord) -> Shape {
        Shape {
            metric: c.metric,
            dimension: c.dimension as usize,
            created_at_ms: c.created_at_ms,
        }
    }

    fn options(self) -> IndexOptions {
        let (metric, quantization) = match self.metric {
            Metric::Cosine => (MetricKind::Cos, ScalarKind::I8),
            Metric::Dot => (MetricKind::IP, ScalarKind::F32),
            Metric::Euclid => (MetricKind::L2sq, ScalarKind::F32),
        };
        IndexOptions {
            dimensions: self.dimension,
            metric,
            quantization,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EF_SEARCH,
            multi: false,
        }
    }
}

/// What a search proposes.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Slots, nearest first.
    pub slots: Vec<usize>,
    /// Ranked nearly as exactly as the vectors themselves rank them (the scan's candidates
    /// ranked again on 8-bit rows and their rounding errors, [`Flat`]): the first that exist are
    /// the nearest. Otherwise ranked on 8-bit or graph distances, for the caller to rank all.
    pub ranked: bool,
}

/// One collection's index.
pub struct Ann {
    index: Index,
    shape: Shape,
    /// Adds and searches share it; growing the index's capacity takes it alone.
    grow: RwLock<()>,
    /// One store's add at a time, so concurrent stores never race for the last free place.
    adding: Mutex<()>,
    /// Changed since it was loaded (or never saved): saved at shutdown.
    changed: AtomicBool,
    /// Deleted vectors the index still holds (removed, their places not yet reused).
    dead: AtomicUsize,
    /// Cosine collections: the rows an unfiltered search scans.
    flat: Option<RwLock<Flat>>,
}

/// Threads that may use one index at once. usearch keeps a context per thread and refuses an
/// operation when all are taken ("Reserve capacity ahead of …"): one for each of tokio's
/// blocking threads (at most 512 by default), where searches and stores run.
const CONTEXTS: usize = 512;

fn threads() -> usize {
    CONTEXTS
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Ann {
    /// An empty index with room for `capacity` vectors.
    pub fn empty(shape: Shape, capacity: usize) -> Result<Ann, String> {
        let index = Index::new(&shape.options()).map_err(|e| e.to_string())?;
        index
            .reserve_capacity_and_threads(capacity.max(64), threads())
            .map_err(|e| e.to_string())?;
        Ok(Ann {
            index,
            shape,
            grow: RwLock::new(()),
            adding: Mutex::new(()),
            changed: AtomicBool::new(true),
            dead: AtomicUsize::new(0),
            flat: (shape.metric == Metric::Cosine).then(|| RwLock::new(Flat::new(shape.dimension))),
        })
    }

    /// Adds `points` (slot, vector as stored) on all cores: a rebuild, batch by batch.
    pub fn add_all(&self, points: &[(usize, Vec<f32>)]) -> Result<(), String> {
        let metric = self.shape.metric;
        let workers = cores().min(points.len().max(1));
        let failed = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        points
                            .iter()
                            .skip(w)
                            .step_by(workers)
                            .filter_map(|(slot, v)| Some((*slot, prepared(metric, v)?)))
                            .find_map(|(slot, v)| self.add(slot, &v).err())
                    })
                })
                .collect();
            handles.into_iter().find_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Some("a worker panicked".into()))
            })
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Opens the index saved in `dir` if it holds exactly `ops` changes of this collection and
    /// its `count` live records; why not otherwise.
    pub fn load(dir: &Path, shape: Shape, ops: u64, count: u64) -> Result<Ann, String> {
        let text = std::fs::read_to_string(dir.join(STATE_FILE))
            .map_err(|e| format!("no readable {STATE_FILE}: {e}"))?;
        let state: State =
            serde_json::from_str(&text).map_err(|e| format!("unreadable {STATE_FILE}: {e}"))?;
        if state.version != INDEX_VERSION
            || state.metric != shape.metric
            || state.dimension != shape.dimension
            || state.created_at_ms != shape.created_at_ms
        {
            return Err("it is of another version or collection".into());
        }
        if state.ops != ops {
            return Err(format!("it holds {} of {ops} changes", state.ops));
        }
        let ann = Ann::empty(shape, 0)?;
        let file = dir.join(INDEX_FILE);
        let path = file
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
        ann.index
            .load(path)
            .map_err(|e| format!("cannot load {INDEX_FILE}: {e}"))?;
        if ann.index.size() != state.points || state.points as u64 != count {
            return Err(format!(
                "its index holds {} points, its state {}, storage {count}",
                ann.index.size(),
                state.points
            ));
        }
        if let Some(flat) = &ann.flat {
            let loaded = Flat::load(&dir.join(FLAT_FILE), shape.dimension)?;
            if loaded.len() != state.points {
                return Err(format!(
                    "its rows hold {} points, its state {}",
                    loaded.len(),
                    state.points
                ));
            }
            *flat.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        }
        ann.dead.store(state.dead, Ordering::Relaxed);
        // A loaded index has room for what it holds, and one search context per core.
        ann.index
            .reserve_capacity_and_threads(ann.index.size().max(64), threads())
            .map_err(|e| e.to_string())?;
        ann.changed.store(false, Ordering::Relaxed);
        Ok(ann)
    }

    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// Live vectors in the index.
    pub fn live(&self) -> usize {
        self.index.size()
    }

    /// Deleted vectors the index still holds.
    pub fn dead(&self) -> usize {
        self.dead.load(Ordering::Relaxed)
    }

    /// Whether the dead vectors are worth a rebuild: at least [`COMPACT_AT_DEAD`] of them, and
    /// more than the live ones.
    pub fn needs_compaction(&self) -> bool {
        let dead = self.dead();
        dead >= COMPACT_AT_DEAD && dead > self.live()
    }

    /// Adds a vector under `slot`, growing the index when it is full.
    fn add(&self, slot: usize, vector: &[f32]) -> Result<(), String> {
        loop {
            {
                let _shared = self.grow.read().unwrap_or_else(|p| p.into_inner());
                // Room for every thread that may be adding at this moment (a rebuild adds on
                // all cores, a store one at a time): each passes this check before any adds.
                if self.index.size() + cores() < self.index.capacity() {
                    self.index
                        .add(slot as u64, vector)
                        .map_err(|e| e.to_string())?;
                    if let Some(flat) = &self.flat {
                        flat.write()
                            .unwrap_or_else(|p| p.into_inner())
                            .put(slot, vector);
                    }
                    // usearch put it in a dead vector's place, if there was one.
                    let _ = self
                        .dead
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
                    return Ok(());
                }
            }
            let _alone = self.grow.write().unwrap_or_else(|p| p.into_inner());
            if self.index.size() + cores() >= self.index.capacity() {
                let more = (self.index.capacity() * 2).max(1024);
                self.index
                    .reserve_capacity_and_threads(more, threads())
                    .map_err(|e| e.to_string())?;
            }
        }
    }

    /// Adds a stored record's vector under its slot (unless the index has it: an index
    /// rebuilt from redb after the record was written already does).
    pub fn insert(&self, slot: usize, vector: &[f32]) -> Result<(), String> {
        if self.index.contains(slot as u64) {
            return Ok(());
        }
        let Some(v) = prepared(self.shape.metric, vector) else {
            return Ok(());
        };
        self.changed.store(true, Ordering::Relaxed);
        let _one = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        self.add(slot, &v)
    }

    /// A slot whose record was deleted or replaced: searches no longer return it.
    pub fn retire(&self, slot: usize) -> Result<(), String> {
        self.changed.store(true, Ordering::Relaxed);
        let _shared = self.grow.read().unwrap_or_else(|p| p.into_inner());
        let removed = self.index.remove(slot as u64).map_err(|e| e.to_string())?;
        if let Some(flat) = &self.flat {
            flat.write().unwrap_or_else(|p| p.into_inner()).remove(slot);
        }
        self.dead.fetch_add(removed, Ordering::Relaxed);
        Ok(())
    }

    /// Up to `count` live slots near `query` that `keep` accepts, nearest first by the
    /// index's (quantised) distance: candidates for the caller to rank on exact vectors.
    pub fn search(
        &self,
        query: &[f32],
        count: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Result<Candidates, String> {
        let Some(query) = prepared(self.shape.metric, query) else {
            return Ok(Candidates::default());
        };
        let query = query.as_slice();
        let _shared = self.grow.read().unwrap_or_else(|p| p.into_inner());
        let ef = EF.load(Ordering::Relaxed).max(count);
        if keep.is_some() || self.index.size() > exact_up_to() {
            // A plain store of a number; every search of this process asks for the same one.
            if self.index.expansion_search() != ef {
                self.index.change_expansion_search(ef);
            }
        }
        if keep.is_none()
            && self.index.size() <= exact_up_to()
            && let Some(flat) = &self.flat
        {
            let flat = flat.read().unwrap_or_else(|p| p.into_inner());
            return Ok(Candidates {
                slots: flat.nearest(query, count),
                ranked: true,
            });
        }
        let found = match keep {
            None if self.index.size() <= exact_up_to() => self.index.exact_search(query, count),
            None => self.index.search(query, count),
            Some(keep) => self
                .index
                .filtered_search(query, count, |key| keep(key as usize)),
        };
        let found = found.map_err(|e| e.to_string())?;
        Ok(Candidates {
            slots: found.keys.into_iter().map(|k| k as usize).collect(),
            ranked: false,
        })
    }

    /// Whether the index holds every slot in `live` (and so may be saved as holding them).
    pub fn holds_all(&self, live: impl IntoIterator<Item = usize>) -> bool {
        live.into_iter()
            .all(|slot| self.index.contains(slot as u64))
    }

    /// Writes the index and its state to `dir` (through a sibling directory renamed into
    /// place), as holding `ops` changes; the caller has checked [`Ann::holds_all`].
    pub fn save(&self, dir: &Path, ops: u64) -> Result<(), String> {
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
        let file = staging.join(INDEX_FILE);
        let path = file
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
        self.index.save(path).map_err(|e| e.to_string())?;
        if let Some(flat) = &self.flat {
            let flat = flat.read().unwrap_or_else(|p| p.into_inner());
            flat.save(&staging.join(FLAT_FILE))
                .map_err(|e| format!("cannot write {FLAT_FILE}: {e}"))?;
        }
        let state = State {
            version: INDEX_VERSION,
            metric: self.shape.metric,
            dimension: self.shape.dimension,
            created_at_ms: self.shape.created_at_ms,
            ops,
            points: self.index.size(),
            dead: self.dead(),
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

/// The vector as the index holds it: unit length for cosine (usearch's 8-bit quantisation
/// expects it), as given otherwise. `None` for a zero vector under cosine (it has no direction).
pub fn prepared(metric: Metric, v: &[f32]) -> Option<Vec<f32>> {
    match metric {
        Metric::Cosine => {
            let norm = dot(v, v).sqrt();
            (norm > 0.0 && norm.is_finite()).then(|| v.iter().map(|x| x / norm).collect())
        }
        Metric::Dot | Metric::Euclid => Some(v.to_vec()),
    }
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    sum_of(a, b, |x, y| x * y)
}

pub fn squared_l2(a: &[f32], b: &[f32]) -> f32 {
    sum_of(a, b, |x, y| (x - y) * (x - y))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_sums_match_plain_ones() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 3.0 - i as f32).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((squared_l2(&a, &b) - plain).abs() < 1e-2);
    }

    fn shape() -> Shape {
        Shape {
            metric: Metric::Euclid,
            dimension: 2,
            created_at_ms: 0,
        }
    }

    #[test]
    fn deleted_vectors_stay_until_reused_and_ask_for_compaction() {
        let ann = Ann::empty(shape(), 0).unwrap();
        let n = COMPACT_AT_DEAD * 2;
        let points: Vec<(usize, Vec<f32>)> = (0..n).map(|i| (i, vec![i as f32, 0.0])).collect();
        ann.add_all(&points).unwrap();
        for slot in 0..COMPACT_AT_DEAD {
            ann.retire(slot).unwrap();
        }
        // usearch only marks them removed: they are dead, not gone.
        assert_eq!(
            (ann.live(), ann.dead()),
            (n - COMPACT_AT_DEAD, COMPACT_AT_DEAD)
        );
        assert!(!ann.needs_compaction(), "as many dead as live");
        // A new vector takes a dead one's place.
        ann.insert(n, &[0.5, 0.0]).unwrap();
        assert_eq!(ann.dead(), COMPACT_AT_DEAD - 1);
        for slot in COMPACT_AT_DEAD..COMPACT_AT_DEAD + 10 {
            ann.retire(slot).unwrap();
        }
        assert!(
            ann.needs_compaction(),
            "more dead than live, and enough of them"
        );
        // The dead are never found.
        let found = ann.search(&[0.0, 0.0], 5, None).unwrap();
        assert!(
            found.slots.iter().all(|s| *s >= COMPACT_AT_DEAD + 10),
            "{found:?}"
        );
        // Saved and loaded, the index still knows how many are dead.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        ann.save(&path, 7).unwrap();
        let loaded = Ann::load(&path, shape(), 7, ann.live() as u64).unwrap();
        assert_eq!((loaded.live(), loaded.dead()), (ann.live(), ann.dead()));
    }
}
