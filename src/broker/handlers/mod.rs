//! Applying client frames. The connection loop only reads, dispatches and writes; each area of
//! the protocol has its file here.

pub mod hello;
mod members;

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
    }
}
