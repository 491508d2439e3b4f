//! Skills (issue 15): shared from SKILL.md files, kept in versions, ranked by keyword, seen by
//! every session's MCP server as prompts and `skill://` resources with `list_changed`
//! notifications, installed where Claude Code loads them, deployed as multi-file bundles.

use crate::common;

use std::path::Path;

use rmcp::model::{
    ClientConfig, GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ResourceContents,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::mcp::{call, mcp_process};
use common::*;

/// A Claude-Code-like MCP client that records the list-changed notifications it gets.
struct Recorder {
    tx: mpsc::UnboundedSender<&'static str>,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::default().with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tx.send("prompts");
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.tx.send("resources");
    }
}

type Mcp = RunningService<RoleClient, Recorder>;
type Changes = mpsc::UnboundedReceiver<&'static str>;

async fn start_mcp(person: &Person) -> (Mcp, Changes) {
    let transport = mcp_process(person);
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Recorder { tx }
        .serve(transport)
        .await
        .expect("MCP handshake with claudemesh mcp");
    (client, rx)
}

/// Waits until `person`'s MCP session is online and answers with the mesh's skills.
async fn mcp_online(mcp: &Mcp, watcher: &Person, person: &Person) {
    eventually("the MCP session to be online", || async {
        watcher.json(&["peers", "--json"])["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["displayName"] == person.name.as_str()))
    })
    .await;
    mcp.list_all_prompts().await.expect("prompts/list");
}

/// Forgets the notifications received so far.
fn drain(changes: &mut Changes) {
    while changes.try_recv().is_ok() {}
}

/// Waits for both list-changed notifications.
async fn both_changed(changes: &mut Changes) {
    let (mut prompts, mut resources) = (false, false);
    while !(prompts && resources) {
        match tokio::time::timeout(WAIT, changes.recv()).await {
            Ok(Some("prompts")) => prompts = true,
            Ok(Some("resources")) => resources = true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                panic!("no list_changed notification (prompts: {prompts}, resources: {resources})")
            }
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn prompt_text(result: &rmcp::model::GetPromptResult) -> String {
    result
        .messages
        .iter()
        .filter_map(|m| m.content.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn read_skill(mcp: &Mcp, uri: &str) -> String {
    let read = mcp
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .unwrap_or_else(|e| panic!("resources/read {uri}: {e}"));
    match &read.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{uri} is not text: {other:?}"),
    }
}

async fn get_prompt(mcp: &Mcp, name: &str, args: Value) -> Result<String, String> {
    let mut params = GetPromptRequestParams::new(name);
    if let Value::Object(m) = args {
        params.arguments = Some(m);
    }
    mcp.get_prompt(params)
        .await
        .map(|r| prompt_text(&r))
        .map_err(|e| e.to_string())
}

const FIX_ISSUE_V1: &str = "---
name: fix-issue
description: Fix a GitHub issue end to end
argument-hint: \"<issue> [priority]\"
allowed-tools: Read, Grep, Bash(git:*)
tags: [github, bugs]
---

Fix issue $0 with priority $1.
Arguments as given: $ARGUMENTS
";

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_skill_is_a_prompt_and_a_resource_of_every_session() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let files = tempfile::tempdir().unwrap();
    let (mcp, mut changes) = start_mcp(&bob).await;
    mcp_online(&mcp, &alice, &bob).await;

    let v1 = write(files.path(), "fix-issue/SKILL.md", FIX_ISSUE_V1);
    let shared = alice.json(&["skill", "share", &v1, "--json"]);
    assert_eq!(shared, json!({"name": "fix-issue", "version": 1}));

    // bob's MCP client sees it as a prompt with the hint's arguments…
    both_changed(&mut changes).await;
    let prompts = mcp.list_all_prompts().await.expect("prompts/list");
    let prompt = prompts
        .iter()
        .find(|p| p.name == "fix-issue")
        .unwrap_or_else(|| panic!("fix-issue in {prompts:?}"));
    assert_eq!(
        prompt.description.as_deref(),
        Some("Fix a GitHub issue end to end")
    );
    let args: Vec<(String, Option<bool>)> = prompt
        .arguments
        .iter()
        .flatten()
        .map(|a| (a.name.clone(), a.required))
        .collect();
    assert_eq!(
        args,
        [
            ("issue".to_string(), Some(true)),
            ("priority".to_string(), Some(false))
        ]
    );
    // …whose instructions come back with the arguments filled in…
    let text = get_prompt(
        &mcp,
        "fix-issue",
        json!({"issue": "42", "priority": "high"}),
    )
    .await
    .expect("prompts/get");
    assert_eq!(
        text,
        "Fix issue 42 with priority high.\nArguments as given: 42 high"
    );
    let missing = get_prompt(&mcp, "fix-issue", json!({"priority": "low"})).await;
    assert!(
        missing.as_ref().is_err_and(|e| e.contains("issue")),
        "a missing required argument is named: {missing:?}"
    );
    // …and as a skill:// resource holding its SKILL.md.
    let resources = mcp.list_all_resources().await.expect("resources/list");
    assert!(
        resources.iter().any(|r| r.uri == "skill://team/fix-issue"),
        "{resources:?}"
    );
    let md = read_skill(&mcp, "skill://team/fix-issue").await;
    assert!(md.starts_with("---\nname: fix-issue\n"), "{md}");
    assert!(
        md.contains("allowed-tools: Read, Grep, Bash(git:*)"),
        "{md}"
    );
    assert!(md.contains("Fix issue $0 with priority $1."), "{md}");
    let missing = mcp
        .read_resource(ReadResourceRequestParams::new("skill://team/nope"))
        .await;
    assert!(missing.is_err(), "an unknown skill is not a resource");

    // A new version: list_changed again, the prompt follows it, version 1 stays readable.
    drain(&mut changes);
    let v2 = write(
        files.path(),
        "fix-issue/SKILL.md",
        &FIX_ISSUE_V1.replace("Fix issue $0", "Reproduce, then fix issue $0"),
    );
    assert_eq!(alice.json(&["skill", "share", &v2, "--json"])["version"], 2);
    both_changed(&mut changes).await;
    let text = get_prompt(&mcp, "fix-issue", json!({"issue": "7"}))
        .await
        .unwrap();
    assert!(
        text.starts_with("Reproduce, then fix issue 7 with priority ."),
        "{text}"
    );
    let old = bob.json(&["skill", "get", "fix-issue@1", "--json"]);
    assert_eq!(old["version"], 1);
    assert!(
        old["instructions"]
            .as_str()
            .unwrap()
            .starts_with("Fix issue $0")
    );
    let old_md = read_skill(&mcp, "skill://team/fix-issue@1").await;
    assert!(old_md.contains("\nFix issue $0"), "{old_md}");
    assert_eq!(
        bob.json(&["skill", "get", "fix-issue", "--json"])["version"],
        2
    );

    // Removed: list_changed, and it is gone from prompts and resources.
    drain(&mut changes);
    alice.ok(&["skill", "remove", "fix-issue"]);
    both_changed(&mut changes).await;
    assert!(mcp.list_all_prompts().await.unwrap().is_empty());
    assert!(mcp.list_all_resources().await.unwrap().is_empty());
    assert_eq!(bob.run(&["skill", "get", "fix-issue@1"]).code, 3);
    mcp.cancel().await.ok();
}

fn skill_md(name: &str, description: &str, body: &str, tags: &str) -> String {
    format!("---\nname: {name}\ndescription: {description}\ntags: [{tags}]\n---\n\n{body}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn list_skills_ranks_by_keyword_and_mcp_tools_share_and_get() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let files = tempfile::tempdir().unwrap();
    for (name, description, body, tags) in [
        (
            "ship-it",
            "Deploy the app to production",
            "Deploy with `make deploy`, then watch the deploy log until the deploy is green.",
            "ops",
        ),
        (
            "review",
            "Review a pull request",
            "Read the diff; after a deploy, check the dashboards.",
            "code",
        ),
        (
            "lint",
            "Run the linters",
            "cargo clippy and cargo fmt.",
            "code",
        ),
    ] {
        let path = write(
            files.path(),
            &format!("{name}.md"),
            &skill_md(name, description, body, tags),
        );
        alice.ok(&["skill", "share", &path]);
    }

    let names = |v: &Value| -> Vec<String> {
        v["skills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    // By keyword: the best match first, stemmed ("deploying" finds "deploy"), others left out.
    let found = bob.json(&["skill", "list", "deploying", "--json"]);
    assert_eq!(names(&found), ["ship-it", "review"], "{found:#}");
    let scores: Vec<f64> = found["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1], "{scores:?}");
    assert_eq!(
        names(&bob.json(&["skill", "list", "ops", "--json"])),
        ["ship-it"]
    );
    // Kept across a restart, and found again when the index has to be rebuilt.
    broker.restart();
    assert_eq!(
        names(&bob.json(&["skill", "list", "deploying", "--json"])),
        ["ship-it", "review"]
    );
    assert!(broker.terminate().success());
    std::fs::remove_dir_all(broker.data_dir().join("memory")).unwrap();
    broker.restart();
    assert_eq!(
        names(&bob.json(&["skill", "list", "deploying", "--json"])),
        ["ship-it", "review"]
    );
    // Without one: every skill, by name, without instructions.
    let all = bob.json(&["skill", "list", "--json"]);
    assert_eq!(names(&all), ["lint", "review", "ship-it"]);
    assert!(all["skills"][0].get("instructions").is_none());

    // The MCP tools of its author's session: share (a second version), get by version, list
    // by keyword.
    let (mcp, _changes) = start_mcp(&alice).await;
    mcp_online(&mcp, &bob, &alice).await;
    let (ok, text) = call(
        &mcp,
        "share_skill",
        json!({
            "name": "lint",
            "description": "Run every linter",
            "instructions": "cargo clippy --all-targets -- -D warnings",
            "tags": ["code"],
            "when_to_use": "before each commit",
            "user_invocable": false,
        }),
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("version 2"), "{text}");
    let (ok, text) = call(&mcp, "get_skill", json!({"name": "lint@1"})).await;
    assert!(ok && text.contains("cargo clippy and cargo fmt."), "{text}");
    let (ok, text) = call(&mcp, "get_skill", json!({"name": "lint"})).await;
    assert!(ok && text.contains("before each commit"), "{text}");
    let (ok, text) = call(&mcp, "list_skills", json!({"query": "production"})).await;
    assert!(ok && text.starts_with("- ship-it (v1)"), "{text}");
    // `user_invocable: false` keeps it out of the prompts, not out of the resources.
    let prompts = mcp.list_all_prompts().await.unwrap();
    assert!(!prompts.iter().any(|p| p.name == "lint"), "{prompts:?}");
    let resources = mcp.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "skill://team/lint"));
    mcp.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn sharing_and_removing_need_the_state_capability_and_are_audited() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let files = tempfile::tempdir().unwrap();
    let secret_step = "step seven: rotate the staging credentials";
    let path = write(
        files.path(),
        "ops.md",
        &skill_md("ops", "Operations", secret_step, "ops"),
    );

    // bob without `state`: refused, naming the capability; nothing shared.
    alice.ok(&["perms", "set", "bob", "-state"]);
    let err = bob.refused(&["skill", "share", &path]);
    assert!(err.contains("\"state\""), "{err}");
    assert!(
        bob.json(&["skill", "list", "--json"])["skills"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // alice shares; bob (even with `state` back) may not remove what alice wrote.
    alice.ok(&["skill", "share", &path]);
    let err = bob.refused(&["skill", "remove", "ops"]);
    assert!(err.contains("\"state\""), "{err}");
    alice.ok(&["perms", "set", "bob", "+state"]);
    let err = bob.refused(&["skill", "remove", "ops"]);
    assert!(err.contains("only its author"), "{err}");
    // Nor publish his own instructions over it: every session would be served his.
    let takeover = write(
        files.path(),
        "takeover.md",
        &skill_md("ops", "Operations", "pipe the installer into sh", "ops"),
    );
    let err = bob.refused(&["skill", "share", &takeover]);
    assert!(
        err.contains("shared by alice") && err.contains("another name"),
        "{err}"
    );
    let current = alice.run(&["skill", "get", "ops"]);
    assert!(current.stdout.contains(secret_step), "{}", current.stdout);
    // Its author may; it is version 2.
    assert!(alice.ok(&["skill", "share", &path]).contains("version 2"));
    alice.ok(&["skill", "remove", "ops"]);

    // The audit log names the skill and its version, never its instructions.
    let log = alice.json(&["audit", "--json"]);
    let text = log.to_string();
    assert!(text.contains("skill.shared"), "{log:#}");
    assert!(text.contains("skill.removed"), "{log:#}");
    assert!(!text.contains("rotate the staging"), "{log:#}");

    // Limits, with errors that say what was wrong; the broker keeps serving.
    let long = write(
        files.path(),
        "long.md",
        &skill_md("long", "Too long", &"x".repeat(40_000), "a"),
    );
    let err = alice.refused(&["skill", "share", &long]);
    assert!(err.contains("instructions"), "{err}");
    let bad = write(
        files.path(),
        "bad.md",
        &skill_md("../escape", "Bad name", "body", "a"),
    );
    let err = alice.refused(&["skill", "share", &bad]);
    assert!(err.contains("skill name"), "{err}");
    let broken = write(files.path(), "broken.md", "---\nname: [oops\n---\nbody\n");
    let err = alice.refused(&["skill", "share", &broken]);
    assert!(err.contains("front matter"), "{err}");
    // A bundle must name a file of the mesh.
    let client = alice.client().await;
    let err = client
        .share_skill(claudemesh::protocol::messages::ShareSkill {
            name: "ghost".into(),
            description: "A bundle that is not there".into(),
            instructions: "nothing".into(),
            bundle: Some(claudemesh::protocol::messages::SkillBundle {
                file_id: "0357jAkDI5LooDpn7fZZ5x".into(),
                files: vec!["SKILL.md".into()],
            }),
            ..Default::default()
        })
        .await
        .expect_err("an unknown bundle file is refused");
    assert!(err.to_string().contains("names no file"), "{err}");
    client.close().await;
    assert_eq!(alice.run(&["skill", "list"]).code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_share_from_skill_md_and_install_where_claude_code_loads_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let files = tempfile::tempdir().unwrap();
    // No `name:`: the directory names it, as Claude Code does.
    let path = write(
        files.path(),
        "release-notes/SKILL.md",
        "---\ndescription: Write release notes\nmodel: sonnet\nuser-invocable: true\n---\n\n# Release notes\nCollect the merged PRs since $0.\n",
    );
    alice.ok(&["skill", "share", &path]);
    let skills_dir = tempfile::tempdir().unwrap();
    let dir = skills_dir.path().to_str().unwrap();
    let installed = bob.json(&["skill", "install", "release-notes", "--dir", dir, "--json"]);
    let written = skills_dir.path().join("release-notes/SKILL.md");
    assert_eq!(installed["path"], written.to_str().unwrap());
    let md = std::fs::read_to_string(&written).unwrap();
    assert!(
        md.starts_with("---\nname: release-notes\ndescription: Write release notes\n"),
        "{md}"
    );
    assert!(md.contains("model: sonnet\n"), "{md}");
    assert!(md.contains("user-invocable: true\n"), "{md}");
    assert!(
        md.ends_with("# Release notes\nCollect the merged PRs since $0.\n"),
        "{md}"
    );

    // An older version installs too; an unknown skill is exit code 3.
    let v2 = md.replace("Collect", "Gather");
    std::fs::write(&path, v2).unwrap();
    alice.ok(&["skill", "share", &path]);
    bob.ok(&["skill", "install", "release-notes@1", "--dir", dir]);
    let md = std::fs::read_to_string(&written).unwrap();
    assert!(md.contains("Collect the merged"), "{md}");
    assert_eq!(bob.run(&["skill", "install", "nope", "--dir", dir]).code, 3);

    // Without --dir: under the home directory, where Claude Code loads personal skills.
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["skill", "install", "release-notes"])
        .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
        .env("HOME", home.path())
        .output()
        .expect("run claudemesh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(home.path().join(".claude/skills/release-notes/SKILL.md"))
        .expect("installed under $HOME/.claude/skills");
    assert!(md.contains("Gather the merged"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_deploys_from_a_directory_or_a_shared_archive_and_installs_its_files() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let src = tempfile::tempdir().unwrap();
    let bundle = src.path().join("deploy-kit");
    write(
        &bundle,
        "SKILL.md",
        "---\ndescription: Deploy with the kit's script\n---\n\nRun scripts/deploy.sh.\n",
    );
    write(&bundle, "scripts/deploy.sh", "#!/bin/sh\necho deploying\n");

    // From a directory: packed, shared as a file, deployed.
    let deployed = alice.json(&["skill", "deploy", bundle.to_str().unwrap(), "--json"]);
    assert_eq!(deployed["name"], "deploy-kit");
    assert_eq!(deployed["files"], json!(["SKILL.md", "scripts/deploy.sh"]));
    let skills_dir = tempfile::tempdir().unwrap();
    bob.ok(&[
        "skill",
        "install",
        "deploy-kit",
        "--dir",
        skills_dir.path().to_str().unwrap(),
    ]);
    let script = skills_dir.path().join("deploy-kit/scripts/deploy.sh");
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "#!/bin/sh\necho deploying\n"
    );

    // From an archive shared as a file, through the MCP tool.
    let tar = src.path().join("kit.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            src.path().to_str().unwrap(),
            "deploy-kit",
        ])
        .status()
        .expect("tar");
    assert!(status.success());
    let shared = alice.json(&["file", "share", tar.to_str().unwrap(), "--json"]);
    let (mcp, _changes) = start_mcp(&alice).await;
    mcp_online(&mcp, &bob, &alice).await;
    let (ok, text) = call(
        &mcp,
        "mesh_skill_deploy",
        json!({"file_id": shared["fileId"]}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(
        text.contains("deployed skill deploy-kit (version 2) with 2 files"),
        "{text}"
    );

    // An archive that escapes its directory is refused, naming why.
    let evil = src.path().join("evil.tar");
    let status = std::process::Command::new("tar")
        .args([
            "-cf",
            evil.to_str().unwrap(),
            "-P",
            "--transform",
            "s|^|../|",
            "-C",
            bundle.to_str().unwrap(),
            "SKILL.md",
        ])
        .status()
        .expect("tar");
    assert!(status.success());
    let err = alice.refused(&["skill", "deploy", evil.to_str().unwrap()]);
    assert!(err.contains("relative"), "{err}");
    mcp.cancel().await.ok();
}
