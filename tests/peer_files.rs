//! Peer files (issue 15 item 5): alice shares a directory with `claudemesh share-dir` (or her
//! MCP server under `launch --share-dir`); bob lists and reads it through the broker from the
//! CLI and from his MCP server (rmcp client). What leads out of the directory, special and
//! oversized files are refused by alice's host; her grants decide whether bob may read; every
//! read is in her log and in the mesh's audit log, and the content never reaches the broker.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use rmcp::ServiceExt;
use serde_json::{Value, json};

use common::mcp::{call, mcp_command, mcp_process};
use common::secrets::assert_broker_never_saw;
use common::*;

const SECRET: &str = "peer-file-secret: the launch code is swordfish-4711";

/// A running `claudemesh share-dir`; dropping it kills the process.
struct Sharing {
    child: Child,
    /// The host's log (stderr), one line per request.
    log: mpsc::Receiver<String>,
}

impl Sharing {
    fn start(person: &Person, dir: &Path, extra: &[&str]) -> Sharing {
        let mut child = Command::new(BIN)
            .arg("share-dir")
            .arg(dir)
            .args(extra)
            .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
            .env("USER", &person.name)
            .env_remove("CLAUDEMESH_BROKER_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start claudemesh share-dir");
        let stdout = child.stdout.take().expect("stdout");
        let first = BufReader::new(stdout)
            .lines()
            .next()
            .and_then(Result::ok)
            .unwrap_or_default();
        assert!(first.starts_with("sharing "), "share-dir said: {first:?}");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Sharing { child, log }
    }

    /// The next line of the host's log.
    fn next_log(&self) -> String {
        self.log
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a line in the host's log")
    }
}

impl Drop for Sharing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory to share: `notes/secret.txt` (the secret), `README.md`, `.env` and `.ssh/`
/// (never listed nor served), and `outside.txt` next to (not inside) the shared root.
/// Returns (temp dir, shared root).
fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("project");
    std::fs::create_dir_all(root.join("notes")).expect("dirs");
    std::fs::write(root.join("notes/secret.txt"), SECRET).expect("write");
    std::fs::write(root.join("README.md"), "# project\n").expect("write");
    std::fs::write(tmp.path().join("outside.txt"), "outside the share").expect("write");
    // Secrets a host never lists nor serves.
    std::fs::write(root.join(".env"), "TOKEN=hunter2").expect("write");
    std::fs::create_dir_all(root.join(".ssh")).expect("dirs");
    std::fs::write(root.join(".ssh/id_ed25519"), "PRIVATE KEY").expect("write");
    (tmp, root)
}

#[tokio::test]
async fn bob_lists_and_reads_alices_file_and_the_broker_never_sees_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    let sharing = Sharing::start(&alice, &root, &["--read-only"]);

    let listing = bob.json(&["peer-files", "ls", "alice", "--json"]);
    assert_eq!(
        listing["entries"],
        json!(["README.md", "notes/", "notes/secret.txt"]),
        "{listing}"
    );
    assert_eq!(
        bob.json(&["peer-files", "ls", "alice", "notes", "--json"])["entries"],
        json!(["secret.txt"])
    );

    let content = bob.ok(&["peer-files", "cat", "alice", "notes/secret.txt"]);
    assert_eq!(content, SECRET);
    let log = sharing.next_log();
    assert!(log.contains("listed") && log.contains("bob"), "{log}");
    let log = [sharing.next_log(), sharing.next_log()].join("\n");
    assert!(
        log.contains("bob")
            && log.contains(&format!(
                "read \"notes/secret.txt\" ({} bytes)",
                SECRET.len()
            )),
        "the host's log names the reader, the path and the size:\n{log}"
    );
    assert!(!log.contains("swordfish"), "never the content: {log}");
    // Bob sees whose files these are: the member key the name stands for.
    let alice_key = alice.entry().member_pubkey;
    assert_eq!(listing["host"], "alice", "{listing}");
    assert_eq!(listing["hostMemberPubkey"], json!(alice_key), "{listing}");
    assert_eq!(
        bob.json(&["peer-files", "ls", "alice", "notes", "--json"])["hostMemberPubkey"],
        json!(alice_key)
    );
    assert_eq!(
        bob.json(&["peer-files", "ls", &alice_key, "notes", "--json"])["entries"],
        json!(["secret.txt"])
    );

    // The audit log has the read: reader, host, path, size — never the content.
    let audit = alice.json(&["audit", "--event", "peer_file.read", "--json"]);
    let entries = audit["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 1, "{audit}");
    let e = &entries[0];
    assert_eq!(e["actor"], "bob", "{e}");
    assert_eq!(e["payload"]["path"], "notes/secret.txt", "{e}");
    assert_eq!(e["payload"]["size"], SECRET.len().to_string(), "{e}");
    assert_eq!(e["payload"]["hostName"], "alice", "{e}");
    assert!(!audit.to_string().contains("swordfish"));
    let listed = alice.json(&["audit", "--event", "peer_file.listed", "--json"]);
    assert_eq!(listed["entries"].as_array().map(Vec::len), Some(4));

    drop(sharing);
    assert_broker_never_saw(&broker, SECRET.as_bytes());
}

