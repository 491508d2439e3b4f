//! Observers (PROTOCOL.md §3.1): a member's observer connection sees mirror copies of its
//! messages and the mesh's status and list changes, and leaves the messages themselves for the
//! member's sessions.

use super::*;

/// The next mirror copy (PROTOCOL.md §3.1) an observer gets, skipping system events.
async fn next_mirror(observer: &MeshClient) -> claudemesh::protocol::messages::Push {
    let p = next_push_where(observer, "a mirror copy", |p| {
        p.subtype.as_deref() != Some("system")
    })
    .await;
    assert!(p.mirror.is_some(), "an observer gets only copies: {p:?}");
    p
}

/// A connection of `person` as a dashboard makes it (`peerRole:"observer"`).
async fn observer_of(person: &Person) -> MeshClient {
    connect_as(person, &format!("{}-dashboard", person.name), "observer").await
}

/// A dashboard connects as an observer: it sees a copy of what its member receives and sends,
/// stays out of others' peer lists, and takes nothing away from the member's own sessions.
#[tokio::test(flavor = "multi_thread")]
async fn an_observer_sees_copies_and_leaves_the_messages_for_the_members_sessions() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let observer = observer_of(&alice).await;

    // Events reach it, as they reach sessions: bob's live session is announced.
    let bob_live = bob.client().await;
    next_push_where(&observer, "peer_joined", |p| {
        p.event.as_deref() == Some("peer_joined")
    })
    .await;
    let seen: Vec<String> = bob_live
        .list_peers(None)
        .await
        .expect("bob lists peers")
        .into_iter()
        .map(|p| p.display_name)
        .collect();
    assert!(
        !seen.contains(&"alice".to_string()),
        "observer is hidden: {seen:?}"
    );

    let text = "mirror-check-4471";
    send(&bob, "alice", text, &[]);
    let copy = next_mirror(&observer).await;
    assert_eq!(copy.mirror.as_deref(), Some("received"));
    assert_eq!(observer.decrypt(&copy).as_deref(), Ok(text));
    assert_eq!(
        observer.drain().await.expect("the observer may ask"),
        0,
        "an observer never takes queued messages"
    );
    let inbox = alice.ok(&["inbox"]);
    assert!(
        inbox.contains(text),
        "alice's sessions still get it: {inbox}"
    );

    send(&alice, "bob", "and-back-again", &[]);
    let sent = next_mirror(&observer).await;
    assert_eq!(sent.mirror.as_deref(), Some("sent"));
    assert_eq!(sent.sender_name.as_deref(), Some("alice"));
}

/// The broker tells a dashboard (an observer) of each status change and each change to a list it
/// shows, as it happens (PROTOCOL.md §3.1, §5.3), and tells sessions neither: alice's session
/// hears bob's message and none of those events before it.
#[tokio::test(flavor = "multi_thread")]
async fn status_changes_and_list_changes_reach_observers_and_not_sessions() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let observer = observer_of(&alice).await;
    let alice_live = alice.client().await;
    let _bob_live = bob.client().await;

    bob.ok(&["status", "set", "dnd"]);
    let change = next_push_where(&observer, "bob's status change", |p| {
        p.event.as_deref() == Some("peer_status")
            && p.event_data.as_ref().is_some_and(|d| d["status"] == "dnd")
    })
    .await;
    let data = change.event_data.expect("the change");
    assert_eq!(
        (&data["name"], &data["source"]),
        (&json!("bob"), &json!("manual")),
        "{data}"
    );

    // The same change, from the CLI, for anyone in the mesh.
    let history = alice.ok(&["status", "history", "--since", "1h"]);
    assert!(
        history
            .lines()
            .any(|l| l.contains("bob") && l.contains("dnd") && l.contains("manual")),
        "{history}"
    );
    let history = alice.json(&["status", "history", "--json"]);
    assert!(
        history
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["name"] == "bob" && c["status"] == "dnd")),
        "{history:#}"
    );
    let bad = alice.refused(&["status", "history", "--since", "yesterday-ish"]);
    assert!(bad.contains("--since takes a duration"), "{bad}");

    // Each change to a list a dashboard shows is told once it is committed; a refused request
    // changes nothing and tells nothing.
    let changed = |area: &'static str| {
        move |p: &claudemesh::protocol::messages::Push| {
            p.event.as_deref() == Some("mesh_changed")
                && p.event_data.as_ref().is_some_and(|d| d["area"] == area)
        }
    };
    bob.ok(&["task", "create", "prune the roses"]);
    next_push_where(&observer, "the task's creation", changed("tasks")).await;
    bob.refused(&["task", "claim", "0000000000000000"]);
    bob.ok(&["remember", "the roses need pruning in march"]);
    let next = next_push_where(&observer, "the next change", |p| {
        p.event.as_deref() == Some("mesh_changed")
    })
    .await;
    assert_eq!(
        next.event_data.expect("an area")["area"],
        "memory",
        "a refused claim was told as a change"
    );
    let file = bob.config_dir().join("notes.txt");
    std::fs::write(&file, "prune").unwrap();
    bob.ok(&["file", "share", file.to_str().unwrap()]);
    next_push_where(&observer, "the file's upload", changed("files")).await;

    send(&bob, "alice", "after-the-events", &[]);
    let heard = std::sync::Mutex::new(Vec::new());
    next_push_where(&alice_live, "bob's message", |p| {
        heard.lock().unwrap().push(p.event.clone());
        p.subtype.as_deref() != Some("system")
    })
    .await;
    let heard = heard.into_inner().unwrap();
    assert!(
        !heard
            .iter()
            .flatten()
            .any(|e| e == "peer_status" || e == "mesh_changed"),
        "a session heard a dashboard's event: {heard:?}"
    );
}

/// A broadcast reaches bob's session under its session key: bob's dashboard still gets the
/// copy as received, and alice's (the sender's) gets it as sent, not as received.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_to_a_members_session_is_mirrored_to_that_members_observer_only() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let alices = observer_of(&alice).await;
    let bobs = observer_of(&bob).await;
    let session = session_of(&bob, claudemesh::crypto::SignKeyPair::generate())
        .await
        .expect("bob's session");
    let text = "to-the-session-5521";
    send(&alice, "*", text, &[]);
    let got = next_message(&session, WAIT)
        .await
        .expect("bob's session gets it");
    assert_eq!(session.decrypt(&got).as_deref(), Ok(text));
    let received = next_mirror(&bobs).await;
    assert_eq!(received.mirror.as_deref(), Some("received"));
    assert_eq!(bobs.decrypt(&received).as_deref(), Ok(text));
    let sent = next_mirror(&alices).await;
    assert_eq!(sent.mirror.as_deref(), Some("sent"));
    assert_eq!(alices.decrypt(&sent).as_deref(), Ok(text));
}
