use super::*;
use crate::broker::limits::LINGERING_SHARE;

pub(in crate::broker) fn conn(id: u64) -> ConnHandle {
    let (outbox, _) = Outbox::new(0);
    let (closer, _) = watch::channel(None);
    ConnHandle {
        conn_id: id,
        encoding: Encoding::Json,
        outbox,
        closer,
    }
}

pub(in crate::broker) fn peer(member: &str, key: u8) -> Peer {
    Peer::new(
        format!("presence-of-{member}"),
        "mesh".into(),
        member.into(),
        Pubkey([key; 32]),
        None,
        PeerKind::Member,
        MemberRole::Member,
        member.into(),
        PeerInfo::default(),
        Vec::new(),
        conn(0),
    )
}

pub(in crate::broker) fn arrive<'a>(member: &'a str) -> Arrival<'a> {
    Arrival {
        mesh_id: "mesh",
        member_id: member,
        session: None,
        label: None,
        session_id: "",
    }
}

/// A member hello of `member` going by the session key `[label; 32]` (a label, not proven).
fn labelling<'a>(member: &'a str, label: u8) -> Arrival<'a> {
    Arrival {
        label: Some(Pubkey([label; 32])),
        ..arrive(member)
    }
}

/// A hello verified before the revocation reaches `register` after it: refused, while
/// others still register; an uncommitted revocation, undone, lets the member back.
#[test]
fn a_hello_verified_before_a_revocation_cannot_register_after_it() {
    let presence = Presence::default();
    assert!(
        presence
            .register(arrive("alice"), conn(1), 10, || peer("alice", 1))
            .is_ok()
    );
    let gone = presence.revoke("mesh", "alice");
    assert_eq!(gone.len(), 1, "alice's presence leaves with the revocation");
    assert!(gone[0].is_revoked());
    assert!(presence.is_revoked("mesh", "alice"));
    assert!(
        presence
            .register(arrive("alice"), conn(2), 10, || peer("alice", 1))
            .err()
            == Some(Unregistered::Revoked),
        "a revoked member's hello must not register"
    );
    assert!(
        presence
            .register(arrive("bob"), conn(3), 10, || peer("bob", 2))
            .is_ok(),
        "others still register"
    );
    presence.unrevoke("mesh", "alice");
    assert!(!presence.is_revoked("mesh", "alice"));
    assert!(
        presence
            .register(arrive("alice"), conn(4), 10, || peer("alice", 1))
            .is_ok()
    );
}

fn labelled(member: &str, key: u8, label: u8, role: Option<&str>) -> Peer {
    Peer::new(
        format!("{member}-{label}"),
        "mesh".into(),
        member.into(),
        Pubkey([key; 32]),
        Some(Pubkey([label; 32])),
        PeerKind::Member,
        MemberRole::Member,
        member.into(),
        PeerInfo {
            peer_role: role.map(String::from),
            ..Default::default()
        },
        Vec::new(),
        conn(0),
    )
}

/// A member hello's session key routes, but is no proven session, and no member may go by
/// a key another member's presence already goes by.
#[test]
fn a_member_hellos_session_key_is_a_label_only_its_member_may_use() {
    let presence = Presence::default();
    let Ok(Registered::New(alice)) = presence.register(labelling("alice", 9), conn(1), 10, || {
        labelled("alice", 1, 9, None)
    }) else {
        panic!("alice registers with her label");
    };
    assert_eq!(alice.pubkey(), Pubkey([9; 32]), "addressed by the label");
    assert_eq!(alice.proven_session(), None, "a label proves nothing");
    assert!(alice.control_plane, "a member hello is a tool's connection");
    assert!(
        alice.hears_events(),
        "the original's connections hear events"
    );
    assert!(alice.state().subscribed, "and get pushes without drain");
    assert_eq!(
        presence
            .register(labelling("bob", 9), conn(2), 10, || labelled(
                "bob", 2, 9, None
            ))
            .err(),
        Some(Unregistered::KeyTaken)
    );
    assert!(
        presence
            .register(labelling("alice", 9), conn(3), 10, || {
                labelled("alice", 1, 9, None)
            })
            .is_ok(),
        "the same member may"
    );
    assert!(
        presence
            .register(labelling("bob", 8), conn(4), 10, || labelled(
                "bob", 2, 8, None
            ))
            .is_ok(),
        "another key is free"
    );
}

