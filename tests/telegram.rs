//! The Telegram bridge (issue 17 item 3): the real broker long-polls a Bot API server the test
//! runs on loopback (answering `getMe`, `getUpdates` and `sendMessage` with the documented
//! shapes, and recording every request). A `/join` makes `tg:alice` a peer, her text reaches a
//! member's inbox, a reply to `tg:alice` is posted to her chat, the offset survives a restart,
//! disconnect stops polling, and the token never reaches the broker's disk or log.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use claudemesh::client::MeshClient;
use claudemesh::crypto;
use claudemesh::protocol::messages::{
    RotateKey, RotationProof, SealedFor, TelegramConnect, TelegramRootKey,
};
use claudemesh::protocol::{ClientMessage, Pubkey, ServerMessage};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::Notify;

use common::secrets::assert_broker_never_saw;
use common::sees::next_message;
use common::*;

const TOKEN: &str = "7350012345:AAHc9wQ2-secret_Bot-token-4f1e8d2b";
const ALICE_TG: i64 = 4242;
const ALICE_CHAT: i64 = 777_001;
const STRANGER_CHAT: i64 = 777_002;

/// A Bot API server: the updates it holds (answered from a `getUpdates` offset on, as
/// Telegram does), and every request it got as (method, JSON body).
#[derive(Clone, Default)]
struct BotApi {
    updates: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    arrived: Arc<Notify>,
}

impl BotApi {
    /// Queues a text message from a Telegram user; its `update_id`.
    fn says(&self, user_id: i64, username: &str, chat_id: i64, text: &str) -> i64 {
        let mut updates = self.updates.lock().unwrap();
        let update_id = 90_000 + updates.len() as i64;
        updates.push(json!({
            "update_id": update_id,
            "message": {
                "message_id": update_id - 89_000,
                "from": {"id": user_id, "is_bot": false, "first_name": username, "username": username},
                "chat": {"id": chat_id, "type": "private", "username": username},
                "date": 1_767_225_600,
                "text": text,
            }
        }));
        drop(updates);
        self.arrived.notify_waiters();
        update_id
    }

    fn requests(&self, method: &str) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Waits for a `sendMessage` to `chat_id` whose text contains `part`.
    async fn sent(&self, chat_id: i64, part: &str) -> String {
        let mut text = String::new();
        eventually(
            &format!("a sendMessage to {chat_id} with \"{part}\""),
            || {
                let found = self.requests("sendMessage").into_iter().find(|b| {
                    b["chat_id"] == chat_id && b["text"].as_str().is_some_and(|t| t.contains(part))
                });
                if let Some(b) = &found {
                    text = b["text"].as_str().unwrap().to_string();
                }
                std::future::ready(found.is_some())
            },
        )
        .await;
        text
    }

    async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        addr
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let Some((token, method)) = path
            .strip_prefix("/bot")
            .and_then(|rest| rest.split_once('/'))
        else {
            return reply(
                404,
                json!({"ok": false, "error_code": 404, "description": "Not Found"}),
            );
        };
        self.requests
            .lock()
            .unwrap()
            .push((method.to_string(), body.clone()));
        if token != TOKEN {
            return reply(
                401,
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
            );
        }
        match method {
            "getMe" => reply(
                200,
                json!({"ok": true, "result": {"id": 7_350_012_345_i64, "is_bot": true,
                    "first_name": "Mesh", "username": "mesh_test_bot"}}),
            ),
            "getUpdates" => {
                let offset = body["offset"].as_i64().unwrap_or(0);
                let pending = || -> Vec<Value> {
                    self.updates
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
                        .cloned()
                        .collect()
                };
                // Long poll: held until an update arrives or about a second passes.
                let notified = self.arrived.notified();
                let mut found = pending();
                if found.is_empty() {
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                    found = pending();
                }
                reply(200, json!({"ok": true, "result": found}))
            }
            "sendMessage" => reply(
                200,
                json!({"ok": true, "result": {"message_id": 1, "date": 1_767_225_601,
                    "chat": {"id": body["chat_id"], "type": "private"}, "text": body["text"]}}),
            ),
            _ => reply(
                404,
                json!({"ok": false, "error_code": 404, "description": "Not Found"}),
            ),
        }
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    resp
}

