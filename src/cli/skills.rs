//! Skills (README "Skills"): `skill share FILE.md | get NAME[@V] | list [QUERY] | remove NAME |
//! install NAME[@V] | deploy DIR|ARCHIVE|--file ID`.

use std::path::{Path, PathBuf};

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::client::files::ShareOptions;
use crate::client::skills::{SkillError, default_skills_dir, skill_md, split_version};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "skill", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill share .claude/skills/deploy/SKILL.md")]
/// the mesh's shared skills: share, get, list, remove, install, deploy
pub struct SkillCmd {
    #[argh(subcommand)]
    action: SkillAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum SkillAction {
    Share(ShareCmd),
    Get(GetCmd),
    List(ListCmd),
    Remove(RemoveCmd),
    Install(InstallCmd),
    Deploy(DeployCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "share", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill share ./deploy/SKILL.md --tags ops")]
/// share a skill from a SKILL.md (YAML front matter, then the instructions)
struct ShareCmd {
    /// the SKILL.md file
    #[argh(positional)]
    file: PathBuf,
    /// the skill's name (default: `name:` in the front matter, else the file's directory)
    #[argh(option)]
    name: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, version}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill get deploy@2")]
/// print a skill as SKILL.md (NAME@V for version V)
struct GetCmd {
    /// the skill's name, or NAME@VERSION
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the skill with its fields
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill list deploy")]
/// list the mesh's skills, or those matching words (best first)
struct ListCmd {
    /// words to rank the skills by
    #[argh(positional)]
    query: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {skills: [{name, version, description, tags, author, createdAt, score?}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "remove", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill remove deploy")]
/// remove a skill and all its versions (its author, or an owner or admin)
struct RemoveCmd {
    /// the skill's name
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, removed}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "install", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill install deploy")]
/// write a skill where Claude Code loads it: ~/.claude/skills/NAME/SKILL.md
struct InstallCmd {
    /// the skill's name, or NAME@VERSION
    #[argh(positional)]
    name: String,
    /// the skills directory to write into (default ~/.claude/skills)
    #[argh(option)]
    dir: Option<PathBuf>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, path}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "deploy", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh skill deploy ./skills/deploy/")]
/// share a multi-file skill: a directory, a .tar/.tar.gz/.zip, or a shared file (--file)
struct DeployCmd {
    /// a directory with a SKILL.md, or an archive holding one
    #[argh(positional)]
    path: Option<PathBuf>,
    /// the id of an archive already shared with `claudemesh file share`
    #[argh(option)]
    file: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, version, fileId, files}
    #[argh(switch)]
    json: bool,
}

impl From<SkillError> for CliError {
    fn from(e: SkillError) -> Self {
        match e {
            SkillError::Client(c) => c.into(),
            SkillError::NotFound(_) => CliError::NotFound(e.to_string()),
            other => CliError::Failed(other.to_string()),
        }
    }
}

impl SkillCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            SkillAction::Share(c) => c.run().await,
            SkillAction::Get(c) => c.run().await,
            SkillAction::List(c) => c.run().await,
            SkillAction::Remove(c) => c.run().await,
            SkillAction::Install(c) => c.run().await,
            SkillAction::Deploy(c) => c.run().await,
        }
    }
}

/// The name Claude Code gives a SKILL.md without `name:`: its directory's.
fn directory_name(file: &Path) -> Option<String> {
    let file = file.canonicalize().ok()?;
    let stem = file.file_stem()?.to_string_lossy().into_owned();
    if stem.eq_ignore_ascii_case("skill") {
        Some(file.parent()?.file_name()?.to_string_lossy().into_owned())
    } else {
        Some(stem)
    }
}

impl ShareCmd {
    async fn run(self) -> CliResult {
        let text = std::fs::read_to_string(&self.file)
            .map_err(|e| CliError::failed(format!("{}: {e}", self.file.display())))?;
        let mut skill = skill_md::parse(&text, directory_name(&self.file).as_deref())
            .map_err(|e| CliError::failed(format!("{}: {e}", self.file.display())))?;
        if let Some(name) = self.name {
            skill.name = name;
        }
        let name = skill.name.clone();
        let version = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.share_skill(skill).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "name": name, "version": version }));
        } else {
            outln!("shared skill {name} (version {version})");
        }
        Ok(())
    }
}

