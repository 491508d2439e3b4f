//! A disk that runs full under the broker: every send then gets an error, never an ack for a
//! message that is not on disk; `/health/ready` and the metrics say so; nothing acknowledged is
//! lost or reordered; and once space is back the broker writes again without a restart.

use super::*;

/// A small tmpfs mounted for one test; unmounted when dropped, however the test ends.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts `size` (e.g. "24m"); `None` (with the reason) when mounting is not permitted.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros to `path` until the disk is full; returns how many bytes went in.
fn fill_disk(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // The last pages, byte-sized.
    while let Ok(n) = f.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
        written += n as u64;
    }
    let _ = f.sync_all();
    written
}

async fn ready(broker: &BrokerProc) -> (u16, Value) {
    let r = http_get(&format!("{}/health/ready", broker.http_url())).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_stops_acks_loses_nothing_and_recovers() {
    let disk = match Tmpfs::mount("24m") {
        Ok(d) => d,
        Err(why) => {
            skip_unless_strict(&format!(
                "cannot mount a tmpfs here ({why}); run as root to test a full disk"
            ));
            return;
        }
    };
    let broker = BrokerProc::start_in(&disk.path().join("data"), &[]);
    let (alice, bob) = alice_and_bob(&broker);
    let sender = alice.client().await;
    let to_bob = to(&bob);
    let mut acked: Vec<String> = Vec::new();
    for i in 0..20 {
        let ack = sender
            .send_text(&to_bob, &format!("before {i}"), "next", None)
            .await
            .expect("served");
        assert_eq!(ack.queued, Some(true));
        acked.push(format!("before {i}"));
    }
    assert_eq!(ready(&broker).await.0, 200);

    // The disk fills up (another program, logs, uploads: anything).
    let filler = disk.path().join("filler");
    let filled = fill_disk(&filler);
    eprintln!("filled the disk with {filled} bytes");

    // alice goes on sending until storage fails: from then on every send gets an error,
    // never an ack for a message that is not on disk.
    let body = "x".repeat(16 * 1024);
    let mut refused = None;
    for i in 0..2_000 {
        let text = format!("during {i} {body}");
        let ack = sender
            .send_text(&to_bob, &text, "next", None)
            .await
            .expect("served");
        if ack.queued == Some(true) {
            acked.push(text);
        } else {
            refused = ack.error.clone();
            break;
        }
    }
    let refused = refused.expect("storage never failed on a full disk");
    eprintln!("first refusal: {refused}");
    assert!(refused.starts_with("storage:"), "{refused}");
    for _ in 0..3 {
        let ack = sender
            .send_text(&to_bob, "while full", "next", None)
            .await
            .expect("served");
        assert_eq!(
            ack.queued,
            Some(false),
            "a false ack on a full disk: {ack:?}"
        );
    }
    let (status, body) = ready(&broker).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("storage"),
        "{body}"
    );
    assert_eq!(metric(&broker, "claudemesh_store_failed").await, Some(1.0));
    // The log line comes through the broker's stderr pipe: wait for it rather than race it.
    broker
        .logged("the log to say the storage failed", "storage failed")
        .await;
    // A revocation cannot be written either: it is refused, and bob is not shut out by a
    // revocation that did not happen (he comes back below).
    let bob_id = bob.entry().member_id;
    let refused = sender
        .request(ClientMessage::RevokeMember { member: bob_id })
        .await
        .expect_err("a revocation written on a full disk");
    assert!(refused.to_string().contains("storage"), "{refused}");
    // While the disk stays full, the broker's retries (every second) find no room and it stays
    // failed: no recovery is declared and nothing is accepted.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(ready(&broker).await.0, 503, "ready again on a full disk");
    assert_eq!(
        metric(&broker, "claudemesh_store_recoveries_total").await,
        Some(0.0)
    );

    // Space comes back: the broker notices and writes again, without a restart.
    std::fs::remove_file(&filler).expect("free the disk");
    eventually("the broker is ready again", || async {
        ready(&broker).await.0 == 200
    })
    .await;
    assert_eq!(metric(&broker, "claudemesh_store_failed").await, Some(0.0));
    assert_eq!(
        metric(&broker, "claudemesh_store_recoveries_total").await,
        Some(1.0)
    );
    for i in 0..5 {
        let ack = sender
            .send_text(&to_bob, &format!("after {i}"), "next", None)
            .await
            .expect("served");
        assert_eq!(ack.queued, Some(true), "{ack:?}");
        acked.push(format!("after {i}"));
    }

    // bob gets every acknowledged message (and nothing that was refused), in order.
    let reader = bob.client().await;
    let mut got = Vec::new();
    while got.len() < acked.len() {
        let push = tokio::time::timeout(WAIT, reader.next_push())
            .await
            .unwrap_or_else(|_| panic!("bob has {} of {}", got.len(), acked.len()))
            .expect("open");
        if let ServerMessage::Push(p) = push
            && p.subtype.is_none()
        {
            let m = reader.open(*p);
            reader.ack(&m.push.message_id).expect("ack");
            got.push(m.text.expect("readable"));
        }
    }
    assert_eq!(got, acked, "acknowledged messages were lost or reordered");
    assert_eq!(reader.drain_window().await.expect("drain"), (0, false));
    drop(reader);
    drop(sender);
    drop(broker);
    drop(disk);
}
