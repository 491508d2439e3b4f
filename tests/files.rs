//! Files end to end (PROTOCOL.md §7, CLI.md "Files"): streamed transfers with bounded broker
//! memory, end-to-end encryption and grants, access across meshes, the upload cap, ephemeral
//! expiry and restarts — against a real broker process, driven through the CLI.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use claudemesh::crypto::{self, Sha256};

mod access;

fn stored_blobs(broker: &BrokerProc) -> Vec<PathBuf> {
    files_under(&broker.data_dir().join("files"))
}

fn sha256_file(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).expect("open file to hash");
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).expect("hash file");
    h.finalize()
}

/// Writes `len` random bytes to `path`, a megabyte at a time.
fn write_random(path: &Path, len: usize) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create random file");
    let mut left = len;
    while left > 0 {
        let n = left.min(1 << 20);
        f.write_all(&crypto::random_vec(n))
            .expect("write random file");
        left -= n;
    }
}

/// `file share … --json` as `person`; returns the file id.
fn share(person: &Person, path: &Path, extra: &[&str]) -> String {
    let path = path.to_str().expect("utf-8 path");
    let mut args = vec!["file", "share", path, "--json"];
    args.extend_from_slice(extra);
    let v = person.json(&args);
    v["fileId"].as_str().expect("fileId").to_string()
}

/// `file list`'s entries.
fn file_list(person: &Person) -> Vec<Value> {
    let v = person.json(&["file", "list", "--json"]);
    v["files"].as_array().expect("files array").clone()
}

fn list_ids(person: &Person) -> Vec<String> {
    (file_list(person).iter())
        .map(|f| f["id"].as_str().expect("id").to_string())
        .collect()
}

/// `file list`'s entry for file `id`.
fn listed(person: &Person, id: &str) -> Value {
    let list = file_list(person);
    (list.iter().find(|f| f["id"] == id).cloned())
        .unwrap_or_else(|| panic!("{id} listed: {list:?}"))
}

/// The peak resident set of a process, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

