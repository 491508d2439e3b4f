//! Applying client frames. The connection loop only reads, dispatches and writes; each area of
//! the protocol has its file here.

mod audit;
mod clock;
mod contexts;
pub(super) mod deployments;
mod files;
pub(super) mod grants;
mod graph;
pub mod hello;
mod info;
pub(crate) mod keys;
mod members;
mod memory;
pub(super) mod messaging;
mod peer_files;
mod peers;
pub mod perms;
mod profile;
mod reminders;
mod reply;
mod settings;
pub(crate) mod shared_tools;
mod skills;
mod sql;
mod state;
mod stats;
mod streams;
mod tasks;
mod vault;
// Vectors (issue 16).
mod vectors;
// URL watches and inbound webhooks (issue 17).
mod watches;
mod webhooks;
// Telegram bridge (issue 17).
mod telegram;
// Remote approval of tool use (issue 18).
mod approvals;
mod status_history;

use super::connection::Conn;
use crate::protocol::messages::GroupBodiesProof;
use crate::protocol::{ClientMessage, Envelope};

pub async fn dispatch(conn: &mut Conn, frame: Envelope<ClientMessage>) {
    let req_id = frame.req_id;
    // Every frame after hello acts for the presence only while its member is not revoked;
    // the guard makes a revocation wait for a frame already being handled.
    let authority = conn.peer.clone();
    let held = match &authority {
        Some(peer) => match peer.authorised().await {
            Some(held) => Some(held),
            None => {
                return conn.error(req_id, "revoked", "this member was revoked from the mesh");
            }
        },
        None => None,
    };
    // Capabilities are read at each frame, so a change applies at once to live connections.
    if conn.peer.is_some()
        && let Some(needed) = perms::needed(&frame.body)
        && !perms::require(conn, &req_id, needed)
    {
        return;
    }
    if let Some(peer) = conn.peer.as_ref()
        && audit::is_audited_change(&frame.body)
        && !conn
            .broker
            .audit_limit
            .allow(&format!("{}/{}", peer.mesh_id, peer.member_id))
    {
        let limit = &conn.broker.audit_limit;
        return conn.error(
            req_id,
            "rate_limit",
            format!(
                "rate_limit: more than {} audited changes per second (burst {}) from this member; slow down",
                limit.rate(),
                limit.burst()
            ),
        );
    }
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
            // A revocation waits for the revoked presences' frames to finish: holding our
            // own authority meanwhile would deadlock two admins revoking each other.
            drop(held);
            members::revoke_member(conn, req_id, member).await
        }
        ClientMessage::RevokeInvite { code, invite_id } => {
            members::revoke_invite(conn, req_id, code, invite_id).await
        }
        ClientMessage::ListInvites {} => members::list_invites(conn, req_id),
        ClientMessage::RootKeyProof { check } => members::root_key_proof(conn, req_id, check).await,
        ClientMessage::Send(msg) => messaging::send(conn, req_id, *msg),
        ClientMessage::ClientAck(ack) => messaging::client_ack(conn, ack),
        ClientMessage::Drain {} => messaging::drain(conn, req_id),
        ClientMessage::MessageStatus { message_id } => {
            messaging::message_status(conn, req_id, message_id)
        }
        ClientMessage::ListPeers {
            group,
            cursor,
            limit,
        } => peers::list_peers(conn, req_id, group, cursor, limit),
        ClientMessage::StatusHistory { since } => {
            status_history::status_history(conn, req_id, since)
        }
        ClientMessage::SetStatus { status, source } => {
            peers::set_status(conn, req_id, &status, source.as_deref())
        }
        ClientMessage::SetSummary { summary } => peers::set_summary(conn, req_id, summary).await,
        ClientMessage::SetVisible { visible } => peers::set_visible(conn, req_id, visible),
        ClientMessage::SetProfile(p) => profile::set_profile(conn, req_id, p).await,
        ClientMessage::JoinGroup(g) => {
            peers::change_group(conn, req_id, &g.name, Some(g.role)).await
        }
        ClientMessage::LeaveGroup { name } => peers::change_group(conn, req_id, &name, None).await,
        ClientMessage::FileToken(t) => files::file_token(conn, req_id, &t.purpose),
        ClientMessage::GetFile(f) => files::get_file(conn, req_id, f.file_id),
        ClientMessage::ListFiles(l) => files::list_files(conn, req_id, l),
        ClientMessage::FileStatus(f) => files::file_status(conn, req_id, f.file_id),
        ClientMessage::DeleteFile(f) => files::delete_file(conn, req_id, f.file_id).await,
        ClientMessage::GrantFileAccess(g) => files::grant_file_access(conn, req_id, g).await,
        ClientMessage::SetMeshSettings {
            group_bodies,
            signature,
            signed_at,
        } => settings::set_mesh_settings(
            conn,
            req_id,
            group_bodies,
            GroupBodiesProof::from_wire(signature.as_ref(), signed_at),
        ),
        ClientMessage::ApikeyCreate {} => conn.error(
            req_id,
            "not_supported",
            "this broker does not mint API keys: members sign their requests with their own keys",
        ),
        ClientMessage::SetState(s) => state::set_state(conn, req_id, s),
        ClientMessage::GetState { key } => state::get_state(conn, req_id, key),
        ClientMessage::ListState { cursor, limit } => {
            state::list_state(conn, req_id, cursor, limit)
        }
        ClientMessage::Remember(r) => memory::remember(conn, req_id, r),
        ClientMessage::Recall(r) => memory::recall(conn, req_id, r),
        ClientMessage::Forget { memory_id } => memory::forget(conn, req_id, memory_id),
        ClientMessage::ShareContext(c) => contexts::share_context(conn, req_id, c),
        ClientMessage::GetContext { query } => contexts::get_context(conn, req_id, query),
        ClientMessage::ListContexts { cursor, limit } => {
            contexts::list_contexts(conn, req_id, cursor, limit)
        }
        ClientMessage::CreateTask(t) => tasks::create_task(conn, req_id, t),
        ClientMessage::ClaimTask { task_id } => tasks::claim_task(conn, req_id, task_id),
        ClientMessage::CompleteTask { task_id, result } => {
            tasks::complete_task(conn, req_id, task_id, result)
        }
        ClientMessage::ReleaseTask { task_id } => tasks::release_task(conn, req_id, task_id),
        ClientMessage::ListTasks {
            status,
            assignee,
            cursor,
            limit,
        } => tasks::list_tasks(conn, req_id, status, assignee, cursor, limit),
        ClientMessage::CreateStream { name } => streams::create_stream(conn, req_id, name),
        ClientMessage::Subscribe { stream } => streams::subscribe(conn, req_id, stream),
        ClientMessage::Unsubscribe { stream } => streams::unsubscribe(conn, req_id, stream),
        ClientMessage::ListStreams {} => streams::list_streams(conn, req_id),
        ClientMessage::Publish { stream, data } => streams::publish(conn, req_id, stream, data),
        ClientMessage::Schedule(s) => reminders::schedule(conn, req_id, *s),
        ClientMessage::ListScheduled {} => reminders::list_scheduled(conn, req_id),
        ClientMessage::CancelScheduled { scheduled_id } => {
            reminders::cancel_scheduled(conn, req_id, scheduled_id)
        }
        ClientMessage::MeshInfo {} => info::mesh_info(conn, req_id),
        ClientMessage::Block { peer } => {
            grants::change(conn, req_id, peer, grants::Change::Block).await
        }
        ClientMessage::Unblock { peer } => {
            grants::change(conn, req_id, peer, grants::Change::Unblock).await
        }
        ClientMessage::SetGrants(s) => match grants::set_grants_change(s) {
            Ok((peer, change)) => grants::change(conn, req_id, peer, change).await,
            Err(e) => conn.error(req_id, "invalid_argument", e),
        },
        ClientMessage::ListGrants {} => grants::list_grants(conn, req_id),
        ClientMessage::SetStats { stats } => stats::set_stats(conn, req_id, stats),
        ClientMessage::MeshStats {} => stats::mesh_stats(conn, req_id),
        ClientMessage::RotateKey(r) => keys::rotate_key(conn, req_id, r),
        ClientMessage::GetKeys { since } => keys::get_keys(conn, req_id, since),
        ClientMessage::ListKeyHolders {} => keys::list_key_holders(conn, req_id),
        ClientMessage::GetAdmins {} => keys::get_admins(conn, req_id),
        ClientMessage::SetAdmins(list) => keys::set_admins(conn, req_id, list),
        ClientMessage::AuditQuery(q) => audit::audit_query(conn, req_id, q),
        ClientMessage::AuditVerify {} => audit::audit_verify(conn, req_id),
        ClientMessage::GetPerms { member } => perms::get_perms(conn, req_id, member),
        ClientMessage::SetPerms(s) => perms::set_perms(conn, req_id, s).await,
        ClientMessage::Kick { member, reason } => members::kick(conn, req_id, member, reason),
        ClientMessage::Disconnect { session } => members::disconnect(conn, req_id, session),
        ClientMessage::Ban { member, reason } => {
            // Like a revocation, a ban waits for the banned presences' frames to finish.
            drop(held);
            members::ban(conn, req_id, member, reason).await
        }
        ClientMessage::Unban { member } => members::unban(conn, req_id, member).await,
        ClientMessage::ListBans {} => members::list_bans(conn, req_id),
        ClientMessage::ShareSkill(s) => skills::share_skill(conn, req_id, *s),
        ClientMessage::GetSkill { name, version } => skills::get_skill(conn, req_id, name, version),
        ClientMessage::ListSkills {
            query,
            cursor,
            limit,
        } => skills::list_skills(conn, req_id, query, cursor, limit),
        ClientMessage::RemoveSkill { name } => skills::remove_skill(conn, req_id, name),
        ClientMessage::McpRegister(r) => shared_tools::mcp_register(conn, req_id, r),
        ClientMessage::McpUnregister { server_name } => {
            shared_tools::mcp_unregister(conn, req_id, server_name)
        }
        ClientMessage::McpList {} => shared_tools::mcp_list(conn, req_id),
        ClientMessage::McpCall(c) => shared_tools::mcp_call(conn, req_id, *c),
        ClientMessage::McpCallResponse(r) => shared_tools::mcp_call_response(conn, req_id, *r),
        ClientMessage::PeerFilesShare(s) => peer_files::share(conn, req_id, s),
        ClientMessage::PeerFilesUnshare {} => peer_files::unshare(conn, req_id),
        ClientMessage::PeerFileRequest(r) => peer_files::file_request(conn, req_id, *r),
        ClientMessage::PeerDirRequest(r) => peer_files::dir_request(conn, req_id, *r),
        ClientMessage::PeerFileResponse(r) => peer_files::file_response(conn, req_id, *r),
        ClientMessage::PeerDirResponse(r) => peer_files::dir_response(conn, req_id, *r),
        ClientMessage::McpDeploy(d) => deployments::mcp_deploy(conn, req_id, *d),
        ClientMessage::McpDeployCheck(c) => deployments::mcp_deploy_check(conn, req_id, *c),
        ClientMessage::McpUpdate(u) => deployments::mcp_update(conn, req_id, *u),
        ClientMessage::McpUndeploy { server_name } => {
            deployments::mcp_undeploy(conn, req_id, server_name)
        }
        ClientMessage::McpLogs { server_name, lines } => {
            deployments::mcp_logs(conn, req_id, server_name, lines)
        }
        ClientMessage::McpScope { server_name, scope } => {
            deployments::mcp_scope(conn, req_id, server_name, scope)
        }
        ClientMessage::McpSchema {
            server_name,
            tool_name,
        } => deployments::mcp_schema(conn, req_id, server_name, tool_name),
        ClientMessage::McpCatalog {} => deployments::mcp_catalog(conn, req_id),
        ClientMessage::McpDeployStatus { server_name } => {
            deployments::mcp_deploy_status(conn, req_id, server_name)
        }
        ClientMessage::VaultSet(s) => vault::vault_set(conn, req_id, *s),
        ClientMessage::VaultList {} => vault::vault_list(conn, req_id),
        ClientMessage::VaultGet { keys } => vault::vault_get(conn, req_id, keys),
        ClientMessage::VaultDelete { key } => vault::vault_delete(conn, req_id, key),
        ClientMessage::VaultServiceKey {} => vault::vault_service_key(conn, req_id),
        ClientMessage::MeshQuery(q) => sql::mesh_query(conn, req_id, q),
        ClientMessage::MeshExecute(q) => sql::mesh_execute(conn, req_id, q),
        ClientMessage::MeshSchema {} => sql::mesh_schema(conn, req_id),
        ClientMessage::GraphQuery(q) => graph::graph_query(conn, req_id, q),
        ClientMessage::GraphExecute(q) => graph::graph_execute(conn, req_id, q),
        ClientMessage::VectorCreate(c) => vectors::vector_create(conn, req_id, c),
        ClientMessage::VectorStore(s) => vectors::vector_store(conn, req_id, *s),
        ClientMessage::VectorSearch(s) => vectors::vector_search(conn, req_id, *s),
        ClientMessage::VectorDelete { collection, id } => {
            vectors::vector_delete(conn, req_id, collection, id)
        }
        ClientMessage::ListCollections {} => vectors::list_collections(conn, req_id),
        ClientMessage::VectorDeleteCollection { collection } => {
            vectors::vector_delete_collection(conn, req_id, collection)
        }
        ClientMessage::Watch(w) => watches::watch(conn, req_id, *w),
        ClientMessage::Unwatch { watch_id } => watches::unwatch(conn, req_id, watch_id),
        ClientMessage::WatchList {} => watches::watch_list(conn, req_id),
        ClientMessage::CreateWebhook(w) => webhooks::create_webhook(conn, req_id, w),
        ClientMessage::ListWebhooks {} => webhooks::list_webhooks(conn, req_id),
        ClientMessage::DeleteWebhook { name } => webhooks::delete_webhook(conn, req_id, name),
        ClientMessage::SetClock { speed } => clock::set_clock(conn, req_id, speed),
        ClientMessage::PauseClock {} => clock::pause_clock(conn, req_id),
        ClientMessage::ResumeClock {} => clock::resume_clock(conn, req_id),
        ClientMessage::GetClock {} => clock::get_clock(conn, req_id),
        ClientMessage::TelegramConnect(c) => telegram::telegram_connect(conn, req_id, c),
        ClientMessage::TelegramInvite {} => telegram::telegram_invite(conn, req_id),
        ClientMessage::TelegramDisconnect {} => telegram::telegram_disconnect(conn, req_id),
        ClientMessage::TelegramStatus {} => telegram::telegram_status(conn, req_id),
        ClientMessage::SetApprovers { approvers } => {
            approvals::set_approvers(conn, req_id, approvers).await
        }
        ClientMessage::GetApprovers {} => approvals::get_approvers(conn, req_id),
        ClientMessage::RequestApproval(r) => approvals::request_approval(conn, req_id, *r).await,
        ClientMessage::ListApprovals {} => approvals::list_approvals(conn, req_id),
        ClientMessage::AnswerApproval { id, behavior } => {
            approvals::answer_approval(conn, req_id, id, behavior).await
        }
    }
}
