//! Typed calls for the mesh's skills (PROTOCOL.md §13), and what the CLI and the MCP server do
//! with them on this machine: share one from a `SKILL.md`, deploy a bundle, install one where
//! Claude Code loads skills from.

pub mod bundle;
pub mod skill_md;

use std::path::{Path, PathBuf};

use super::files::FileError;
use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{ShareSkill, SkillBundle, SkillEntry};
use crate::protocol::{ClientMessage, ServerMessage};

/// Most skills `list_skills` gathers over its pages.
const MAX_LISTED: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    File(#[from] FileError),
    /// A SKILL.md or bundle that cannot be used, and why.
    #[error("{0}")]
    Format(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no skill \"{0}\" in this mesh")]
    NotFound(String),
}

impl SkillError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SkillError + '_ {
        move |source| SkillError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `name@2` → (`name`, Some(2)); a bare name → (`name`, None).
pub fn split_version(spec: &str) -> (&str, Option<u32>) {
    match spec.rsplit_once('@') {
        Some((name, v)) => match v.parse() {
            Ok(v) => (name, Some(v)),
            Err(_) => (spec, None),
        },
        None => (spec, None),
    }
}

/// Where Claude Code loads personal skills from: `~/.claude/skills`.
pub fn default_skills_dir() -> Option<PathBuf> {
    dirs::home_dir().map(|h| h.join(".claude").join("skills"))
}

impl MeshClient {
    /// Shares a skill (a new version when the name exists); returns its version.
    pub async fn share_skill(&self, skill: ShareSkill) -> Result<u32, ClientError> {
        match self
            .request(ClientMessage::ShareSkill(Box::new(skill)))
            .await?
        {
            ServerMessage::SkillAck { version, .. } => Ok(version.unwrap_or(0)),
            other => Err(unexpected(other)),
        }
    }

