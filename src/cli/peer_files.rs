//! Peer files (README "Peer files"): `share-dir` shares a directory with the mesh until
//! Ctrl-C; `peer-files ls|cat` list and read another member's shared directory.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, cli_peer, print_json, select_mesh, with_client};
use crate::client::peer_files::{FileHost, Forwarded, SharedDir};
use crate::client::{ConnectOptions, Link, MeshClient};
use crate::identity::ConfigDir;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "share-dir", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh share-dir . --read-only")]
/// let the mesh list and read files under a directory until Ctrl-C (logs every request)
pub struct ShareDirCmd {
    /// the directory to share
    #[argh(positional)]
    path: String,
    /// say so to the mesh: peers may only list and read (always true today: no peer writes)
    #[argh(switch)]
    read_only: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "peer-files", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh peer-files cat alice src/main.rs")]
/// list or read a peer's shared directory: ls, cat
pub struct PeerFilesCmd {
    #[argh(subcommand)]
    action: PeerFilesAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum PeerFilesAction {
    Ls(LsCmd),
    Cat(CatCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "ls", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh peer-files ls alice src --depth 3")]
#[argh(example = "claudemesh peer-files ls alice --pattern 'src/**/*.rs'")]
/// list the names in a peer's shared directory (directories end with /)
struct LsCmd {
    /// the peer: display name, or member or session key
    #[argh(positional)]
    peer: String,
    /// a directory inside the share (default: its root)
    #[argh(positional)]
    path: Option<String>,
    /// levels to list (default 2, at most 6; 6 with --pattern)
    #[argh(option)]
    depth: Option<u32>,
    /// only paths matching this glob, relative to PATH (e.g. 'src/**/*.rs')
    #[argh(option)]
    pattern: Option<String>,
    /// seconds to wait for the peer (default 15, at most 60)
    #[argh(option)]
    timeout: Option<u64>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "cat", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh peer-files cat alice README.md > README.alice.md")]
/// print a file of a peer's shared directory (bytes as they are)
struct CatCmd {
    /// the peer: display name, or member or session key
    #[argh(positional)]
    peer: String,
    /// the file, relative to the share's root
    #[argh(positional)]
    path: String,
    /// seconds to wait for the peer (default 15, at most 60)
    #[argh(option)]
    timeout: Option<u64>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
}

fn timeout(secs: Option<u64>) -> Option<Duration> {
    secs.map(|s| Duration::from_secs(s.clamp(1, 60)))
}

impl PeerFilesCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            PeerFilesAction::Ls(c) => {
                let path = c.path.clone().unwrap_or_default();
                let listed = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client
                        .list_peer_files(
                            &c.peer,
                            &path,
                            c.depth,
                            c.pattern.as_deref(),
                            timeout(c.timeout),
                        )
                        .await?)
                })
                .await?;
                if c.json {
                    print_json(&json!(listed));
                } else {
                    let listing = &listed.listing;
                    for e in &listing.entries {
                        outln!("{e}");
                    }
                    if listing.truncated {
                        output::error("(more names exist: list a subdirectory, or less --depth)");
                    }
                }
            }
            PeerFilesAction::Cat(c) => {
                let file = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client
                        .read_peer_file(&c.peer, &c.path, timeout(c.timeout))
                        .await?)
                })
                .await?;
                use std::io::IsTerminal;
                if std::io::stdout().is_terminal() {
                    // A peer's bytes must not drive this terminal (escape sequences).
                    outln!("{}", String::from_utf8_lossy(&file.content));
                    return Ok(());
                }
                let mut out = std::io::stdout().lock();
                out.write_all(&file.content)
                    .and_then(|()| out.flush())
                    .map_err(|e| CliError::failed(format!("cannot write the file out: {e}")))?;
            }
        }
        Ok(())
    }
}

impl ShareDirCmd {
    pub async fn run(self) -> CliResult {
        let entry = select_mesh(self.mesh.as_deref())?;
        let dir = SharedDir::open(std::path::Path::new(&self.path), self.read_only)
            .map_err(CliError::Failed)?;
        let options = ConnectOptions {
            config_dir: Some(ConfigDir::from_env()),
            reconnect: true,
            ..ConnectOptions::new(entry.clone(), cli_peer(&entry))
        };
        let client = Arc::new(MeshClient::connect(options).await?);
        let host = Arc::new(FileHost::new(dir));
        host.announce(&client).await?;
        outln!(
            "sharing {} with mesh {} as {} (peers list and read, never write); Ctrl-C stops",
            host.dir().path.display(),
            entry.slug,
            entry.display_name
        );
        let ended = serve(&client, &host).await;
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
        ended
    }
}

/// Answers forwarded requests until Ctrl-C or the connection ends for good; one log line on
/// stderr per request (who, what, path, size or refusal — never content).
async fn serve(client: &Arc<MeshClient>, host: &Arc<FileHost>) -> CliResult {
    let mut link = client.link();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            changed = link.changed() => {
                if changed.is_err() {
                    return Err(CliError::failed("the connection to the broker ended"));
                }
                let now = link.borrow_and_update().clone();
                match now {
                    // Up after a change is a new connection (a drop and a reconnect between two
                    // looks show only the Up), maybe a new presence: announce the share again.
                    Link::Up => {
                        match host.announce(client).await {
                            Ok(()) => output::error("reconnected; sharing again"),
                            Err(e) => output::error(&format!("reconnected, but cannot share again: {e}")),
                        }
                    }
                    Link::Down(reason) => {
                        return Err(CliError::failed(format!("the broker ended this connection: {reason}")));
                    }
                    Link::Reconnecting => {}
                }
            }
            frame = client.next_push() => match frame {
                Some(frame) => if let Some(forward) = Forwarded::from_push(&frame) {
                    let (client, host) = (client.clone(), host.clone());
                    tokio::spawn(async move {
                        let served = host.answer(&client, forward).await;
                        output::error(&served.to_string());
                    });
                },
                None => return Err(CliError::failed("the connection to the broker ended")),
            },
        }
    }
}
