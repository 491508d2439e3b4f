//! Capabilities (issue 13, item 1): a member without a capability is refused with an error
//! naming it, on the broker, at once on connections already in; an admin gives it back and it
//! works on the same connection and a new one; nobody escalates, and the owner's capabilities
//! cannot be reduced.

use crate::common;

use common::*;
use serde_json::Value;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The one entry `perms show MEMBER --json` prints.
fn perms_of(viewer: &Person, member: &str) -> Value {
    let v = viewer.json(&["perms", "show", member, "--json"]);
    v["entries"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn without_send_or_state_a_member_is_refused_until_an_admin_grants_them_back() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let bob_live = bob.client().await;
    let alice_target = bob_live
        .resolve_targets("alice")
        .await
        .expect("alice is a target")
        .remove(0);

    // Defaults: a member sends and writes state.
    let before = perms_of(&alice, "bob");
    assert_eq!(before["role"], "member");
    assert_eq!(
        strings(&before["capabilities"]),
        ["send", "state", "files", "tools"]
    );
    bob.ok(&["send", "alice", "hello before"]);

    let set = alice.json(&["perms", "set", "bob", "-send", "-state", "--json"]);
    assert_eq!(strings(&set["denied"]), ["send", "state"]);
    assert_eq!(strings(&set["capabilities"]), ["files", "tools"]);

    // Refused through the CLI (a new connection), naming the capability and the fix.
    let err = bob.refused(&["send", "alice", "hello"]);
    assert!(
        err.contains("\"send\" capability (canSend)")
            && err.contains("claudemesh perms set bob +send"),
        "the refusal names the capability and how to get it: {err}"
    );
    let err = bob.refused(&["state", "set", "deploy", "green"]);
    assert!(
        err.contains("\"state\" capability (canWriteState)"),
        "the refusal names the capability: {err}"
    );
    // ... and on the connection that was already in when the capability went.
    let e = bob_live
        .send_text(&alice_target, "on the live connection", "now", None)
        .await
        .expect_err("send refused on the live connection");
    assert_eq!(e.code(), Some("forbidden"));
    assert!(e.to_string().contains("\"send\" capability"), "{e}");
    let e = bob_live
        .set_state("deploy", "green".into())
        .await
        .expect_err("set_state refused on the live connection");
    assert!(e.to_string().contains("\"state\" capability"), "{e}");
    // Reading is not guarded.
    bob.ok(&["state", "list"]);

    // carol, an admin, gives them back.
    let set = carol.json(&["perms", "set", "bob", "+send", "+state", "--json"]);
    assert_eq!(
        strings(&set["capabilities"]),
        ["send", "state", "files", "tools"]
    );
    assert!(strings(&set["denied"]).is_empty());
    bob_live
        .send_text(&alice_target, "back on the live connection", "now", None)
        .await
        .expect("send works again on the same connection");
    bob_live
        .set_state("deploy", "green".into())
        .await
        .expect("set_state works again on the same connection");
    bob.ok(&["send", "alice", "hello again"]);
    bob.ok(&["state", "set", "deploy", "blue"]);
    bob_live.close().await;
}

/// What a member scheduled goes out only while it may send: a reminder that comes due after
/// it lost `send` is skipped, and one after `send` came back fires.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_send_has_its_reminders_skipped_until_send_comes_back() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    bob.ok(&["remind", "while denied", "--in", "10s", "--to", "alice"]);
    alice.ok(&["perms", "set", "bob", "-send"]);
    broker
        .logged(
            "the broker to skip bob's reminder",
            "its member may not send now",
        )
        .await;
    assert!(!alice.ok(&["inbox", "--json"]).contains("while denied"));

    alice.ok(&["perms", "set", "bob", "=send"]);
    bob.ok(&["remind", "allowed again", "--in", "1s", "--to", "alice"]);
    eventually("bob's reminder after send came back", || async {
        alice.ok(&["inbox", "--json"]).contains("allowed again")
    })
    .await;
    assert!(!alice.ok(&["inbox", "--json"]).contains("while denied"));
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_escalates_and_the_owners_capabilities_cannot_be_reduced() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);

    // A member without `perms` cannot change anyone, itself included.
    let err = bob.refused(&["perms", "set", "bob", "+invite"]);
    assert!(err.contains("\"perms\" capability"), "{err}");
    let err = bob.refused(&["perms", "set", "bob", "--role", "admin"]);
    assert!(err.contains("\"perms\" capability"), "{err}");
    assert_eq!(perms_of(&alice, "bob")["role"], "member");

    // An admin cannot touch the owner, give what it does not hold, or change roles.
    let err = carol.refused(&["perms", "set", "alice", "-send"]);
    assert!(err.contains("owner"), "{err}");
    let err = carol.refused(&["perms", "set", "bob", "+delete-mesh"]);
    assert!(
        err.contains("\"delete-mesh\"") && err.contains("do not hold"),
        "{err}"
    );
    let err = carol.refused(&["perms", "set", "bob", "--role", "admin"]);
    assert!(err.contains("only the mesh owner changes roles"), "{err}");
    // Nor can the owner reduce its own.
    let err = alice.refused(&["perms", "set", "alice", "-send"]);
    assert!(err.contains("owner"), "{err}");
    let owner = perms_of(&bob, "alice");
    assert_eq!(owner["role"], "owner");
    assert_eq!(strings(&owner["capabilities"]).len(), 11, "{owner}");

    // A member given `perms` still cannot grant what it lacks, nor change an admin.
    alice.json(&["perms", "set", "bob", "+perms", "--json"]);
    let err = bob.refused(&["perms", "set", "bob", "+invite"]);
    assert!(
        err.contains("\"invite\"") && err.contains("do not hold"),
        "{err}"
    );
    let err = bob.refused(&["perms", "set", "carol", "-send"]);
    assert!(err.contains("admin"), "{err}");

    // The owner changes roles; the new admin has the admin's defaults.
    let set = alice.json(&["perms", "set", "bob", "=perms", "--role", "admin", "--json"]);
    assert_eq!(set["role"], "admin");
    assert!(strings(&set["capabilities"]).contains(&"invite".to_string()));
    assert!(!strings(&set["capabilities"]).contains(&"delete-mesh".to_string()));

    // Unknown capabilities are named.
    let err = alice.refused(&["perms", "set", "bob", "+fly"]);
    assert!(err.contains("unknown capability \"fly\""), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_denied_invite_cannot_make_or_list_invites() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, carol) = team_with_admin(&broker);
    carol.ok(&["invite", "--json"]);
    alice.json(&["perms", "set", "carol", "-invite", "--json"]);
    let err = carol.refused(&["invite", "--json"]);
    assert!(err.contains("\"invite\" capability (canInvite)"), "{err}");
    let err = carol.refused(&["invite", "list"]);
    assert!(err.contains("\"invite\" capability"), "{err}");
    // Shown in the table.
    let table = alice.ok(&["perms", "show"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("carol") && l.contains("(-invite)")),
        "{table}"
    );
}

