//! The key ring and its keeper, without a broker: what a sealed copy must show to be taken,
//! where it is kept, and the admin-list versions noted on the way.

use super::*;
use crate::identity::{Config, encode_root_key};
use crate::protocol::messages::AdminList;

/// bob's membership of mesh "m1", owned by `owner`, at epoch 0, having seen admin list
/// version `seen`.
fn bobs_entry(bob: &SignKeyPair, owner: &SignKeyPair, seen: u64) -> MeshEntry {
    MeshEntry {
        mesh_id: "m1".into(),
        slug: "team".into(),
        name: "Team".into(),
        member_id: "bob".into(),
        display_name: "bob".into(),
        role: "member".into(),
        broker_url: "ws://127.0.0.1:1/ws".into(),
        member_pubkey: bob.public_hex(),
        member_secret_key: bob.secret_hex(),
        root_key: encode_root_key(&[1; 32]),
        owner_pubkey: owner.public_hex(),
        owner_secret_key: None,
        joined_at: time::iso(0),
        ca_file: None,
        key_epoch: 0,
        old_root_keys: Vec::new(),
        admin_list_version: seen,
    }
}

/// `key` as epoch 1, sealed to `bob`, signed by the admin `signer` and vouched for by
/// `list`.
fn rotation(bob: &SignKeyPair, signer: &SignKeyPair, list: AdminList, key: &[u8; 32]) -> EpochKey {
    let x = crypto::ed25519_pk_to_x25519(&bob.public).expect("x25519");
    let mut proof = RotationProof::sign(signer, "m1", 1, &root_key_check(key), 5);
    proof.admins = Some(list);
    EpochKey {
        epoch: 1,
        sealed: STANDARD.encode(crypto::seal(key, &x).expect("sealed")),
        proof: Some(proof),
    }
}

/// A rotation vouched for by an admin list older than one this member has seen is taken
/// only when the current list the broker sends with it (owner-signed, at least as new as
/// any seen) still names its signer: not on a newer list that dropped the signer, an
/// older one replayed as current, one the owner did not sign, or none at all.
#[test]
fn a_rotation_on_an_older_list_is_taken_only_while_a_list_as_new_as_any_seen_names_its_signer() {
    let (bob, owner, carol, dave) = (
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
    );
    let list = |signer: &SignKeyPair, version, admins: &[&SignKeyPair]| {
        let keys = admins.iter().map(|a| a.public_hex()).collect();
        AdminList::sign(signer, "m1", version, keys, 5)
    };
    let key: [u8; 32] = crypto::random_bytes();
    let copy = rotation(&bob, &carol, list(&owner, 1, &[&carol]), &key);
    let refused: [(&str, Option<AdminList>); 4] = [
        ("no current list", None),
        ("carol demoted", Some(list(&owner, 2, &[&dave]))),
        ("version 1 replayed", Some(list(&owner, 1, &[&carol]))),
        ("not the owner's", Some(list(&dave, 2, &[&carol, &dave]))),
    ];
    for (case, current) in refused {
        let keeper = Keeper::new(&bobs_entry(&bob, &owner, 2), None);
        let current = keeper.see_list(current.as_ref());
        let why = keeper.absorb(&copy, current).expect_err(case);
        assert!(why.contains("older than version 2"), "{case}: {why}");
        assert_eq!(keeper.ring().get(1), None, "{case}");
        assert_eq!(keeper.ring().current_epoch(), 0, "{case}");
    }
    // A list handed to `absorb` unchecked is checked there: not the owner's, not taken.
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 2), None);
    let forged = list(&dave, 2, &[&carol, &dave]);
    assert!(keeper.absorb(&copy, Some(&forged)).is_err());
    assert_eq!(keeper.ring().current_epoch(), 0);
    // Promoted dave, carol still listed: taken, as it is at list version 3 too.
    for version in [2, 3] {
        let keeper = Keeper::new(&bobs_entry(&bob, &owner, 2), None);
        let newer = list(&owner, version, &[&carol, &dave]);
        let current = keeper.see_list(Some(&newer));
        assert_eq!(keeper.absorb(&copy, current), Ok(()), "version {version}");
        assert_eq!(keeper.ring().get(1), Some(key));
        assert_eq!(keeper.ring().current_epoch(), 1);
        assert_eq!(keeper.admins_seen.load(Ordering::Relaxed), version);
    }
    // On the list this member has seen last, nothing else is asked.
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 1), None);
    assert_eq!(keeper.absorb(&copy, None), Ok(()));
    assert_eq!(keeper.ring().get(1), Some(key));
}

