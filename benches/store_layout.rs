//! Message storage layouts without the broker: what one group commit costs the store writer —
//! CPU, bytes written, write calls, commit time, file size — for claudemesh's message-queue
//! tables as of schema 3 (src/store/records.rs, src/store/queue/mod.rs) and for the candidate
//! layouts of docs/store-layout.md (issue 14), in plain redb with the broker's settings (64 MiB
//! cache, `Durability::Immediate` on every commit) or, for layout B, a file and `fdatasync`.
//!
//! N messages (default 100 000) of RECORD bytes (700) to RECIPIENTS recipients (100), in commits
//! of GROUP operations (1 000): GROUP/2 sends and the acknowledgements of the messages sent LAG
//! commits earlier (8). Each knob is read from the environment, e.g. `LAG=32`.
//!
//! `cargo bench --bench store_layout` runs three rounds of every variant, alternating, in a
//! temporary directory (TMPDIR: it must be a disk, not tmpfs) and prints a line per run with the
//! load average before it, then min / median / max per variant; `-- VARIANT...` runs only those.
//! Writer CPU is the thread's own clock (CLOCK_THREAD_CPUTIME_ID), split into applying the
//! operations and committing; bytes are `wchar` and `write_bytes` of /proc/self/io, write calls
//! its `syscw`. Nothing here asserts a timing, only that every message is gone at the end.
//!
//! Variants:
//! - `today`: schema 3's tables and operations (send: MESSAGES, EXPIRY, QUEUE, QUEUE_COUNTS,
//!   DELIVERIES, a CLIENT_KEYS lookup; ack: DELIVERIES, QUEUE, QUEUE_COUNTS, a WAITING lookup,
//!   MESSAGES and EXPIRY removed, DELIVERED inserted; a 1/64 slice of CLIENT_KEYS written behind
//!   each commit; META's queue_seq).
//! - `proposed` (layout A): `today` without QUEUE, DELIVERIES, QUEUE_COUNTS or WAITING rows; each
//!   recipient's queue is in memory (rebuilt from MESSAGES at open).
//! - `random` / `seq`: one table keyed by a random 16-byte key / a time-ordered u64; an ack
//!   removes the row.
//! - `mark` (layout C): u64 → record; an ack writes its recipient's watermark, and everything
//!   below the lowest unacknowledged sequence number is dropped as a range each commit.
//!   `mark-status` adds a 16-byte status row per ack (what message_status needs).
//! - `log` / `log-pre` (layout B): an append-only file, one write and `fdatasync` a commit;
//!   `log-pre` writes into a file zeroed beforehand. The log is read back at the end, as a start
//!   would rebuild its index.
//! - `today-dk`: `today` with DELIVERIES keyed (mesh, id, rkey), so its inserts follow time order;
//!   `today-dk-nocount` also keeps each recipient's count in memory instead of QUEUE_COUNTS;
//!   `today-dk-gq` also keys QUEUE by the global seq alone, each recipient's order in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table,
    TableDefinition, WriteTransaction,
};

type R<T> = Result<T, Box<dyn std::error::Error>>;

// The broker's tables (src/store/records.rs, schema 3).
const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
const QUEUE: TableDefinition<(&str, u64), &str> = TableDefinition::new("queue");
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("queue_counts");
const DELIVERIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("deliveries");
const DELIVERED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("delivered");
const WAITING: TableDefinition<(&str, &str), u32> = TableDefinition::new("waiting");
const EXPIRY: TableDefinition<(u64, &str, &str), ()> = TableDefinition::new("expiry");
const CLIENT_KEYS: TableDefinition<[u8; 16], &str> = TableDefinition::new("client_keys");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
// `today-dk*`: DELIVERIES keyed (mesh, id, rkey); QUEUE keyed by the global seq.
const DELIVERIES_DK: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("deliveries_dk");
const GQUEUE: TableDefinition<u64, (&str, &str)> = TableDefinition::new("gqueue");
// `random`, `seq`, `mark`, `mark-status`.
const M16: TableDefinition<[u8; 16], &[u8]> = TableDefinition::new("m16");
const MSEQ: TableDefinition<u64, &[u8]> = TableDefinition::new("mseq");
const MARKS: TableDefinition<u32, u64> = TableDefinition::new("marks");
const STATUS: TableDefinition<u64, &[u8]> = TableDefinition::new("status");

