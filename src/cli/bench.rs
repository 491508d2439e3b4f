//! `claudemesh bench`: a load generator in the spirit of `nats bench` / `redis-benchmark`.
//! It makes a throw-away mesh, connects N peers, has each send M direct messages (encrypted
//! like real ones, durably acknowledged), checks that every acknowledged message arrives exactly
//! once, and reports throughput and send→push latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argh::{ArgsInfo, FromArgs};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, print_json};
use crate::HashMap;
use crate::client::tls::Trust;
use crate::client::{ConnectOptions, MeshClient, REQUEST_TIMEOUT, http};
use crate::crypto::{self, BoxKeyPair, SignKeyPair};
use crate::identity::{MeshEntry, encode_root_key, http_base, root_key_check, ws_url};
use crate::protocol::messages::{PeerInfo, SendMessage};
use crate::protocol::{ClientMessage, Encoding, ServerMessage, ids, time};

/// Sends a peer keeps in flight at saturation.
const WINDOW: usize = 64;
/// Give up waiting for deliveries after this long without progress.
const STALL: Duration = Duration::from_secs(20);

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "bench", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh bench --peers 10 --messages 1000")]
/// load-test a broker: N peers each send M direct messages; reports throughput and latency
pub struct BenchCmd {
    /// broker URL (default ws://127.0.0.1:7900/ws)
    #[argh(option, default = "String::from(\"ws://127.0.0.1:7900/ws\")")]
    broker: String,
    /// the broker's admin token (a throw-away mesh is created); default: as `create` finds it
    #[argh(option)]
    admin_token: Option<String>,
    /// file holding the broker's admin token
    #[argh(option)]
    admin_token_file: Option<std::path::PathBuf>,
    /// PEM file of the CA (or self-signed certificate) a wss:// broker's certificate must
    /// chain to (also $CLAUDEMESH_CA_FILE)
    #[argh(option)]
    ca_file: Option<std::path::PathBuf>,
    /// peers to connect (default 10)
    #[argh(option, default = "10")]
    peers: usize,
    /// messages each peer sends (default 100)
    #[argh(option, default = "100")]
    messages: usize,
    /// total messages per second across all peers (default: as fast as possible)
    #[argh(option)]
    rate: Option<f64>,
    /// message body size in bytes before encryption (default 128)
    #[argh(option, default = "128")]
    size: usize,
    /// print one JSON object
    #[argh(switch)]
    json: bool,
    /// frames in MessagePack (binary) instead of JSON text: the broker answers each
    /// connection in its hello's encoding
    #[argh(switch)]
    msgpack: bool,
    /// worker threads of the load generator (default 1: a broker on the same machine keeps
    /// the other cores; raise it against a broker elsewhere)
    #[argh(option, default = "1")]
    pub threads: usize,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub peers: usize,
    /// The frames' encoding: `json` or `msgpack`.
    pub encoding: &'static str,
    /// The load generator's worker threads (`--threads`).
    pub threads: usize,
    pub messages: usize,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// How long connecting every peer took (hello to `hello_ack`, 50 at a time).
    pub connect_s: f64,
    pub duration_s: f64,
    pub throughput_msgs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_mb: Option<f64>,
}

#[derive(Default)]
struct Tally {
    /// Held for a few map operations, never across an await: a plain lock, one a message
    /// each side.
    ledger: std::sync::Mutex<Ledger>,
    acked: AtomicU64,
    refused: AtomicU64,
    delivered: AtomicU64,
    duplicates: AtomicU64,
}

#[derive(Default)]
struct Ledger {
    /// client message id → when it was sent, until it arrives.
    sent_at: HashMap<String, Instant>,
    /// client message ids that arrived at least once.
    arrived: HashMap<String, u32>,
    latencies_us: Vec<u64>,
}

