//! Shared files: everything but the bytes. The bytes live in the object store under
//! `mesh/<mesh_id>/<file_id>` (see `broker::files`); names, tags, sizes, the uploader, the sealed
//! keys of encrypted files, the access log and the expiry index live here.

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::members::{BANS, is_active_in};
use super::quotas::{self, Quota, QuotaExceeded};
use super::records::MEMBERS;
use super::{MeshQuotas, Store, StoreError, decode, decode_opt, encode};

/// `(mesh_id, file_id) → FileRecord`
pub(crate) const FILES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("files");
/// `(mesh_id, file_id, peer pubkey hex) → sealed key (standard base64)`: who may decrypt.
pub(crate) const FILE_KEYS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("file_keys");
/// `(mesh_id, file_id, accessed_at_ms, random) → FileAccess`: who downloaded, when.
pub(crate) const FILE_ACCESSES: TableDefinition<(&str, &str, u64, u32), &[u8]> =
    TableDefinition::new("file_accesses");
/// `(expires_at_ms, mesh_id, file_id) → ()`: ephemeral files in the order they expire.
pub(crate) const FILE_EXPIRY: TableDefinition<(u64, &str, &str), ()> =
    TableDefinition::new("file_expiry");

/// Opens the file tables (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(FILES)?;
    tx.open_table(FILE_KEYS)?;
    tx.open_table(FILE_ACCESSES)?;
    tx.open_table(FILE_EXPIRY)?;
    Ok(())
}

/// One shared file, as the broker knows it. For an encrypted file `size` is the size of the
/// ciphertext the broker holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    pub id: String,
    pub mesh_id: String,
    pub name: String,
    pub size: u64,
    #[serde(default)]
    pub tags: Vec<String>,
    pub uploader_member_id: String,
    pub uploader_name: String,
    /// The key the uploader spoke with (member or session), hex.
    pub uploader_pubkey: String,
    /// `X-Owner-Pubkey`: the key that may grant access to an encrypted file.
    #[serde(default)]
    pub owner_pubkey: Option<String>,
    #[serde(default)]
    pub target_spec: Option<String>,
    pub persistent: bool,
    pub encrypted: bool,
    #[serde(default)]
    pub content_type: Option<String>,
    pub created_at_ms: i64,
    /// Ephemeral files only.
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

impl FileRecord {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|t| t <= now_ms)
    }
}

/// One download.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileAccess {
    pub peer_name: String,
    pub member_id: String,
    pub pubkey: String,
    pub accessed_at_ms: i64,
}

/// Outcome of a `grant_file_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    Granted,
    NoSuchFile,
}

fn expiry_key(r: &FileRecord) -> Option<(u64, &str, &str)> {
    r.expires_at_ms
        .map(|t| (t.max(0) as u64, r.mesh_id.as_str(), r.id.as_str()))
}

/// Why an upload's record was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadRefusal {
    /// The mesh would hold more files or bytes than its quotas allow.
    Quota(QuotaExceeded),
    /// The uploader was revoked or banned before the upload committed.
    NotMember,
}

impl Store {
    /// Stores a complete upload's metadata and its sealed keys in one transaction, unless the
    /// uploader is no longer an active member (revoked or banned: checked in the same
    /// transaction, so no upload of theirs lands after the revocation), or the mesh would then
    /// hold more files or bytes than `limits` allow. Refused, nothing is stored.
    pub async fn insert_file(
        &self,
        record: FileRecord,
        keys: Vec<(String, String)>,
        limits: MeshQuotas,
    ) -> Result<Result<(), UploadRefusal>, StoreError> {
        self.write(move |tx| {
            let (mesh, id) = (record.mesh_id.as_str(), record.id.as_str());
            let (members, bans) = (tx.open_table(MEMBERS)?, tx.open_table(BANS)?);
            if !is_active_in(&members, &bans, mesh, &record.uploader_member_id)? {
                return Ok(Err(UploadRefusal::NotMember));
            }
            if let Err(e) = quotas::charge(tx, mesh, Quota::Files, 1, limits.files)? {
                return Ok(Err(UploadRefusal::Quota(e)));
            }
            let size = record.size.min(i64::MAX as u64) as i64;
            if let Err(e) = quotas::charge(tx, mesh, Quota::FileBytes, size, limits.file_bytes)? {
                quotas::free(tx, mesh, Quota::Files, 1)?;
                return Ok(Err(UploadRefusal::Quota(e)));
            }
            tx.open_table(FILES)?
                .insert((mesh, id), encode(&record).as_slice())?;
            let mut table = tx.open_table(FILE_KEYS)?;
            for (pubkey, sealed) in &keys {
                table.insert((mesh, id, pubkey.as_str()), sealed.as_str())?;
            }
            if let Some(k) = expiry_key(&record) {
                tx.open_table(FILE_EXPIRY)?.insert(k, ())?;
            }
            let by = AuditActor::member(&record.uploader_member_id, &record.uploader_name);
            let note = AuditNote::new(AuditEvent::FileShared, by)
                .with("fileId", &record.id)
                .with("name", &record.name)
                .with("bytes", record.size)
                .with("encrypted", record.encrypted)
                .with("persistent", record.persistent);
            audit::append(tx, mesh, &note, record.created_at_ms)?;
            Ok(Ok(()))
        })
        .await
    }