/// A Delivery { seq, mesh_id, delivered_at_ms: None } in named MessagePack: ~50 bytes.
const DELIVERY: [u8; 50] = [7; 50];
/// A DeliveredRecord (one recipient, by position): ~175 bytes (BENCHMARKS.md, round 2).
const DELIVERED_RECORD: [u8; 175] = [9; 175];
/// The first message's clock; expiry is 7 days later.
const START_MS: u64 = 1_800_000_000_000;

/// Schema 3 (`today`) and the steps from it towards layout A (`today-dk*`).
#[derive(Clone, Copy)]
struct TodayLayout {
    /// DELIVERIES keyed (mesh, id, rkey) instead of (rkey, id).
    deliveries_by_message: bool,
    /// QUEUE_COUNTS as today; otherwise each recipient's count is in memory.
    counts_in_db: bool,
    /// QUEUE keyed by the global seq (seq → (rkey, id)), each recipient's order in memory.
    global_queue: bool,
}

#[derive(Clone, Copy)]
enum Variant {
    Today(TodayLayout),
    Proposed,
    OneTable { random: bool },
    Mark { status: bool },
    Log { prefilled: bool },
}

const fn today(deliveries_by_message: bool, counts_in_db: bool, global_queue: bool) -> Variant {
    Variant::Today(TodayLayout {
        deliveries_by_message,
        counts_in_db,
        global_queue,
    })
}

const VARIANTS: [(&str, Variant); 11] = [
    ("today", today(false, true, false)),
    ("proposed", Variant::Proposed),
    ("random", Variant::OneTable { random: true }),
    ("seq", Variant::OneTable { random: false }),
    ("mark", Variant::Mark { status: false }),
    ("mark-status", Variant::Mark { status: true }),
    ("log", Variant::Log { prefilled: false }),
    ("log-pre", Variant::Log { prefilled: true }),
    ("today-dk", today(true, true, false)),
    ("today-dk-nocount", today(true, false, false)),
    ("today-dk-gq", today(true, false, true)),
];

#[path = "common/proc.rs"]
mod proc;
#[path = "common/rng.rs"]
mod rng;
use proc::{load_average, proc_io};
use rng::Rng;

impl Rng {
    fn key16(&mut self) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&self.next().to_le_bytes());
        k[8..].copy_from_slice(&self.next().to_le_bytes());
        k
    }
    fn id22(&mut self) -> String {
        const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..22)
            .map(|_| B62[(self.next() % 62) as usize] as char)
            .collect()
    }
}

struct Msg {
    seq: u64,
    rcpt: u32,
    rand16: [u8; 16],
    /// Its client_message_id's key in CLIENT_KEYS.
    cid: [u8; 16],
    /// Time-ordered and 22 characters, as `ids::new_id` makes.
    id: String,
    expires: u64,
}

/// One commit's work.
struct Batch<'a> {
    sends: &'a [Msg],
    acks: &'a [Msg],
    record: &'a [u8],
    next_seq: u64,
}

struct Params {
    n: u64,
    group: usize,
    lag: usize,
    recipients: u32,
    record: usize,
}

impl Params {
    fn from_env(default_n: u64) -> Params {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Params {
            n: var("N", default_n),
            group: var("GROUP", 1000) as usize,
            lag: var("LAG", 8) as usize,
            recipients: var("RECIPIENTS", 100) as u32,
            record: var("RECORD", 700) as usize,
        }
    }
}

/// What the broker, or a layout, keeps in memory.
struct State {
    mesh: String,
    /// Each recipient's queue key, `m/{mesh}/{member}`.
    rkeys: Vec<String>,
    /// client_keys entries not yet written behind; their slice is the first byte / 4.
    pending: BTreeMap<[u8; 16], String>,
    next_slice: usize,
    /// Per recipient, its unacknowledged sequence numbers in order, where not in redb.
    unacked: Vec<VecDeque<u64>>,
    /// Per recipient, its queue length, where not in QUEUE_COUNTS.
    counts: Vec<u64>,
    /// `mark`: every sequence number below this has been dropped.
    reclaimed: u64,
}