/// A label stays its member's after the connection closes; a proven session key takes
/// its key back from another member's label.
#[test]
fn a_label_outlives_its_connection_and_yields_to_a_proven_session() {
    let presence = Presence::default();
    let Ok(Registered::New(alice)) = presence.register(labelling("alice", 9), conn(1), 10, || {
        labelled("alice", 1, 9, None)
    }) else {
        panic!("alice registers");
    };
    assert!(presence.disconnect(&alice, 0));
    assert!(
        presence.peers("mesh").is_empty(),
        "a tool's connection leaves no lease"
    );
    assert_eq!(
        presence
            .register(labelling("bob", 9), conn(2), 10, || labelled(
                "bob", 2, 9, None
            ))
            .err(),
        Some(Unregistered::KeyTaken),
        "alice's label is still hers"
    );

    let Ok(Registered::New(bob)) = presence.register(labelling("bob", 7), conn(3), 10, || {
        labelled("bob", 2, 7, None)
    }) else {
        panic!("bob registers");
    };
    let proven = Arrival {
        session: Some(Pubkey([7; 32])),
        ..arrive("alice")
    };
    assert!(
        presence
            .register(proven, conn(4), 10, || peer("alice", 1))
            .is_ok()
    );
    let closed = bob.state().conn.as_ref().map(|c| c.closer.borrow().clone());
    assert_eq!(
        closed.flatten().map(|o| o.reason),
        Some("bad_session_pubkey".to_string()),
        "bob's label of alice's proven key is closed"
    );
}

#[test]
fn what_a_hello_says_it_is_decides_how_it_is_listed_and_pushed_to() {
    let cli = labelled("alice", 1, 9, Some("control-plane"));
    assert!(cli.control_plane && !cli.hears_events() && !cli.state().subscribed);
    let session = labelled("alice", 1, 9, Some("session"));
    assert!(!session.control_plane && session.hears_events());
    let service = labelled("alice", 1, 9, Some("service"));
    assert!(!service.control_plane);
    let proven = Peer::new(
        "s".into(),
        "mesh".into(),
        "alice".into(),
        Pubkey([1; 32]),
        Some(Pubkey([9; 32])),
        PeerKind::Session,
        MemberRole::Member,
        "alice".into(),
        PeerInfo::default(),
        Vec::new(),
        conn(0),
    );
    assert!(!proven.control_plane, "a session hello is a session");
    assert_eq!(proven.proven_session(), Some(Pubkey([9; 32])));
}

fn session(member: &str, key: u8, session: u8, conn_id: u64) -> Peer {
    Peer::new(
        format!("{member}-session-{session}"),
        "mesh".into(),
        member.into(),
        Pubkey([key; 32]),
        Some(Pubkey([session; 32])),
        PeerKind::Session,
        MemberRole::Member,
        member.into(),
        PeerInfo::default(),
        Vec::new(),
        conn(conn_id),
    )
}

fn proving<'a>(member: &'a str, session: u8) -> Arrival<'a> {
    Arrival {
        session: Some(Pubkey([session; 32])),
        ..arrive(member)
    }
}

/// A session hello of `member` (member key `[key; 32]`) proving the session key
/// `[session_key; 32]` on connection `conn_id`, in a mesh capped at `capacity`: its new presence.
fn proven(
    presence: &Presence,
    member: &str,
    key: u8,
    session_key: u8,
    conn_id: u64,
    capacity: usize,
) -> Arc<Peer> {
    new_presence(presence.register(
        proving(member, session_key),
        conn(conn_id),
        capacity,
        || session(member, key, session_key, conn_id),
    ))
}

fn new_presence(registered: Result<Registered, Unregistered>) -> Arc<Peer> {
    match registered {
        Ok(Registered::New(peer)) => peer,
        Ok(Registered::Reattached { peer, .. }) => {
            panic!(
                "{} was taken over instead of a new presence",
                peer.presence_id
            )
        }
        Err(e) => panic!("refused: {e:?}"),
    }
}

