//! URL watches (PROTOCOL.md §21): `watch`, `unwatch`, `watch_list`. Making or removing one
//! needs `watches` (owner and admins by default); the polling is `broker::watches`.

use std::time::Duration;

use super::messaging::resolve;
use super::reply::{Refusal, answer, me, ok_ack, refuse};
use crate::broker::connection::Conn;
use crate::broker::presence::Peer;
use crate::broker::state::Broker;
use crate::broker::watches::{self, Mode, NotifyOn, fetch};
use crate::protocol::messages::{
    DEFAULT_WATCH_INTERVAL_S, MAX_WATCH_INTERVAL_S, MIN_WATCH_INTERVAL_S, Watch, WatchEntry,
};
use crate::protocol::{ServerMessage, TargetSpec, ids, time};
use crate::store::{AuditActor, WatchRecord};

const MAX_URL_CHARS: usize = 2048;
const MAX_LABEL_CHARS: usize = 200;
const MAX_HEADERS: usize = 32;
const MAX_HEADER_CHARS: usize = 4096;
const MAX_MATCH_CHARS: usize = 1024;

fn invalid(message: impl Into<String>) -> Refusal {
    refuse("invalid_argument", message)
}

/// A target spec that reaches someone in the mesh now (default: the asking member).
pub(super) fn target(broker: &Broker, peer: &Peer, given: Option<&str>) -> Result<String, Refusal> {
    let to = match given.map(str::trim) {
        None | Some("") => peer.member_pubkey.to_hex(),
        Some(t) => t.to_string(),
    };
    resolve(broker, peer, &to)
        .map_err(|why| refuse("unknown_target", format!("unknown target ({why})")))?;
    Ok(to)
}

/// Checks a `watch` and turns it into the record to store (headers not yet sealed).
async fn record(
    broker: &Broker,
    peer: &Peer,
    req: Watch,
) -> Result<(WatchRecord, Vec<(String, String)>), Refusal> {
    let url = req.url.trim().to_string();
    if url.is_empty() || url.chars().count() > MAX_URL_CHARS {
        return Err(invalid(format!(
            "url must be 1 to {MAX_URL_CHARS} characters"
        )));
    }
    let mode = req.mode.unwrap_or_else(|| "hash".into());
    let parsed_mode = Mode::parse(&mode)
        .ok_or_else(|| invalid(format!("mode is hash, json or status, not \"{mode}\"")))?;
    let extract = match (parsed_mode, req.extract.filter(|e| !e.trim().is_empty())) {
        (Mode::Json, Some(path)) => {
            if let Some(why) = crate::broker::watches::costly_extract(&path) {
                return Err(invalid(why));
            }
            serde_json_path::JsonPath::parse(&path)
                .map_err(|e| invalid(format!("extract \"{path}\" is not a JSONPath: {e}")))?;
            Some(path)
        }
        (Mode::Json, None) => {
            return Err(invalid(
                "mode json needs extract, a JSONPath such as $.status",
            ));
        }
        (_, Some(_)) => return Err(invalid("extract goes with mode json only")),
        (_, None) => None,
    };
    let interval_s = req.interval.unwrap_or(DEFAULT_WATCH_INTERVAL_S);
    if !(MIN_WATCH_INTERVAL_S..=MAX_WATCH_INTERVAL_S).contains(&interval_s) {
        return Err(invalid(format!(
            "interval is {interval_s} s; it must be {MIN_WATCH_INTERVAL_S} s to {MAX_WATCH_INTERVAL_S} s (24 h)"
        )));
    }
    let notify_on = req.notify_on.unwrap_or_else(|| "change".into());
    match NotifyOn::parse(&notify_on) {
        Some(NotifyOn::Match(v) | NotifyOn::NotMatch(v)) if v.chars().count() > MAX_MATCH_CHARS => {
            return Err(invalid(format!(
                "the value in notify_on is longer than {MAX_MATCH_CHARS} characters"
            )));
        }
        Some(_) => {}
        None => {
            return Err(invalid(format!(
                "notify_on is change, match:<value> or not_match:<value>, not \"{notify_on}\""
            )));
        }
    }
    let headers: Vec<(String, String)> = req.headers.unwrap_or_default().into_iter().collect();
    if headers.len() > MAX_HEADERS
        || headers
            .iter()
            .any(|(k, v)| k.len() + v.len() > MAX_HEADER_CHARS)
    {
        return Err(invalid(format!(
            "at most {MAX_HEADERS} headers of at most {MAX_HEADER_CHARS} characters each"
        )));
    }
    fetch::check_headers(&headers).map_err(invalid)?;
    let label = req.label.filter(|l| !l.trim().is_empty());
    if label
        .as_ref()
        .is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS)
    {
        return Err(invalid(format!(
            "label is longer than {MAX_LABEL_CHARS} characters"
        )));
    }
    let target = target(broker, peer, req.target.as_deref())?;
    // Resolved and checked now, so a forbidden target is refused before any request is made.
    fetch::check(&url, broker.config.allow_private_watch_targets)
        .await
        .map_err(|e| match e {
            fetch::FetchError::Forbidden { .. } => refuse("forbidden", e.to_string()),
            _ => invalid(e.to_string()),
        })?;
    let record = WatchRecord {
        id: ids::new_id(),
        mesh_id: peer.mesh_id.clone(),
        member_id: peer.member_id.clone(),
        member_name: peer.display_name.clone(),
        url,
        mode,
        extract,
        interval_s,
        notify_on,
        sealed_headers: Vec::new(),
        header_names: headers.iter().map(|(k, _)| k.clone()).collect(),
        label,
        target,
        created_at_ms: time::now_ms(),
        last_value: None,
        last_check_ms: None,
        last_error: None,
        failures: 0,
        notified: 0,
    };
    Ok((record, headers))
}