/// The thread's own CPU clock in µs (ns precision; getrusage's user/system split is scaled).
fn thread_cpu_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn queue_len(counts: &Table<&str, u64>, queue: &Table<(&str, u64), &str>, key: &str) -> R<u64> {
    if let Some(n) = counts.get(key)? {
        return Ok(n.value());
    }
    Ok(queue.range((key, 0u64)..=(key, u64::MAX))?.count() as u64)
}

fn bump(counts: &mut Table<&str, u64>, key: &str, before: u64, delta: i64) -> R<()> {
    match before.saturating_add_signed(delta) {
        0 => counts.remove(key)?,
        n => counts.insert(key, n)?,
    };
    Ok(())
}

/// A send's MESSAGES and EXPIRY rows (`today` and `proposed`).
fn store_message(
    messages: &mut Table<(&str, &str), &[u8]>,
    expiry: &mut Table<(u64, &str, &str), ()>,
    mesh: &str,
    m: &Msg,
    record: &[u8],
) -> R<()> {
    messages.insert((mesh, m.id.as_str()), record)?;
    expiry.insert((m.expires, mesh, m.id.as_str()), ())?;
    Ok(())
}

/// An acknowledged message leaves MESSAGES and EXPIRY; DELIVERED keeps its record.
fn retire_message(
    messages: &mut Table<(&str, &str), &[u8]>,
    expiry: &mut Table<(u64, &str, &str), ()>,
    delivered: &mut Table<(&str, &str), &[u8]>,
    mesh: &str,
    m: &Msg,
) -> R<()> {
    assert!(messages.remove((mesh, m.id.as_str()))?.is_some());
    expiry.remove((m.expires, mesh, m.id.as_str()))?;
    delivered.insert((mesh, m.id.as_str()), DELIVERED_RECORD.as_slice())?;
    Ok(())
}

/// Drops `seq` from a recipient's in-memory queue.
fn forget(queue: &mut VecDeque<u64>, seq: u64) {
    if let Some(at) = queue.iter().position(|s| *s == seq) {
        queue.remove(at);
    }
}

/// client_keys::write_slice: one slice of 64 (first byte / 4) in turn, and META's bound.
fn write_slice(
    st: &mut State,
    client_keys: &mut Table<[u8; 16], &str>,
    meta: &mut Table<&str, &[u8]>,
) -> R<()> {
    let mut slice_keys = Vec::new();
    for k in 0..64 {
        let s = (st.next_slice + k) % 64;
        let mut from = [0u8; 16];
        from[0] = (s * 4) as u8;
        slice_keys = st
            .pending
            .range(from..)
            .take_while(|(k, _)| (k[0] as usize) / 4 == s)
            .map(|(k, _)| *k)
            .collect();
        if !slice_keys.is_empty() {
            st.next_slice = (s + 1) % 64;
            break;
        }
    }
    for k in slice_keys {
        let id = st.pending.remove(&k).expect("a pending key");
        client_keys.insert(k, id.as_str())?;
    }
    let oldest = st.pending.values().min().cloned().unwrap_or_default();
    meta.insert("client_keys_unwritten_from", oldest.as_bytes())?;
    Ok(())
}

/// DELIVERIES by recipient (schema 3) or by message (`today-dk*`).
enum Deliveries<'t> {
    ByRecipient(Table<'t, (&'static str, &'static str), &'static [u8]>),
    ByMessage(Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>),
}

impl Deliveries<'_> {
    fn insert(&mut self, mesh: &str, id: &str, rkey: &str) -> R<()> {
        match self {
            Self::ByRecipient(t) => t.insert((rkey, id), DELIVERY.as_slice())?,
            Self::ByMessage(t) => t.insert((mesh, id, rkey), DELIVERY.as_slice())?,
        };
        Ok(())
    }
    fn remove(&mut self, mesh: &str, id: &str, rkey: &str) -> R<bool> {
        Ok(match self {
            Self::ByRecipient(t) => t.remove((rkey, id))?.is_some(),
            Self::ByMessage(t) => t.remove((mesh, id, rkey))?.is_some(),
        })
    }
}