/// A connection always asks for the current epoch's copy (so it replaces a key a link gave
/// for it), and for every epoch after the newest held when behind; nothing before any
/// rotation.
#[test]
fn a_connection_asks_for_the_current_epochs_copy_too() {
    assert_eq!(keys_to_ask(0, 0), None);
    assert_eq!(keys_to_ask(3, 1), Some(1), "behind: from what it holds");
    assert_eq!(keys_to_ask(3, 3), Some(2), "level: the current one again");
    assert_eq!(
        keys_to_ask(3, 5),
        Some(2),
        "ahead (a planted epoch): the current one"
    );
}

/// `key` as epoch `epoch`, sealed to `to` and signed by the owner.
fn owners_rotation(to: &SignKeyPair, owner: &SignKeyPair, epoch: u64, key: &[u8]) -> EpochKey {
    let x = crypto::ed25519_pk_to_x25519(&to.public).expect("x25519");
    let check = key
        .try_into()
        .map(|k| root_key_check(&k))
        .unwrap_or_default();
    EpochKey {
        epoch,
        sealed: STANDARD.encode(crypto::seal(key, &x).expect("sealed")),
        proof: Some(RotationProof::sign(owner, "m1", epoch, &check, 5)),
    }
}

/// A config directory holding `entries`, and the directory's guard.
fn config_with(entries: Vec<MeshEntry>) -> (tempfile::TempDir, ConfigDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ConfigDir::new(dir.path());
    config
        .update(|c| {
            c.meshes = entries;
            Ok(())
        })
        .expect("config written");
    (dir, config)
}

fn loaded(config: &ConfigDir) -> Config {
    config.load().expect("config")
}

/// A ring holds the current key and every older one by epoch, oldest first, and its `Debug`
/// names the epochs but never a key.
#[test]
fn a_ring_holds_each_epochs_key_and_shows_no_key() {
    let (bob, owner) = (SignKeyPair::generate(), SignKeyPair::generate());
    let mut entry = bobs_entry(&bob, &owner, 0);
    entry.add_root_key(2, &[3; 32]);
    entry.add_root_key(1, &[2; 32]);
    let ring = KeyRing::from_entry(&entry);
    assert_eq!(ring.current_epoch(), 2);
    assert_eq!(
        ring.all().collect::<Vec<_>>(),
        vec![(0, [1; 32]), (1, [2; 32]), (2, [3; 32])]
    );
    assert_eq!(ring.get(1), Some([2; 32]));
    assert_eq!(ring.get(3), None);
    let shown = format!("{ring:?}");
    assert_eq!(shown, "KeyRing { current: 2, epochs: [0, 1, 2] }");
    assert!(
        missing_epoch(7).contains("key epoch 7"),
        "{}",
        missing_epoch(7)
    );
}

/// An owner-signed copy sealed to this member is taken, made current and saved; each thing
/// that can be wrong with a copy is refused with its reason, and the ring stays as it was.
#[test]
fn a_sealed_copy_is_taken_only_when_sealed_to_this_member_and_signed_for_that_key() {
    let (bob, owner, mallory) = (
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
    );
    let key: [u8; 32] = crypto::random_bytes();
    let good = owners_rotation(&bob, &owner, 1, &key);
    let mut unsigned = good.clone();
    unsigned.proof = None;
    let mut not_base64 = good.clone();
    not_base64.sealed = "%%%".into();
    let mut other_key = good.clone();
    other_key.sealed = owners_rotation(&bob, &owner, 1, &[9; 32]).sealed;
    let refused = [
        (unsigned, "no signature from the owner or an admin"),
        (
            owners_rotation(&bob, &mallory, 1, &key),
            "not the owner, and no owner-signed admin list names it",
        ),
        (not_base64, "not base64"),
        (
            owners_rotation(&mallory, &owner, 1, &key),
            "not sealed to this member",
        ),
        (
            owners_rotation(&bob, &owner, 1, &[7; 16]),
            "must be 32 bytes",
        ),
        (other_key, "not the key its rotation signed"),
    ];
    for (copy, reason) in refused {
        let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), None);
        let why = keeper.absorb(&copy, None).expect_err(reason);
        assert!(why.contains(reason), "{reason}: {why}");
        assert_eq!(keeper.ring().current_epoch(), 0, "{reason}");
        assert_eq!(keeper.ring().get(1), None, "{reason}");
    }
    let mut broken = bobs_entry(&bob, &owner, 0);
    broken.member_secret_key = "00".into();
    let why = Keeper::new(&broken, None).absorb(&good, None);
    assert_eq!(why, Err("this member's key is unusable".into()));

    let (_dir, config) = config_with(vec![bobs_entry(&bob, &owner, 0)]);
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), Some(config.clone()));
    assert_eq!(keeper.absorb(&good, None), Ok(()));
    assert_eq!(keeper.ring().current_epoch(), 1);
    assert_eq!(keeper.ring().get(1), Some(key));
    let saved = &loaded(&config).meshes[0];
    assert_eq!(saved.key_epoch, 1);
    assert_eq!(saved.root_key().ok(), Some(key));
    assert_eq!(saved.root_key_at(0), Some([1; 32]), "the old key kept");
}

