//! What a client refuses to take from a broker that lies: a root key the broker planted for a
//! member, a rotation signed by someone the owner's admin list does not name (or by an older
//! list), a link that would add a later key to an existing membership; and the rotation an
//! admin makes once the owner signed it onto the list, reaching a member who was away.

use super::*;

/// Writes into a stopped broker's `mesh.redb` what a hostile broker would hand out: the mesh at
/// epoch 1 and, for `member`, a key of the attacker's choosing sealed to its member key, with
/// `proof` (or none) as the rotation's signed statement.
fn plant_key(
    data_dir: &std::path::Path,
    member: &MeshEntry,
    key: &[u8; 32],
    proof: Option<&RotationProof>,
) {
    plant_key_at(data_dir, member, 1, key, proof);
}

/// [`plant_key`] at epoch `epoch`.
fn plant_key_at(
    data_dir: &std::path::Path,
    member: &MeshEntry,
    epoch: u64,
    key: &[u8; 32],
    proof: Option<&RotationProof>,
) {
    use redb::TableDefinition;
    const KEY_EPOCHS: TableDefinition<&str, u64> = TableDefinition::new("key_epochs");
    const SEALED_KEYS: TableDefinition<(&str, &str, u64), &str> =
        TableDefinition::new("sealed_keys");
    const ROTATION_PROOFS: TableDefinition<(&str, u64), &[u8]> =
        TableDefinition::new("rotation_proofs");
    let pk = claudemesh::protocol::Pubkey::parse(&member.member_pubkey).expect("member key");
    let x = claudemesh::crypto::ed25519_pk_to_x25519(&pk.0).expect("x25519");
    let sealed = base64::engine::general_purpose::STANDARD
        .encode(claudemesh::crypto::seal(key, &x).expect("sealed"));
    let db = redb::Database::open(data_dir.join("mesh.redb")).expect("open mesh.redb");
    let tx = db.begin_write().unwrap();
    {
        let mesh = member.mesh_id.as_str();
        tx.open_table(KEY_EPOCHS)
            .unwrap()
            .insert(mesh, epoch)
            .unwrap();
        tx.open_table(SEALED_KEYS)
            .unwrap()
            .insert((mesh, member.member_id.as_str(), epoch), sealed.as_str())
            .unwrap();
        let mut proofs = tx.open_table(ROTATION_PROOFS).unwrap();
        match proof {
            Some(p) => {
                let bytes = rmp_serde::to_vec_named(p).unwrap();
                proofs.insert((mesh, epoch), bytes.as_slice()).unwrap();
            }
            None => {
                proofs.remove((mesh, epoch)).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

/// A broker cannot hand members a root key of its own choosing (then read their group
/// traffic): a sealed copy is taken only when the owner, or an admin the owner's signed list
/// names, signed its rotation and the key matches what they signed.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_the_broker_plants_is_not_taken() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let entry = bob.entry();
    let planted: [u8; 32] = claudemesh::crypto::random_bytes();
    let check = claudemesh::identity::root_key_check(&planted);
    let attacker = SignKeyPair::generate();
    let by_attacker = RotationProof::sign(&attacker, &entry.mesh_id, 1, &check, unique_now_ms());
    // A list naming the attacker, signed by the attacker rather than the owner.
    let mut vouched = by_attacker.clone();
    vouched.admins = Some(AdminList::sign(
        &attacker,
        &entry.mesh_id,
        1,
        vec![attacker.public_hex()],
        unique_now_ms(),
    ));
    // The owner's real signature, over another key than the one sealed.
    let owner = alice
        .entry()
        .owner_keys()
        .expect("owner key")
        .expect("usable");
    let other_check = claudemesh::identity::root_key_check(&[7; 32]);
    let owners_other =
        RotationProof::sign(&owner, &entry.mesh_id, 1, &other_check, unique_now_ms());
    let cases: [(&str, Option<&RotationProof>, &str); 4] = [
        (
            "no signature",
            None,
            "no signature from the owner or an admin",
        ),
        ("a stranger's", Some(&by_attacker), "who is not the owner"),
        ("a forged list", Some(&vouched), "not signed by the owner"),
        (
            "another key's",
            Some(&owners_other),
            "not the key its rotation signed",
        ),
    ];
    for (case, proof, why) in cases {
        broker.terminate();
        plant_key(broker.data_dir(), &entry, &planted, proof);
        broker.restart();
        let out = bob.run(&["peers", "--json"]);
        assert_eq!(out.code, 0, "{case}: {}", out.stderr);
        assert!(
            out.stderr.contains("ignoring a root key from the broker") && out.stderr.contains(why),
            "{case}: bob is told why the key was not taken: {}",
            out.stderr
        );
        let client = bob.client().await;
        assert_eq!(
            client.hello_ack().key_epoch,
            1,
            "{case}: the broker says epoch 1"
        );
        assert_eq!(
            client.key_ring().get(1),
            None,
            "{case}: bob holds no key of epoch 1"
        );
        client.close().await;
        assert_eq!(
            bob.entry().key_epoch,
            0,
            "{case}: nothing saved in bob's config"
        );
    }
}

/// An admin who joined through an admin invite rotates only once the owner put its key on the
/// signed admin list (`perms set NAME --role admin` where the owner key is); then the other
/// members take its key, and a demoted admin comes off the list again.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_rotates_once_the_owner_signed_it_onto_the_admin_list() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let refused = carol.refused(&["rotate-key"]);
    assert!(
        refused.contains("perms set carol --role admin"),
        "the refusal says how to fix it: {refused}"
    );
    alice.ok(&["perms", "set", "carol", "--role", "admin"]);
    let listed = alice.client().await.admin_list().await.expect("the list");
    let carol_key = carol.entry().member_pubkey;
    assert!(
        listed
            .as_ref()
            .is_some_and(|l| l.admins == vec![carol_key.clone()]),
        "{listed:?}"
    );
    let rotated = carol.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1, "{rotated}");
    carol.ok(&["send", "*", "under carol's key"]);
    assert!(
        inbox(&bob)
            .iter()
            .any(|(from, t)| from == "carol" && t == "under carol's key"),
        "bob took carol's key"
    );
    assert_eq!(bob.entry().key_epoch, 1);
    // Demoted: off the list (and no longer a manager on the broker).
    alice.ok(&["perms", "set", "carol", "--role", "member"]);
    let listed = alice.client().await.admin_list().await.expect("the list");
    assert!(listed.is_some_and(|l| l.admins.is_empty() && l.version == 2));
    let audit = alice.json(&["audit", "--event", "admins.changed", "--json"]);
    assert_eq!(
        audit["entries"].as_array().map(Vec::len),
        Some(2),
        "{audit}"
    );
}

/// A link never puts a key of a later epoch into a membership this machine has: such keys come
/// only sealed and signed (a broker could otherwise answer a link's landing with a mesh, epoch
/// and check value of its choosing and plant the link's key).
#[tokio::test(flavor = "multi_thread")]
async fn a_link_adds_no_later_key_to_an_existing_membership() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let rotated = alice.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1);
    let (_, url) = invite(&alice, &[]);
    assert!(url.contains("~1"), "the link carries epoch 1: {url}");
    let out = bob.run(&["join", &url]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("already a member"), "{}", out.stdout);
    assert_eq!(bob.entry().key_epoch, 0, "the link's key was not taken");
    // Its sealed, signed copy comes with the next connection.
    bob.ok(&["peers"]);
    assert_eq!(bob.entry().key_epoch, 1);
}

