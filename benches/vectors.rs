//! The vector layer without the network: 100 000 random 384-dimension vectors stored in one
//! collection through the same `Store` + `VectorIndex` calls the broker's handlers make (redb
//! group commit, then the usearch index), then `vector_search` latency and recall@10 against
//! an exact f32 search: the broker's default (usearch's exact search over the 8-bit vectors,
//! re-ranked on the stored f32 ones), and the HNSW graph walk at a few widths (`ef`) for
//! comparison. Then the index is saved, loaded and rebuilt from redb, as a broker restart does.
//!
//! `cargo bench --bench vectors` (or `-- 20000` for another size). Prints a small report.
//! `-- --shared S` adds S times one common vector to every vector (a few of its numbers 6, the
//! rest uniform in [-1, 1]), as embeddings share a common direction: at `--shared 1` unrelated
//! vectors are at cosine ≈ 0.76, at 2 ≈ 0.93, at 4 ≈ 0.98.

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh::store::{
    Actor, EF_SEARCH, EXACT_UP_TO, Metric, NewPoint, Store, VectorIndex, set_ef_search,
    set_exact_up_to,
};

const MESH: &str = "benchmesh0000000000000";
const DIM: usize = 384;
const QUERIES: usize = 200;
const K: usize = 10;
/// Stores in flight at once while loading (many agents at work).
const CONCURRENCY: usize = 64;
/// Graph-walk widths compared with the exact search.
const EF_SWEEP: [usize; 3] = [EF_SEARCH, 1024, 2048];
/// Rounds of the default search (min / median / max of their p50 and p95 are printed).
const ROUNDS: usize = 5;

#[path = "common/proc.rs"]
mod proc;
#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

impl Rng {
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.unit()).collect()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

