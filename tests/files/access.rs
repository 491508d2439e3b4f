//! Who sees and changes a file: `file list`'s filters, expiry before the sweeper, who may
//! delete, and who may grant an encrypted file.

use std::time::Duration;

use super::{file_list, list_ids, listed, seconds_until, share, stored_blobs};
use crate::common::*;
use claudemesh::client::files::ShareOptions;
use claudemesh::crypto;

/// `file list` narrows by `--query` (a name or a tag containing it, in any case) and by
/// `--from` (the uploader's name in any case, with or without `@`, or 8 or more characters of
/// its key); a blank one narrows nothing.
#[tokio::test(flavor = "multi_thread")]
async fn file_list_narrows_by_name_tag_and_uploader() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let (notes, log) = (dir.path().join("notes.txt"), dir.path().join("build.log"));
    std::fs::write(&notes, "n\n").expect("write");
    std::fs::write(&log, "l\n").expect("write");
    let notes_id = share(&alice, &notes, &["--tags", "Spec"]);
    let log_id = share(&bob, &log, &[]);
    let listed_with = |args: &[&str]| {
        let mut all = vec!["file", "list", "--json"];
        all.extend_from_slice(args);
        let mut ids: Vec<String> = (alice.json(&all)["files"].as_array().expect("files"))
            .iter()
            .map(|f| f["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![notes_id.clone(), log_id.clone()];
    both.sort();

    let (notes_only, log_only) = (vec![notes_id], vec![log_id]);
    assert_eq!(listed_with(&["--query", "NOTES"]), notes_only);
    assert_eq!(listed_with(&["--query", "spec"]), notes_only, "by a tag");
    assert_eq!(listed_with(&["--query", "  "]), both, "a blank query");
    assert_eq!(listed_with(&["--from", "@Bob"]), log_only);
    let bob_key = bob.entry().member_pubkey;
    assert_eq!(listed_with(&["--from", &bob_key[..8]]), log_only);
    assert!(
        listed_with(&["--from", &bob_key[..7]]).is_empty(),
        "7 characters of a key name no one"
    );
    assert_eq!(listed_with(&["--from", " "]), both, "a blank uploader");
}

/// An ephemeral file is gone for everyone the moment its lifetime ends, not only once the
/// sweeper has removed it. Restarted with a lifetime of an hour, the broker sweeps at start and
/// then once a minute; the file, given 15 s when it was shared, expires in between.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_file_is_neither_listed_nor_served_before_the_sweeper_removes_it() {
    let mut broker = BrokerProc::start(&["--ephemeral-ttl", "15s"]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let brief = dir.path().join("brief.txt");
    std::fs::write(&brief, "goes away\n").expect("write");
    let id = share(&alice, &brief, &["--ephemeral"]);
    let expires = listed(&alice, &id)["expiresAt"]
        .as_str()
        .expect("an expiry")
        .to_string();
    broker.restart_with(&["--ephemeral-ttl", "1h"]);
    assert!(
        seconds_until(&expires) > 0,
        "the file expired before the broker was back (a machine this slow cannot show this)"
    );

    // Wait out the file's lifetime: an instant the broker set, not an event to wait for.
    let left = seconds_until(&expires).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_secs(left)).await;
    assert!(!list_ids(&alice).contains(&id), "an expired file is listed");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let get = bob.run(&["file", "get", &id, "--out", out.to_str().expect("utf-8")]);
    assert_eq!(get.code, 3, "an expired file was served: {get:?}");
    assert!(get.stderr.contains("no file"), "{}", get.stderr);
    let status = alice.run(&["file", "status", &id]);
    assert_eq!(status.code, 3, "an expired file has a status: {status:?}");
    // Its bytes are still stored: the refusals above were the broker's check, not the sweep.
    assert_eq!(
        stored_blobs(&broker).len(),
        1,
        "the sweeper came by meanwhile"
    );
}

/// A file is deleted by its uploader or by a mesh owner or admin, and by no other member; the
/// `ack{ok:true}` names the file in `id` and `messageId`, as the original broker's does.
#[tokio::test(flavor = "multi_thread")]
async fn the_uploader_an_owner_or_an_admin_deletes_a_file_and_no_other_member() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "n\n").expect("write");
    let (bobs, alices, carols) = (
        share(&bob, &path, &[]),
        share(&alice, &path, &[]),
        share(&carol, &path, &[]),
    );

    let refused = bob.run(&["file", "delete", &alices]);
    assert_eq!(
        refused.code, 1,
        "a member deleted the owner's file: {refused:?}"
    );
    assert!(refused.stderr.contains("uploader"), "{}", refused.stderr);
    // bob, a member, deletes his own; the answer as the original broker gives it.
    let (mut ws, _) = ws_hello(&broker, &member_hello(&bob.entry())).await;
    let delete = serde_json::json!({"type": "delete_file", "_reqId": "d1", "fileId": bobs});
    ws_send(&mut ws, &delete).await;
    let ack = ws_recv_reply(&mut ws).await;
    assert_eq!(
        (&ack["type"], &ack["ok"]),
        (&"ack".into(), &true.into()),
        "{ack}"
    );
    assert_eq!(
        (&ack["id"], &ack["messageId"]),
        (&delete["fileId"], &delete["fileId"])
    );
    // carol, an admin, deletes the owner's; alice, the owner, the admin's.
    assert_eq!(carol.run(&["file", "delete", &alices]).code, 0);
    assert_eq!(alice.run(&["file", "delete", &carols]).code, 0);
    assert!(list_ids(&alice).is_empty(), "{:?}", list_ids(&alice));
    assert!(stored_blobs(&broker).is_empty());
}

