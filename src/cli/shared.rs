//! Shared data (CLI.md "Shared data"): state, remember / recall / forget, tasks, reminders,
//! streams, contexts and the mesh overview.

use argh::FromArgs;
use serde_json::{Value, json};

use super::output::{self, outln};
use super::{CliError, CliResult, connect, print_json, select_mesh};
use crate::client::MeshClient;
use crate::protocol::ServerMessage;
use crate::protocol::messages::{
    ContextEntry, CreateTask, MemoryEntry, Schedule, ScheduledEntry, ShareContext, StateEntry,
    TaskEntry, When,
};
use crate::protocol::time;

/// Connects to the mesh, runs `f`, and closes the connection whatever `f` returned.
async fn with_client<T>(
    mesh: Option<&str>,
    f: impl AsyncFnOnce(&MeshClient) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let entry = select_mesh(mesh)?;
    let client = connect(&entry).await?;
    let result = f(&client).await;
    client.close().await;
    result
}

/// `a,b, c` → `["a", "b", "c"]`.
fn split_list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Words given as several arguments, as one text.
fn words(what: &str, args: &[String]) -> Result<String, CliError> {
    let text = args.join(" ");
    if text.trim().is_empty() {
        return Err(CliError::Usage(format!("give the {what}")));
    }
    Ok(text)
}

/// A value typed on the command line: JSON if it reads as JSON, else the text itself.
fn json_or_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// A JSON value for people: strings bare, everything else as compact JSON.
fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// --- state -------------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "state")]
/// the mesh's shared key-value board: get, set, list
pub struct StateCmd {
    #[argh(subcommand)]
    action: StateAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum StateAction {
    Get(StateGetCmd),
    Set(StateSetCmd),
    List(StateListCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
/// print one key's value, who set it and when
struct StateGetCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {key, value, updatedBy, updatedAt}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "set")]
/// set a key to a JSON value or, if it is not JSON, to the text (null deletes the key)
struct StateSetCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// the value: JSON, or text
    #[argh(positional)]
    value: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// print every key
struct StateListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {entries: [...]}
    #[argh(switch)]
    json: bool,
}

fn state_line(e: &StateEntry) -> String {
    if e.updated_by.is_empty() {
        return format!("{} is not set", e.key);
    }
    format!(
        "{} = {}  (by {}, {})",
        e.key,
        show_value(&e.value),
        e.updated_by,
        e.updated_at
    )
}

impl StateCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            StateAction::Get(c) => {
                let entry = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.get_state(&c.key).await?)
                })
                .await?;
                if c.json {
                    print_json(&entry);
                } else {
                    outln!("{}", state_line(&entry));
                }
            }
            StateAction::Set(c) => {
                let value = json_or_text(&c.value);
                let entry = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.set_state(&c.key, value).await?)
                })
                .await?;
                if c.json {
                    print_json(&entry);
                } else if entry.value.is_null() {
                    outln!("deleted {}", entry.key);
                } else {
                    outln!("{}", state_line(&entry));
                }
            }
            StateAction::List(c) => {
                let entries = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_state().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "entries": entries }));
                } else if entries.is_empty() {
                    outln!("no state keys");
                } else {
                    for e in &entries {
                        outln!("{}", state_line(e));
                    }
                }
            }
        }
        Ok(())
    }
}

// --- memory ------------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "remember")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "recall")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "forget")]
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

