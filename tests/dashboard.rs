//! The broker's status page (issue 18 item 3, README "HTTP endpoints"): numbers for whoever may
//! read `/metrics`, meshes by name only with the admin token, never message content. And
//! `claudemesh dashboard` (issue 18 items 1, 2, 4, README "Dashboard"): its gate, tried with
//! plain HTTP requests, and its views, driven in headless Chromium against a real broker.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc as std_mpsc;

use claudemesh::client::http;
use rmcp::ServiceExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::browser::Browser;
use common::mcp::{Recorder, ask, call, mcp_process, next_decision};
use common::*;

mod mesh_views;

async fn page(broker: &BrokerProc, headers: &[(&str, String)]) -> String {
    let r = http::request("GET", &format!("{}/", broker.http_url()), headers, None)
        .await
        .expect("GET /");
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_numbers_and_meshes_to_who_may_see_them_and_no_message_text() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    create_mesh(&broker, &alice, "orchard-seven");
    let (_, url) = invite(&alice, &[]);
    join(&bob, &url);
    let secret = "the-cellar-door-code-is-8821";
    alice.ok(&["send", "bob", secret]);

    // Loopback, no token: the numbers, not the meshes.
    let shown = page(&broker, &[]).await;
    assert!(shown.contains(env!("CARGO_PKG_VERSION")), "{shown}");
    assert!(shown.contains("messages per minute"), "{shown}");
    assert!(shown.contains("<th>meshes</th><td>1</td>"), "{shown}");
    assert!(
        !shown.contains("orchard-seven"),
        "mesh names need the admin token"
    );
    assert!(!shown.contains(secret));

    // A wrong token typed into the form: told so, still no meshes.
    let wrong = http_post(&format!("{}/status", broker.http_url()), "token=not-it").await;
    let wrong = String::from_utf8_lossy(&wrong.body);
    assert!(wrong.contains("not this broker's admin token"), "{wrong}");
    assert!(!wrong.contains("orchard-seven"));

    // The admin token, posted by the form or as a bearer: each mesh with its members.
    let form = format!("token={}", broker.admin_token());
    let admin = http_post(&format!("{}/status", broker.http_url()), form).await;
    let admin = String::from_utf8_lossy(&admin.body).into_owned();
    assert!(
        admin.contains("<td>orchard-seven</td>") && admin.contains("<td>2</td>"),
        "{admin}"
    );
    let bearer = page(
        &broker,
        &[("authorization", format!("Bearer {}", broker.admin_token()))],
    )
    .await;
    assert!(bearer.contains("<td>orchard-seven</td>"), "{bearer}");
    for shown in [&admin, &bearer] {
        assert!(!shown.contains(secret), "message text on the status page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_metrics_token_the_numbers_need_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "st4tus-page-t0ken\n").expect("token file");
    let broker = BrokerProc::start(&["--metrics-token-file", token_file.to_str().expect("utf-8")]);

    let public = page(&broker, &[]).await;
    assert!(public.contains(env!("CARGO_PKG_VERSION")), "{public}");
    assert!(!public.contains("messages per minute"), "{public}");
    assert!(public.contains("--metrics-token-file"), "{public}");
    // This loopback client sees no numbers, and the page does not say it would.
    assert!(!public.contains("shown to loopback clients"), "{public}");

    let operator = page(
        &broker,
        &[("authorization", "Bearer st4tus-page-t0ken".to_string())],
    )
    .await;
    assert!(operator.contains("messages per minute"), "{operator}");
    assert!(!operator.contains("<h2>Meshes</h2>"), "{operator}");
}

/// `claudemesh dashboard --no-open --listen 127.0.0.1:0` as someone runs it, with the login
/// link it printed; ended on drop.
struct DashboardProc {
    child: Child,
    login: String,
    port: u16,
}

impl DashboardProc {
    fn start(person: &Person) -> DashboardProc {
        let mut child = person
            .command(&["dashboard", "--no-open", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start claudemesh dashboard");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let login = loop {
            let line = rx
                .recv_timeout(WAIT)
                .expect("`claudemesh dashboard` printed its login link");
            if let Some(at) = line.find("http://127.0.0.1:")
                && line.contains("/login?token=")
            {
                break line[at..].trim().to_string();
            }
        };
        let port = login["http://127.0.0.1:".len()..]
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the login link");
        DashboardProc { child, login, port }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for DashboardProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to the dashboard with exactly these headers (`Host` included, so a
/// test can lie about it); returns the status, the head and the body.
async fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the dashboard");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = if method == "POST" {
        "{\"key\":\"k\",\"value\":\"v\"}"
    } else {
        ""
    };
    req.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// The login token works once and becomes a strict session cookie; without the cookie, from
/// another Host, or a POST from another Origin, the dashboard answers 403 with the reason.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_lets_in_only_its_login_link_from_this_machine() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dash = DashboardProc::start(&alice);
    let host = format!("127.0.0.1:{}", dash.port);
    let path = &dash.login[dash.origin().len()..];

    let (status, answer) = raw(dash.port, "GET", "/api/peers", &[("Host", &host)]).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("not logged in"), "{answer}");

    let (status, answer) = raw(dash.port, "GET", path, &[("Host", &host)]).await;
    assert_eq!(status, 303, "{answer}");
    let cookie_line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a Set-Cookie")
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie_line.contains(flag), "{cookie_line}");
    }
    let cookie = cookie_line["set-cookie:".len()..]
        .trim()
        .split(';')
        .next()
        .expect("name=value")
        .to_string();

    let (status, answer) = raw(dash.port, "GET", path, &[("Host", &host)]).await;
    assert_eq!(status, 403, "a second use of the login link: {answer}");
    assert!(answer.contains("already used"), "{answer}");

    let (status, answer) = raw(
        dash.port,
        "GET",
        "/",
        &[("Host", &host), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let head = answer.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{answer}"
    );
    assert!(head.contains("x-frame-options: deny"), "{answer}");
    assert!(head.contains("referrer-policy: no-referrer"), "{answer}");
    let (status, answer) = raw(
        dash.port,
        "GET",
        "/api/peers",
        &[("Host", &host), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"bob\""), "{answer}");

    let rebound = format!("attacker.example:{}", dash.port);
    let (status, answer) = raw(
        dash.port,
        "GET",
        "/api/peers",
        &[("Host", &rebound), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 403, "a DNS-rebinding Host: {answer}");
    assert!(answer.contains("wrong Host"), "{answer}");

    let own = dash.origin();
    let foreign = [
        ("Host", host.as_str()),
        ("Cookie", &cookie),
        ("Origin", "http://attacker.example"),
    ];
    let (status, answer) = raw(dash.port, "POST", "/api/state", &foreign).await;
    assert_eq!(status, 403, "a cross-site POST: {answer}");
    assert!(answer.contains("Origin"), "{answer}");
    let (status, answer) = raw(
        dash.port,
        "POST",
        "/api/state",
        &[("Host", &host), ("Cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 403, "a POST without Origin: {answer}");
    assert_eq!(alice.run(&["state", "get", "k"]).code, 3, "nothing was set");
    let (status, answer) = raw(
        dash.port,
        "POST",
        "/api/state",
        &[("Host", &host), ("Cookie", &cookie), ("Origin", &own)],
    )
    .await;
    assert_eq!(status, 200, "the dashboard's own POST: {answer}");
    assert_eq!(alice.json(&["state", "get", "k", "--json"])["value"], "v");
}

/// Alice's dashboard in a real browser: her composer reaches bob's inbox, bob's message, his
/// board change and his live session show without a reload, a task claimed with a click is
/// claimed for the CLI, and Allow on bob's agent's permission prompt reaches his Claude Code.
/// The broker's status page, in the same browser, shows none of the messages.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_mesh_live_and_acts_for_its_member() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(browser) = Browser::start().await else {
        return;
    };
    bob.ok(&["approvers", "set", "alice"]);
    alice.ok(&["task", "create", "water the lemon tree"]);
    let dash = DashboardProc::start(&alice);
    browser.goto(&dash.login).await;
    browser.wait_for("body[data-ready=true]").await;
    browser.wait_text("alice in").await;

    // The composer sends; bob's inbox has it.
    let to_bob = "the deploy window opens at nine";
    browser.click("#tab-conversations").await;
    browser.type_into("#compose-to", "bob").await;
    browser.type_into("#compose-text", to_bob).await;
    browser.click("#compose-send").await;
    browser.wait_for("li.msg.sent").await;
    let inbox = bob.ok(&["inbox", "--json"]);
    assert!(inbox.contains(to_bob), "bob's inbox: {inbox}");

    // Bob's reply appears without a reload.
    let from_bob = "ack, I will be around at nine";
    bob.ok(&["send", "alice", from_bob]);
    browser.wait_text(from_bob).await;
    browser.wait_text(to_bob).await;
    // The dashboard watched it without taking it: alice's inbox still has it.
    let inbox = alice.ok(&["inbox", "--json"]);
    assert!(inbox.contains(from_bob), "alice's inbox: {inbox}");
    browser.screenshot("conversations").await;

    // The board follows `state set` live.
    browser.click("#tab-board").await;
    bob.ok(&["state", "set", "release-train", "boarding"]);
    browser.wait_for("tr.state[data-key=release-train]").await;
    browser.wait_text("boarding").await;
    browser.screenshot("board").await;

    // Claim from the UI; the CLI sees it claimed.
    browser.click("#tab-tasks").await;
    browser
        .click("li.task[data-title='water the lemon tree'] button.claim")
        .await;
    browser.wait_for("#tasks-claimed li.task").await;
    let tasks = alice.json(&["task", "list", "--json"]);
    assert_eq!(tasks["tasks"][0]["status"], "claimed", "{tasks:#}");
    browser.screenshot("tasks").await;

    // Bob's agent comes online: its session shows; its permission prompt waits for alice.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mcp = Recorder { tx }
        .serve(mcp_process(&bob))
        .await
        .expect("MCP handshake with bob's claudemesh mcp");
    eventually("bob's MCP session to connect", || async {
        !call(&mcp, "mesh_info", json!({}))
            .await
            .1
            .contains("connecting")
    })
    .await;
    browser.click("#tab-peers").await;
    browser
        .wait_for("#peers-table tr.peer[data-name=bob]")
        .await;
    // The dashboard itself is an observer: bob does not see it, nor does the page list it as
    // a session.
    let bobs_view = bob.ok(&["peers", "--json"]);
    assert!(!bobs_view.contains("\"dashboard\""), "{bobs_view}");
    let listed = browser
        .client
        .find_all(fantoccini::Locator::Css(
            "#peers-table tr.peer[data-name=alice]",
        ))
        .await
        .expect("find");
    assert!(
        listed.is_empty(),
        "the dashboard shows as a session: {}",
        browser.text().await
    );
    browser.screenshot("peers").await;

    // The owner invites from the page: the link (also drawn as a QR code) lets carol join.
    browser.click("#invite-create").await;
    browser.wait_for("#invite-made:not([hidden])").await;
    let js = |script: &'static str| {
        let client = browser.client.clone();
        async move { client.execute(script, vec![]).await.expect("script") }
    };
    let link = js("return document.getElementById('invite-link').value").await;
    let link = link.as_str().expect("the invite link").to_string();
    assert!(link.contains("/i/") && link.contains('#'), "{link}");
    let carol = Person::new("carol");
    join(&carol, &link);
    let drawn = js("const q = document.getElementById('invite-qr'); \
                    return q.complete && q.naturalWidth > 0")
    .await;
    assert_eq!(drawn, json!(true), "the QR code is drawn");

    browser.click("#tab-approvals").await;
    ask(
        &mcp,
        "lmnop",
        "Bash",
        "Run the migrations",
        "./migrate --apply",
    )
    .await;
    browser.wait_for("li.approval[data-request-id=lmnop]").await;
    browser.wait_text("./migrate --apply").await;
    browser.screenshot("approvals").await;
    browser
        .click("li.approval[data-request-id=lmnop] button.allow")
        .await;
    let decision = next_decision(&mut rx).await;
    assert_eq!(decision["request_id"], "lmnop", "{decision:#}");
    assert_eq!(decision["behavior"], "allow", "{decision:#}");

    // Memory: recall as the CLI does, then forget.
    alice.ok(&["remember", "the gate code is in the blue folder"]);
    browser.click("#tab-memory").await;
    browser.type_into("#memory-q", "gate code").await;
    browser.click("#memory-form button[type=submit]").await;
    browser
        .wait_text("the gate code is in the blue folder")
        .await;
    browser.click("li.memory button").await;
    browser.wait_text("Nothing found.").await;
    // The search on screen is run again when the mesh's memory changes.
    bob.ok(&["remember", "the new gate code is with the neighbour"]);
    browser
        .wait_text("the new gate code is with the neighbour")
        .await;

    // Files: a file bob shared with alice only is listed, and its link downloads it decrypted.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("harvest.txt");
    std::fs::write(&path, "seed potatoes: 40 kg").expect("write the file");
    // The open views follow what the CLI does, without a reload.
    browser.click("#tab-files").await;
    bob.ok(&[
        "file",
        "share",
        path.to_str().expect("utf-8"),
        "--to",
        "alice",
    ]);
    browser.wait_for("tr.file a[download='harvest.txt']").await;
    let downloaded = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(document.querySelector('tr.file a').href).then(r => r.text()).then(done)",
            vec![],
        )
        .await
        .expect("fetch the download");
    assert_eq!(downloaded, json!("seed potatoes: 40 kg"));

    // Reminders alice scheduled, decrypted on her machine.
    browser.click("#tab-more").await;
    alice.ok(&["remind", "repot the lemon tree", "--in", "2h"]);
    browser.wait_text("repot the lemon tree").await;

    // The broker's own status page, in the same browser: no message text.
    browser.goto(&format!("{}/", broker.http_url())).await;
    browser.wait_text("claudemesh").await;
    let status_page = browser.text().await;
    for secret in [to_bob, from_bob] {
        assert!(!status_page.contains(secret), "{status_page}");
    }
    let _ = mcp.cancel().await;
    browser.close().await;
}
