//! The mesh's skills as MCP prompts (`prompts/list`, `prompts/get`, arguments filled into the
//! instructions) and as `skill://<mesh>/<name>` resources (`resources/list`,
//! `resources/read`, the skill's SKILL.md). Read live from the broker at each request; the
//! hub sends `list_changed` when a `skill_changed` event arrives.

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    GetPromptResult, ListPromptsResult, ListResourcesResult, Prompt, PromptArgument, PromptMessage,
    ReadResourceResult, Resource, ResourceContents, Role,
};
use serde_json::{Map, Value};

use super::hub::{Hub, Link};
use crate::client::MeshClient;
use crate::client::skills::{skill_md, split_version};

const SCHEME: &str = "skill://";

/// A prompt's name: the skill's, prefixed `<mesh-slug>:` when several meshes are joined.
fn prompt_name(hub: &Hub, link: &Link, skill: &str) -> String {
    if hub.links.len() > 1 {
        format!("{}:{skill}", link.entry.slug)
    } else {
        skill.to_string()
    }
}

fn resource_uri(link: &Link, skill: &str) -> String {
    format!("{SCHEME}{}/{skill}", link.entry.slug)
}

/// The connected meshes.
fn connected(hub: &Hub) -> Vec<(Arc<Link>, Arc<MeshClient>)> {
    hub.links
        .iter()
        .filter_map(|l| l.client().map(|c| (l.clone(), c)))
        .collect()
}

fn broker_error(e: impl std::fmt::Display) -> McpError {
    McpError::internal_error(format!("the broker did not answer: {e}"), None)
}

pub async fn list_prompts(hub: &Hub) -> Result<ListPromptsResult, McpError> {
    let mut prompts = Vec::new();
    for (link, client) in connected(hub) {
        for s in client.list_skills(None).await.map_err(broker_error)? {
            // `user-invocable: false` keeps a skill out of the slash menu, as in Claude Code.
            if s.user_invocable == Some(false) {
                continue;
            }
            let args = skill_md::prompt_args(s.argument_hint.as_deref())
                .into_iter()
                .map(|a| {
                    let mut arg = PromptArgument::new(a.name);
                    arg.required = Some(a.required);
                    arg
                })
                .collect();
            prompts.push(Prompt::new(
                prompt_name(hub, &link, &s.name),
                Some(s.description),
                Some(args),
            ));
        }
    }
    Ok(ListPromptsResult::with_all_items(prompts))
}

pub async fn get_prompt(
    hub: &Hub,
    name: &str,
    arguments: Option<Map<String, Value>>,
) -> Result<GetPromptResult, McpError> {
    let (slug, skill) = match name.split_once(':') {
        Some((slug, skill)) => (Some(slug), skill),
        None => (None, name),
    };
    let (_, client) = hub
        .link(slug)
        .map_err(|e| McpError::invalid_params(e, None))?;
    let (skill, version) = split_version(skill);
    let found = client
        .get_skill(skill, version)
        .await
        .map_err(broker_error)?
        .ok_or_else(|| {
            McpError::invalid_params(format!("no skill \"{name}\" in the mesh"), None)
        })?;
    let given = arguments.unwrap_or_default();
    let mut filled: Vec<(String, String)> = Vec::new();
    for a in skill_md::prompt_args(found.argument_hint.as_deref()) {
        let value = match given.get(&a.name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        if a.required && value.is_empty() {
            return Err(McpError::invalid_params(
                format!("the prompt {name} needs the argument \"{}\"", a.name),
                None,
            ));
        }
        filled.push((a.name, value));
    }
    let text = skill_md::fill(found.instructions.as_deref().unwrap_or(""), &filled);
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(found.description),
    )
}

pub async fn list_resources(hub: &Hub) -> Result<ListResourcesResult, McpError> {
    let mut resources = Vec::new();
    for (link, client) in connected(hub) {
        for s in client.list_skills(None).await.map_err(broker_error)? {
            resources.push(
                Resource::new(resource_uri(&link, &s.name), s.name.clone())
                    .with_description(s.description)
                    .with_mime_type("text/markdown"),
            );
        }
    }
    Ok(ListResourcesResult::with_all_items(resources))
}

/// `skill://<mesh-slug>/<name>` (or `<name>@<version>`): the skill's SKILL.md.
pub async fn read_resource(hub: &Hub, uri: &str) -> Result<ReadResourceResult, McpError> {
    let not_found = || McpError::resource_not_found(format!("no skill at {uri}"), None);
    let (slug, skill) = uri
        .strip_prefix(SCHEME)
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| {
            McpError::invalid_params(
                format!("{uri}: a skill resource is skill://<mesh-slug>/<name>"),
                None,
            )
        })?;
    let (_, client) = hub
        .link(Some(slug))
        .map_err(|e| McpError::resource_not_found(e, None))?;
    let (name, version) = split_version(skill);
    let found = client
        .get_skill(name, version)
        .await
        .map_err(broker_error)?
        .ok_or_else(not_found)?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(skill_md::render(&found), uri).with_mime_type("text/markdown"),
    ]))
}