/// `today` and `today-dk*`: the broker's operations as in src/store/queue/mod.rs, in its order
/// (sends first here; they interleave with acks in a real batch).
fn apply_today(tx: &WriteTransaction, st: &mut State, l: TodayLayout, b: &Batch) -> R<()> {
    let mut messages = tx.open_table(MESSAGES)?;
    let mut queue = tx.open_table(QUEUE)?;
    // Every `today-dk*` variant opens GQUEUE, used or not, as the experiment did.
    let mut gqueue = if l.deliveries_by_message {
        Some(tx.open_table(GQUEUE)?)
    } else {
        None
    };
    let mut counts = tx.open_table(COUNTS)?;
    let mut deliveries = if l.deliveries_by_message {
        Deliveries::ByMessage(tx.open_table(DELIVERIES_DK)?)
    } else {
        Deliveries::ByRecipient(tx.open_table(DELIVERIES)?)
    };
    let mut delivered = tx.open_table(DELIVERED)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    let waiting = tx.open_table(WAITING)?;
    let mut client_keys = tx.open_table(CLIENT_KEYS)?;
    let mut meta = tx.open_table(META)?;
    let mesh = st.mesh.as_str();
    for m in b.sends {
        let r = m.rcpt as usize;
        let rkey = st.rkeys[r].as_str();
        // first_sent: the pending entries, then the index (a miss).
        if !st.pending.contains_key(&m.cid) {
            client_keys.get(m.cid)?;
        }
        let len = if l.counts_in_db {
            queue_len(&counts, &queue, rkey)?
        } else {
            st.counts[r]
        };
        st.pending.insert(m.cid, m.id.clone());
        store_message(&mut messages, &mut expiry, mesh, m, b.record)?;
        match gqueue.as_mut().filter(|_| l.global_queue) {
            Some(gqueue) => {
                gqueue.insert(m.seq, (rkey, m.id.as_str()))?;
                st.unacked[r].push_back(m.seq);
            }
            None => {
                queue.insert((rkey, m.seq), m.id.as_str())?;
            }
        }
        if l.counts_in_db {
            let before = counts.get(rkey)?.map_or(len, |v| v.value());
            bump(&mut counts, rkey, before, 1)?;
        } else {
            st.counts[r] = len + 1;
        }
        deliveries.insert(mesh, &m.id, rkey)?;
    }
    for m in b.acks {
        let r = m.rcpt as usize;
        let rkey = st.rkeys[r].as_str();
        assert!(deliveries.remove(mesh, &m.id, rkey)?);
        match gqueue.as_mut().filter(|_| l.global_queue) {
            Some(gqueue) => {
                forget(&mut st.unacked[r], m.seq);
                if gqueue.remove(m.seq)?.is_some() {
                    st.counts[r] -= 1;
                }
            }
            None if l.counts_in_db => {
                let before = queue_len(&counts, &queue, rkey)?;
                if queue.remove((rkey, m.seq))?.is_some() {
                    bump(&mut counts, rkey, before, -1)?;
                }
            }
            None => {
                if queue.remove((rkey, m.seq))?.is_some() {
                    st.counts[r] -= 1;
                }
            }
        }
        waiting.get((mesh, m.id.as_str()))?;
        retire_message(&mut messages, &mut expiry, &mut delivered, mesh, m)?;
    }
    meta.insert("queue_seq", b.next_seq.to_le_bytes().as_slice())?;
    write_slice(st, &mut client_keys, &mut meta)
}