/// A copy vouched for by an admin list raises the version this member has seen, in memory and
/// in its config.
#[test]
fn a_copy_vouched_by_an_admin_list_notes_its_version() {
    let (bob, owner, carol) = (
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
    );
    let key: [u8; 32] = crypto::random_bytes();
    let copy = rotation(
        &bob,
        &carol,
        AdminList::sign(&owner, "m1", 4, vec![carol.public_hex()], 5),
        &key,
    );
    let (_dir, config) = config_with(vec![bobs_entry(&bob, &owner, 1)]);
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 1), Some(config.clone()));
    assert_eq!(keeper.absorb(&copy, None), Ok(()));
    assert_eq!(keeper.admins_seen.load(Ordering::Relaxed), 4);
    assert_eq!(loaded(&config).meshes[0].admin_list_version, 4);
}

/// A sealed copy replaces a different key held for its epoch (from an invite link), in memory
/// and in the config, without lowering the current epoch; a config without this membership is
/// left as it was.
#[test]
fn a_kept_key_replaces_a_different_one_for_its_epoch_and_is_saved_to_this_membership_only() {
    let (bob, owner) = (SignKeyPair::generate(), SignKeyPair::generate());
    let mut carols = bobs_entry(&bob, &owner, 0);
    carols.member_id = "carol".into();
    let mut other_mesh = bobs_entry(&bob, &owner, 0);
    other_mesh.mesh_id = "m2".into();
    let (_dir, config) = config_with(vec![
        carols.clone(),
        bobs_entry(&bob, &owner, 0),
        other_mesh.clone(),
    ]);
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), Some(config.clone()));
    keeper.keep(2, [2; 32]);
    keeper.keep(0, [5; 32]);
    assert_eq!(keeper.ring().current_epoch(), 2, "an older epoch kept");
    assert_eq!(keeper.ring().get(0), Some([5; 32]));
    let meshes = loaded(&config).meshes;
    assert_eq!(meshes[1].key_epoch, 2);
    assert_eq!(meshes[1].root_key_at(2), Some([2; 32]));
    assert_eq!(meshes[1].root_key_at(0), Some([5; 32]));
    for (theirs, was) in [(&meshes[0], &carols), (&meshes[2], &other_mesh)] {
        assert_eq!(theirs.key_epoch, 0, "{}", theirs.member_id);
        assert_eq!(theirs.root_key, was.root_key, "{}", theirs.member_id);
    }

    // This member's entry gone from the config (left the mesh): nothing written back.
    let (_dir, config) = config_with(vec![carols.clone()]);
    let before = std::fs::read(config.config_file()).expect("config");
    Keeper::new(&bobs_entry(&bob, &owner, 0), Some(config.clone())).keep(1, [4; 32]);
    assert_eq!(std::fs::read(config.config_file()).expect("config"), before);
}

