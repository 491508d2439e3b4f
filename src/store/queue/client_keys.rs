//! The client-message-id index (`CLIENT_KEYS`), written behind. Its keys are hashes, so a new
//! entry lands on a random page of a large table: written with its message, every send
//! copied and wrote a page of its own. New entries wait in memory instead, and each commit
//! writes one slice of the key space (the slices in turn), so the entries written together
//! share their pages; an idle store writes them all. Every commit also keeps in `META` the
//! oldest message id among entries still waiting, and the next open rebuilds the index from
//! the stored messages from that id on: a crash loses none of it.
//!
//! In front of the table stands a Bloom filter of every key stored or waiting
//! ([`KeyFilter`]): nearly every send is fresh, and a key the filter never saw needs no
//! lookup in a large table of random keys (cold pages read at random).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use redb::{ReadableTable, Table, WriteTransaction};

use redb::ReadableTableMetadata;

use super::super::records::{CLIENT_IDS, CLIENT_KEYS, DELIVERED, QUEUED};
use super::super::{DeliveredRecord, META, StoreError, decode, encode};

/// A client message id's key: 16 bytes of SHA-256 over mesh, sender member and id.
pub(in crate::store) type ClientKey = [u8; 16];

/// The key of a client message id in `CLIENT_KEYS`: 16 bytes of SHA-256 over mesh, sender
/// member and id (a fixed 16 bytes per sent message instead of the three strings).
pub(in crate::store) fn client_key(mesh_id: &str, member_id: &str, cid: &str) -> ClientKey {
    let digest = crate::crypto::sha256([mesh_id, "\0", member_id, "\0", cid].concat().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The waiting entries, locked (only the writer thread takes them).
pub(in crate::store) fn lock(pending: &Mutex<PendingKeys>) -> MutexGuard<'_, PendingKeys> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// How many slices the key space is written in, one a commit.
const SLICES: usize = 64;
/// Keys in a slice share their first byte divided by this.
const SLICE_WIDTH: usize = 256 / SLICES;
/// The `META` entry naming the oldest message whose index entry may not be stored yet.
const UNWRITTEN_FROM: &str = "client_keys_unwritten_from";

/// Index entries not yet in `CLIENT_KEYS`.
///
/// After a failed commit nothing in memory is trusted: what the commit was writing, adding
/// or forgetting may or may not be on disk. Everything is dropped, and the next commit
/// rebuilds the index from the stored messages (from the id `META` names, as an open after a
/// crash does) before its jobs look anything up.
pub(in crate::store) struct PendingKeys {
    entries: BTreeMap<ClientKey, String>,
    /// The slice the next commit writes (or the first non-empty one after it).
    next_slice: usize,
    /// Per slice, a message id no later than any of its waiting entries' (`None`: empty).
    oldest: [Option<String>; SLICES],
    /// What `META` says is unwritten after the last commit (`None`: not known).
    recorded: Option<Option<String>>,
    /// The last commit failed: the next one rebuilds the index first.
    rebuild: bool,
    /// Every key stored or waiting (`None`: not known, look every key up).
    filter: Option<KeyFilter>,
}

impl Default for PendingKeys {
    fn default() -> Self {
        PendingKeys {
            entries: BTreeMap::new(),
            next_slice: 0,
            oldest: no_entries(),
            recorded: None,
            rebuild: false,
            filter: None,
        }
    }
}

fn no_entries() -> [Option<String>; SLICES] {
    std::array::from_fn(|_| None)
}

impl PendingKeys {
    pub(in crate::store) fn get(&self, key: &ClientKey) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Keys added to the filter since it was built (`None`: no filter).
    #[cfg(test)]
    pub(in crate::store) fn filter_added(&self) -> Option<u64> {
        self.filter.as_ref().map(|f| f.added)
    }

    /// False when `key` is surely neither waiting nor stored: no lookup needed.
    pub(in crate::store) fn may_hold(&self, key: &ClientKey) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_hold(key))
    }

    pub(in crate::store) fn insert(&mut self, key: ClientKey, message_id: &str) {
        if let Some(filter) = &mut self.filter {
            filter.add(&key);
        }
        self.entries.insert(key, message_id.to_string());
        let oldest = &mut self.oldest[slice_of(&key)];
        if oldest.as_deref().is_none_or(|o| message_id < o) {
            *oldest = Some(message_id.to_string());
        }
    }

    /// Forgets the entry of message `message_id` (gone); an entry naming another message
    /// stays.
    pub(in crate::store) fn remove(&mut self, key: &ClientKey, message_id: &str) {
        if self.get(key) != Some(message_id) {
            return;
        }
        self.entries.remove(key);
        let slice = slice_of(key);
        if self.slice_keys(slice).next().is_none() {
            self.oldest[slice] = None;
        }
    }

    pub(in crate::store) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The keys waiting in slice `n`.
    fn slice_keys(&self, n: usize) -> impl Iterator<Item = &ClientKey> {
        let high = slice_start(n + 1);
        self.entries
            .range(slice_start(n).unwrap_or([u8::MAX; 16])..)
            .map(|(k, _)| k)
            .take_while(move |k| high.is_none_or(|h| **k < h))
    }

    /// Takes the next non-empty slice's entries (every entry when `all`) for this commit.
    fn take(&mut self, all: bool) -> Vec<(ClientKey, String)> {
        if all {
            self.oldest = no_entries();
            return std::mem::take(&mut self.entries).into_iter().collect();
        }
        let Some(first) = self
            .slice_from(self.next_slice)
            .or_else(|| self.slice_from(0))
        else {
            return Vec::new();
        };
        self.oldest[first] = None;
        self.next_slice = (first + 1) % SLICES;
        let keys: Vec<ClientKey> = self.slice_keys(first).copied().collect();
        keys.into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|id| (k, id)))
            .collect()
    }

    /// The slice of the first entry at or after slice `from`'s start.
    fn slice_from(&self, from: usize) -> Option<usize> {
        let low = slice_start(from).unwrap_or([u8::MAX; 16]);
        self.entries.range(low..).next().map(|(k, _)| slice_of(k))
    }

    /// A message id no later than any entry's not written by this commit.
    fn oldest_unwritten(&self) -> Option<String> {
        self.oldest.iter().flatten().min().cloned()
    }

    /// After the commit: on failure, drops everything (see the type's note).
    pub(in crate::store) fn committed(&mut self, ok: bool) {
        if !ok {
            *self = PendingKeys {
                rebuild: true,
                ..PendingKeys::default()
            };
        }
    }
}

