//! The vault (issue 15 item 4): members keep secrets for their deployed services, encrypted on
//! the client. Driven through the real broker with the CLI, the client library and an MCP
//! client; `open_for_service` (what the deploy code calls) in-process on the broker's data dir.

use crate::common;

use rmcp::ServiceExt;
use serde_json::{Value, json};

use claudemesh::broker::vault::{ServiceKey, VaultError, open_for_service};
use claudemesh::protocol::messages::{VaultEntryType, VaultSealedEntry, VaultSet};
use claudemesh::protocol::{ClientMessage, ServerMessage};
use claudemesh::store::{Store, VaultRecord};
use common::mcp::{call, mcp_process};
use common::secrets::{assert_broker_never_saw, assert_not_in};
use common::*;

const SECRET: &str = "swordfish-vault-4711-launch-code";
const FILE_SECRET: &[u8] = b"-----BEGIN KEY-----\nfile-secret-0xC0FFEE-9931\n-----END KEY-----\n";

/// `person` stores `value` (on stdin) as `key` with `extra` flags.
fn vault_set(person: &Person, key: &str, value: &[u8], extra: &[&str]) -> CmdOutput {
    let mut args = vec!["vault", "set", key, "--value-stdin"];
    args.extend_from_slice(extra);
    person.run_with_stdin(&args, value)
}

/// `person` stores FILE_SECRET from a file as CERT, a file entry mounted at /etc/app/cert.pem.
fn store_cert(person: &Person) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), FILE_SECRET).unwrap();
    let path = file.path().to_str().unwrap();
    person.ok(&[
        "vault",
        "set",
        "CERT",
        "--file",
        path,
        "--type",
        "file",
        "--mount",
        "/etc/app/cert.pem",
    ]);
}

/// `n` more members of alice's mesh ("m0", "m1", …).
fn more_members(alice: &Person, n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| {
            let p = Person::new(&format!("m{i}"));
            let (_, url) = invite(alice, &[]);
            join(&p, &url);
            p
        })
        .collect()
}

fn keys(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["key"].as_str().expect("key").to_string())
        .collect()
}

