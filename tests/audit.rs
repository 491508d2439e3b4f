//! The audit log (PROTOCOL.md §12.5, README "Governance"): every mutation lands in a per-mesh
//! hash chain with its actor and metadata (never a secret); owners and admins read it,
//! members are refused; `audit verify` passes on an untouched log and names the record a test
//! edited or deleted in `mesh.redb` itself.

use crate::common;

use claudemesh::protocol::time;
use common::secrets::assert_not_in;
use common::*;
use serde_json::Value;

/// What `audit --json` listed: `(seq, eventType, actor, payload)`, oldest first.
fn entries(v: &Value) -> Vec<(u64, String, String, Value)> {
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().expect("id"),
                e["eventType"].as_str().expect("eventType").to_string(),
                e["actor"].as_str().expect("actor").to_string(),
                e["payload"].clone(),
            )
        })
        .collect()
}

fn ok(out: &CmdOutput, what: &str) {
    assert_eq!(out.code, 0, "{what} failed:\n{}{}", out.stdout, out.stderr);
}

#[test]
fn mutations_by_several_members_are_audited_in_order_without_secrets() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    let carol = Person::new("carol");
    create_mesh(&broker, &alice, "team");
    let (_, url) = invite(&alice, &[]);
    let bob_id = join(&bob, &url)["memberId"].as_str().unwrap().to_string();
    let (_, admin_url) = invite(&alice, &["--role", "admin"]);
    join(&carol, &admin_url);
    // On the owner's signed admin list, so carol's rotation after `revoke` is taken.
    ok(
        &alice.run(&["perms", "set", "carol", "--role", "admin"]),
        "perms set",
    );

    let state_secret = "value-of-the-deploy-state-7f3a9c";
    let message_secret = "the-launch-code-is-swordfish-4711";
    ok(
        &alice.run(&["state", "set", "deploy-target", state_secret]),
        "state set",
    );
    let task = bob.json(&["task", "create", "rotate the certificates", "--json"]);
    let task_id = task["id"].as_str().unwrap().to_string();
    ok(&bob.run(&["task", "claim", &task_id]), "task claim");
    ok(&alice.run(&["task", "complete", &task_id]), "task complete");
    ok(&bob.run(&["send", "alice", message_secret]), "send");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "file contents nobody logs").unwrap();
    let shared = bob.json(&["file", "share", path.to_str().unwrap(), "--json"]);
    let file_id = shared["fileId"].as_str().unwrap().to_string();
    ok(&carol.run(&["file", "delete", &file_id]), "file delete");
    ok(&carol.run(&["revoke", "bob"]), "revoke bob");
    // A refused mutation leaves nothing: a claim of a done task.
    assert_ne!(alice.run(&["task", "claim", &task_id]).code, 0);

    let log = alice.json(&["audit", "--json"]);
    let got = entries(&log);
    let seqs: Vec<u64> = got.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=got.len() as u64).collect::<Vec<_>>(), "{log:#}");
    let events: Vec<(&str, &str)> = got
        .iter()
        .map(|(_, event, actor, _)| (event.as_str(), actor.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("mesh.created", "alice"),
            ("invite.created", "alice"),
            ("member.joined", "bob"),
            ("invite.created", "alice"),
            ("member.joined", "carol"),
            ("perms.changed", "alice"),
            ("admins.changed", "alice"),
            ("state.set", "alice"),
            ("task.created", "bob"),
            ("task.claimed", "bob"),
            ("task.completed", "alice"),
            ("file.shared", "bob"),
            ("file.deleted", "carol"),
            ("member.revoked", "carol"),
            ("key.rotated", "carol"),
        ],
        "{log:#}"
    );
    assert_eq!(log["total"], 15);
    let payload = |i: usize| &got[i].3;
    assert_eq!(payload(2)["role"], "member");
    assert_eq!(payload(4)["role"], "admin");
    assert_eq!(payload(6)["admins"], "1");
    assert_eq!(payload(7)["key"], "deploy-target");
    assert_eq!(
        payload(7)["bytes"],
        (state_secret.len() + 2).to_string(),
        "the value's size as JSON"
    );
    assert_eq!(payload(9)["taskId"], task_id.as_str());
    assert_eq!(payload(11)["fileId"], file_id.as_str());
    assert_eq!(payload(11)["name"], "notes.txt");
    assert_eq!(payload(13)["memberId"], bob_id.as_str());
    assert_eq!(payload(13)["name"], "bob");
    // `revoke` rotated the root key: the epoch and how many members got a copy (alice, carol).
    assert_eq!(payload(14)["epoch"], "1");
    assert_eq!(payload(14)["members"], "2");
    // Each record links to the one before.
    for pair in log["entries"].as_array().unwrap().windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"]);
    }

    // Metadata only: neither the state value, the message nor the task title is in the log;
    // the message never reached the broker's disk or log at all.
    let text = alice.run(&["audit"]);
    ok(&text, "audit");
    assert!(
        text.stdout.contains("member.revoked") && text.stdout.contains("carol"),
        "{}",
        text.stdout
    );
    for out in [log.to_string(), text.stdout.clone()] {
        assert_not_in("the audit output", out.as_bytes(), state_secret.as_bytes());
        assert_not_in(
            "the audit output",
            out.as_bytes(),
            message_secret.as_bytes(),
        );
        assert_not_in(
            "the audit output",
            out.as_bytes(),
            b"rotate the certificates",
        );
    }
    assert_broker_never_saw(&broker, message_secret.as_bytes());

    // Filters: by event type (with its total), by time.
    let revoked = alice.json(&["audit", "--event", "member.revoked", "--json"]);
    assert_eq!(entries(&revoked).len(), 1);
    assert_eq!(revoked["total"], 1);
    let newest = alice.json(&["audit", "--limit", "2", "--json"]);
    let seqs: Vec<u64> = entries(&newest).iter().map(|e| e.0).collect();
    assert_eq!(seqs, [14, 15], "the newest two, oldest first");
    assert_eq!(newest["total"], 15);
    assert_eq!(
        entries(&alice.json(&["audit", "--since", "1h", "--json"])).len(),
        15
    );
    let later = time::iso(time::now_ms() + 3_600_000);
    let none = alice.json(&["audit", "--since", &later, "--json"]);
    assert_eq!((entries(&none).len(), none["total"].as_u64()), (0, Some(0)));

    // An admin reads it too; a member does not (nor may verify it).
    assert_eq!(entries(&carol.json(&["audit", "--json"])).len(), 15);
    let dave = invited(&alice, "dave");
    for args in [&["audit"][..], &["audit", "verify"][..]] {
        let refused = dave.run(args);
        assert_ne!(refused.code, 0, "{args:?}: {}", refused.stdout);
        assert!(
            refused.stderr.contains("forbidden") && refused.stderr.contains("owner or admin"),
            "{args:?}: {}",
            refused.stderr
        );
        assert!(
            !refused.stdout.contains("mesh.created"),
            "{}",
            refused.stdout
        );
    }

    // A member's own governance: a block and a new display name are logged too.
    ok(&dave.run(&["block", "alice"]), "block");
    ok(&dave.run(&["profile", "--name", "davey"]), "rename");
    let log = alice.json(&["audit", "--json"]);
    let got = entries(&log);
    let tail: Vec<(&str, &str)> = got[got.len() - 2..]
        .iter()
        .map(|(_, event, actor, _)| (event.as_str(), actor.as_str()))
        .collect();
    assert_eq!(
        tail,
        [("grants.changed", "dave"), ("member.renamed", "dave")],
        "{log:#}"
    );
    let block = &got[got.len() - 2].3;
    assert_eq!(
        (block["blocked"].as_str(), block["allowed"].as_str()),
        (Some("true"), Some(""))
    );
    let rename = &got[got.len() - 1].3;
    assert_eq!(
        (rename["from"].as_str(), rename["to"].as_str()),
        (Some("dave"), Some("davey"))
    );

    let verified = alice.run(&["audit", "verify"]);
    ok(&verified, "audit verify");
    assert!(
        verified.stdout.contains("verifies: 19 records"),
        "{}",
        verified.stdout
    );
}

