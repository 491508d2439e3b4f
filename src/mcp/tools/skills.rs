//! MCP tools for the mesh's skills: share_skill, get_skill, list_skills, remove_skill,
//! mesh_skill_deploy (the original's names). The skills are also this server's prompts and
//! `skill://` resources (`mcp/prompts.rs`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;

use super::{MeshTools, json_text};
use crate::client::skills::split_version;
use crate::protocol::messages::ShareSkill;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ShareSkillArgs {
    /// The skill's name: letters, digits, '-', '_' or '.' (sharing an existing name adds a version).
    pub name: String,
    /// What the skill does, in one or two sentences.
    pub description: String,
    /// The instructions (Markdown). `$ARGUMENTS`, `$0`, `$1`… take the prompt's arguments.
    pub instructions: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// When a session should use it.
    #[serde(default)]
    pub when_to_use: Option<String>,
    /// Tools the skill may use (Claude Code's allowed-tools).
    #[serde(default)]
    pub allowed_tools: Option<Vec<String>>,
    /// The model it is meant for.
    #[serde(default)]
    pub model: Option<String>,
    /// Its arguments, e.g. "<issue> [priority]" (`<x>` required, `[x]` optional).
    #[serde(default)]
    pub argument_hint: Option<String>,
    /// Whether people may invoke it as a prompt (default yes).
    #[serde(default)]
    pub user_invocable: Option<bool>,
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SkillNameArgs {
    /// The skill's name; `name@2` for version 2.
    pub name: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListSkillsArgs {
    /// Keywords to rank the skills by (full text); all skills by name without it.
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct DeployArgs {
    /// The id of a shared file (share_file) that is a tar, tar.gz or zip with a SKILL.md at
    /// its top.
    pub file_id: String,
    #[serde(default)]
    pub mesh: Option<String>,
}

#[tool_router(router = skills_router, vis = "pub")]
impl MeshTools {
    #[tool(
        description = "Publish a reusable skill to the mesh (a new version if the name exists). Every session sees it as an MCP prompt and a skill:// resource."
    )]
    async fn share_skill(&self, Parameters(a): Parameters<ShareSkillArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let name = a.name.clone();
            let version = c
                .share_skill(ShareSkill {
                    name: a.name,
                    description: a.description,
                    instructions: a.instructions,
                    tags: a.tags,
                    when_to_use: a.when_to_use,
                    allowed_tools: a.allowed_tools,
                    model: a.model,
                    argument_hint: a.argument_hint,
                    user_invocable: a.user_invocable,
                    context: a.context,
                    agent: a.agent,
                    bundle: None,
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("shared skill {name} (version {version})"))
        })
        .await
    }

    #[tool(description = "Load a skill's full instructions by name (name@2 for version 2).")]
    async fn get_skill(&self, Parameters(a): Parameters<SkillNameArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let (name, version) = split_version(&a.name);
            match c
                .get_skill(name, version)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(s) => Ok(json_text(&s)),
                None => Err(format!("no skill \"{}\" in this mesh", a.name)),
            }
        })
        .await
    }

    #[tool(description = "Browse the mesh's skills, optionally ranked by keywords.")]
    async fn list_skills(&self, Parameters(a): Parameters<ListSkillsArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let query = a.query.as_deref().filter(|q| !q.trim().is_empty());
            let skills = c.list_skills(query).await.map_err(|e| e.to_string())?;
            if skills.is_empty() {
                return Ok(match query {
                    Some(q) => format!("No skill matches \"{q}\"."),
                    None => "No skills shared in this mesh yet.".to_string(),
                });
            }
            Ok(skills
                .iter()
                .map(|s| {
                    let tags = if s.tags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", s.tags.join(", "))
                    };
                    format!(
                        "- {} (v{}): {}{tags} (by {})",
                        s.name, s.version, s.description, s.author
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        })
        .await
    }

    #[tool(description = "Remove a shared skill (every version).")]
    async fn remove_skill(&self, Parameters(a): Parameters<SkillNameArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            if c.remove_skill(&a.name).await.map_err(|e| e.to_string())? {
                Ok(format!("removed skill {}", a.name))
            } else {
                Err(format!("no skill \"{}\" in this mesh", a.name))
            }
        })
        .await
    }

    #[tool(
        description = "Deploy a multi-file skill bundle: a shared file (tar, tar.gz or zip) with a SKILL.md at its top."
    )]
    async fn mesh_skill_deploy(&self, Parameters(a): Parameters<DeployArgs>) -> CallToolResult {
        self.with_client(a.mesh.as_deref(), |c| async move {
            let (skill, version) = c
                .deploy_skill_bundle(&a.file_id)
                .await
                .map_err(|e| e.to_string())?;
            let files = skill.bundle.map(|b| b.files).unwrap_or_default();
            Ok(format!(
                "deployed skill {} (version {version}) with {} files: {}",
                skill.name,
                files.len(),
                files.join(", ")
            ))
        })
        .await
    }
}