fn peer_names(person: &Person) -> Vec<String> {
    person.json(&["peers", "--json"])["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["displayName"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_user_joins_talks_to_the_mesh_and_gets_replies_until_disconnect() {
    let api = BotApi::default();
    let addr = api.serve().await;
    let api_url = format!("http://{addr}");
    let mut broker = BrokerProc::start(&["--telegram-api-url", &api_url]);
    let (alice, bob) = alice_and_bob(&broker);
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("bot-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let token_path = token_file.to_str().unwrap();

    // Not on a terminal and no --yes: the consequence is said and nothing happens.
    let asked = alice.run(&["telegram", "connect", "--token-file", token_path]);
    assert_ne!(asked.code, 0);
    assert!(asked.stderr.contains("--yes"), "{}", asked.stderr);
    assert!(asked.stderr.contains("root key"), "{}", asked.stderr);
    assert!(api.requests("getMe").is_empty());
    // Only the owner or an admin connects a bridge.
    let refused = bob.refused(&["telegram", "connect", "--token-file", token_path, "--yes"]);
    assert!(refused.contains("owner or an admin"), "{refused}");

    let status = alice.json(&[
        "telegram",
        "connect",
        "--token-file",
        token_path,
        "--yes",
        "--to",
        "bob",
        "--json",
    ]);
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["botUsername"], "mesh_test_bot");
    assert!(!api.requests("getMe").is_empty());

    // alice joins from her phone with a code minted by the owner.
    let code = alice.json(&["telegram", "invite", "--json"])["code"]
        .as_str()
        .unwrap()
        .to_string();
    api.says(ALICE_TG, "alice", ALICE_CHAT, &format!("/join {code}"));
    api.sent(ALICE_CHAT, "You joined the mesh as tg:alice")
        .await;
    eventually("tg:alice among bob's peers", || {
        std::future::ready(peer_names(&bob).contains(&"tg:alice".to_string()))
    })
    .await;

    // Her text reaches bob, from tg:alice, subtype telegram.
    let bob_live = bob.client().await;
    api.says(ALICE_TG, "alice", ALICE_CHAT, "the deploy page is green");
    let push = next_message(&bob_live, Duration::from_secs(30))
        .await
        .expect("alice's Telegram message reaches bob");
    assert_eq!(push.subtype.as_deref(), Some("telegram"), "{push:?}");
    assert_eq!(push.sender_name.as_deref(), Some("tg:alice"));
    assert_eq!(bob_live.decrypt(&push).unwrap(), "the deploy page is green");
    bob_live.ack(&push.message_id).unwrap();

    // bob's reply, sealed to tg:alice's key, is posted to her chat.
    bob.ok(&["send", "tg:alice", "thanks, rolling out now"]);
    let posted = api.sent(ALICE_CHAT, "thanks, rolling out now").await;
    assert_eq!(posted, "bob: thanks, rolling out now");

    // Someone who never joined gets a hint; nothing reaches the mesh.
    api.says(5555, "mallory", STRANGER_CHAT, "let me in");
    api.sent(STRANGER_CHAT, "/join").await;
    assert!(
        next_message(&bob_live, Duration::from_millis(500))
            .await
            .is_none(),
        "a stranger's message reached the mesh"
    );
    // A stranger who keeps writing is answered a few times (3 in all), not once per message.
    let mut last = 0;
    for n in 0..6 {
        last = api.says(5555, "mallory", STRANGER_CHAT, &format!("let me in, {n}"));
    }
    eventually("the stranger's messages handled", || {
        let polls = api.requests("getUpdates");
        std::future::ready(
            polls
                .last()
                .is_some_and(|p| p["offset"].as_i64() > Some(last)),
        )
    })
    .await;
    let hints = api
        .requests("sendMessage")
        .iter()
        .filter(|b| b["chat_id"] == STRANGER_CHAT)
        .count();
    assert_eq!(hints, 3, "answers to a stranger who wrote 7 times");
    drop(bob_live);

    let status = alice.json(&["telegram", "status", "--json"]);
    assert_eq!(status["connected"], true);
    assert!(status["lastPollAt"].is_string(), "{status}");
    assert_eq!(status["users"][0]["name"], "tg:alice", "{status}");

    // After a restart the bridge polls again from the kept offset: nothing is handled twice.
    let last_update = api.says(ALICE_TG, "alice", ALICE_CHAT, "one more thing");
    let bob_live = bob.client().await;
    let push = next_message(&bob_live, Duration::from_secs(30))
        .await
        .expect("the last message reaches bob");
    assert_eq!(bob_live.decrypt(&push).unwrap(), "one more thing");
    bob_live.ack(&push.message_id).unwrap();
    drop(bob_live);
    eventually("the offset past the last update to be kept", || {
        let polls = api.requests("getUpdates");
        std::future::ready(
            polls
                .last()
                .is_some_and(|p| p["offset"].as_i64() == Some(last_update + 1)),
        )
    })
    .await;
    broker.restart();
    let before = api.requests("getUpdates").len();
    eventually("a poll after the restart", || {
        std::future::ready(api.requests("getUpdates").len() > before)
    })
    .await;
    assert_eq!(
        api.requests("getUpdates")[before]["offset"].as_i64(),
        Some(last_update + 1),
        "the first poll after a restart starts past what was handled"
    );
    eventually("tg:alice back among the peers", || {
        std::future::ready(peer_names(&bob).contains(&"tg:alice".to_string()))
    })
    .await;
    bob.ok(&["send", "tg:alice", "still here after the restart"]);
    api.sent(ALICE_CHAT, "still here after the restart").await;

    // Disconnect: polling stops at once, tg:alice leaves the peer list.
    let status = alice.json(&["telegram", "disconnect", "--json"]);
    assert_eq!(status["connected"], false, "{status}");
    let polls = api.requests("getUpdates").len();
    assert!(!peer_names(&bob).contains(&"tg:alice".to_string()));
    // The fake server holds a poll for a second: three seconds with no request is polling
    // stopped (there is no event for "no request").
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        api.requests("getUpdates").len(),
        polls,
        "getUpdates after disconnect"
    );
    let refused = alice.refused(&["telegram", "invite"]);
    assert!(refused.contains("no Telegram bridge"), "{refused}");

    broker.sigterm();
    broker.wait_exit();
    assert_broker_never_saw(&broker, TOKEN.as_bytes());
}