fn slice_of(key: &ClientKey) -> usize {
    usize::from(key[0]) / SLICE_WIDTH
}

/// The first key of slice `n` (`None` past the last).
fn slice_start(n: usize) -> Option<ClientKey> {
    let byte = u8::try_from(n * SLICE_WIDTH).ok()?;
    let mut key = [0u8; 16];
    key[0] = byte;
    Some(key)
}

/// The fewest bits a filter has (128 KiB), and the most (16 MiB): past that many keys
/// (millions), more of them are looked up for nothing.
const FILTER_BITS: (u64, u64) = (1 << 20, 1 << 27);
/// Bits a filter is given per key it starts with: twice as many keys fit before it is
/// rebuilt, 32 bits a key then (about one false "maybe" in 1 400); the smallest filter holds
/// up to twice `MIN_REBUILD` keys, 8 bits a key (about one in 30).
const BITS_PER_KEY: u64 = 32;
/// The fewest keys added before a filter is rebuilt.
const MIN_REBUILD: u64 = if cfg!(test) { 64 } else { 65_536 };

/// A Bloom filter over client keys, which are SHA-256 already: three of their 32-bit words
/// choose its bits. A key forgotten stays set (a false "maybe" costs one lookup, as without
/// the filter); once as many keys were added as it was built with, it is built again from
/// the tables, which drops the forgotten ones.
pub(in crate::store) struct KeyFilter {
    words: Vec<u64>,
    /// Bits − 1 (a power of two).
    mask: u64,
    /// Keys added since it was built.
    added: u64,
    /// Rebuilt once `added` reaches this.
    rebuild_at: u64,
}

impl KeyFilter {
    fn with_room(keys: u64) -> KeyFilter {
        let bits = keys
            .saturating_mul(2 * BITS_PER_KEY)
            .clamp(FILTER_BITS.0, FILTER_BITS.1)
            .next_power_of_two();
        KeyFilter {
            words: vec![0; usize::try_from(bits / 64).unwrap_or(usize::MAX)],
            mask: bits - 1,
            added: 0,
            rebuild_at: keys.max(MIN_REBUILD),
        }
    }

