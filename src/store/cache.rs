//! Answers to hot reads that rarely change (a member's capabilities, a member by key, what a
//! recipient accepts), kept in memory until the next commit that could have changed them.
//!
//! The writer counts the commits that ran any job outside the message queue
//! (`WriterShared::general_commits`) before it answers their jobs. An answer is kept under the
//! count read *before* its read snapshot began, and served only while the count is unchanged:
//! so once a write that changes a member is acknowledged, every later read sees it, exactly as
//! a fresh read transaction would. Message traffic (sends and acknowledgements) does not move
//! the count, so under load these reads cost a lock and a hash lookup instead of a read
//! transaction.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashbrown::Equivalent;

use super::{GrantRow, Member, StoreError};
use crate::protocol::Pubkey;
use crate::protocol::messages::Permission;

/// The store's read caches.
#[derive(Default)]
pub(super) struct Caches {
    /// (mesh id, member id) → the member's capabilities now (`None`: not a live member);
    /// shared, so a check on every send copies a pointer, not the set.
    pub(super) capabilities: ReadCache<Key<(String, String)>, Option<Capabilities>>,
    /// (mesh id, key) → the member holding that key, revoked or not.
    pub(super) member_by_key: ReadCache<Key<(String, Pubkey)>, Option<Arc<Member>>>,
    /// (mesh id, granter, peer) → the granter's row for that peer.
    pub(super) grants: ReadCache<Key<(String, String, String)>, Option<GrantRow>>,
    /// (mesh id, member id) → whether the member turned messages off.
    pub(super) messages_off: ReadCache<Key<(String, String)>, bool>,
}

/// A member's capabilities, shared.
pub(super) type Capabilities = Arc<std::collections::BTreeSet<Permission>>;

/// A cache's key: owned strings where an answer is kept, borrowed ones in a lookup, so a
/// lookup builds no key (a `String` hashes as its `str`, a reference as what it points to).
#[derive(Hash, PartialEq, Eq)]
pub(super) struct Key<T>(pub(super) T);

/// A key to look an answer up by, and to keep one under.
pub(super) trait Lookup<K>: Hash + Equivalent<K> {
    fn to_key(&self) -> K;
}

impl<K: Hash + Eq + Clone> Lookup<K> for K {
    fn to_key(&self) -> K {
        self.clone()
    }
}

impl Equivalent<Key<(String, String)>> for Key<(&str, &str)> {
    fn equivalent(&self, key: &Key<(String, String)>) -> bool {
        let (a, b) = &key.0;
        self.0 == (a.as_str(), b.as_str())
    }
}

impl Lookup<Key<(String, String)>> for Key<(&str, &str)> {
    fn to_key(&self) -> Key<(String, String)> {
        Key((self.0.0.to_owned(), self.0.1.to_owned()))
    }
}

impl Equivalent<Key<(String, String, String)>> for Key<(&str, &str, &str)> {
    fn equivalent(&self, key: &Key<(String, String, String)>) -> bool {
        let (a, b, c) = &key.0;
        self.0 == (a.as_str(), b.as_str(), c.as_str())
    }
}

impl Lookup<Key<(String, String, String)>> for Key<(&str, &str, &str)> {
    fn to_key(&self) -> Key<(String, String, String)> {
        let (a, b, c) = self.0;
        Key((a.to_owned(), b.to_owned(), c.to_owned()))
    }
}

impl Equivalent<Key<(String, Pubkey)>> for Key<(&str, &Pubkey)> {
    fn equivalent(&self, key: &Key<(String, Pubkey)>) -> bool {
        self.0.0 == key.0.0 && *self.0.1 == key.0.1
    }
}

impl Lookup<Key<(String, Pubkey)>> for Key<(&str, &Pubkey)> {
    fn to_key(&self) -> Key<(String, Pubkey)> {
        Key((self.0.0.to_owned(), *self.0.1))
    }
}

/// Entries one cache holds before it starts over.
const MAX_ENTRIES: usize = 4096;

pub(super) struct ReadCache<K, V> {
    inner: Mutex<Kept<K, V>>,
}

struct Kept<K, V> {
    /// The commit count the entries were read under.
    generation: u64,
    entries: hashbrown::HashMap<K, V, ahash::RandomState>,
}

