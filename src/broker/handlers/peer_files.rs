//! Peer files (issue 15 item 5, PROTOCOL.md §15): `peer_files_share` announces
//! that a connection shares a directory; `peer_file_request` / `peer_dir_request` are
//! relayed to that connection as `*_forward`, whose `peer_file_response` /
//! `peer_dir_response` goes back to the reader as `*_response_forward`. The reader needs the
//! `files` capability (perms `needed()`); the path's shape and the host's grants (`files`
//! right, blocks) are checked here, before anything reaches the host; the host checks the
//! path again against its file system. Every read the host answers is in the audit log
//! (`peer_file.read`: reader, host, path, size — never content) before the reader gets it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::reply::{Refusal, maybe_ack, me, ok_ack, refuse};
use super::shared_tools::{host_grants, proven_key};
use crate::broker::connection::Conn;
use crate::broker::peer_files::{FilesAnswer, MAX_REQUESTS_PER_HOST, Share};
use crate::broker::presence::Peer;
use crate::broker::shared_tools::{NoAnswer, wait_for_host};
use crate::broker::state::Broker;
use crate::protocol::messages::{
    DEFAULT_LIST_DEPTH, DEFAULT_PEER_FILES_TIMEOUT_MS, Envelope, MAX_LIST_DEPTH,
    MAX_PEER_FILES_ANSWER_BYTES, PeerDirRequest, PeerDirRequestForward, PeerDirResponse,
    PeerFileRequest, PeerFileRequestForward, PeerFileResponse, PeerFilesAnswer, PeerFilesShare,
    Requester, path_problem,
};
use crate::protocol::{Pubkey, ServerMessage, time};
use crate::store::{AuditActor, AuditEvent, AuditNote, Right};

/// The longest a request may ask to wait for its host.
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Bytes crypto_box adds to what it seals.
const BOX_MAC_BYTES: usize = 16;

/// `peer_files_share{readOnly}` → `ack{ok:true}`: this presence answers peer-file requests
/// from now until it disconnects or unshares.
pub fn share(conn: &Conn, req_id: Option<String>, share: PeerFilesShare) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    // Shares of presences gone for good are forgotten here, so the map stays bounded.
    let present: std::collections::HashSet<String> = broker
        .presence
        .all()
        .iter()
        .map(|p| p.presence_id.clone())
        .collect();
    broker.file_shares.share(
        &peer.presence_id,
        Share {
            read_only: share.read_only,
        },
        |id| present.contains(id),
    );
    conn.reply(req_id, ok_ack());
}

/// `peer_files_unshare{}` → `ack{ok:true}`.
pub fn unshare(conn: &Conn, req_id: Option<String>) {
    if let Some(peer) = &conn.peer {
        conn.broker.file_shares.unshare(&peer.presence_id);
    }
    conn.reply(req_id, ok_ack());
}

/// The sharing presence `target` names (a member or session key, or a display name), after
/// the host's grants: `invalid_argument`, `host_offline`, `not_sharing`, `forbidden`.
fn find_host(broker: &Broker, caller: &Peer, target: &str) -> Result<Arc<Peer>, Refusal> {
    let target = target.trim();
    if target.is_empty() || target.len() > 128 {
        return Err(refuse(
            "invalid_argument",
            "targetPubkey must name a peer: its key (64 hex) or display name",
        ));
    }
    let live: Vec<Arc<Peer>> = broker
        .presence
        .peers(&caller.mesh_id)
        .into_iter()
        .filter(|p| p.is_live())
        .collect();
    let named: Vec<Arc<Peer>> = match Pubkey::parse(target).ok() {
        Some(k) => live
            .into_iter()
            .filter(|p| p.pubkey() == k || p.member_pubkey == k)
            .collect(),
        None => {
            let member = named_member(broker, caller, &live, target)?;
            live.into_iter().filter(|p| p.member_id == member).collect()
        }
    };
    if named.is_empty() {
        return Err(refuse(
            "host_offline",
            format!(
                "no connected peer is \"{target}\": it is offline, not sharing from a session peers can see, or no such member (check its name or key with `claudemesh members`, and that its share-dir runs)"
            ),
        ));
    }
    let Some(host) = named
        .iter()
        .filter(|p| broker.file_shares.get(&p.presence_id).is_some())
        .max_by_key(|p| p.connected_at_ms)
        .cloned()
    else {
        return Err(refuse(
            "not_sharing",
            format!(
                "{} is online but shares no directory (it can run `claudemesh share-dir PATH`, or `claudemesh launch --share-dir`)",
                named[0].shown_name()
            ),
        ));
    };
    let name = host.shown_name();
    host_grants(broker, caller, &host, Right::Files, &name, "read its files")?;
    Ok(host)
}