// The same verbs as MCP tools (`claudemesh mcp` on stdio, driven by rmcp's client).

/// `invite` given to a member lets it invite members (not admins), and its invites stop
/// working when the capability goes.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_given_invite_invites_members_until_it_loses_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    let err = bob.refused(&["invite"]);
    assert!(err.contains("\"invite\" capability (canInvite)"), "{err}");
    alice.json(&["perms", "set", "bob", "+invite", "--json"]);
    let (_, url) = invite(&bob, &["--uses", "2"]);
    let dave = Person::new("dave");
    join(&dave, &url);
    assert_eq!(perms_of(&alice, "dave")["role"], "member");
    let err = bob.refused(&["invite", "--role", "admin"]);
    assert!(err.contains("an admin invite"), "{err}");
    // Without the capability, the invite bob signed lets nobody else in.
    alice.json(&["perms", "set", "bob", "=invite", "--json"]);
    let erin = Person::new("erin");
    let out = erin.run(&["join", &url, "--name", "erin"]);
    assert_ne!(out.code, 0, "bob's invite died with his capability");
}

/// Someone let in by a member's invite may do no more than that member: a member denied `send`
/// and `state` cannot get them back through a second identity it invites.
#[tokio::test(flavor = "multi_thread")]
async fn an_invitee_of_a_member_gets_none_of_what_that_member_was_denied() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    alice.json(&[
        "perms", "set", "bob", "+invite", "-send", "-state", "--json",
    ]);
    let (_, url) = invite(&bob, &[]);
    let dave = Person::new("dave");
    join(&dave, &url);
    let dave_perms = perms_of(&alice, "dave");
    let caps: Vec<&str> = dave_perms["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(caps, ["files", "tools"], "{dave_perms}");
    let err = dave.refused(&["send", "alice", "hello from bob's other self"]);
    assert!(err.contains("\"send\" capability"), "{err}");
    // An invitee of the owner gets the role's defaults.
    let (_, url) = invite(&alice, &[]);
    let erin = Person::new("erin");
    join(&erin, &url);
    erin.ok(&["send", "alice", "hi"]);
    // The audit log says what each join left out: for dave, bob's denials; for erin, nothing.
    let log = alice.json(&["audit", "--json"]);
    let joined = |name: &str| -> Value {
        let entries = log["entries"].as_array().expect("entries");
        let entry = entries
            .iter()
            .find(|e| e["eventType"] == "member.joined" && e["actor"] == name);
        entry.unwrap_or_else(|| panic!("{name} joined: {log:#}"))["payload"].clone()
    };
    assert_eq!(joined("dave")["denied"], "send,state", "{log:#}");
    assert_eq!(joined("erin").get("denied"), None, "{log:#}");
}

