//! Broker-hosted MCP services (issue 15 tier 2): deploy, update, undeploy, logs, scope,
//! schema, catalog and status. A directory is packed into a tar and shared first as a plain
//! file for its uploader alone (and the broker, which unpacks it). Calling a deployed
//! service's tools is `tool_call` (`shared_tools.rs`).

use std::path::Path;
use std::time::Duration;

use super::files::FileError;
use super::{ClientError, MeshClient, unexpected};
use crate::archive::{self, ArchiveError, Limits};
use crate::protocol::messages::{
    CatalogEntry, DeployConfig, DeploySource, McpDeploy, McpDeployCheck, McpDeployStatus,
    McpToolSpec, McpUpdate, Permission, Scope, ScopeSpec,
};
use crate::protocol::{ClientMessage, ServerMessage};

/// The tag of an archive `deploy --dir` uploaded: the broker deletes such an archive (named
/// `NAME.tar`) when its service is undeployed or gets other code.
pub const ARCHIVE_TAG: &str = "mcp-service";

/// How long a deploy or update may take: fetching the code, and the service's first start.
pub const DEPLOY_TIMEOUT: Duration = Duration::from_secs(240);

/// What a directory given to `deploy --dir` may hold.
const DIR_LIMITS: Limits = Limits {
    file_bytes: 32 << 20,
    files: 20_000,
    unpacked_bytes: 64 << 20,
};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// A name the broker would refuse, found before anything is packed or uploaded.
    #[error("{0}")]
    Name(String),
}

/// Longest name of a deployed service.
pub const MAX_NAME: usize = 64;

/// The rule a deployed service's name follows (the broker's, checked by the CLI too before it
/// uploads anything): it names a directory under `<data>/services/<mesh>/`, so no `.` at all
/// (never `.` or `..`), and it starts with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "server_name {:?}: a deployed service's name is 1 to {MAX_NAME} letters, digits, - and _, starting with a letter or digit",
            name.chars().take(MAX_NAME).collect::<String>()
        ))
    }
}

/// The sources a deploy may name, of which exactly one must be given (`dir`: a local
/// directory, shared as a file first — `None` is returned for it).
#[derive(Debug, Default)]
pub struct SourceChoice {
    pub file_id: Option<String>,
    pub dir: bool,
    pub git_url: Option<String>,
    pub git_branch: Option<String>,
    pub npm: Option<String>,
    pub pypi: Option<String>,
}

impl SourceChoice {
    pub fn pick(self) -> Result<Option<DeploySource>, String> {
        let given = [
            self.file_id.is_some(),
            self.dir,
            self.git_url.is_some(),
            self.npm.is_some(),
            self.pypi.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(
                "give exactly one source: a directory, a shared file, a git URL, an npm or a PyPI package".into(),
            );
        }
        Ok(if let Some(file_id) = self.file_id {
            Some(DeploySource::Zip { file_id })
        } else if let Some(url) = self.git_url {
            Some(DeploySource::Git {
                url,
                branch: self.git_branch,
            })
        } else if let Some(package) = self.npm {
            Some(DeploySource::Npm { package })
        } else {
            self.pypi.map(|package| DeploySource::Pypi { package })
        })
    }
}

/// A scope as the command line spells it: `peer`, `mesh`, `group:G`, `groups:A,B`, `role:R`,
/// `peers:ID,ID`.
pub fn scope_text(scope: &Scope) -> String {
    match scope {
        Scope::Peer => "peer".into(),
        Scope::Mesh => "mesh".into(),
        Scope::Peers { peers } => format!("peers:{}", peers.join(",")),
        Scope::Group { group } => format!("group:{group}"),
        Scope::Groups { groups } => format!("groups:{}", groups.join(",")),
        Scope::Role { role } => format!("role:{role}"),
    }
}

fn status(answer: ServerMessage) -> Result<McpDeployStatus, ClientError> {
    match answer {
        ServerMessage::McpDeployStatus(s) => Ok(*s),
        other => Err(unexpected(other)),
    }
}

impl MeshClient {
    /// Deploys a service and waits until it runs (or failed to start).
    pub async fn mcp_deploy(&self, deploy: McpDeploy) -> Result<McpDeployStatus, ClientError> {
        status(
            self.request_timeout(ClientMessage::McpDeploy(Box::new(deploy)), DEPLOY_TIMEOUT)
                .await?,
        )
    }

    /// Refuses, with the broker's words, a deploy by a member the broker says lacks the
    /// `deploy` capability now, so that such a member packs and uploads nothing. Only a shortcut:
    /// the broker checks again at `mcp_deploy`, which decides.
    async fn check_may_deploy(&self) -> Result<(), ClientError> {
        let me = self.entry().member_keys()?;
        let perms = self.get_perms(Some(&hex::encode(me.public))).await?;
        let Some(mine) = perms.first() else {
            return Err(ClientError::Protocol("an empty perms answer".into()));
        };
        let deploy = Permission::Deploy;
        if mine.capabilities.iter().any(|c| c == deploy.as_str()) {
            Ok(())
        } else {
            Err(ClientError::Broker {
                code: "forbidden".into(),
                message: deploy.lacked_by(&mine.display_name),
            })
        }
    }

