//! Per-mesh quotas: how much of each kind of shared data one mesh may hold. Usage is a counter
//! per (mesh, kind) kept in redb and changed in the same write transaction as the rows it
//! counts, so a check costs one key lookup, two writers cannot both take the last slot, and the
//! counters survive restarts. A data directory written before the counters existed is counted
//! once at start-up.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::contexts::CONTEXTS;
use super::files::FILES;
use super::memory::MEMORIES;
use super::state::STATE;
use super::streams::STREAMS;
use super::tasks::TASKS;
use super::{META, Store, StoreError, decode, encode};

/// `(mesh_id, kind) → how much the mesh holds` (a count, or bytes for the `*_bytes` kinds).
pub(crate) const QUOTA_USAGE: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("quota_usage");
/// Key in `meta` set once every counter has been counted from the tables.
const COUNTED_KEY: &str = "quota_usage_counted";

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quota {
    StateKeys,
    StateBytes,
    Memories,
    Tasks,
    Files,
    FileBytes,
    Streams,
    Contexts,
}

impl Quota {
    /// The counter's name in [`QUOTA_USAGE`].
    fn kind(self) -> &'static str {
        match self {
            Quota::StateKeys => "state_keys",
            Quota::StateBytes => "state_bytes",
            Quota::Memories => "memories",
            Quota::Tasks => "tasks",
            Quota::Files => "files",
            Quota::FileBytes => "file_bytes",
            Quota::Streams => "streams",
            Quota::Contexts => "contexts",
        }
    }

    /// The `claudemesh broker` flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Quota::StateKeys => "--max-state-keys",
            Quota::StateBytes => "--max-state-bytes",
            Quota::Memories => "--max-memories",
            Quota::Tasks => "--max-tasks",
            Quota::Files => "--max-files",
            Quota::FileBytes => "--max-file-bytes",
            Quota::Streams => "--max-streams",
            Quota::Contexts => "--max-contexts",
        }
    }

    /// What the limit counts, after its number: "10000 state keys".
    fn noun(self) -> &'static str {
        match self {
            Quota::StateKeys => "state keys",
            Quota::StateBytes => "bytes of state (keys and values)",
            Quota::Memories => "memories",
            Quota::Tasks => "tasks",
            Quota::Files => "files",
            Quota::FileBytes => "bytes of files",
            Quota::Streams => "streams",
            Quota::Contexts => "contexts",
        }
    }
}

/// The per-mesh limits a broker enforces (`claudemesh broker --max-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshQuotas {
    pub state_keys: u64,
    pub state_bytes: u64,
    pub memories: u64,
    pub tasks: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub streams: u64,
    pub contexts: u64,
}

impl Default for MeshQuotas {
    fn default() -> Self {
        MeshQuotas {
            state_keys: 10_000,
            state_bytes: 64 << 20,
            memories: 100_000,
            tasks: 10_000,
            files: 10_000,
            file_bytes: 5 << 30,
            streams: 1_000,
            contexts: 1_000,
        }
    }
}

impl MeshQuotas {
    pub fn limit(&self, quota: Quota) -> u64 {
        match quota {
            Quota::StateKeys => self.state_keys,
            Quota::StateBytes => self.state_bytes,
            Quota::Memories => self.memories,
            Quota::Tasks => self.tasks,
            Quota::Files => self.files,
            Quota::FileBytes => self.file_bytes,
            Quota::Streams => self.streams,
            Quota::Contexts => self.contexts,
        }
    }
}

/// A write refused because the mesh would go over one of its quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub quota: Quota,
    pub limit: u64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "quota: this mesh may hold at most {} {} ({} on this broker)",
            self.limit,
            self.quota.noun(),
            self.quota.flag()
        )?;
        match self.quota {
            Quota::StateKeys | Quota::StateBytes => f.write_str("; delete some keys first"),
            Quota::Memories => f.write_str("; forget some first"),
            Quota::Files | Quota::FileBytes => f.write_str("; delete some files first"),
            Quota::Tasks | Quota::Streams | Quota::Contexts => Ok(()),
        }
    }
}

/// How much of `quota` the mesh holds, inside a write transaction.
pub(crate) fn usage(tx: &WriteTransaction, mesh_id: &str, quota: Quota) -> Result<u64, StoreError> {
    let table = tx.open_table(QUOTA_USAGE)?;
    Ok(table.get((mesh_id, quota.kind()))?.map_or(0, |v| v.value()))
}