/// A role change applies to a connection already in: an admin demoted while connected loses
/// what the role gave it at once (here: releasing someone else's task).
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_admin_loses_its_role_on_its_live_connection() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let carol_live = carol.client().await;
    let created = bob.json(&["task", "create", "fix the tests", "--json"]);
    let id = created["id"].as_str().expect("task id").to_string();
    bob.ok(&["task", "claim", &id]);

    let set = alice.json(&["perms", "set", "carol", "--role", "member", "--json"]);
    assert_eq!(set["role"], "member");
    let e = carol_live
        .release_task(&id)
        .await
        .expect_err("a member may not release bob's task");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    // The owner may, which shows what carol lost.
    alice.ok(&["task", "release", &id]);
    carol_live.close().await;
}

/// A member given `invite` sees and revokes only its own invites: the code of an admin invite
/// someone else made would make it an admin.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_with_invite_sees_and_revokes_only_its_own_invites() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    let (admin_code, _) = invite(&alice, &["--role", "admin"]);
    alice.json(&["perms", "set", "bob", "+invite", "--json"]);
    let (own_code, _) = invite(&bob, &[]);
    let listed = bob.json(&["invite", "list", "--json"]);
    let codes: Vec<&str> = listed["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert_eq!(codes, [own_code.as_str()], "{listed}");
    let err = bob.refused(&["invite", "revoke", &admin_code]);
    assert!(err.contains("no invite"), "{err}");
    // alice still sees both, and her admin invite still works.
    let all = alice.json(&["invite", "list", "--json"]);
    let all: Vec<&str> = all["invites"]
        .as_array()
        .expect("invites")
        .iter()
        .filter_map(|i| i["code"].as_str())
        .collect();
    assert!(
        all.contains(&admin_code.as_str()) && all.contains(&own_code.as_str()),
        "{all:?}"
    );
}

/// Capabilities reach past the WebSocket: an upload token minted while the member held
/// `files` does not upload once it lost it, and creating a stream needs `state`.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_after_files_was_denied_and_a_stream_without_state_are_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    let bob_live = bob.client().await;
    let token = match bob_live
        .request(claudemesh::protocol::ClientMessage::FileToken(
            claudemesh::protocol::messages::FileTokenRequest {
                purpose: "upload".into(),
            },
        ))
        .await
        .expect("an upload token")
    {
        claudemesh::protocol::ServerMessage::FileTokenResult(t) => t.token,
        other => panic!("unexpected {other:?}"),
    };
    alice.json(&["perms", "set", "bob", "-files", "--json"]);
    let auth = format!("Bearer {token}");
    let resp = claudemesh::client::http::request(
        "POST",
        &format!("{}/upload", broker.http_url()),
        &[("authorization", auth), ("x-file-name", "notes.txt".into())],
        Some(b"contents".to_vec()),
    )
    .await
    .expect("the broker answers");
    let body = resp.json();
    assert_eq!(resp.status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"files\" capability")),
        "{body}"
    );

    alice.json(&["perms", "set", "bob", "-state", "--json"]);
    let err = bob.refused(&["stream", "create", "logs"]);
    assert!(err.contains("\"state\" capability"), "{err}");
    bob_live.close().await;
}

