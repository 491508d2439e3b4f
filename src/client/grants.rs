//! Typed calls for per-peer grants and blocks (issue 13, PROTOCOL.md §12.3).

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{GrantEntry, SetGrants};
use crate::protocol::{ClientMessage, ServerMessage};

fn grants(answer: ServerMessage) -> Result<(Vec<GrantEntry>, bool), ClientError> {
    match answer {
        ServerMessage::Grants { grants, truncated } => Ok((grants, truncated)),
        other => Err(unexpected(other)),
    }
}

fn one(answer: ServerMessage) -> Result<GrantEntry, ClientError> {
    grants(answer)?
        .0
        .into_iter()
        .next()
        .ok_or_else(|| ClientError::Protocol("the broker answered with no grant entry".into()))
}

impl MeshClient {
    /// What a person typed as a peer (display name, key prefix, pubkey or member id), as the
    /// wire's `peer`: a member id or a 64-hex key. One member only; groups are refused.
    pub async fn resolve_peer(&self, peer: &str) -> Result<String, ClientError> {
        let peer = peer.trim();
        let refuse = |message: String| ClientError::Broker {
            code: "invalid_argument".into(),
            message,
        };
        if peer.starts_with('@') || peer == "*" || peer.contains(',') {
            return Err(refuse(format!(
                "\"{peer}\" is not one peer: give a display name, key prefix or member id"
            )));
        }
        if self
            .list_members()
            .await?
            .iter()
            .any(|m| m.member_id == peer)
        {
            return Ok(peer.to_string());
        }
        let targets = self.resolve_targets(peer).await?;
        match targets.as_slice() {
            [one] if one.is_direct() => Ok(one.spec.clone()),
            _ => Err(refuse(format!("\"{peer}\" is not one peer"))),
        }
    }

    /// Denies `peer` everything towards this member.
    pub async fn block(&self, peer: &str) -> Result<GrantEntry, ClientError> {
        one(self
            .request(ClientMessage::Block { peer: peer.into() })
            .await?)
    }

    /// Gives `peer` back everything (the default).
    pub async fn unblock(&self, peer: &str) -> Result<GrantEntry, ClientError> {
        one(self
            .request(ClientMessage::Unblock { peer: peer.into() })
            .await?)
    }

    pub async fn set_grants(
        &self,
        peer: &str,
        grant: Vec<String>,
        revoke: Vec<String>,
    ) -> Result<GrantEntry, ClientError> {
        one(self
            .request(ClientMessage::SetGrants(SetGrants {
                peer: peer.into(),
                grant: (!grant.is_empty()).then_some(grant),
                revoke: (!revoke.is_empty()).then_some(revoke),
            }))
            .await?)
    }

    /// The members this member restricts, and whether the list was cut.
    pub async fn list_grants(&self) -> Result<(Vec<GrantEntry>, bool), ClientError> {
        grants(self.request(ClientMessage::ListGrants {}).await?)
    }
}