/// An admin the owner took off the list cannot get a key taken again by a broker that replays
/// the older list beside a new rotation it signs: members remember the newest list they saw.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_vouched_by_an_older_admin_list_is_not_taken() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    alice.ok(&["perms", "set", "carol", "--role", "admin"]);
    let old_list = alice
        .client()
        .await
        .admin_list()
        .await
        .expect("list")
        .expect("v1");
    assert_eq!(old_list.version, 1);
    carol.ok(&["rotate-key"]);
    bob.ok(&["peers"]);
    assert_eq!(bob.entry().key_epoch, 1);
    // Demoted: the list goes to version 2, and bob learns it at his next connection.
    alice.ok(&["perms", "set", "carol", "--role", "member"]);
    bob.ok(&["peers"]);
    assert_eq!(bob.entry().admin_list_version, 2);
    // The key bob already sends under came with list version 1: it is not refused now.
    let out = bob.run(&["peers"]);
    assert!(
        !out.stderr.contains("older than version"),
        "bob refuses the key of his current epoch: {}",
        out.stderr
    );
    // The broker replays version 1 with a rotation carol signs.
    let entry = bob.entry();
    let carol_key = carol.entry().member_keys().expect("carol's key");
    let planted: [u8; 32] = claudemesh::crypto::random_bytes();
    let check = claudemesh::identity::root_key_check(&planted);
    let mut proof = RotationProof::sign(&carol_key, &entry.mesh_id, 2, &check, unique_now_ms());
    proof.admins = Some(old_list);
    broker.terminate();
    plant_key_at(broker.data_dir(), &entry, 2, &planted, Some(&proof));
    broker.restart();
    let out = bob.run(&["peers"]);
    assert!(
        out.stderr.contains("older than version 2"),
        "bob says why: {}",
        out.stderr
    );
    assert_eq!(
        bob.entry().key_epoch,
        1,
        "the planted key of epoch 2 was not taken"
    );
}