    /// A skill's current version, or `version`; `None` when there is none.
    pub async fn get_skill(
        &self,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<SkillEntry>, ClientError> {
        let req = ClientMessage::GetSkill {
            name: name.into(),
            version,
        };
        match self.request(req).await? {
            ServerMessage::SkillData { skill } => Ok(skill.map(|s| *s)),
            other => Err(unexpected(other)),
        }
    }

    /// The mesh's skills without their instructions: all of them by name, or those matching
    /// `query`, best first.
    pub async fn list_skills(&self, query: Option<&str>) -> Result<Vec<SkillEntry>, ClientError> {
        let mut found: Vec<SkillEntry> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let req = ClientMessage::ListSkills {
                query: query.map(str::to_string),
                cursor: cursor.clone(),
                limit: None,
            };
            let next = match self.request(req).await? {
                ServerMessage::SkillList {
                    skills,
                    next_cursor,
                } => {
                    found.extend(skills);
                    next_cursor
                }
                other => return Err(unexpected(other)),
            };
            if found.len() >= MAX_LISTED || next.is_none() || next == cursor {
                found.truncate(MAX_LISTED);
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Removes a skill with all its versions; `false` when there was none.
    pub async fn remove_skill(&self, name: &str) -> Result<bool, ClientError> {
        match self
            .request(ClientMessage::RemoveSkill { name: name.into() })
            .await?
        {
            ServerMessage::SkillAck { action, .. } => Ok(action == "removed"),
            other => Err(unexpected(other)),
        }
    }

    /// Deploys the bundle already shared as file `file_id` (a tar, tar.gz or zip with a
    /// `SKILL.md`): reads it, and shares the skill its SKILL.md describes with the bundle's
    /// file list. Returns the skill as shared and its version.
    pub async fn deploy_skill_bundle(
        &self,
        file_id: &str,
    ) -> Result<(ShareSkill, u32), SkillError> {
        let bytes = self.fetch_bundle(file_id).await?;
        let (files, top) = bundle::unpack(&bytes)?;
        let skill_md = files
            .iter()
            .find(|f| f.path == "SKILL.md")
            .map(|f| String::from_utf8_lossy(&f.bytes).into_owned())
            .unwrap_or_default();
        // Unnamed in its SKILL.md: the archive's top directory names it, else the file.
        let default_name = match top {
            Some(top) => Some(top),
            None => self.get_file(file_id).await.ok().map(|f| {
                let n = f.name.as_str();
                n.strip_suffix(".tar.gz")
                    .or_else(|| n.strip_suffix(".tgz"))
                    .or_else(|| n.strip_suffix(".tar"))
                    .or_else(|| n.strip_suffix(".zip"))
                    .unwrap_or(n)
                    .to_string()
            }),
        };
        let mut skill = skill_md::parse(&skill_md, default_name.as_deref())?;
        skill.bundle = Some(SkillBundle {
            file_id: file_id.to_string(),
            files: files.into_iter().map(|f| f.path).collect(),
        });
        let version = self.share_skill(skill.clone()).await?;
        Ok((skill, version))
    }

    /// Packs the directory `dir` (it holds a SKILL.md) into a tar, shares it as a file of the
    /// mesh and deploys it.
    pub async fn deploy_skill_dir(&self, dir: &Path) -> Result<(ShareSkill, u32), SkillError> {
        if !dir.join("SKILL.md").is_file() {
            return Err(SkillError::Format(format!(
                "{} has no SKILL.md",
                dir.display()
            )));
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "skill".into());
        let tar = bundle::pack_dir(dir, &name)?;
        let shared = self
            .share_bytes(&tar, &format!("{name}.tar"), "skill-bundle", None)
            .await?;
        self.deploy_skill_bundle(&shared.file_id).await
    }

    /// Writes a skill where Claude Code loads it: `<skills_dir>/<name>/SKILL.md`, with the
    /// files of its bundle beside it. Returns the skill's directory.
    pub async fn install_skill(
        &self,
        name: &str,
        version: Option<u32>,
        skills_dir: &Path,
    ) -> Result<PathBuf, SkillError> {
        let skill = self
            .get_skill(name, version)
            .await?
            .ok_or_else(|| SkillError::NotFound(name.to_string()))?;
        // The broker allows only letters, digits, '-', '_' and '.' in names; check anyway, as
        // the name becomes a directory.
        let plain = !skill.name.is_empty()
            && !skill.name.starts_with('.')
            && skill
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !plain {
            return Err(SkillError::Format(format!(
                "the skill name \"{}\" cannot be a directory name",
                skill.name
            )));
        }
        let dir = skills_dir.join(&skill.name);
        std::fs::create_dir_all(&dir).map_err(SkillError::io(&dir))?;
        if let Some(b) = &skill.bundle {
            let bytes = self.fetch_bundle(&b.file_id).await?;
            for f in bundle::unpack(&bytes)?.0 {
                let path = dir.join(&f.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(SkillError::io(parent))?;
                }
                std::fs::write(&path, &f.bytes).map_err(SkillError::io(&path))?;
            }
        }
        let path = dir.join("SKILL.md");
        std::fs::write(&path, skill_md::render(&skill)).map_err(SkillError::io(&path))?;
        Ok(dir)
    }

    /// The bytes of a shared bundle file (decrypted if it was shared encrypted to us).
    async fn fetch_bundle(&self, file_id: &str) -> Result<Vec<u8>, SkillError> {
        let staged = TempFile::new("bundle");
        self.fetch_file(file_id, Some(&staged.0), &|_, _| {})
            .await?;
        let size = std::fs::metadata(&staged.0)
            .map_err(SkillError::io(&staged.0))?
            .len();
        if size > bundle::MAX_BUNDLE_BYTES {
            return Err(SkillError::Format(format!(
                "the bundle is {size} bytes; a skill bundle may be at most {}",
                bundle::MAX_BUNDLE_BYTES
            )));
        }
        std::fs::read(&staged.0).map_err(SkillError::io(&staged.0))
    }
}

/// A file in the temporary directory, removed when dropped.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(name: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "claudemesh-{}-{}-{name}",
            std::process::id(),
            crate::protocol::ids::base62(10)
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