#[test]
fn set_list_get_delete_round_trip_and_nobody_else_sees_the_value() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);

    // The value comes on stdin (a trailing newline dropped for env entries), never from argv.
    let set = vault_set(
        &alice,
        "API_TOKEN",
        format!("{SECRET}\n").as_bytes(),
        &["--description", "CI token"],
    );
    assert_eq!(set.code, 0, "{}", set.stderr);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), FILE_SECRET).unwrap();
    alice.ok(&[
        "vault",
        "set",
        "TLS_KEY",
        "--file",
        file.path().to_str().unwrap(),
        "--type",
        "file",
        "--mount",
        "/run/secrets/tls.key",
    ]);
    // Stored, and no spelling of either value reached the broker's disk or its log.
    assert_broker_never_saw(&broker, SECRET.as_bytes());
    assert_broker_never_saw(&broker, FILE_SECRET);

    // A value as an argument is not taken.
    let refused = alice.refused(&["vault", "set", "OTHER", SECRET]);
    assert!(refused.contains("vault set --help"), "{refused}");

    // The list shows keys and metadata, never the value.
    let out = alice.run(&["vault", "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(keys(&list), ["API_TOKEN", "TLS_KEY"]);
    assert_eq!(list["entries"][0]["entryType"], "env");
    assert_eq!(list["entries"][0]["description"], "CI token");
    assert_eq!(list["entries"][0]["forServices"], true);
    assert_eq!(list["entries"][1]["entryType"], "file");
    assert_eq!(list["entries"][1]["mountPath"], "/run/secrets/tls.key");
    assert_not_in("vault list", out.stdout.as_bytes(), SECRET.as_bytes());
    assert_not_in("vault list", out.stdout.as_bytes(), FILE_SECRET);
    let text = alice.ok(&["vault", "list"]);
    assert_not_in("vault list", text.as_bytes(), SECRET.as_bytes());

    // Alice reads her values back exactly.
    assert_eq!(alice.ok(&["vault", "get", "API_TOKEN"]), SECRET);
    let got = alice.json(&["vault", "get", "TLS_KEY", "--json"]);
    assert_eq!(got["value"].as_str().unwrap().as_bytes(), FILE_SECRET);
    assert_eq!(got["mountPath"], "/run/secrets/tls.key");

    // Nobody else sees any of it, whichever way their member ids sort against alice's: not in
    // their lists, not by name.
    let others = more_members(&alice, 4);
    alice.ok(&["perms", "set", "bob", "+vault"]);
    for other in others.iter().chain([&bob]) {
        assert!(
            keys(&other.json(&["vault", "list", "--json"])).is_empty(),
            "{} lists alice's entries",
            other.name
        );
    }
    // Even with entries of their own next to hers in the table.
    let out = vault_set(&others[0], "THEIR_OWN", b"their-value", &[]);
    assert_ne!(out.code, 0, "a member without +vault stored an entry");
    let out = vault_set(&bob, "BOBS_OWN", b"bobs-value", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(keys(&bob.json(&["vault", "list", "--json"])), ["BOBS_OWN"]);
    bob.ok(&["vault", "delete", "BOBS_OWN"]);
    let out = bob.run(&["vault", "get", "API_TOKEN"]);
    assert_eq!(out.code, 3, "bob got alice's entry: {}", out.stdout);
    assert!(out.stderr.contains("no vault entry"), "{}", out.stderr);
    for output in [&out.stdout, &out.stderr] {
        assert_not_in("bob's vault get", output.as_bytes(), SECRET.as_bytes());
    }

    // Deleting only reaches bob's own entries.
    assert_eq!(bob.run(&["vault", "delete", "API_TOKEN"]).code, 3);
    assert_eq!(alice.ok(&["vault", "get", "API_TOKEN"]), SECRET);

    // The audit log names the key, never the value.
    let audit = alice.ok(&["audit", "--event", "vault.set", "--json"]);
    assert!(
        audit.contains("API_TOKEN") && audit.contains("TLS_KEY"),
        "{audit}"
    );
    alice.ok(&["vault", "delete", "API_TOKEN"]);
    let audit = alice.ok(&["audit", "--event", "vault.deleted", "--json"]);
    assert!(audit.contains("API_TOKEN"), "{audit}");
    assert_eq!(keys(&alice.json(&["vault", "list", "--json"])), ["TLS_KEY"]);
    assert_eq!(alice.run(&["vault", "get", "API_TOKEN"]).code, 3);

    // Nor in what `info` shows.
    let info = alice.ok(&["info", "--json"]);
    assert_not_in("info", info.as_bytes(), SECRET.as_bytes());

    // Still none, after reads and deletes.
    assert_broker_never_saw(&broker, SECRET.as_bytes());
    assert_broker_never_saw(&broker, FILE_SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_members_request_never_returns_the_entry() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+vault"]);
    let a = alice.client().await;
    a.vault_set("SHARED_NAME", SECRET.as_bytes(), Default::default())
        .await
        .unwrap();
    let b = bob.client().await;
    // Bob asks for alice's key by name over the raw wire, and stores his own under it.
    let reply = b
        .request(ClientMessage::VaultGet {
            keys: vec!["SHARED_NAME".into()],
        })
        .await
        .unwrap();
    let ServerMessage::VaultGetResult { entries } = &reply else {
        panic!("{reply:?}");
    };
    assert!(
        entries.is_empty(),
        "bob got alice's sealed entry: {reply:?}"
    );
    b.vault_set("SHARED_NAME", b"bob's own value", Default::default())
        .await
        .unwrap();
    let mine = b.vault_get("SHARED_NAME").await.unwrap().unwrap();
    assert_eq!(&mine.value[..], b"bob's own value");
    let alices = a.vault_get("SHARED_NAME").await.unwrap().unwrap();
    assert_eq!(&alices.value[..], SECRET.as_bytes());
    let listed = format!("{:?}", b.vault_list().await.unwrap());
    assert_not_in("bob's vault_list", listed.as_bytes(), SECRET.as_bytes());
    a.close().await;
    b.close().await;
    assert_broker_never_saw(&broker, SECRET.as_bytes());
}

#[test]
fn the_vault_capability_is_checked_on_the_broker() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let out = vault_set(&bob, "BOB_TOKEN", SECRET.as_bytes(), &[]);
    assert_ne!(out.code, 0, "a plain member stored a vault entry");
    assert!(
        out.stderr.contains("\"vault\" capability")
            && out.stderr.contains("claudemesh perms set bob +vault"),
        "{}",
        out.stderr
    );
    let out = bob.run(&["vault", "delete", "BOB_TOKEN"]);
    assert!(
        out.stderr.contains("\"vault\" capability"),
        "{}",
        out.stderr
    );
    alice.ok(&["perms", "set", "bob", "+vault"]);
    let out = vault_set(&bob, "BOB_TOKEN", SECRET.as_bytes(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(bob.ok(&["vault", "get", "BOB_TOKEN"]), SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_for_service_opens_only_entries_sealed_to_the_service_key() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let out = vault_set(&alice, "SVC_TOKEN", SECRET.as_bytes(), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = vault_set(&alice, "MINE_ONLY", SECRET.as_bytes(), &["--no-services"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    store_cert(&alice);
    let list = alice.json(&["vault", "list", "--json"]);
    assert_eq!(list["entries"][1]["key"], "MINE_ONLY");
    assert_eq!(list["entries"][1]["forServices"], false);
    let published = alice.client().await.vault_service_key().await.unwrap();
    broker.terminate();

    let dir = broker.data_dir();
    let key = ServiceKey::load_or_create(dir).unwrap();
    assert_eq!(key.public(), published, "the broker published another key");
    let store = Store::open(dir).unwrap();
    let a = alice.entry();
    let opened = open_for_service(&store, &key, &a.mesh_id, &a.member_id, "SVC_TOKEN").unwrap();
    assert_eq!(&opened.value[..], SECRET.as_bytes());
    assert_eq!(opened.entry_type, VaultEntryType::Env);
    assert_eq!(opened.mount_path, None);
    let cert = open_for_service(&store, &key, &a.mesh_id, &a.member_id, "CERT").unwrap();
    assert_eq!(&cert.value[..], FILE_SECRET);
    assert_eq!(cert.entry_type, VaultEntryType::File);
    assert_eq!(cert.mount_path.as_deref(), Some("/etc/app/cert.pem"));

    let refused = open_for_service(&store, &key, &a.mesh_id, &a.member_id, "MINE_ONLY");
    let Err(e @ VaultError::NotForServices(_)) = refused else {
        panic!("an entry not sealed for services was opened");
    };
    assert!(e.to_string().contains("without --no-services"), "{e}");
    // A service deployed by bob cannot resolve alice's key.
    let b = bob.entry();
    let refused = open_for_service(&store, &key, &b.mesh_id, &b.member_id, "SVC_TOKEN");
    assert!(matches!(refused, Err(VaultError::NotFound(_))));
    // Another service key (another broker) opens nothing.
    let other_dir = tempfile::tempdir().unwrap();
    let other = ServiceKey::load_or_create(other_dir.path()).unwrap();
    let refused = open_for_service(&store, &other, &a.mesh_id, &a.member_id, "SVC_TOKEN");
    assert!(matches!(refused, Err(VaultError::Unreadable(..))));
    drop(store);
    assert_broker_never_saw(&broker, SECRET.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_what_was_wrong() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    for (key, extra, says) in [
        ("1BAD", &[][..], "not valid"),
        ("A-B", &[][..], "not valid"),
        ("F", &["--type", "file"][..], "needs a mount path"),
        (
            "F",
            &["--type", "file", "--mount", "/a/../etc/passwd"][..],
            "normalized",
        ),
        (
            "F",
            &["--type", "file", "--mount", "relative/path"][..],
            "absolute",
        ),
        ("E", &["--mount", "/a"][..], "env entry has no mount path"),
        ("T", &["--type", "secret"][..], "env or file"),
    ] {
        let out = vault_set(&alice, key, b"some-value-123", extra);
        assert_ne!(out.code, 0, "{key} {extra:?} was stored");
        assert!(out.stderr.contains(says), "{key} {extra:?}: {}", out.stderr);
    }
    let out = alice.run(&["vault", "set", "NO_VALUE"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--value-stdin"), "{}", out.stderr);
    let big = vec![b'x'; 32 * 1024 + 1];
    let out = vault_set(&alice, "BIG", &big, &[]);
    assert!(out.stderr.contains("32768"), "{}", out.stderr);

    // The broker checks what a client that skipped those checks sends.
    let c = alice.client().await;
    let frame = |key: &str, ct: String, nonce: String, mount: Option<&str>| {
        ClientMessage::VaultSet(Box::new(VaultSet {
            entry: VaultSealedEntry {
                key: key.into(),
                ciphertext: ct,
                nonce,
                sealed_key: base64(&[0u8; 112]),
                entry_type: if mount.is_some() {
                    VaultEntryType::File
                } else {
                    VaultEntryType::Env
                },
                mount_path: mount.map(String::from),
            },
            description: None,
            service_sealed_key: Some(base64(&[0u8; 112])),
        }))
    };
    let nonce = base64(&[0u8; 24]);
    for (req, code, says) in [
        (
            frame("1X", base64(&[0; 40]), nonce.clone(), None),
            "invalid_argument",
            "not valid",
        ),
        (
            frame("X", base64(&[0; 40]), base64(&[0; 5]), None),
            "invalid_argument",
            "nonce",
        ),
        (
            frame("X", "%%%".into(), nonce.clone(), None),
            "invalid_argument",
            "base64",
        ),
        (
            frame("X", base64(&[0; 40]), nonce.clone(), Some("/a/..")),
            "invalid_argument",
            "normalized",
        ),
        (
            frame("X", base64(&vec![0; 32 * 1024 + 17]), nonce.clone(), None),
            "payload_too_large",
            "32768",
        ),
    ] {
        let e = c.request(req).await.expect_err("refused");
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    // A member keeps at most 100 entries; replacing one still works at the cap.
    for i in 0..100 {
        c.request(frame(
            &format!("K{i}"),
            base64(&[0; 40]),
            nonce.clone(),
            None,
        ))
        .await
        .unwrap();
    }
    let e = c
        .request(frame("K100", base64(&[0; 40]), nonce.clone(), None))
        .await
        .expect_err("over the cap");
    assert_eq!(e.code(), Some("quota_exceeded"), "{e}");
    c.request(frame("K7", base64(&[0; 40]), nonce.clone(), None))
        .await
        .unwrap();
    // The broker still serves.
    assert_eq!(c.vault_list().await.unwrap().len(), 100);
    c.close().await;
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_tools_keep_the_value_to_its_owner() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = ().serve(mcp_process(&alice)).await.expect("alice's MCP");
    let b = ().serve(mcp_process(&bob)).await.expect("bob's MCP");
    eventually("alice's MCP session to answer", || async {
        call(&a, "vault_list", json!({})).await.0
    })
    .await;
    let (ok, text) = call(
        &a,
        "vault_set",
        json!({"key": "DB_PASSWORD", "value": SECRET, "description": "prod db"}),
    )
    .await;
    assert!(ok, "{text}");
    assert_not_in("vault_set's answer", text.as_bytes(), SECRET.as_bytes());
    let (ok, text) = call(
        &a,
        "vault_set",
        json!({"key": "CONF", "value": "x=1", "type": "file", "mount_path": "/a/../b"}),
    )
    .await;
    assert!(!ok && text.contains("normalized"), "{text}");
    let (ok, text) = call(&a, "vault_list", json!({})).await;
    assert!(
        ok && text.contains("DB_PASSWORD") && text.contains("prod db"),
        "{text}"
    );
    assert_not_in("vault_list", text.as_bytes(), SECRET.as_bytes());
    // vault_get gives metadata and the terminal command, never the value (it would enter the
    // model's context and its transcripts).
    let (ok, text) = call(&a, "vault_get", json!({"key": "DB_PASSWORD"})).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("prod db") && text.contains("claudemesh vault get DB_PASSWORD"),
        "{text}"
    );
    assert_not_in("alice's MCP vault_get", text.as_bytes(), SECRET.as_bytes());

    eventually("bob's MCP session to answer", || async {
        call(&b, "vault_list", json!({})).await.0
    })
    .await;
    let (ok, text) = call(&b, "vault_get", json!({"key": "DB_PASSWORD"})).await;
    assert!(!ok, "bob read alice's entry: {text}");
    assert_not_in("bob's vault_get", text.as_bytes(), SECRET.as_bytes());
    let (_, text) = call(&b, "vault_list", json!({})).await;
    assert!(!text.contains("DB_PASSWORD"), "{text}");
    let (ok, text) = call(&b, "vault_set", json!({"key": "X", "value": "y-value-123"})).await;
    assert!(!ok && text.contains("+vault"), "{text}");

    let (ok, text) = call(&a, "vault_delete", json!({"key": "DB_PASSWORD"})).await;
    assert!(ok, "{text}");
    let (ok, _) = call(&a, "vault_get", json!({"key": "DB_PASSWORD"})).await;
    assert!(!ok);
    a.cancel().await.ok();
    b.cancel().await.ok();
    assert_broker_never_saw(&broker, SECRET.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_copied_to_another_place_in_the_store_is_refused() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+vault"]);
    assert_eq!(
        vault_set(&alice, "SVC_TOKEN", SECRET.as_bytes(), &[]).code,
        0
    );
    assert_eq!(vault_set(&bob, "BOB_TOKEN", b"bob-value-1", &[]).code, 0);
    store_cert(&alice);
    broker.terminate();

    // Someone who can write mesh.redb copies alice's rows: under bob (whose services it would
    // then reach), under another of alice's names, and with another mount path.
    let dir = broker.data_dir().to_path_buf();
    let key = ServiceKey::load_or_create(&dir).unwrap();
    let store = Store::open(&dir).unwrap();
    let (a, b) = (alice.entry(), bob.entry());
    let row = store
        .vault_entry(&a.mesh_id, &a.member_id, "SVC_TOKEN")
        .unwrap()
        .unwrap();
    let put = |member: &str, record: VaultRecord| {
        store.vault_set(a.mesh_id.clone(), member.into(), "x".into(), record, 100)
    };
    put(&b.member_id, row.clone()).await.unwrap().unwrap();
    let mut renamed = row.clone();
    renamed.key = "OTHER".into();
    put(&a.member_id, renamed).await.unwrap().unwrap();
    let mut moved = store
        .vault_entry(&a.mesh_id, &a.member_id, "CERT")
        .unwrap()
        .unwrap();
    moved.mount_path = Some("/etc/cron.d/job".into());
    put(&a.member_id, moved).await.unwrap().unwrap();

    for (member, name) in [
        (&b.member_id, "SVC_TOKEN"),
        (&a.member_id, "OTHER"),
        (&a.member_id, "CERT"),
    ] {
        match open_for_service(&store, &key, &a.mesh_id, member, name) {
            Err(e @ VaultError::Unreadable(..)) => {
                assert!(e.to_string().contains("another vault entry"), "{e}")
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("a copied row {name} was opened for another place"),
        }
    }
    // The genuine entry still opens.
    let opened = open_for_service(&store, &key, &a.mesh_id, &a.member_id, "SVC_TOKEN").unwrap();
    assert_eq!(&opened.value[..], SECRET.as_bytes());
    drop(store);

    // The owner's client refuses the copy too, saying why.
    broker.restart();
    let out = alice.run(&["vault", "get", "OTHER"]);
    assert_ne!(out.code, 0, "alice's client opened a renamed copy");
    assert!(out.stderr.contains("unreadable"), "{}", out.stderr);
    assert_not_in(
        "vault get of a copy",
        out.stdout.as_bytes(),
        SECRET.as_bytes(),
    );
    let out = alice.run(&["vault", "get", "CERT"]);
    assert_ne!(
        out.code, 0,
        "alice's client opened an entry with a changed mount path"
    );
    let out = bob.run(&["vault", "get", "SVC_TOKEN"]);
    assert_ne!(out.code, 0, "bob opened alice's row");
    assert_not_in("bob's vault get", out.stdout.as_bytes(), SECRET.as_bytes());
    assert_eq!(alice.ok(&["vault", "get", "SVC_TOKEN"]), SECRET);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_and_banned_members_entries_are_not_opened_and_revocation_deletes_them() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    alice.ok(&["perms", "set", "bob", "+vault"]);
    alice.ok(&["perms", "set", "carol", "+vault"]);
    assert_eq!(vault_set(&bob, "B_TOKEN", b"bob-value-1", &[]).code, 0);
    assert_eq!(vault_set(&carol, "C_TOKEN", b"carol-value-1", &[]).code, 0);
    alice.ok(&["revoke", "bob", "--no-rotate"]);
    alice.ok(&["ban", "carol", "--no-rotate"]);
    broker.terminate();

    let dir = broker.data_dir().to_path_buf();
    let key = ServiceKey::load_or_create(&dir).unwrap();
    let store = Store::open(&dir).unwrap();
    let (b, c) = (bob.entry(), carol.entry());
    // Revocation deleted bob's entries; carol's ban keeps hers (a ban can be lifted) but no
    // service of hers gets them.
    assert!(
        store
            .vault_entries(&b.mesh_id, &b.member_id)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.vault_entries(&c.mesh_id, &c.member_id).unwrap().len(),
        1
    );
    for (who, name) in [(&b, "B_TOKEN"), (&c, "C_TOKEN")] {
        let refused = open_for_service(&store, &key, &who.mesh_id, &who.member_id, name);
        assert!(
            matches!(refused, Err(VaultError::MemberNotActive)),
            "{name} was opened for a removed member"
        );
    }
    let refused = open_for_service(&store, &key, &b.mesh_id, "no-such-member", "B_TOKEN");
    assert!(matches!(refused, Err(VaultError::MemberNotActive)));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_original_clients_entry_is_kept_as_sent_and_read_back() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use claudemesh::crypto;

    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let entry = alice.entry();
    // Sealed as the original's client does: a bare value key, URL-safe base64 without padding.
    let value_key = crypto::random_bytes::<32>();
    let nonce = crypto::random_bytes::<24>();
    let ct = crypto::secretbox_easy(SECRET.as_bytes(), &nonce, &value_key);
    let me = entry.member_keys().unwrap().to_x25519().public;
    let sealed = crypto::seal(&value_key, &me).unwrap();
    let (ct, nonce, sealed) = (
        URL_SAFE_NO_PAD.encode(ct),
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(sealed),
    );
    let (mut ws, _) = ws_hello(&broker, &member_hello(&entry)).await;
    ws_send(
        &mut ws,
        &json!({"type": "vault_set", "key": "OLD_TOKEN", "ciphertext": ct, "nonce": nonce,
            "sealed_key": sealed, "entry_type": "file", "mount_path": "/run/old",
            "description": "from the original", "_reqId": "r1"}),
    )
    .await;
    let ack = ws_recv_reply(&mut ws).await;
    assert_eq!(ack["type"], "vault_ack", "{ack}");
    assert_eq!(ack["action"], "stored", "{ack}");
    ws_send(
        &mut ws,
        &json!({"type": "vault_get", "keys": ["OLD_TOKEN"], "_reqId": "r2"}),
    )
    .await;
    let got = ws_recv_reply(&mut ws).await;
    assert_eq!(
        got["entries"],
        json!([{"key": "OLD_TOKEN", "ciphertext": ct, "nonce": nonce, "sealed_key": sealed,
            "entry_type": "file", "mount_path": "/run/old"}]),
        "the original's strings did not come back unchanged"
    );
    // This project's client reads it too, and the list says no service can use it.
    let c = alice.client().await;
    let opened = c.vault_get("OLD_TOKEN").await.unwrap().unwrap();
    assert_eq!(&opened.value[..], SECRET.as_bytes());
    let listed = c.vault_list().await.unwrap();
    assert!(!listed[0].for_services, "{listed:?}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_service_key_is_replaced_entries_are_no_longer_listed_for_services() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    assert_eq!(
        vault_set(&alice, "SVC_TOKEN", SECRET.as_bytes(), &[]).code,
        0
    );
    let list = alice.json(&["vault", "list", "--json"]);
    assert_eq!(list["entries"][0]["forServices"], true);
    let missing = |broker: &BrokerProc| {
        broker
            .stderr_lines()
            .iter()
            .any(|l| l.contains("service.key was missing") && l.contains("vault set"))
    };
    assert!(!missing(&broker), "a first start has no key to miss");
    broker.terminate();
    std::fs::remove_file(broker.data_dir().join("service.key")).unwrap();
    broker.restart();
    // The owner of a data directory restored without it is told, once, at start.
    eventually("the broker to say service.key was missing", || {
        std::future::ready(missing(&broker))
    })
    .await;
    let list = alice.json(&["vault", "list", "--json"]);
    assert_eq!(
        list["entries"][0]["forServices"], false,
        "an entry sealed to the lost service key is still listed for services"
    );
    // Stored again, it is sealed to the new key.
    assert_eq!(
        vault_set(&alice, "SVC_TOKEN", SECRET.as_bytes(), &[]).code,
        0
    );
    let list = alice.json(&["vault", "list", "--json"]);
    assert_eq!(list["entries"][0]["forServices"], true);
}

/// A service key others can read stops the broker, and the refusal names that key (not
/// `broker.key`, another file) and how to fix it.
#[test]
fn a_service_key_others_can_read_stops_the_broker_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let key = data.path().join("service.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = std::process::Command::new(BIN)
        .args(["broker", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("CLAUDEMESH_DATA_DIR", data.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run claudemesh broker");
    let (status, stderr) = finish(child, "broker");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot start the broker: service key: cannot read")
            && stderr.contains("service.key: group or others can access it")
            && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains("broker key"), "{stderr}");
}
