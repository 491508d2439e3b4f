//! The searchable memory (CLI.md "Shared data"): `remember`, `recall`, `forget`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliResult, print_json, split_list, with_client, words};
use crate::client::MeshClient;
use crate::protocol::messages::MemoryEntry;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "remember", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh remember the staging DB is read-only on Fridays --tags db,staging")]
/// store a memory for the mesh (searchable with recall)
pub struct RememberCmd {
    /// the text to remember
    #[argh(positional)]
    text: Vec<String>,
    /// tags, comma-separated (also searched)
    #[argh(option)]
    tags: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id}
    #[argh(switch)]
    json: bool,
}

impl RememberCmd {
    pub async fn run(self) -> CliResult {
        let text = words("text to remember", &self.text)?;
        let tags = split_list(&self.tags);
        let id = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.remember(&text, tags).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "id": id }));
        } else {
            outln!("remembered ({id})");
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "recall", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh recall staging database")]
/// search the mesh's memories, best match first
pub struct RecallCmd {
    /// what to search for (words, "a phrase", a AND b, -not, tags:x)
    #[argh(positional)]
    query: Vec<String>,
    /// at most N results (default 20, at most 100)
    #[argh(option)]
    limit: Option<usize>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {memories: [{id, content, tags, score, rememberedBy, rememberedAt}]}
    #[argh(switch)]
    json: bool,
}

fn print_memory(m: &MemoryEntry) {
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", m.tags.join(", "))
    };
    output::block(
        &format!("{:>6.2}  ", m.score),
        &format!("{}{tags}", m.content),
    );
    outln!(
        "        by {}, {} ({})",
        m.remembered_by,
        m.remembered_at,
        m.id
    );
}

impl RecallCmd {
    pub async fn run(self) -> CliResult {
        let query = words("words to search for", &self.query)?;
        let limit = self.limit;
        let memories = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.recall(&query, limit).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "memories": memories }));
        } else if memories.is_empty() {
            outln!("nothing remembered matches \"{query}\"");
        } else {
            for m in &memories {
                print_memory(m);
            }
        }
        Ok(())
    }
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "forget", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh forget 01HZX3QK")]
/// delete a memory by id
pub struct ForgetCmd {
    /// the memory's id (from recall)
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id, forgotten}
    #[argh(switch)]
    json: bool,
}

impl ForgetCmd {
    pub async fn run(self) -> CliResult {
        with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.forget(&self.id).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "id": self.id, "forgotten": true }));
        } else {
            outln!("forgot {}", self.id);
        }
        Ok(())
    }
}
