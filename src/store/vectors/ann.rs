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
//! A collection of at most [`exact_up_to`] records is searched by comparing every vector in
//! the index (usearch's exact search); a larger one by walking the graph. See BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind, b1x8};

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

/// Cosine collections of more than this many records are searched in two passes: the sign
/// bits of every vector compared first (usearch's `b1x8` Hamming scan, 48 bytes a vector at
/// 384 dimensions instead of 384), then the 8-bit vectors of the [`PREFILTER_CANDIDATES`]
/// nearest by bits. See BENCHMARKS.md.
pub const PREFILTER_FROM: usize = 20_000;
/// Vectors the bit scan passes on to the 8-bit comparison.
pub const PREFILTER_CANDIDATES: usize = 2_000;

/// The values in force in this process (the constants unless a benchmark sweeps them).
static EF: AtomicUsize = AtomicUsize::new(EF_SEARCH);
static EXACT: AtomicUsize = AtomicUsize::new(EXACT_UP_TO);
static PREFILTER: AtomicUsize = AtomicUsize::new(PREFILTER_CANDIDATES);
static PREFILTER_AT: AtomicUsize = AtomicUsize::new(PREFILTER_FROM);

/// Changes the bit scan's candidates (0: no bit scan) and the collection size it starts
/// above (benchmarks compare).
pub fn set_prefilter(candidates: usize, from: usize) {
    PREFILTER.store(candidates, Ordering::Relaxed);
    PREFILTER_AT.store(from, Ordering::Relaxed);
}

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
const INDEX_VERSION: u32 = 3;
const INDEX_FILE: &str = "index.usearch";
/// The sign bits of a cosine collection's vectors.
const BITS_FILE: &str = "bits.usearch";
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

    /// The sign-bit index of a cosine collection.
    fn bits_options(self) -> Option<IndexOptions> {
        (self.metric == Metric::Cosine).then_some(IndexOptions {
            dimensions: self.dimension,
            metric: MetricKind::Hamming,
            quantization: ScalarKind::B1,
            connectivity: CONNECTIVITY,
            expansion_add: EXPANSION_ADD,
            expansion_search: EF_SEARCH,
            multi: false,
        })
    }
}