fn listed(presence: &Presence) -> Vec<String> {
    let mut ids: Vec<String> = presence
        .peers("mesh")
        .iter()
        .map(|p| p.presence_id.clone())
        .collect();
    ids.sort();
    ids
}

fn close_reason(peer: &Peer) -> Option<String> {
    let st = peer.state();
    let order = st.conn.as_ref()?.closer.borrow().clone();
    order.map(|o| o.reason)
}

/// A session hello takes over the presence of its own session key (a reconnect, or the same
/// session opened again) and no other: another session of the same member, or another
/// member's, is a presence of its own. The socket it displaced closing later changes nothing.
#[test]
fn a_session_hello_takes_over_only_the_presence_of_its_own_key() {
    let presence = Presence::default();
    let first = proven(&presence, "alice", 1, 7, 1, 10);
    proven(&presence, "alice", 1, 8, 2, 10);
    proven(&presence, "bob", 2, 6, 3, 10);
    let Ok(Registered::Reattached { peer, replaced }) =
        presence.register(proving("alice", 7), conn(5), 10, || {
            session("alice", 1, 7, 5)
        })
    else {
        panic!("the same session key must take its presence over");
    };
    assert_eq!(peer.presence_id, first.presence_id);
    assert_eq!(
        replaced.map(|c| c.conn_id),
        Some(1),
        "the old socket is handed back"
    );
    assert_eq!(peer.conn_id(), Some(5));
    assert_eq!(listed(&presence).len(), 3, "one presence per session key");
    assert!(
        !presence.disconnect(&peer, 1),
        "the displaced socket closing is no disconnect"
    );
    assert!(peer.is_live(), "the session stays online on its new socket");
    assert!(presence.disconnect(&peer, 5));
    assert!(!peer.is_live());
}

fn member_session(member: &str, session_id: &str, conn_id: u64) -> Peer {
    Peer::new(
        format!("{member}-{conn_id}"),
        "mesh".into(),
        member.into(),
        Pubkey([conn_id as u8; 32]),
        None,
        PeerKind::Member,
        MemberRole::Member,
        member.into(),
        PeerInfo {
            peer_role: Some("session".into()),
            session_id: session_id.into(),
            ..Default::default()
        },
        Vec::new(),
        conn(conn_id),
    )
}

/// The original's session (a member hello calling itself a session) reconnecting with its
/// `sessionId` inside the lease gets its presence back, with what is queued for it. Nobody
/// else gets it: not another member using the same `sessionId`, not another `sessionId` of
/// the same member, and not a second connection while the first is still live.
#[test]
fn a_member_hello_gets_back_only_its_own_session_in_its_lease() {
    let presence = Presence::default();
    let with_id = |member, session_id| Arrival {
        session_id,
        ..arrive(member)
    };
    let alice = new_presence(presence.register(with_id("alice", "s1"), conn(1), 10, || {
        member_session("alice", "s1", 1)
    }));
    assert!(presence.disconnect(&alice, 1));
    assert_eq!(
        listed(&presence),
        ["alice-1"],
        "alice's session is in its lease"
    );

    new_presence(presence.register(with_id("bob", "s1"), conn(2), 10, || {
        member_session("bob", "s1", 2)
    }));
    new_presence(presence.register(with_id("alice", "s2"), conn(3), 10, || {
        member_session("alice", "s2", 3)
    }));
    assert!(
        !alice.is_live(),
        "alice's session was not taken by another hello"
    );

    let Ok(Registered::Reattached { peer, replaced }) =
        presence.register(with_id("alice", "s1"), conn(4), 10, || {
            member_session("alice", "s1", 4)
        })
    else {
        panic!("alice's reconnect inside the lease must get her presence back");
    };
    assert_eq!(peer.presence_id, "alice-1");
    assert!(replaced.is_none(), "no socket was live");
    assert_eq!(alice.conn_id(), Some(4));
    assert_eq!(alice.state().offline_since_ms, None, "its lease is over");

    new_presence(presence.register(with_id("alice", "s1"), conn(5), 10, || {
        member_session("alice", "s1", 5)
    }));
    assert_eq!(alice.conn_id(), Some(4), "a live session is not taken over");
}