/// A member away while an admin rotated the key, and while the owner then signed a newer admin
/// list (promoting someone else), takes that rotation's key when it is back: the list that
/// vouched for it was the current one when the broker stored it, and its signer is still an
/// admin on the newer list. It reads what was sent under the key and sends under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_away_during_an_admin_rotation_and_a_newer_admin_list_takes_the_key() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let dave = invited(&alice, "dave");
    alice.ok(&["perms", "set", "carol", "--role", "admin"]);
    // bob is away from here on. carol rotates (vouched for by list version 1) and sends under
    // the new key; then alice promotes dave (list version 2, naming carol and dave).
    let rotated = carol.json(&["rotate-key", "--json"]);
    assert_eq!(rotated["keyEpoch"], 1, "{rotated}");
    carol.ok(&["send", "*", "under carol's epoch 1"]);
    alice.ok(&["perms", "set", "dave", "--role", "admin"]);
    let listed = alice
        .client()
        .await
        .admin_list()
        .await
        .expect("the list")
        .expect("a list");
    assert_eq!(listed.version, 2, "{listed:?}");
    assert!(
        listed.names(&carol.entry().member_pubkey) && listed.names(&dave.entry().member_pubkey),
        "{listed:?}"
    );

    // bob is back (a long-lived client saving to his config, as the MCP server is).
    let options = claudemesh::client::ConnectOptions {
        config_dir: Some(claudemesh::identity::ConfigDir::new(bob.config_dir())),
        ..claudemesh::client::ConnectOptions::new(bob.entry(), peer_info("bob"))
    };
    let bob_live = MeshClient::connect(options).await.expect("bob connects");
    assert_eq!(bob_live.hello_ack().key_epoch, 1);
    let got = next_message(&bob_live).await;
    assert_eq!(got.key_epoch, 1, "carol's message is under epoch 1");
    assert_eq!(
        bob_live.decrypt(&got).as_deref(),
        Ok("under carol's epoch 1"),
        "bob reads what carol sent under the key she rotated to"
    );
    bob_live.ack(&got.message_id).expect("acked");
    assert_eq!(bob_live.key_ring().current_epoch(), 1);

    // His own group message goes out under epoch 1, at once.
    let everyone = bob_live.resolve_targets("*").await.expect("targets");
    let acks = bob_live
        .send_each(&everyone, "bob back under epoch 1", "now")
        .await
        .expect("sent");
    assert_eq!(acks[0].queued, Some(true), "{:?}", acks[0]);
    assert_eq!(acks[0].error, None, "{:?}", acks[0]);
    assert!(
        inbox(&alice)
            .iter()
            .any(|(from, t)| from == "bob" && t == "bob back under epoch 1"),
        "alice reads bob's message"
    );
    assert_eq!(bob.entry().key_epoch, 1, "bob's config holds epoch 1");
    assert_eq!(bob.entry().admin_list_version, 2);
    bob_live.close().await;
}

/// Writes `list` into a stopped broker's `mesh.redb` as the admin list of `mesh_id`, as a
/// hostile broker would serve it.
fn plant_admin_list(data_dir: &std::path::Path, mesh_id: &str, list: &AdminList) {
    const ADMIN_LISTS: redb::TableDefinition<&str, &[u8]> =
        redb::TableDefinition::new("admin_lists");
    let db = redb::Database::open(data_dir.join("mesh.redb")).expect("open mesh.redb");
    let tx = db.begin_write().unwrap();
    let bytes = rmp_serde::to_vec_named(list).unwrap();
    tx.open_table(ADMIN_LISTS)
        .unwrap()
        .insert(mesh_id, bytes.as_slice())
        .unwrap();
    tx.commit().unwrap();
}

/// The owner's machine takes the broker's admin list only when the owner key signed it and it
/// is no older than the newest it has seen: a list the broker forged (naming its own pick) or
/// an older one it replays is refused with the reason, and no list is signed on top of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_refuses_an_admin_list_the_broker_forged_or_rolled_back() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob, _carol) = team_with_admin(&broker);
    alice.ok(&["perms", "set", "carol", "--role", "admin"]);
    let first = alice.client().await.admin_list().await.expect("list");
    let first = first.expect("version 1");
    alice.ok(&["perms", "set", "carol", "--role", "member"]);
    assert_eq!(alice.entry().admin_list_version, 2);
    let mesh = alice.entry().mesh_id;
    let mallory = SignKeyPair::generate();
    let forged = AdminList::sign(&mallory, &mesh, 3, vec![mallory.public_hex()], 5);
    for (list, why) in [
        (forged, "not signed by this mesh's owner key"),
        (first, "older than version 2"),
    ] {
        broker.terminate();
        plant_admin_list(broker.data_dir(), &mesh, &list);
        broker.restart();
        let refused = alice.client().await.admin_list().await.expect_err(why);
        assert!(refused.to_string().contains(why), "{why}: {refused}");
        let out = alice.run(&["perms", "set", "bob", "--role", "admin"]);
        assert_ne!(out.code, 0, "{why}: {}", out.stdout);
        assert!(out.stderr.contains(why), "{why}: {}", out.stderr);
        let stored = alice.json(&["audit", "--event", "admins.changed", "--json"]);
        assert_eq!(
            stored["entries"].as_array().map(Vec::len),
            Some(2),
            "{why}: no list signed on top of it: {stored}"
        );
    }
}

