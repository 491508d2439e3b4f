//! `set_profile` (PROTOCOL.md §5, extended by issue 13, §12.7): display name, role tag,
//! title, bio, avatar, capabilities and message mode, kept per member (so the next session has
//! it) and on every live presence of the member, announced as `profile_updated`.

use super::peers::check_len;
use crate::broker::connection::Conn;
use crate::broker::limits::{
    MAX_AVATAR_BYTES, MAX_BIO_BYTES, MAX_CAPABILITIES, MAX_CAPABILITY_BYTES, MAX_ROLE_TAG_BYTES,
    MAX_TITLE_BYTES,
};
use crate::broker::router;
use crate::protocol::messages::Profile;
use crate::protocol::{MAX_DISPLAY_NAME, clean_display_name, reserved_name_refusal};
use crate::store::ProfileRefusal;

/// The message modes a member may choose.
const MESSAGE_MODES: [&str; 3] = ["push", "inbox", "off"];

type Refusal = (&'static str, String);

fn invalid(message: String) -> Refusal {
    ("invalid_argument", message)
}

/// Refuses text with control characters (they would reach every peer's terminal).
fn printable(field: &str, value: Option<&str>) -> Result<(), Refusal> {
    match value {
        Some(v) if v.chars().any(char::is_control) => Err(invalid(format!(
            "{field} holds control characters; use printable text"
        ))),
        _ => Ok(()),
    }
}

/// A profile within its limits, or which field is wrong.
fn check_profile(p: &Profile) -> Result<(), Refusal> {
    if let Some(name) = &p.display_name {
        printable("displayName", Some(name))?;
        if clean_display_name(name).as_deref() != Some(name.as_str()) {
            return Err(invalid(format!(
                "displayName must be 1-{MAX_DISPLAY_NAME} characters without leading or trailing spaces or invisible characters"
            )));
        }
        if let Some(why) = reserved_name_refusal("displayName", name) {
            return Err(invalid(why));
        }
    }
    for (field, value, max) in [
        ("roleTag", &p.role_tag, MAX_ROLE_TAG_BYTES),
        ("title", &p.title, MAX_TITLE_BYTES),
        ("bio", &p.bio, MAX_BIO_BYTES),
        ("avatar", &p.avatar, MAX_AVATAR_BYTES),
    ] {
        check_len(field, value.as_deref(), max)?;
        printable(field, value.as_deref())?;
    }
    if let Some(avatar) = &p.avatar
        && avatar
            .chars()
            .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace())
    {
        return Err(invalid(
            "avatar is an emoji (no letters, digits or spaces)".into(),
        ));
    }
    let capabilities = p.capabilities.as_deref().unwrap_or_default();
    if capabilities.len() > MAX_CAPABILITIES {
        return Err((
            "payload_too_large",
            format!(
                "capabilities lists {} entries; the limit is {MAX_CAPABILITIES}",
                capabilities.len()
            ),
        ));
    }
    for c in capabilities {
        check_len("a capability", Some(c), MAX_CAPABILITY_BYTES)?;
        printable("a capability", Some(c))?;
        if c.trim().is_empty() {
            return Err(invalid("a capability cannot be empty".into()));
        }
    }
    if let Some(mode) = &p.message_mode
        && !mode.is_empty()
        && !MESSAGE_MODES.contains(&mode.as_str())
    {
        return Err(invalid(format!(
            "messageMode must be push, inbox or off, not \"{}\"",
            mode.chars().take(32).collect::<String>()
        )));
    }
    Ok(())
}

pub async fn set_profile(conn: &Conn, req_id: Option<String>, patch: Profile) {
    let Some(me) = conn.peer.clone() else { return };
    if let Err((code, message)) = check_profile(&patch) {
        return conn.error(req_id, code, message);
    }
    let broker = &conn.broker;
    let merged = broker
        .store
        .merge_profile(me.mesh_id.clone(), me.member_id.clone(), patch)
        .await;
    let profile = match merged {
        Ok(Ok(p)) => p,
        Ok(Err(ProfileRefusal::NameTaken(name))) => {
            return conn.error(
                req_id,
                "name_taken",
                format!("another member is already called \"{name}\" or a name that looks the same (letters from another script, other case)"),
            );
        }
        Ok(Err(ProfileRefusal::NoMember)) => {
            return conn.error(req_id, "not_found", "this member is gone");
        }
        Err(e) => return conn.error(req_id, "internal", e.to_string()),
    };
    for peer in broker.presence.peers(&me.mesh_id) {
        if peer.member_id != me.member_id {
            continue;
        }
        let released = {
            let mut st = peer.state();
            let was_held = st.holds_messages();
            st.profile = Some(profile.clone());
            was_held && !st.holds_messages()
        };
        if released {
            // Back to push: what the inbox held goes out now.
            router::deliver_pending(broker, &peer, false);
        }
        router::announce(broker, &peer, "profile_updated");
    }
    conn.reply(req_id, super::reply::ok_ack());
}
