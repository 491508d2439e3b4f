//! What the broker remembers of a member between its sessions: groups, summary, last seen,
//! and the profile it set (`set_profile`).

use redb::ReadableTable;

use crate::protocol::messages::Profile;

use super::audit::{self, AuditActor, AuditEvent, AuditNote};
use super::cache::Key;
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

/// `(mesh_id, member_id) → Profile`: what a member tells about itself (issue 13), kept so a
/// reconnecting session has it again.
pub(crate) const PROFILES: redb::TableDefinition<(&str, &str), &[u8]> =
    redb::TableDefinition::new("profiles");

/// Opens the profile table (called from `records::create_tables`).
pub(crate) fn create_tables(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    tx.open_table(PROFILES)?;
    Ok(())
}

/// Why a profile change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRefusal {
    /// Another member (not revoked) goes by that display name, ignoring case.
    NameTaken(String),
    /// No such member.
    NoMember,
}

impl Store {
    /// The members of a mesh whose profile says `messageMode: off`.
    pub fn members_with_messages_off(
        &self,
        mesh_id: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rt = self.read()?;
        let table = rt.open_table(PROFILES)?;
        let mut out = std::collections::HashSet::new();
        for row in table.range((mesh_id, "")..)? {
            let (k, v) = row?;
            let (mesh, member_id) = k.value();
            if mesh != mesh_id {
                break;
            }
            let p: Profile = super::decode(v.value())?;
            if turned_off(&p) {
                out.insert(member_id.to_string());
            }
        }
        Ok(out)
    }

    /// A member's stored profile, if it set one.
    pub fn profile(&self, mesh_id: &str, member_id: &str) -> Result<Option<Profile>, StoreError> {
        let rt = self.read()?;
        decode_opt(rt.open_table(PROFILES)?.get((mesh_id, member_id))?)
    }

    /// Whether the member turned direct messages off (`message_mode` "off"): asked for every
    /// direct send, so answered from memory until the next commit outside the message queue.
    pub fn messages_off(&self, mesh_id: &str, member_id: &str) -> Result<bool, StoreError> {
        self.caches.messages_off.get_or_read(
            &self.shared.general_commits,
            Key((mesh_id, member_id)),
            || {
                Ok(self
                    .profile(mesh_id, member_id)?
                    .is_some_and(|p| turned_off(&p)))
            },
        )
    }

    /// Merges `patch` into the member's profile (a field present replaces, an empty text or
    /// list clears) and stores it; a new display name is also the member's name (`members`,
    /// name lookups), unique in the mesh like a claimed one. Returns the merged profile.
    pub async fn merge_profile(
        &self,
        mesh_id: String,
        member_id: String,
        patch: Profile,
    ) -> Result<Result<Profile, ProfileRefusal>, StoreError> {
        self.write(move |tx| {
            let mut members = tx.open_table(MEMBERS)?;
            let Some(mut member): Option<Member> =
                decode_opt(members.get((mesh_id.as_str(), member_id.as_str()))?)?
            else {
                return Ok(Err(ProfileRefusal::NoMember));
            };
            let mut profiles = tx.open_table(PROFILES)?;
            let mut profile: Profile =
                decode_opt(profiles.get((mesh_id.as_str(), member_id.as_str()))?)?
                    .unwrap_or_default();
            if let Some(name) = &patch.display_name
                && *name != member.display_name
            {
                let wanted = crate::protocol::LookAlike::of(name);
                for row in members.range((mesh_id.as_str(), "")..)? {
                    let (k, v) = row?;
                    if k.value().0 != mesh_id {
                        break;
                    }
                    let other: Member = super::decode(v.value())?;
                    if other.id != member_id
                        && other.revoked_at_ms.is_none()
                        && wanted.matches(&other.display_name)
                    {
                        return Ok(Err(ProfileRefusal::NameTaken(name.clone())));
                    }
                }
                let note = AuditNote::new(
                    AuditEvent::MemberRenamed,
                    AuditActor::member(&member_id, &member.display_name),
                )
                .with("memberId", &member_id)
                .with("from", &member.display_name)
                .with("to", name);
                audit::append(tx, &mesh_id, &note, crate::protocol::time::now_ms())?;
                member.display_name = name.clone();
                members.insert(
                    (mesh_id.as_str(), member_id.as_str()),
                    encode(&member).as_slice(),
                )?;
            }
            merge(&mut profile, patch);
            profiles.insert(
                (mesh_id.as_str(), member_id.as_str()),
                encode(&profile).as_slice(),
            )?;
            Ok(Ok(profile))
        })
        .await
    }
}

/// A field of `patch` that is present replaces the stored one; an empty one clears it.
fn merge(profile: &mut Profile, patch: Profile) {
    fn text(slot: &mut Option<String>, value: Option<String>) {
        if let Some(v) = value {
            *slot = (!v.is_empty()).then_some(v);
        }
    }
    text(&mut profile.display_name, patch.display_name);
    text(&mut profile.role_tag, patch.role_tag);
    text(&mut profile.avatar, patch.avatar);
    text(&mut profile.title, patch.title);
    text(&mut profile.bio, patch.bio);
    text(&mut profile.message_mode, patch.message_mode);
    if let Some(c) = patch.capabilities {
        profile.capabilities = (!c.is_empty()).then_some(c);
    }
}

/// Whether the profile turns direct messages off.
fn turned_off(p: &Profile) -> bool {
    p.message_mode.as_deref() == Some("off")
}
