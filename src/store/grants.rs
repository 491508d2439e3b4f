//! Per-peer grants and blocks (issue 13): what one member lets another do towards it. Only
//! departures from the default (everything allowed) are stored, one row per (mesh, granter,
//! peer), with an index by peer so a send finds who refuses its sender in one range read.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::cache::Key;
use super::records::MEMBERS;
use super::{Member, Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, granter member_id, peer member_id) → GrantRow`
pub(crate) const GRANTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("grants");
/// `(mesh_id, peer member_id, granter member_id) → ()`: the same rows, by peer.
pub(crate) const GRANTS_BY_PEER: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("grants_by_peer");

/// Peers one member may hold rows for (a row exists only for a peer it restricted).
pub const MAX_GRANT_ROWS: usize = 1000;

/// Opens the grant tables (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(GRANTS)?;
    tx.open_table(GRANTS_BY_PEER)?;
    Ok(())
}

/// What a peer may do towards the member who granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Right {
    /// Direct messages, and this member's copy of the peer's group and broadcast messages.
    Message,
    /// Reading this member's peer files (enforced by broker/handlers/peer_files.rs).
    Files,
    /// Calling this member's registered tools (enforced once shared tools exist).
    Tools,
}

impl Right {
    pub const ALL: [Right; 3] = [Right::Message, Right::Files, Right::Tools];

    pub fn as_str(self) -> &'static str {
        match self {
            Right::Message => "message",
            Right::Files => "files",
            Right::Tools => "tools",
        }
    }

    pub fn parse(s: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One stored departure from the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRow {
    /// The rights still allowed.
    pub allowed: Vec<Right>,
    /// Set by `block` (everything denied); any later grant clears it.
    pub blocked: bool,
    pub updated_at_ms: i64,
}

impl GrantRow {
    pub fn allows(&self, right: Right) -> bool {
        !self.blocked && self.allowed.contains(&right)
    }

    /// The default: everything allowed, nothing stored.
    fn is_default(&self) -> bool {
        !self.blocked && Right::ALL.iter().all(|r| self.allowed.contains(r))
    }
}

/// How a grant change went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantChange {
    /// Applied; the row as it now is (`None`: back to the default).
    Done(Option<GrantRow>),
    /// The granter already restricts [`MAX_GRANT_ROWS`] peers.
    Full,
}

impl Store {
    /// Applies `change` to what `granter` lets `peer` do (starting from the stored row, or the
    /// default) and stores the result; a result equal to the default deletes the row.
    pub async fn change_grant(
        &self,
        mesh_id: String,
        granter: String,
        peer: String,
        now_ms: i64,
        change: impl FnOnce(&mut GrantRow) + Send + 'static,
    ) -> Result<GrantChange, StoreError> {
        self.write(move |tx| {
            let mut grants = tx.open_table(GRANTS)?;
            let mut by_peer = tx.open_table(GRANTS_BY_PEER)?;
            let key = (mesh_id.as_str(), granter.as_str(), peer.as_str());
            let stored: Option<GrantRow> = match grants.get(key)? {
                Some(v) => Some(decode(v.value())?),
                None => None,
            };
            let existed = stored.is_some();
            let mut row = stored.unwrap_or(GrantRow {
                allowed: Right::ALL.to_vec(),
                blocked: false,
                updated_at_ms: now_ms,
            });
            let before = row.clone();
            change(&mut row);
            row.updated_at_ms = now_ms;
            let changed = row.allowed != before.allowed || row.blocked != before.blocked;
            let stored = if row.is_default() {
                grants.remove(key)?;
                by_peer.remove((mesh_id.as_str(), peer.as_str(), granter.as_str()))?;
                None
            } else {
                if !existed && count_rows(&grants, &mesh_id, &granter)? >= MAX_GRANT_ROWS {
                    return Ok(GrantChange::Full);
                }
                grants.insert(key, encode(&row).as_slice())?;
                by_peer.insert((mesh_id.as_str(), peer.as_str(), granter.as_str()), ())?;
                Some(row.clone())
            };
            if changed {
                let members = tx.open_table(MEMBERS)?;
                let name =
                    decode_opt::<Member>(members.get((mesh_id.as_str(), granter.as_str()))?)?
                        .map(|m| m.display_name)
                        .unwrap_or_default();
                let allowed: Vec<&str> = row.allowed.iter().map(|r| r.as_str()).collect();
                let note = AuditNote::new(
                    AuditEvent::GrantsChanged,
                    AuditActor::member(&granter, name),
                )
                .with("peerMemberId", &peer)
                .with("allowed", allowed.join(","))
                .with("blocked", row.blocked);
                audit::append(tx, &mesh_id, &note, now_ms)?;
            }
            Ok(GrantChange::Done(stored))
        })
        .await
    }

    /// What `granter` lets `peer` do, when it departs from the default.
    pub fn grant(
        &self,
        mesh_id: &str,
        granter: &str,
        peer: &str,
    ) -> Result<Option<GrantRow>, StoreError> {
        self.caches.grants.get_or_read(
            &self.shared.general_commits,
            Key((mesh_id, granter, peer)),
            || {
                let rt = self.read()?;
                super::decode_opt(rt.open_table(GRANTS)?.get((mesh_id, granter, peer))?)
            },
        )
    }

    /// The rows `granter` holds, by peer member id (at most [`MAX_GRANT_ROWS`]).
    pub fn grants_by(
        &self,
        mesh_id: &str,
        granter: &str,
    ) -> Result<Vec<(String, GrantRow)>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(GRANTS)?;
        let mut out = Vec::new();
        for row in table.range((mesh_id, granter, "")..)? {
            let (k, v) = row?;
            let (mesh, by, peer) = k.value();
            if mesh != mesh_id || by != granter || out.len() >= MAX_GRANT_ROWS {
                break;
            }
            out.push((peer.to_string(), decode(v.value())?));
        }
        Ok(out)
    }

    /// The members of a mesh that deny `peer` the `right` (blocked it or revoked the right).
    pub fn denying(
        &self,
        mesh_id: &str,
        peer: &str,
        right: Right,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rt = self.read()?;
        let index = rt.open_table(GRANTS_BY_PEER)?;
        let grants = rt.open_table(GRANTS)?;
        let mut out = std::collections::HashSet::new();
        for row in index.range((mesh_id, peer, "")..)? {
            let (k, _) = row?;
            let (mesh, p, granter) = k.value();
            if mesh != mesh_id || p != peer {
                break;
            }
            if let Some(v) = grants.get((mesh_id, granter, peer))? {
                let g: GrantRow = decode(v.value())?;
                if !g.allows(right) {
                    out.insert(granter.to_string());
                }
            }
        }
        Ok(out)
    }
}

fn count_rows(
    grants: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    mesh_id: &str,
    granter: &str,
) -> Result<usize, StoreError> {
    let mut n = 0;
    for row in grants.range((mesh_id, granter, "")..)? {
        let (k, _) = row?;
        let (mesh, by, _) = k.value();
        if mesh != mesh_id || by != granter {
            break;
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    fn block(row: &mut GrantRow) {
        row.blocked = true;
    }

    /// A fresh store answers every read with the default: no row, no denial.
    #[test]
    fn a_fresh_store_reads_no_grants() {
        let (_dir, store) = test_store();
        assert_eq!(store.grant("m", "a", "b").unwrap(), None);
        assert!(store.grants_by("m", "a").unwrap().is_empty());
        assert!(store.denying("m", "b", Right::Message).unwrap().is_empty());
    }

    /// A member's rows are its own: not those of the next member in key order, nor of the
    /// same member id in another mesh.
    #[tokio::test]
    async fn grants_by_reads_one_members_rows_in_one_mesh() {
        let (_dir, store) = test_store();
        for (mesh, granter, peer) in [("m", "a", "p1"), ("m", "b", "p2"), ("n", "a", "p3")] {
            let done = store
                .change_grant(mesh.into(), granter.into(), peer.into(), 1, block)
                .await
                .unwrap();
            assert!(matches!(done, GrantChange::Done(Some(_))), "{done:?}");
        }
        let peers = |mesh, granter| -> Vec<String> {
            let rows = store.grants_by(mesh, granter).unwrap();
            rows.into_iter().map(|(peer, _)| peer).collect()
        };
        assert_eq!(peers("m", "a"), ["p1"]);
        assert_eq!(peers("m", "b"), ["p2"]);
        assert_eq!(peers("n", "a"), ["p3"]);
    }

    /// A member restricts at most MAX_GRANT_ROWS peers: one more is refused, while a peer it
    /// restricts already can still be changed.
    #[tokio::test]
    async fn rows_stop_at_the_cap_for_new_peers_only() {
        let (_dir, store) = test_store();
        let change = |peer: String| store.change_grant("m".into(), "a".into(), peer, 1, block);
        let all = (0..MAX_GRANT_ROWS).map(|i| change(format!("p{i:04}")));
        for done in futures_util::future::try_join_all(all).await.unwrap() {
            assert!(matches!(done, GrantChange::Done(Some(_))), "{done:?}");
        }
        assert_eq!(change("one-more".into()).await.unwrap(), GrantChange::Full);
        assert_eq!(store.grant("m", "a", "one-more").unwrap(), None);
        let again = store
            .change_grant("m".into(), "a".into(), "p0000".into(), 2, |row| {
                row.blocked = false;
                row.allowed = vec![Right::Files];
            })
            .await
            .unwrap();
        assert!(matches!(again, GrantChange::Done(Some(r)) if r.allowed == [Right::Files]));
        // The cap is each member's own: another member (before or after `a` in key order)
        // still restricts whom it likes, in this mesh and the next.
        for (mesh, granter) in [("m", "0-first"), ("m", "b"), ("n", "a")] {
            let done = store
                .change_grant(mesh.into(), granter.into(), "p0000".into(), 1, block)
                .await
                .unwrap();
            assert!(
                matches!(done, GrantChange::Done(Some(_))),
                "{mesh}/{granter}: {done:?}"
            );
        }
    }
}