// --- tasks -------------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "task")]
/// shared tasks: create, list, claim, complete, release
pub struct TaskCmd {
    #[argh(subcommand)]
    action: TaskAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum TaskAction {
    Create(TaskCreateCmd),
    List(TaskListCmd),
    Claim(TaskClaimCmd),
    Complete(TaskCompleteCmd),
    Release(TaskReleaseCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
/// create an open task
struct TaskCreateCmd {
    /// what is to be done
    #[argh(positional)]
    title: Vec<String>,
    /// who should do it: the display name (or pubkey) of a member or peer of the mesh
    #[argh(option)]
    assignee: Option<String>,
    /// priority: low, normal, high or urgent (default normal)
    #[argh(option)]
    priority: Option<String>,
    /// tags, comma-separated
    #[argh(option)]
    tags: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// list tasks, oldest first
struct TaskListCmd {
    /// only tasks with this status: open, claimed or done
    #[argh(option)]
    status: Option<String>,
    /// only tasks assigned to this name
    #[argh(option)]
    assignee: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {tasks: [...]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "claim")]
/// claim an open task (only one claimer wins)
struct TaskClaimCmd {
    /// the task's id
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {tasks: [the task]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "complete")]
/// mark a task done
struct TaskCompleteCmd {
    /// the task's id
    #[argh(positional)]
    id: String,
    /// what came of it
    #[argh(option)]
    result: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {tasks: [the task]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "release")]
/// give a claimed task back (claimed → open): its claimer, its creator or an admin
struct TaskReleaseCmd {
    /// the task's id
    #[argh(positional)]
    id: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {tasks: [the task]}
    #[argh(switch)]
    json: bool,
}

/// What `task claim|complete|release` print: the changed task, as JSON or one line each.
fn print_task_change(json: bool, verb: &str, tasks: &[TaskEntry]) {
    if json {
        print_json(&json!({ "tasks": tasks }));
    } else {
        for t in tasks {
            outln!("{verb} task {}: {}", t.id, t.title);
        }
    }
}

fn print_tasks(tasks: &[TaskEntry]) {
    outln!(
        "{:<22}  {:<7}  {:<8}  {:<12}  {:<12}  TITLE",
        "ID",
        "STATUS",
        "PRIORITY",
        "ASSIGNEE",
        "CLAIMED BY"
    );
    for t in tasks {
        outln!(
            "{:<22}  {:<7}  {:<8}  {:<12}  {:<12}  {}{}",
            t.id,
            t.status,
            t.priority,
            t.assignee.as_deref().unwrap_or("-"),
            t.claimed_by.as_deref().unwrap_or("-"),
            t.title,
            t.result
                .as_deref()
                .map(|r| format!("  → {r}"))
                .unwrap_or_default()
        );
    }
}

impl TaskCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            TaskAction::Create(c) => {
                let task = CreateTask {
                    title: words("task title", &c.title)?,
                    assignee: c.assignee.clone(),
                    priority: c.priority.clone(),
                    tags: Some(split_list(&c.tags)),
                };
                let id = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.create_task(task).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "id": id }));
                } else {
                    outln!("created task {id}");
                }
            }
            TaskAction::List(c) => {
                if let Some(s) = &c.status
                    && !matches!(s.as_str(), "open" | "claimed" | "done")
                {
                    return Err(CliError::Usage(
                        "--status must be open, claimed or done".into(),
                    ));
                }
                let tasks = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client
                        .list_tasks(c.status.clone(), c.assignee.clone())
                        .await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "tasks": tasks }));
                } else if tasks.is_empty() {
                    outln!("no tasks");
                } else {
                    print_tasks(&tasks);
                }
            }
            TaskAction::Claim(c) => {
                let tasks = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.claim_task(&c.id).await?)
                })
                .await?;
                print_task_change(c.json, "claimed", &tasks);
            }
            TaskAction::Complete(c) => {
                let tasks = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.complete_task(&c.id, c.result.clone()).await?)
                })
                .await?;
                print_task_change(c.json, "completed", &tasks);
            }
            TaskAction::Release(c) => {
                let tasks = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.release_task(&c.id).await?)
                })
                .await?;
                print_task_change(c.json, "released", &tasks);
            }
        }
        Ok(())
    }
}

// --- reminders ---------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "remind")]
/// schedule a message: remind <message> (--in 10m | --at ISO-8601 | --cron "*/5 * * * *") [--to TARGET]; `remind list`; `remind cancel <id>`
pub struct RemindCmd {
    /// the message; or `list`; or `cancel <id>`
    #[argh(positional)]
    args: Vec<String>,
    /// deliver after this long (e.g. 90s, 10m, 2h)
    #[argh(option, long = "in")]
    in_: Option<String>,
    /// deliver at this time, ISO-8601 in UTC (e.g. 2030-01-31T09:00:00Z)
    #[argh(option)]
    at: Option<String>,
    /// deliver repeatedly on this 5-field cron schedule (UTC)
    #[argh(option)]
    cron: Option<String>,
    /// who gets it: a name, pubkey, @group or * (default: yourself)
    #[argh(option)]
    to: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {scheduledId, deliverAt}
    #[argh(switch)]
    json: bool,
}