impl GetCmd {
    async fn run(self) -> CliResult {
        let (name, version) = split_version(&self.name);
        let found = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.get_skill(name, version).await?)
        })
        .await?;
        let Some(skill) = found else {
            return Err(CliError::NotFound(format!(
                "no skill \"{}\" in this mesh",
                self.name
            )));
        };
        if self.json {
            print_json(&skill);
        } else {
            // A peer wrote it: each line neutralised.
            for l in skill_md::render(&skill).trim_end().lines() {
                output::line(l);
            }
        }
        Ok(())
    }
}

impl ListCmd {
    async fn run(self) -> CliResult {
        let query = self.query.join(" ");
        let query = (!query.trim().is_empty()).then_some(query);
        let skills = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.list_skills(query.as_deref()).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "skills": skills }));
        } else if skills.is_empty() {
            match &query {
                Some(q) => outln!("no skill matches \"{q}\""),
                None => outln!("no skills shared in this mesh yet"),
            }
        } else {
            for s in &skills {
                let tags = if s.tags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", s.tags.join(", "))
                };
                output::block(
                    &format!("{} v{}  ", s.name, s.version),
                    &format!("{}{tags}", s.description),
                );
                outln!("        by {}, {}", s.author, s.created_at);
            }
        }
        Ok(())
    }
}

impl RemoveCmd {
    async fn run(self) -> CliResult {
        let removed = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.remove_skill(&self.name).await?)
        })
        .await?;
        if !removed {
            return Err(CliError::NotFound(format!(
                "no skill \"{}\" in this mesh",
                self.name
            )));
        }
        if self.json {
            print_json(&json!({ "name": self.name, "removed": true }));
        } else {
            outln!("removed skill {} (every version)", self.name);
        }
        Ok(())
    }
}

impl InstallCmd {
    async fn run(self) -> CliResult {
        let root = match self.dir {
            Some(d) => d,
            None => default_skills_dir().ok_or_else(|| {
                CliError::failed(
                    "cannot tell the home directory: give the skills directory with --dir",
                )
            })?,
        };
        let (name, version) = split_version(&self.name);
        let dir = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.install_skill(name, version, &root).await?)
        })
        .await?;
        let path = dir.join("SKILL.md");
        if self.json {
            print_json(&json!({ "name": name, "path": path }));
        } else {
            outln!("installed skill {name} at {}", path.display());
        }
        Ok(())
    }
}

impl DeployCmd {
    async fn run(self) -> CliResult {
        let (skill, version) = match (self.path, self.file) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(CliError::Usage(
                    "give a directory or archive, or --file ID, not both".into(),
                ));
            }
            (None, Some(id)) => {
                with_client(self.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.deploy_skill_bundle(&id).await?)
                })
                .await?
            }
            (Some(path), None) if path.is_dir() => {
                with_client(self.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.deploy_skill_dir(&path).await?)
                })
                .await?
            }
            (Some(path), None) => {
                with_client(self.mesh.as_deref(), async |client: &MeshClient| {
                    let shared = client
                        .share_file(
                            &path,
                            ShareOptions {
                                tags: vec!["skill-bundle".into()],
                                ..Default::default()
                            },
                            &|_, _| {},
                        )
                        .await
                        .map_err(SkillError::from)?;
                    Ok(client.deploy_skill_bundle(&shared.file_id).await?)
                })
                .await?
            }
        };
        let bundle = skill
            .bundle
            .unwrap_or_else(|| crate::protocol::messages::SkillBundle {
                file_id: String::new(),
                files: Vec::new(),
            });
        if self.json {
            print_json(&json!({
                "name": skill.name,
                "version": version,
                "fileId": bundle.file_id,
                "files": bundle.files,
            }));
        } else {
            outln!(
                "deployed skill {} (version {version}) with {} files from {}",
                skill.name,
                bundle.files.len(),
                bundle.file_id
            );
        }
        Ok(())
    }
}