/// Layout A: MESSAGES, EXPIRY, DELIVERED, CLIENT_KEYS and META as today (time-ordered keys);
/// each recipient's queue and count in memory.
fn apply_proposed(tx: &WriteTransaction, st: &mut State, b: &Batch) -> R<()> {
    let mut messages = tx.open_table(MESSAGES)?;
    let mut delivered = tx.open_table(DELIVERED)?;
    let mut expiry = tx.open_table(EXPIRY)?;
    let mut client_keys = tx.open_table(CLIENT_KEYS)?;
    let mut meta = tx.open_table(META)?;
    let mesh = st.mesh.as_str();
    for m in b.sends {
        if !st.pending.contains_key(&m.cid) {
            client_keys.get(m.cid)?;
        }
        st.pending.insert(m.cid, m.id.clone());
        store_message(&mut messages, &mut expiry, mesh, m, b.record)?;
        st.unacked[m.rcpt as usize].push_back(m.seq);
    }
    for m in b.acks {
        forget(&mut st.unacked[m.rcpt as usize], m.seq);
        retire_message(&mut messages, &mut expiry, &mut delivered, mesh, m)?;
    }
    meta.insert("queue_seq", b.next_seq.to_le_bytes().as_slice())?;
    write_slice(st, &mut client_keys, &mut meta)
}

/// `random` / `seq`: one table, a row per message, removed on ack.
fn apply_one_table(tx: &WriteTransaction, random: bool, b: &Batch) -> R<()> {
    if random {
        let mut t = tx.open_table(M16)?;
        for m in b.sends {
            t.insert(m.rand16, b.record)?;
        }
        for m in b.acks {
            assert!(t.remove(m.rand16)?.is_some());
        }
    } else {
        let mut t = tx.open_table(MSEQ)?;
        for m in b.sends {
            t.insert(m.seq, b.record)?;
        }
        for m in b.acks {
            assert!(t.remove(m.seq)?.is_some());
        }
    }
    Ok(())
}

/// Layout C: per-recipient watermarks; records below the lowest one dropped as a range.
fn apply_mark(tx: &WriteTransaction, st: &mut State, status: bool, b: &Batch) -> R<()> {
    let mut t = tx.open_table(MSEQ)?;
    let mut marks = tx.open_table(MARKS)?;
    let mut stat = tx.open_table(STATUS)?;
    for m in b.sends {
        t.insert(m.seq, b.record)?;
        st.unacked[m.rcpt as usize].push_back(m.seq);
    }
    for m in b.acks {
        // Acks come in each recipient's FIFO order, so the watermark is the acked seq.
        assert_eq!(st.unacked[m.rcpt as usize].pop_front(), Some(m.seq));
        marks.insert(m.rcpt, m.seq)?;
        if status {
            let mut row = [0u8; 16];
            row[..4].copy_from_slice(&m.rcpt.to_le_bytes());
            row[8..].copy_from_slice(&m.expires.to_le_bytes());
            stat.insert(m.seq, row.as_slice())?;
        }
    }
    let low = st.unacked.iter().filter_map(|q| q.front().copied()).min();
    let low = low.unwrap_or(b.next_seq);
    if low > st.reclaimed {
        t.retain_in(st.reclaimed..low, |_, _| false)?;
        st.reclaimed = low;
    }
    Ok(())
}

/// Layout B's segment file, written up to `at`.
struct Log {
    file: File,
    at: u64,
}

/// Records (24-byte header + body) and 24-byte ack entries in one write.
fn apply_log(log: &mut Log, b: &Batch, now: u64) -> R<()> {
    let (sends, acks, rec) = (b.sends, b.acks, b.record);
    let mut buf = Vec::with_capacity(sends.len() * (rec.len() + 24) + acks.len() * 24);
    for m in sends {
        buf.push(1u8);
        buf.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        buf.extend_from_slice(&m.seq.to_le_bytes());
        buf.extend_from_slice(&m.rcpt.to_le_bytes());
        buf.extend_from_slice(&[0u8; 7]);
        buf.extend_from_slice(rec);
    }
    for m in acks {
        buf.push(2u8);
        buf.extend_from_slice(&[0u8; 3]);
        buf.extend_from_slice(&m.rcpt.to_le_bytes());
        buf.extend_from_slice(&m.seq.to_le_bytes());
        buf.extend_from_slice(&now.to_le_bytes());
    }
    log.file.seek(SeekFrom::Start(log.at))?;
    log.file.write_all(&buf)?;
    log.at += buf.len() as u64;
    Ok(())
}

