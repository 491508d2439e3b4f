//! Files over the WebSocket (PROTOCOL.md §7): upload tokens, download URLs, the list, the
//! access log, deletion and granting access to encrypted files. The bytes go over HTTP
//! (`broker::files`); every request here is scoped to the connection's mesh.

use crate::broker::connection::Conn;
use crate::broker::files::{self, FileGrant, Readable, TokenPurpose, endpoints};
use crate::broker::page::{Pager, decode_cursor};
use crate::protocol::messages::{
    Ack, FileAccessEntry, FileEntry, FileStatusResult, FileTokenResult, FileUrl, GrantFileAccess,
    GrantFileAccessOk, ListFiles,
};
use crate::protocol::{Pubkey, ServerMessage, ids, time};
use crate::store::{AuditActor, FileRecord, GrantOutcome};

/// Finds a file of the connection's mesh, or answers the error and returns `None`.
fn find(conn: &Conn, req_id: &Option<String>, file_id: &str) -> Option<FileRecord> {
    let peer = conn.peer.as_ref()?;
    if !ids::is_id(file_id) {
        conn.error(
            req_id.clone(),
            "invalid_argument",
            "fileId must be 1-64 characters of [A-Za-z0-9_-]",
        );
        return None;
    }
    match conn.broker.store.file(&peer.mesh_id, file_id) {
        Ok(Some(r)) if !r.is_expired(time::now_ms()) => Some(r),
        Ok(_) => {
            conn.error(req_id.clone(), "not_found", format!("no file {file_id}"));
            None
        }
        Err(e) => {
            conn.error(req_id.clone(), "internal", e.to_string());
            None
        }
    }
}

pub fn file_token(conn: &Conn, req_id: Option<String>, purpose: &str) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    if purpose != "upload" {
        return conn.error(
            req_id,
            "invalid_argument",
            "file_token purpose must be \"upload\" (downloads get their URL from get_file)",
        );
    }
    let broker = &conn.broker;
    let grant = FileGrant::for_peer(peer, TokenPurpose::Upload);
    let expires_at = time::iso(grant.expires_at_ms);
    let token = match broker.files.issue(grant) {
        Ok(t) => t,
        Err(why) => return conn.error(req_id, "rate_limit", why),
    };
    conn.reply(
        req_id,
        ServerMessage::FileTokenResult(FileTokenResult {
            token,
            expires_at,
            url: format!("{}/upload", broker.public_url()),
            max_bytes: broker.config.max_upload_bytes,
        }),
    );
}

pub fn get_file(conn: &Conn, req_id: Option<String>, file_id: String) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let Some(record) = find(conn, &req_id, &file_id) else {
        return;
    };
    let broker = &conn.broker;
    let sealed_key = match endpoints::readable_by(broker, &record, peer) {
        Ok(Readable::Plain) => None,
        Ok(Readable::Sealed { sealed_key, .. }) => Some(sealed_key),
        Err((code, message)) => return conn.error(req_id, code, message),
    };
    let grant = FileGrant::for_peer(
        peer,
        TokenPurpose::Download {
            file_id: record.id.clone(),
        },
    );
    let token = match broker.files.issue(grant) {
        Ok(t) => t,
        Err(why) => return conn.error(req_id, "rate_limit", why),
    };
    conn.reply(
        req_id,
        ServerMessage::FileUrl(FileUrl {
            url: format!(
                "{}/download/{}?token={token}",
                broker.public_url(),
                record.id
            ),
            file_id: record.id,
            name: record.name,
            size: record.size,
            encrypted: record.encrypted,
            sealed_key,
        }),
    );
}

fn entry(r: FileRecord) -> FileEntry {
    FileEntry {
        id: r.id,
        name: r.name,
        size: r.size,
        tags: r.tags,
        uploaded_by: r.uploader_name,
        uploaded_at: time::iso(r.created_at_ms),
        persistent: r.persistent,
        encrypted: r.encrypted,
        expires_at: r.expires_at_ms.map(time::iso),
    }
}

/// `list_files{query?, from?, cursor?, limit?}`: the files the member may read (an owner or
/// admin, who may delete any file, sees them all); `query` matches names and tags
/// (case-insensitive substring), `from` the uploader's name (case-insensitive) or a prefix of
/// its key. One page, in id order (our client sorts the whole list newest first).
pub fn list_files(conn: &Conn, req_id: Option<String>, req: ListFiles) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let broker = &conn.broker;
    let sees_all = super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id);
    let after = match decode_cursor(req.cursor.as_deref()) {
        Ok(after) => after,
        Err(e) => return conn.error(req_id, "invalid_argument", e.to_string()),
    };
    let now = time::now_ms();
    let query = req
        .query
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let from = req
        .from
        .map(|f| f.trim().trim_start_matches('@').to_lowercase())
        .filter(|f| !f.is_empty());
    let wanted = |r: &FileRecord| {
        !r.is_expired(now)
            && query.as_deref().is_none_or(|q| {
                r.name.to_lowercase().contains(q)
                    || r.tags.iter().any(|t| t.to_lowercase().contains(q))
            })
            && from.as_deref().is_none_or(|f| {
                r.uploader_name.to_lowercase() == f
                    || (f.len() >= 8 && r.uploader_pubkey.starts_with(f))
            })
            && (sees_all || endpoints::readable_by(broker, r, peer).is_ok())
    };
    let mut page = Pager::new(req.limit);
    let scanned = broker
        .store
        .scan_files(&peer.mesh_id, after.as_deref(), |id, r| {
            page.offer(id, wanted(&r).then(|| entry(r)))
        });
    if let Err(e) = scanned {
        return conn.error(req_id, "internal", e.to_string());
    }
    let (files, next_cursor) = page.finish();
    conn.reply(req_id, ServerMessage::FileList { files, next_cursor });
}