/// A hand-made `POST /upload` of `len` zero bytes, either with a `Content-Length` or chunked;
/// returns the status code and the body. Write errors are ignored: what matters is the answer.
async fn raw_upload(
    broker: &BrokerProc,
    token: &str,
    mesh_id: &str,
    len: usize,
    chunked: bool,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", broker.port))
        .await
        .expect("connect to the broker");
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {len}")
    };
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         X-Mesh-Id: {mesh_id}\r\nX-File-Name: big.bin\r\n{framing}\r\n\r\n"
    );
    let writer = async {
        s.write_all(head.as_bytes()).await?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            if chunked {
                s.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                s.write_all(&chunk[..n]).await?;
                s.write_all(b"\r\n").await?;
            } else {
                s.write_all(&chunk[..n]).await?;
            }
            left -= n;
        }
        if chunked {
            s.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(WAIT, writer).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the JSON body is complete (the broker may keep the connection open).
    let _ = tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&answer);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && body.trim_end().ends_with('}')
            {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_100_mb_file_round_trips_while_the_broker_stays_small() {
    let broker = BrokerProc::start(&["--max-upload-bytes", "200000000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("big.bin");
    write_random(&src, 100_000_000);
    // What the broker holds before the transfer (code, tables, connections): a debug build
    // alone is ~50 MB, so the promise is measured as growth, not as a total.
    let before = peak_rss(broker.pid());

    let id = share(&alice, &src, &["--tags", "data,big"]);
    let out = dir.path().join("got");
    std::fs::create_dir(&out).expect("out dir");
    let got = bob.json(&[
        "file",
        "get",
        &id,
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(got["size"], 100_000_000);
    let saved = out.join("big.bin");
    assert_eq!(Path::new(got["path"].as_str().expect("path")), saved);
    assert_eq!(sha256_file(&saved), sha256_file(&src), "byte-identical");

    let grown = peak_rss(broker.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "the broker's peak RSS grew by {} MB while moving a 100 MB file",
        grown / (1024 * 1024)
    );

    // Listed with its size and tags; bob's download is in the access log.
    let list = alice.json(&["file", "list", "--query", "big", "--json"]);
    let entry = &list["files"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["size"], 100_000_000);
    assert_eq!(entry["tags"], serde_json::json!(["data", "big"]));
    assert_eq!(entry["uploadedBy"], "alice");
    let status = alice.json(&["file", "status", &id, "--json"]);
    assert_eq!(status["accesses"][0]["peerName"], "bob");
}

/// True once every thread of `pid` has a tracer attached.
fn traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    })
}

/// An upload is acknowledged only once its bytes, and the directories that lead to them, are on
/// disk: object_store's local store does not fsync, so the broker must, before the metadata
/// commit. Watched with strace on the running broker: each of those is fsynced, and the
/// store's last commit comes after the file's fsync.
#[tokio::test(flavor = "multi_thread")]
async fn an_upload_is_on_disk_before_it_is_acknowledged() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("strace.log");
    let pid = broker.pid().to_string();
    let strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&log)
        .args(["-p", &pid])
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut strace = match strace {
        Ok(child) => child,
        Err(e) => return skip_unless_strict(&format!("cannot run strace: {e}")),
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !traced(broker.pid()) {
        if let Ok(Some(status)) = strace.try_wait() {
            return skip_unless_strict(&format!("strace cannot attach here ({status})"));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "strace never attached"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let src = dir.path().join("notes.bin");
    write_random(&src, 300_000);
    share(&alice, &src, &[]);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    strace.wait().expect("strace ends");

    let trace = std::fs::read_to_string(&log).expect("strace log");
    let synced = |path: &Path| {
        let fd_path = format!("<{}>)", path.display());
        trace
            .lines()
            .position(|l| l.contains("fsync(") && l.contains(&fd_path))
    };
    let files_root = std::fs::canonicalize(broker.data_dir().join("files")).expect("files dir");
    let blobs = stored_blobs(&broker);
    let [blob] = &blobs[..] else {
        panic!("one stored file expected: {blobs:?}");
    };
    let blob = std::fs::canonicalize(blob).expect("blob path");
    let Some(blob_synced) = synced(&blob) else {
        panic!("the stored file was never fsynced:\n{trace}");
    };
    let mut parent = blob.parent();
    while let Some(d) = parent {
        assert!(
            synced(d).is_some(),
            "{} was never fsynced:\n{trace}",
            d.display()
        );
        if d == files_root {
            break;
        }
        parent = d.parent();
    }
    let store = std::fs::canonicalize(broker.data_dir().join("mesh.redb")).expect("store");
    let lines: Vec<&str> = trace.lines().collect();
    let last_commit = lines
        .iter()
        .rposition(|l| l.contains(&format!("<{}>)", store.display())))
        .expect("the store commits");
    assert!(
        blob_synced < last_commit,
        "the upload's metadata was committed before its bytes were synced:\n{trace}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_encrypted_file_is_readable_only_by_its_recipients() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");

    let dir = tempfile::tempdir().expect("temp dir");
    let marker = "PLAINTEXT-MARKER-7c1e9b";
    let secret: String = (0..20_000).map(|i| format!("{marker} {i}\n")).collect();
    let src = dir.path().join("plan.txt");
    std::fs::write(&src, &secret).expect("write secret");
    let id = share(&alice, &src, &["--to", "bob"]);

    // Nothing under the broker's files holds the plaintext.
    let blobs = stored_blobs(&broker);
    assert_eq!(blobs.len(), 1, "one stored object: {blobs:?}");
    assert_broker_never_saw(&broker, &secret.as_bytes()[..200]);
    let list = alice.json(&["file", "list", "--json"]);
    assert_eq!(list["files"][0]["encrypted"], true);

    // bob (recipient) and alice (owner) read it.
    for (who, person) in [("bob", &bob), ("alice", &alice)] {
        let out = dir.path().join(who);
        std::fs::create_dir(&out).expect("out dir");
        let got = person.json(&[
            "file",
            "get",
            &id,
            "--out",
            out.to_str().expect("utf-8"),
            "--json",
        ]);
        assert_eq!(got["encrypted"], true);
        assert_eq!(
            std::fs::read_to_string(out.join("plan.txt")).expect("saved file"),
            secret,
            "{who} reads the plaintext"
        );
    }

    // carol was not granted it: no key, no URL, nothing saved.
    let carol_out = dir.path().join("carol");
    std::fs::create_dir(&carol_out).expect("out dir");
    let refused = carol.run(&[
        "file",
        "get",
        &id,
        "--out",
        carol_out.to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("not shared with you"),
        "{}",
        refused.stderr
    );
    assert!(files_under(&carol_out).is_empty());
    // …nor who has read it.
    let hidden = carol.run(&["file", "status", &id]);
    assert_eq!(hidden.code, 1, "{hidden:?}");
    assert!(
        hidden.stderr.contains("not shared with you"),
        "{}",
        hidden.stderr
    );

    // Only the owner grants.
    let not_owner = bob.run(&["file", "grant", &id, "carol"]);
    assert_eq!(not_owner.code, 1, "{not_owner:?}");
    assert!(not_owner.stderr.contains("owner"), "{}", not_owner.stderr);

    let granted = alice.run(&["file", "grant", &id, "carol"]);
    assert_eq!(granted.code, 0, "{granted:?}");
    let got = carol.json(&[
        "file",
        "get",
        &id,
        "--out",
        carol_out.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(got["encrypted"], true);
    assert_eq!(
        std::fs::read_to_string(carol_out.join("plan.txt")).expect("saved file"),
        secret
    );

    // A second get into the same directory does not overwrite what is there.
    let again = carol.run(&[
        "file",
        "get",
        &id,
        "--out",
        carol_out.to_str().expect("utf-8"),
    ]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);

    let status = alice.json(&["file", "status", &id, "--json"]);
    let names: Vec<&str> = status["accesses"]
        .as_array()
        .expect("accesses")
        .iter()
        .map(|a| a["peerName"].as_str().expect("peerName"))
        .collect();
    assert_eq!(names, ["bob", "alice", "carol"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn other_meshes_cannot_download_and_oversized_uploads_leave_nothing() {
    let broker = BrokerProc::start(&["--max-upload-bytes", "6000000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let dave = Person::new("dave");
    create_mesh(&broker, &dave, "other");
    let team_id = alice.entry().mesh_id;

    let dir = tempfile::tempdir().expect("temp dir");
    let small = dir.path().join("notes.txt");
    std::fs::write(&small, "for the team only\n").expect("write");
    // A stored name that tries to climb out of wherever it is saved.
    let id = share(&alice, &small, &["--name", "../../etc/passwd"]);
    let out = dir.path().join("bob");
    std::fs::create_dir(&out).expect("out dir");
    let got = bob.json(&[
        "file",
        "get",
        &id,
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(
        Path::new(got["path"].as_str().expect("path")),
        out.join("passwd")
    );
    assert_eq!(files_under(&out), [out.join("passwd")]);

    // dave, in another mesh, cannot get it…
    let dave_out = dir.path().join("dave");
    std::fs::create_dir(&dave_out).expect("out dir");
    let refused = dave.run(&[
        "file",
        "get",
        &id,
        "--out",
        dave_out.to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert!(refused.stderr.contains("no file"), "{}", refused.stderr);
    // …nor with a token of his own mesh, nor upload into the team with his upload token.
    let dave_file = dir.path().join("dave.txt");
    std::fs::write(&dave_file, "dave's").expect("write");
    let dave_id = share(&dave, &dave_file, &[]);
    let dave_client = dave.client().await;
    let his = dave_client
        .get_file(&dave_id)
        .await
        .expect("dave's own file");
    let token = his
        .url
        .split("token=")
        .nth(1)
        .expect("token in url")
        .to_string();
    let stolen = http_get(&format!(
        "{}/download/{id}?token={token}",
        broker.http_url()
    ))
    .await;
    assert_eq!(
        stolen.status,
        403,
        "{}",
        String::from_utf8_lossy(&stolen.body)
    );
    let forged = http_get(&format!("{}/download/{id}?token=nope", broker.http_url())).await;
    assert_eq!(forged.status, 401);
    let upload_token = dave_client.file_token().await.expect("upload token");
    let (status, body) = raw_upload(&broker, &upload_token.token, &team_id, 10, false).await;
    assert_eq!(status, 403, "{body}");
    dave_client.close().await;

    // Over the cap: the CLI says so before sending anything…
    let big = dir.path().join("big.bin");
    write_random(&big, 7_000_000);
    let too_big = alice.run(&["file", "share", big.to_str().expect("utf-8")]);
    assert_eq!(too_big.code, 1, "{too_big:?}");
    assert!(
        too_big.stderr.contains("at most 6000000 bytes"),
        "{}",
        too_big.stderr
    );
    // …and the broker answers 413, whether the size is declared or found out mid-stream (after
    // a first 5 MiB part was already stored).
    let client = alice.client().await;
    for chunked in [false, true] {
        let t = client.file_token().await.expect("upload token");
        let (status, body) = raw_upload(&broker, &t.token, &team_id, 8_000_000, chunked).await;
        assert_eq!(status, 413, "chunked {chunked}: {body}");
        let v: Value = serde_json::from_str(&body).expect("JSON refusal");
        assert_eq!(v["error"], "payload_too_large");
    }
    // A token is good for one request.
    let t = client.file_token().await.expect("upload token");
    let (status, _) = raw_upload(&broker, &t.token, &team_id, 5, false).await;
    assert_eq!(status, 200);
    let (status, _) = raw_upload(&broker, &t.token, &team_id, 5, false).await;
    assert_eq!(status, 401);
    client.close().await;

    // No partial object and no metadata row were left behind.
    assert_eq!(
        stored_blobs(&broker).len(),
        3,
        "{:?}",
        stored_blobs(&broker)
    );
    assert_eq!(list_ids(&alice).len(), 2);
    let mut broker = broker;
    broker.terminate();
    let store = claudemesh::store::Store::open(broker.data_dir()).expect("open the store");
    assert_eq!(store.file_count(&team_id).expect("files"), 2);
    store.close();
}

/// Seconds from now to an RFC 3339 time the broker gave.
fn seconds_until(at: &str) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
    at.timestamp() - chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_broker_takes_50_mb_keeps_ephemeral_files_a_day_and_tokens_five_minutes() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let client = alice.client().await;
    let token = client.file_token().await.expect("upload token");
    assert_eq!(token.max_bytes, 50 * 1024 * 1024, "the default upload cap");
    let left = seconds_until(&token.expires_at);
    assert!(
        (240..=300).contains(&left),
        "a token lasts 5 minutes: {left} s left"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let brief = dir.path().join("brief.txt");
    std::fs::write(&brief, "for today\n").expect("write");
    let id = share(&alice, &brief, &["--ephemeral"]);
    let entry = listed(&alice, &id);
    let left = seconds_until(entry["expiresAt"].as_str().expect("an expiry"));
    assert!(
        (24 * 3600 - 120..=24 * 3600).contains(&left),
        "an ephemeral file lives 24 h by default: {left} s left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_files_expire_and_everything_else_survives_a_restart() {
    let mut broker = BrokerProc::start(&["--ephemeral-ttl", "3s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let kept = dir.path().join("kept.txt");
    std::fs::write(&kept, "stays\n").expect("write");
    let brief = dir.path().join("brief.txt");
    std::fs::write(&brief, "goes away\n").expect("write");
    let sealed = dir.path().join("sealed.txt");
    std::fs::write(&sealed, "for bob\n").expect("write");

    let kept_id = share(&alice, &kept, &[]);
    let sealed_id = share(&alice, &sealed, &["--to", "bob"]);
    let brief_id = share(&alice, &brief, &["--ephemeral"]);
    let brief_entry = listed(&alice, &brief_id);
    assert_eq!(brief_entry["persistent"], false);
    assert!(brief_entry["expiresAt"].is_string());
    let out = dir.path().join("early");
    std::fs::create_dir(&out).expect("out dir");
    bob.json(&[
        "file",
        "get",
        &kept_id,
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]);

    // The ephemeral file's bytes and metadata go; the others stay.
    eventually("the ephemeral file to expire", || async {
        !list_ids(&alice).contains(&brief_id) && stored_blobs(&broker).len() == 2
    })
    .await;
    let gone = bob.run(&[
        "file",
        "get",
        &brief_id,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    // Not there any more: exit 3, as for anything the broker answers not_found (README).
    assert_eq!(gone.code, 3, "{gone:?}");
    assert!(gone.stderr.contains("no file"), "{gone:?}");

    broker.restart();
    let mut ids = list_ids(&alice);
    ids.sort();
    let mut expected = vec![kept_id.clone(), sealed_id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let after = dir.path().join("after");
    std::fs::create_dir(&after).expect("out dir");
    bob.json(&[
        "file",
        "get",
        &kept_id,
        "--out",
        after.to_str().expect("utf-8"),
        "--json",
    ]);
    bob.json(&[
        "file",
        "get",
        &sealed_id,
        "--out",
        after.to_str().expect("utf-8"),
        "--json",
    ]);
    assert_eq!(
        std::fs::read_to_string(after.join("kept.txt")).expect("kept"),
        "stays\n"
    );
    assert_eq!(
        std::fs::read_to_string(after.join("sealed.txt")).expect("sealed"),
        "for bob\n"
    );
    let status = alice.json(&["file", "status", &kept_id, "--json"]);
    assert_eq!(status["accesses"].as_array().expect("accesses").len(), 2);

    // Only the uploader (or an owner/admin) deletes; then bytes and metadata are gone.
    let refused = bob.run(&["file", "delete", &kept_id]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("uploader"), "{}", refused.stderr);
    let deleted = alice.run(&["file", "delete", &kept_id]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert_eq!(list_ids(&alice), [sealed_id]);
    assert_eq!(stored_blobs(&broker).len(), 1);
}

/// An S3-compatible server on loopback: moto (`pip install 'moto[server]'`, which `.ci/run`
/// does). AWS itself is out of reach here, so this stands in for it, answering with S3's own
/// wire format. Killed when dropped.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto() -> Result<Moto, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // `moto_server`, or the same through Python when pip put no script on PATH.
    let has_module = std::process::Command::new("python3")
        .args(["-c", "import moto.server"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = std::process::Command::new("moto_server");
    if has_module {
        command = std::process::Command::new("python3");
        command.args(["-m", "moto.server"]);
    }
    let child = command
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run moto_server ({e}); pip install 'moto[server]'"))?;
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    eventually("moto to answer", || async {
        claudemesh::client::http::request("GET", &moto.url, &[], None)
            .await
            .is_ok()
    })
    .await;
    Ok(moto)
}

/// The object keys in an S3 `ListObjectsV2` answer.
fn object_keys(xml: &[u8]) -> Vec<String> {
    let xml = String::from_utf8_lossy(xml);
    xml.split("<Key>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_live_in_an_s3_bucket_when_asked() {
    let moto = match start_moto().await {
        Ok(m) => m,
        Err(why) => {
            skip_unless_strict(&why);
            return;
        }
    };
    let made =
        claudemesh::client::http::request("PUT", &format!("{}/team-files", moto.url), &[], None)
            .await
            .expect("create the bucket");
    assert!(made.is_success(), "create bucket: HTTP {}", made.status);
    let env = [
        ("AWS_ENDPOINT", moto.url.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut broker = BrokerProc::start_with_env(&["--files", "s3://team-files/blobs"], &env);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().unwrap();
    let marker = "S3-PLAINTEXT-MARKER-5d2f";
    let secret: String = (0..5_000).map(|i| format!("{marker} {i}\n")).collect();
    let src = dir.path().join("plan.txt");
    std::fs::write(&src, &secret).unwrap();
    let id = share(&alice, &src, &["--to", "bob"]);

    // The bytes are in the bucket, under the prefix, sealed; nothing in the data dir.
    let list = |url: String| async move {
        let r = claudemesh::client::http::request("GET", &url, &[], None)
            .await
            .expect("list the bucket");
        object_keys(&r.body)
    };
    let listing = format!("{}/team-files?list-type=2", moto.url);
    let keys = list(listing.clone()).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("blobs/"), "{keys:?}");
    let object = claudemesh::client::http::request(
        "GET",
        &format!("{}/team-files/{}", moto.url, keys[0]),
        &[],
        None,
    )
    .await
    .unwrap();
    assert!(object.body.len() >= secret.len(), "the whole file is there");
    common::secrets::assert_not_in("the S3 object", &object.body, &secret.as_bytes()[..200]);
    assert!(
        stored_blobs(&broker).is_empty(),
        "{:?}",
        stored_blobs(&broker)
    );

    // After a restart, bob still reads it from the bucket.
    broker.terminate();
    broker.restart();
    let out = dir.path().join("bob");
    std::fs::create_dir(&out).unwrap();
    bob.json(&["file", "get", &id, "--out", out.to_str().unwrap(), "--json"]);
    assert_eq!(
        std::fs::read_to_string(out.join("plan.txt")).unwrap(),
        secret
    );

    // Deleting the file deletes the object.
    let deleted = alice.run(&["file", "delete", &id]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert!(list(listing).await.is_empty());
}
