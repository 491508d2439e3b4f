//! A mesh's settings (PROTOCOL.md §5.2).

use super::{ClientError, MeshClient};
use crate::protocol::messages::MeshSettings;
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    /// The mesh's settings; with `group_bodies`, changes that first (the owner only).
    pub async fn mesh_settings(
        &self,
        group_bodies: Option<String>,
    ) -> Result<MeshSettings, ClientError> {
        match self
            .request(ClientMessage::SetMeshSettings { group_bodies })
            .await?
        {
            ServerMessage::MeshSettings(s) => Ok(s),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Whether group and broadcast bodies are written in plain base64 in this mesh (its
    /// owner's choice, for meshes that include original claudemesh clients).
    pub fn plain_group_bodies(&self) -> bool {
        self.hello
            .borrow()
            .mesh_policy
            .as_ref()
            .is_some_and(|p| p.group_bodies.as_deref() == Some("plain"))
    }
}
