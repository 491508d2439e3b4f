//! The broker's status page (issue 18 item 3, README "HTTP endpoints"): numbers for whoever may
//! read `/metrics`, meshes by name only with the admin token, never message content.

use crate::common;

use claudemesh::client::http;
use common::*;

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

    let operator = page(
        &broker,
        &[("authorization", "Bearer st4tus-page-t0ken".to_string())],
    )
    .await;
    assert!(operator.contains("messages per minute"), "{operator}");
    assert!(!operator.contains("<h2>Meshes</h2>"), "{operator}");
}