    /// Asks the broker whether it would refuse deploying `name` for a reason it knows before
    /// the code arrives (a taken name, its services quota, no sandbox, the config or scope).
    /// A broker answering `unknown_message_type` (an earlier version of this one) is taken as
    /// saying yes: its `mcp_deploy` decides.
    async fn check_deploy(
        &self,
        name: &str,
        config: Option<DeployConfig>,
        scope: Option<ScopeSpec>,
    ) -> Result<(), ClientError> {
        let check = McpDeployCheck {
            server_name: name.into(),
            config,
            scope,
        };
        match self
            .request_ack(ClientMessage::McpDeployCheck(Box::new(check)))
            .await
        {
            Err(ClientError::Broker { code, .. }) if code == "unknown_message_type" => Ok(()),
            answer => answer,
        }
    }

    /// Packs `dir` into a tar, shares it as a plain file only its uploader may read (the
    /// broker unpacks it) and deploys it as `name`. What the broker can refuse before it has
    /// the code (a bad or taken name, no `deploy` capability, no sandbox, its quota) is refused
    /// before anything is packed or uploaded, and the archive is deleted again when the deploy
    /// is refused.
    pub async fn deploy_dir(
        &self,
        name: &str,
        dir: &Path,
        config: Option<DeployConfig>,
        scope: Option<ScopeSpec>,
    ) -> Result<McpDeployStatus, DeployError> {
        check_name(name).map_err(DeployError::Name)?;
        self.check_may_deploy().await?;
        self.check_deploy(name, config.clone(), scope.clone())
            .await?;
        // Under a fixed top directory (the broker strips it).
        let tar = archive::pack_dir(dir, "service", &DIR_LIMITS)?;
        // Targeted at our own member key: a plain file with a direct target is readable by
        // that target and its uploader alone, so the code stays private whatever the scope.
        let me = self.entry().member_keys().map_err(ClientError::from)?;
        let shared = self
            .share_bytes(
                &tar,
                &format!("{name}.tar"),
                ARCHIVE_TAG,
                Some(hex::encode(me.public)),
            )
            .await?;
        let deployed = self
            .mcp_deploy(McpDeploy {
                server_name: name.into(),
                source: DeploySource::Zip {
                    file_id: shared.file_id.clone(),
                },
                config,
                scope,
            })
            .await;
        if let Err(ClientError::Broker { .. }) = &deployed {
            // Refused: nothing refers to the archive, so it does not stay behind.
            let _ = self.delete_file(&shared.file_id).await;
        }
        Ok(deployed?)
    }

    /// Fetches the source again (or `source`) and restarts the service.
    pub async fn mcp_update(
        &self,
        name: &str,
        source: Option<DeploySource>,
    ) -> Result<McpDeployStatus, ClientError> {
        let update = McpUpdate {
            server_name: name.into(),
            source,
        };
        status(
            self.request_timeout(ClientMessage::McpUpdate(Box::new(update)), DEPLOY_TIMEOUT)
                .await?,
        )
    }

    pub async fn mcp_undeploy(&self, name: &str) -> Result<(), ClientError> {
        self.request_ack(ClientMessage::McpUndeploy {
            server_name: name.into(),
        })
        .await
    }

    /// The last `lines` lines of the service's log (its stderr and the broker's notes).
    pub async fn mcp_logs(
        &self,
        name: &str,
        lines: Option<usize>,
    ) -> Result<Vec<String>, ClientError> {
        match self
            .request(ClientMessage::McpLogs {
                server_name: name.into(),
                lines,
            })
            .await?
        {
            ServerMessage::McpLogsResult { lines, .. } => Ok(lines),
            other => Err(unexpected(other)),
        }
    }

    /// Reads the scope (`None`) or sets it; returns it and the deployer's name.
    pub async fn mcp_scope(
        &self,
        name: &str,
        scope: Option<ScopeSpec>,
    ) -> Result<(Scope, String), ClientError> {
        match self
            .request(ClientMessage::McpScope {
                server_name: name.into(),
                scope,
            })
            .await?
        {
            ServerMessage::McpScopeResult {
                scope, deployed_by, ..
            } => Ok((scope, deployed_by)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn mcp_schema(
        &self,
        name: &str,
        tool: Option<&str>,
    ) -> Result<Vec<McpToolSpec>, ClientError> {
        match self
            .request(ClientMessage::McpSchema {
                server_name: name.into(),
                tool_name: tool.map(String::from),
            })
            .await?
        {
            ServerMessage::McpSchemaResult { tools, .. } => Ok(tools),
            other => Err(unexpected(other)),
        }
    }

    pub async fn mcp_catalog(&self) -> Result<Vec<CatalogEntry>, ClientError> {
        match self.request(ClientMessage::McpCatalog {}).await? {
            ServerMessage::McpCatalogResult { services } => Ok(services),
            other => Err(unexpected(other)),
        }
    }

    pub async fn mcp_deploy_status(&self, name: &str) -> Result<McpDeployStatus, ClientError> {
        status(
            self.request(ClientMessage::McpDeployStatus {
                server_name: name.into(),
            })
            .await?,
        )
    }
}