/// Only an owner-signed admin list is noted; its version is kept as the newest seen, never
/// lowered, and saved to this membership only.
#[test]
fn only_an_owner_signed_admin_list_is_noted_and_the_newest_version_kept() {
    let (bob, owner, mallory) = (
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
    );
    let mut carols = bobs_entry(&bob, &owner, 0);
    carols.member_id = "carol".into();
    let (_dir, config) = config_with(vec![bobs_entry(&bob, &owner, 0), carols]);
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), Some(config.clone()));
    let forged = AdminList::sign(&mallory, "m1", 9, Vec::new(), 5);
    assert_eq!(keeper.see_list(Some(&forged)), None);
    assert_eq!(keeper.admins_seen.load(Ordering::Relaxed), 0);
    let list = AdminList::sign(&owner, "m1", 3, Vec::new(), 5);
    assert_eq!(keeper.see_list(Some(&list)), Some(&list));
    keeper.saw_admins(2);
    assert_eq!(keeper.admins_seen.load(Ordering::Relaxed), 3);
    let versions: Vec<u64> = loaded(&config)
        .meshes
        .iter()
        .map(|m| m.admin_list_version)
        .collect();
    assert_eq!(versions, vec![3, 0], "bob's entry only");
}

/// Rotations are signed with the owner key where this machine holds it, else the member key.
#[test]
fn rotations_are_signed_with_the_owner_key_where_held() {
    let (bob, owner) = (SignKeyPair::generate(), SignKeyPair::generate());
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), None);
    assert_eq!(keeper.signer().expect("signer").public, bob.public);
    let mut owners = bobs_entry(&bob, &owner, 0);
    owners.owner_secret_key = Some(owner.secret_hex());
    let keeper = Keeper::new(&owners, None);
    assert_eq!(keeper.signer().expect("signer").public, owner.public);
    let mut broken = bobs_entry(&bob, &owner, 0);
    broken.member_secret_key = "00".into();
    assert!(Keeper::new(&broken, None).signer().is_err());
}

/// A `key_rotated` event and a `keys` answer are taken in (a bad copy skipped, the good one
/// after it kept) and claimed; other pushes and answers are left for their owners.
#[test]
fn key_events_and_keys_answers_are_taken_in_and_nothing_else() {
    let (bob, owner, mallory) = (
        SignKeyPair::generate(),
        SignKeyPair::generate(),
        SignKeyPair::generate(),
    );
    let event = |name: &str, copy: &EpochKey| {
        ServerMessage::Push(Box::new(Push {
            subtype: Some("system".into()),
            event: Some(name.into()),
            event_data: Some(serde_json::to_value(copy).expect("json")),
            ..Push::default()
        }))
    };
    let keeper = Keeper::new(&bobs_entry(&bob, &owner, 0), None);
    let copy = owners_rotation(&bob, &owner, 1, &[6; 32]);
    assert!(!keeper.take_frame(&event("peer_joined", &copy)));
    let mut not_system = event("key_rotated", &copy);
    if let ServerMessage::Push(p) = &mut not_system {
        p.subtype = None;
    }
    assert!(!keeper.take_frame(&not_system));
    assert!(!keeper.take_frame(&ServerMessage::Admins { list: None }));
    assert_eq!(keeper.ring().get(1), None, "not taken from those");
    assert!(keeper.take_frame(&event("key_rotated", &copy)));
    assert_eq!(keeper.ring().get(1), Some([6; 32]));

    let list = AdminList::sign(&owner, "m1", 2, Vec::new(), 5);
    let answer = ServerMessage::Keys {
        current: 2,
        keys: vec![
            owners_rotation(&bob, &mallory, 3, &[7; 32]),
            owners_rotation(&bob, &owner, 2, &[8; 32]),
        ],
        admins: Some(list),
    };
    assert!(keeper.take_frame(&answer));
    assert_eq!(keeper.ring().get(3), None, "mallory's copy skipped");
    assert_eq!(keeper.ring().get(2), Some([8; 32]));
    assert_eq!(keeper.ring().current_epoch(), 2);
    assert_eq!(keeper.admins_seen.load(Ordering::Relaxed), 2);
}

/// What `rotate_key`'s answer says is what the rotation reports.
#[test]
fn a_rotation_reports_the_brokers_counts() {
    let ok = RotateKeyOk {
        epoch: 4,
        members: 3,
        invites_revoked: 2,
    };
    assert_eq!(
        Rotated::from(ok),
        Rotated {
            epoch: 4,
            members: 3,
            invites_revoked: 2
        }
    );
}