/// A broker bridged to a Bot API server the test runs, with alice (owner) and bob, and the bot
/// token in a file.
struct Bridged {
    api: BotApi,
    broker: BrokerProc,
    alice: Person,
    bob: Person,
    _token_dir: tempfile::TempDir,
    token_path: String,
}

impl Bridged {
    async fn start() -> Bridged {
        let api = BotApi::default();
        let addr = api.serve().await;
        let broker = BrokerProc::start(&["--telegram-api-url", &format!("http://{addr}")]);
        let (alice, bob) = alice_and_bob(&broker);
        let token_dir = tempfile::tempdir().unwrap();
        let token_file = token_dir.path().join("bot-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let token_path = token_file.to_str().unwrap().to_string();
        Bridged {
            api,
            broker,
            alice,
            bob,
            _token_dir: token_dir,
            token_path,
        }
    }

    /// `telegram connect --yes` by alice: the bridge's status.
    fn connect(&self) -> Value {
        self.alice.json(&[
            "telegram",
            "connect",
            "--token-file",
            &self.token_path,
            "--yes",
            "--to",
            "bob",
            "--json",
        ])
    }

    /// The Telegram user alice joins with a code alice minted.
    async fn join_tg_alice(&self) {
        self.join_tg(&self.alice, ALICE_TG, "alice", ALICE_CHAT)
            .await;
    }

    /// The Telegram user `username` joins with a code `inviter` minted, and is among bob's
    /// peers.
    async fn join_tg(&self, inviter: &Person, user_id: i64, username: &str, chat_id: i64) {
        let code = inviter.json(&["telegram", "invite", "--json"])["code"]
            .as_str()
            .unwrap()
            .to_string();
        self.api
            .says(user_id, username, chat_id, &format!("/join {code}"));
        let peer = format!("tg:{username}");
        self.api
            .sent(chat_id, &format!("You joined the mesh as {peer}"))
            .await;
        eventually(&format!("{peer} among bob's peers"), || {
            std::future::ready(peer_names(&self.bob).contains(&peer))
        })
        .await;
    }

    /// Whether any `sendMessage` to tg:alice's chat held `part`.
    fn posted(&self, part: &str) -> bool {
        self.api.requests("sendMessage").iter().any(|b| {
            b["chat_id"] == ALICE_CHAT && b["text"].as_str().is_some_and(|t| t.contains(part))
        })
    }
}

/// `telegram_connect` as a client sends it, with `keys` (epoch, key) sealed to the broker's
/// service key.
async fn connect_with_keys(client: &MeshClient, keys: &[(u64, [u8; 32])]) -> Result<Value, String> {
    let service = client.vault_service_key().await.unwrap();
    let root_keys = keys
        .iter()
        .map(|(epoch, key)| TelegramRootKey {
            epoch: *epoch,
            sealed: base64::engine::general_purpose::STANDARD
                .encode(claudemesh::crypto::seal(key, &service).unwrap()),
            check: claudemesh::identity::root_key_check(key),
        })
        .collect();
    client
        .telegram_connect(TelegramConnect {
            token: TOKEN.to_string(),
            target: None,
            root_keys,
        })
        .await
        .map(|s| json!(s))
        .map_err(|e| format!("{:?}: {e}", e.code()))
}

/// Rotates to `epoch` as the owner, sealing `key` to every holder but tg:alice, who gets
/// `forged`; the rotation's check value is `key`'s.
async fn forge_rotation(
    owner: &Person,
    client: &MeshClient,
    epoch: u64,
    key: &[u8; 32],
    forged: &[u8; 32],
) {
    let holders = match client.request(ClientMessage::ListKeyHolders {}).await {
        Ok(ServerMessage::KeyHolders { members, .. }) => members,
        other => panic!("{other:?}"),
    };
    let keys = holders
        .iter()
        .map(|h| {
            let pk = Pubkey::parse(&h.pubkey).unwrap();
            let x = crypto::ed25519_pk_to_x25519(&pk.0).unwrap();
            let sealed_key = if h.display_name == "tg:alice" {
                forged
            } else {
                key
            };
            SealedFor {
                member_id: h.member_id.clone(),
                sealed: base64::engine::general_purpose::STANDARD
                    .encode(crypto::seal(sealed_key, &x).unwrap()),
            }
        })
        .collect();
    let entry = owner.entry();
    let signer = entry.owner_keys().unwrap().unwrap();
    let check = claudemesh::identity::root_key_check(key);
    let proof = RotationProof::sign(&signer, &entry.mesh_id, epoch, &check, unique_now_ms());
    let answer = client
        .request(ClientMessage::RotateKey(RotateKey::signed(
            epoch, keys, proof,
        )))
        .await;
    assert!(
        matches!(answer, Ok(ServerMessage::KeyRotated(_))),
        "{answer:?}"
    );
}

/// The root-key handover (issue 17 item 3): `telegram connect` says that the broker will read
/// group and broadcast messages and hands over the root key, checked against the mesh's check
/// value (a wrong key stores nothing); a broadcast then reaches the Telegram user, also after
/// a rotation (the bridge takes the new key from the user's sealed copy, and not one that does
/// not match the rotation's check value); `disconnect` deletes
/// the keys, the next rotation leaves the Telegram user out, and a bridge connected without
/// keys (an older client) forwards direct messages only. No root key reaches the broker's disk
/// or log in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_reach_telegram_once_the_root_key_is_handed_over_and_until_disconnect() {
    let mut b = Bridged::start().await;
    let key0 = b
        .alice
        .entry()
        .root_key()
        .expect("alice holds the root key");

