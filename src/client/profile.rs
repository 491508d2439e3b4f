//! Typed calls for the profile (issue 13, PROTOCOL.md §12.7).

use super::{ClientError, MeshClient};
use crate::protocol::ClientMessage;
use crate::protocol::messages::Profile;

impl MeshClient {
    /// Changes the fields `patch` carries (an empty text or list clears one).
    pub async fn set_profile(&self, patch: Profile) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::SetProfile(patch)).await
    }

    /// This member's profile as the broker holds it (from this connection's own entry).
    pub async fn my_profile(&self) -> Result<Option<Profile>, ClientError> {
        let me = self.speaking_keys()?.public_hex();
        Ok(self
            .list_peers(None)
            .await?
            .into_iter()
            .find(|p| p.pubkey == me)
            .and_then(|p| p.profile))
    }
}
