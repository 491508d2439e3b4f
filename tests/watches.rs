//! URL watches (issue 17 item 1): the real broker polls an HTTP server the test runs on
//! loopback (allowed with `--allow-private-watch-targets`) and tells the target member, once per
//! change; a watch survives a restart with its last value; without the flag, private targets
//! are refused when the watch is made, before any request.

use crate::common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use claudemesh::client::MeshClient;
use common::secrets::assert_broker_never_saw;
use common::sees::next_message;
use common::*;

const BEARER: &str = "watch-header-secret-7f3a9c21d4";

/// A small site the test controls: per path, the status and body it answers, how many
/// requests it got, and the Authorization headers it saw.
#[derive(Clone, Default)]
struct Site {
    pages: Arc<Mutex<HashMap<String, (u16, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    auth: Arc<Mutex<Vec<String>>>,
}

impl Site {
    fn set(&self, path: &str, status: u16, body: &str) {
        self.pages
            .lock()
            .unwrap()
            .insert(path.into(), (status, body.into()));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    /// Serves on a free loopback port until the test ends.
    async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let site = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let site = site.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let site = site.clone();
                        async move { Ok::<_, Infallible>(site.answer(&req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    fn answer(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        if let Some(v) = req.headers().get("authorization") {
            self.auth
                .lock()
                .unwrap()
                .push(v.to_str().unwrap_or("").into());
        }
        let (status, body) = self
            .pages
            .lock()
            .unwrap()
            .get(&path)
            .cloned()
            .unwrap_or((404, "no such page".into()));
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        resp
    }
}

fn sha256_hex(text: &str) -> String {
    hex::encode(claudemesh::crypto::sha256(text.as_bytes()))
}

/// `person`'s watches as `watch list --json` shows them, by URL.
fn watches(person: &Person) -> HashMap<String, Value> {
    person.json(&["watch", "list", "--json"])["watches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["url"].as_str().unwrap().to_string(), w.clone()))
        .collect()
}

/// Waits until the watch on `url` has polled once and kept a value.
async fn baseline(person: &Person, url: &str) -> String {
    let mut value = String::new();
    eventually(&format!("a first poll of {url}"), || {
        let found = watches(person)
            .get(url)
            .and_then(|w| w["lastValue"].as_str().map(str::to_string));
        if let Some(v) = &found {
            value = v.clone();
        }
        std::future::ready(found.is_some())
    })
    .await;
    value
}

/// The next watch message `client` receives (acknowledged), as its decoded JSON text.
async fn next_watch_message(client: &MeshClient) -> Value {
    let push = next_message(client, Duration::from_secs(60))
        .await
        .expect("a watch message within a minute");
    assert_eq!(push.subtype.as_deref(), Some("watch"), "{push:?}");
    client.ack(&push.message_id).unwrap();
    let text = client.decrypt(&push).expect("a readable body");
    serde_json::from_str(&text).expect("the watch message is JSON")
}

/// Waits until `path` got `n` more requests than `from` (later polls happened).
async fn more_polls(site: &Site, path: &str, from: usize, n: usize) {
    let site = site.clone();
    let path = path.to_string();
    tokio::time::timeout(Duration::from_secs(60), async move {
        while site.hits(&path) < from + n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the watch keeps polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_body_a_matching_json_value_and_a_status_change_each_tell_the_target_once() {
    let site = Site::default();
    site.set("/page", 200, "version one");
    site.set("/deploy.json", 200, r#"{"deploy":{"state":"building"}}"#);
    site.set("/health", 200, "ok");
    let addr = site.serve().await;
    let broker = BrokerProc::start(&["--allow-private-watch-targets"]);
    let (alice, bob) = alice_and_bob(&broker);
    let bob_live = bob.client().await;

    let page = format!("http://{addr}/page");
    let deploy = format!("http://{addr}/deploy.json");
    let health = format!("http://{addr}/health");
    // The secret header comes from a file (not argv, which other users of a machine can read).
    let headers = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        headers.path(),
        format!("# for the status page\n\nAuthorization: Bearer {BEARER}\n"),
    )
    .unwrap();
    alice.ok(&[
        "watch",
        &page,
        "--interval",
        "5s",
        "--to",
        "bob",
        "--header-file",
        headers.path().to_str().unwrap(),
    ]);
    alice.ok(&[
        "watch",
        &deploy,
        "--mode",
        "json",
        "--path",
        "$.deploy.state",
        "--notify-on",
        "match:green",
        "--interval",
        "5s",
        "--to",
        "bob",
    ]);
    let created = alice.json(&[
        "watch",
        &health,
        "--mode",
        "status",
        "--interval",
        "5s",
        "--to",
        "bob",
        "--json",
    ]);
    assert_eq!(created["mode"], "status");
    assert_eq!(created["interval"], 5);

    // Each first poll only keeps the value (nothing matched "green" yet, nothing changed).
    assert_eq!(baseline(&alice, &page).await, sha256_hex("version one"));
    assert_eq!(baseline(&alice, &deploy).await, "building");
    assert_eq!(baseline(&alice, &health).await, "200");
    // What a watch read (it may poll with a credential) is for those it tells and its maker:
    // bob sees the value; carol, in the mesh but told nothing, the site's origin only.
    assert_eq!(watches(&bob)[&page]["lastValue"], sha256_hex("version one"));
    let carol = invited(&alice, "carol");
    let hers = carol.json(&["watch", "list", "--json"]);
    let hers = hers["watches"].as_array().unwrap();
    assert_eq!(hers.len(), 3, "{hers:?}");
    for w in hers {
        assert_eq!(w["url"], format!("http://{addr}"), "{w}");
        assert!(w.get("lastValue").is_none(), "{w}");
    }
    assert!(
        next_message(&bob_live, Duration::from_millis(500))
            .await
            .is_none(),
        "a first poll told bob something"
    );

    // The custom header reached the site, and the broker keeps it sealed.
    assert!(
        site.auth
            .lock()
            .unwrap()
            .contains(&format!("Bearer {BEARER}"))
    );

    site.set("/page", 200, "version two");
    site.set("/deploy.json", 200, r#"{"deploy":{"state":"green"}}"#);
    site.set("/health", 503, "down");
    let mut got: HashMap<String, Value> = HashMap::new();
    for _ in 0..3 {
        let m = next_watch_message(&bob_live).await;
        let url = m["url"].as_str().unwrap().to_string();
        assert!(got.insert(url, m).is_none(), "two messages for one change");
    }
    assert_eq!(got[&page]["oldValue"], sha256_hex("version one"));
    assert_eq!(got[&page]["newValue"], sha256_hex("version two"));
    assert_eq!(got[&page]["mode"], "hash");
    assert_eq!(got[&deploy]["oldValue"], "building");
    assert_eq!(got[&deploy]["newValue"], "green");
    assert_eq!(got[&health]["oldValue"], "200");
    assert_eq!(got[&health]["newValue"], "503");

    // Two more polls of each, unchanged: still one message per change.
    let marks: Vec<(String, usize)> = ["/page", "/deploy.json", "/health"]
        .iter()
        .map(|p| (p.to_string(), site.hits(p)))
        .collect();
    for (path, at) in &marks {
        more_polls(&site, path, *at, 2).await;
    }
    assert!(
        next_message(&bob_live, Duration::from_millis(500))
            .await
            .is_none(),
        "an unchanged value was reported again"
    );
    assert_broker_never_saw(&broker, BEARER.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_a_restart_from_its_last_value() {
    let site = Site::default();
    site.set("/release", 200, "v1.0");
    let addr = site.serve().await;
    let mut broker = BrokerProc::start(&["--allow-private-watch-targets"]);
    let (alice, bob) = alice_and_bob(&broker);
    let url = format!("http://{addr}/release");
    alice.ok(&["watch", &url, "--interval", "5s", "--to", "bob"]);
    let before = baseline(&alice, &url).await;
    assert_eq!(before, sha256_hex("v1.0"));

    broker.restart();
    let listed = watches(&alice);
    assert_eq!(listed[&url]["lastValue"], before.as_str(), "{listed:?}");

    // Polling resumes by itself (an unchanged poll tells nobody); then a change is reported
    // against the value kept from before the restart.
    let bob_live = bob.client().await;
    let at = site.hits("/release");
    more_polls(&site, "/release", at, 1).await;
    site.set("/release", 200, "v1.1");
    let m = next_watch_message(&bob_live).await;
    assert_eq!(m["oldValue"], before.as_str());
    assert_eq!(m["newValue"], sha256_hex("v1.1"));

    alice.ok(&["watch", "remove", m["watchId"].as_str().unwrap()]);
    assert!(watches(&alice).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_at_creation_without_the_flag_and_nothing_is_sent() {
    let site = Site::default();
    site.set("/admin", 200, "internal");
    let addr = site.serve().await;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);

    for (url, why) in [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        (&format!("http://{addr}/admin"), "loopback"),
        // A host name's refusal does not say what it resolves to (no mapping of internal DNS).
        (
            &format!("http://localhost:{}/admin", addr.port()),
            "resolves to an address that is not public",
        ),
        (
            &format!("http://[::ffff:127.0.0.1]:{}/admin", addr.port()),
            "loopback",
        ),
    ] {
        let err = alice.refused(&["watch", url, "--interval", "5s"]);
        assert!(err.contains(why), "{url}: {err}");
        assert!(err.contains("--allow-private-watch-targets"), "{err}");
    }
    assert!(watches(&alice).is_empty(), "a refused watch was stored");
    assert_eq!(site.total_hits(), 0, "a refused watch made a request");

    // Making a watch needs the "watches" capability (owner and admins by default).
    let err = bob.refused(&["watch", "https://example.com/", "--interval", "5s"]);
    assert!(err.contains("\"watches\""), "{err}");
    // Bad input is named.
    let err = alice.refused(&["watch", "https://example.com/", "--interval", "2s"]);
    assert!(err.contains("interval"), "{err}");
    // --mode json and --path go together, said with the flags' names (a usage error).
    let out = alice.run(&["watch", "https://example.com/", "--mode", "json"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--mode json needs --path, the JSONPath of the value to compare"),
        "{}",
        out.stderr
    );
    let out = alice.run(&["watch", "https://example.com/", "--path", "$.status"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("--path goes with --mode json only"),
        "{}",
        out.stderr
    );
    // A JSONPath that multiplies the work on every poll is refused at creation.
    let err = alice.refused(&[
        "watch",
        "https://example.com/",
        "--mode",
        "json",
        "--path",
        "$..*..*..*",
    ]);
    assert!(err.contains("one descendant segment"), "{err}");
}
