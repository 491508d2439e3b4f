//! `share_skill`, `get_skill`, `list_skills`, `remove_skill` (PROTOCOL.md §13): the mesh's
//! shared skills, kept in every version, ranked by the memory index, and announced to every
//! session with `skill_changed`.

use super::reply::{MAX_TEXT, Refusal, actor, answer, list, me, refuse, tags, text};
use crate::broker::connection::Conn;
use crate::broker::page::{BadCursor, Pager, decode_cursor, page_items};
use crate::broker::state::Broker;
use crate::protocol::messages::{Envelope, ShareSkill, SkillBundle, SkillChanged, SkillEntry};
use crate::protocol::{ServerMessage, ids, time};
use crate::store::{MAX_RECALL, SkillBundleRecord, SkillRecord, SkillRefusal, SkillRemoved};

/// Longest skill name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest description and `whenToUse`.
const MAX_DESCRIPTION: usize = 1024;
/// Longest instructions, in bytes: a `skill_data` with them must fit in one frame.
pub const MAX_INSTRUCTIONS: usize = MAX_TEXT;
/// Most files a bundle lists, and the longest path.
const MAX_BUNDLE_FILES: usize = 256;
const MAX_BUNDLE_PATH: usize = 256;
/// Longest short field (model, context, agent, argument hint, a tool name).
const MAX_FIELD: usize = 256;
/// Skills a keyword `list_skills` returns unless it asks for another number.
const DEFAULT_FOUND: usize = 20;

/// A skill name: 1-64 bytes of ASCII letters, digits, `-`, `_`, `.`, starting with a letter
/// or digit (it becomes a directory name and an MCP prompt name).
fn skill_name(name: &str) -> Result<String, Refusal> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(refuse(
            "invalid_argument",
            format!(
                "a skill name is 1-{MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit; \"{}\" is not",
                name.chars().take(80).collect::<String>()
            ),
        ))
    }
}

/// `name` or `name@version`.
fn name_and_version(name: &str, version: Option<u32>) -> Result<(String, Option<u32>), Refusal> {
    match name.rsplit_once('@') {
        Some((n, v)) => {
            let v: u32 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                refuse(
                    "invalid_argument",
                    format!("\"{name}\": a version is a number from 1 (name@2)"),
                )
            })?;
            Ok((skill_name(n)?, Some(v)))
        }
        None => Ok((skill_name(name)?, version)),
    }
}

fn optional(what: &str, value: Option<String>, max: usize) -> Result<Option<String>, Refusal> {
    match value {
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => text(what, &v, max).map(Some),
        None => Ok(None),
    }
}

/// A bundle names a file of this mesh (one it may not read is refused when fetched).
fn bundle(
    broker: &Broker,
    mesh_id: &str,
    b: Option<SkillBundle>,
) -> Result<Option<SkillBundleRecord>, Refusal> {
    let Some(b) = b else {
        return Ok(None);
    };
    if !ids::is_id(&b.file_id) || broker.store.file(mesh_id, &b.file_id)?.is_none() {
        return Err(refuse(
            "invalid_argument",
            format!(
                "bundle.fileId \"{}\" names no file of this mesh: share the archive first",
                b.file_id.chars().take(80).collect::<String>()
            ),
        ));
    }
    let files = list(
        "bundle files",
        Some(b.files),
        MAX_BUNDLE_FILES,
        MAX_BUNDLE_PATH,
    )?;
    Ok(Some(SkillBundleRecord {
        file_id: b.file_id,
        files,
    }))
}

fn entry(r: SkillRecord, with_instructions: bool, score: Option<f32>) -> SkillEntry {
    SkillEntry {
        name: r.name,
        version: r.version,
        description: r.description,
        instructions: with_instructions.then_some(r.instructions),
        tags: r.tags,
        when_to_use: r.when_to_use,
        allowed_tools: r.allowed_tools,
        model: r.model,
        argument_hint: r.argument_hint,
        user_invocable: r.user_invocable,
        context: r.context,
        agent: r.agent,
        bundle: r.bundle.map(|b| SkillBundle {
            file_id: b.file_id,
            files: b.files,
        }),
        author: r.author,
        created_at: time::iso(r.shared_at_ms),
        score,
    }
}

/// Tells every session of the mesh that listens for events (the sharer's too, so its own MCP
/// server refreshes its prompts).
fn announce(broker: &Broker, mesh_id: &str, change: SkillChanged) {
    let frame = Envelope::new(ServerMessage::SkillChanged(change));
    for peer in broker.presence.peers(mesh_id) {
        if peer.hears_events() {
            peer.send(&frame);
        }
    }
}

