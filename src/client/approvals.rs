//! Remote approval of tool use (issue 18, PROTOCOL.md §25): the calls an MCP server, the CLI
//! and a dashboard make. A prompt is sealed here, per approver (crypto_box from the speaking
//! key to each approver's member key), and opened here with this member's key; the broker
//! only routes it.
//!
//! For a dashboard: [`MeshClient::pending_approvals`] lists what this member may answer,
//! [`MeshClient::answer_approval`] answers, and [`ApprovalUpdate::from_push`] turns the
//! frames of [`MeshClient::next_push`] into "a request arrived" / "a request was decided".

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::{ClientError, MeshClient, unexpected};
use crate::crypto;
use crate::protocol::messages::{
    ApprovalDecision, ApprovalEntry, ApproverEntry, RequestApproval, SealedApproval,
};
use crate::protocol::{ClientMessage, Pubkey, ServerMessage, time};

/// What Claude Code asks (`notifications/claude/channel/permission_request` params), and
/// what is sealed for each approver.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PermissionPrompt {
    pub request_id: String,
    pub tool_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub input_preview: String,
}

/// A request as an approver reads it, opened with this member's key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub request_id: String,
    pub requester: String,
    pub requester_member_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub age_secs: i64,
    /// `pending`, `allow`, `deny` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The prompt, or why it could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_preview: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A push about approvals, for whoever shows them live.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalUpdate {
    /// A request this member may answer arrived.
    Requested(Approval),
    /// A request this member could answer was decided (by anyone).
    Decided(Approval),
    /// The answer to one of this session's own requests.
    Answered(ApprovalDecision),
}

/// The approver list as stored, and whom it names now.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Approvers {
    pub approvers: Vec<String>,
    pub resolved: Vec<ApproverEntry>,
}

fn approvers(answer: ServerMessage) -> Result<Approvers, ClientError> {
    match answer {
        ServerMessage::Approvers {
            approvers,
            resolved,
        } => Ok(Approvers {
            approvers,
            resolved,
        }),
        other => Err(unexpected(other)),
    }
}

impl ApprovalUpdate {
    /// The approval news in a pushed frame, opened with `client`'s member key; `None` for
    /// any other frame.
    pub fn from_push(client: &MeshClient, frame: &ServerMessage) -> Option<ApprovalUpdate> {
        match frame {
            ServerMessage::ApprovalEvent { event, approval } => {
                let opened = client.open_approval(approval);
                Some(if event == "requested" {
                    ApprovalUpdate::Requested(opened)
                } else {
                    ApprovalUpdate::Decided(opened)
                })
            }
            ServerMessage::ApprovalDecided(d) => Some(ApprovalUpdate::Answered(d.clone())),
            _ => None,
        }
    }
}

impl MeshClient {
    /// Replaces this member's approvers: member ids or keys (see
    /// [`MeshClient::resolve_peer`] for names) and `@group`s; empty clears the list.
    pub async fn set_approvers(&self, list: Vec<String>) -> Result<Approvers, ClientError> {
        approvers(
            self.request(ClientMessage::SetApprovers { approvers: list })
                .await?,
        )
    }

    pub async fn get_approvers(&self) -> Result<Approvers, ClientError> {
        approvers(self.request(ClientMessage::GetApprovers {}).await?)
    }

    /// Seals `prompt` for each current approver and hands it to the broker; `Ok(None)` when
    /// this member has no approver (nothing leaves this machine). Returns the broker's id.
    pub async fn request_approval(
        &self,
        prompt: &PermissionPrompt,
        ttl_secs: Option<u64>,
    ) -> Result<Option<String>, ClientError> {
        let resolved = self.get_approvers().await?.resolved;
        if resolved.is_empty() {
            return Ok(None);
        }
        let body = serde_json::to_vec(prompt).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mine = self.speaking_keys()?.to_x25519();
        let mut copies = Vec::with_capacity(resolved.len());
        for a in &resolved {
            let to = Pubkey::parse(&a.pubkey).map_err(|e| ClientError::Protocol(e.to_string()))?;
            let their = crypto::ed25519_pk_to_x25519(&to.0)
                .map_err(|e| ClientError::Protocol(format!("{}: {e}", a.display_name)))?;
            let nonce: [u8; 24] = crypto::random_bytes();
            let ct = crypto::box_easy(&body, &nonce, &their, &mine.secret)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            copies.push(SealedApproval {
                member_id: a.member_id.clone(),
                nonce: STANDARD.encode(nonce),
                ciphertext: STANDARD.encode(ct),
            });
        }
        let request = RequestApproval {
            request_id: prompt.request_id.clone(),
            ttl_secs,
            copies,
        };
        match self
            .request(ClientMessage::RequestApproval(Box::new(request)))
            .await?
        {
            ServerMessage::ApprovalRequested { id, .. } => Ok(Some(id)),
            other => Err(unexpected(other)),
        }
    }

