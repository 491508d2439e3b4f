//! Stats (issue 13, PROTOCOL.md §12.6): `set_stats` (what a client reports about itself) and
//! `mesh_stats` (what the broker counted on every connection, beside those reports).

use crate::broker::connection::Conn;
use crate::protocol::messages::{MeshStatsEntry, ReportedStats};
use crate::protocol::{ServerMessage, time};

/// Most entries one `mesh_stats_result` lists.
const MAX_LISTED: usize = 200;

/// Keeps the client's report beside the broker's counts (never mixed into them). Answers only
/// a request that asked (`_reqId`): the original client sends it every minute without one.
pub fn set_stats(conn: &Conn, req_id: Option<String>, stats: ReportedStats) {
    let Some(me) = conn.peer.as_ref() else { return };
    me.state().reported = Some(stats);
    super::reply::maybe_ack(conn, req_id);
}

/// Every session of the mesh the asker may see (and the asker itself), by name.
pub fn mesh_stats(conn: &Conn, req_id: Option<String>) {
    let Some(me) = conn.peer.as_ref() else { return };
    let now = time::now_ms();
    let mut peers: Vec<MeshStatsEntry> = conn
        .broker
        .presence
        .peers(&me.mesh_id)
        .into_iter()
        .filter(|p| p.shown_to(me))
        .map(|p| {
            let reported = p.state().reported.clone();
            MeshStatsEntry {
                pubkey: p.pubkey().to_hex(),
                member_pubkey: p.member_pubkey.to_hex(),
                display_name: p.shown_name(),
                session_id: p.info.session_id.clone(),
                peer_role: p.role_name().into(),
                stats: p.counters.snapshot(p.connected_at_ms, now),
                reported,
            }
        })
        .collect();
    peers.sort_by(|a, b| (&a.display_name, &a.pubkey).cmp(&(&b.display_name, &b.pubkey)));
    peers.truncate(MAX_LISTED);
    conn.reply(req_id, ServerMessage::MeshStatsResult { peers });
}