/// One collection's index.
pub struct Ann {
    index: Index,
    /// Cosine: each vector's sign bits, under the same slot (the first pass of a search).
    bits: Option<Index>,
    shape: Shape,
    /// Adds and searches share it; growing the index's capacity takes it alone.
    grow: RwLock<()>,
    /// One store's add at a time, so concurrent stores never race for the last free place.
    adding: Mutex<()>,
    /// Changed since it was loaded (or never saved): saved at shutdown.
    changed: AtomicBool,
    /// Deleted vectors the index still holds (removed, their places not yet reused).
    dead: AtomicUsize,
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
        let bits = match shape.bits_options() {
            Some(options) => Some(Index::new(&options).map_err(|e| e.to_string())?),
            None => None,
        };
        let ann = Ann {
            index,
            bits,
            shape,
            grow: RwLock::new(()),
            adding: Mutex::new(()),
            changed: AtomicBool::new(true),
            dead: AtomicUsize::new(0),
        };
        ann.reserve(capacity.max(64))?;
        Ok(ann)
    }

    /// Room for `capacity` vectors in both indexes, and a context for each thread.
    fn reserve(&self, capacity: usize) -> Result<(), String> {
        for index in std::iter::once(&self.index).chain(&self.bits) {
            index
                .reserve_capacity_and_threads(capacity, threads())
                .map_err(|e| e.to_string())?;
        }
        Ok(())
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
        if let Some(bits) = &ann.bits {
            let file = dir.join(BITS_FILE);
            let path = file
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
            bits.load(path)
                .map_err(|e| format!("cannot load {BITS_FILE}: {e}"))?;
            if bits.size() != state.points {
                return Err(format!("its bits hold {} points", bits.size()));
            }
        }
        if ann.index.size() != state.points || state.points as u64 != count {
            return Err(format!(
                "its index holds {} points, its state {}, storage {count}",
                ann.index.size(),
                state.points
            ));
        }
        ann.dead.store(state.dead, Ordering::Relaxed);
        // A loaded index has room for what it holds, and a search context per thread.
        ann.reserve(ann.index.size().max(64))?;
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
                if self.index.size() < self.index.capacity() {
                    self.index
                        .add(slot as u64, vector)
                        .map_err(|e| e.to_string())?;
                    if let Some(bits) = &self.bits {
                        bits.add(slot as u64, b1x8::from_u8s(&sign_bits(vector)))
                            .map_err(|e| e.to_string())?;
                    }
                    // usearch put it in a dead vector's place, if there was one.
                    let _ = self
                        .dead
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| d.checked_sub(1));
                    return Ok(());
                }
            }
            let _alone = self.grow.write().unwrap_or_else(|p| p.into_inner());
            if self.index.size() >= self.index.capacity() {
                let more = (self.index.capacity() * 2).max(1024);
                self.reserve(more)?;
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
        if let Some(bits) = &self.bits {
            bits.remove(slot as u64).map_err(|e| e.to_string())?;
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
    ) -> Result<Vec<usize>, String> {
        let Some(query) = prepared(self.shape.metric, query) else {
            return Ok(Vec::new());
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
            && let Some(bits) = &self.bits
            && PREFILTER.load(Ordering::Relaxed) > 0
            && self.index.size() > PREFILTER_AT.load(Ordering::Relaxed)
        {
            return self.two_pass(bits, query, count);
        }
        let found = match keep {
            None if self.index.size() <= exact_up_to() => self.index.exact_search(query, count),
            None => self.index.search(query, count),
            Some(keep) => self
                .index
                .filtered_search(query, count, |key| keep(key as usize)),
        };
        let found = found.map_err(|e| e.to_string())?;
        Ok(found.keys.into_iter().map(|k| k as usize).collect())
    }

    /// The bit scan, then the 8-bit vectors of its candidates compared with the query (a unit
    /// vector): the `count` nearest slots, nearest first.
    fn two_pass(&self, bits: &Index, query: &[f32], count: usize) -> Result<Vec<usize>, String> {
        let wanted = PREFILTER.load(Ordering::Relaxed).max(count);
        let near = bits
            .exact_search(b1x8::from_u8s(&sign_bits(query)), wanted)
            .map_err(|e| e.to_string())?;
        let mut stored = vec![0i8; self.shape.dimension];
        let mut scored: Vec<(f32, u64)> = Vec::with_capacity(near.keys.len());
        for key in near.keys {
            if self
                .index
                .get(key, &mut stored)
                .map_err(|e| e.to_string())?
                == 0
            {
                continue;
            }
            let similarity: f32 = query
                .iter()
                .zip(&stored)
                .map(|(q, v)| q * f32::from(*v))
                .sum();
            scored.push((similarity, key));
        }
        let top = count.min(scored.len());
        if top < scored.len() {
            scored.select_nth_unstable_by(top, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(top);
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored.into_iter().map(|(_, k)| k as usize).collect())
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
        if let Some(bits) = &self.bits {
            let file = staging.join(BITS_FILE);
            let path = file
                .to_str()
                .ok_or_else(|| format!("{} is not UTF-8", file.display()))?;
            bits.save(path).map_err(|e| e.to_string())?;
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

/// A vector's sign bits, eight to a byte (usearch's `b1x8`).
fn sign_bits(v: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; v.len().div_ceil(8)];
    for (i, x) in v.iter().enumerate() {
        if *x > 0.0 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
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
    fn the_bit_scan_then_8_bit_pass_finds_a_stored_vector_first() {
        let shape = Shape {
            metric: Metric::Cosine,
            dimension: 64,
            created_at_ms: 0,
        };
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let points: Vec<(usize, Vec<f32>)> = (0..3000)
            .map(|i| {
                let v = (0..64)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                    })
                    .collect();
                (i, v)
            })
            .collect();
        let ann = Ann::empty(shape, 0).unwrap();
        ann.add_all(&points).unwrap();
        ann.retire(7).unwrap();
        let bits = ann.bits.as_ref().expect("cosine keeps sign bits");
        for (slot, v) in points.iter().step_by(97).skip(1) {
            let q = prepared(Metric::Cosine, v).unwrap();
            let found = ann.two_pass(bits, &q, 5).unwrap();
            assert_eq!(found.first(), Some(slot), "{found:?}");
        }
        let q = prepared(Metric::Cosine, &points[7].1).unwrap();
        assert!(!ann.two_pass(bits, &q, 5).unwrap().contains(&7), "retired");
        // Both files are saved and loaded.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        ann.save(&path, 1).unwrap();
        let loaded = Ann::load(&path, shape, 1, 2999).unwrap();
        let bits = loaded.bits.as_ref().expect("loaded bits");
        let q = prepared(Metric::Cosine, &points[100].1).unwrap();
        assert_eq!(loaded.two_pass(bits, &q, 1).unwrap(), [100]);
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
            found.iter().all(|s| *s >= COMPACT_AT_DEAD + 10),
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