impl Tally {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl BenchCmd {
    pub async fn run(self) -> CliResult {
        if self.peers < 2 {
            return Err(CliError::Usage("--peers must be at least 2".into()));
        }
        if self.messages == 0 {
            return Err(CliError::Usage("--messages must be at least 1".into()));
        }
        let token = super::admin_token::find(
            self.admin_token.as_deref(),
            self.admin_token_file.as_deref(),
            &self.broker,
        )?;
        let trust = Trust::resolve(self.ca_file.as_deref(), None);
        let entries = setup_mesh(&self.broker, token.as_deref(), self.peers, &trust).await?;
        if !self.json {
            output::error(&format!("connecting {} peers…", self.peers));
        }
        let report = run_load(
            &self.broker,
            entries,
            self.messages,
            self.rate,
            self.size,
            if self.msgpack {
                Encoding::MsgPack
            } else {
                Encoding::Json
            },
            !self.json,
        )
        .await?;
        if self.json {
            print_json(&report);
        } else {
            outln!(
                "{} peers × {} messages: sent {} delivered {} lost {} duplicates {}",
                report.peers,
                report.messages,
                report.sent,
                report.delivered,
                report.lost,
                report.duplicates
            );
            outln!(
                "{} peers connected in {:.2} s; load generator on {} thread(s)",
                report.peers,
                report.connect_s,
                report.threads
            );
            outln!(
                "{:.0} msg/s over {:.2} s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
                report.throughput_msgs_per_s,
                report.duration_s,
                report.p50_ms,
                report.p99_ms,
                report.max_ms,
                report
                    .broker_rss_mb
                    .map(|m| format!("; broker RSS {m:.1} MB"))
                    .unwrap_or_default()
            );
        }
        if report.lost > 0 || report.duplicates > 0 {
            return Err(CliError::failed(format!(
                "{} lost and {} duplicated messages",
                report.lost, report.duplicates
            )));
        }
        Ok(())
    }
}

/// Creates a mesh and `n` members in it; returns their (in-memory) config entries.
async fn setup_mesh(
    broker: &str,
    token: Option<&str>,
    n: usize,
    trust: &Trust,
) -> Result<Vec<MeshEntry>, CliError> {
    let base = http_base(broker);
    let owner = SignKeyPair::generate();
    let first = SignKeyPair::generate();
    let root: [u8; 32] = crypto::random_bytes();
    let body = json!({
        "name": format!("bench-{}", ids::base62(6)),
        "owner_pubkey": owner.public_hex(),
        "member_pubkey": first.public_hex(),
        "root_key_check": root_key_check(&root),
        "display_name": "bench-0",
    });
    let headers: Vec<(&str, String)> = token
        .map(|t| vec![("authorization", format!("Bearer {t}"))])
        .unwrap_or_default();
    let resp = http::request_with(
        "POST",
        &format!("{base}/meshes"),
        &headers,
        Some(body.to_string().into_bytes()),
        trust,
    )
    .await?;
    if !resp.is_success() {
        return Err(CliError::failed(format!(
            "cannot create the bench mesh: {} (pass --admin-token or --admin-token-file: the token is in admin.token in the broker's data directory; or run the broker with --open)",
            resp.into_error()
        )));
    }
    let v = resp.json();
    let mesh_id = v["meshId"].as_str().unwrap_or_default().to_string();
    let slug = v["slug"].as_str().unwrap_or_default().to_string();
    let entry = |member_id: String, keys: &SignKeyPair, name: String| MeshEntry {
        mesh_id: mesh_id.clone(),
        slug: slug.clone(),
        name: slug.clone(),
        member_id,
        display_name: name,
        role: "member".into(),
        broker_url: ws_url(broker),
        member_pubkey: keys.public_hex(),
        member_secret_key: keys.secret_hex(),
        root_key: encode_root_key(&root),
        owner_pubkey: owner.public_hex(),
        owner_secret_key: None,
        joined_at: time::iso(time::now_ms()),
        ca_file: trust.remembered(),
        key_epoch: 0,
        old_root_keys: Vec::new(),
        admin_list_version: 0,
    };
    let owner_entry = entry(
        v["memberId"].as_str().unwrap_or_default().to_string(),
        &first,
        "bench-0".into(),
    );
    // One invite for everyone else, signed by the owner key.
    let admin = MeshClient::connect(ConnectOptions::new(
        owner_entry.clone(),
        bench_peer("setup"),
    ))
    .await?;
    let expires = time::now_ms() / 1000 + 3600;
    let invite = admin
        .create_invite(&owner, "member", (n - 1) as u32, expires)
        .await;
    admin.close().await;
    let code = invite?.code;
    let mut entries = vec![owner_entry];
    for i in 1..n {
        let keys = SignKeyPair::generate();
        let x = BoxKeyPair::generate();
        let resp =
            http::claim_invite_with(&base, &code, &x.public, &format!("bench-{i}"), &keys, trust)
                .await?;
        if !resp.is_success() {
            return Err(resp.into_error().into());
        }
        let member_id = resp.json()["member_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        entries.push(entry(member_id, &keys, format!("bench-{i}")));
    }
    Ok(entries)
}

fn bench_peer(name: &str) -> PeerInfo {
    PeerInfo {
        display_name: Some(name.into()),
        session_id: format!("bench-{name}"),
        pid: std::process::id(),
        peer_type: Some("connector".into()),
        channel: Some("bench".into()),
        // Load as agent sessions make it (presence, events), not as tool connections.
        peer_role: Some("session".into()),
        ..Default::default()
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn broker_rss_mb(broker: &str, trust: &Trust) -> Option<f64> {
    let url = format!("{}/metrics", http_base(broker));
    let resp = http::request_with("GET", &url, &[], None, trust)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("claudemesh_process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|b| *b > 0.0)
        .map(|b| b / (1024.0 * 1024.0))
}

/// Why peer number `connected + 1` of `n` could not connect; when the broker refused it for
/// capacity (a mesh or per-IP cap, or a 429), says which broker flags let `n` peers in.
fn refused_peer(e: crate::client::ClientError, connected: usize, n: usize) -> CliError {
    let text = e.to_string();
    if connected > 0
        && (text.contains("capacity") || text.contains("429") || text.contains("maximum"))
    {
        return CliError::failed(format!(
            "{text}\n{connected} of {n} peers connected: start the broker with \
             --max-connections-per-mesh {n} --max-connections-per-ip {n} (or more) for a bench \
             of {n} peers"
        ));
    }
    e.into()
}

/// Connects every peer, runs the sends, waits for the deliveries, and measures.
pub async fn run_load(
    broker: &str,
    entries: Vec<MeshEntry>,
    messages: usize,
    rate: Option<f64>,
    size: usize,
    encoding: Encoding,
    progress: bool,
) -> Result<Report, CliError> {
    let n = entries.len();
    let trust = Trust::resolve(None, entries.first().and_then(|e| e.ca_file.as_deref()));
    let mut clients = Vec::with_capacity(n);
    let connecting = Instant::now();
    for chunk in entries.chunks(50) {
        let connecting: Vec<_> = chunk
            .iter()
            .map(|e| {
                MeshClient::connect(ConnectOptions {
                    encoding,
                    ..ConnectOptions::new(e.clone(), bench_peer(&e.display_name))
                })
            })
            .collect();
        for c in futures_util::future::join_all(connecting).await {
            clients.push(Arc::new(c.map_err(|e| refused_peer(e, clients.len(), n))?));
        }
    }
    let connect_s = connecting.elapsed().as_secs_f64();
    let tally = Arc::new(Tally::default());
    let total = (n * messages) as u64;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} delivered {per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    // Receivers: record, acknowledge.
    let mut receivers = Vec::new();
    for client in &clients {
        let client = client.clone();
        let tally = tally.clone();
        receivers.push(tokio::spawn(async move {
            while let Some(frame) = client.next_push().await {
                let ServerMessage::Push(push) = frame else {
                    continue;
                };
                // System pushes (joins, leaves) are ephemeral and need no acknowledgement
                // (PROTOCOL.md §4.3); stored messages do.
                if push.subtype.as_deref() == Some("system") {
                    continue;
                }
                let _ = client.ack(&push.message_id);
                let Some(cmid) = push.client_message_id else {
                    continue;
                };
                let now = Instant::now();
                let first = {
                    let mut ledger = tally.ledger();
                    let count = ledger.arrived.entry(cmid.clone()).or_insert(0);
                    *count += 1;
                    let first = *count == 1;
                    if first && let Some(at) = ledger.sent_at.remove(&cmid) {
                        let waited = now.duration_since(at).as_micros() as u64;
                        ledger.latencies_us.push(waited);
                    }
                    first
                };
                if !first {
                    tally.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                tally.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let per_peer_interval = rate.map(|r| Duration::from_secs_f64(n as f64 / r.max(0.001)));
    let mut senders = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        let tally = tally.clone();
        let to = clients[(i + 1) % n].entry().member_pubkey.clone();
        let body = crypto::random_vec(size);
        senders.push(tokio::spawn(async move {
            // Encrypted once per peer, as a real client would for each message.
            let nonce: [u8; 24] = crypto::random_bytes();
            let their = crate::protocol::Pubkey::parse(&to)
                .ok()
                .and_then(|k| crypto::ed25519_pk_to_x25519(&k.0).ok());
            let mine = client.speaking_keys().map(|k| k.to_x25519());
            let (Some(their), Ok(mine)) = (their, mine) else {
                return;
            };
            let Ok(ct) = crypto::box_easy(&body, &nonce, &their, &mine.secret) else {
                return;
            };
            let (nonce, ct) = (STANDARD.encode(nonce), STANDARD.encode(ct));
            // Each send is queued for the broker when made (`request_now`); at most WINDOW
            // wait for their acknowledgements.
            let mut inflight = futures_util::stream::FuturesUnordered::new();
            let count = |answer: Result<ServerMessage, _>| match answer {
                Ok(ServerMessage::Ack(a)) if a.queued == Some(true) => {
                    tally.acked.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                }
            };
            // Peers take turns: peer i's first send comes i/n of an interval after the
            // start, so a fixed total rate is one message every 1/rate seconds, not n at once.
            let mut ticker = per_peer_interval.map(|d| {
                let first = started + d.mul_f64(i as f64 / n as f64);
                let mut t = tokio::time::interval_at(first.into(), d);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            for seq in 0..messages {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                while inflight.len() >= WINDOW {
                    if let Some(answer) = inflight.next().await {
                        count(answer);
                    }
                }
                let cmid = format!("b{i}-{seq}");
                tally.ledger().sent_at.insert(cmid.clone(), Instant::now());
                let frame = ClientMessage::Send(Box::new(SendMessage {
                    id: Some(cmid.clone()),
                    target_spec: to.clone(),
                    priority: "now".into(),
                    nonce: nonce.clone(),
                    ciphertext: ct.clone(),
                    client_message_id: Some(cmid),
                    ..Default::default()
                }));
                inflight.push(client.request_now(frame, REQUEST_TIMEOUT));
            }
            while let Some(answer) = inflight.next().await {
                count(answer);
            }
        }));
    }
    for s in senders {
        let _ = s.await;
    }
    // Wait for every acknowledged message, or a stall.
    let mut last = (0, Instant::now());
    loop {
        let delivered = tally.delivered.load(Ordering::Relaxed);
        if let Some(b) = &bar {
            b.set_position(delivered);
        }
        if delivered >= tally.acked.load(Ordering::Relaxed) {
            break;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = broker_rss_mb(broker, &trust).await;
    for c in clients {
        if let Ok(c) = Arc::try_unwrap(c) {
            c.close().await;
        }
    }
    for r in receivers {
        r.abort();
    }
    let mut lat = tally.ledger().latencies_us.clone();
    lat.sort_unstable();
    let sent = tally.acked.load(Ordering::Relaxed);
    let delivered = tally.delivered.load(Ordering::Relaxed);
    Ok(Report {
        encoding: match encoding {
            Encoding::Json => "json",
            Encoding::MsgPack => "msgpack",
        },
        threads: tokio::runtime::Handle::current().metrics().num_workers(),
        peers: n,
        messages,
        sent,
        delivered,
        lost: sent.saturating_sub(delivered) + tally.refused.load(Ordering::Relaxed),
        duplicates: tally.duplicates.load(Ordering::Relaxed),
        connect_s,
        duration_s: elapsed,
        throughput_msgs_per_s: delivered as f64 / elapsed.max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map_or(0.0, |v| *v as f64 / 1000.0),
        broker_rss_mb: rss,
    })
}