    // What connecting means is said before asking.
    let asked = b
        .alice
        .run(&["telegram", "connect", "--token-file", &b.token_path]);
    assert_ne!(asked.code, 0);
    assert!(
        asked
            .stderr
            .contains("the broker can read the mesh's group and broadcast messages"),
        "{}",
        asked.stderr
    );

    // A key that is not the mesh's (its own check value is consistent, the mesh's differs):
    // refused, and nothing is stored.
    let alice_live = b.alice.client().await;
    let wrong = connect_with_keys(&alice_live, &[(0, [7u8; 32])])
        .await
        .expect_err("a wrong root key is refused");
    assert!(wrong.contains("invalid_argument"), "{wrong}");
    assert!(wrong.contains("epoch 0"), "{wrong}");
    let status = b.alice.json(&["telegram", "status", "--json"]);
    assert_eq!(status["connected"], false, "{status}");
    assert_eq!(status["groupKeys"], false, "{status}");

    let status = b.connect();
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(status["groupKeys"], true, "{status}");
    assert_eq!(status["keyEpochs"], json!([0]), "{status}");
    b.join_tg_alice().await;

    // A broadcast, sealed under the root key, reaches her chat in clear.
    b.bob.ok(&["send", "*", "all hands at noon"]);
    let posted = b.api.sent(ALICE_CHAT, "all hands at noon").await;
    assert_eq!(posted, "bob: all hands at noon");

