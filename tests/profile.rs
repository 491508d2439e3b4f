//! Profile (issue 13): what a member sets is shown to others, kept across reconnects and
//! restarts, announced as `profile_updated`, checked field by field; the message mode decides
//! how messages reach it (push, held in an inbox, or off).

use crate::common;

use std::time::Duration;

use claudemesh::client::MeshClient;
use claudemesh::protocol::messages::Profile;
use claudemesh::protocol::{ClientMessage, ServerMessage};
use common::*;
use serde_json::Value;

/// The `peers --json` entry of the session called `session_id`, as `viewer` sees it.
fn listed(viewer: &Person, session_id: &str) -> Value {
    let v = viewer.json(&["peers", "--json"]);
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sessionId"] == session_id)
        .cloned()
        .unwrap_or_else(|| panic!("no {session_id} in {v}"))
}

/// The next system event called `event` pushed to `client`.
async fn next_event(client: &MeshClient, event: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, client.next_push()).await {
            Ok(Some(ServerMessage::Push(p))) if p.event.as_deref() == Some(event) => {
                return p.event_data.unwrap_or_default();
            }
            Ok(Some(_)) => continue,
            _ => panic!("no {event} event"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_profile_is_shown_to_others_survives_reconnects_and_is_announced() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let alice_live = alice.client().await;
    let bob_live = bob.client().await;

    let shown = alice.json(&[
        "profile",
        "--role-tag",
        "reviewer",
        "--title",
        "Staff engineer",
        "--bio",
        "I read diffs for fun",
        "--avatar",
        "🦀",
        "--capability",
        "rust",
        "--capability",
        "code review",
        "--json",
    ]);
    assert_eq!(shown["roleTag"], "reviewer", "{shown}");
    assert_eq!(
        shown["capabilities"],
        serde_json::json!(["rust", "code review"])
    );

    // bob's session hears it, with the profile.
    let event = next_event(&bob_live, "profile_updated").await;
    assert_eq!(event["name"], "alice", "{event}");
    assert_eq!(event["profile"]["avatar"], "🦀", "{event}");
    assert_eq!(event["profile"]["title"], "Staff engineer", "{event}");

    // bob's `peers` shows it, as JSON and as text.
    let entry = listed(&bob, "test-alice");
    assert_eq!(entry["profile"]["roleTag"], "reviewer", "{entry}");
    assert_eq!(entry["profile"]["bio"], "I read diffs for fun");
    let out = bob.run(&["peers"]);
    assert!(
        out.stdout.contains("🦀 reviewer Staff engineer")
            && out.stdout.contains("can: rust, code review"),
        "{}",
        out.stdout
    );

    // A new session of alice's has it again, and so does one after a broker restart.
    alice_live.close().await;
    drop(bob_live);
    broker.restart();
    let _alice_again = alice.client().await;
    let entry = listed(&bob, "test-alice");
    assert_eq!(entry["profile"]["roleTag"], "reviewer", "{entry}");
    assert_eq!(
        entry["profile"]["capabilities"][1], "code review",
        "{entry}"
    );
    // Only what is given changes; an empty value clears a field.
    let shown = alice.json(&["profile", "--bio", "", "--json"]);
    assert_eq!(shown["bio"], Value::Null, "{shown}");
    assert_eq!(shown["roleTag"], "reviewer", "{shown}");

    // A new display name: shown, used to address her, and unique.
    let out = alice.run(&["profile", "--name", "bob"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("already called"), "{}", out.stderr);
    alice.json(&["profile", "--name", "alicia", "--json"]);
    assert_eq!(listed(&bob, "test-alice")["displayName"], "alicia");
    let out = bob.run(&["send", "alicia", "new name, same person"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn profile_fields_are_checked_and_named() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let client = alice.client().await;
    for (field, p) in [
        (
            "title",
            Profile {
                title: Some("lead\u{1b}[2J".into()),
                ..Default::default()
            },
        ),
        (
            "avatar",
            Profile {
                avatar: Some("https://example.com/me.png".into()),
                ..Default::default()
            },
        ),
        (
            "messageMode",
            Profile {
                message_mode: Some("loud".into()),
                ..Default::default()
            },
        ),
        (
            "displayName",
            Profile {
                display_name: Some(" padded ".into()),
                ..Default::default()
            },
        ),
        (
            // Passing for another member with an invisible character.
            "invisible characters",
            Profile {
                display_name: Some("alice\u{200b}".into()),
                ..Default::default()
            },
        ),
        (
            "roleTag",
            Profile {
                role_tag: Some("r".repeat(65)),
                ..Default::default()
            },
        ),
    ] {
        let err = client
            .request_ack(ClientMessage::SetProfile(p))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    let out = alice.run(&["profile", "--message-mode", "loud"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // Nothing of it was kept.
    let out = alice.run(&["profile"]);
    assert!(out.stdout.contains("no profile set"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn message_mode_off_refuses_and_inbox_holds_until_drained() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let carol = invited(&alice, "carol");
    let bob_live = bob.client().await;

    // off: a direct message is refused with a clear error, reported for bob without ending
    // a send to several; a broadcast skips bob only.
    bob.json(&["profile", "--message-mode", "off", "--json"]);
    let out = alice.run(&["send", "bob,carol", "ping"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("not sent to bob") && out.stderr.contains("turned messages off"),
        "{}",
        out.stderr
    );
    assert_eq!(texts(&inbox(&carol, &[])), ["ping"]);
    let out = alice.run(&["send", "*", "all hands"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(texts(&inbox(&carol, &[])), ["all hands"]);
    assert!(
        next_message(&bob_live, Duration::from_millis(1500))
            .await
            .is_none()
    );
    assert!(inbox(&bob, &[]).is_empty());

    // inbox: accepted and held, no live push, until bob drains (check_messages).
    bob.json(&["profile", "--message-mode", "inbox", "--json"]);
    let out = alice.run(&["send", "bob", "--priority", "now", "read me later"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        next_message(&bob_live, Duration::from_millis(1500))
            .await
            .is_none(),
        "inbox mode pushed a message live"
    );
    assert_eq!(bob_live.drain().await.unwrap(), 1);
    let held = next_message(&bob_live, Duration::from_secs(5))
        .await
        .expect("the drain hands it over");
    assert_eq!(bob_live.open(held).text.unwrap(), "read me later");

    // push again: live.
    bob.json(&["profile", "--message-mode", "push", "--json"]);
    alice.run(&["send", "bob", "live again"]);
    let live = next_message(&bob_live, Duration::from_secs(10))
        .await
        .expect("push mode pushes");
    assert_eq!(bob_live.open(live).text.unwrap(), "live again");
}

/// Nobody passes for another member with a look-alike name: letters from another script
/// (Cyrillic "а" for Latin "a"), other case, or "rn" for "m" make the same name, refused when
/// renaming and when joining.
#[test]
fn a_name_that_looks_like_another_members_is_refused() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    for lookalike in ["\u{430}lice", "ALICE", "a\u{217c}ice", "aIice"] {
        let out = bob.run(&["profile", "--name", lookalike]);
        assert_eq!(out.code, 1, "{lookalike}: {}", out.stdout);
        assert!(
            out.stderr.contains("looks the same"),
            "{lookalike}: {}",
            out.stderr
        );
    }
    alice.ok(&["profile", "--name", "marta"]);
    let out = bob.run(&["profile", "--name", "rnarta"]);
    assert!(out.stderr.contains("looks the same"), "{}", out.stderr);
    let (_, url) = invite(&alice, &[]);
    let mallory = Person::new("mallory");
    let out = mallory.run(&["join", &url, "--name", "b\u{43e}b"]);
    assert_ne!(out.code, 0, "a joiner named like bob (Cyrillic o)");
    assert!(out.stderr.contains("looks the same"), "{}", out.stderr);
    // Nor for one of the broker's own senders (a webhook's, a watch's, a Telegram user's).
    for reserved in ["webhook:github", "watch:prod", "tg:alice", "System"] {
        let out = bob.run(&["profile", "--name", reserved]);
        assert_eq!(out.code, 1, "{reserved}: {}", out.stdout);
        assert!(
            out.stderr.contains("the broker's own senders"),
            "{reserved}: {}",
            out.stderr
        );
    }
    let out = mallory.run(&["join", &url, "--name", "webhook:github"]);
    assert_ne!(out.code, 0, "a joiner named like a webhook");
    assert!(
        out.stderr.contains("the broker's own senders"),
        "{}",
        out.stderr
    );
    // A name that only shares letters is fine.
    bob.ok(&["profile", "--name", "bobby"]);
}

/// A session cannot pass for another member by the name it gives in its hello: one that looks
/// like another member's name goes by its member's name; a name of its own is kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_named_like_another_member_goes_by_its_members_name() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let connect = |name: &str, session: &str| {
        let info = claudemesh::protocol::messages::PeerInfo {
            display_name: Some(name.into()),
            ..peer_info(session)
        };
        MeshClient::connect(claudemesh::client::ConnectOptions::new(bob.entry(), info))
    };
    let posing = connect("ALICE", "posing").await.expect("bob connects");
    let own = connect("bob-frontend", "own").await.expect("bob connects");
    let hook = connect("webhook:github", "hook")
        .await
        .expect("bob connects");
    assert_eq!(listed(&alice, "test-posing")["displayName"], "bob");
    assert_eq!(listed(&alice, "test-own")["displayName"], "bob-frontend");
    assert_eq!(listed(&alice, "test-hook")["displayName"], "bob");
    hook.close().await;
    posing.close().await;
    own.close().await;
}