    /// Opens this member's copy of a request.
    pub fn open_approval(&self, e: &ApprovalEntry) -> Approval {
        let mut out = Approval {
            id: e.id.clone(),
            request_id: e.request_id.clone(),
            requester: e.requester_name.clone(),
            requester_member_id: e.requester_member_id.clone(),
            created_at: e.created_at,
            expires_at: e.expires_at,
            age_secs: ((time::now_ms() - e.created_at) / 1000).max(0),
            status: e.status.clone(),
            decided_by: e.decided_by.clone(),
            tool_name: None,
            description: None,
            input_preview: None,
            problem: None,
        };
        match self.open_prompt(e) {
            Ok(p) => {
                out.tool_name = Some(p.tool_name);
                out.description = Some(p.description);
                out.input_preview = Some(p.input_preview);
            }
            Err(problem) => out.problem = Some(problem),
        }
        out
    }

    fn open_prompt(&self, e: &ApprovalEntry) -> Result<PermissionPrompt, String> {
        let nonce: [u8; 24] = STANDARD
            .decode(&e.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or("the nonce is not 24 bytes of base64")?;
        let body = STANDARD
            .decode(&e.ciphertext)
            .map_err(|_| "the ciphertext is not base64")?;
        let sender = Pubkey::parse(&e.requester_pubkey).map_err(|e| format!("sender key: {e}"))?;
        let their = crypto::ed25519_pk_to_x25519(&sender.0).map_err(|e| e.to_string())?;
        let mine = self
            .options
            .entry
            .member_keys()
            .map_err(|e| e.to_string())?
            .to_x25519();
        let plain = crypto::box_open_easy(&body, &nonce, &their, &mine.secret)
            .map_err(|_| "cannot decrypt: not sealed to this member, or tampered".to_string())?;
        let prompt: PermissionPrompt =
            serde_json::from_slice(&plain).map_err(|e| format!("unreadable prompt: {e}"))?;
        // The broker must not pass one request's prompt off as another's.
        if prompt.request_id != e.request_id {
            return Err("the sealed prompt belongs to another request".into());
        }
        Ok(prompt)
    }

    /// The pending requests this member may answer, opened.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>, ClientError> {
        match self.request(ClientMessage::ListApprovals {}).await? {
            ServerMessage::Approvals { approvals } => {
                Ok(approvals.iter().map(|e| self.open_approval(e)).collect())
            }
            other => Err(unexpected(other)),
        }
    }

    /// Answers a request: `allow` true or false. The broker refuses a member who is not its
    /// approver (`forbidden`), and an expired or already answered request.
    pub async fn answer_approval(
        &self,
        id: &str,
        allow: bool,
    ) -> Result<ApprovalDecision, ClientError> {
        let behavior = if allow { "allow" } else { "deny" };
        match self
            .request(ClientMessage::AnswerApproval {
                id: id.to_string(),
                behavior: behavior.into(),
            })
            .await?
        {
            ServerMessage::ApprovalDecided(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// The pending requests, waiting for the first to arrive when there is none (reads the
    /// push stream: use it on a connection nothing else reads pushes from).
    pub async fn wait_for_approvals(&self) -> Result<Vec<Approval>, ClientError> {
        loop {
            let pending = self.pending_approvals().await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            loop {
                let frame = self.next_push().await.ok_or(ClientError::Closed)?;
                if let Some(ApprovalUpdate::Requested(_)) = ApprovalUpdate::from_push(self, &frame)
                {
                    break;
                }
            }
        }
    }
}