    // A rotation seals the new key to tg:alice too; the bridge takes it from her copy.
    let rotated = b.alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1, "{rotated}");
    assert_eq!(rotated["members"], 3, "alice, bob and tg:alice: {rotated}");
    let key1 = b.alice.entry().root_key().expect("alice holds epoch 1");
    b.bob.ok(&["send", "*", "after the rotation"]);
    b.api.sent(ALICE_CHAT, "after the rotation").await;
    let status = b.alice.json(&["telegram", "status", "--json"]);
    assert_eq!(status["keyEpochs"], json!([0, 1]), "{status}");

    // A rotation whose copy for tg:alice is not the key its check value commits to (a rotator
    // cheating the bridge): the bridge does not take it and drops what is sealed under it.
    let real: [u8; 32] = crypto::random_bytes();
    let forged: [u8; 32] = crypto::random_bytes();
    forge_rotation(&b.alice, &alice_live, 2, &real, &forged).await;
    b.bob.ok(&["send", "*", "under the second rotation"]);
    b.bob.ok(&["send", "tg:alice", "a direct one after it"]);
    b.api.sent(ALICE_CHAT, "a direct one after it").await;
    assert!(
        !b.posted("under the second rotation"),
        "the bridge took a key that does not match its rotation's check value"
    );
    let status = b.alice.json(&["telegram", "status", "--json"]);
    assert_eq!(status["keyEpochs"], json!([0, 1]), "{status}");

    // Disconnect deletes the keys; the next rotation leaves tg:alice out.
    let status = b.alice.json(&["telegram", "disconnect", "--json"]);
    assert_eq!(status["groupKeys"], false, "{status}");
    let rotated = b.alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 3, "{rotated}");
    assert_eq!(rotated["members"], 2, "tg:alice gets no key: {rotated}");
    let key3 = b.alice.entry().root_key().expect("alice holds epoch 3");

    // Connected again by an older client (no keys): direct messages only. The broadcast
    // comes first and is dropped; the direct message after it is posted.
    let alice_live = b.alice.client().await;
    let status = connect_with_keys(&alice_live, &[]).await.unwrap();
    assert_eq!(status["groupKeys"], false, "{status}");
    eventually("tg:alice back among the peers", || {
        std::future::ready(peer_names(&b.bob).contains(&"tg:alice".to_string()))
    })
    .await;
    b.bob.ok(&["send", "*", "not for the bridge"]);
    b.bob.ok(&["send", "tg:alice", "a direct one"]);
    b.api.sent(ALICE_CHAT, "a direct one").await;
    assert!(
        !b.posted("not for the bridge"),
        "a broadcast reached Telegram with no root key handed over"
    );
    drop(alice_live);

    b.broker.sigterm();
    b.broker.wait_exit();
    for key in [key0, key1, real, forged, key3] {
        assert_broker_never_saw(&b.broker, &key);
    }
    assert_broker_never_saw(&b.broker, TOKEN.as_bytes());
}

