use super::*;
use crate::store::test_store;

/// A mesh `team` with its owner `alice` (owner key `[1; 32]`, member key `[2; 32]`), for the
/// store's unit tests.
pub(crate) async fn test_mesh(store: &Store) -> (Mesh, Member) {
    store
        .create_mesh(CreateMesh {
            name: "team".into(),
            owner_pubkey: Pubkey([1; 32]),
            root_key_check: None,
            member_pubkey: Pubkey([2; 32]),
            display_name: "alice".into(),
            group_bodies: Default::default(),
            group_bodies_proof: None,
            now_ms: 1,
        })
        .await
        .expect("a mesh")
}

/// A live member `name` of `mesh` with `role` and the key `[key; 32]`, stored, for the store's
/// unit tests.
pub(crate) async fn test_member(
    store: &Store,
    mesh: &Mesh,
    name: &str,
    role: MemberRole,
    key: u8,
) -> Member {
    let member = Member {
        id: format!("{name}-id"),
        mesh_id: mesh.id.clone(),
        pubkey: Pubkey([key; 32]),
        display_name: name.into(),
        role,
        joined_at_ms: 1,
        revoked_at_ms: None,
        groups: Vec::new(),
        last_seen_at_ms: None,
        last_summary: None,
        invite_code: None,
    };
    stored(store, member).await
}

/// `member`, stored again as revoked, for the store's unit tests.
pub(crate) async fn test_revoked(store: &Store, mut member: Member) -> Member {
    member.revoked_at_ms = Some(2);
    stored(store, member).await
}

/// Writes `member`'s row as it is; returns it.
async fn stored(store: &Store, member: Member) -> Member {
    let row = member.clone();
    store
        .write(move |tx| insert_member(tx, &row))
        .await
        .expect("a member stored");
    member
}

#[test]
fn slugs_are_readable() {
    assert_eq!(slugify("My Team!"), "my-team");
    assert_eq!(slugify("  "), "mesh");
    assert_eq!(slugify("a--b"), "a-b");
}

/// A mesh holds at most `MAX_UNEXPIRED_INVITES` invites that have not expired; expired ones
/// are dropped to make room.
#[tokio::test]
async fn unexpired_invites_are_bounded_and_expired_ones_make_room() {
    let (_dir, store) = test_store();
    let (mesh, owner) = test_mesh(&store).await;
    let now_ms = 10_000_000;
    let invite = |n: usize, expires_at_s: i64| Invite {
        id: format!("id{n}"),
        code: format!("code{n}"),
        mesh_id: mesh.id.clone(),
        role: MemberRole::Member,
        max_uses: 1,
        used: 0,
        expires_at_s,
        created_by: owner.id.clone(),
        created_at_ms: now_ms,
        revoked: false,
        signer_pubkey: Some(mesh.owner_pubkey),
        canonical: String::new(),
        signature: String::new(),
    };
    let create = |i: Invite| store.create_invite(i, owner.id.clone(), now_ms);
    create(invite(0, 1)).await.unwrap().expect("an expired one");
    let all = (1..MAX_UNEXPIRED_INVITES).map(|n| create(invite(n, 4_000_000_000)));
    for made in futures_util::future::join_all(all).await {
        made.unwrap().expect("room for it");
    }
    // The expired invite's id goes with it: a new invite may take it.
    let mut last = invite(MAX_UNEXPIRED_INVITES, 4_000_000_000);
    last.id = "id0".into();
    create(last)
        .await
        .unwrap()
        .expect("the expired one made room");
    assert!(
        store.invite("code0").unwrap().is_none(),
        "the expired one is gone"
    );
    let over = create(invite(MAX_UNEXPIRED_INVITES + 1, 4_000_000_000)).await;
    assert_eq!(over.unwrap(), Err(InviteRefusal::TooMany));
}

/// An owner revokes its own mesh's invites, an admin's too, and only those: not another
/// mesh's, even knowing the code.
#[tokio::test]
async fn an_invite_is_revoked_only_from_its_own_mesh() {
    let (_dir, store) = test_store();
    let (mesh, owner) = test_mesh(&store).await;
    let (other, other_owner) = test_mesh(&store).await;
    // An admin's invite: its owner may revoke it too.
    let admin = test_member(&store, &mesh, "carol", MemberRole::Admin, 4).await;
    let invite = Invite {
        id: "id1".into(),
        code: "code1".into(),
        mesh_id: mesh.id.clone(),
        role: MemberRole::Member,
        max_uses: 1,
        used: 0,
        expires_at_s: 4_000_000_000,
        created_by: admin.id.clone(),
        created_at_ms: 1,
        revoked: false,
        signer_pubkey: Some(admin.pubkey),
        canonical: String::new(),
        signature: String::new(),
    };
    store
        .create_invite(invite, admin.id.clone(), 1)
        .await
        .unwrap()
        .unwrap();
    let code = || InviteRef::Code("code1".into());
    let by_other = store.revoke_invite(other.id.clone(), code(), other_owner.id.clone(), 2);
    assert!(matches!(
        by_other.await.unwrap(),
        Err(RevokeError::NotFound)
    ));
    assert!(!store.invite("code1").unwrap().unwrap().revoked);
    let by_owner = store.revoke_invite(mesh.id.clone(), code(), owner.id.clone(), 3);
    assert!(by_owner.await.unwrap().unwrap().revoked);
    // The revocation is audited once; revoking it again changes nothing and adds nothing.
    let filter = crate::store::audit::AuditFilter {
        event: Some("invite.revoked".into()),
        limit: 10,
        ..Default::default()
    };
    let audited = || store.audit_page(&mesh.id, &filter).unwrap();
    assert_eq!(audited().total, 1, "{:?}", audited().records);
    assert_eq!(audited().records[0].payload["inviteId"], "id1");
    let again = store.revoke_invite(mesh.id.clone(), code(), owner.id.clone(), 4);
    assert!(again.await.unwrap().unwrap().revoked);
    assert_eq!(audited().total, 1, "{:?}", audited().records);
}

/// Only a live owner or admin may prove the root key and so delete the broker's stored copy:
/// a plain member, or a revoked admin, holding the key file (an ex-admin's laptop) is refused
/// and the copy stays.
#[tokio::test]
async fn only_a_live_manager_drops_the_stored_root_key() {
    let (_dir, store) = test_store();
    let (mut mesh, owner) = test_mesh(&store).await;
    let root = [9u8; 32];
    mesh.legacy_root_key = Some(crate::identity::encode_root_key(&root));
    let row = mesh.clone();
    store
        .write(move |tx| {
            let mut meshes = tx.open_table(MESHES)?;
            meshes.insert(row.id.as_str(), encode(&row).as_slice())?;
            Ok(())
        })
        .await
        .unwrap();
    let plain = test_member(&store, &mesh, "bob", MemberRole::Member, 3).await;
    let revoked = test_member(&store, &mesh, "carol", MemberRole::Admin, 4).await;
    let revoked = test_revoked(&store, revoked).await;
    let check = crate::identity::root_key_check(&root);
    let prove =
        |by: &Member| store.prove_root_key(mesh.id.clone(), by.id.clone(), check.clone(), 3);
    assert_eq!(prove(&plain).await.unwrap(), RootKeyProof::Forbidden);
    assert_eq!(prove(&revoked).await.unwrap(), RootKeyProof::Forbidden);
    let held = || store.mesh(&mesh.id).unwrap().unwrap().legacy_root_key;
    assert!(held().is_some(), "refused proofs leave the copy");
    assert_eq!(prove(&owner).await.unwrap(), RootKeyProof::Dropped);
    assert_eq!(held(), None);
}
