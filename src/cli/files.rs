//! `claudemesh file share|get|list|status|delete|grant` (CLI.md "Files").

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::OnceLock;

use argh::{ArgsInfo, FromArgs};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::MeshClient;
use crate::client::files::{FileError, ShareOptions};
use crate::protocol::Pubkey;

/// Files at most this big get no progress bar.
const PROGRESS_ABOVE: u64 = 1024 * 1024;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "file", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file share notes.md --to bob")]
/// share files with the mesh: share, get, list, status, delete, grant
pub struct FileCmd {
    #[argh(subcommand)]
    action: FileAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum FileAction {
    Share(ShareCmd),
    Get(GetCmd),
    List(ListCmd),
    Status(StatusCmd),
    Delete(DeleteCmd),
    Grant(GrantCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "share", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file share build.log --tags ci,logs")]
#[argh(example = "claudemesh file share secrets.env --to bob")]
/// upload a file; with --to it is encrypted end to end for those peers (and you)
struct ShareCmd {
    /// the file
    #[argh(positional)]
    path: PathBuf,
    /// encrypt for these peers: names, pubkeys or 8+ hex prefixes, comma-separated (mesh:name
    /// picks the mesh too)
    #[argh(option)]
    to: Option<String>,
    /// the name others see (default: the file's name)
    #[argh(option)]
    name: Option<String>,
    /// tags, comma-separated (e.g. spec,v2)
    #[argh(option)]
    tags: Option<String>,
    /// expire after the broker's ephemeral lifetime (24 h by default) instead of staying
    #[argh(switch)]
    ephemeral: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {fileId, name, size}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file get 01HZX3 --out ./notes.md")]
/// download a file (decrypting it if it was encrypted for you)
struct GetCmd {
    /// the file id
    #[argh(positional)]
    id: String,
    /// where to save: a file, or a directory to save into (default: the current directory)
    #[argh(option)]
    out: Option<PathBuf>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {fileId, path, size, encrypted}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file list --from bob --json")]
/// list the shared files you may read (an owner or admin: all), newest first
struct ListCmd {
    /// only files whose name or a tag contains this
    #[argh(option)]
    query: Option<String>,
    /// only files shared by this peer
    #[argh(option)]
    from: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file status 01HZX3")]
/// who downloaded a file, and when
struct StatusCmd {
    /// the file id
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "delete", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file delete 01HZX3")]
/// delete a file (its uploader, or a mesh owner or admin)
struct DeleteCmd {
    /// the file id
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "grant", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh file grant 01HZX3 carol")]
/// let another peer read an encrypted file you shared
struct GrantCmd {
    /// the file id
    #[argh(positional)]
    id: String,
    /// the peer: a name, pubkey or 8+ hex prefix
    #[argh(positional)]
    peer: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

impl From<FileError> for CliError {
    fn from(e: FileError) -> Self {
        match e {
            // The broker's answers keep their meaning: a file that is not there exits 3.
            FileError::Client(e) => e.into(),
            e => CliError::Failed(e.to_string()),
        }
    }
}

/// A progress bar on stderr, shown only on a terminal, without --json, for files over 1 MB;
/// made at the first report, when the total is known.
struct Bar {
    enabled: bool,
    bar: OnceLock<Option<ProgressBar>>,
}

impl Bar {
    fn new(json: bool) -> Bar {
        Bar {
            enabled: !json && std::io::stdout().is_terminal(),
            bar: OnceLock::new(),
        }
    }

    fn report(&self, done: u64, total: u64) {
        if !self.enabled {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            (total > PROGRESS_ABOVE).then(|| {
                let style = ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                ProgressBar::new(total).with_style(style)
            })
        });
        if let Some(b) = bar {
            b.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(Some(b)) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}

impl FileCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            FileAction::Share(c) => c.run().await,
            FileAction::Get(c) => c.run().await,
            FileAction::List(c) => c.run().await,
            FileAction::Status(c) => c.run().await,
            FileAction::Delete(c) => c.run().await,
            FileAction::Grant(c) => c.run().await,
        }
    }
}

/// Resolves `--to` / `grant` peers to keys (`Client::file_recipients`).
async fn resolve_peers(client: &MeshClient, to: &str) -> Result<Vec<Pubkey>, CliError> {
    client.file_recipients(to).await.map_err(|e| match e {
        FileError::Invalid(m) => CliError::Usage(m),
        FileError::Client(c) => c.into(),
        other => other.into(),
    })
}

impl ShareCmd {
    async fn run(self) -> CliResult {
        let tags: Vec<String> = self
            .tags
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if !self.path.is_file() {
            return Err(CliError::failed(format!(
                "{} is not a file that can be read",
                self.path.display()
            )));
        }
        let (mesh, to) = super::target::unqualify_option(self.to.as_deref(), self.mesh.as_deref())?;
        let entry = select_mesh(mesh.as_deref())?;
        let client = connect(&entry).await?;
        let bar = Bar::new(self.json);
        let result = async {
            let recipients = match &to {
                Some(to) => resolve_peers(&client, to).await?,
                None => Vec::new(),
            };
            let target_spec = match recipients.as_slice() {
                [one] => Some(one.to_hex()),
                _ => None,
            };
            let opts = ShareOptions {
                name: self.name.clone(),
                tags,
                ephemeral: self.ephemeral,
                recipients,
                target_spec,
            };
            let report = |done, total| bar.report(done, total);
            Ok::<_, CliError>(client.share_file(&self.path, opts, &report).await?)
        }
        .await;
        bar.finish();
        client.close().await;
        let shared = result?;
        if self.json {
            print_json(&shared);
        } else {
            outln!(
                "shared {} ({}){} as {}",
                shared.name,
                HumanBytes(shared.size),
                if shared.encrypted {
                    format!(", encrypted for {}", self.to.as_deref().unwrap_or(""))
                } else {
                    String::new()
                },
                shared.file_id
            );
        }
        Ok(())
    }
}

impl GetCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let bar = Bar::new(self.json);
        let report = |done, total| bar.report(done, total);
        let result = client
            .fetch_file(&self.id, self.out.as_deref(), &report)
            .await;
        bar.finish();
        client.close().await;
        let got = result?;
        if self.json {
            print_json(&json!({
                "fileId": got.file_id,
                "path": got.path,
                "size": got.size,
                "encrypted": got.encrypted,
            }));
        } else {
            outln!(
                "saved {} ({}{})",
                got.path.display(),
                HumanBytes(got.size),
                if got.encrypted { ", decrypted" } else { "" }
            );
        }
        Ok(())
    }
}

impl ListCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let files = client.list_files(self.query, self.from).await;
        client.close().await;
        let files = files?;
        if self.json {
            print_json(&json!({ "files": files }));
            return Ok(());
        }
        if files.is_empty() {
            outln!("no files");
            return Ok(());
        }
        outln!(
            "{:<22}  {:<28} {:>9}  {:<14} {:<24} TAGS",
            "ID",
            "NAME",
            "SIZE",
            "FROM",
            "SHARED"
        );
        for f in files {
            let mut flags = Vec::new();
            if f.encrypted {
                flags.push("encrypted".to_string());
            }
            if let Some(at) = &f.expires_at {
                flags.push(format!("expires {at}"));
            }
            outln!(
                "{:<22}  {:<28} {:>9}  {:<14} {:<24} {}{}",
                f.id,
                f.name,
                HumanBytes(f.size).to_string(),
                f.uploaded_by,
                f.uploaded_at,
                f.tags.join(","),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join(", "))
                }
            );
        }
        Ok(())
    }
}

impl StatusCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let status = client.file_status(&self.id).await;
        client.close().await;
        let status = status?;
        if self.json {
            print_json(&status);
            return Ok(());
        }
        if status.accesses.is_empty() {
            outln!("nobody has downloaded {} yet", status.file_id);
            return Ok(());
        }
        for a in status.accesses {
            outln!("{:<24} {}", a.peer_name, a.accessed_at);
        }
        Ok(())
    }
}

impl DeleteCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let result = client.delete_file(&self.id).await;
        client.close().await;
        result?;
        outln!("deleted {}", self.id);
        Ok(())
    }
}

impl GrantCmd {
    async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let client = connect(&entry).await?;
        let result = async {
            let peers = resolve_peers(&client, &self.peer).await?;
            for peer in &peers {
                client.grant_file_access(&self.id, peer).await?;
            }
            Ok::<_, CliError>(())
        }
        .await;
        client.close().await;
        result?;
        outln!("{} may now read {}", self.peer, self.id);
        Ok(())
    }
}
