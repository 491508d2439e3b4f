//! Typed calls for the audit log (PROTOCOL.md §12.5): a page of it, and its verification.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{AuditQuery, AuditResult, AuditVerifyResult};
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// A page of the mesh's audit log, newest first (owner and admins only).
    pub async fn audit_query(&self, query: AuditQuery) -> Result<AuditResult, ClientError> {
        match self.request(ClientMessage::AuditQuery(query)).await? {
            ServerMessage::AuditResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    /// Has the broker recompute the audit chain; names the first broken record.
    pub async fn audit_verify(&self) -> Result<AuditVerifyResult, ClientError> {
        match self.request(ClientMessage::AuditVerify {}).await? {
            ServerMessage::AuditVerifyResult(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }
}
