//! Applying client frames. The connection loop only reads, dispatches and writes; each area of
//! the protocol has its file here.

pub mod hello;
mod members;
mod messaging;
mod peers;

use super::connection::Conn;
use crate::protocol::{ClientMessage, Envelope};

pub async fn dispatch(conn: &mut Conn, frame: Envelope<ClientMessage>) {
    let req_id = frame.req_id;
    match frame.body {
        ClientMessage::Hello(h) => hello::member_hello(conn, h).await,
        ClientMessage::SessionHello(h) => hello::session_hello(conn, h).await,
        other if conn.peer.is_none() => conn.error(
            req_id,
            "no_hello",
            format!("send hello before \"{}\"", other.type_name()),
        ),
        ClientMessage::CreateInvite(c) => members::create_invite(conn, req_id, c).await,
        ClientMessage::ListMembers {} => members::list_members(conn, req_id),
        ClientMessage::RevokeMember { member } => {
            members::revoke_member(conn, req_id, member).await
        }
        ClientMessage::RevokeInvite { code } => members::revoke_invite(conn, req_id, code).await,
        ClientMessage::Send(msg) => messaging::send(conn, req_id, *msg),
        ClientMessage::ClientAck(ack) => messaging::client_ack(conn, ack),
        ClientMessage::Drain {} => messaging::drain(conn, req_id),
        ClientMessage::MessageStatus { message_id } => {
            messaging::message_status(conn, req_id, message_id)
        }
        ClientMessage::ListPeers { group } => peers::list_peers(conn, req_id, group),
        ClientMessage::SetStatus { status } => peers::set_status(conn, req_id, &status),
        ClientMessage::SetSummary { summary } => peers::set_summary(conn, req_id, summary).await,
        ClientMessage::SetVisible { visible } => peers::set_visible(conn, req_id, visible),
        ClientMessage::SetProfile(p) => peers::set_profile(conn, req_id, p),
        ClientMessage::JoinGroup(g) => {
            peers::change_group(conn, req_id, &g.name, Some(g.role)).await
        }
        ClientMessage::LeaveGroup { name } => peers::change_group(conn, req_id, &name, None).await,
    }
}
