//! The mesh's searchable memory. redb holds the memories (the source of truth); a tantivy index
//! in `<data>/memory/` ranks them (BM25 over content and tags, English stemming). The index is
//! derived data: when it is missing, unreadable or behind redb at start-up it is rebuilt.
//! The mesh's skills (`skills.rs`) are ranked by the same index: each document carries a kind
//! (`memory` or `skill`), and a search asks for one kind.
//!
//! One thread owns the `IndexWriter`. It takes every pending change, commits once, reloads the
//! shared reader and only then answers, so a `recall` after `remember` answered finds the memory
//! (read your writes) while a burst of `remember`s shares one commit. Every change to the
//! memories in redb bumps an operation counter in the same transaction; each index commit
//! records, in its payload, the highest operation up to which it holds everything. A difference
//! at start-up means the index is behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, EmptyQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Term};
use tokio::sync::oneshot;

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::quotas::{self, Quota, QuotaExceeded};
use super::{Actor, META, Store, StoreError, decode, decode_opt, encode};

mod index;
pub(crate) use index::IndexedText;
pub use index::MemoryIndex;

/// `(mesh_id, memory_id) → MemoryRecord`
pub(crate) const MEMORIES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("memories");
/// Key in `meta` of the memory operation counter.
const OPS_KEY: &str = "memory_ops";

pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(MEMORIES)?;
    Ok(())
}

/// Bump when the index schema or analysis changes: an index of another version is rebuilt.
/// 2: a `kind` field (memories and skills share the index).
const INDEX_VERSION: u32 = 2;
const TOKENIZER: &str = "claudemesh_en";
/// Most changes folded into one index commit.
const MAX_BATCH: usize = 4096;
/// Indexing memory budget (tantivy's minimum per thread is 15 MB).
const WRITER_BUDGET: usize = 48 << 20;
/// Most results one recall returns.
pub const MAX_RECALL: usize = 100;
/// Longer queries are cut to this many characters (a bound on the work one query can ask for).
const MAX_QUERY_CHARS: usize = 2000;

/// One remembered piece of text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryRecord {
    pub id: String,
    pub mesh_id: String,
    pub content: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub remembered_by: String,
    pub member_id: String,
    pub remembered_at_ms: i64,
}

/// A memory found by `recall`, with its BM25 score.
#[derive(Debug, Clone)]
pub struct Recalled {
    pub memory: MemoryRecord,
    pub score: f32,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MemoryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("memory index: {0}")]
    Index(String),
}

impl From<tantivy::TantivyError> for MemoryError {
    fn from(e: tantivy::TantivyError) -> Self {
        MemoryError::Index(e.to_string())
    }
}

fn read_ops(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<u64, StoreError> {
    Ok(match meta.get(OPS_KEY)? {
        Some(v) => decode::<u64>(v.value())?,
        None => 0,
    })
}

/// Bumps the operation counter inside `tx`; returns the new operation's number. Every change
/// to what the index holds (memories and skills) takes one.
pub(super) fn next_op(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let mut meta = tx.open_table(META)?;
    let op = read_ops(&meta)? + 1;
    meta.insert(OPS_KEY, encode(&op).as_slice())?;
    Ok(op)
}

/// What `forget` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forgotten {
    Done,
    /// The mesh has no memory by that id.
    NotFound,
    /// Only its author or an owner/admin may forget it; carries the author's name.
    NotYours(String),
}

impl Store {
    /// Stores a memory unless the mesh already holds `max`; returns its operation number.
    async fn insert_memory(
        &self,
        record: MemoryRecord,
        max: u64,
    ) -> Result<Result<u64, QuotaExceeded>, StoreError> {
        self.write(move |tx| {
            if let Err(e) = quotas::charge(tx, &record.mesh_id, Quota::Memories, 1, max)? {
                return Ok(Err(e));
            }
            tx.open_table(MEMORIES)?.insert(
                (record.mesh_id.as_str(), record.id.as_str()),
                encode(&record).as_slice(),
            )?;
            // The id and the number of tags, never the content.
            let by = AuditActor::member(&record.member_id, &record.remembered_by);
            let note = AuditNote::new(AuditEvent::MemoryRemembered, by)
                .with("memoryId", &record.id)
                .with("tags", record.tags.len());
            audit::append(tx, &record.mesh_id, &note, record.remembered_at_ms)?;
            next_op(tx).map(Ok)
        })
        .await
    }

