//! The Telegram bridge (README "Telegram bridge"): `telegram connect|invite|disconnect|status`.
//! The bot token comes from a file or stdin, never argv.

use std::io::IsTerminal;
use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;
use zeroize::Zeroizing;

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{TelegramConnect, TelegramStatus};

/// Largest token file read (a token is under 100 bytes).
const MAX_TOKEN_FILE: u64 = 4096;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "telegram", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh telegram connect --token-file ~/.config/bot-token --to @oncall")]
#[argh(example = "claudemesh telegram invite")]
/// bridge a Telegram bot to the mesh: Telegram users join as peers tg:<username>
pub struct TelegramCmd {
    #[argh(subcommand)]
    action: TelegramAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum TelegramAction {
    Connect(ConnectCmd),
    Invite(InviteCmd),
    Disconnect(DisconnectCmd),
    Status(StatusCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "connect", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh telegram connect --token-file bot-token --yes")]
/// give the broker a bot token (owner or admin): it polls the bot and relays messages
struct ConnectCmd {
    /// file holding the bot token from BotFather ('-': read it from stdin)
    #[argh(option)]
    token_file: PathBuf,
    /// who gets Telegram users' messages: a name, pubkey, @group or * (default: *)
    #[argh(option)]
    to: Option<String>,
    /// do not ask for confirmation (needed when not on a terminal)
    #[argh(switch)]
    yes: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the bridge's status
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "invite", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh telegram invite --json")]
/// mint a one-time join code (24 h): a Telegram user sends /join <code> to the bot
struct InviteCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {code, expiresAt, botUsername}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "disconnect", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh telegram disconnect")]
/// stop polling and delete the stored bot token (owner or admin)
struct DisconnectCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: the bridge's status
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh telegram status --json")]
/// show the bridge: connected, bot, last poll, last error, joined users
struct StatusCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {connected, botUsername, target, lastPollAt, lastError, users, groupKeys, keyEpochs}
    #[argh(switch)]
    json: bool,
}

/// What connecting means, said before it happens.
const CONSEQUENCE: &str = "Connecting a Telegram bridge hands the broker this mesh's root key (every epoch this machine holds, sealed to the broker's service key): from now on the broker can read the mesh's group and broadcast messages, because the bridge must open them to post them to Telegram users. It also keeps a key for each Telegram user who joins and reads the direct messages sent to them; Telegram's servers see all of it, and Telegram users' messages reach the mesh in clear (bodyVersion 1). Later rotations keep the bridge working; `telegram disconnect` deletes the keys, and the next rotation shuts the broker out again.";

fn read_token(path: &std::path::Path) -> Result<Zeroizing<String>, CliError> {
    let raw = super::read_secret_text(path, MAX_TOKEN_FILE).map_err(|e| {
        CliError::failed(format!(
            "cannot read the token from {}: {e}",
            path.display()
        ))
    })?;
    let token = Zeroizing::new(raw.trim().to_string());
    if token.is_empty() {
        return Err(CliError::Usage(format!(
            "{} holds no token",
            path.display()
        )));
    }
    Ok(token)
}

/// Asks on a terminal; elsewhere only `--yes` goes on.
fn confirm(yes: bool) -> CliResult {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::failed(format!(
            "{CONSEQUENCE} Not on a terminal: run again with --yes to connect anyway"
        )));
    }
    super::output::error(CONSEQUENCE);
    let yes = super::output::ask_yes("Connect the bridge? [y/N] ")
        .map_err(|e| CliError::failed(format!("cannot read the answer: {e}")))?;
    if yes {
        Ok(())
    } else {
        Err(CliError::failed("not connected; nothing changed"))
    }
}

fn show(s: &TelegramStatus, json: bool) {
    if json {
        print_json(&json!(s));
        return;
    }
    if !s.connected {
        outln!("Telegram bridge: not connected");
    } else {
        outln!(
            "Telegram bridge: connected as @{} → {}",
            s.bot_username.as_deref().unwrap_or("?"),
            s.target.as_deref().unwrap_or("*")
        );
        outln!(
            "last poll: {}",
            s.last_poll_at.as_deref().unwrap_or("not yet")
        );
        if s.group_keys {
            let epochs: Vec<String> = s.key_epochs.iter().map(u64::to_string).collect();
            outln!(
                "group keys: held (epochs {}): group and broadcast messages reach Telegram users",
                epochs.join(", ")
            );
        } else {
            outln!("group keys: none: only direct messages reach Telegram users");
        }
    }
    if let Some(e) = &s.last_error {
        outln!("last error: {e}");
    }
    if s.users.is_empty() {
        outln!("no Telegram users joined");
    }
    for u in &s.users {
        outln!("{}  {}  (joined {})", u.name, u.pubkey, u.joined_at);
    }
}

impl TelegramCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            TelegramAction::Connect(c) => {
                let token = read_token(&c.token_file)?;
                confirm(c.yes)?;
                let (mesh, to) =
                    super::target::unqualify_option(c.to.as_deref(), c.mesh.as_deref())?;
                let status = with_client(mesh.as_deref(), async |client: &MeshClient| {
                    let target = match to.as_deref() {
                        None => None,
                        Some(t) => Some(super::target::one_spec(client, t).await?),
                    };
                    let root_keys = client.telegram_root_keys().await?;
                    Ok(client
                        .telegram_connect(TelegramConnect {
                            token: token.to_string(),
                            target,
                            root_keys,
                        })
                        .await?)
                })
                .await?;
                show(&status, c.json);
            }
            TelegramAction::Invite(c) => {
                let invite = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.telegram_invite().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({
                        "code": invite.code,
                        "expiresAt": invite.expires_at,
                        "botUsername": invite.bot_username,
                    }));
                } else {
                    let bot = invite
                        .bot_username
                        .as_deref()
                        .map_or("the bot".to_string(), |b| format!("@{b}"));
                    outln!(
                        "send this to {bot} on Telegram (once, before {}):",
                        invite.expires_at
                    );
                    outln!("/join {}", invite.code);
                }
            }
            TelegramAction::Disconnect(c) => {
                let status = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.telegram_disconnect().await?)
                })
                .await?;
                show(&status, c.json);
            }
            TelegramAction::Status(c) => {
                let status = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.telegram_status().await?)
                })
                .await?;
                show(&status, c.json);
            }
        }
        Ok(())
    }
}