/// The one member a display name names: a member of the store so called, or a live presence
/// showing that name. Two members under one name is `ambiguous` (the reader names a key).
fn named_member(
    broker: &Broker,
    caller: &Peer,
    live: &[Arc<Peer>],
    name: &str,
) -> Result<String, Refusal> {
    let members = broker
        .store
        .members(&caller.mesh_id)
        .map_err(|e| refuse("internal", e.to_string()))?;
    let mut ids: Vec<(String, String)> = members
        .iter()
        .filter(|m| m.revoked_at_ms.is_none() && m.display_name == name)
        .map(|m| (m.id.clone(), m.pubkey.to_hex()))
        .collect();
    for p in live {
        if p.display_name == name || p.shown_name() == name {
            ids.push((p.member_id.clone(), p.member_pubkey.to_hex()));
        }
    }
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Err(refuse(
            "host_offline",
            format!(
                "no member is called \"{name}\" (check the name with `claudemesh members`, or give the host's key)"
            ),
        )),
        [(id, _)] => Ok(id.clone()),
        several => Err(refuse(
            "ambiguous",
            format!(
                "\"{name}\" names {} members (keys {}): give the host's member key instead",
                several.len(),
                several
                    .iter()
                    .map(|(_, k)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// What is relayed: a read or a listing.
enum Ask {
    File {
        path: String,
        /// A chunk: `(offset, length)` as the reader asked.
        offset: Option<u64>,
        length: Option<u64>,
    },
    Dir {
        path: String,
        pattern: Option<String>,
        depth: u32,
    },
}

/// The reader's sealed request, relayed to the host untouched.
type Sealed = Option<crate::protocol::messages::SealedPayload>;

impl Ask {
    fn path(&self) -> &str {
        match self {
            Ask::File { path: p, .. } | Ask::Dir { path: p, .. } => p,
        }
    }
}

/// `peer_file_request` → `peer_file_response_forward` once the host answers, or an `error`
/// frame: `forbidden_path`, `host_offline`, `not_sharing`, `forbidden`, `rate_limited`,
/// `result_too_large`, `timeout`.
pub fn file_request(conn: &Conn, req_id: Option<String>, r: PeerFileRequest) {
    relay(
        conn,
        req_id,
        &r.target_pubkey,
        Ask::File {
            path: r.file_path,
            offset: r.offset,
            length: r.length,
        },
        r.timeout_ms,
        r.sealed,
    );
}

/// `peer_dir_request` → `peer_dir_response_forward`, as [`file_request`].
pub fn dir_request(conn: &Conn, req_id: Option<String>, r: PeerDirRequest) {
    let depth = r
        .depth
        .unwrap_or(DEFAULT_LIST_DEPTH)
        .clamp(1, MAX_LIST_DEPTH);
    let ask = Ask::Dir {
        path: r.dir_path,
        pattern: r.pattern,
        depth,
    };
    relay(conn, req_id, &r.target_pubkey, ask, r.timeout_ms, r.sealed);
}

fn relay(
    conn: &Conn,
    req_id: Option<String>,
    target: &str,
    ask: Ask,
    timeout_ms: Option<u64>,
    sealed: Sealed,
) {
    let Some((broker, caller)) = me(conn) else {
        return;
    };
    if let Some(problem) = path_problem(ask.path(), matches!(ask, Ask::File { .. })) {
        return conn.error(req_id, "forbidden_path", problem);
    }
    let host = match find_host(&broker, &caller, target) {
        Ok(host) => host,
        Err(Refusal { code, message }) => return conn.error(req_id, code, message),
    };
    let Some(pair) =
        broker
            .file_shares
            .take_pair(&caller.mesh_id, &caller.member_id, &host.presence_id)
    else {
        return conn.error(
            req_id,
            "rate_limited",
            format!(
                "you already have {MAX_REQUESTS_PER_HOST} requests waiting for {}; wait for one to finish",
                host.shown_name()
            ),
        );
    };
    let (place, answered) = match broker.file_requests.start_or_refuse(
        &caller.mesh_id,
        &caller.member_id,
        &host.presence_id,
        "peer-file requests",
    ) {
        Ok(started) => started,
        Err(message) => return conn.error(req_id, "rate_limited", message),
    };
    let requester = Requester {
        requester_pubkey: proven_key(&caller),
        requester_name: caller.display_name.clone(),
        requester_member_id: caller.member_id.clone(),
    };
    let request_id = place.call_id().to_string();
    let forward = match &ask {
        Ask::File {
            path,
            offset,
            length,
        } => ServerMessage::PeerFileRequestForward(Box::new(PeerFileRequestForward {
            request_id,
            requester,
            file_path: path.clone(),
            offset: *offset,
            length: *length,
            sealed,
        })),
        Ask::Dir {
            path,
            pattern,
            depth,
        } => ServerMessage::PeerDirRequestForward(Box::new(PeerDirRequestForward {
            request_id,
            requester,
            dir_path: path.clone(),
            pattern: pattern.clone(),
            depth: *depth,
            sealed,
        })),
    };
    let host_closed = host.state().conn.as_ref().map(|c| c.closer.subscribe());
    let (Some(host_closed), true) = (host_closed, host.send(&Envelope::new(forward))) else {
        return conn.error(
            req_id,
            "host_offline",
            format!("{} went offline", host.shown_name()),
        );
    };
    let wait = Duration::from_millis(
        timeout_ms
            .unwrap_or(DEFAULT_PEER_FILES_TIMEOUT_MS)
            .clamp(1, MAX_TIMEOUT_MS),
    );
    let out = conn.out.clone();
    let who = conn.who();
    let what = conn.frame;
    // Tracked: the wait ends at shutdown, and what it records is written before the store
    // closes.
    let tasks = broker.tasks.clone();
    tasks.spawn(async move {
        let host_name = host.shown_name();
        let outcome = match wait_for_host(answered, host_closed, wait, &broker.shutdown).await {
            Ok(answer) => deliver(&broker, &caller, &host, &ask, answer).await,
            Err(NoAnswer::HostGone) => {
                Err(refuse("host_offline", format!("{host_name} went offline")))
            }
            Err(NoAnswer::Timeout) => Err(refuse(
                "timeout",
                format!("{host_name} did not answer within {} s", wait.as_secs_f64()),
            )),
            Err(NoAnswer::Disconnected) => Err(refuse(
                "host_offline",
                format!("{host_name} disconnected before answering"),
            )),
            Err(NoAnswer::Shutdown) => {
                Err(refuse("broker_shutdown", "the broker is shutting down"))
            }
        };
        drop(place);
        drop(pair);
        let frame = match outcome {
            Ok(frame) => frame,
            Err(Refusal { code, message }) => {
                broker.metrics.error(code);
                broker.refusals.refused(&who, what, code, &message);
                ServerMessage::error(code, message)
            }
        };
        out.send(&Envelope::reply(req_id, frame));
    });
}

/// Bytes of the plaintext a sealed answer carries.
fn sealed_size(answer: &PeerFilesAnswer) -> Option<usize> {
    let sealed = answer.sealed.as_ref()?;
    let bytes = STANDARD.decode(&sealed.ciphertext).ok()?;
    Some(bytes.len().saturating_sub(BOX_MAC_BYTES))
}

/// Turns the host's answer into the reader's frame, audited first when it carries content.
async fn deliver(
    broker: &Broker,
    caller: &Peer,
    host: &Peer,
    ask: &Ask,
    answer: FilesAnswer,
) -> Result<ServerMessage, Refusal> {
    let (mut body, is_file) = match (answer, ask) {
        (FilesAnswer::File(r), Ask::File { .. }) => (r.answer, true),
        (FilesAnswer::Dir(r), Ask::Dir { .. }) => (r.answer, false),
        (FilesAnswer::TooLarge(n), _) => {
            return Err(refuse(
                "result_too_large",
                format!(
                    "{}'s answer was {n} bytes; the limit is {MAX_PEER_FILES_ANSWER_BYTES} bytes",
                    host.shown_name()
                ),
            ));
        }
        _ => {
            return Err(refuse(
                "host_error",
                format!(
                    "{} answered with the wrong kind of response",
                    host.shown_name()
                ),
            ));
        }
    };
    if body.sealed.is_some() == body.error.is_some() {
        return Err(refuse(
            "host_error",
            format!(
                "{}'s answer carried neither content nor an error (or both)",
                host.shown_name()
            ),
        ));
    }
    // A grant withdrawn or a block made while the host worked stops the answer here.
    host_grants(
        broker,
        caller,
        host,
        Right::Files,
        &host.shown_name(),
        "read its files",
    )?;
    if body.sealed.is_some() && sealed_size(&body).is_none() {
        return Err(refuse(
            "host_error",
            format!("{}'s answer is not valid base64", host.shown_name()),
        ));
    }
    if let Some(size) = sealed_size(&body) {
        let event = if is_file {
            AuditEvent::PeerFileRead
        } else {
            AuditEvent::PeerFilesListed
        };
        let note = AuditNote::new(
            event,
            AuditActor::member(caller.member_id.clone(), caller.display_name.clone()),
        )
        .with("host", &host.member_id)
        .with("hostName", host.shown_name())
        .with("path", ask.path())
        .with("size", size);
        // A chunk of a larger file: where it starts, and the file's size.
        let note = match ask {
            Ask::File {
                offset: Some(offset),
                ..
            } => note.with("offset", offset).with_opt("fileSize", body.size),
            _ => note,
        };
        broker
            .store
            .record_audit(&caller.mesh_id, note, time::now_ms())
            .await?;
    }
    body.request_id = None;
    // Hosts seal with their member key (the key readers seal their requests to).
    body.host_pubkey = Some(host.member_pubkey.to_hex());
    body.host_member_pubkey = Some(host.member_pubkey.to_hex());
    body.host_name = Some(host.shown_name());
    Ok(match ask {
        Ask::File { path, .. } => {
            ServerMessage::PeerFileResponseForward(Box::new(PeerFileResponse {
                file_path: path.clone(),
                answer: body,
            }))
        }
        Ask::Dir { path, .. } => ServerMessage::PeerDirResponseForward(Box::new(PeerDirResponse {
            dir_path: path.clone(),
            answer: body,
        })),
    })
}

/// A host's answer: handed to the waiting request (only the presence it went to may answer).
fn host_answer(
    conn: &Conn,
    req_id: Option<String>,
    request_id: Option<String>,
    answer: FilesAnswer,
) {
    let Some(peer) = conn.peer.as_ref() else {
        return;
    };
    let Some(request_id) = request_id else {
        return conn.error(req_id, "invalid_argument", "the response needs requestId");
    };
    if conn
        .broker
        .file_requests
        .answer(&request_id, &peer.presence_id, answer)
    {
        maybe_ack(conn, req_id);
    } else if req_id.is_some() {
        conn.error(
            req_id,
            "not_found",
            "no request with this requestId waits for you (it timed out or was answered)",
        );
    }
}

fn too_large(answer: &PeerFilesAnswer) -> Option<FilesAnswer> {
    let size = answer.wire_bytes();
    (size > MAX_PEER_FILES_ANSWER_BYTES).then_some(FilesAnswer::TooLarge(size))
}

/// `peer_file_response` from a host.
pub fn file_response(conn: &Conn, req_id: Option<String>, r: PeerFileResponse) {
    let id = r.answer.request_id.clone();
    let answer = too_large(&r.answer).unwrap_or(FilesAnswer::File(r));
    host_answer(conn, req_id, id, answer);
}

/// `peer_dir_response` from a host.
pub fn dir_response(conn: &Conn, req_id: Option<String>, r: PeerDirResponse) {
    let id = r.answer.request_id.clone();
    let answer = too_large(&r.answer).unwrap_or(FilesAnswer::Dir(r));
    host_answer(conn, req_id, id, answer);
}
