//! A mesh's settings (PROTOCOL.md §5.2).

use super::{ClientError, MeshClient};
use crate::protocol::messages::{GroupBodies, GroupBodiesProof, MeshSettings};
use crate::protocol::{ClientMessage, ServerMessage, time};

impl MeshClient {
    /// The mesh's settings.
    pub async fn mesh_settings(&self) -> Result<MeshSettings, ClientError> {
        self.settings_request(None, None).await
    }

    /// Changes how group and broadcast bodies are written, signed with the owner key (which
    /// only the owner's machine holds).
    pub async fn set_group_bodies(&self, value: GroupBodies) -> Result<MeshSettings, ClientError> {
        let owner = self.entry().owner_keys().ok_or_else(|| ClientError::Broker {
            code: "forbidden".into(),
            message: "only the mesh's owner may change its settings, and this machine does not hold the owner key".into(),
        })??;
        let proof = GroupBodiesProof::sign(&owner, value, time::now_ms());
        self.settings_request(Some(value), Some(proof)).await
    }

    async fn settings_request(
        &self,
        value: Option<GroupBodies>,
        proof: Option<GroupBodiesProof>,
    ) -> Result<MeshSettings, ClientError> {
        let (signature, signed_at) = GroupBodiesProof::into_wire(proof);
        let request = ClientMessage::SetMeshSettings {
            group_bodies: value.map(|v| v.as_str().to_string()),
            signature,
            signed_at,
        };
        match self.request(request).await? {
            ServerMessage::MeshSettings(s) => Ok(s),
            other => Err(super::unexpected(other)),
        }
    }

    /// Whether group and broadcast bodies are written in plain base64 in this mesh: only when
    /// the owner chose it, which the owner key's signature shows. The broker alone cannot
    /// switch a client to plain (it would then read the group traffic).
    pub fn plain_group_bodies(&self) -> bool {
        let hello = self.hello.borrow();
        let Some(policy) = hello.mesh_policy.as_ref() else {
            return false;
        };
        policy.group_bodies.as_deref() == Some("plain")
            && GroupBodiesProof::from_wire(
                policy.group_bodies_signature.as_ref(),
                policy.group_bodies_signed_at,
            )
            .is_some_and(|p| p.verifies(&self.entry().owner_pubkey, "plain"))
    }
}
