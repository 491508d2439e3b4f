//! The dashboard's later views (issue 18, second round), in headless Chromium against a real
//! broker: skills, shared tools, watches, webhooks and the audit log; a file shared from the
//! page; the owner's member actions and a member's lack of them.

use super::DashboardProc;
use crate::common;

use serde_json::{Value, json};

use common::browser::Browser;
use common::*;

/// Runs `script` in the page and returns what it returns.
async fn js(browser: &Browser, script: &str) -> Value {
    browser
        .client
        .execute(script, vec![])
        .await
        .expect("a script in the page")
}

/// `person`'s dashboard, logged in and loaded in `browser`.
async fn open(browser: &Browser, person: &Person) -> DashboardProc {
    let dash = DashboardProc::start(person);
    browser.goto(&dash.login).await;
    browser.wait_for("body[data-ready=true]").await;
    dash
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_cli_shares_shows_in_the_skills_tools_watches_and_audit_views() {
    let broker = BrokerProc::start(&["--allow-private-watch-targets"]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let skill = dir.path().join("SKILL.md");
    std::fs::write(
        &skill,
        "---\nname: prune-roses\ndescription: Prune the roses in March\ntags: [garden]\n---\n\nCut above an outward bud.\n",
    )
    .expect("write SKILL.md");
    // Each view is open before the CLI changes its list: the page follows without a reload.
    let _dash = open(&browser, &alice).await;
    browser.click("#tab-skills").await;
    browser.wait_text("No member shares an MCP server.").await;
    bob.ok(&["skill", "share", skill.to_str().expect("utf-8")]);
    browser.wait_for("li.skill[data-name=prune-roses]").await;
    browser.wait_text("Prune the roses in March").await;
    browser.screenshot("skills").await;

    browser.click("#tab-watches").await;
    let watched = format!("{}/metrics", broker.http_url());
    alice.ok(&[
        "watch",
        &watched,
        "--label",
        "broker-metrics",
        "--interval",
        "60s",
    ]);
    browser.wait_for("li.watch").await;
    browser.wait_text("broker-metrics").await;
    alice.ok(&["webhook", "create", "greenhouse-sensor", "--to", "bob"]);
    browser
        .wait_for("li.webhook[data-name=greenhouse-sensor]")
        .await;

    browser.click("#tab-audit").await;
    browser
        .wait_for("tr.audit[data-type='webhook.created']")
        .await;
    browser.screenshot("audit").await;

    // Bob is a member: the audit log is not his to read, and the page says so.
    let _bobs = open(&browser, &bob).await;
    browser.click("#tab-audit").await;
    browser
        .wait_text("The audit log is for the owner and admins")
        .await;
    browser.close().await;
}

/// A file chosen in the page goes up with a progress bar, encrypted for bob as `file share
/// --to bob` would: `file list` lists it and bob's `file get` gives back the same bytes. One
/// over the broker's upload limit is refused with the limit, before it is kept anywhere.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_shared_from_the_page_is_listed_and_downloads_with_the_same_bytes() {
    let broker = BrokerProc::start(&["--max-upload-bytes", "400000"]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("soil-survey.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &bytes).expect("write the file");

    let _dash = open(&browser, &alice).await;
    browser.click("#tab-files").await;

    // Over the broker's limit: the page says so, and nothing is shared.
    let big = dir.path().join("too-big.bin");
    std::fs::write(&big, vec![7u8; 500_000]).expect("write the big file");
    let input = browser.wait_for("#upload-file").await;
    input
        .send_keys(big.to_str().expect("utf-8"))
        .await
        .expect("choose the file");
    browser.click("#upload-send").await;
    browser
        .wait_text("the broker accepts at most 400000 bytes")
        .await;
    let listed = alice.json(&["file", "list", "--json"]);
    assert_eq!(listed["files"], json!([]), "{listed:#}");
    js(
        &browser,
        "document.getElementById('upload-form').reset(); return null",
    )
    .await;

    let input = browser.wait_for("#upload-file").await;
    input
        .send_keys(path.to_str().expect("utf-8"))
        .await
        .expect("choose the file");
    browser.type_into("#upload-to", "bob").await;
    browser.click("#upload-send").await;
    browser.wait_text("shared soil-survey.bin").await;
    browser.wait_text("encrypted").await;
    assert_eq!(
        js(
            &browser,
            "return document.getElementById('upload-progress').value"
        )
        .await,
        json!(1),
        "the progress bar is full"
    );
    browser
        .wait_for("tr.file a[download='soil-survey.bin']")
        .await;
    browser.screenshot("files").await;

    let listed = alice.json(&["file", "list", "--json"]);
    let file = listed["files"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "soil-survey.bin"))
        .unwrap_or_else(|| panic!("file list: {listed:#}"))
        .clone();
    let id = file["id"].as_str().expect("an id");
    let out = dir.path().join("got.bin");
    bob.json(&[
        "file",
        "get",
        id,
        "--out",
        out.to_str().expect("utf-8"),
        "--json",
    ]);
    let got = std::fs::read(&out).expect("bob's download");
    assert!(
        got == bytes,
        "bob got {} bytes, not the {} sent",
        got.len(),
        bytes.len()
    );
    browser.close().await;
}

fn member_id(owner: &Person, name: &str) -> Option<String> {
    let members = owner.json(&["members", "--json"]);
    members["members"]
        .as_array()?
        .iter()
        .find(|m| m["displayName"] == name)
        .and_then(|m| m["memberId"].as_str().map(str::to_string))
}

/// The owner makes bob an admin, kicks and then bans him, and revokes carol from the page;
/// carol, a member, sees no buttons, and a request her page makes anyway is refused by the
/// broker.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_changes_roles_and_removes_members_from_the_page_and_a_member_cannot() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let Some(browser) = Browser::start().await else {
        return;
    };
    let bob_id = member_id(&alice, "bob").expect("bob is a member");

    // Carol's page: no member actions; asked anyway, the broker says no.
    let _carols = open(&browser, &carol).await;
    browser.wait_for("tr.member[data-name=bob]").await;
    assert_eq!(
        js(
            &browser,
            "return document.querySelectorAll('tr.member button').length"
        )
        .await,
        json!(0),
        "a member sees no member actions"
    );
    let refused = browser
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch('/api/members/revoke', {method: 'POST', headers: {'Content-Type': 'application/json'}, \
               body: JSON.stringify({member: arguments[0]})}) \
               .then(r => r.json().then(j => done([r.status, j.error])))",
            vec![json!(bob_id)],
        )
        .await
        .expect("a revoke from carol's page");
    assert_eq!(refused[0], json!(400), "{refused}");
    assert!(member_id(&alice, "bob").is_some(), "bob is still a member");

    let _dash = open(&browser, &alice).await;
    js(&browser, "window.confirm = () => true; return null").await;
    browser.click("tr.member[data-name=bob] button.role").await;
    browser.wait_text("bob is now admin").await;
    let members = alice.json(&["members", "--json"]);
    let bob_now = members["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["displayName"] == "bob"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(bob_now["role"], "admin", "{members:#}");

    // Kick closes bob's connection (he may come back); ban keeps him out.
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    browser.click("tr.member[data-name=bob] button.kick").await;
    browser.wait_text("kick: done for bob").await;
    assert_eq!(ws_recv_close(&mut ws).await, (4001, "kicked".to_string()));
    bob.ok(&["peers"]);
    browser.click("tr.member[data-name=bob] button.ban").await;
    browser.wait_text("ban: done for bob").await;
    let err = bob.refused(&["peers"]);
    assert!(err.contains("banned"), "{err}");

    browser
        .click("tr.member[data-name=carol] button.revoke")
        .await;
    browser.wait_text("revoke: done for carol").await;
    assert_eq!(member_id(&alice, "carol"), None, "carol is gone");
    browser.screenshot("members").await;
    browser.close().await;
}

/// Bob creates and claims a task and his session goes working then dnd from the CLI, with nothing else
/// happening in the mesh: the open task board shows the task, the Peers view his status and the
/// open Activity view both stretches on his row of the status timeline, all without a reload
/// (the broker tells observers of each task move and status change). His messages to alice
/// count in the messages-per-minute chart.
#[tokio::test(flavor = "multi_thread")]
async fn status_changes_show_in_the_timeline_and_messages_in_the_rate_chart() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(browser) = Browser::start().await else {
        return;
    };
    let _session = bob.client().await;
    let _dash = open(&browser, &alice).await;
    browser
        .wait_for("#peers-table tr.peer[data-name=bob]")
        .await;

    browser.click("#tab-tasks").await;
    bob.ok(&["task", "create", "repot the fig"]);
    browser
        .wait_for("#tasks-open li.task[data-title='repot the fig']")
        .await;
    let tasks = bob.json(&["task", "list", "--json"]);
    let id = tasks["tasks"][0]["id"].as_str().expect("the task's id");
    bob.ok(&["task", "claim", id]);
    browser
        .wait_for("#tasks-claimed li.task[data-title='repot the fig']")
        .await;

    browser.click("#tab-peers").await;
    bob.ok(&["status", "set", "working"]);
    browser
        .wait_for("#peers-table tr.peer[data-name=bob] td.status-working")
        .await;

    browser.click("#tab-activity").await;
    browser
        .wait_for(".timeline-row[data-name=bob] rect[data-status=working]")
        .await;
    bob.ok(&["status", "set", "dnd"]);
    browser
        .wait_for(".timeline-row[data-name=bob] rect[data-status=dnd]")
        .await;
    browser
        .wait_for(".timeline-row[data-name=bob] rect[data-status=idle]")
        .await;
    for text in ["one", "two", "three"] {
        bob.ok(&["send", "alice", text]);
    }
    browser
        .wait_for(".rate-line[data-name=bob][data-total='3']")
        .await;
    browser.screenshot("activity").await;

    // Any member may read it; the dashboard's own connection is not a session in it.
    let history = bob.client().await.status_history(None).await;
    let history = history.expect("bob reads the status history");
    assert!(
        history.iter().any(|c| c.name == "bob" && c.status == "dnd"),
        "{history:?}"
    );
    assert!(
        history.iter().all(|c| c.name != "alice"),
        "the dashboard's observer connection has no status line: {history:?}"
    );
    browser.close().await;
}