#[tokio::test]
async fn what_leads_out_of_the_share_and_what_is_no_plain_small_file_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (tmp, root) = tree();
    std::os::unix::fs::symlink(tmp.path().join("outside.txt"), root.join("escape.txt"))
        .expect("symlink out");
    std::os::unix::fs::symlink("/etc", root.join("etc")).expect("symlink to /etc");
    std::os::unix::fs::symlink("README.md", root.join("readme-link")).expect("symlink in");
    let fifo = root.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    // Sparse: over the host's 8 MiB limit without writing it.
    std::fs::File::create(root.join("big.bin"))
        .and_then(|f| f.set_len(8 * 1024 * 1024 + 1))
        .expect("big");
    let sharing = Sharing::start(&alice, &root, &[]);

    let refused = |path: &str, code: &str| {
        let err = bob.refused(&["peer-files", "cat", "alice", path]);
        assert!(
            err.contains(&format!("({code})")),
            "{path}: expected {code}, got: {err}"
        );
        err
    };
    let err = refused("../../etc/passwd", "forbidden_path");
    assert!(err.contains("inside the shared directory"), "{err}");
    refused("/etc/passwd", "forbidden_path");
    // Those were refused by the broker already: the host's first request is the next one.
    assert_eq!(
        bob.ok(&["peer-files", "cat", "alice", "README.md"]),
        "# project\n"
    );
    let first = sharing.next_log();
    assert!(first.contains("read \"README.md\""), "{first}");
    let err = refused("escape.txt", "forbidden_path");
    assert!(err.contains("outside the shared directory"), "{err}");
    refused("etc/passwd", "forbidden_path");
    // A fifo is refused at once, not read (which would wait for a writer forever).
    let err = refused("pipe", "not_a_file");
    assert!(err.contains("fifo"), "{err}");
    let err = refused("big.bin", "too_large");
    assert!(err.contains("8388608"), "the limit is named: {err}");
    refused("notes", "not_a_file");
    // Secret dot-entries are not served, even through a symlink inside the share.
    std::os::unix::fs::symlink(".ssh/id_ed25519", root.join("key")).expect("symlink in");
    for secret in [".env", ".ssh/id_ed25519", "key"] {
        let err = refused(secret, "forbidden_path");
        assert!(err.contains("keys or tokens"), "{err}");
    }
    refused("missing.txt", "not_found");
    // A symlink that stays inside is followed.
    assert_eq!(
        bob.ok(&["peer-files", "cat", "alice", "readme-link"]),
        "# project\n"
    );
    let err = bob.refused(&["peer-files", "ls", "alice", "etc"]);
    assert!(err.contains("(forbidden_path)"), "{err}");
    let err = bob.refused(&["peer-files", "ls", "alice", "../.."]);
    assert!(err.contains("(forbidden_path)"), "{err}");
    // The broker and the host kept serving.
    assert_eq!(
        bob.ok(&["peer-files", "cat", "alice", "notes/secret.txt"]),
        SECRET
    );
}

