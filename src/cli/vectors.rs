//! Vector collections (README "Vectors"):
//! `vector create|store|search|delete|delete-collection|collections`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{CollectionEntry, VectorResult, VectorSearch, VectorStore};
use crate::store::{check_vector, vector_from_json};

/// Largest `@file.json` read for a vector, metadata or filter.
const MAX_ARG_FILE_BYTES: u64 = 1 << 20;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "vector", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vector create docs --dim 384 --metric cosine")]
#[argh(example = "claudemesh vector store docs --id readme --vector @readme.json --text 'README'")]
#[argh(example = "claudemesh vector search docs --vector @query.json --limit 5 --json")]
/// the mesh's vector collections: create, store, search, delete, collections
pub struct VectorCmd {
    #[argh(subcommand)]
    action: VectorAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum VectorAction {
    Create(CreateCmd),
    Store(StoreCmd),
    Search(SearchCmd),
    Delete(DeleteCmd),
    DeleteCollection(DeleteCollectionCmd),
    Collections(CollectionsCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "create", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vector create docs --dim 384")]
/// create a collection with a fixed dimension and metric
struct CreateCmd {
    /// the collection's name
    #[argh(positional)]
    name: String,
    /// numbers per vector (1 to 4096)
    #[argh(option)]
    dim: usize,
    /// cosine (default), dot or euclid
    #[argh(option)]
    metric: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {name, dimension, metric, count, createdBy, createdAt}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "store", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh vector store docs --id a1 --vector '[0.1, 0.2, 0.3]' --metadata '{{\"lang\": \"rust\"}}'"
)]
/// store a vector with metadata (replacing the record with the same id)
struct StoreCmd {
    /// the collection (created with this vector's dimension and cosine if missing)
    #[argh(positional)]
    name: String,
    /// the record's id
    #[argh(option)]
    id: String,
    /// the vector: a JSON array of numbers, or @file.json
    #[argh(option)]
    vector: String,
    /// a JSON object, or @file.json
    #[argh(option)]
    metadata: Option<String>,
    /// text kept with the record and returned by searches
    #[argh(option)]
    text: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {collection, id}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "search", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh vector search docs --vector '[0.1, 0.2, 0.3]' --filter '{{\"lang\": \"rust\"}}'"
)]
/// the records nearest to a vector, nearest first
struct SearchCmd {
    /// the collection
    #[argh(positional)]
    name: String,
    /// the query vector: a JSON array of numbers, or @file.json
    #[argh(option)]
    vector: String,
    /// at most K results (default 10, at most 100)
    #[argh(option)]
    limit: Option<usize>,
    /// only records whose metadata has these top-level keys and values: a JSON object, or
    /// @file.json
    #[argh(option)]
    filter: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {results: [{id, score, text, metadata}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "delete", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vector delete docs a1")]
/// delete a record by id
struct DeleteCmd {
    /// the collection
    #[argh(positional)]
    name: String,
    /// the record's id
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {collection, id, deleted}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "delete-collection", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vector delete-collection docs")]
/// delete a collection with all its records
struct DeleteCollectionCmd {
    /// the collection
    #[argh(positional)]
    name: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {collection, deleted}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "collections", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vector collections --json")]
/// list the mesh's collections
struct CollectionsCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {collections: [{name, dimension, metric, count, createdBy, createdAt}]}
    #[argh(switch)]
    json: bool,
}

/// A JSON argument as typed, or read from the file after `@`.
fn json_arg(what: &str, arg: &str) -> Result<serde_json::Value, CliError> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            let size = std::fs::metadata(path)
                .map_err(|e| CliError::Usage(format!("cannot read {what} file {path}: {e}")))?
                .len();
            if size > MAX_ARG_FILE_BYTES {
                return Err(CliError::Usage(format!(
                    "{what} file {path} is {size} bytes; the most is {MAX_ARG_FILE_BYTES}"
                )));
            }
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {what} file {path}: {e}")))?
        }
        None => arg.to_string(),
    };
    serde_json::from_str(&text)
        .map_err(|e| CliError::Usage(format!("{what} is not valid JSON: {e}")))
}

/// A vector argument: a JSON array of finite numbers.
fn vector_arg(arg: &str) -> Result<Vec<f32>, CliError> {
    match json_arg("the vector", arg)? {
        serde_json::Value::Array(values) => {
            let v = vector_from_json(&values).map_err(CliError::Usage)?;
            check_vector(&v).map_err(CliError::Usage)?;
            Ok(v)
        }
        other => Err(CliError::Usage(format!(
            "the vector must be a JSON array of numbers, not {other}"
        ))),
    }
}

fn object_arg(what: &str, arg: &Option<String>) -> Result<Option<serde_json::Value>, CliError> {
    match arg {
        None => Ok(None),
        Some(a) => match json_arg(what, a)? {
            v @ serde_json::Value::Object(_) => Ok(Some(v)),
            other => Err(CliError::Usage(format!(
                "{what} must be a JSON object, not {other}"
            ))),
        },
    }
}

fn collection_line(c: &CollectionEntry) -> String {
    format!(
        "{}  {}-d  {}  {} record{}  (by {}, {})",
        c.name,
        c.dimension,
        c.metric,
        c.count,
        if c.count == 1 { "" } else { "s" },
        c.created_by,
        c.created_at
    )
}

fn result_line(r: &VectorResult) -> String {
    let mut line = format!("{:>9.4}  {}", r.score, r.id);
    if let Some(t) = &r.text {
        line.push_str(&format!("  {t}"));
    }
    if let Some(m) = &r.metadata {
        line.push_str(&format!("  {m}"));
    }
    line
}

impl VectorCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            VectorAction::Create(c) => {
                let created = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client
                        .vector_create(&c.name, c.dim, c.metric.as_deref())
                        .await?)
                })
                .await?;
                if c.json {
                    print_json(&created);
                } else {
                    outln!("{}", collection_line(&created));
                }
            }
            VectorAction::Store(c) => {
                let req = VectorStore {
                    collection: c.name.clone(),
                    id: Some(c.id.clone()),
                    vector: vector_arg(&c.vector)?,
                    metadata: object_arg("the metadata", &c.metadata)?,
                    text: c.text,
                };
                let id = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vector_store(req).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "collection": c.name, "id": id }));
                } else {
                    outln!("stored {id} in {}", c.name);
                }
            }
            VectorAction::Search(c) => {
                let req = VectorSearch {
                    collection: c.name.clone(),
                    vector: vector_arg(&c.vector)?,
                    limit: c.limit,
                    filter: object_arg("the filter", &c.filter)?,
                };
                let results = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vector_search(req).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "results": results }));
                } else if results.is_empty() {
                    outln!("no records in {} match", c.name);
                } else {
                    for r in &results {
                        outln!("{}", result_line(r));
                    }
                }
            }
            VectorAction::Delete(c) => {
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vector_delete(&c.name, &c.id).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "collection": c.name, "id": c.id, "deleted": true }));
                } else {
                    outln!("deleted {} from {}", c.id, c.name);
                }
            }
            VectorAction::DeleteCollection(c) => {
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vector_delete_collection(&c.name).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "collection": c.name, "deleted": true }));
                } else {
                    outln!("deleted collection {}", c.name);
                }
            }
            VectorAction::Collections(c) => {
                let list = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_collections().await?)
                })
                .await?;
                output::list(
                    c.json,
                    "collections",
                    &list,
                    "no collections in this mesh",
                    collection_line,
                );
            }
        }
        Ok(())
    }
}
