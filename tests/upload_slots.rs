//! Upload slots against slow clients (issue 10, item 9): a member trickling bytes into uploads
//! cannot hold the broker's few upload slots, and an upload waiting for a slot gets a clear
//! 503 instead of hanging. The timeouts are flags so these tests run in seconds.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A slow-loris upload: declares a megabyte, then sends one byte every `every` until told
/// to stop (the socket is closed by the broker or by dropping the task).
struct Loris {
    answer: tokio::task::JoinHandle<(u16, String)>,
}

impl Loris {
    async fn start(broker: &BrokerProc, token: &str, mesh_id: &str, every: Duration) -> Loris {
        let mut s = TcpStream::connect(("127.0.0.1", broker.port))
            .await
            .expect("connect to the broker");
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             X-Mesh-Id: {mesh_id}\r\nX-File-Name: slow.bin\r\nContent-Length: 1048576\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.expect("send the head");
        let answer = tokio::spawn(async move {
            let (mut rd, mut wr) = s.into_split();
            let trickle = async move {
                while wr.write_all(b"x").await.is_ok() {
                    tokio::time::sleep(every).await;
                }
                // The broker stopped reading; keep the socket open for its answer.
                std::future::pending::<()>().await;
            };
            let read = async move {
                let mut answer = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                    }
                    let text = String::from_utf8_lossy(&answer);
                    if text
                        .split_once("\r\n\r\n")
                        .is_some_and(|(_, b)| b.trim_end().ends_with('}'))
                    {
                        break;
                    }
                }
                answer
            };
            let answer = tokio::select! {
                a = read => a,
                () = trickle => unreachable!(),
            };
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
        });
        Loris { answer }
    }

    /// Stops trickling and closes the socket.
    fn stop(self) {
        self.answer.abort();
    }

    /// The broker's answer to this upload (fails the test after [`WAIT`]).
    async fn answer(self) -> (u16, String) {
        tokio::time::timeout(WAIT, self.answer)
            .await
            .expect("the slow upload was not ended in time")
            .expect("the slow upload task")
    }
}

fn share(person: &Person, path: &Path) -> CmdOutput {
    person.run(&[
        "file",
        "share",
        path.to_str().expect("utf-8 path"),
        "--json",
    ])
}

async fn upload_token(client: &claudemesh::client::MeshClient) -> String {
    client.file_token().await.expect("an upload token").token
}

#[tokio::test(flavor = "multi_thread")]
async fn trickling_uploads_lose_their_slots_and_an_honest_upload_goes_through() {
    let broker = BrokerProc::start(&[
        "--upload-slots",
        "2",
        "--upload-idle-timeout",
        "1s",
        "--upload-slot-wait",
        "25s",
    ]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob) = alice_and_bob(&broker);
    let mesh_id = bob.entry().mesh_id;
    let bob_client = bob.client().await;
    bystanders.exchange(3).await;

    // The attack: bob fills every upload slot with an upload that sends a byte every 200 ms,
    // forever (each byte alone would beat a per-read timeout).
    let mut loris = Vec::new();
    for _ in 0..2 {
        let token = upload_token(&bob_client).await;
        loris.push(Loris::start(&broker, &token, &mesh_id, Duration::from_millis(200)).await);
    }
    bystanders.exchange(3).await;

    // An honest upload gets a slot once the trickles are cut off, within the test's wait.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.txt");
    std::fs::write(&file, vec![b'r'; 200_000]).unwrap();
    let out = share(&alice, &file);
    assert_eq!(out.code, 0, "the honest upload failed: {}", out.stderr);

    // Each slow upload was ended with a clear error, and nothing of it was kept.
    for l in loris {
        let (status, body) = l.answer().await;
        assert_eq!(status, 408, "slow upload answered {status}: {body}");
        assert!(body.contains("\"timeout\""), "{body}");
        assert!(body.contains("to free its slot"), "{body}");
    }
    let listed = alice.json(&["file", "list", "--json"]);
    let names: Vec<_> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["report.txt".to_string()]);
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_slot_ends_with_503_and_a_reason() {
    let broker = BrokerProc::start(&[
        "--upload-slots",
        "1",
        "--upload-idle-timeout",
        "60s",
        "--upload-slot-wait",
        "1s",
    ]);
    let mut bystanders = Bystanders::start(&broker).await;
    let (alice, bob) = alice_and_bob(&broker);
    let mesh_id = bob.entry().mesh_id;
    let bob_client = bob.client().await;

    // Bob holds the only slot with an upload that keeps sending (enough to count as progress).
    let token = upload_token(&bob_client).await;
    let hog = Loris::start(&broker, &token, &mesh_id, Duration::from_millis(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"notes").unwrap();
    // Alice's upload waits for the slot, then is refused with a reason instead of hanging.
    // (The hog's first byte may still be on its way: retry until the slot is seen taken.)
    let mut refused = None;
    for _ in 0..50 {
        let out = share(&alice, &file);
        if out.code != 0 {
            refused = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = refused.expect("alice's upload was never refused while the slot was taken");
    assert!(
        out.stderr
            .contains("every upload slot (1) stayed busy for 1s")
            && out.stderr.contains("HTTP 503"),
        "{}",
        out.stderr
    );
    bystanders.exchange(3).await;

    // Once the hog is gone, uploads go through again.
    hog.stop();
    let mut done = false;
    for _ in 0..50 {
        if share(&alice, &file).code == 0 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "uploads did not resume after the slot was freed");
    bystanders.exchange(3).await;
}
