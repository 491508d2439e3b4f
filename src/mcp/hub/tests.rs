use super::*;
use crate::crypto::SignKeyPair;

/// A mesh entry as `join` saves it, for a broker nobody will dial.
fn entry(slug: &str) -> MeshEntry {
    serde_json::from_value(json!({
        "meshId": format!("id-of-{slug}"),
        "slug": slug,
        "name": slug,
        "memberId": "m1",
        "displayName": "bob",
        "role": "member",
        "brokerUrl": "ws://127.0.0.1:9/ws",
        "memberPubkey": "",
        "memberSecretKey": "",
        "ownerPubkey": "",
        "joinedAt": "2026-12-01T00:00:00Z",
    }))
    .expect("a mesh entry")
}

/// A hub joined to `slugs`, as [`Hub::start`] builds it, with no connection loop started:
/// every mesh is still connecting.
fn hub(slugs: &[&str]) -> Hub {
    let session = Session {
        id: "test".into(),
        key: SignKeyPair::generate(),
        claude_pid: 0,
    };
    Hub::new(
        session,
        slugs.iter().map(|slug| entry(slug)).collect(),
        false,
    )
}

/// The error a tool call for `slug` gets.
fn refusal(hub: &Hub, slug: Option<&str>) -> String {
    match hub.link(slug) {
        Ok(_) => panic!("no mesh is connected, yet {slug:?} was"),
        Err(e) => e,
    }
}

#[test]
fn a_repeated_message_id_is_dropped_and_the_last_4096_ids_are_remembered() {
    let hub = hub(&["team"]);
    assert!(hub.first_sight("0"), "a new id is shown");
    assert!(!hub.first_sight("0"), "a repeat is dropped");
    for i in 1..SEEN_CAPACITY {
        assert!(hub.first_sight(&i.to_string()), "id {i} is new");
    }
    // Exactly SEEN_CAPACITY ids seen: the oldest is still known.
    assert!(
        !hub.first_sight("0"),
        "the oldest of {SEEN_CAPACITY} ids is still remembered"
    );
    // One more, and the oldest gives way: memory is bounded.
    assert!(hub.first_sight(&SEEN_CAPACITY.to_string()));
    assert!(
        hub.first_sight("0"),
        "the oldest id is forgotten after one more"
    );
    let seen = lock(&hub.seen);
    assert_eq!((seen.0.len(), seen.1.len()), (SEEN_CAPACITY, SEEN_CAPACITY));
}

#[test]
fn a_permission_prompt_waits_until_answered_once_and_at_most_cap_wait() {
    let hub = hub(&["team"]);
    assert!(hub.ask("r1", 2), "the first prompt is forwarded");
    assert!(hub.ask("r1", 2), "the same prompt again is still ours");
    assert!(hub.ask("r2", 2));
    assert!(!hub.ask("r3", 2), "a third prompt over the cap of 2 waits");
    assert!(hub.answered("r1"), "r1's decision is passed on");
    assert!(!hub.answered("r1"), "and only once");
    assert!(
        !hub.answered("r9"),
        "a decision for a prompt never asked is not"
    );
    assert!(hub.ask("r3", 2), "an answer frees a place");
    assert!(hub.answered("r3"));
}

#[test]
fn a_mesh_prefix_is_split_off_a_target_only_when_it_names_a_joined_mesh() {
    let hub = hub(&["team", "ops"]);
    assert_eq!(hub.split_target("ops:alice"), (Some("ops"), "alice"));
    assert_eq!(
        hub.split_target("team:@backend"),
        (Some("team"), "@backend")
    );
    assert_eq!(hub.split_target("alice"), (None, "alice"));
    assert_eq!(hub.split_target("dev:alice"), (None, "dev:alice"));
}

#[test]
fn a_tool_call_goes_to_the_mesh_it_names_and_the_refusal_says_what_to_do() {
    let two = hub(&["team", "ops"]);
    assert_eq!(
        refusal(&two, Some("ops")),
        "not connected to mesh ops (connecting…)"
    );
    assert_eq!(
        refusal(&two, Some("id-of-ops")),
        "not connected to mesh ops (connecting…)",
        "a mesh is named by its id too"
    );
    assert_eq!(
        refusal(&two, Some("dev")),
        "no joined mesh \"dev\" (joined: team, ops)"
    );
    assert_eq!(
        refusal(&two, None),
        "several meshes are joined (team, ops); prefix the target with `<mesh-slug>:`"
    );
    *lock(&two.links[0].problem) = Some("refused: you were removed".into());
    assert_eq!(
        refusal(&two, Some("team")),
        "not connected to mesh team (refused: you were removed)"
    );

    assert_eq!(
        refusal(&hub(&["team"]), None),
        "not connected to mesh team (connecting…)",
        "the only mesh needs no name"
    );
    assert_eq!(
        refusal(&hub(&[]), None),
        "no mesh joined: run `claudemesh join <invite-url>` in a terminal"
    );
}

#[test]
fn a_session_that_cannot_connect_backs_off_to_30_s_and_stays_there() {
    let waits: Vec<u64> = (0..10).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]);
    assert_eq!(retry_delay(usize::MAX), Duration::from_secs(30));
}

#[test]
fn a_transcript_status_is_reported_when_it_changes_and_again_every_minute() {
    let mut reports = TranscriptReports::default();
    // Nothing reported yet: the first read goes, and again until a mesh took it.
    assert!(reports.due(true));
    assert!(reports.due(true));
    reports.sent(true);
    // Unchanged: quiet for eleven reads, reported on the twelfth (a minute at 5 s a read).
    for read in 1..TRANSCRIPT_REFRESH_READS {
        assert!(
            !reports.due(true),
            "read {read} of an unchanged status was reported"
        );
    }
    assert!(
        reports.due(true),
        "an unchanged status was not refreshed after a minute"
    );
    reports.sent(true);
    // A change goes at once.
    assert!(reports.due(false));
    reports.sent(false);
    assert!(!reports.due(false));
    assert_eq!(
        TRANSCRIPT_EVERY * TRANSCRIPT_REFRESH_READS,
        Duration::from_secs(60)
    );
}
