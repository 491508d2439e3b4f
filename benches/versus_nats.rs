//! claudemesh and NATS JetStream side by side, same loads, one run (issue 14), so the ratio is
//! measured in the same minute on the same machine. Run with
//! `cargo bench --bench versus_nats [-- CASE]`; needs `nats-server` on the PATH (Debian package
//! `nats-server`) and skips the JetStream side with a message otherwise. Nothing here asserts a
//! timing.
//!
//! Both sides: N peers, each sends M messages of 128 bytes to the next peer, at most 64
//! unacknowledged sends per peer, receivers acknowledge every message explicitly; latency is
//! send → receive in the load generator, which runs on one worker thread on both sides (the
//! server keeps the other core). claudemesh: `claudemesh bench` against a fresh broker
//! (fsync before every ack). JetStream: one file-backed stream, a durable pull consumer per
//! peer with explicit acks, async publishes awaiting their PubAcks (nats-server 2.9 syncs its
//! files about every 2 minutes, not before a PubAck).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream};
use futures_util::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");
/// Unacknowledged sends per peer (as `claudemesh bench`).
const WINDOW: usize = 64;
const SIZE: usize = 128;
/// Worker threads of each load generator (as `claudemesh bench`'s default): both leave the
/// same cores to their server.
const LOAD_THREADS: usize = 1;

/// One case: peers, messages per peer, fixed total rate (None: saturation).
struct Case {
    name: &'static str,
    peers: usize,
    messages: usize,
    rate: Option<u32>,
}

const CASES: [Case; 6] = [
    Case {
        name: "10x100",
        peers: 10,
        messages: 100,
        rate: None,
    },
    Case {
        name: "50x200",
        peers: 50,
        messages: 200,
        rate: None,
    },
    Case {
        name: "100x1000",
        peers: 100,
        messages: 1000,
        rate: None,
    },
    Case {
        name: "10@1000/s",
        peers: 10,
        messages: 500,
        rate: Some(1000),
    },
    Case {
        name: "100@1000/s",
        peers: 100,
        messages: 50,
        rate: Some(1000),
    },
    Case {
        name: "1000x10",
        peers: 1000,
        messages: 10,
        rate: None,
    },
];

