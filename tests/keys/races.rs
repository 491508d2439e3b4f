//! A rotation that races another change: the client seals the new key to the members the broker
//! listed, and the broker refuses the rotation when, meanwhile, a member was removed
//! (`membership_changed`) or another rotation landed (`stale_key_epoch`). The client then lists
//! the holders again and starts over, three attempts in all; and it takes a `key_rotated` answer
//! only for the epoch it asked for.
//!
//! The race is placed by a WebSocket relay in this test process, between one client and the real
//! broker: it forwards every frame both ways and, when the client's `rotate_key` passes, first
//! runs the competing change through the CLI (which goes to the broker directly).

use super::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What runs before the relay forwards the `n`th `rotate_key` (from 1), on the relay's task
/// (through `block_in_place`: the tests run on the multi-threaded runtime).
type Before = Arc<dyn Fn(usize) + Send + Sync>;

/// A relay in front of the broker's WebSocket; `rotations` counts the `rotate_key` requests
/// that went through it.
struct Relay {
    url: String,
    rotations: Arc<AtomicUsize>,
}

impl Relay {
    /// Starts the relay in front of `broker`; `before` runs ahead of each `rotate_key`, and
    /// `answer` may change each JSON frame the broker sends back.
    async fn start(broker: &BrokerProc, before: Before, answer: fn(&mut Value)) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let url = format!("ws://{}/ws", listener.local_addr().unwrap());
        let rotations = Arc::new(AtomicUsize::new(0));
        let (upstream, counted) = (broker.ws_url(), rotations.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let client = tokio_tungstenite::accept_async(stream)
                    .await
                    .expect("the client's WebSocket handshake");
                let (broker, _) = tokio_tungstenite::connect_async(upstream.as_str())
                    .await
                    .expect("the relay reaches the broker");
                let (mut to_client, mut from_client) = client.split();
                let (mut to_broker, mut from_broker) = broker.split();
                let (before, counted) = (before.clone(), counted.clone());
                tokio::spawn(async move {
                    while let Some(Ok(frame)) = from_client.next().await {
                        if let Message::Text(text) = &frame
                            && serde_json::from_str::<Value>(text)
                                .is_ok_and(|v| v["type"] == "rotate_key")
                        {
                            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                            tokio::task::block_in_place(|| before(n));
                        }
                        let close = frame.is_close();
                        if (frame.is_text() || frame.is_binary() || close)
                            && to_broker.send(frame).await.is_err()
                            || close
                        {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some(Ok(frame)) = from_broker.next().await {
                        let frame = match frame {
                            Message::Text(text) => match serde_json::from_str::<Value>(&text) {
                                Ok(mut v) => {
                                    answer(&mut v);
                                    Message::text(v.to_string())
                                }
                                Err(_) => Message::Text(text),
                            },
                            other => other,
                        };
                        let close = frame.is_close();
                        if (frame.is_text() || frame.is_binary() || close)
                            && to_client.send(frame).await.is_err()
                            || close
                        {
                            break;
                        }
                    }
                });
            }
        });
        Relay { url, rotations }
    }

    /// `person`'s library client, connected through the relay.
    async fn client_of(&self, person: &Person) -> MeshClient {
        let mut entry = person.entry();
        entry.broker_url = self.url.clone();
        MeshClient::connect(claudemesh::client::ConnectOptions::new(
            entry,
            peer_info(&person.name),
        ))
        .await
        .unwrap_or_else(|e| panic!("{} cannot connect through the relay: {e}", person.name))
    }

    fn rotations(&self) -> usize {
        self.rotations.load(Ordering::SeqCst)
    }
}

fn unchanged(_: &mut Value) {}

/// A hook that has alice's CLI (straight to the broker) run `args` before each of the first
/// `attempts` rotations that pass the relay.
fn alice_runs_before(
    alice: &Arc<Person>,
    attempts: usize,
    args: &'static [&'static str],
) -> Before {
    let alice = alice.clone();
    Arc::new(move |n| {
        if n <= attempts {
            let out = alice.run(args);
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        }
    })
}

/// carol is revoked (without a rotation of its own) while alice's client seals its new key to
/// alice, bob and carol: the broker refuses that rotation, and the client lists the holders
/// again and rotates to the two who remain. bob reads what alice sends under the new key.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_refused_as_membership_changed_is_sealed_again_for_the_members_now() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, _carol) = team(&broker);
    let alice = Arc::new(alice);
    let before = alice_runs_before(&alice, 1, &["revoke", "carol", "--no-rotate"]);
    let relay = Relay::start(&broker, before, unchanged).await;
    let client = relay.client_of(&alice).await;

    let rotated = client
        .rotate_root_key()
        .await
        .expect("the rotation goes through on its second attempt");
    assert_eq!(
        relay.rotations(),
        2,
        "one refused attempt, then one that landed"
    );
    assert_eq!(
        (rotated.epoch, rotated.members),
        (1, 2),
        "alice and bob got it"
    );
    client.close().await;

    send(&alice, "*", "under the key of the second attempt");
    let got = inbox(&bob);
    assert!(
        got.iter()
            .any(|(from, t)| from == "alice" && t == "under the key of the second attempt"),
        "bob reads alice's broadcast under the new key: {got:?}"
    );
}

/// Another rotation lands each time alice's client is about to rotate (its first three
/// attempts): after three attempts, each refused as `stale_key_epoch`, the client gives up and
/// says why. (A fourth attempt would go through, so a client that kept trying would succeed.)
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_overtaken_three_times_gives_up_with_the_brokers_reason() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, _carol) = team(&broker);
    let alice = Arc::new(alice);
    let before = alice_runs_before(&alice, 3, &["rotate-key"]);
    let relay = Relay::start(&broker, before, unchanged).await;
    let client = relay.client_of(&alice).await;

    let refused = client
        .rotate_root_key()
        .await
        .expect_err("the client gives up after three overtaken attempts");
    assert_eq!(refused.code(), Some("stale_key_epoch"), "{refused}");
    assert_eq!(relay.rotations(), 3, "three attempts");
    client.close().await;
}

/// A `key_rotated` answer naming another epoch than the one asked for is not this rotation: the
/// client says so and does not report the rotation done.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotated_answer_for_another_epoch_is_an_error() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, _carol) = team(&broker);
    fn later_epoch(v: &mut Value) {
        if v["type"] == "key_rotated"
            && let Some(epoch) = v["epoch"].as_u64()
        {
            v["epoch"] = (epoch + 1).into();
        }
    }
    let relay = Relay::start(&broker, Arc::new(|_| {}), later_epoch).await;
    let client = relay.client_of(&alice).await;

    let refused = client
        .rotate_root_key()
        .await
        .expect_err("an answer for epoch 2 does not confirm a rotation to epoch 1");
    assert!(
        refused
            .to_string()
            .contains("key epoch 2 when this one was to epoch 1"),
        "the error names what came back: {refused}"
    );
    assert_eq!(relay.rotations(), 1);
    client.close().await;
}