    /// A filter of every key in `CLIENT_KEYS`, of every entry of the older `CLIENT_IDS`, and
    /// of `waiting`.
    fn build<'k>(
        tx: &WriteTransaction,
        waiting: impl ExactSizeIterator<Item = &'k ClientKey>,
    ) -> Result<KeyFilter, StoreError> {
        let keys = tx.open_table(CLIENT_KEYS)?;
        let old = tx.open_table(CLIENT_IDS)?;
        let mut filter = KeyFilter::with_room(keys.len()? + old.len()? + waiting.len() as u64);
        for row in keys.iter()? {
            filter.set(&row?.0.value());
        }
        for row in old.iter()? {
            let (k, _) = row?;
            let (mesh_id, member_id, cid) = k.value();
            filter.set(&client_key(mesh_id, member_id, cid));
        }
        for key in waiting {
            filter.set(key);
        }
        Ok(filter)
    }

    fn bits(key: &ClientKey) -> impl Iterator<Item = u64> + '_ {
        key.chunks_exact(4)
            .take(3)
            .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
    }

    fn set(&mut self, key: &ClientKey) {
        for bit in KeyFilter::bits(key) {
            let bit = bit & self.mask;
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn add(&mut self, key: &ClientKey) {
        self.set(key);
        self.added += 1;
    }

    fn may_hold(&self, key: &ClientKey) -> bool {
        KeyFilter::bits(key).all(|bit| {
            let bit = bit & self.mask;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    fn full(&self) -> bool {
        self.added >= self.rebuild_at
    }
}

/// Before a commit's jobs: after a failed commit, rebuilds the index from the stored
/// messages (see [`PendingKeys`]).
pub(in crate::store) fn rebuild_if_failed(
    tx: &WriteTransaction,
    pending: &mut PendingKeys,
) -> Result<(), StoreError> {
    if pending.rebuild {
        recover(tx)?;
        pending.filter = Some(KeyFilter::build(tx, std::iter::empty())?);
        pending.rebuild = false;
    }
    Ok(())
}

/// At open, once [`recover`] ran: nothing waiting, and the filter of every stored key.
pub(in crate::store) fn filtered(tx: &WriteTransaction) -> Result<PendingKeys, StoreError> {
    Ok(PendingKeys {
        filter: Some(KeyFilter::build(tx, std::iter::empty())?),
        ..PendingKeys::default()
    })
}

/// Writes a slice of the waiting entries (all of them when `all`) and records in `META`
/// where the rest begin. Part of every commit while entries wait.
pub(in crate::store) fn write_slice(
    tx: &WriteTransaction,
    pending: &mut PendingKeys,
    all: bool,
) -> Result<(), StoreError> {
    if pending.is_empty() && pending.recorded == Some(None) {
        return Ok(());
    }
    let mut table = tx.open_table(CLIENT_KEYS)?;
    for (key, id) in pending.take(all) {
        table.insert(key, id.as_str())?;
    }
    drop(table);
    if pending.filter.as_ref().is_some_and(KeyFilter::full) {
        let rebuilt = KeyFilter::build(tx, pending.entries.keys())?;
        pending.filter = Some(rebuilt);
    }
    let unwritten = pending.oldest_unwritten();
    if pending.recorded.as_ref() != Some(&unwritten) {
        let mut meta = tx.open_table(META)?;
        match &unwritten {
            Some(id) => meta.insert(UNWRITTEN_FROM, encode(id).as_slice())?,
            None => meta.remove(UNWRITTEN_FROM)?,
        };
        pending.recorded = Some(unwritten);
    }
    Ok(())
}

/// At open, and after a failed commit: indexes the client message ids of the messages a crash
/// (or the failure) may have left unindexed (from the id `META` names on), stored or
/// delivered.
pub(in crate::store) fn recover(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META)?;
    let from = match meta.get(UNWRITTEN_FROM)? {
        Some(v) => decode::<String>(v.value()).unwrap_or_else(|e| {
            tracing::warn!("the client message id index's bound: {e}; indexing every message");
            String::new()
        }),
        None => return Ok(()),
    };
    let mut keys = tx.open_table(CLIENT_KEYS)?;
    let queued = tx.open_table(QUEUED)?;
    index_from(&queued, &from, &mut keys, |v| {
        super::index::read_queued(v).map(|(_, r)| (r.sender_member_id, r.client_message_id))
    })?;
    let delivered = tx.open_table(DELIVERED)?;
    index_from(&delivered, &from, &mut keys, |v| {
        decode::<DeliveredRecord>(v).map(|r| (r.sender_member_id, r.client_message_id))
    })?;
    meta.remove(UNWRITTEN_FROM)?;
    Ok(())
}

/// Indexes the client message id of every row of every mesh whose message id is `from` or
/// later (message ids sort by time); `sent_by` reads a row's sender and client message id.
fn index_from(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    from: &str,
    keys: &mut Table<ClientKey, &'static str>,
    sent_by: impl Fn(&[u8]) -> Result<(String, Option<String>), StoreError>,
) -> Result<(), StoreError> {
    let mut mesh: Option<String> = None;
    loop {
        // The next mesh: the first row past every id of the last one (ids are ASCII).
        let next = match &mesh {
            Some(m) => table.range((m.as_str(), "\u{10FFFF}")..)?.next(),
            None => table.range::<(&str, &str)>(..)?.next(),
        };
        let Some(row) = next else {
            return Ok(());
        };
        let m = row?.0.value().0.to_string();
        for row in table.range((m.as_str(), from)..=(m.as_str(), "\u{10FFFF}"))? {
            let (k, v) = row?;
            let (mesh_id, id) = k.value();
            // A row that cannot be read is skipped: it must not stop every later write (or
            // the next start) for the sake of one message's resend check.
            let (sender, cid) = match sent_by(v.value()) {
                Ok((sender, Some(cid))) => (sender, cid),
                Ok((_, None)) => continue,
                Err(e) => {
                    tracing::warn!("indexing the client message id of {mesh_id}/{id}: {e}");
                    continue;
                }
            };
            let key = client_key(mesh_id, &sender, &cid);
            // Most rows are indexed already: a read leaves their page clean.
            if keys.get(key)?.is_none_or(|v| v.value() != id) {
                keys.insert(key, id)?;
            }
        }
        mesh = Some(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(i: u32) -> ClientKey {
        client_key("mesh", "member", &i.to_string())
    }

    /// Every key set is held; of keys never set, nearly all are told apart (at 10 000 keys in
    /// the smallest filter, about one in 40 000 is a false "maybe": 100 bits a key).
    #[test]
    fn the_filter_holds_every_key_set_and_turns_others_away() {
        let mut filter = KeyFilter::with_room(10_000);
        for i in 0..10_000 {
            filter.add(&hashed(i));
        }
        assert!((0..10_000).all(|i| filter.may_hold(&hashed(i))));
        let maybe = (10_000..20_000)
            .filter(|i| filter.may_hold(&hashed(*i)))
            .count();
        assert!(maybe < 20, "{maybe} of 10 000 keys never set may be held");
        assert!(
            filter.full(),
            "10 000 keys added to a filter built for 10 000"
        );
    }

    fn key(first: u8, n: u8) -> ClientKey {
        let mut k = [n; 16];
        k[0] = first;
        k
    }

    /// A commit writes one slice: the first with entries from where the last one stopped,
    /// and only its entries; the rest stay findable, and the oldest of them is what a crash
    /// would have to rebuild from.
    #[test]
    fn a_commit_takes_one_slice_in_turn_and_names_the_oldest_left() {
        let mut p = PendingKeys::default();
        p.insert(key(200, 1), "id-3");
        p.insert(key(0, 1), "id-2");
        p.insert(key(1, 2), "id-4");
        p.insert(key(9, 1), "id-1");
        let taken: Vec<ClientKey> = p.take(false).iter().map(|(k, _)| *k).collect();
        assert_eq!(taken, [key(0, 1), key(1, 2)], "slice 0 is keys 0..4");
        assert_eq!(p.oldest_unwritten().as_deref(), Some("id-1"));
        assert_eq!(p.get(&key(9, 1)), Some("id-1"));
        assert_eq!(p.get(&key(0, 1)), None);
        p.committed(true);
        let taken: Vec<ClientKey> = p.take(false).iter().map(|(k, _)| *k).collect();
        assert_eq!(taken, [key(9, 1)], "the next slice with entries");
        assert_eq!(p.oldest_unwritten().as_deref(), Some("id-3"));
        p.committed(true);
        assert_eq!(p.take(false).len(), 1);
        assert_eq!(p.oldest_unwritten(), None);
        p.committed(true);
        assert!(p.is_empty());
    }

    /// A slice filled again right after its turn waits for the others: every slice is
    /// written in turn, however busy the first is.
    #[test]
    fn a_refilled_slice_waits_for_the_others() {
        let mut p = PendingKeys::default();
        p.insert(key(0, 1), "id-1");
        p.insert(key(9, 1), "id-2");
        p.insert(key(200, 1), "id-3");
        let mut order = Vec::new();
        for refill in ["id-4", "id-5", "id-6"] {
            let taken: Vec<ClientKey> = p.take(false).iter().map(|(k, _)| *k).collect();
            order.push(taken);
            p.committed(true);
            p.insert(key(0, order.len() as u8 + 1), refill);
        }
        assert_eq!(
            order,
            [vec![key(0, 1)], vec![key(9, 1)], vec![key(200, 1)]],
            "slice 0 again only after slices 2 and 50"
        );
        let taken: Vec<ClientKey> = p.take(false).iter().map(|(k, _)| *k).collect();
        assert_eq!(taken, [key(0, 2), key(0, 3), key(0, 4)], "then round again");
    }

    /// What `META` says is unwritten, read back from a real store.
    fn bound(db: &redb::Database) -> Option<String> {
        let tx = db.begin_write().unwrap();
        let meta = tx.open_table(META).unwrap();
        let v = meta.get(UNWRITTEN_FROM).unwrap();
        v.map(|v| decode::<String>(v.value()).unwrap())
    }

    /// One commit writing a slice, on a real redb file.
    fn commit_slice(db: &redb::Database, p: &mut PendingKeys) {
        let tx = db.begin_write().unwrap();
        write_slice(&tx, p, false).unwrap();
        tx.commit().unwrap();
        p.committed(true);
    }

    /// The bound in `META` follows what waits: set while entries wait, gone once the last is
    /// written or forgotten, and set again by an entry added after that (which is written).
    #[test]
    fn the_stored_bound_follows_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        let mut p = PendingKeys::default();
        p.insert(key(0, 1), "id-1");
        p.insert(key(9, 1), "id-2");
        commit_slice(&db, &mut p);
        assert_eq!(bound(&db).as_deref(), Some("id-2"));
        p.remove(&key(9, 1), "id-2");
        commit_slice(&db, &mut p);
        assert_eq!(
            bound(&db),
            None,
            "nothing waits: no rebuild at the next open"
        );
        p.insert(key(100, 1), "id-3");
        p.insert(key(200, 1), "id-4");
        commit_slice(&db, &mut p);
        assert_eq!(bound(&db).as_deref(), Some("id-4"));
        commit_slice(&db, &mut p);
        assert!(p.is_empty());
        let tx = db.begin_write().unwrap();
        let keys = tx.open_table(CLIENT_KEYS).unwrap();
        let stored = |k| keys.get(k).unwrap().map(|v| v.value().to_string());
        assert_eq!(stored(key(100, 1)).as_deref(), Some("id-3"));
        assert_eq!(stored(key(200, 1)).as_deref(), Some("id-4"));
        assert_eq!(stored(key(9, 1)), None, "forgotten before it was written");
    }

    /// After a failed commit nothing in memory is trusted: what it was writing, what its jobs
    /// added (their messages may not be stored) and what waited all go, and the next commit
    /// rebuilds the index from the stored messages; META must be written again.
    #[test]
    fn a_failed_commit_drops_what_waits_and_asks_for_a_rebuild() {
        let mut p = PendingKeys::default();
        p.insert(key(0, 1), "id-1");
        p.committed(true);
        p.insert(key(100, 1), "id-2");
        assert_eq!(p.take(false).len(), 1);
        p.committed(false);
        assert!(p.is_empty());
        assert_eq!(p.oldest_unwritten(), None);
        assert!(p.rebuild);
        assert_eq!(p.recorded, None, "META must be written again");
    }

    /// Forgetting an entry leaves one naming another message, and a slice left empty no
    /// longer holds the bound back.
    #[test]
    fn forgetting_frees_the_bound_and_spares_other_messages() {
        let mut p = PendingKeys::default();
        p.insert(key(0, 1), "id-1");
        p.insert(key(9, 1), "id-2");
        p.remove(&key(0, 1), "id-other");
        assert_eq!(p.get(&key(0, 1)), Some("id-1"));
        p.remove(&key(0, 1), "id-1");
        assert_eq!(p.get(&key(0, 1)), None);
        assert_eq!(p.oldest_unwritten().as_deref(), Some("id-2"));
    }
}