/// `watch` → `watch_ack{watchId, url, mode, interval}`; polling starts at once.
pub fn watch(conn: &Conn, req_id: Option<String>, req: Watch) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let (mut record, headers) = record(&broker, &peer, req).await?;
        if !headers.is_empty() {
            let key = broker.service_key.as_ref().ok_or_else(|| {
                refuse(
                    "unavailable",
                    "this broker has no service key to seal headers to",
                )
            })?;
            let json = serde_json::to_vec(&headers).unwrap_or_default();
            record.sealed_headers = key
                .seal(&json)
                .map_err(|e| refuse("internal", e.to_string()))?;
        }
        if !broker
            .store
            .add_watch(record.clone(), watches::MAX_PER_MESH)
            .await?
        {
            return Err(refuse(
                "limit",
                format!(
                    "this mesh has {} watches, the most it may have; remove some first",
                    watches::MAX_PER_MESH
                ),
            ));
        }
        watches::start(&broker, &record, Duration::ZERO);
        Ok(Some(ServerMessage::WatchAck {
            watch_id: record.id,
            url: record.url,
            mode: record.mode,
            interval: record.interval_s,
        }))
    });
}

/// `unwatch{watchId}` → `ack{ok:true}`: by the member that made it, the owner or an admin.
pub fn unwatch(conn: &Conn, req_id: Option<String>, watch_id: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let not_found = || refuse("not_found", format!("no watch {watch_id} in this mesh"));
        let found = broker
            .store
            .watch(&peer.mesh_id, &watch_id)?
            .ok_or_else(not_found)?;
        let manages = super::perms::is_manager(&broker, &peer.mesh_id, &peer.member_id);
        if found.member_id != peer.member_id && !manages {
            return Err(refuse(
                "forbidden",
                "only the member that made a watch, the owner or an admin removes it",
            ));
        }
        let by = AuditActor::member(&peer.member_id, &peer.display_name);
        broker
            .store
            .remove_watch(peer.mesh_id.clone(), watch_id.clone(), by, time::now_ms())
            .await?
            .ok_or_else(not_found)?;
        broker.watches.stop(&peer.mesh_id, &watch_id);
        Ok(Some(ok_ack()))
    });
}

/// `watch_list` → `watch_list_result{watches}`: every watch of the mesh (anyone in it). What a
/// watch read (its full URL, last value and last error: it may poll with sealed credentials)
/// only for those its messages reach, its maker and the owner or an admin; the others get the
/// URL's origin.
pub fn watch_list(conn: &Conn, req_id: Option<String>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let manages = super::perms::is_manager(&broker, &peer.mesh_id, &peer.member_id);
        let watches = broker
            .store
            .watches_of(&peer.mesh_id)?
            .into_iter()
            .map(|w| {
                let told = manages || w.member_id == peer.member_id || reaches(&w.target, &peer);
                WatchEntry {
                    id: w.id,
                    url: if told { w.url } else { origin(&w.url) },
                    mode: w.mode,
                    label: w.label,
                    interval: w.interval_s,
                    extract: w.extract,
                    notify_on: w.notify_on,
                    target: w.target,
                    header_names: w.header_names,
                    last_value: w.last_value.filter(|_| told),
                    last_check: w.last_check_ms.map(time::iso),
                    last_error: w.last_error.filter(|_| told),
                    created_at: time::iso(w.created_at_ms),
                    created_by: w.member_name,
                }
            })
            .collect();
        Ok(Some(ServerMessage::WatchListResult { watches }))
    });
}

/// Whether a watch's messages reach `peer` (its target is everyone, its member or session key,
/// or a group it is in).
fn reaches(target: &str, peer: &Peer) -> bool {
    match TargetSpec::parse(target) {
        Ok(TargetSpec::All) => true,
        Ok(TargetSpec::Key(key)) => key == peer.member_pubkey || Some(key) == peer.session_pubkey,
        Ok(TargetSpec::Group(group)) => peer.in_group(group),
        _ => false,
    }
}

/// `scheme://host[:port]` of a stored (so well-formed) URL: no path or query, which may carry
/// a token.
fn origin(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(uri) => match (uri.scheme_str(), uri.authority()) {
            (Some(scheme), Some(authority)) => format!("{scheme}://{authority}"),
            _ => String::new(),
        },
        Err(_) => String::new(),
    }
}
