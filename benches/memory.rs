//! The memory layer without the network: `remember` throughput and `recall` latency with
//! 100 000 memories in one mesh, through the same `Store` + `MemoryIndex` calls the broker's
//! handlers make (redb group commit, one tantivy writer, commit + reload before answering).
//!
//! `cargo bench --bench memory` (or `-- 20000` for another mesh size). Prints a small report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use claudemesh::store::{MemoryIndex, MemoryRecord, Store};

const MESH: &str = "benchmesh0000000000000";
const OTHER_MESH: &str = "othermesh0000000000000";
/// `remember`s in flight at once while loading (many agents at work).
const CONCURRENCY: usize = 256;
const SEQUENTIAL: usize = 200;
const QUERIES: usize = 2000;

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Skewed towards small indices, like word frequencies.
    fn zipfish(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as usize % n
    }
}

/// A vocabulary of pronounceable pseudo-words plus some real ones agents write about.
fn vocabulary() -> Vec<String> {
    let real = [
        "deploy",
        "broker",
        "token",
        "release",
        "database",
        "migration",
        "schema",
        "test",
        "flaky",
        "timeout",
        "retry",
        "queue",
        "cache",
        "index",
        "memory",
        "config",
        "error",
        "panic",
        "build",
        "docker",
        "kubernetes",
        "auth",
        "session",
        "review",
        "refactor",
        "benchmark",
        "latency",
        "throughput",
        "router",
        "scheduler",
    ];
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "ta", "shi", "vo", "pe", "zu", "da", "fi", "go", "hu", "ja",
        "ke", "li", "mo", "nu", "po",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut words: Vec<String> = real.iter().map(|w| w.to_string()).collect();
    while words.len() < 5000 {
        let n = 2 + rng.below(3);
        let w: String = (0..n)
            .map(|_| syllables[rng.below(syllables.len())])
            .collect();
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
}

fn memory(rng: &mut Rng, words: &[String], mesh: &str, i: usize) -> MemoryRecord {
    let len = 12 + rng.below(30);
    let content: Vec<&str> = (0..len)
        .map(|_| words[rng.zipfish(words.len())].as_str())
        .collect();
    let tags = (0..rng.below(3))
        .map(|_| words[rng.below(50)].clone())
        .collect();
    MemoryRecord {
        id: format!("m{i:021}"),
        mesh_id: mesh.into(),
        content: content.join(" "),
        tags,
        remembered_by: "bench".into(),
        member_id: "benchmember".into(),
        remembered_at_ms: 1_700_000_000_000 + i as i64,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// Loads `n` memories into `mesh` with `CONCURRENCY` in flight; returns memories per second.
async fn load(
    store: &Store,
    index: &Arc<MemoryIndex>,
    words: &Arc<Vec<String>>,
    mesh: &'static str,
    offset: usize,
    n: usize,
) -> f64 {
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let (store, index, words) = (store.clone(), index.clone(), words.clone());
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0xA076_1D64_78BD_642F ^ ((w as u64 + 1) * 0x1000_0000_01B3));
            let mut i = w;
            while i < n {
                let record = memory(&mut rng, &words, mesh, offset + i);
                index.remember(&store, record).await.expect("remember");
                i += CONCURRENCY;
            }
        }));
    }
    for w in workers {
        w.await.expect("loader task");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it: then
    // a small smoke run, so the test suite does not spend minutes here.
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if full { 100_000 } else { 1_000 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(n));
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let index = Arc::new(MemoryIndex::open(&dir.path().join("memory"), &store).expect("index"));
    let words = Arc::new(vocabulary());

    println!(
        "memory benchmark: {n} memories in one mesh (+{} in another)",
        n / 10
    );
    let rate = load(&store, &index, &words, MESH, 0, n).await;
    println!(
        "  remember, {CONCURRENCY} in flight:  {rate:>9.0} memories/s (each durable in redb and searchable when answered)"
    );
    load(&store, &index, &words, OTHER_MESH, n, n / 10).await;

    let mut rng = Rng(42);
    let mut latencies = Vec::with_capacity(SEQUENTIAL);
    for i in 0..SEQUENTIAL {
        let record = memory(&mut rng, &words, MESH, 2 * n + i);
        let t = Instant::now();
        index.remember(&store, record).await.expect("remember");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "  remember, one at a time:   p50 {}  p95 {}  ({:.0}/s)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        SEQUENTIAL as f64 / latencies.iter().sum::<Duration>().as_secs_f64()
    );

    // Queries of one to three words, frequent and rare ones mixed, as agents would ask.
    let queries: Vec<String> = (0..QUERIES)
        .map(|_| {
            (0..1 + rng.below(3))
                .map(|_| words[rng.zipfish(words.len())].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for q in queries.iter().take(100) {
        index.recall(&store, MESH, q, 20).expect("warm-up recall");
    }
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut hits = 0usize;
    for q in &queries {
        let t = Instant::now();
        let found = index.recall(&store, MESH, q, 20).expect("recall");
        latencies.push(t.elapsed());
        hits += found.len();
    }
    latencies.sort();
    println!(
        "  recall (top 20), {QUERIES} queries: p50 {}  p95 {}  p99 {}  max {}  ({:.1} results/query)",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.95)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        hits as f64 / QUERIES as f64
    );
    index.close();
    store.close();
}