/// An encrypted file an agent session shared (its owner key is the session's) is its member's
/// too: the member grants it from the command line; another member may not, from the command
/// line or from a session of theirs.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_a_session_shared_encrypted_is_granted_by_its_member() {
    use claudemesh::client::files::ShareOptions;
    use claudemesh::client::{ConnectOptions, Identity, MeshClient};
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let session = MeshClient::connect(ConnectOptions {
        identity: Identity::Session(crypto::SignKeyPair::generate()),
        ..ConnectOptions::new(alice.entry(), peer_info("alice-agent"))
    })
    .await
    .expect("alice's session connects");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plan.txt");
    std::fs::write(&path, "the plan\n").expect("write");
    let bob_key = claudemesh::protocol::Pubkey::parse(&bob.entry().member_pubkey).expect("key");
    let options = ShareOptions {
        recipients: vec![bob_key],
        ..Default::default()
    };
    let shared = (session.share_file(&path, options, &|_, _| {}).await).expect("shared");

    let not_owner = bob.run(&["file", "grant", &shared.file_id, "carol"]);
    assert_eq!(
        not_owner.code, 1,
        "a recipient granted the file: {not_owner:?}"
    );
    // Nor from a session of his (a session key, not the file's).
    let bobs_session = MeshClient::connect(ConnectOptions {
        identity: Identity::Session(crypto::SignKeyPair::generate()),
        ..ConnectOptions::new(bob.entry(), peer_info("bob-agent"))
    })
    .await
    .expect("bob's session connects");
    let carol_key = claudemesh::protocol::Pubkey::parse(&carol.entry().member_pubkey).expect("key");
    let refused = bobs_session
        .grant_file_access(&shared.file_id, &carol_key)
        .await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("owner")),
        "a recipient's session granted the file: {refused:?}"
    );
    let granted = alice.run(&["file", "grant", &shared.file_id, "carol"]);
    assert_eq!(
        granted.code, 0,
        "the session's member may grant: {granted:?}"
    );
    let out = dir.path().join("carol");
    std::fs::create_dir(&out).expect("out dir");
    let got = carol.run(&[
        "file",
        "get",
        &shared.file_id,
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert_eq!(got.code, 0, "{got:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("plan.txt")).expect("saved"),
        "the plan\n"
    );
}

/// `file list` shows a member the files it may read: not one encrypted for others, nor a
/// plain one shared with another member alone (as `deploy --dir` shares its archive with its
/// deployer). Their uploader and recipients see them, and so do the owner and admins, who may
/// delete any file.
#[tokio::test(flavor = "multi_thread")]
async fn file_list_shows_a_member_only_the_files_it_may_read() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let dave = invited(&alice, "dave");
    let eve = invited(&alice, "eve");
    let dir = tempfile::tempdir().expect("temp dir");
    for name in ["open.txt", "for-dave.txt", "own.tar"] {
        std::fs::write(dir.path().join(name), name).expect("write");
    }
    share(&bob, &dir.path().join("open.txt"), &[]);
    share(&bob, &dir.path().join("for-dave.txt"), &["--to", "dave"]);
    let own = bob.client().await;
    own.share_file(
        &dir.path().join("own.tar"),
        ShareOptions {
            target_spec: Some(bob.entry().member_pubkey),
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .expect("a plain file for bob alone");
    let names = |person: &Person| {
        let mut names: Vec<String> = (file_list(person).iter())
            .map(|f| f["name"].as_str().expect("name").to_string())
            .collect();
        names.sort();
        names
    };
    let all = ["for-dave.txt", "open.txt", "own.tar"];
    assert_eq!(names(&bob), all, "the uploader");
    assert_eq!(names(&dave), ["for-dave.txt", "open.txt"], "a recipient");
    assert_eq!(names(&eve), ["open.txt"], "another member");
    assert_eq!(names(&alice), all, "the owner");
    assert_eq!(names(&carol), all, "an admin");
}