/// Reads a log back as a start would: every record's place, minus what was acknowledged.
/// Returns the records left and the seconds it took.
fn rebuild_log(path: &Path, end: u64) -> R<(u64, f64)> {
    let t0 = Instant::now();
    let mut bytes = Vec::new();
    File::open(path)?.take(end).read_to_end(&mut bytes)?;
    let mut live: HashMap<u64, u64> = HashMap::new();
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            1 => {
                let len = u32::from_le_bytes(bytes[i + 1..i + 5].try_into()?) as usize;
                let seq = u64::from_le_bytes(bytes[i + 5..i + 13].try_into()?);
                live.insert(seq, i as u64);
                i += 24 + len;
            }
            2 => {
                let seq = u64::from_le_bytes(bytes[i + 8..i + 16].try_into()?);
                live.remove(&seq);
                i += 24;
            }
            _ => break,
        }
    }
    Ok((live.len() as u64, t0.elapsed().as_secs_f64()))
}

enum Backend {
    Db(Database),
    Log(Log),
}

fn open_backend(variant: Variant, path: &Path, p: &Params) -> R<Backend> {
    if let Variant::Log { prefilled } = variant {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        if prefilled {
            // Zeroed and synced before the measurement: appends then change no file size.
            let zeros = vec![0u8; 1 << 20];
            let want = p.n * (p.record as u64 + 48) + (1 << 20);
            let mut done = 0;
            while done < want {
                (&file).write_all(&zeros)?;
                done += zeros.len() as u64;
            }
            file.sync_all()?;
        }
        return Ok(Backend::Log(Log { file, at: 0 }));
    }
    // The broker's settings (src/store/writer.rs: open_database).
    let db = Database::builder().set_cache_size(64 << 20).create(path)?;
    // Tables exist before the clock starts (the broker creates them at open); the `today-dk*`
    // tables only for those variants, so the others' files hold what they did.
    let tx = db.begin_write()?;
    tx.open_table(M16)?;
    tx.open_table(MSEQ)?;
    tx.open_table(MARKS)?;
    tx.open_table(STATUS)?;
    tx.open_table(MESSAGES)?;
    tx.open_table(QUEUE)?;
    tx.open_table(COUNTS)?;
    tx.open_table(DELIVERIES)?;
    tx.open_table(DELIVERED)?;
    tx.open_table(WAITING)?;
    tx.open_table(EXPIRY)?;
    tx.open_table(CLIENT_KEYS)?;
    tx.open_table(META)?;
    if let Variant::Today(l) = variant
        && l.deliveries_by_message
    {
        tx.open_table(DELIVERIES_DK)?;
        tx.open_table(GQUEUE)?;
    }
    tx.commit()?;
    Ok(Backend::Db(db))
}

/// Rows the variant should have removed by the end: none, for every variant.
fn rows_left(db: &Database, variant: Variant) -> R<u64> {
    let rt = db.begin_read()?;
    Ok(match variant {
        Variant::Today(l) => {
            let mut n = rt.open_table(MESSAGES)?.len()?
                + rt.open_table(QUEUE)?.len()?
                + rt.open_table(COUNTS)?.len()?;
            if l.deliveries_by_message {
                n += rt.open_table(DELIVERIES_DK)?.len()? + rt.open_table(GQUEUE)?.len()?;
            } else {
                n += rt.open_table(DELIVERIES)?.len()?;
            }
            n
        }
        Variant::Proposed => rt.open_table(MESSAGES)?.len()?,
        Variant::OneTable { random: true } => rt.open_table(M16)?.len()?,
        _ => rt.open_table(MSEQ)?.len()?,
    })
}