/// Adds `delta` (negative: frees) to the mesh's usage of `quota`, unless that would go over
/// `limit`. Freeing always succeeds; a counter never goes below zero.
pub(crate) fn charge(
    tx: &WriteTransaction,
    mesh_id: &str,
    quota: Quota,
    delta: i64,
    limit: u64,
) -> Result<Result<(), QuotaExceeded>, StoreError> {
    let now = usage(tx, mesh_id, quota)?;
    let next = if delta >= 0 {
        let next = now.saturating_add(delta as u64);
        if delta > 0 && next > limit {
            return Ok(Err(QuotaExceeded { quota, limit }));
        }
        next
    } else {
        now.saturating_sub(delta.unsigned_abs())
    };
    let mut table = tx.open_table(QUOTA_USAGE)?;
    if next == 0 {
        table.remove((mesh_id, quota.kind()))?;
    } else {
        table.insert((mesh_id, quota.kind()), next)?;
    }
    Ok(Ok(()))
}

/// Gives back `amount` of `quota` (a delete).
pub(crate) fn free(
    tx: &WriteTransaction,
    mesh_id: &str,
    quota: Quota,
    amount: u64,
) -> Result<(), StoreError> {
    let delta = -(amount.min(i64::MAX as u64) as i64);
    charge(tx, mesh_id, quota, delta, u64::MAX).map(|_| ())
}

/// What one state key costs against `--max-state-bytes`: its key and its value's JSON.
pub(crate) fn state_bytes(key: &str, value_json: &str) -> u64 {
    (key.len() + value_json.len()) as u64
}

/// Counts every mesh's usage from the tables, once per data directory (the counters are kept
/// up to date from then on).
pub(crate) fn count_once(tx: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META)?;
    if meta.get(COUNTED_KEY)?.is_some() {
        return Ok(());
    }
    let mut totals: HashMap<(String, Quota), u64> = HashMap::new();
    let mut add = |mesh: &str, quota: Quota, n: u64| {
        *totals.entry((mesh.to_string(), quota)).or_default() += n;
    };
    for row in tx.open_table(STATE)?.iter()? {
        let (k, v) = row?;
        let (mesh, key) = k.value();
        let record: super::StateRecord = decode(v.value())?;
        add(mesh, Quota::StateKeys, 1);
        add(
            mesh,
            Quota::StateBytes,
            state_bytes(key, &record.value_json),
        );
    }
    for (table, quota) in [
        (MEMORIES, Quota::Memories),
        (TASKS, Quota::Tasks),
        (STREAMS, Quota::Streams),
        (CONTEXTS, Quota::Contexts),
    ] {
        for row in tx.open_table(table)?.iter()? {
            let (k, _) = row?;
            add(k.value().0, quota, 1);
        }
    }
    for row in tx.open_table(FILES)?.iter()? {
        let (k, v) = row?;
        let record: super::FileRecord = decode(v.value())?;
        add(k.value().0, Quota::Files, 1);
        add(k.value().0, Quota::FileBytes, record.size);
    }
    let mut usage = tx.open_table(QUOTA_USAGE)?;
    usage.retain(|_, _| false)?;
    for ((mesh, quota), n) in &totals {
        usage.insert((mesh.as_str(), quota.kind()), *n)?;
    }
    meta.insert(COUNTED_KEY, encode(&true).as_slice())?;
    if !totals.is_empty() {
        tracing::info!("counted the quota usage of existing meshes");
    }
    Ok(())
}

impl Store {
    /// How much of `quota` a mesh holds now (a read; never waits for the writer).
    pub fn quota_usage(&self, mesh_id: &str, quota: Quota) -> Result<u64, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(QUOTA_USAGE)?;
        Ok(table.get((mesh_id, quota.kind()))?.map_or(0, |v| v.value()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[tokio::test]
    async fn charges_refuse_past_the_limit_and_frees_give_back() {
        let (_dir, store) = test_store();
        let charge_one = |limit| store.write(move |tx| charge(tx, "A", Quota::Tasks, 1, limit));
        assert_eq!(charge_one(2).await.unwrap(), Ok(()));
        assert_eq!(charge_one(2).await.unwrap(), Ok(()));
        let refused = charge_one(2).await.unwrap().unwrap_err();
        assert_eq!(refused.limit, 2);
        assert!(refused.to_string().contains("2 tasks (--max-tasks"));
        assert_eq!(store.quota_usage("A", Quota::Tasks).unwrap(), 2);
        assert_eq!(store.quota_usage("B", Quota::Tasks).unwrap(), 0);
        store
            .write(|tx| free(tx, "A", Quota::Tasks, 5))
            .await
            .unwrap();
        assert_eq!(store.quota_usage("A", Quota::Tasks).unwrap(), 0);
        store.close();
    }
}