/// An admin demoted while connected no longer reads the audit log on that connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_admin_loses_the_audit_log_on_its_live_connection() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, carol) = team_with_admin(&broker);
    let carol_live = carol.client().await;
    carol_live.audit_verify().await.expect("an admin verifies");
    alice.json(&["perms", "set", "carol", "--role", "member", "--json"]);
    let e = carol_live
        .audit_verify()
        .await
        .expect_err("a member may not read the audit log");
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    carol_live.close().await;
}

/// Every frame that needs a capability, as a minimal valid frame of its type, with the
/// capability it needs. A new guarded frame (`perms::needed`) gets its line here.
fn guarded_frames() -> Vec<(Value, &'static str)> {
    use serde_json::json;
    let key = "00".repeat(32);
    vec![
        (
            json!({"type": "send", "targetSpec": "*", "ciphertext": "aGk="}),
            "send",
        ),
        (
            json!({"type": "schedule", "to": "*", "message": "hi", "deliverAt": 4102444800000i64}),
            "send",
        ),
        (
            json!({"type": "publish", "stream": "logs", "data": 1}),
            "send",
        ),
        (
            json!({"type": "set_state", "key": "k", "value": 1}),
            "state",
        ),
        (json!({"type": "remember", "content": "a fact"}), "state"),
        (json!({"type": "forget", "memoryId": "m1"}), "state"),
        (
            json!({"type": "share_context", "summary": "what I read"}),
            "state",
        ),
        (json!({"type": "create_task", "title": "a task"}), "state"),
        (json!({"type": "claim_task", "taskId": "t1"}), "state"),
        (json!({"type": "complete_task", "taskId": "t1"}), "state"),
        (json!({"type": "release_task", "taskId": "t1"}), "state"),
        (json!({"type": "create_stream", "name": "logs"}), "state"),
        (
            json!({"type": "share_skill", "name": "s", "description": "d", "instructions": "i"}),
            "state",
        ),
        (json!({"type": "remove_skill", "name": "s"}), "state"),
        (json!({"type": "set_clock", "speed": 2.0}), "state"),
        (json!({"type": "pause_clock"}), "state"),
        (json!({"type": "resume_clock"}), "state"),
        (
            json!({"type": "mesh_execute", "sql": "CREATE TABLE t (x)"}),
            "state",
        ),
        (
            json!({"type": "graph_execute", "cypher": "CREATE (:N)"}),
            "state",
        ),
        (
            json!({"type": "vector_create", "collection": "c", "dimension": 2}),
            "state",
        ),
        (
            json!({"type": "vector_store", "collection": "c", "vector": [0.0, 1.0]}),
            "state",
        ),
        (
            json!({"type": "vector_delete", "collection": "c", "id": "v1"}),
            "state",
        ),
        (
            json!({"type": "vector_delete_collection", "collection": "c"}),
            "state",
        ),
        (json!({"type": "file_token", "purpose": "upload"}), "files"),
        (json!({"type": "delete_file", "fileId": "f1"}), "files"),
        (
            json!({"type": "grant_file_access", "fileId": "f1", "peerPubkey": key, "sealedKey": "aGk="}),
            "files",
        ),
        (json!({"type": "peer_files_share"}), "files"),
        (
            json!({"type": "peer_file_request", "targetPubkey": key, "filePath": "a.txt"}),
            "files",
        ),
        (
            json!({"type": "peer_dir_request", "targetPubkey": key}),
            "files",
        ),
        (
            json!({"type": "create_invite", "inviteId": "i1", "code": "c1", "role": "member", "maxUses": 1, "expiresAt": 4102444800i64}),
            "invite",
        ),
        (json!({"type": "revoke_invite", "code": "c1"}), "invite"),
        (json!({"type": "list_invites"}), "invite"),
        (json!({"type": "telegram_invite"}), "invite"),
        (
            json!({"type": "set_perms", "member": "alice", "grant": ["send"]}),
            "perms",
        ),
        (
            json!({"type": "mcp_register", "serverName": "tools"}),
            "tools",
        ),
        (
            json!({"type": "mcp_call", "serverName": "tools", "toolName": "t"}),
            "tools",
        ),
        (
            json!({"type": "mcp_deploy", "server_name": "svc", "source": {"type": "npm", "package": "p"}}),
            "deploy",
        ),
        (
            json!({"type": "mcp_update", "server_name": "svc"}),
            "deploy",
        ),
        (
            json!({"type": "vault_set", "key": "K", "ciphertext": "aGk=", "nonce": "aGk=", "sealed_key": "aGk=", "entry_type": "env"}),
            "vault",
        ),
        (json!({"type": "vault_delete", "key": "K"}), "vault"),
        (
            json!({"type": "watch", "url": "http://127.0.0.1:9/"}),
            "watches",
        ),
        (json!({"type": "unwatch", "watchId": "w1"}), "watches"),
        (
            json!({"type": "create_webhook", "name": "hook"}),
            "webhooks",
        ),
        (
            json!({"type": "delete_webhook", "name": "hook"}),
            "webhooks",
        ),
    ]
}