/// One run: the load average before it, and its measurements (name, value, decimals): CPU and
/// bytes per message, write calls per commit.
struct Run {
    load: String,
    values: Vec<(&'static str, f64, usize)>,
}

impl Run {
    fn get(&self, key: &str) -> (f64, usize) {
        let (_, value, decimals) = self
            .values
            .iter()
            .find(|v| v.0 == key)
            .expect("a measurement");
        (*value, *decimals)
    }
}

fn run(name: &str, variant: Variant, p: &Params, dir: &Path) -> R<Run> {
    let load = load_average();
    let path = dir.join(name);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let record: Vec<u8> = (0..p.record).map(|_| rng.next() as u8).collect();
    let mut backend = open_backend(variant, &path, p)?;
    let mesh = rng.id22();
    let recipients = p.recipients as usize;
    let mut st = State {
        rkeys: (0..recipients)
            .map(|_| format!("m/{mesh}/{}", rng.id22()))
            .collect(),
        mesh,
        pending: BTreeMap::new(),
        next_slice: 0,
        unacked: vec![VecDeque::new(); recipients],
        counts: vec![0; recipients],
        reclaimed: 0,
    };
    let mut in_flight: VecDeque<Vec<Msg>> = VecDeque::new();
    let mut next_seq = 1u64;
    let (mut walls, mut applying, mut committing) = (Vec::new(), 0u64, 0u64);
    let io0 = proc_io();
    let cpu0 = thread_cpu_us();
    let started = Instant::now();
    loop {
        let mut sends = Vec::new();
        while sends.len() < p.group / 2 && next_seq <= p.n {
            sends.push(Msg {
                seq: next_seq,
                rcpt: (rng.next() % p.recipients as u64) as u32,
                rand16: rng.key16(),
                cid: rng.key16(),
                id: format!("{next_seq:0>22}"),
                expires: START_MS + 7 * 86_400_000 + next_seq / 30,
            });
            next_seq += 1;
        }
        let acks = if in_flight.len() >= p.lag || sends.is_empty() {
            in_flight.pop_front().unwrap_or_default()
        } else {
            Vec::new()
        };
        if sends.is_empty() && acks.is_empty() {
            break;
        }
        let b = Batch {
            sends: &sends,
            acks: &acks,
            record: &record,
            next_seq,
        };
        let t0 = Instant::now();
        let cpu_a = thread_cpu_us();
        let cpu_b = match &mut backend {
            Backend::Db(db) => {
                let mut tx = db.begin_write()?;
                tx.set_durability(Durability::Immediate)?;
                match variant {
                    Variant::Today(l) => apply_today(&tx, &mut st, l, &b)?,
                    Variant::Proposed => apply_proposed(&tx, &mut st, &b)?,
                    Variant::OneTable { random } => apply_one_table(&tx, random, &b)?,
                    Variant::Mark { status } => apply_mark(&tx, &mut st, status, &b)?,
                    Variant::Log { .. } => unreachable!("a log variant has no database"),
                }
                let cpu_b = thread_cpu_us();
                tx.commit()?;
                cpu_b
            }
            Backend::Log(log) => {
                apply_log(log, &b, START_MS + walls.len() as u64)?;
                let cpu_b = thread_cpu_us();
                log.file.sync_data()?;
                cpu_b
            }
        };
        applying += cpu_b - cpu_a;
        committing += thread_cpu_us() - cpu_b;
        walls.push(t0.elapsed().as_secs_f64() * 1e3);
        if !sends.is_empty() {
            in_flight.push_back(sends);
        }
    }
    let total_s = started.elapsed().as_secs_f64();
    let cpu = (thread_cpu_us() - cpu0) as f64;
    let io1 = proc_io();
    let io = |k: &str| (io1.get(k).copied().unwrap_or(0) - io0.get(k).copied().unwrap_or(0)) as f64;
    let (n, commits) = (p.n as f64, walls.len() as f64);
    let mean = walls.iter().sum::<f64>() / commits;
    walls.sort_by(f64::total_cmp);
    let at = |q: f64| walls[((commits - 1.0) * q).round() as usize];
    let mut values = vec![
        ("cpu_us_per_msg", cpu / n, 1),
        ("apply_cpu_us_per_msg", applying as f64 / n, 1),
        ("commit_cpu_us_per_msg", committing as f64 / n, 1),
        ("wchar_per_msg", io("wchar") / n, 0),
        ("write_bytes_per_msg", io("write_bytes") / n, 0),
        ("write_calls_per_commit", io("syscw") / commits, 0),
        ("commit_ms_mean", mean, 2),
        ("commit_ms_p50", at(0.5), 2),
        ("commit_ms_p99", at(0.99), 2),
        ("commit_ms_max", at(1.0), 2),
        ("commits", commits, 0),
        ("total_s", total_s, 2),
    ];
    let left = match &backend {
        Backend::Db(db) => {
            values.push(("file_bytes", std::fs::metadata(&path)?.len() as f64, 0));
            rows_left(db, variant)?
        }
        Backend::Log(log) => {
            values.push(("file_bytes", log.at as f64, 0));
            let (live, secs) = rebuild_log(&path, log.at)?;
            values.push(("rebuild_s", secs, 3));
            live
        }
    };
    assert_eq!(left, 0, "{name}: every message acknowledged, none left");
    drop(backend);
    std::fs::remove_file(&path)?;
    Ok(Run { load, values })
}

/// The summary's columns, as summarize.py printed them.
const SUMMARY: [&str; 9] = [
    "cpu_us_per_msg",
    "apply_cpu_us_per_msg",
    "commit_cpu_us_per_msg",
    "wchar_per_msg",
    "write_bytes_per_msg",
    "write_calls_per_commit",
    "commit_ms_mean",
    "commit_ms_p99",
    "file_bytes",
];

/// min / median / max of each column per variant, as a Markdown table.
fn print_summary(names: &[&str], runs: &[(&str, Run)]) {
    println!("\nmin / median / max per variant; load is the 1-minute average before each run");
    println!("| variant | runs | {} | load |", SUMMARY.join(" | "));
    println!("|---|---|{}---|", "---|".repeat(SUMMARY.len()));
    for name in names {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.0 == *name).map(|r| &r.1).collect();
        let cells: Vec<String> = SUMMARY
            .iter()
            .map(|key| {
                let d = mine[0].get(key).1;
                let mut xs: Vec<f64> = mine.iter().map(|r| r.get(key).0).collect();
                xs.sort_by(f64::total_cmp);
                let k = xs.len();
                let median = (xs[(k - 1) / 2] + xs[k / 2]) / 2.0;
                format!("{:.d$} / {median:.d$} / {:.d$}", xs[0], xs[k - 1])
            })
            .collect();
        let loads: Vec<&str> = mine
            .iter()
            .map(|r| r.load.split(' ').next().unwrap_or(""))
            .collect();
        println!(
            "| {name} | {} | {} | {} |",
            mine.len(),
            cells.join(" | "),
            loads.join(" ")
        );
    }
}