/// A proven session key closes another member's connection that went by it as a label; every
/// other connection, the proving member's own included, is left alone.
#[test]
fn a_proven_session_closes_only_another_members_use_of_its_key() {
    let presence = Presence::default();
    let bob = new_presence(presence.register(labelling("bob", 7), conn(1), 10, || {
        labelled("bob", 2, 7, None)
    }));
    let carol = new_presence(presence.register(labelling("carol", 5), conn(2), 10, || {
        labelled("carol", 3, 5, None)
    }));
    let alices_tool = new_presence(presence.register(labelling("alice", 6), conn(3), 10, || {
        labelled("alice", 1, 6, None)
    }));
    proven(&presence, "alice", 1, 7, 4, 10);
    assert_eq!(close_reason(&bob).as_deref(), Some("bad_session_pubkey"));
    assert_eq!(close_reason(&carol), None, "carol's own label is hers");
    proven(&presence, "alice", 1, 6, 5, 10);
    assert_eq!(
        close_reason(&alices_tool),
        None,
        "alice's own tool connection may go by her session's key"
    );
}

/// Closed sessions linger at most a quarter of the mesh's connection cap, so hello-and-close
/// cycles cannot fill it: beyond that the longest closed go at once (announced by the next
/// sweep, once), the others keep their lease.
#[test]
fn closed_sessions_linger_at_most_a_quarter_of_the_cap_the_longest_closed_going_first() {
    for capacity in [4usize, 8] {
        let presence = Presence::default();
        let lingering = capacity / LINGERING_SHARE;
        let sessions: Vec<Arc<Peer>> = (0..lingering + 3)
            .map(|i| {
                let (key, id) = (10 + i as u8, 100 + i as u64);
                proven(&presence, "alice", 1, key, id, capacity)
            })
            .collect();
        for (i, s) in sessions.iter().enumerate() {
            assert!(presence.disconnect(s, 100 + i as u64));
        }
        let ids: Vec<String> = sessions.iter().map(|s| s.presence_id.clone()).collect();
        assert_eq!(
            listed(&presence),
            ids[3..],
            "with a cap of {capacity}, the {lingering} last closed keep their lease"
        );
        let now = time::now_ms();
        let mut gone: Vec<String> = presence
            .expire_leases(now)
            .iter()
            .map(|p| p.presence_id.clone())
            .collect();
        gone.sort();
        assert_eq!(gone, ids[..3], "the evicted are announced as gone");
        assert!(presence.expire_leases(now).is_empty(), "and only once");
    }
}

/// A closed session keeps its presence for its whole lease and not a millisecond longer;
/// the sweep leaves everyone else where they are.
#[test]
fn a_closed_session_keeps_its_presence_for_exactly_its_lease() {
    let presence = Presence::default();
    let alice = proven(&presence, "alice", 1, 7, 1, 10);
    proven(&presence, "bob", 2, 8, 2, 10);
    assert!(presence.disconnect(&alice, 1));
    let since = alice
        .state()
        .offline_since_ms
        .expect("alice is in her lease");
    assert!(presence.expire_leases(since + LEASE_MS - 1).is_empty());
    assert_eq!(listed(&presence), ["alice-session-7", "bob-session-8"]);
    let gone = presence.expire_leases(since + LEASE_MS);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].presence_id, "alice-session-7");
    assert_eq!(listed(&presence), ["bob-session-8"]);
}