/// Rewrites one stored audit record of `mesh.redb` (the broker stopped): `edit` gets its
/// bytes and returns the new ones, or `None` to delete it. Returns the record's seq.
fn tamper(data_dir: &std::path::Path, find: &[u8], edit: impl Fn(&[u8]) -> Option<Vec<u8>>) -> u64 {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};
    const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
    let db = redb::Database::open(data_dir.join("mesh.redb")).expect("open mesh.redb");
    let (key, bytes) = {
        let rt = db.begin_read().unwrap();
        let table = rt.open_table(AUDIT).unwrap();
        let mut found = None;
        for row in table.iter().unwrap() {
            let (k, v) = row.unwrap();
            if v.value().windows(find.len()).any(|w| w == find) {
                let (mesh, seq) = k.value();
                found = Some(((mesh.to_string(), seq), v.value().to_vec()));
                break;
            }
        }
        found.expect("a record holding the marker")
    };
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(AUDIT).unwrap();
        let k = (key.0.as_str(), key.1);
        match edit(&bytes) {
            Some(new) => {
                table.insert(k, new.as_slice()).unwrap();
            }
            None => {
                table.remove(k).unwrap();
            }
        }
    }
    tx.commit().unwrap();
    key.1
}

fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn audit_verify_names_a_record_edited_or_deleted_in_the_database_file() {
    let mut broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    for key in ["alpha-key", "bravo-key", "charlie-key", "delta-key"] {
        ok(&alice.run(&["state", "set", key, "1"]), "state set");
    }
    let clean = alice.json(&["audit", "verify", "--json"]);
    assert_eq!(clean["valid"], true, "{clean:#}");
    assert_eq!(clean["entries"], 5);

    // One payload byte of one record changes: that record is named.
    broker.terminate();
    let edited = tamper(broker.data_dir(), b"charlie-key", |b| {
        Some(replace(b, b"charlie-key", b"charlie-kez"))
    });
    assert_eq!(edited, 4, "mesh.created, then alpha, bravo, charlie");
    broker.restart();
    let out = alice.run(&["audit", "verify"]);
    assert_eq!(out.code, 1, "a broken chain fails: {}", out.stdout);
    assert!(
        out.stderr.contains("broken at record 4 (state.set)")
            && out.stderr.contains("do not match its hash"),
        "{}",
        out.stderr
    );
    let v = alice.run(&["audit", "verify", "--json"]);
    assert_eq!(v.code, 1);
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        (
            &v["valid"],
            &v["brokenAt"],
            &v["brokenEvent"],
            &v["entries"]
        ),
        (
            &Value::Bool(false),
            &Value::from(4),
            &Value::from("state.set"),
            &Value::from(3)
        ),
        "{v:#}"
    );
    // The edited record still reads (the log stays usable), with what was written into it.
    let log = alice.json(&["audit", "--json"]);
    assert_eq!(log["entries"][3]["payload"]["key"], "charlie-kez");

    // An earlier record deleted outright: now that one is the first broken.
    broker.terminate();
    let deleted = tamper(broker.data_dir(), b"bravo-key", |_| None);
    assert_eq!(deleted, 3);
    broker.restart();
    let v = alice.run(&["audit", "verify", "--json"]);
    assert_eq!(v.code, 1);
    let v: Value = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(
        (&v["brokenAt"], &v["reason"]),
        (&Value::from(3), &Value::from("missing"))
    );

    // The log goes on from the head: new mutations still append (and the break stays named).
    ok(&alice.run(&["state", "set", "echo-key", "1"]), "state set");
    let newest = alice.json(&["audit", "--limit", "1", "--json"]);
    assert_eq!(entries(&newest)[0].0, 6);
    let v = alice.json_or_fail(&["audit", "verify", "--json"]);
    assert_eq!(v["brokenAt"], 3);
}

