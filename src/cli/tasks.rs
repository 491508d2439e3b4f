//! Shared tasks (CLI.md "Shared data"): `task create|list|claim|complete|release`.

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json, split_list, with_client, words};
use crate::client::MeshClient;
use crate::protocol::messages::{CreateTask, TaskEntry};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "task", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task create \"fix the flaky login test\" --assignee bob")]
/// shared tasks: create, list, claim, complete, release
pub struct TaskCmd {
    #[argh(subcommand)]
    action: TaskAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum TaskAction {
    Create(TaskCreateCmd),
    List(TaskListCmd),
    Claim(TaskClaimCmd),
    Complete(TaskCompleteCmd),
    Release(TaskReleaseCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "create", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task create \"fix the flaky login test\" --assignee bob --tags tests")]
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

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task list --status open")]
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

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "claim", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task claim 01HZX3QK")]
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

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "complete", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task complete 01HZX3QK --result \"merged in #42\"")]
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

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "release", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh task release 01HZX3QK")]
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