fn scheduled_json(e: &ScheduledEntry) -> Value {
    let mut v = json!({
        "id": e.id,
        "to": e.to,
        "message": e.message,
        "deliverAt": time::iso(e.deliver_at),
        "createdAt": time::iso(e.created_at),
    });
    if let Some(c) = &e.cron {
        v["cron"] = json!(c);
        v["firedCount"] = json!(e.fired_count.unwrap_or(0));
    }
    v
}

impl RemindCmd {
    pub async fn run(self) -> CliResult {
        let timed = self.in_.is_some() || self.at.is_some() || self.cron.is_some();
        match self.args.as_slice() {
            [only] if only == "list" && !timed => return self.list().await,
            [first, id] if first == "cancel" && !timed => return self.cancel(id).await,
            _ => {}
        }
        let message = words(
            "reminder's message (or `list`, or `cancel <id>`)",
            &self.args,
        )?;
        let (deliver_at, cron) = match (&self.in_, &self.at, &self.cron) {
            (Some(d), None, None) => {
                let d = time::parse_duration(d).map_err(CliError::Usage)?;
                (Some(time::now_ms() + d.as_millis() as i64), None)
            }
            (None, Some(at), None) => {
                let ms = time::parse_iso(at).ok_or_else(|| {
                    CliError::Usage(format!(
                        "--at \"{at}\" is not an ISO-8601 time (e.g. 2030-01-31T09:00:00Z)"
                    ))
                })?;
                (Some(ms), None)
            }
            (None, None, Some(c)) => (None, Some(c.clone())),
            _ => {
                return Err(CliError::Usage(
                    "give exactly one of --in, --at or --cron".into(),
                ));
            }
        };
        let to = self.to.clone();
        let ack = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            let to = match to.as_deref() {
                None => String::new(),
                Some(t) => {
                    let targets = client.resolve_targets(t).await?;
                    match targets.as_slice() {
                        [one] => one.spec.clone(),
                        _ => {
                            return Err(CliError::Usage(
                                "--to takes one recipient (a name, pubkey, @group or *)".into(),
                            ));
                        }
                    }
                }
            };
            Ok(client
                .schedule(Schedule {
                    to,
                    message,
                    deliver_at: deliver_at.map(When::Ms),
                    subtype: Some("reminder".into()),
                    cron,
                    recurring: None,
                    ..Default::default()
                })
                .await?)
        })
        .await?;
        if self.json {
            let mut v = json!({
                "scheduledId": ack.scheduled_id,
                "deliverAt": time::iso(ack.deliver_at),
            });
            if let Some(c) = &ack.cron {
                v["cron"] = json!(c);
            }
            print_json(&v);
        } else {
            match &ack.cron {
                Some(c) => outln!(
                    "reminder {} on \"{c}\" (UTC), next at {}",
                    ack.scheduled_id,
                    time::iso(ack.deliver_at)
                ),
                None => outln!(
                    "reminder {} at {}",
                    ack.scheduled_id,
                    time::iso(ack.deliver_at)
                ),
            }
        }
        Ok(())
    }

    async fn list(&self) -> CliResult {
        let (messages, me) = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok((
                client.list_scheduled().await?,
                client.entry().member_pubkey.clone(),
            ))
        })
        .await?;
        if self.json {
            let list: Vec<Value> = messages.iter().map(scheduled_json).collect();
            print_json(&json!({ "messages": list }));
        } else if messages.is_empty() {
            outln!("no scheduled messages");
        } else {
            for m in &messages {
                let when = match &m.cron {
                    Some(c) => format!("\"{c}\" (next {})", time::iso(m.deliver_at)),
                    None => time::iso(m.deliver_at),
                };
                let to = match m.to.as_str() {
                    t if t == me => "you",
                    t if t.len() == 64 => &t[..12],
                    t => t,
                };
                outln!("{}  {when}  → {to}: {}", m.id, m.message);
            }
        }
        Ok(())
    }

    async fn cancel(&self, id: &str) -> CliResult {
        let ok = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.cancel_scheduled(id).await?)
        })
        .await?;
        if !ok {
            return Err(CliError::failed(format!(
                "you have no scheduled message {id} (see `claudemesh remind list`)"
            )));
        }
        if self.json {
            print_json(&json!({ "scheduledId": id, "ok": true }));
        } else {
            outln!("cancelled {id}");
        }
        Ok(())
    }
}