/// Who a recipient key reaches, as a send finds it: each presence of the member, or the one of
/// the session key, in its lease too; never one that has left, whichever way it left.
#[test]
fn a_recipient_key_reaches_the_presences_it_names_until_they_leave() {
    let presence = Presence::default();
    let member = |m: &str| RecipientKey::Member {
        mesh_id: "mesh".into(),
        member_id: m.into(),
    };
    let session_key = |k: u8| RecipientKey::Session {
        mesh_id: "mesh".into(),
        session: Pubkey([k; 32]),
    };
    let reached = |keys: &[RecipientKey]| {
        let (peers, observed) = presence.covering("mesh", keys);
        let ids: Vec<String> = peers.iter().map(|p| p.presence_id.clone()).collect();
        (ids, observed)
    };
    let a7 = proven(&presence, "alice", 1, 7, 1, 10);
    proven(&presence, "alice", 1, 8, 2, 10);
    proven(&presence, "bob", 2, 9, 3, 10);
    let (mut all_alice, observed) = reached(&[member("alice")]);
    all_alice.sort();
    assert_eq!(all_alice, ["alice-session-7", "alice-session-8"]);
    assert!(!observed);
    assert_eq!(reached(&[session_key(9)]).0, ["bob-session-9"]);
    // A presence two keys reach is there once per key; a key nobody has reaches nobody.
    assert_eq!(
        reached(&[
            session_key(7),
            session_key(5),
            member("bob"),
            session_key(7)
        ])
        .0,
        ["alice-session-7", "bob-session-9", "alice-session-7"]
    );
    assert!(
        presence
            .covering("other mesh", &[member("alice")])
            .0
            .is_empty()
    );
    // Whose a session key is, as a direct send to it asks.
    let owner = |mesh: &str, k: u8| presence.session_member(mesh, &Pubkey([k; 32]));
    assert_eq!(owner("mesh", 8).as_deref(), Some("alice"));
    assert_eq!(owner("mesh", 9).as_deref(), Some("bob"));
    assert_eq!(owner("mesh", 5), None);
    assert_eq!(owner("other mesh", 9), None);

    // In its lease a presence is still reached (its queue waits for it); then it is gone.
    assert!(presence.disconnect(&a7, 1));
    assert_eq!(reached(&[session_key(7)]).0, ["alice-session-7"]);
    let since = a7.state().offline_since_ms.expect("in her lease");
    assert_eq!(presence.expire_leases(since + LEASE_MS).len(), 1);
    assert!(reached(&[session_key(7)]).0.is_empty());
    assert_eq!(reached(&[member("alice")]).0, ["alice-session-8"]);

    // Revoked, kicked: gone from every key at once.
    presence.revoke("mesh", "alice");
    assert!(reached(&[member("alice"), session_key(8)]).0.is_empty());
    let kick = ServerMessage::Error(crate::protocol::messages::ErrorFrame {
        code: "kicked".into(),
        message: "kicked".into(),
        id: None,
    });
    presence.close_where("mesh", |p| p.member_id == "bob", &kick, "kicked");
    assert!(reached(&[member("bob"), session_key(9)]).0.is_empty());

    // An observer is counted while it is there (dave stays, so the mesh does too).
    proven(&presence, "dave", 4, 4, 5, 10);
    let watching = labelled("carol", 3, 30, Some("observer"));
    let page = new_presence(presence.register(arrive("carol"), conn(4), 10, || watching));
    assert!(reached(&[member("dave")]).1, "the mesh has an observer");
    assert!(presence.disconnect(&page, 0), "an observer leaves at once");
    assert_eq!(
        reached(&[member("dave")]),
        (vec!["dave-session-4".to_string()], false)
    );
}

/// A mesh takes presences up to its cap (those in their lease count), and is forgotten once
/// its last presence has gone.
#[test]
fn a_mesh_holds_up_to_its_cap_and_goes_with_its_last_presence() {
    let presence = Presence::default();
    let first = proven(&presence, "alice", 1, 1, 1, 2);
    proven(&presence, "bob", 2, 2, 2, 2);
    assert!(presence.disconnect(&first, 1), "alice goes into her lease");
    assert!(
        presence
            .register(proving("carol", 3), conn(3), 2, || session(
                "carol", 3, 3, 3
            ))
            .err()
            == Some(Unregistered::Full),
        "two presences fill a cap of two, one of them in its lease"
    );
    presence.revoke("mesh", "bob");
    proven(&presence, "carol", 3, 3, 3, 2);
    let since = first.state().offline_since_ms.expect("in her lease");
    presence.expire_leases(since + LEASE_MS);
    assert_eq!(presence.lock().len(), 1);
    presence.revoke("mesh", "carol");
    assert!(
        presence.lock().is_empty(),
        "no room is kept for an empty mesh"
    );
}