fn main() -> R<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it (and
    // perhaps with test filters): then one round of every variant with N = 2 000 unless set.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let mut chosen: Vec<(&str, Variant)> = Vec::new();
    for arg in args.iter().filter(|a| full && !a.starts_with('-')) {
        match VARIANTS.iter().find(|(name, _)| name == arg) {
            Some(v) => chosen.push(*v),
            None => {
                let known: Vec<&str> = VARIANTS.iter().map(|v| v.0).collect();
                return Err(format!("unknown variant {arg}; known: {}", known.join(" ")).into());
            }
        }
    }
    if chosen.is_empty() {
        chosen = VARIANTS.to_vec();
    }
    let p = Params::from_env(if full { 100_000 } else { 2_000 });
    let rounds = if full { 3 } else { 1 };
    let dir = tempfile::tempdir()?;
    println!(
        "store_layout: N={} GROUP={} LAG={} RECIPIENTS={} RECORD={}, {rounds} round(s) in {}",
        p.n,
        p.group,
        p.lag,
        p.recipients,
        p.record,
        dir.path().display()
    );
    let mut runs = Vec::new();
    for round in 1..=rounds {
        for &(name, variant) in &chosen {
            let r = run(name, variant, &p, dir.path())?;
            let values: Vec<String> = r
                .values
                .iter()
                .map(|(k, v, d)| format!("{k}={v:.d$}"))
                .collect();
            println!("round {round} {name} load {} {}", r.load, values.join(" "));
            runs.push((name, r));
        }
    }
    let names: Vec<&str> = chosen.iter().map(|v| v.0).collect();
    print_summary(&names, &runs);
    Ok(())
}