/// `owner`'s membership on a second machine: the member key, not the owner key.
fn second_machine_without_the_owner_key(owner: &Person) -> Person {
    let laptop = Person::new(&owner.name);
    let mut entry = owner.entry();
    entry.owner_secret_key = None;
    claudemesh::identity::ConfigDir::new(laptop.config_dir())
        .update(|c| {
            c.upsert(entry);
            Ok(())
        })
        .expect("the second machine's config");
    laptop
}

/// The owner on a second machine, without the owner key, still changes roles: bob becomes an
/// admin, with a warning that he is not on the signed admin list (who may rotate), which stays
/// the owner key's to change.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_without_the_owner_key_changes_roles_and_leaves_the_admin_list_alone() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let laptop = second_machine_without_the_owner_key(&alice);
    let out = laptop.run(&["perms", "set", "bob", "--role", "admin"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("does not hold the owner key"),
        "{}",
        out.stderr
    );
    let members = alice.json(&["members", "--json"]);
    let bobs = members["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["displayName"] == "bob"))
        .unwrap_or_else(|| panic!("bob is listed: {members}"));
    assert_eq!(bobs["role"], "admin", "{members}");
    let listed = alice.client().await.admin_list().await.expect("the list");
    assert_eq!(listed, None, "only the owner key signs the admin list");
}

/// Through the client library, the owner's admin list gets a new signed version only when a
/// change changes it: adding a listed key or removing an unlisted one signs nothing, removing
/// a listed one takes it off.
#[tokio::test(flavor = "multi_thread")]
async fn an_admin_list_change_that_changes_nothing_signs_no_new_version() {
    use claudemesh::client::AdminChange::{Add, Remove};
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let owner = alice.client().await;
    let (bobs, carols) = (bob.entry().member_pubkey, carol.entry().member_pubkey);
    let first = owner.change_admins(&carols, Add).await.expect("added");
    let first = first.expect("a new list");
    assert_eq!((first.version, &first.admins), (1, &vec![carols.clone()]));
    assert_eq!(
        owner.change_admins(&carols, Add).await.expect("again"),
        None
    );
    assert_eq!(owner.change_admins(&bobs, Remove).await.expect("bob"), None);
    let now = owner.admin_list().await.expect("the list");
    assert_eq!(now.map(|l| l.version), Some(1), "no new version");
    let removed = owner.change_admins(&carols, Remove).await.expect("removed");
    let removed = removed.expect("a new list");
    assert_eq!((removed.version, removed.admins.len()), (2, 0));
}

/// Where the owner key is held, a rotation first takes off the signed admin list every key that
/// is no longer a live admin — here carol, demoted from a machine without the owner key — and
/// keeps the others (dave), also with someone banned; a rotation with nothing to take off signs
/// no new list.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_by_the_owner_takes_ex_admins_off_the_admin_list() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob, carol) = team_with_admin(&broker);
    let dave = Person::new("dave");
    let (_, url) = invite(&alice, &["--role", "admin"]);
    join(&dave, &url);
    alice.ok(&["perms", "set", "carol", "--role", "admin"]);
    alice.ok(&["perms", "set", "dave", "--role", "admin"]);
    alice.ok(&["ban", "bob", "--reason", "spam"]);
    let owner = alice.client().await;
    let listed = owner.admin_list().await.expect("list").expect("a list");
    assert_eq!(
        listed.version, 2,
        "the ban's rotation had nothing to take off"
    );
    let laptop = second_machine_without_the_owner_key(&alice);
    laptop.ok(&["perms", "set", "carol", "--role", "member"]);
    let listed = owner.admin_list().await.expect("list").expect("a list");
    assert!(
        listed.names(&carol.entry().member_pubkey),
        "only the owner key signs"
    );
    alice.ok(&["rotate-key"]);
    let listed = owner.admin_list().await.expect("list").expect("a list");
    assert_eq!(listed.version, 3);
    assert_eq!(listed.admins, vec![dave.entry().member_pubkey]);
}