    pub fn file(&self, mesh_id: &str, file_id: &str) -> Result<Option<FileRecord>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(FILES)?.get((mesh_id, file_id))?)
    }

    /// A mesh's files in id order, from just after id `after`, while `visit` wants more.
    pub fn scan_files(
        &self,
        mesh_id: &str,
        after: Option<&str>,
        visit: impl FnMut(&str, FileRecord) -> bool,
    ) -> Result<(), StoreError> {
        let rt = self.read()?;
        super::rows::scan_mesh_rows(&rt.open_table(FILES)?, mesh_id, after, visit)
    }

    /// How many files a mesh holds (for `mesh_info`), expired ones not yet swept included.
    pub fn file_count(&self, mesh_id: &str) -> Result<usize, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(FILES)?;
        let mut n = 0;
        for row in table.range((mesh_id, "")..)? {
            let (k, _) = row?;
            if k.value().0 != mesh_id {
                break;
            }
            n += 1;
        }
        Ok(n)
    }

    /// The first of `pubkeys` (hex) that holds a sealed key for the file, with that key.
    pub fn file_key(
        &self,
        mesh_id: &str,
        file_id: &str,
        pubkeys: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(FILE_KEYS)?;
        for pk in pubkeys {
            if let Some(sealed) = table.get((mesh_id, file_id, pk.as_str()))? {
                return Ok(Some((pk.clone(), sealed.value().to_string())));
            }
        }
        Ok(None)
    }

    /// Adds (or replaces) a recipient's sealed key, if the file still exists.
    pub async fn grant_file_key(
        &self,
        mesh_id: String,
        file_id: String,
        pubkey: String,
        sealed: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<GrantOutcome, StoreError> {
        self.write(move |tx| {
            let (mesh, id) = (mesh_id.as_str(), file_id.as_str());
            if tx.open_table(FILES)?.get((mesh, id))?.is_none() {
                return Ok(GrantOutcome::NoSuchFile);
            }
            tx.open_table(FILE_KEYS)?
                .insert((mesh, id, pubkey.as_str()), sealed.as_str())?;
            let note = AuditNote::new(AuditEvent::FileGranted, by)
                .with("fileId", id)
                .with("peerPubkey", &pubkey);
            audit::append(tx, mesh, &note, now_ms)?;
            Ok(GrantOutcome::Granted)
        })
        .await
    }

    /// Logs a download; committed before the bytes go out.
    pub async fn record_file_access(
        &self,
        mesh_id: String,
        file_id: String,
        access: FileAccess,
    ) -> Result<(), StoreError> {
        let nonce = crate::crypto::random_u32_below(u32::MAX);
        self.write(move |tx| {
            let at = access.accessed_at_ms.max(0) as u64;
            tx.open_table(FILE_ACCESSES)?.insert(
                (mesh_id.as_str(), file_id.as_str(), at, nonce),
                encode(&access).as_slice(),
            )?;
            Ok(())
        })
        .await
    }

    /// Who downloaded a file, oldest first.
    pub fn file_accesses(
        &self,
        mesh_id: &str,
        file_id: &str,
    ) -> Result<Vec<FileAccess>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(FILE_ACCESSES)?;
        let mut out = Vec::new();
        for row in
            table.range((mesh_id, file_id, 0u64, 0u32)..=(mesh_id, file_id, u64::MAX, u32::MAX))?
        {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Removes a file's metadata, keys, access log and expiry entry; returns the record if it
    /// existed. `by` is who deleted it ([`AuditActor::broker`] when it expired).
    pub async fn delete_file(
        &self,
        mesh_id: String,
        file_id: String,
        by: AuditActor,
        now_ms: i64,
    ) -> Result<Option<FileRecord>, StoreError> {
        self.write(move |tx| {
            let (mesh, id) = (mesh_id.as_str(), file_id.as_str());
            let record: Option<FileRecord> = decode_opt(tx.open_table(FILES)?.remove((mesh, id))?)?;
            let Some(record) = record else {
                return Ok(None);
            };
            quotas::free(tx, mesh, Quota::Files, 1)?;
            quotas::free(tx, mesh, Quota::FileBytes, record.size)?;
            tx.open_table(FILE_KEYS)?
                .retain_in((mesh, id, "")..=(mesh, id, "\u{10FFFF}"), |_, _| false)?;
            tx.open_table(FILE_ACCESSES)?.retain_in(
                (mesh, id, 0u64, 0u32)..=(mesh, id, u64::MAX, u32::MAX),
                |_, _| false,
            )?;
            if let Some(k) = expiry_key(&record) {
                tx.open_table(FILE_EXPIRY)?.remove(k)?;
            }
            let note = AuditNote::new(AuditEvent::FileDeleted, by)
                .with("fileId", id)
                .with("name", &record.name)
                .with("bytes", record.size);
            audit::append(tx, mesh, &note, now_ms)?;
            Ok(Some(record))
        })
        .await
    }

    /// Ephemeral files whose lifetime ended at or before `now_ms`: `(mesh_id, file_id)`.
    pub fn expired_files(&self, now_ms: i64) -> Result<Vec<(String, String)>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(FILE_EXPIRY)?;
        let mut out = Vec::new();
        let until = now_ms.max(0) as u64;
        for row in table.range((0u64, "", "")..)? {
            let (k, _) = row?;
            let (at, mesh, id) = k.value();
            if at > until {
                break;
            }
            out.push((mesh.to_string(), id.to_string()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meshes::{test_member, test_mesh, test_revoked};
    use crate::store::test_store;
    use crate::store::{Member, MemberRole};

    fn upload(by: &Member, id: &str) -> FileRecord {
        FileRecord {
            id: id.into(),
            mesh_id: by.mesh_id.clone(),
            name: format!("{id}.txt"),
            size: 10,
            tags: vec![],
            uploader_member_id: by.id.clone(),
            uploader_name: by.display_name.clone(),
            uploader_pubkey: by.pubkey.to_hex(),
            owner_pubkey: None,
            target_spec: None,
            persistent: true,
            encrypted: false,
            content_type: None,
            created_at_ms: 3,
            expires_at_ms: None,
        }
    }

    /// The upload endpoint checks its member before the commit; the commit checks again, in
    /// its own transaction, so a revocation or a ban that lands in between stores nothing.
    #[tokio::test]
    async fn an_upload_lands_only_while_its_uploader_is_an_active_member() {
        let (_dir, store) = test_store();
        let (team, owner) = test_mesh(&store).await;
        let bob = test_member(&store, &team, "bob", MemberRole::Member, 3).await;
        let carol = test_member(&store, &team, "carol", MemberRole::Member, 4).await;
        let carol = test_revoked(&store, carol).await;
        let dave = test_member(&store, &team, "dave", MemberRole::Member, 5).await;
        store
            .ban_member(
                team.id.clone(),
                "dave".into(),
                owner.id.clone(),
                "spam".into(),
                3,
            )
            .await
            .unwrap()
            .expect("the owner bans dave");
        let insert = |r: FileRecord| store.insert_file(r, vec![], MeshQuotas::default());
        insert(upload(&bob, "f-bob"))
            .await
            .unwrap()
            .expect("bob is a member");
        for (who, id) in [(&carol, "f-carol"), (&dave, "f-dave")] {
            assert_eq!(
                insert(upload(who, id)).await.unwrap(),
                Err(UploadRefusal::NotMember),
                "{}'s upload",
                who.display_name
            );
            assert!(store.file(&team.id, id).unwrap().is_none());
        }
        assert!(store.file(&team.id, "f-bob").unwrap().is_some());
        assert_eq!(store.quota_usage(&team.id, Quota::Files).unwrap(), 1);
        assert_eq!(store.quota_usage(&team.id, Quota::FileBytes).unwrap(), 10);
    }
}
