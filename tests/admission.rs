//! Who gets in at all (issue 10, item 9): caps on open connections per IP address and in total,
//! enforced before any HTTP or WebSocket work, and the optional bearer token of `/metrics`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

use claudemesh::client::http;

/// Tries to open a WebSocket; `Err((status, body))` when the broker refuses it.
async fn try_ws(broker: &BrokerProc) -> Result<Ws, (u16, String)> {
    use tokio_tungstenite::tungstenite::Error;
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(broker.ws_url()))
        .await
        .expect("the connection attempt timed out");
    match attempt {
        Ok((ws, _)) => Ok(ws),
        Err(Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// Opens WebSockets until the broker refuses one; returns the open ones and the refusal.
async fn fill(broker: &BrokerProc, most: usize) -> (Vec<Ws>, (u16, String)) {
    let mut open = Vec::new();
    for _ in 0..most {
        match try_ws(broker).await {
            Ok(ws) => open.push(ws),
            Err(refusal) => return (open, refusal),
        }
    }
    panic!("{most} connections from one address were all accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_hold_every_connection() {
    // Room for the bystanders' two connections and a few more.
    let broker = BrokerProc::start(&["--max-connections-per-ip", "8"]);
    let mut bystanders = Bystanders::start(&broker).await;
    bystanders.exchange(3).await;
    eventually("only the bystanders to be connected", || async {
        // This request is a connection too.
        metric(&broker, "claudemesh_tcp_connections").await == Some(3.0)
    })
    .await;

    // The attack: open connections from one address until refused.
    let (held, (status, body)) = fill(&broker, 100).await;
    assert_eq!(held.len(), 6, "8 per address, 2 of them the bystanders'");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("\"too_many_connections\""), "{body}");
    assert!(
        body.contains("already has the maximum of 8 open connections"),
        "{body}"
    );
    // A plain HTTP request from that address is refused the same way.
    let r = http::request("GET", &format!("{}/health", broker.http_url()), &[], None)
        .await
        .expect("an answer");
    assert_eq!(r.status, 429);
    // Connections already in keep working.
    bystanders.exchange(3).await;

    // Once the attacker's connections close, new ones are accepted again.
    drop(held);
    eventually("new connections to be accepted again", || async {
        try_ws(&broker).await.is_ok()
    })
    .await;
    bystanders.exchange(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_wide_cap_refuses_with_503() {
    let broker = BrokerProc::start(&["--max-connections", "5", "--max-connections-per-ip", "100"]);
    let (held, (status, body)) = fill(&broker, 100).await;
    assert_eq!(held.len(), 5);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"broker_full\""), "{body}");
    assert!(body.contains("maximum of 5 open connections"), "{body}");
    drop(held);
    eventually("new connections to be accepted again", || async {
        try_ws(&broker).await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_token_when_one_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "m3trics-t0ken-for-tests\n").unwrap();
    let broker = BrokerProc::start(&["--metrics-token-file", token_file.to_str().unwrap()]);
    let url = format!("{}/metrics", broker.http_url());

    let none = http::request("GET", &url, &[], None).await.unwrap();
    assert_eq!(none.status, 401);
    assert!(
        none.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization: Bearer")),
        "{:?}",
        none.json()
    );
    let wrong = http::request(
        "GET",
        &url,
        &[("authorization", "Bearer m3trics-t0ken-for-test".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    let right = http::request(
        "GET",
        &url,
        &[("authorization", "Bearer m3trics-t0ken-for-tests".into())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(right.status, 200);
    assert!(String::from_utf8_lossy(&right.body).contains("claudemesh_peers "));
    // The token is not in the broker's output.
    let out = broker.stdout_lines().join("\n") + &broker.stderr_lines().join("\n");
    assert!(!out.contains("m3trics-t0ken"), "{out}");
    // Other endpoints do not need it.
    assert_eq!(
        http_get(&format!("{}/health", broker.http_url()))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_metrics_are_for_loopback_only() {
    // The harness's broker: loopback clients read /metrics as before.
    let broker = BrokerProc::start(&[]);
    assert!(metric(&broker, "claudemesh_peers").await.is_some());
    drop(broker);

    // A broker listening on every address refuses /metrics to a non-loopback client.
    let Some(ip) = claudemesh::net::reachable_address() else {
        eprintln!("no non-loopback address on this machine: part skipped");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "broker",
            "--listen",
            "0.0.0.0:0",
            "--insecure-plaintext",
            "--data",
        ])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the broker");
    // Kept open to the end: the broker writes more lines after the first.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first
        .split_whitespace()
        .find_map(|w| w.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .expect("the port in the first line");
    // Plain text off loopback needs the client's switch too.
    let plain_anywhere = claudemesh::client::tls::Trust {
        insecure_plaintext: true,
        ..Default::default()
    };
    let outside_url = format!(
        "http://{}/metrics",
        claudemesh::net::url_authority(ip, port)
    );
    let outside = http::request_with("GET", &outside_url, &[], None, &plain_anywhere)
        .await
        .expect("an answer");
    let inside = http::request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        &[],
        None,
    )
    .await
    .expect("an answer");
    let _ = child.kill();
    let _ = child.wait();
    drop(stdout);
    assert_eq!(outside.status, 403, "{:?}", outside.json());
    assert!(
        outside.json()["message"]
            .as_str()
            .is_some_and(|m| m.contains("--metrics-token-file")),
        "{:?}",
        outside.json()
    );
    assert_eq!(inside.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trickled_request_body_is_cut_off_and_gives_its_slot_back() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = BrokerProc::start(&["--max-connections", "3", "--max-connections-per-ip", "100"]);
    let addr = broker.http_url().trim_start_matches("http://").to_string();
    // Three clients of an endpoint that needs no credentials: headers promising a body, then
    // a byte every two seconds, never all of it. They hold every slot.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut read, mut write) = tcp.into_split();
        write
            .write_all(b"POST /invites/AAAAAAAA/claim HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{")
            .await
            .unwrap();
        let trickle = tokio::spawn(async move {
            while write.write_all(b" ").await.is_ok() {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        slow.push(tokio::spawn(async move {
            let mut answer = vec![0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(90), read.read(&mut answer))
                .await
                .expect("no answer within 90 s to a body trickled for ever")
                .unwrap();
            trickle.abort();
            String::from_utf8_lossy(&answer[..n]).into_owned()
        }));
    }
    eventually("the three slow clients to hold every slot", || async {
        matches!(try_ws(&broker).await, Err((503, _)))
    })
    .await;
    // Each is answered 408 once its body is overdue, though bytes keep coming; then others get in.
    for answer in slow {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("did not arrive within 30 s"), "{answer}");
    }
    eventually("new connections to be accepted again", || async {
        try_ws(&broker).await.is_ok()
    })
    .await;
}
