//! Typed calls for capabilities (PROTOCOL.md §12.1): `get_perms`, `set_perms`.

use super::keys::AdminChange;
use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{PermsEntry, SetPerms};
use crate::protocol::{ClientMessage, ServerMessage};

fn entries(answer: ServerMessage) -> Result<Vec<PermsEntry>, ClientError> {
    match answer {
        ServerMessage::Perms { entries } => Ok(entries),
        other => Err(unexpected(other)),
    }
}

impl MeshClient {
    /// One member's capabilities (member id, pubkey or display name), or every member's.
    pub async fn get_perms(&self, member: Option<&str>) -> Result<Vec<PermsEntry>, ClientError> {
        entries(
            self.request(ClientMessage::GetPerms {
                member: member.map(String::from),
            })
            .await?,
        )
    }

    /// Changes a member's overrides and/or role; returns the member as it now is. A role
    /// change made where the owner key is held also updates the owner's signed admin list (who
    /// may rotate the root key, PROTOCOL.md §12.4): an admin is added to it, a member removed.
    pub async fn set_perms(&self, change: SetPerms) -> Result<PermsEntry, ClientError> {
        let role = change.role.clone();
        let entry = entries(self.request(ClientMessage::SetPerms(change)).await?)?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("an empty perms answer".into()))?;
        if let Some(role) = role
            && self.holds_owner_key()
        {
            // What the owner asked for decides, not what the answer says.
            if role == "admin" {
                self.change_admins(&entry.pubkey, AdminChange::Add).await?;
            } else {
                self.change_admins(&entry.pubkey, AdminChange::Remove)
                    .await?;
                self.prune_admins().await?;
            }
        }
        Ok(entry)
    }
}