trait JsonOrFail {
    fn json_or_fail(&self, args: &[&str]) -> Value;
}

impl JsonOrFail for Person {
    /// A command that prints JSON whatever its exit code.
    fn json_or_fail(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", out.stdout, out.stderr))
    }
}

/// The broker's own mutations (an ephemeral file expiring) and a grant are audited too.
#[tokio::test(flavor = "multi_thread")]
async fn expiry_and_grants_are_audited() {
    let broker = BrokerProc::start(&["--ephemeral-ttl", "1s"]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("brief.txt");
    std::fs::write(&path, "goes away").unwrap();
    let path = path.to_str().unwrap();
    let brief = alice.json(&["file", "share", path, "--ephemeral", "--json"]);
    let sealed = alice.json(&["file", "share", path, "--to", "bob", "--json"]);
    let sealed_id = sealed["fileId"].as_str().unwrap().to_string();
    let carol = invited(&alice, "carol");
    ok(
        &alice.run(&["file", "grant", &sealed_id, "carol"]),
        "file grant",
    );
    eventually("the ephemeral file's expiry in the log", || async {
        let log = alice.json(&["audit", "--event", "file.deleted", "--json"]);
        entries(&log)
            .iter()
            .any(|(_, _, actor, payload)| actor == "broker" && payload["fileId"] == brief["fileId"])
    })
    .await;
    let grants = alice.json(&["audit", "--event", "file.granted", "--json"]);
    let got = entries(&grants);
    assert_eq!(got.len(), 1, "{grants:#}");
    assert_eq!(got[0].2, "alice");
    assert_eq!(got[0].3["fileId"], sealed_id.as_str());
    assert_eq!(got[0].3["peerPubkey"], carol.entry().member_pubkey.as_str());
    ok(&alice.run(&["audit", "verify"]), "audit verify");
}

/// Memories, contexts, streams and reminders are audited by id, never by their content.
#[test]
fn shared_data_changes_are_audited_without_their_content() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let secret = "the-memory-says-swordfish-0451";
    let memory = bob.json(&["remember", secret, "--tags", "ops", "--json"]);
    let memory_id = memory["id"].as_str().unwrap().to_string();
    ok(&bob.run(&["forget", &memory_id]), "forget");
    let context = bob.json(&["context", "share", secret, "--json"]);
    let stream = alice.json(&["stream", "create", "builds", "--json"]);
    let reminder = alice.json(&["remind", secret, "--in", "10m", "--json"]);
    let scheduled_id = reminder["scheduledId"].as_str().unwrap().to_string();
    ok(
        &alice.run(&["remind", "cancel", &scheduled_id]),
        "remind cancel",
    );

    let log = alice.json(&["audit", "--json"]);
    let got = entries(&log);
    let tail: Vec<(&str, &str)> = got[3..]
        .iter()
        .map(|(_, event, actor, _)| (event.as_str(), actor.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("memory.remembered", "bob"),
            ("memory.forgotten", "bob"),
            ("context.shared", "bob"),
            ("stream.created", "alice"),
            ("reminder.scheduled", "alice"),
            ("reminder.cancelled", "alice"),
        ],
        "{log:#}"
    );
    assert_eq!(got[3].3["memoryId"], memory_id.as_str());
    assert_eq!(got[5].3["contextId"], context["id"]);
    assert_eq!(got[6].3["name"], "builds");
    assert_eq!(got[6].3["streamId"], stream["id"]);
    assert_eq!(got[8].3["scheduledId"], scheduled_id.as_str());
    assert_not_in(
        "the audit log",
        log.to_string().as_bytes(),
        secret.as_bytes(),
    );
    ok(&alice.run(&["audit", "verify"]), "audit verify");
}

