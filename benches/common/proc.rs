//! What the benchmarks read of this machine and process from /proc. Each bench includes this
//! file (`#[path]`) and uses what it needs.
#![allow(dead_code)]

use std::collections::HashMap;

/// The machine's load average, its three figures as `uptime` shows them.
pub fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// This process's I/O counters (`wchar`, `syscw`, `write_bytes`, …).
pub fn proc_io() -> HashMap<String, u64> {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}