/// `file_status{fileId}`: who downloaded the file, and when — for its uploader, an owner or
/// admin, and members who may read it (as `get_file` decides); others get `get_file`'s refusal.
pub fn file_status(conn: &Conn, req_id: Option<String>, file_id: String) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let Some(record) = find(conn, &req_id, &file_id) else {
        return;
    };
    let broker = &conn.broker;
    if peer.member_id != record.uploader_member_id
        && !super::perms::is_manager(broker, &peer.mesh_id, &peer.member_id)
        && let Err((code, message)) = endpoints::readable_by(broker, &record, peer)
    {
        return conn.error(req_id, code, message);
    }
    let accesses = match conn.broker.store.file_accesses(&peer.mesh_id, &record.id) {
        Ok(a) => a,
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    conn.reply(
        req_id,
        ServerMessage::FileStatusResult(FileStatusResult {
            file_id: record.id,
            accesses: accesses
                .into_iter()
                .map(|a| FileAccessEntry {
                    peer_name: a.peer_name,
                    accessed_at: time::iso(a.accessed_at_ms),
                })
                .collect(),
        }),
    );
}

/// `delete_file`: the uploader, or an owner or admin of the mesh.
pub async fn delete_file(conn: &Conn, req_id: Option<String>, file_id: String) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let Some(record) = find(conn, &req_id, &file_id) else {
        return;
    };
    if record.uploader_member_id != peer.member_id
        && !super::perms::is_manager(&conn.broker, &peer.mesh_id, &peer.member_id)
    {
        return conn.error(
            req_id,
            "forbidden",
            "only the uploader or a mesh owner or admin may delete a file",
        );
    }
    let by = AuditActor::member(&peer.member_id, &peer.display_name);
    match endpoints::remove_file(&conn.broker, &peer.mesh_id, &record.id, by).await {
        Ok(_) => conn.reply(
            req_id,
            ServerMessage::Ack(Ack {
                id: Some(record.id.clone()),
                message_id: Some(record.id),
                ok: Some(true),
                ..Default::default()
            }),
        ),
        Err(e) => conn.error(req_id, "internal", e),
    }
}

/// `grant_file_access`: the owner of an encrypted file adds a recipient's sealed key.
pub async fn grant_file_access(conn: &Conn, req_id: Option<String>, req: GrantFileAccess) {
    let Some(peer) = conn.peer.clone() else {
        return;
    };
    let Some(record) = find(conn, &req_id, &req.file_id) else {
        return;
    };
    let is_owner = record.uploader_member_id == peer.member_id
        || record.owner_pubkey.as_deref().is_some_and(|o| {
            o == peer.member_pubkey.to_hex()
                || peer.proven_session().is_some_and(|s| s.to_hex() == o)
        });
    if !is_owner {
        return conn.error(
            req_id,
            "forbidden",
            "only the file's owner may grant access to it",
        );
    }
    if !record.encrypted {
        return conn.error(
            req_id,
            "invalid_argument",
            "this file is not encrypted: everyone in the mesh may already read it",
        );
    }
    if let Err(why) = files::check_file_key(&req.peer_pubkey, &req.sealed_key) {
        return conn.error(req_id, "invalid_argument", why);
    }
    let broker = &conn.broker;
    let known = match Pubkey::parse(&req.peer_pubkey) {
        Ok(key) => {
            broker
                .store
                .member_by_pubkey(&peer.mesh_id, &key)
                .ok()
                .flatten()
                .is_some_and(|m| m.revoked_at_ms.is_none())
                || broker
                    .store
                    .known_session(&peer.mesh_id, &req.peer_pubkey)
                    .ok()
                    .flatten()
                    .is_some()
        }
        Err(_) => false,
    };
    if !known {
        return conn.error(
            req_id,
            "not_found",
            format!(
                "no member or session {}… in this mesh",
                req.peer_pubkey.get(..12).unwrap_or(&req.peer_pubkey)
            ),
        );
    }
    let granted = broker
        .store
        .grant_file_key(
            peer.mesh_id.clone(),
            record.id.clone(),
            req.peer_pubkey.clone(),
            req.sealed_key,
            AuditActor::member(&peer.member_id, &peer.display_name),
            time::now_ms(),
        )
        .await;
    match granted {
        Ok(GrantOutcome::Granted) => conn.reply(
            req_id,
            ServerMessage::GrantFileAccessOk(GrantFileAccessOk {
                file_id: record.id,
                peer_pubkey: req.peer_pubkey,
            }),
        ),
        Ok(GrantOutcome::NoSuchFile) => {
            conn.error(req_id, "not_found", format!("no file {}", record.id))
        }
        Err(e) => conn.error(req_id, "internal", e.to_string()),
    }
}