/// A hidden session is listed to nobody but itself and does not make its member online; nor
/// does a CLI's connection (not even to itself) or a session in its lease.
#[test]
fn hidden_sessions_and_tool_connections_are_not_shown_to_others() {
    let presence = Presence::default();
    let alice = proven(&presence, "alice", 1, 7, 1, 10);
    let bob = proven(&presence, "bob", 2, 8, 2, 10);
    let carol = proven(&presence, "carol", 3, 9, 3, 10);
    let cli = new_presence(presence.register(arrive("dave"), conn(4), 10, || peer("dave", 4)));
    bob.state().visible = false;
    assert!(presence.disconnect(&carol, 3));
    assert_eq!(
        presence.count("mesh"),
        3,
        "alice, bob and the CLI are connected"
    );
    assert_eq!(presence.total(), 3);

    assert!(alice.shown_to(&bob));
    assert!(
        !bob.shown_to(&alice),
        "a hidden session is not listed to others"
    );
    assert!(bob.shown_to(&bob), "but still to itself");
    assert!(!cli.shown_to(&alice), "a CLI's connection is no session");
    assert!(cli.shown_to(&cli));

    let online = |viewer: &Peer| {
        let mut m: Vec<String> = presence
            .online_members("mesh", viewer)
            .into_iter()
            .collect();
        m.sort();
        m
    };
    assert_eq!(
        online(&alice),
        ["alice"],
        "bob hidden, carol closed, dave a CLI"
    );
    assert_eq!(online(&bob), ["alice", "bob"]);
    assert_eq!(
        online(&cli),
        ["alice"],
        "a CLI does not make its member online"
    );
}

/// `@ops` reaches `ops` and `ops/…`, and no group that merely has a `/` where `ops` would end.
#[test]
fn a_group_reaches_itself_and_its_subgroups_and_no_other_group() {
    let groups = |name: &str| {
        vec![GroupRef {
            name: name.into(),
            role: None,
        }]
    };
    assert!(in_group(&groups("ops"), "ops"));
    assert!(in_group(&groups("ops/oncall"), "ops"));
    assert!(!in_group(&groups("api/v1"), "ops"), "api/v1 is not in ops");
    assert!(!in_group(&groups("opsx"), "ops"));
    assert!(!in_group(&groups("op"), "ops"));
    let oncall = Peer::new(
        "p".into(),
        "mesh".into(),
        "alice".into(),
        Pubkey([1; 32]),
        None,
        PeerKind::Member,
        MemberRole::Member,
        "alice".into(),
        PeerInfo::default(),
        groups("ops/oncall"),
        conn(0),
    );
    assert!(oncall.in_group("ops"));
    assert!(!oncall.in_group("api"));
}

/// The labels remembered for closed connections are bounded: at the bound, making room for a
/// new one forgets the longest unused eighth; using a remembered label again forgets nothing
/// and keeps it among the recently used.
#[test]
fn remembered_labels_are_bounded_and_the_longest_unused_go_first() {
    let key = |i: usize| {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Pubkey(k)
    };
    let known = |labels: &HashMap<(String, Pubkey), Label>, i| {
        labels.contains_key(&("mesh".to_string(), key(i)))
    };
    let mut labels = HashMap::default();
    for i in 0..MAX_LABELS {
        remember_label(&mut labels, "mesh", key(i), "alice");
    }
    assert_eq!(labels.len(), MAX_LABELS);
    remember_label(&mut labels, "mesh", key(0), "alice");
    assert_eq!(
        labels.len(),
        MAX_LABELS,
        "using a label again forgets nothing"
    );
    remember_label(&mut labels, "mesh", key(MAX_LABELS), "bob");
    assert_eq!(labels.len(), MAX_LABELS - MAX_LABELS / 8);
    assert!(known(&labels, MAX_LABELS), "the new label is remembered");
    assert!(known(&labels, 0), "a label used again is kept");
    assert!(!known(&labels, 1), "the longest unused is forgotten");
    assert!(known(&labels, MAX_LABELS - 1), "the recently used are kept");
}
