//! Typed call for the mesh overview (PROTOCOL.md §6): `mesh_info`.

use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::MeshInfo;
use crate::protocol::{ClientMessage, ServerMessage};

impl MeshClient {
    pub async fn mesh_info(&self) -> Result<MeshInfo, ClientError> {
        match self.request(ClientMessage::MeshInfo {}).await? {
            ServerMessage::MeshInfoResult(info) => Ok(*info),
            other => Err(unexpected(other)),
        }
    }
}