/// A file over one answer's 40 KiB comes in chunks, each sealed to bob and audited, and is
/// put back together byte for byte; a pattern lists only the paths it matches.
#[tokio::test]
async fn a_large_file_arrives_whole_in_chunks_and_a_pattern_filters_the_listing() {
    use sha2::Digest;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    let big: Vec<u8> = (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("notes/big.bin"), &big).expect("big");
    for f in ["src/a.rs", "src/deep/b.rs", "src/c.txt", "top.rs"] {
        let path = root.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).expect("dirs");
        std::fs::write(path, "fn x() {}").expect("write");
    }
    let _sharing = Sharing::start(&alice, &root, &[]);

    let client = bob.client().await;
    let file = client
        .read_peer_file("alice", "notes/big.bin", None)
        .await
        .expect("the big file");
    assert_eq!(file.content.len(), big.len());
    assert_eq!(
        sha2::Sha256::digest(&file.content),
        sha2::Sha256::digest(&big),
        "the same bytes"
    );
    // One audit record per chunk, each with its offset and the file's size.
    let audit = alice.json(&["audit", "--event", "peer_file.read", "--json"]);
    let chunks = audit["entries"].as_array().expect("entries");
    assert_eq!(chunks.len(), 8, "300 KiB in 40 KiB chunks: {audit:#}");
    assert!(
        chunks.iter().all(|e| e["payload"]["fileSize"] == "307200"),
        "{audit:#}"
    );

    let listed = bob.json(&[
        "peer-files",
        "ls",
        "alice",
        "--pattern",
        "src/**/*.rs",
        "--json",
    ]);
    assert_eq!(
        listed["entries"],
        json!(["src/a.rs", "src/deep/b.rs"]),
        "{listed}"
    );
    let listed = bob.json(&[
        "peer-files",
        "ls",
        "alice",
        "src",
        "--pattern",
        "*.txt",
        "--json",
    ]);
    assert_eq!(listed["entries"], json!(["c.txt"]), "{listed}");
    let err = bob.refused(&["peer-files", "ls", "alice", "--pattern", "a[", "--json"]);
    assert!(err.contains("(invalid_argument)"), "{err}");
    // A pattern cannot reach what a listing never shows.
    let listed = bob.json(&["peer-files", "ls", "alice", "--pattern", "**/*", "--json"]);
    let names = listed["entries"].to_string();
    assert!(
        !names.contains(".env") && !names.contains(".ssh"),
        "{names}"
    );
    // Traversal is still refused, chunked or not.
    let err = client
        .read_peer_file("alice", "../outside.txt", None)
        .await
        .expect_err("out of the share");
    assert!(
        err.to_string().contains("inside the shared directory"),
        "{err}"
    );
}

#[tokio::test]
async fn the_hosts_grants_and_the_readers_capability_decide() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    let _sharing = Sharing::start(&alice, &root, &[]);
    let read = ["peer-files", "cat", "alice", "README.md"];
    assert_eq!(bob.ok(&read), "# project\n");

    alice.ok(&["grants", "set", "bob", "-files"]);
    let err = bob.refused(&read);
    assert!(
        err.contains("(forbidden)") && err.contains("\"files\" right"),
        "{err}"
    );
    let err = bob.refused(&["peer-files", "ls", "alice"]);
    assert!(err.contains("(forbidden)"), "{err}");
    alice.ok(&["grants", "set", "bob", "+files"]);
    assert_eq!(bob.ok(&read), "# project\n");

    alice.ok(&["block", "bob"]);
    let err = bob.refused(&read);
    assert!(err.contains("(forbidden)"), "{err}");
    alice.ok(&["unblock", "bob"]);
    assert_eq!(bob.ok(&read), "# project\n");

    // The reader's own capability: the owner takes "files" from bob.
    alice.ok(&["perms", "set", "bob", "-files"]);
    let err = bob.refused(&read);
    assert!(
        err.contains("(forbidden)") && err.contains("\"files\" capability"),
        "{err}"
    );
    let audit = alice.json(&["audit", "--event", "peer_file.read", "--json"]);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(3),
        "only the reads that happened are logged: {audit}"
    );
}

#[tokio::test]
async fn a_host_that_is_not_there_or_not_sharing_fails_at_once() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let read = ["peer-files", "cat", "alice", "README.md"];
    let err = bob.refused(&read);
    assert!(err.contains("(host_offline)"), "{err}");
    // Named as bob named her, not by the key his client resolved the name to.
    assert!(err.contains("\"alice\""), "{err}");
    assert!(!err.contains(&alice.entry().member_pubkey), "{err}");
    // The reader resolves a name to a member key before asking: no such member is said so.
    let err = bob.refused(&["peer-files", "cat", "nobody", "README.md"]);
    assert!(
        err.contains("(not_found)") && err.contains("claudemesh members"),
        "{err}"
    );

    // Online, but not sharing: said so, with how to share.
    let alice_session = alice.client().await;
    let err = bob.refused(&read);
    assert!(
        err.contains("(not_sharing)") && err.contains("share-dir"),
        "{err}"
    );
    drop(alice_session);

    let (_tmp, root) = tree();
    let sharing = Sharing::start(&alice, &root, &[]);
    assert_eq!(bob.ok(&read), "# project\n");
    drop(sharing);
    eventually("the share to end with its process", || async {
        let out = bob.run(&read);
        out.code != 0 && out.stderr.contains("(host_offline)")
    })
    .await;
}