/// The exact top-`K` ids by cosine, by comparing with every vector.
fn exact(data: &[Vec<f32>], q: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = data.iter().map(|v| cosine(q, v)).zip(0..).collect();
    scored.select_nth_unstable_by(K, |a, b| b.0.total_cmp(&a.0));
    let mut top: Vec<(f32, usize)> = scored[..K].to_vec();
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    top.into_iter().map(|(_, i)| i).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The machine's load average, as `uptime` shows it.
fn load_average() -> String {
    format!("(load average {})", proc::load_average())
}

fn actor() -> Actor {
    Actor {
        member_id: "bench".into(),
        name: "bench".into(),
        manages: false,
    }
}

async fn measure(
    index: &Arc<VectorIndex>,
    store: &Store,
    queries: &[Vec<f32>],
    truth: &[Vec<usize>],
) -> (f64, Duration, Duration) {
    let mut took = Vec::with_capacity(queries.len());
    let mut hits = 0usize;
    for (q, want) in queries.iter().zip(truth) {
        let start = Instant::now();
        let found = index
            .search(store, MESH, "bench", q.clone(), K, Default::default())
            .await
            .expect("search")
            .expect("search accepted");
        took.push(start.elapsed());
        let ids: Vec<usize> = found
            .iter()
            .filter_map(|h| h.point.id.parse().ok())
            .collect();
        hits += want.iter().filter(|w| ids.contains(w)).count();
    }
    took.sort();
    let recall = hits as f64 / (queries.len() * K) as f64;
    (recall, percentile(&took, 0.5), percentile(&took, 0.95))
}

async fn run(n: usize, shared: f32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let index = Arc::new(VectorIndex::new(dir.path().join("vectors")));
    index
        .create(&store, MESH, "bench", DIM, Metric::Cosine, actor())
        .await
        .expect("create")
        .expect("created");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let common: Vec<f32> = (0..DIM)
        .map(|i| if i % 50 == 0 { 6.0 } else { rng.unit() })
        .map(|x| x * shared)
        .collect();
    let vector = |rng: &mut Rng| -> Vec<f32> {
        rng.vector()
            .iter()
            .zip(&common)
            .map(|(x, c)| x + c)
            .collect()
    };
    let data: Vec<Vec<f32>> = (0..n).map(|_| vector(&mut rng)).collect();

    println!(
        "vectors: {n} random {DIM}-d vectors (uniform in [-1, 1], plus {shared} × a common one), \
         cosine, one collection"
    );
    let start = Instant::now();
    let mut next = 0usize;
    while next < n {
        let batch = (next..(next + CONCURRENCY).min(n)).map(|i| {
            let (index, store, v) = (index.clone(), store.clone(), data[i].clone());
            tokio::spawn(async move {
                let new = NewPoint {
                    collection: "bench".into(),
                    id: i.to_string(),
                    vector: v,
                    metadata: Some(format!("{{\"n\":{i}}}")),
                    text: None,
                    create_missing: false,
                };
                index
                    .store(&store, MESH, new, actor())
                    .await
                    .expect("store")
                    .expect("stored");
            })
        });
        let handles: Vec<_> = batch.collect();
        for h in handles {
            h.await.expect("store task");
        }
        next = (next + CONCURRENCY).min(n);
        if next.is_multiple_of(10_000) {
            eprintln!("  {next} stored ({:.0?})", start.elapsed());
        }
    }
    let load = start.elapsed();
    println!(
        "  load (vector_store, {CONCURRENCY} in flight): {load:.1?}, {:.0} stores/s  {}",
        n as f64 / load.as_secs_f64(),
        load_average()
    );

    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| vector(&mut rng)).collect();
    let start = Instant::now();
    let truth: Vec<Vec<usize>> = queries.iter().map(|q| exact(&data, q)).collect();
    println!(
        "  exact search (ground truth): {:.1?} per query",
        start.elapsed() / QUERIES as u32
    );
    println!("  vector_search, limit {K}, {QUERIES} queries:");
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(measure(&index, &store, &queries, &truth).await);
    }
    let recall = rounds.iter().map(|r| r.0).fold(1.0, f64::min);
    let mut p50s: Vec<Duration> = rounds.iter().map(|r| r.1).collect();
    let mut p95s: Vec<Duration> = rounds.iter().map(|r| r.2).collect();
    p50s.sort();
    p95s.sort();
    println!(
        "    default (exact: centred 8-bit + re-rank), {ROUNDS} rounds: recall@{K} {recall:.3} (lowest)  \
         p50 {:.2?} / {:.2?} / {:.2?}  p95 {:.2?} / {:.2?} / {:.2?} (min / median / max)  {}",
        p50s[0],
        p50s[ROUNDS / 2],
        p50s[ROUNDS - 1],
        p95s[0],
        p95s[ROUNDS / 2],
        p95s[ROUNDS - 1],
        load_average()
    );
    set_exact_up_to(0);
    for ef in EF_SWEEP {
        set_ef_search(ef);
        let (recall, p50, p95) = measure(&index, &store, &queries, &truth).await;
        println!(
            "    graph walk, ef {ef:>4}: recall@{K} {recall:.3}  p50 {p50:.2?}  p95 {p95:.2?}"
        );
    }
    set_ef_search(EF_SEARCH);
    set_exact_up_to(EXACT_UP_TO);

    let start = Instant::now();
    index.close(&store);
    println!("  save the index (shutdown): {:.1?}", start.elapsed());
    let reopened = Arc::new(VectorIndex::new(dir.path().join("vectors")));
    let start = Instant::now();
    let (recall, _, _) = measure(&reopened, &store, &queries[..1], &truth[..1]).await;
    println!(
        "  first search after a restart (loads the saved index): {:.1?} (recall {recall:.2})",
        start.elapsed()
    );
    drop(reopened);
    std::fs::remove_dir_all(dir.path().join("vectors")).expect("remove the index");
    let rebuilt = Arc::new(VectorIndex::new(dir.path().join("vectors")));
    let start = Instant::now();
    let _ = measure(&rebuilt, &store, &queries[..1], &truth[..1]).await;
    println!(
        "  first search after the index files were deleted (rebuilds from redb): {:.1?}",
        start.elapsed()
    );
    let (recall, p50, p95) = measure(&rebuilt, &store, &queries, &truth).await;
    println!(
        "    rebuilt index: recall@{K} {recall:.3}  p50 {p50:.2?}  p95 {p95:.2?}  {}",
        load_average()
    );
    store.close();
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it: then
    // a small smoke run, so the test suite does not spend minutes here.
    let full = std::env::args().any(|a| a == "--bench");
    let (mut n, mut shared) = (if full { 100_000 } else { 1_000 }, 0.0f32);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shared" => {
                shared = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--shared S")
            }
            other => n = other.parse().unwrap_or(n),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(n, shared));
}