    /// Deletes a memory of `mesh_id` if `by` wrote it or manages the mesh; its operation
    /// number when it was deleted.
    async fn remove_memory(
        &self,
        mesh_id: String,
        id: String,
        by: Actor,
    ) -> Result<(Forgotten, Option<u64>), StoreError> {
        self.write(move |tx| {
            let mut table = tx.open_table(MEMORIES)?;
            let key = (mesh_id.as_str(), id.as_str());
            let Some(record) = decode_opt::<MemoryRecord>(table.get(key)?)? else {
                return Ok((Forgotten::NotFound, None));
            };
            if record.member_id != by.member_id && !by.manages {
                return Ok((Forgotten::NotYours(record.remembered_by), None));
            }
            table.remove(key)?;
            drop(table);
            quotas::free(tx, &mesh_id, Quota::Memories, 1)?;
            let note = AuditNote::new(AuditEvent::MemoryForgotten, &by).with("memoryId", &id);
            audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
            Ok((Forgotten::Done, Some(next_op(tx)?)))
        })
        .await
    }

    pub fn memory(&self, mesh_id: &str, id: &str) -> Result<Option<MemoryRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(MEMORIES)?.get((mesh_id, id))?)
    }

    /// How many memories a mesh holds.
    pub fn memory_count(&self, mesh_id: &str) -> Result<u64, StoreError> {
        let rt = self.read()?;
        super::rows::mesh_row_count(&rt.open_table(MEMORIES)?, mesh_id)
    }

    /// (operation counter, indexed documents in all meshes: memories and skills), read
    /// together.
    fn memory_totals(&self) -> Result<(u64, u64), StoreError> {
        let rt = self.read()?;
        let ops = read_ops(&rt.open_table(META)?)?;
        let count = rt.open_table(MEMORIES)?.len()? + super::skills::indexed_count(&rt)?;
        Ok((ops, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(mesh: &str, id: &str, content: &str, tags: &[&str]) -> MemoryRecord {
        MemoryRecord {
            id: id.into(),
            mesh_id: mesh.into(),
            content: content.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            remembered_by: "alice".into(),
            member_id: "m1".into(),
            remembered_at_ms: 1,
        }
    }

    fn ids(found: &[Recalled]) -> Vec<&str> {
        found.iter().map(|r| r.memory.id.as_str()).collect()
    }

    #[tokio::test]
    async fn remember_recall_forget_and_rebuild() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("memory");
        let store = Store::open(data.path()).unwrap();
        let index = MemoryIndex::open(&dir, &store).unwrap();
        index
            .remember(
                &store,
                memory("A", "m1", "Deploying the broker needs the admin token", &[]),
            )
            .await
            .unwrap();
        index
            .remember(
                &store,
                memory("A", "m2", "the broker restarts nightly", &["ops"]),
            )
            .await
            .unwrap();
        index
            .remember(&store, memory("B", "m3", "deploy token for mesh B", &[]))
            .await
            .unwrap();
        // Stemming, ranking, tags, isolation.
        let found = index.recall(&store, "A", "deploy token", 10).unwrap();
        assert_eq!(ids(&found), ["m1"]);
        let found = index.recall(&store, "A", "broker token", 10).unwrap();
        assert_eq!(ids(&found), ["m1", "m2"]);
        assert!(found[0].score > found[1].score);
        assert_eq!(ids(&index.recall(&store, "A", "ops", 10).unwrap()), ["m2"]);
        // Unreadable syntax falls back to plain words.
        assert_eq!(
            ids(&index.recall(&store, "A", "nightly AND (", 10).unwrap()),
            ["m2"]
        );
        assert_eq!(
            ids(&index.recall(&store, "A", "nosuch: nightly", 10).unwrap()),
            ["m2"]
        );
        let author = || Actor {
            member_id: "m1".into(),
            name: "alice".into(),
            manages: false,
        };
        let stranger = Actor {
            member_id: "m9".into(),
            name: "mallory".into(),
            manages: false,
        };
        assert_eq!(
            index.forget(&store, "A", "m2", stranger).await.unwrap(),
            Forgotten::NotYours("alice".into())
        );
        assert_eq!(
            index.forget(&store, "A", "m2", author()).await.unwrap(),
            Forgotten::Done
        );
        assert_eq!(
            index.forget(&store, "A", "m3", author()).await.unwrap(),
            Forgotten::NotFound,
            "m3 is B's"
        );
        assert!(index.recall(&store, "A", "nightly", 10).unwrap().is_empty());
        index.close();
        drop(index);

        // Reopened as it is, then rebuilt after the directory is lost.
        let index = MemoryIndex::open(&dir, &store).unwrap();
        assert_eq!(
            ids(&index.recall(&store, "A", "admin", 10).unwrap()),
            ["m1"]
        );
        index.close();
        drop(index);
        std::fs::remove_dir_all(&dir).unwrap();
        let index = MemoryIndex::open(&dir, &store).unwrap();
        assert_eq!(
            ids(&index.recall(&store, "A", "admin", 10).unwrap()),
            ["m1"]
        );
        assert!(index.recall(&store, "A", "nightly", 10).unwrap().is_empty());
        assert_eq!(
            ids(&index.recall(&store, "B", "token", 10).unwrap()),
            ["m3"]
        );
        assert_eq!(store.memory_count("A").unwrap(), 1);
    }
}
