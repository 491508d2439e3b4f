//! The mesh's graph (README "Graph"): `graph "MATCH …"`, `graph --execute "CREATE …"`.

use argh::{ArgsInfo, FromArgs};
use serde_json::{Map, Value};

use super::output::outln;
use super::{CliError, CliResult, print_json, show_value, with_client};
use crate::client::{ClientError, MeshClient};
use crate::protocol::messages::GraphResult;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "graph", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh graph \"MATCH (s:Service)-[:CALLS]->(t) RETURN s.name, t.name\"")]
#[argh(
    example = "claudemesh graph --execute \"MERGE (s:Service {{name: \\$name}})\" --params '{{\"name\": \"api\"}}'"
)]
#[argh(error_code(3, "the query returned no records"))]
/// query the mesh's graph in Cypher (read-only unless --execute)
pub struct GraphCmd {
    /// the Cypher statement
    #[argh(positional)]
    cypher: String,
    /// run a statement that writes (CREATE, MERGE, SET, DELETE, REMOVE)
    #[argh(switch)]
    execute: bool,
    /// parameters as a JSON object, used as $name in the statement
    #[argh(option)]
    params: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {records: [{column: value, ...}], truncated?}
    #[argh(switch)]
    json: bool,
}

fn parse_params(text: &str) -> Result<Map<String, Value>, CliError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CliError::Usage(
            "--params must be a JSON object, e.g. '{\"name\": \"api\"}'".into(),
        )),
        Err(e) => Err(CliError::Usage(format!("--params is not JSON: {e}"))),
    }
}

fn record_line(record: &Map<String, Value>) -> String {
    record
        .iter()
        .map(|(k, v)| format!("{k}: {}", show_value(v)))
        .collect::<Vec<_>>()
        .join("  ")
}

impl GraphCmd {
    pub async fn run(self) -> CliResult {
        let params = self.params.as_deref().map(parse_params).transpose()?;
        let result: GraphResult = with_client(self.mesh.as_deref(), async |c: &MeshClient| {
            Ok(if self.execute {
                c.graph_execute(&self.cypher, params).await?
            } else {
                c.graph_query(&self.cypher, params)
                    .await
                    .map_err(read_only_hint)?
            })
        })
        .await?;
        if self.json {
            print_json(&result);
        } else {
            for record in &result.records {
                outln!("{}", record_line(record));
            }
            if result.truncated {
                outln!("(more records left out; narrow the query or add LIMIT)");
            }
        }
        if result.records.is_empty() && !self.execute {
            return Err(CliError::NotFound("no records".into()));
        }
        if result.records.is_empty() && !self.json {
            outln!("ok");
        }
        Ok(())
    }
}

/// The broker's refusal of a write in a read-only query names the MCP tool to use; on the
/// command line it is the `--execute` flag.
fn read_only_hint(e: ClientError) -> CliError {
    match e {
        ClientError::Broker { ref code, .. } if code == "read_only" => CliError::Failed(
            "this statement writes, and `claudemesh graph` runs read-only: run it again with --execute"
                .into(),
        ),
        e => e.into(),
    }
}
