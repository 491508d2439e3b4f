use super::events::changed_area;
use super::*;

fn keys(k: &[&str]) -> Vec<String> {
    k.iter().map(|k| k.to_string()).collect()
}

fn set(ids: &[&str]) -> HashSet<String> {
    ids.iter().map(|i| i.to_string()).collect()
}

/// A connection's window: a push is due once, again only after `redeliver` without an
/// acknowledgement, never once acknowledged; an acknowledgement counts once and frees its
/// place; the commit forgets it, and only it.
#[test]
fn a_window_counts_pushes_once_and_forgets_them_when_committed() {
    let mut d = Delivery::default();
    assert!(d.due("a", 0, 30) && d.room());
    assert!(d.sent("a", 0, 100), "a first push");
    assert!(!d.sent("a", 10, 100), "a redelivery is not counted again");
    assert!(d.sent("b", 10, 100));
    assert!(
        !d.due("a", 39, 30) && d.due("a", 40, 30),
        "due 30 after its last push"
    );
    assert!(!d.stale(39, 30) && d.stale(40, 30));
    assert!(d.acked("a") && !d.acked("a"), "acknowledged once");
    assert!(!d.acked("never pushed"));
    assert!(
        !d.due("a", 1_000, 30),
        "never pushed again once acknowledged"
    );
    assert!(!d.stale(39, 30), "b is not stale yet, a is acknowledged");
    d.committed("b"); // not acknowledged: still in flight
    assert_eq!(d.pushed_at("b"), Some(10));
    d.committed("a");
    assert_eq!(d.pushed_at("a"), None, "forgotten once committed");
    assert_eq!((d.unacked, d.unacked_bytes), (1, 100));
}

/// The window holds 256 pushes or 4 MiB, whichever comes first (one push always fits),
/// and asks for more once half of it is free.
#[test]
fn the_window_is_256_pushes_or_4_mib() {
    let mut d = Delivery::default();
    for i in 0..WINDOW {
        assert!(d.room(), "room for push {i}");
        d.sent(&i.to_string(), 0, 10);
    }
    assert!(!d.room() && !d.half_free());
    for i in 0..WINDOW / 2 - 1 {
        d.acked(&i.to_string());
    }
    assert!(!d.half_free(), "129 in flight");
    d.acked(&(WINDOW / 2).to_string());
    assert!(d.half_free() && d.room(), "128 in flight");

    let mut d = Delivery::default();
    assert!(
        d.sent("huge", 0, WINDOW_BYTES * 2) && !d.room(),
        "one push always fits"
    );
    assert!(!d.half_free());
    let mut d = Delivery::default();
    d.sent("a", 0, WINDOW_BYTES / 2);
    assert!(d.room() && d.half_free());
    d.sent("b", 0, WINDOW_BYTES / 2);
    assert!(!d.room() && !d.half_free());
}

/// An acknowledgement being committed hides its entry in the queues it was acknowledged
/// in and no other; one acknowledged twice stays hidden until both commits return; once
/// all have, nothing is kept.
#[test]
fn pending_acknowledgements_are_per_queue_counted_and_forgotten() {
    let c = Committing::default();
    c.add(&keys(&["member", "s1"]), "x");
    c.add(&keys(&["member"]), "x");
    c.add(&keys(&["s1"]), "y");
    assert_eq!(
        c.pending(&keys(&["member", "s2", "s1"])),
        vec![set(&["x"]), set(&[]), set(&["x", "y"])]
    );
    c.remove(&keys(&["member", "s1"]), &keys(&["x", "y"]));
    assert_eq!(
        c.pending(&keys(&["member", "s1"])),
        vec![set(&["x"]), set(&[])],
        "the other commit of x in member is still running"
    );
    c.remove(&keys(&["member"]), &keys(&["x"]));
    c.remove(&keys(&["member"]), &keys(&["x"])); // a commit never added: no effect
    assert_eq!(c.pending(&keys(&["member"])), vec![set(&[])]);
    assert!(
        c.queues().is_empty(),
        "nothing kept once every commit returned"
    );
}

/// The list each successful request changes, as PROTOCOL.md §3.1 names them for
/// observers (`mesh_changed{area}`); reads and messages change none.
#[test]
fn each_request_that_changes_a_list_names_the_list_it_changes() {
    let areas: &[(&str, &[&str])] = &[
        (
            "tasks",
            &["create_task", "claim_task", "complete_task", "release_task"],
        ),
        ("files", &["delete_file", "grant_file_access"]),
        ("memory", &["remember", "forget"]),
        ("contexts", &["share_context"]),
        ("streams", &["create_stream"]),
        ("reminders", &["schedule", "cancel_scheduled"]),
        ("skills", &["share_skill", "remove_skill"]),
        (
            "tools",
            &[
                "mcp_register",
                "mcp_unregister",
                "mcp_deploy",
                "mcp_undeploy",
                "mcp_update",
                "mcp_scope",
            ],
        ),
        (
            "watches",
            &["watch", "unwatch", "create_webhook", "delete_webhook"],
        ),
        (
            "members",
            &[
                "create_invite",
                "revoke_invite",
                "revoke_member",
                "set_perms",
                "set_admins",
                "kick",
                "ban",
                "unban",
            ],
        ),
    ];
    for (area, requests) in areas {
        for request in *requests {
            assert_eq!(changed_area(request), Some(*area), "{request}");
        }
    }
    for read in [
        "send",
        "list_peers",
        "recall",
        "list_tasks",
        "get_file",
        "set_status",
    ] {
        assert_eq!(changed_area(read), None, "{read}");
    }
}

/// A push written from borrowed strings is byte for byte the push of `push_frame`, in both
/// encodings, with every optional field there and with none.
#[test]
fn a_borrowed_push_is_written_as_the_owned_one() {
    use crate::store::Priority;
    let mut record = MessageRecord {
        id: "m1".into(),
        mesh_id: "mesh".into(),
        sender_member_id: "alice".into(),
        sender_pubkey: "aa".into(),
        sender_member_pubkey: "bb".into(),
        sender_name: "Alice \"A\"".into(),
        target_spec: "*".into(),
        priority: Priority::Low,
        nonce: "bm9uY2U=".into(),
        ciphertext: "Y2lwaGVy".into(),
        body_version: Some(2),
        reply_to_id: Some("m0".into()),
        mentions: None,
        client_message_id: Some("c1".into()),
        request_fingerprint: Some("f1".into()),
        subtype: Some("reminder".into()),
        created_at_ms: 1_700_000_000_123,
        expires_at_ms: i64::MAX,
        recipients: vec![],
        key_epoch: 3,
    };
    for _ in 0..2 {
        for encoding in [Encoding::Json, Encoding::MsgPack] {
            let owned = to_ws(&push_frame(&record), encoding);
            let borrowed = push_message(&record, encoding);
            assert_eq!(borrowed.into_data(), owned.into_data(), "{encoding:?}");
        }
        let json = push_message(&record, Encoding::Json).into_text().unwrap();
        assert!(json.starts_with(r#"{"type":"push","#), "{json}");
        (record.body_version, record.key_epoch) = (None, 0);
        record.reply_to_id = None;
        record.client_message_id = None;
        record.request_fingerprint = None;
        record.subtype = None;
    }
}