pub fn share_skill(conn: &Conn, req_id: Option<String>, req: ShareSkill) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        if req.instructions.len() > MAX_INSTRUCTIONS {
            return Err(refuse(
                "payload_too_large",
                format!(
                    "the instructions are {} bytes; the limit is {MAX_INSTRUCTIONS}",
                    req.instructions.len()
                ),
            ));
        }
        let record = SkillRecord {
            mesh_id: peer.mesh_id.clone(),
            name: skill_name(&req.name)?,
            version: 0,
            description: text("description", &req.description, MAX_DESCRIPTION)?,
            instructions: text("instructions", &req.instructions, MAX_INSTRUCTIONS)?,
            tags: tags(req.tags)?,
            when_to_use: optional("whenToUse", req.when_to_use, MAX_DESCRIPTION)?,
            allowed_tools: list("allowedTools", req.allowed_tools, 64, MAX_FIELD)?,
            model: optional("model", req.model, MAX_FIELD)?,
            argument_hint: optional("argumentHint", req.argument_hint, MAX_FIELD)?,
            user_invocable: req.user_invocable,
            context: optional("context", req.context, MAX_FIELD)?,
            agent: optional("agent", req.agent, MAX_FIELD)?,
            bundle: bundle(&broker, &peer.mesh_id, req.bundle)?,
            author: peer.display_name.clone(),
            member_id: peer.member_id.clone(),
            shared_at_ms: time::now_ms(),
            creator_id: String::new(),
            creator: String::new(),
        };
        let manages = actor(&broker, &peer).manages;
        let stored = broker
            .memory
            .share_skill(&broker.store, record, manages)
            .await?
            .map_err(|e| match e {
                SkillRefusal::TooMany => refuse("quota_exceeded", e.to_string()),
                SkillRefusal::NotYours(_) => refuse("forbidden", e.to_string()),
            })?;
        announce(
            &broker,
            &peer.mesh_id,
            SkillChanged {
                name: stored.name.clone(),
                action: "shared".into(),
                version: Some(stored.version),
                by: peer.display_name.clone(),
            },
        );
        Ok(Some(ServerMessage::SkillAck {
            name: stored.name,
            action: "shared".into(),
            version: Some(stored.version),
        }))
    });
}

pub fn get_skill(conn: &Conn, req_id: Option<String>, name: String, version: Option<u32>) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let (name, version) = name_and_version(&name, version)?;
        let skill = broker
            .store
            .skill(&peer.mesh_id, &name, version)?
            .map(|r| Box::new(entry(r, true, None)));
        Ok(Some(ServerMessage::SkillData { skill }))
    });
}

/// Without a query: one page of the skills in name order. With one: the best matches, best
/// first, paged like `recall`.
pub fn list_skills(
    conn: &Conn,
    req_id: Option<String>,
    query: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let query = query.filter(|q| !q.trim().is_empty());
        let (skills, next_cursor) = match query {
            None => {
                let after = decode_cursor(cursor.as_deref())?;
                let mut page = Pager::new(limit);
                broker
                    .store
                    .scan_skills(&peer.mesh_id, after.as_deref(), |name, r| {
                        page.offer(name, Some(entry(r, false, None)))
                    })?;
                page.finish()
            }
            Some(query) => {
                let offset = match decode_cursor(cursor.as_deref())? {
                    Some(n) => n.parse::<usize>().map_err(|_| BadCursor)?,
                    None => 0,
                };
                let end = (offset + page_items(limit, DEFAULT_FOUND)).min(MAX_RECALL);
                let mut page = Pager::with_items(end.saturating_sub(offset));
                if offset < end {
                    let probe = usize::from(end < MAX_RECALL);
                    let found = broker.memory.find_skills(
                        &broker.store,
                        &peer.mesh_id,
                        &query,
                        offset,
                        end - offset + probe,
                    )?;
                    for (i, (r, score)) in found.into_iter().enumerate() {
                        if !page.offer(
                            &(offset + i + 1).to_string(),
                            Some(entry(r, false, Some(score))),
                        ) {
                            break;
                        }
                    }
                }
                page.finish()
            }
        };
        Ok(Some(ServerMessage::SkillList {
            skills,
            next_cursor,
        }))
    });
}

/// Only the member who first shared a skill or an owner/admin may remove it.
pub fn remove_skill(conn: &Conn, req_id: Option<String>, name: String) {
    let Some((broker, peer)) = me(conn) else {
        return;
    };
    answer(conn, req_id, async move {
        let name = skill_name(&name)?;
        let by = actor(&broker, &peer);
        let outcome = broker
            .memory
            .remove_skill(&broker.store, &peer.mesh_id, &name, by)
            .await?;
        let action = match outcome {
            SkillRemoved::Done(_) => "removed",
            SkillRemoved::NotFound => "not_found",
            SkillRemoved::NotYours(author) => {
                return Err(refuse(
                    "forbidden",
                    format!(
                        "skill {name} was shared by {author}: only its author or a mesh owner or admin may remove it"
                    ),
                ));
            }
        };
        if action == "removed" {
            announce(
                &broker,
                &peer.mesh_id,
                SkillChanged {
                    name: name.clone(),
                    action: action.into(),
                    version: None,
                    by: peer.display_name.clone(),
                },
            );
        }
        Ok(Some(ServerMessage::SkillAck {
            name,
            action: action.into(),
            version: None,
        }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert_eq!(
            name_and_version("deploy@2", None).ok(),
            Some(("deploy".to_string(), Some(2)))
        );
        assert_eq!(
            name_and_version("deploy", Some(3)).ok(),
            Some(("deploy".to_string(), Some(3)))
        );
        for bad in ["deploy@0", "deploy@x", "../x", "", "-x", "a b", "é"] {
            assert!(name_and_version(bad, None).is_err(), "{bad}");
        }
    }
}