/// `person`'s MCP server as `launch --share-dir` starts it: sharing `root` with the mesh.
fn sharing_session(person: &Person, root: &Path) -> rmcp::transport::TokioChildProcess {
    let mut host = mcp_command(person);
    host.current_dir(root).env("CLAUDEMESH_SHARE_DIR", root);
    rmcp::transport::TokioChildProcess::new(host).expect("spawn the sharing MCP server")
}

#[tokio::test]
async fn bobs_mcp_client_reads_what_alices_mcp_server_shares_under_launch_share_dir() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();

    let alice_mcp = ().serve(sharing_session(&alice, &root)).await.expect("alice's MCP server");
    let bob_mcp = ().serve(mcp_process(&bob)).await.expect("bob's MCP server");

    let tools = bob_mcp.list_all_tools().await.expect("tools/list");
    for name in ["list_peer_files", "read_peer_file"] {
        assert!(tools.iter().any(|t| t.name == name), "{name} is a tool");
    }
    // Alice's session announces its share once it is connected.
    let mut listed = (false, String::new());
    for _ in 0..500 {
        listed = call(&bob_mcp, "list_peer_files", json!({"peer": "alice"})).await;
        if listed.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(listed.0, "alice's session never shared: {}", listed.1);
    let names: Value = serde_json::from_str(&listed.1).expect("a JSON listing");
    assert_eq!(
        names["entries"],
        json!(["README.md", "notes/", "notes/secret.txt"])
    );
    let (ok, text) = call(
        &bob_mcp,
        "read_peer_file",
        json!({"peer": "alice", "path": "notes/secret.txt"}),
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.starts_with(SECRET), "{text}");
    let (ok, text) = call(
        &bob_mcp,
        "read_peer_file",
        json!({"peer": "alice", "path": "../../etc/passwd"}),
    )
    .await;
    // Refused by the broker (the path's shape), before it reaches alice's host.
    assert!(!ok && text.contains("forbidden_path"), "{text}");

    let _ = bob_mcp.cancel().await;
    let _ = alice_mcp.cancel().await;
    assert_broker_never_saw(&broker, SECRET.as_bytes());
}

/// A share lasts as long as its connection at the broker: after a restart, the session that
/// shares announces it again on its new connection, and bob can list it again.
#[tokio::test]
async fn a_sessions_share_is_announced_again_after_the_broker_restarts() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    let alice_mcp = ().serve(sharing_session(&alice, &root)).await.expect("alice's MCP server");
    let bob_mcp = ().serve(mcp_process(&bob)).await.expect("bob's MCP server");
    let lists = || async {
        call(&bob_mcp, "list_peer_files", json!({"peer": "alice"}))
            .await
            .0
    };
    eventually("bob to list alice's share", lists).await;
    broker.restart();
    eventually("bob to list alice's share after the restart", lists).await;
    let _ = bob_mcp.cancel().await;
    let _ = alice_mcp.cancel().await;
}

/// `CLAUDEMESH_SHARE_DIR` set to `0` or to nothing shares nothing, not even a directory that
/// happens to be named `0`, and the server says nothing about sharing.
#[tokio::test]
async fn a_share_dir_of_0_or_nothing_shares_nothing() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    std::fs::create_dir_all(root.join("0")).expect("dirs");
    for off in ["0", ""] {
        let mut host = mcp_command(&alice);
        host.current_dir(&root).env("CLAUDEMESH_SHARE_DIR", off);
        let (transport, stderr) = rmcp::transport::TokioChildProcess::builder(host)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn alice's mcp");
        // The share is decided before the server answers the handshake.
        let mcp = ().serve(transport).await.expect("alice's MCP server");
        let _ = mcp.cancel().await;
        let mut log = String::new();
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_string(&mut stderr.expect("piped stderr"), &mut log),
        )
        .await
        .expect("the server's log to end with it")
        .expect("read the server's log");
        assert!(
            !log.contains("sharing"),
            "CLAUDEMESH_SHARE_DIR={off:?}: {log}"
        );
    }
}

#[tokio::test]
async fn a_directory_holding_the_config_dir_or_home_is_never_shared() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    // The directory above alice's config dir holds her keys.
    let above = alice.config_dir().parent().expect("parent").to_path_buf();
    let err = alice.refused(&["share-dir", above.to_str().expect("utf-8")]);
    assert!(
        err.contains("refusing to share") && err.contains("claudemesh's keys"),
        "{err}"
    );
    let err = alice.refused(&["share-dir", "/"]);
    assert!(err.contains("whole file system"), "{err}");
}

