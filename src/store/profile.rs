//! What the broker remembers of a member between its sessions: groups, summary, last seen.

use redb::ReadableTable;

use super::records::MEMBERS;
use super::{Member, Store, StoreError, decode_opt, encode};

impl Store {
    /// Applies `change` to a stored member, if it exists.
    pub async fn update_member(
        &self,
        mesh_id: String,
        member_id: String,
        change: impl FnOnce(&mut Member) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut members = tx.open_table(MEMBERS)?;
            let found: Option<Member> =
                decode_opt(members.get((mesh_id.as_str(), member_id.as_str()))?)?;
            if let Some(mut member) = found {
                change(&mut member);
                members.insert(
                    (mesh_id.as_str(), member_id.as_str()),
                    encode(&member).as_slice(),
                )?;
            }
            Ok(())
        })
        .await
    }
}