impl<K: Eq + Hash, V: Clone> Default for ReadCache<K, V> {
    fn default() -> Self {
        ReadCache {
            inner: Mutex::new(Kept {
                generation: 0,
                entries: hashbrown::HashMap::with_hasher(ahash::RandomState::new()),
            }),
        }
    }
}

impl<K: Eq + Hash, V: Clone> ReadCache<K, V> {
    /// The answer kept for `key` under the current commit count, else `read()`'s (kept for
    /// the next caller unless a commit counted meanwhile).
    pub(super) fn get_or_read(
        &self,
        commits: &AtomicU64,
        key: impl Lookup<K>,
        read: impl FnOnce() -> Result<V, StoreError>,
    ) -> Result<V, StoreError> {
        let seen = commits.load(Ordering::Acquire);
        {
            let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if kept.generation < seen {
                kept.entries.clear();
                kept.generation = seen;
            }
            if kept.generation == seen
                && let Some(v) = kept.entries.get(&key)
            {
                return Ok(v.clone());
            }
        }
        let v = read()?;
        let mut kept = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if kept.generation == seen {
            if kept.entries.len() >= MAX_ENTRIES {
                kept.entries.clear();
            }
            kept.entries.insert(key.to_key(), v.clone());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_kept_until_the_count_moves() {
        let commits = AtomicU64::new(0);
        let cache = ReadCache::<&str, u32>::default();
        let mut reads = 0;
        let mut get = |value: u32| {
            cache
                .get_or_read(&commits, "k", || {
                    reads += 1;
                    Ok(value)
                })
                .unwrap()
        };
        assert_eq!(get(1), 1);
        assert_eq!(get(2), 1, "kept while nothing was committed");
        commits.fetch_add(1, Ordering::AcqRel);
        assert_eq!(get(3), 3, "read again after a commit");
        assert_eq!(get(4), 3);
        assert_eq!(reads, 2);
    }

    #[test]
    fn a_read_that_a_commit_overtook_is_not_kept() {
        let commits = AtomicU64::new(0);
        let cache = ReadCache::<&str, u32>::default();
        let first = cache
            .get_or_read(&commits, "k", || {
                commits.fetch_add(1, Ordering::AcqRel);
                Ok(1)
            })
            .unwrap();
        assert_eq!(first, 1);
        let second = cache.get_or_read(&commits, "k", || Ok(2)).unwrap();
        assert_eq!(second, 2, "an answer read under an older count was served");
    }

    /// A lookup by borrowed strings finds the answer kept under owned ones, and only that one.
    #[test]
    fn a_borrowed_key_finds_what_an_owned_one_keeps() {
        let commits = AtomicU64::new(0);
        let cache = ReadCache::<Key<(String, String, String)>, u32>::default();
        let mut reads = 0;
        let mut get = |key: (&str, &str, &str), value: u32| {
            cache
                .get_or_read(&commits, Key(key), || {
                    reads += 1;
                    Ok(value)
                })
                .unwrap()
        };
        assert_eq!(get(("m", "a", "b"), 1), 1);
        assert_eq!(get(("m", "a", "b"), 2), 1, "found by borrowed strings");
        assert_eq!(
            get(("m", "ab", ""), 3),
            3,
            "other strings, same bytes: another key"
        );
        assert_eq!(get(("m", "a", "c"), 4), 4);
        assert_eq!(reads, 3);
        let keys = ReadCache::<Key<(String, Pubkey)>, u32>::default();
        let (a, b) = (Pubkey([1; 32]), Pubkey([2; 32]));
        for (key, value) in [(&a, 1), (&a, 2), (&b, 3)] {
            let got = keys.get_or_read(&commits, Key(("m", key)), || Ok(value));
            assert_eq!(got.unwrap(), if key == &a { 1 } else { 3 });
        }
    }

    #[test]
    fn a_full_cache_starts_over() {
        let commits = AtomicU64::new(0);
        let cache = ReadCache::<usize, usize>::default();
        let kept = || cache.inner.lock().unwrap().entries.len();
        for k in 0..MAX_ENTRIES {
            cache.get_or_read(&commits, k, || Ok(k)).unwrap();
        }
        assert_eq!(kept(), MAX_ENTRIES, "every answer kept up to the bound");
        cache.get_or_read(&commits, MAX_ENTRIES, || Ok(0)).unwrap();
        assert_eq!(kept(), 1, "past the bound it starts over");
    }
}