struct Measured {
    msgs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    lost: u64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// A child process killed when dropped, with its temp dir.
struct Proc {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_claudemesh() -> (Proc, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(BIN)
        .args(["broker", "--listen", "127.0.0.1:0", "--open"])
        .args([
            "--max-connections-per-mesh",
            "2000",
            "--max-connections-per-ip",
            "2000",
            "--data",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start claudemesh broker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = first
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default()
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    (
        Proc { child, _dir: dir },
        format!("ws://127.0.0.1:{port}/ws"),
    )
}

fn run_claudemesh(case: &Case) -> Result<Measured, String> {
    let (_broker, url) = start_claudemesh();
    let mut cmd = Command::new(BIN);
    cmd.args(["bench", "--broker", &url, "--json"])
        .args(["--threads", &LOAD_THREADS.to_string()])
        .args(["--peers", &case.peers.to_string()])
        .args(["--messages", &case.messages.to_string()]);
    if let Some(r) = case.rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| String::from_utf8_lossy(&out.stderr).trim().to_string())?;
    let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
    Ok(Measured {
        msgs_per_s: f("throughput_msgs_per_s"),
        p50_ms: f("p50_ms"),
        p99_ms: f("p99_ms"),
        lost: r["lost"].as_u64().unwrap_or(0),
    })
}

fn start_nats() -> Option<(Proc, String)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .ok()?
        .port();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((
        Proc { child, _dir: dir },
        format!("nats://127.0.0.1:{port}"),
    ))
}

async fn connect(url: &str) -> Result<async_nats::Client, String> {
    for _ in 0..100 {
        if let Ok(c) = async_nats::connect(url).await {
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("cannot connect to {url}"))
}

async fn run_jetstream(url: &str, case: &Case, run: usize) -> Result<Measured, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let admin = jetstream::new(connect(url).await?);
    let stream_name = format!("BENCH{run}");
    let stream = admin
        .create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("b{run}.>")],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| err(&e))?;
    let total = (case.peers * case.messages) as u64;
    let start = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for p in 0..case.peers {
        clients.push(connect(url).await?);
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("p{p}")),
                filter_subject: format!("b{run}.p{p}"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .map_err(|e| err(&e))?;
        let (received, latencies) = (received.clone(), latencies.clone());
        let expect = case.messages as u64;
        tasks.push(tokio::spawn(async move {
            let mut messages = consumer.messages().await.map_err(|e| err(&e))?;
            let mut got = 0;
            while got < expect {
                let Some(m) = messages.next().await else {
                    break;
                };
                let m = m.map_err(|e| err(&e))?;
                let sent_ns = u64::from_le_bytes(m.payload[..8].try_into().unwrap_or_default());
                let now_ns = start.elapsed().as_nanos() as u64;
                latencies
                    .lock()
                    .unwrap()
                    .push(now_ns.saturating_sub(sent_ns));
                m.ack().await.map_err(|e| err(&e))?;
                received.fetch_add(1, Ordering::Relaxed);
                got += 1;
            }
            Ok::<(), String>(())
        }));
    }
    let sending = Instant::now();
    let mut senders = Vec::new();
    for (p, client) in clients.into_iter().enumerate() {
        let js = jetstream::new(client);
        let subject = format!("b{run}.p{}", (p + 1) % case.peers);
        let (messages, peers) = (case.messages, case.peers);
        let gap = case
            .rate
            .map(|r| Duration::from_secs_f64(case.peers as f64 / f64::from(r)));
        senders.push(tokio::spawn(async move {
            let mut pending = std::collections::VecDeque::new();
            for i in 0..messages {
                if let Some(gap) = gap {
                    // Peers take turns, as `claudemesh bench` paces them.
                    let due = sending + gap.mul_f64(i as f64 + p as f64 / peers as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let mut body = vec![0u8; SIZE];
                body[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
                let ack = js
                    .publish(subject.clone(), body.into())
                    .await
                    .map_err(|e| err(&e))?;
                pending.push_back(ack);
                if pending.len() >= WINDOW
                    && let Some(a) = pending.pop_front()
                {
                    a.await.map_err(|e| err(&e))?;
                }
            }
            for a in pending {
                a.await.map_err(|e| err(&e))?;
            }
            Ok::<(), String>(())
        }));
    }
    for s in senders {
        s.await.map_err(|e| err(&e))??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = sending.elapsed().as_secs_f64();
    for t in tasks {
        t.abort();
    }
    let _ = admin.delete_stream(&stream_name).await;
    let mut l = latencies.lock().unwrap().clone();
    l.sort_unstable();
    let pct = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |ns| *ns as f64 / 1e6)
    };
    let got = received.load(Ordering::Relaxed);
    Ok(Measured {
        msgs_per_s: got as f64 / took,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        lost: total - got.min(total),
    })
}

/// min / median / max of one side's runs of a case, with the load average before each run.
fn cell(runs: &[(Result<Measured, String>, String)], fixed_rate: bool) -> String {
    let ok: Vec<&Measured> = runs.iter().filter_map(|(m, _)| m.as_ref().ok()).collect();
    if ok.is_empty() {
        return runs
            .first()
            .and_then(|(m, _)| m.as_ref().err().cloned())
            .map_or("not run".into(), |e| format!("failed: {e}"));
    }
    let spread = |f: &dyn Fn(&Measured) -> f64| {
        let mut v: Vec<f64> = ok.iter().map(|m| f(m)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        (v[0], v[v.len() / 2], v[v.len() - 1])
    };
    let loads: Vec<&str> = runs.iter().map(|(_, l)| l.as_str()).collect();
    let lost: u64 = ok.iter().map(|m| m.lost).sum();
    let lost = if lost > 0 {
        format!(", {lost} LOST")
    } else {
        String::new()
    };
    let failed = runs.len() - ok.len();
    let failed = if failed > 0 {
        format!(", {failed} runs failed")
    } else {
        String::new()
    };
    let (p99_min, p99_med, p99_max) = spread(&|m| m.p99_ms);
    let p50 = spread(&|m| m.p50_ms).1;
    if fixed_rate {
        format!(
            "p99 {p99_min:.2} / {p99_med:.2} / {p99_max:.2} ms, p50 {p50:.2} ms{lost}{failed} (load {})",
            loads.join(", ")
        )
    } else {
        let (lo, med, hi) = spread(&|m| m.msgs_per_s);
        format!(
            "{lo:.0} / {med:.0} / {hi:.0} msg/s, p99 {p99_med:.0} ms{lost}{failed} (load {})",
            loads.join(", ")
        )
    }
}

fn median(runs: &[(Result<Measured, String>, String)], f: impl Fn(&Measured) -> f64) -> f64 {
    let mut v: Vec<f64> = runs
        .iter()
        .filter_map(|(m, _)| m.as_ref().ok().map(&f))
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let nats = start_nats();
    if nats.is_none() {
        println!(
            "nats-server is not installed (Debian: apt-get install nats-server): \
             measuring claudemesh only"
        );
    }
    // The JetStream load runs here, on as many threads as `claudemesh bench` is given.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(LOAD_THREADS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "{runs} runs per case, min / median / max; the 1-minute load average before each run."
    );
    println!();
    println!(
        "| case | claudemesh (fsync before each ack) | NATS JetStream 2.9 (file store) | ratio of medians |"
    );
    println!("|---|---|---|---|");
    let mut n = 0;
    for case in &CASES {
        if filter.as_deref().is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            // Alternating, so both sides see the same minute of the machine.
            ours.push((loadavg(), run_claudemesh(case)));
            if let Some((_, url)) = &nats {
                n += 1;
                theirs.push((loadavg(), rt.block_on(run_jetstream(url, case, n))));
            }
        }
        let ours: Vec<_> = ours.into_iter().map(|(l, m)| (m, l)).collect();
        let theirs: Vec<_> = theirs.into_iter().map(|(l, m)| (m, l)).collect();
        let fixed = case.rate.is_some();
        let ratio = if theirs.is_empty() {
            "—".to_string()
        } else if fixed {
            let (a, b) = (median(&ours, |m| m.p99_ms), median(&theirs, |m| m.p99_ms));
            if b > 0.0 {
                format!("p99 {:.2}×", a / b)
            } else {
                "—".into()
            }
        } else {
            let (a, b) = (
                median(&ours, |m| m.msgs_per_s),
                median(&theirs, |m| m.msgs_per_s),
            );
            if b > 0.0 {
                format!("{:.2}×", a / b)
            } else {
                "—".into()
            }
        };
        let theirs_cell = if nats.is_some() {
            cell(&theirs, fixed)
        } else {
            "skipped (no nats-server)".into()
        };
        println!(
            "| {} | {} | {theirs_cell} | {ratio} |",
            case.name,
            cell(&ours, fixed)
        );
    }
}