// --- streams -----------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "stream")]
/// live data streams: create, publish, subscribe, list
pub struct StreamCmd {
    #[argh(subcommand)]
    action: StreamAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum StreamAction {
    Create(StreamCreateCmd),
    Publish(StreamPublishCmd),
    Subscribe(StreamSubscribeCmd),
    List(StreamListCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "publish")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "subscribe")]
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

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
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

// --- contexts ----------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "context")]
/// what each member knows about the codebase: share, get, list
pub struct ContextCmd {
    #[argh(subcommand)]
    action: ContextAction,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ContextAction {
    Share(ContextShareCmd),
    Get(ContextGetCmd),
    List(ContextListCmd),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "share")]
/// share your current understanding (replaces what you shared before)
struct ContextShareCmd {
    /// a summary of what you know
    #[argh(positional)]
    summary: Vec<String>,
    /// files you read, comma-separated
    #[argh(option)]
    files: Option<String>,
    /// key findings, comma-separated
    #[argh(option)]
    findings: Option<String>,
    /// tags, comma-separated
    #[argh(option)]
    tags: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {id}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "get")]
/// find contexts that mention these words (a file path, a topic)
struct ContextGetCmd {
    /// what to look for
    #[argh(positional)]
    query: Vec<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {contexts: [...]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "list")]
/// every member's current context, newest first
struct ContextListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {contexts: [...]}
    #[argh(switch)]
    json: bool,
}

fn print_contexts(contexts: &[ContextEntry]) {
    if contexts.is_empty() {
        outln!("no contexts");
    }
    for c in contexts {
        output::block(&format!("{} ({}): ", c.peer_name, c.updated_at), &c.summary);
        if !c.files_read.is_empty() {
            outln!("  files: {}", c.files_read.join(", "));
        }
        for f in &c.key_findings {
            outln!("  - {f}");
        }
        if !c.tags.is_empty() {
            outln!("  tags: {}", c.tags.join(", "));
        }
    }
}

impl ContextCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            ContextAction::Share(c) => {
                let context = ShareContext {
                    summary: words("summary", &c.summary)?,
                    files_read: Some(split_list(&c.files)),
                    key_findings: Some(split_list(&c.findings)),
                    tags: Some(split_list(&c.tags)),
                };
                let id = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.share_context(context).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "id": id }));
                } else {
                    outln!("shared context {id}");
                }
            }
            ContextAction::Get(c) => {
                let query = words("words to look for", &c.query)?;
                let contexts = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.get_context(&query).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "contexts": contexts }));
                } else {
                    print_contexts(&contexts);
                }
            }
            ContextAction::List(c) => {
                let contexts = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.list_contexts().await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "contexts": contexts }));
                } else {
                    print_contexts(&contexts);
                }
            }
        }
        Ok(())
    }
}

// --- info --------------------------------------------------------------------------------

#[derive(FromArgs)]
#[argh(subcommand, name = "info")]
/// mesh overview: peers, groups, state keys, memories, files, tasks, streams
pub struct InfoCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

impl InfoCmd {
    pub async fn run(self) -> CliResult {
        let info = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.mesh_info().await?)
        })
        .await?;
        if self.json {
            print_json(&info);
            return Ok(());
        }
        let none = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(", ")
            }
        };
        outln!("mesh        {} ({})", info.mesh, info.slug);
        outln!("you         {}", info.your_name);
        let yours: Vec<String> = info.your_groups.iter().map(|g| g.name.clone()).collect();
        outln!("your groups {}", none(&yours));
        outln!("peers       {} online", info.peers);
        outln!("groups      {}", none(&info.groups));
        outln!("state keys  {}", none(&info.state_keys));
        outln!("memories    {}", info.memory_count);
        outln!("files       {}", info.file_count);
        outln!(
            "tasks       {} open, {} claimed, {} done",
            info.tasks.open,
            info.tasks.claimed,
            info.tasks.done
        );
        outln!("streams     {}", none(&info.streams));
        Ok(())
    }
}