/// A token the Bot API rejects is refused as such (`bad_token`); a Bot API that cannot be
/// reached checked nothing, and says so (`unavailable`), leaving no bridge connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bot_api_is_not_a_rejected_token() {
    let b = Bridged::start().await;
    std::fs::write(
        &b.token_path,
        "7350012345:AAHc9wQ2-not_the-bot-token-00000000\n",
    )
    .unwrap();
    let connect = [
        "telegram",
        "connect",
        "--token-file",
        &b.token_path,
        "--yes",
    ];
    let err = b.alice.refused(&connect);
    assert!(
        err.contains("the token was not accepted") && err.contains("(bad_token)"),
        "{err}"
    );

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let broker = BrokerProc::start(&["--telegram-api-url", &api_url]);
    let (alice, _bob) = alice_and_bob(&broker);
    let err = alice.refused(&connect);
    assert!(
        err.contains("the Telegram Bot API cannot be reached")
            && err.contains("the token was not checked (unavailable)"),
        "{err}"
    );
    assert!(!err.contains("not accepted"), "{err}");
    assert_eq!(
        alice.json(&["telegram", "status", "--json"])["connected"],
        false
    );
}

const BOB_TG: i64 = 4343;
const BOB_CHAT: i64 = 777_003;

/// A ban reaches the bridge: a banned Telegram user's text goes nowhere (and they are told),
/// and a restarted bridge does not bring them back as a peer to forward the mesh's messages
/// to. A join code is a member's invite: an admin denied `invite` mints none, and one denied
/// `send` lets in nobody who may send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_capabilities_reach_the_telegram_bridge() {
    let mut b = Bridged::start().await;
    b.connect();
    b.join_tg_alice().await;

    b.alice.ok(&["ban", "tg:alice", "--no-rotate"]);
    eventually("tg:alice gone from bob's peers", || {
        std::future::ready(!peer_names(&b.bob).contains(&"tg:alice".to_string()))
    })
    .await;
    b.api
        .says(ALICE_TG, "alice", ALICE_CHAT, "banned but still talking");
    let told = b.api.sent(ALICE_CHAT, "Not delivered").await;
    assert!(told.contains("may not send"), "{told}");
    assert!(
        !b.bob
            .ok(&["inbox", "--json"])
            .contains("banned but still talking"),
        "a banned Telegram user's text reached the mesh"
    );

    // After a restart the bridge starts again, without the banned user.
    b.broker.restart();
    let before = b.api.requests("getUpdates").len();
    eventually("a poll after the restart", || {
        std::future::ready(b.api.requests("getUpdates").len() > before)
    })
    .await;
    assert!(
        !peer_names(&b.bob).contains(&"tg:alice".to_string()),
        "the restarted bridge brought a banned user back"
    );

    // An admin without `invite` mints no join code…
    b.alice.ok(&["perms", "set", "bob", "--role", "admin"]);
    b.alice.ok(&["perms", "set", "bob", "-invite"]);
    let refused = b.bob.refused(&["telegram", "invite"]);
    assert!(refused.contains("\"invite\" capability"), "{refused}");
    // …and one without `send` lets in nobody who may send.
    b.alice.ok(&["perms", "set", "bob", "=invite", "-send"]);
    b.join_tg(&b.bob, BOB_TG, "robert", BOB_CHAT).await;
    b.api.says(BOB_TG, "robert", BOB_CHAT, "a second voice");
    let told = b.api.sent(BOB_CHAT, "Not delivered").await;
    assert!(told.contains("may not send"), "{told}");
    let perms = b.alice.json(&["perms", "show", "--json"]);
    let robert = perms["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["displayName"] == "tg:robert")
        .expect("tg:robert's capabilities")
        .clone();
    assert!(
        robert["denied"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("send"))),
        "{robert}"
    );
}