/// The broker checks each guarded frame itself: a member denied every capability, speaking the
/// wire directly (no CLI to stop it first), is refused each one with `forbidden` naming the
/// capability it lacks; frames that need nothing (a download token, reads) still work.
#[tokio::test(flavor = "multi_thread")]
async fn every_guarded_frame_is_refused_naming_the_capability_it_needs() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team_with_admin(&broker);
    let set = alice.json(&[
        "perms",
        "set",
        "bob",
        "-send",
        "-state",
        "-files",
        "-tools",
        "-invite",
        "-deploy",
        "-vault",
        "-watches",
        "-webhooks",
        "-perms",
        "--json",
    ]);
    assert!(strings(&set["capabilities"]).is_empty(), "{set}");

    let bob_live = bob.client().await;
    for (frame, capability) in guarded_frames() {
        let body: claudemesh::protocol::ClientMessage = serde_json::from_value(frame.clone())
            .unwrap_or_else(|e| panic!("{frame} is a valid frame: {e}"));
        let e = bob_live
            .request(body)
            .await
            .expect_err(&format!("{frame} is refused without {capability}"));
        assert_eq!(e.code(), Some("forbidden"), "{frame}: {e}");
        assert!(
            e.to_string()
                .contains(&format!("\"{capability}\" capability")),
            "{frame} names the capability {capability}: {e}"
        );
    }

    // Only an upload token needs `files`: any other purpose is refused for what it is.
    let other: claudemesh::protocol::ClientMessage =
        serde_json::from_value(serde_json::json!({"type": "file_token", "purpose": "download"}))
            .expect("a file_token frame");
    let e = bob_live.request(other).await.expect_err("not a purpose");
    assert_eq!(e.code(), Some("invalid_argument"), "{e}");
    // Reading is not guarded: bob, without `files`, still fetches what alice shares.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "shared notes").expect("write");
    let shared = alice.json(&["file", "share", path.to_str().unwrap(), "--json"]);
    let id = shared["fileId"].as_str().expect("fileId");
    let out = dir.path().join("bob");
    std::fs::create_dir(&out).expect("mkdir");
    bob.json(&["file", "get", id, "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("fetched"),
        "shared notes"
    );
    bob.ok(&["state", "list"]);
    bob_live.close().await;
}

/// `perms show` of someone who is not in the mesh says so instead of printing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn perms_of_an_unknown_member_are_refused_as_not_found() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let err = alice.refused(&["perms", "show", "nobody"]);
    assert!(err.contains("no such member"), "{err}");
    assert_eq!(perms_of(&alice, "bob")["role"], "member");
}