/// Capability changes, bans and unbans are audited with who did them and to whom.
#[test]
fn perms_changes_and_bans_are_audited() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    ok(&alice.run(&["perms", "set", "bob", "-send"]), "perms set");
    ok(
        &alice.run(&["ban", "bob", "--reason", "spam", "--no-rotate"]),
        "ban",
    );
    ok(&alice.run(&["unban", "bob", "--no-rotate"]), "unban");
    let log = alice.json(&["audit", "--json"]);
    let got = entries(&log);
    let tail: Vec<(&str, &str)> = got[got.len() - 3..]
        .iter()
        .map(|(_, event, actor, _)| (event.as_str(), actor.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            ("perms.changed", "alice"),
            ("member.banned", "alice"),
            ("member.unbanned", "alice")
        ],
        "{log:#}"
    );
    let perms = &got[got.len() - 3].3;
    assert_eq!(
        (perms["denied"].as_str(), perms["role"].as_str()),
        (Some("send"), Some("member"))
    );
    let ban = &got[got.len() - 2].3;
    assert_eq!(
        (ban["name"].as_str(), ban["reason"].as_str()),
        (Some("bob"), Some("spam"))
    );
    drop(bob);
    ok(&alice.run(&["audit", "verify"]), "audit verify");
}

/// Kicking a member and closing one session change no stored data, yet they are in the log.
#[tokio::test(flavor = "multi_thread")]
async fn kicks_and_disconnects_are_audited() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let live = bob.client().await;
    alice.ok(&["kick", "bob", "--reason", "lunch"]);
    let session = live.hello_ack().presence_id.clone();
    drop(live);
    let again = bob.client().await;
    let session2 = again.hello_ack().presence_id.clone();
    assert_ne!(session, session2);
    alice.ok(&["disconnect", &session2]);
    let log = entries(&alice.json(&["audit", "--json"]));
    let kicked = log
        .iter()
        .find(|(_, e, _, _)| e == "member.kicked")
        .expect("member.kicked");
    assert_eq!(kicked.2, "alice");
    assert_eq!(kicked.3["name"], "bob", "{:?}", kicked.3);
    let closed = log
        .iter()
        .find(|(_, e, _, _)| e == "session.disconnected")
        .expect("session.disconnected");
    assert_eq!(closed.3["name"], "bob", "{:?}", closed.3);
    assert_eq!(closed.3["session"], session2.as_str(), "{:?}", closed.3);
}

/// No member can flood the audit log (and push its older records past the cap) at will:
/// audited changes count against a per-member rate, refused with a clear error past it, while
/// other members go on.
#[test]
fn audited_changes_are_rate_limited_per_member() {
    let broker = BrokerProc::start(&["--audit-rate", "0.01", "--audit-burst", "4"]);
    let (alice, bob) = alice_and_bob(&broker);
    let mut refused = Vec::new();
    for i in 0..6 {
        let out = bob.run(&["state", "set", &format!("k{i}"), "v"]);
        if out.code != 0 {
            refused.push(out.stderr);
        }
    }
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].contains("audited changes per second"),
        "{}",
        refused[0]
    );
    // Reads and messages are not audited changes; another member is not limited by bob.
    bob.ok(&["state", "get", "k0"]);
    bob.ok(&["send", "alice", "still here"]);
    alice.ok(&["state", "set", "mine", "v"]);
    let log = entries(&alice.json(&["audit", "--event", "state.set", "--json"]));
    assert_eq!(log.iter().filter(|e| e.2 == "bob").count(), 4);
}
