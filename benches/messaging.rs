//! Messaging benchmarks against a real broker process on loopback: throughput and send→push
//! latency with durable acks (`claudemesh bench`), broker memory idle and with 1 000 connected
//! peers, and cold start time. Run with `cargo bench --bench messaging`; the figures are
//! written up in BENCHMARKS.md. Nothing here asserts a timing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_claudemesh");

struct Broker {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on a free port; returns it and how long it took to say it listens.
    fn start(extra: &[&str]) -> (Broker, Duration) {
        let data = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(["broker", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start broker");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let took = started.elapsed();
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("listening line");
        std::thread::spawn(move || for _ in lines {});
        (
            Broker {
                child,
                port,
                _data: data,
            },
            took,
        )
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    fn rss_mb(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench(broker: &Broker, peers: usize, messages: usize, rate: Option<u32>) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
    cmd.args(["bench", "--broker", &broker.url(), "--json"])
        .args([
            "--peers",
            &peers.to_string(),
            "--messages",
            &messages.to_string(),
        ]);
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    let out = cmd.output().expect("run claudemesh bench");
    serde_json::from_slice(&out.stdout).unwrap_or_else(
        |_| serde_json::json!({"error": String::from_utf8_lossy(&out.stderr).trim().to_string()}),
    )
}

fn main() {
    // `cargo bench` passes flags such as --bench; a filter word runs only matching cases.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));

    let (broker, cold) = Broker::start(&[
        "--open",
        "--max-connections-per-mesh",
        "2000",
        "--max-connections-per-ip",
        "2000",
    ]);
    println!(
        "cold start (spawn → listening): {:.1} ms",
        cold.as_secs_f64() * 1000.0
    );
    println!("broker idle RSS: {:.1} MB", broker.rss_mb());
    println!();
    println!(
        "| case | sent | delivered | lost | dup | msg/s | p50 ms | p99 ms | max ms | broker RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cases: [(&str, usize, usize, Option<u32>); 5] = [
        ("10x100", 10, 100, None),
        ("50x100", 50, 100, None),
        ("100x1000", 100, 1000, None),
        ("100x1000@1000", 100, 100, Some(1000)),
        ("1000peers", 1000, 1, None),
    ];
    for (name, peers, messages, rate) in cases {
        if !wanted(name) {
            continue;
        }
        let r = bench(&broker, peers, messages, rate);
        println!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
            r["sent"],
            r["delivered"],
            r["lost"],
            r["duplicates"],
            r["throughput_msgs_per_s"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
            r["broker_rss_mb"].as_f64().unwrap_or(0.0),
        );
        if let Some(e) = r.get("error") {
            println!("  ({name} failed: {e})");
        }
    }
    println!();
    println!("broker RSS after the runs: {:.1} MB", broker.rss_mb());
}
