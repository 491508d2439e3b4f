//! The mesh root key stays out of the broker: it never holds or shows it, a link without its
//! `#…` part joins but cannot read or send group messages, and a broker upgraded from a data
//! dir written when it still stored the key drops it once the owner proves they hold it.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_broker_never_holds_or_shows_the_root_key() {
    let broker = BrokerProc::start(&[]);
    let mut bystanders = Bystanders::start(&broker).await;
    let base = broker.http_url();
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let root = alice
        .entry()
        .root_key()
        .expect("the creator holds the root key");
    let (code, url) = invite(&alice, &["--uses", "2"]);
    assert!(
        url.contains(&format!("#{}.", encode_root_key(&root))),
        "{url}"
    );
    let bob = Person::new("bob");
    join(&bob, &url);
    assert_eq!(
        bob.entry().root_key().unwrap(),
        root,
        "bob took it from the link"
    );

    // Every HTTP answer this test sees.
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for path in [
        format!("/i/{code}"),
        format!("/i/{code}?format=json"),
        "/health".into(),
        "/health/ready".into(),
        "/metrics".into(),
    ] {
        let resp = http_get(&format!("{base}{path}")).await;
        bodies.push((path, resp.body.to_vec()));
    }
    let carl = SignKeyPair::generate();
    let resp = http::claim_invite(&base, &code, &BoxKeyPair::generate().public, "carl", &carl)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    bodies.push(("the claim".into(), resp.body.to_vec()));

    // A group message and a broadcast; bob reads both.
    let out = bob.run(&["group", "join", "dev"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (to, text) in [("@dev", "group secret"), ("*", "broadcast secret")] {
        let out = alice.run(&["send", to, text]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(texts, ["group secret", "broadcast secret"]);
    bystanders.exchange(2).await;

    for (what, body) in &bodies {
        common::secrets::assert_not_in(&format!("the HTTP answer to {what}"), body, &root);
    }
    assert_broker_never_saw(&broker, &root);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_without_its_key_joins_but_group_messages_need_the_full_link() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let (code, url) = invite(&alice, &["--uses", "3"]);
    let bare = url.split('#').next().unwrap().to_string();

    let bob = Person::new("bob");
    let out = bob.run(&["join", &bare, "--name", "bob"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("group"),
        "join says what is missing: {}",
        out.stderr
    );
    assert!(bob.entry().root_key.is_empty());
    // A direct message works; a group message is refused with a sentence, not a crash.
    let out = bob.run(&["send", "alice", "hello directly"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = bob.run(&["send", "*", "hello all"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("full invite link"), "{}", out.stderr);
    // Receiving one is no crash either.
    assert_eq!(alice.run(&["send", "*", "to everyone"]).code, 0);
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // A bare code joins the same way.
    let carl = Person::new("carl");
    let out = carl.run(&["join", &code, "--broker", &broker.ws_url()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("full link"), "{}", out.stderr);

    // The full link later adds the key to bob's membership (no second member).
    let out = bob.run(&["join", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("added the mesh key"), "{}", out.stdout);
    assert_eq!(bob.entry().root_key, alice.entry().root_key);
    let members = alice.json(&["members", "--json"]);
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");
    assert_eq!(bob.run(&["send", "*", "hello all"]).code, 0);

    // A link whose key belongs to another mesh is refused before anything is claimed.
    let other = Person::new("olga");
    create_mesh(&broker, &other, "other");
    let wrong = format!("{bare}#{}", other.entry().root_key);
    let dave = Person::new("dave");
    let out = dave.run(&["join", &wrong]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("does not belong"), "{}", out.stderr);
    let out = dave.run(&["join", &format!("{bare}#not-a-key")]);
    assert_eq!(out.code, 2, "{out:?}");
}

// ---------------------------------------------------------------------------------------------
// Upgrading a data dir from a broker that kept root keys (schema 1)
// ---------------------------------------------------------------------------------------------

/// The records as schema 1 wrote them.
mod old {
    use serde::Serialize;

    #[derive(Serialize)]
    pub struct Mesh {
        pub id: String,
        pub name: String,
        pub slug: String,
        pub owner_pubkey: String,
        pub root_key: String,
        pub created_at_ms: i64,
        pub self_editable: bool,
    }

    #[derive(Serialize)]
    pub struct Member {
        pub id: String,
        pub mesh_id: String,
        pub pubkey: String,
        pub display_name: String,
        pub role: String,
        pub joined_at_ms: i64,
    }

    #[derive(Serialize)]
    pub struct Invite {
        pub id: String,
        pub code: String,
        pub mesh_id: String,
        pub role: String,
        pub max_uses: u32,
        pub used: u32,
        pub expires_at_s: i64,
        pub created_by: String,
        pub created_at_ms: i64,
        pub revoked: bool,
        pub canonical: String,
        pub signature: String,
    }
}

/// One schema-1 mesh: its keys and the config entry its owner's machine has.
struct OldMesh {
    id: String,
    member_id: String,
    member: SignKeyPair,
    owner: SignKeyPair,
    root: [u8; 32],
}

impl OldMesh {
    fn new(slug: &str) -> OldMesh {
        OldMesh {
            id: format!("mesh{slug}0000000000"),
            member_id: format!("mbr{slug}00000000000"),
            member: SignKeyPair::generate(),
            owner: SignKeyPair::generate(),
            root: claudemesh::crypto::random_bytes(),
        }
    }

    fn entry(&self, slug: &str, broker: &BrokerProc, root: &[u8; 32]) -> MeshEntry {
        MeshEntry {
            mesh_id: self.id.clone(),
            slug: slug.into(),
            name: slug.into(),
            member_id: self.member_id.clone(),
            display_name: "owner".into(),
            role: "owner".into(),
            broker_url: broker.ws_url(),
            member_pubkey: self.member.public_hex(),
            member_secret_key: self.member.secret_hex(),
            root_key: encode_root_key(root),
            owner_pubkey: self.owner.public_hex(),
            owner_secret_key: Some(self.owner.secret_hex()),
            joined_at: time::iso(0),
            ca_file: None,
            key_epoch: 0,
            old_root_keys: Vec::new(),
            admin_list_version: 0,
        }
    }
}

/// Writes a schema-1 `mesh.redb`: the meshes with their root keys in clear, their owners, and
/// one v2 invite (`OldCode1`) for the first mesh.
fn write_schema_1(dir: &std::path::Path, meshes: &[(&str, &OldMesh)]) {
    use redb::TableDefinition;
    let db = redb::Database::create(dir.join("mesh.redb")).expect("create mesh.redb");
    let tx = db.begin_write().unwrap();
    {
        let mut meta = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap();
        meta.insert("schema_version", enc(&1u32).as_slice())
            .unwrap();
        let mut mesh_t = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("meshes"))
            .unwrap();
        let mut slugs = tx
            .open_table(TableDefinition::<&str, &str>::new("mesh_slugs"))
            .unwrap();
        let mut members = tx
            .open_table(TableDefinition::<(&str, &str), &[u8]>::new("members"))
            .unwrap();
        let mut keys = tx
            .open_table(TableDefinition::<(&str, &str), &str>::new("member_keys"))
            .unwrap();
        let mut invites = tx
            .open_table(TableDefinition::<&str, &[u8]>::new("invites"))
            .unwrap();
        for (slug, m) in meshes {
            let mesh = old::Mesh {
                id: m.id.clone(),
                name: slug.to_string(),
                slug: slug.to_string(),
                owner_pubkey: m.owner.public_hex(),
                root_key: encode_root_key(&m.root),
                created_at_ms: 1,
                self_editable: true,
            };
            mesh_t.insert(m.id.as_str(), enc(&mesh).as_slice()).unwrap();
            slugs.insert(*slug, m.id.as_str()).unwrap();
            let member = old::Member {
                id: m.member_id.clone(),
                mesh_id: m.id.clone(),
                pubkey: m.member.public_hex(),
                display_name: "owner".into(),
                role: "owner".into(),
                joined_at_ms: 1,
            };
            members
                .insert(
                    (m.id.as_str(), m.member_id.as_str()),
                    enc(&member).as_slice(),
                )
                .unwrap();
            keys.insert(
                (m.id.as_str(), m.member.public_hex().as_str()),
                m.member_id.as_str(),
            )
            .unwrap();
        }
        let (_, first) = meshes[0];
        let expires = time::now_ms() / 1000 + 86_400;
        let signed = canonical::invite_v2(
            &first.id,
            "oldinvite1",
            expires,
            "member",
            &first.owner.public_hex(),
        );
        let invite = old::Invite {
            id: "oldinvite1".into(),
            code: "OldCode1".into(),
            mesh_id: first.id.clone(),
            role: "member".into(),
            max_uses: 5,
            used: 0,
            expires_at_s: expires,
            created_by: first.member_id.clone(),
            created_at_ms: 1,
            revoked: false,
            signature: hex::encode(first.owner.sign(signed.as_bytes())),
            canonical: signed,
        };
        invites.insert("OldCode1", enc(&invite).as_slice()).unwrap();
    }
    tx.commit().unwrap();
}

/// rmp-serde with named fields, as the store writes records.
fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encode")
}

fn save_config(person: &Person, entry: MeshEntry) {
    ConfigDir::new(person.config_dir())
        .update(|config| {
            *config = Config::default();
            config.meshes.push(entry);
            Ok(())
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upgraded_broker_drops_a_stored_root_key_once_the_owner_proves_it() {
    let dir = tempfile::tempdir().unwrap();
    let (team, side) = (OldMesh::new("team"), OldMesh::new("side"));
    write_schema_1(dir.path(), &[("team", &team), ("side", &side)]);
    let mut broker = BrokerProc::start_in(dir.path(), &[]);

    // The v2 invite is dead: it binds neither code nor uses, and its link carries no key.
    let landing = http_get(&format!("{}/i/OldCode1?format=json", broker.http_url())).await;
    assert_eq!(landing.json()["status"], "revoked");
    refused(
        &claim(&broker, "OldCode1", &SignKeyPair::generate(), "late").await,
        410,
        "revoked",
    );

    let alice = Person::new("alice");
    save_config(&alice, team.entry("team", &broker, &team.root));
    // olga owns "side" but her machine has a different key: her proof must not drop anything.
    let olga = Person::new("olga");
    save_config(&olga, side.entry("side", &broker, &[7u8; 32]));
    for (person, mesh) in [(&alice, &team), (&olga, &side)] {
        let entry = person.entry();
        let (_, ack) = ws_hello(&broker, &member_hello(&entry)).await;
        assert_eq!(ack["rootKeyHeld"], true, "{} before: {ack}", mesh.id);
    }

    // Any command of theirs connects, and the client proves what it holds.
    assert_eq!(alice.run(&["members"]).code, 0);
    assert_eq!(olga.run(&["members"]).code, 0);
    let (_, ack) = ws_hello(&broker, &member_hello(&alice.entry())).await;
    assert!(ack.get("rootKeyHeld").is_none(), "dropped for team: {ack}");
    let (_, ack) = ws_hello(&broker, &member_hello(&olga.entry())).await;
    assert_eq!(ack["rootKeyHeld"], true, "kept for side: {ack}");

    // The migrated mesh keeps working: a new invite carries the same key.
    let (_, url) = invite(&alice, &[]);
    let bob = Person::new("bob");
    join(&bob, &url);
    assert_eq!(bob.entry().root_key().unwrap(), team.root);

    assert!(broker.terminate().success());
    let store = Store::open(dir.path()).expect("open the migrated store");
    let migrated = store.mesh(&team.id).unwrap().expect("team");
    assert_eq!(migrated.legacy_root_key, None, "the stored copy is gone");
    assert_eq!(
        migrated.root_key_check.as_deref(),
        Some(root_key_check(&team.root).as_str())
    );
    let kept = store.mesh(&side.id).unwrap().expect("side");
    assert_eq!(kept.legacy_root_key, Some(encode_root_key(&side.root)));
    let old_invite = store
        .invite("OldCode1")
        .unwrap()
        .expect("kept for the record");
    assert!(old_invite.revoked);
    store.close();
}