/// A broker can neither forge a request nor redirect its answer: alice's host answers only a
/// request that opens as sealed by the reader's key to her member key, for the very path and
/// kind relayed in clear, once. Bob's raw frames stand in for what a malicious broker forwards.
#[tokio::test]
async fn the_host_refuses_a_request_its_reader_did_not_seal() {
    use claudemesh::client::peer_files::seal_request;
    use claudemesh::protocol::messages::SealedPeerRequest;

    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let (_tmp, root) = tree();
    let _sharing = Sharing::start(&alice, &root, &[]);
    let alice_key = alice.entry().member_pubkey;
    let bob_keys = bob.entry().member_keys().expect("bob's keys");
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let sealed = |path: &str, nonce: &str| {
        let asked = SealedPeerRequest {
            kind: "read".into(),
            path: path.into(),
            host_pubkey: alice_key.clone(),
            nonce: nonce.into(),
            timestamp: unique_now_ms(),
            ..SealedPeerRequest::default()
        };
        serde_json::to_value(seal_request(&bob_keys, &asked).expect("seal")).expect("json")
    };
    let mut ask = async |sealed: Value| {
        let mut frame = json!({
            "type": "peer_file_request",
            "targetPubkey": alice_key,
            "filePath": "README.md",
            "_reqId": "r1",
        });
        if !sealed.is_null() {
            frame["sealed"] = sealed;
        }
        ws_send(&mut ws, &frame).await;
        ws_recv_reply(&mut ws).await
    };
    // A sealed request of the right path is answered.
    let answered = ask(sealed("README.md", "n1")).await;
    assert!(answered["sealed"].is_object(), "{answered}");
    // Not sealed, not opening, sealed for another path, replayed: refused by the host.
    let garbage = json!({"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "ciphertext": "AAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    for (what, sealed) in [
        ("unsealed", Value::Null),
        ("not opening", garbage),
        ("another path", sealed("notes/secret.txt", "n2")),
        ("replayed", sealed("README.md", "n1")),
    ] {
        let refused = ask(sealed).await;
        assert_eq!(refused["code"], "unverified", "{what}: {refused}");
        assert!(refused["sealed"].is_null(), "{what}: {refused}");
    }
}

/// The next frame of `type` on `ws`, skipping others.
async fn ws_recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = ws_recv(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

/// What the broker does with a host's answers, with alice's host as raw frames: at most 4 of
/// bob's requests wait for her at once; an answer that is not base64 is refused, never relayed
/// unaudited; a block made while alice worked stops her answer.
#[tokio::test]
async fn the_broker_bounds_checks_and_rechecks_what_a_host_answers() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let alice_key = alice.entry().member_pubkey;
    let (mut host, _) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    ws_send(
        &mut host,
        &json!({"type": "peer_files_share", "_reqId": "s"}),
    )
    .await;
    assert_eq!(ws_recv_reply(&mut host).await["type"], "ack");
    let (mut reader, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    for i in 1..=5 {
        let ask = json!({
            "type": "peer_file_request", "targetPubkey": alice_key, "filePath": format!("f{i}"),
            "timeoutMs": 60_000, "_reqId": format!("r{i}"),
        });
        ws_send(&mut reader, &ask).await;
    }
    let fifth = ws_expect_error(&mut reader, "rate_limited").await;
    assert_eq!(fifth["_reqId"], "r5", "{fifth}");
    let mut forwards = Vec::new();
    for _ in 0..4 {
        forwards.push(ws_recv_type(&mut host, "peer_file_request_forward").await);
    }
    let answer = |f: &Value, ciphertext: &str| {
        json!({
            "type": "peer_file_response", "requestId": f["requestId"], "filePath": f["filePath"],
            "sealed": {"nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "ciphertext": ciphertext},
        })
    };
    ws_send(&mut host, &answer(&forwards[0], "%%% not base64 %%%")).await;
    let refused = ws_expect_error(&mut reader, "host_error").await;
    assert!(
        refused["message"].as_str().unwrap_or("").contains("base64"),
        "{refused}"
    );
    let audit = alice.json(&["audit", "--event", "peer_file.read", "--json"]);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(0),
        "{audit}"
    );

    alice.ok(&["block", "bob"]);
    ws_send(&mut host, &answer(&forwards[1], "AAAAAAAAAAAAAAAAAAAAAAAA")).await;
    ws_expect_error(&mut reader, "forbidden").await;
}
