//! Live data streams (CLI.md "Shared data"): `stream create|publish|subscribe|list`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{
    CliError, CliResult, connect, json_or_text, print_json, select_mesh, show_value, with_client,
};
use crate::client::MeshClient;
use crate::protocol::ServerMessage;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "stream", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stream publish builds \"main is green\"")]
/// live data streams: create, publish, subscribe, list
pub struct StreamCmd {
    #[argh(subcommand)]
    action: StreamAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum StreamAction {
    Create(StreamCreateCmd),
    Publish(StreamPublishCmd),
    Subscribe(StreamSubscribeCmd),
    List(StreamListCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "create", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stream create builds")]
/// create a stream (nothing happens if it exists)
struct StreamCreateCmd {
    /// stream name: [A-Za-z0-9-_.:/], up to 64
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id, name}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "publish", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stream publish builds \"main is green\"")]
/// send data to a stream's current subscribers
struct StreamPublishCmd {
    /// stream name
    #[argh(positional)]
    name: String,
    /// the data: JSON, or text
    #[argh(positional)]
    data: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "subscribe", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stream subscribe builds")]
/// print a stream's data as it arrives, until Ctrl-C
struct StreamSubscribeCmd {
    /// stream name
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print one JSON object per line: {stream, data, publishedBy}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh stream list --json")]
/// list the mesh's streams
struct StreamListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {streams: [...]}
    #[argh(switch)]
    json: bool,
}

impl StreamCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            StreamAction::Create(c) => {
                let id = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.create_stream(&c.name).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "id": id, "name": c.name }));
                } else {
                    outln!("stream {} ({id})", c.name);
                }
            }
            StreamAction::Publish(c) => {
                let data = json_or_text(&c.data);
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.publish(&c.name, data).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "stream": c.name, "ok": true }));
                } else {
                    outln!("published to {}", c.name);
                }
            }
            StreamAction::Subscribe(c) => subscribe(c).await?,
            StreamAction::List(c) => {
                let streams = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_streams().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "streams": streams }));
                } else if streams.is_empty() {
                    outln!("no streams");
                } else {
                    outln!(
                        "{:<24}  {:>11}  {:<16}  CREATED",
                        "NAME",
                        "SUBSCRIBERS",
                        "BY"
                    );
                    for s in &streams {
                        outln!(
                            "{:<24}  {:>11}  {:<16}  {}",
                            s.name,
                            s.subscriber_count,
                            s.created_by,
                            s.created_at
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

async fn subscribe(c: StreamSubscribeCmd) -> CliResult {
    let entry = select_mesh(c.mesh.as_deref())?;
    let client = connect(&entry).await?;
    let result = follow(&client, &c).await;
    client.close().await;
    result
}

async fn follow(client: &MeshClient, c: &StreamSubscribeCmd) -> CliResult {
    client.subscribe(&c.name).await?;
    if !c.json {
        output::error(&format!("subscribed to {}; Ctrl-C to stop", c.name));
    }
    loop {
        let push = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            push = client.next_push() => push,
        };
        let Some(push) = push else {
            return Err(CliError::failed("the connection to the broker ended"));
        };
        let ServerMessage::StreamData(d) = push else {
            continue;
        };
        if c.json {
            output::json_line(&d);
        } else {
            output::block(&format!("[{}] ", d.published_by), &show_value(&d.data));
        }
    }
}
