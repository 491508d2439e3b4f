//! Vector collections end to end (PROTOCOL.md §20, README "Vectors"): create, store, search,
//! filter, delete and list through the real CLI and client library against a real broker
//! process; the search graph rebuilt from redb after its files are deleted; durability across
//! restarts; meshes isolated; capability and bad input refused with reasons.

use crate::common;

use claudemesh::protocol::messages::{VectorSearch, VectorStore};
use common::*;
use serde_json::Value;

/// A `vector_store` into "docs" for the client library.
fn docs_record(id: &str, vector: Vec<f32>, metadata: Option<Value>) -> VectorStore {
    VectorStore {
        collection: "docs".into(),
        id: Some(id.into()),
        vector,
        metadata,
        text: None,
    }
}

/// `vector store docs --id ID --vector V` that must fail with exit `code`; its stderr.
fn store_fails(person: &Person, id: &str, vector: &str, code: i32) -> String {
    person.fails(
        &["vector", "store", "docs", "--id", id, "--vector", vector],
        code,
    )
}

/// The ids a search returns, nearest first.
fn search_ids(person: &Person, args: &[&str]) -> Vec<String> {
    let mut full = vec!["vector", "search"];
    full.extend_from_slice(args);
    full.push("--json");
    person.json(&full)["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// Four records in "docs" (4-d, cosine), each pointing mostly along one axis.
fn store_four(person: &Person) {
    person.ok(&[
        "vector", "create", "docs", "--dim", "4", "--metric", "cosine",
    ]);
    let records = [
        ("north", "[1, 0.1, 0, 0]", r#"{"lang": "rust", "n": 1}"#),
        ("east", "[0, 1, 0.1, 0]", r#"{"lang": "go", "n": 2}"#),
        ("south", "[0, 0, 1, 0.1]", r#"{"lang": "rust", "n": 3}"#),
        ("west", "[0.1, 0, 0, 1]", r#"{"lang": "go", "n": 4}"#),
    ];
    for (id, vector, metadata) in records {
        person.ok(&[
            "vector",
            "store",
            "docs",
            "--id",
            id,
            "--vector",
            vector,
            "--metadata",
            metadata,
            "--text",
            id,
        ]);
    }
}

#[test]
fn stored_vectors_are_found_filtered_and_deleted_across_members() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    store_four(&alice);

    // Bob finds alice's records, nearest first, with their text and metadata.
    let found = bob.json(&[
        "vector",
        "search",
        "docs",
        "--vector",
        "[0.9, 0.2, 0, 0]",
        "--limit",
        "2",
        "--json",
    ]);
    let results = found["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{found}");
    assert_eq!(results[0]["id"], "north");
    assert_eq!(results[0]["text"], "north");
    assert_eq!(results[0]["metadata"]["lang"], "rust");
    assert!(results[0]["score"].as_f64().unwrap() > 0.9, "{found}");
    assert_eq!(results[1]["id"], "east", "{found}");

    // An exact-match filter on top-level metadata keys: only "go" records, nearest first.
    let go = search_ids(
        &bob,
        &[
            "docs",
            "--vector",
            "[1, 0, 0, 0]",
            "--filter",
            r#"{"lang": "go"}"#,
        ],
    );
    assert_eq!(go, ["west", "east"]);
    let one = search_ids(
        &bob,
        &[
            "docs",
            "--vector",
            "[1, 0, 0, 0]",
            "--filter",
            r#"{"lang": "rust", "n": 3}"#,
        ],
    );
    assert_eq!(one, ["south"]);

    // Storing an existing id replaces the record.
    alice.ok(&[
        "vector",
        "store",
        "docs",
        "--id",
        "east",
        "--vector",
        "[1, 0, 0, 0.05]",
    ]);
    let near = search_ids(&bob, &["docs", "--vector", "[1, 0, 0, 0]", "--limit", "4"]);
    assert_eq!(near.len(), 4, "{near:?}");
    assert_eq!(near[0], "east", "{near:?}");

    // A deleted record is no longer found; deleting it again says it is not there.
    bob.ok(&["vector", "delete", "docs", "north"]);
    // The three records left fill a search for three, the deleted one's place included.
    let left = search_ids(
        &alice,
        &["docs", "--vector", "[1, 0.1, 0, 0]", "--limit", "3"],
    );
    assert!(!left.contains(&"north".to_string()), "{left:?}");
    assert_eq!(left.len(), 3, "{left:?}");
    let again = bob.fails(&["vector", "delete", "docs", "north"], 3);
    assert!(again.contains("no record \"north\""), "{again}");

    let list = alice.json(&["vector", "collections", "--json"]);
    let docs = &list["collections"][0];
    assert_eq!(docs["name"], "docs");
    assert_eq!(docs["dimension"], 4);
    assert_eq!(docs["metric"], "cosine");
    assert_eq!(docs["count"], 3);

    // Every write is in the audit log, by id (never the vector).
    let audit = alice.ok(&["audit", "--event", "vector.stored", "--json"]);
    assert!(audit.contains("\"west\""), "{audit}");
    let audit = alice.ok(&["audit", "--event", "vector.deleted", "--json"]);
    assert!(audit.contains("\"north\""), "{audit}");
}

#[test]
fn a_first_store_creates_the_collection_as_the_original_does() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    alice.ok(&[
        "vector", "store", "notes", "--id", "a", "--vector", "[3, 4]",
    ]);
    let list = alice.json(&["vector", "collections", "--json"]);
    assert_eq!(list["collections"][0]["name"], "notes");
    assert_eq!(list["collections"][0]["dimension"], 2);
    assert_eq!(list["collections"][0]["metric"], "cosine");
    // Creating it again with the same shape is a no-op; with another shape, refused.
    alice.ok(&["vector", "create", "notes", "--dim", "2"]);
    let e = alice.fails(&["vector", "create", "notes", "--dim", "3"], 1);
    assert!(e.contains("already exists with dimension 2"), "{e}");
}

#[test]
fn the_index_is_rebuilt_after_its_files_are_deleted_and_records_survive_restarts() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    store_four(&alice);
    alice.ok(&[
        "vector", "create", "flat", "--dim", "2", "--metric", "euclid",
    ]);
    alice.ok(&[
        "vector", "store", "flat", "--id", "origin", "--vector", "[0, 0]",
    ]);
    alice.ok(&[
        "vector", "store", "flat", "--id", "far", "--vector", "[10, 10]",
    ]);
    bob.ok(&["vector", "delete", "docs", "west"]);

    // A clean stop saves the graphs beside redb.
    broker.restart();
    let mesh_id = alice.entry().mesh_id;
    let graph_dir = broker
        .data_dir()
        .join("vectors")
        .join(&mesh_id)
        .join("docs");
    assert!(
        graph_dir.join("state.json").is_file(),
        "the graph of docs was saved in {}",
        graph_dir.display()
    );
    let near = search_ids(
        &bob,
        &["docs", "--vector", "[0, 0, 0.9, 0.3]", "--limit", "10"],
    );
    assert_eq!(near.first().map(String::as_str), Some("south"), "{near:?}");
    assert_eq!(near.len(), 3, "the deleted record stays deleted: {near:?}");

    // Stopped, its index directory removed, started: rebuilt from redb, same answers.
    let status = broker.terminate();
    assert!(status.success(), "{status}");
    std::fs::remove_dir_all(broker.data_dir().join("vectors")).expect("remove the index");
    broker.restart();
    let near = search_ids(
        &bob,
        &["docs", "--vector", "[0, 0, 0.9, 0.3]", "--limit", "10"],
    );
    assert_eq!(near.first().map(String::as_str), Some("south"), "{near:?}");
    assert_eq!(near.len(), 3, "{near:?}");
    let flat = bob.json(&["vector", "search", "flat", "--vector", "[9, 9]", "--json"]);
    assert_eq!(flat["results"][0]["id"], "far", "{flat}");
    let distance = flat["results"][0]["score"].as_f64().unwrap();
    assert!((distance - 2f64.sqrt()).abs() < 1e-4, "{flat}");

    // Killed without a chance to save: the graph on disk is behind and is rebuilt.
    alice.ok(&[
        "vector",
        "store",
        "docs",
        "--id",
        "late",
        "--vector",
        "[0, 0, 1, 0]",
    ]);
    broker.kill9();
    broker.restart();
    let near = search_ids(&bob, &["docs", "--vector", "[0, 0, 1, 0]", "--limit", "1"]);
    assert_eq!(near, ["late"]);
}

#[test]
fn another_mesh_sees_none_of_the_collections() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    store_four(&alice);
    let carol = Person::new("carol");
    create_mesh(&broker, &carol, "other");
    let list = carol.json(&["vector", "collections", "--json"]);
    assert_eq!(list["collections"], Value::Array(vec![]), "{list}");
    let e = carol.fails(&["vector", "search", "docs", "--vector", "[1, 0, 0, 0]"], 3);
    assert!(e.contains("no collection \"docs\""), "{e}");
    // Its own "docs" is its own: another dimension, no records of alice's.
    carol.ok(&[
        "vector",
        "store",
        "docs",
        "--id",
        "c",
        "--vector",
        "[1, 2, 3]",
    ]);
    let found = search_ids(&carol, &["docs", "--vector", "[1, 2, 3]", "--limit", "10"]);
    assert_eq!(found, ["c"]);
    assert_eq!(
        search_ids(
            &alice,
            &["docs", "--vector", "[1, 0, 0, 0]", "--limit", "10"]
        )
        .len(),
        4
    );
}

#[test]
fn writes_need_the_state_capability() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    store_four(&alice);
    alice.ok(&["perms", "set", "bob", "-state"]);
    let e = bob.fails(
        &[
            "vector",
            "store",
            "docs",
            "--id",
            "x",
            "--vector",
            "[1, 0, 0, 0]",
        ],
        1,
    );
    assert!(e.contains("\"state\" capability"), "{e}");
    let e = bob.fails(&["vector", "delete", "docs", "north"], 1);
    assert!(e.contains("\"state\" capability"), "{e}");
    // Reading stays open to every member.
    assert_eq!(
        search_ids(&bob, &["docs", "--vector", "[1, 0, 0, 0]", "--limit", "1"]),
        ["north"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_reason_and_the_broker_keeps_serving() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    alice.ok(&["vector", "create", "docs", "--dim", "3"]);

    // Refused by the CLI before it connects.
    let e = store_fails(&alice, "a", "[1, NaN, 2]", 2);
    assert!(e.contains("not valid JSON"), "{e}");
    let e = store_fails(&alice, "a", "[1, \"x\", 2]", 2);
    assert!(e.contains("vector[1]"), "{e}");

    // Refused by the broker.
    let e = store_fails(&alice, "a", "[1, 2]", 1);
    assert!(e.contains("3-dimension") && e.contains("has 2"), "{e}");
    let e = alice.fails(&["vector", "search", "docs", "--vector", "[1, 2, 3, 4]"], 1);
    assert!(e.contains("3-dimension") && e.contains("has 4"), "{e}");
    let e = alice.fails(&["vector", "create", "big", "--dim", "5000"], 1);
    assert!(e.contains("1 to 4096"), "{e}");
    let e = alice.fails(
        &[
            "vector",
            "create",
            "m",
            "--dim",
            "3",
            "--metric",
            "manhattan",
        ],
        1,
    );
    assert!(e.contains("cosine, dot, euclid"), "{e}");
    let e = alice.fails(&["vector", "create", "../up", "--dim", "3"], 1);
    assert!(e.contains("collection name"), "{e}");
    let e = store_fails(&alice, "z", "[0, 0, 0]", 1);
    assert!(e.contains("no direction"), "{e}");

    let client = alice.client().await;
    let huge = client
        .vector_store(docs_record("h", vec![1.0, 1e20, 0.0], None))
        .await
        .expect_err("a number past ±1e15 is refused");
    assert!(huge.to_string().contains("vector[1]"), "{huge}");
    let not_object = client
        .vector_store(docs_record(
            "m",
            vec![1.0, 0.0, 0.0],
            Some(serde_json::json!([1, 2])),
        ))
        .await
        .expect_err("metadata must be an object");
    assert!(
        not_object
            .to_string()
            .contains("metadata must be a JSON object"),
        "{not_object}"
    );
    let big_meta = serde_json::json!({ "blob": "x".repeat(9000) });
    let too_big = client
        .vector_store(docs_record("b", vec![1.0, 0.0, 0.0], Some(big_meta)))
        .await
        .expect_err("metadata is bounded");
    assert!(
        too_big.to_string().contains("the most is 8192"),
        "{too_big}"
    );
    let limit = client
        .vector_search(VectorSearch {
            collection: "docs".into(),
            vector: vec![1.0, 0.0, 0.0],
            limit: Some(1000),
            filter: None,
        })
        .await
        .expect_err("limit is bounded");
    assert!(limit.to_string().contains("1 to 100"), "{limit}");

    // Still serving, nothing stored by the refused requests.
    client
        .vector_store(docs_record("ok", vec![1.0, 0.0, 0.0], None))
        .await
        .expect("a good store");
    let found = client
        .vector_search(VectorSearch {
            collection: "docs".into(),
            vector: vec![1.0, 0.0, 0.0],
            limit: Some(10),
            filter: None,
        })
        .await
        .expect("search");
    let ids: Vec<&str> = found.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["ok"]);
    client.close().await;
}

#[test]
fn a_deleted_collection_is_gone_with_its_records_and_index() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    store_four(&alice);
    alice.ok(&["vector", "create", "keep", "--dim", "2"]);
    let info = bob.json(&["info", "--json"]);
    assert_eq!(
        info["collections"],
        serde_json::json!(["docs", "keep"]),
        "{info}"
    );

    // Deleting a collection is a write: it needs the state capability.
    alice.ok(&["perms", "set", "bob", "-state"]);
    let e = bob.fails(&["vector", "delete-collection", "docs"], 1);
    assert!(e.contains("\"state\" capability"), "{e}");
    assert_eq!(
        search_ids(&bob, &["docs", "--vector", "[1, 0, 0, 0]"]).len(),
        4
    );

    // A clean restart saves docs' index beside redb; deleting the collection removes it all.
    broker.restart();
    assert_eq!(
        search_ids(&bob, &["docs", "--vector", "[1, 0, 0, 0]"]).len(),
        4
    );
    let done = alice.json(&["vector", "delete-collection", "docs", "--json"]);
    assert_eq!(done["deleted"], true, "{done}");
    let list = bob.json(&["vector", "collections", "--json"]);
    let names: Vec<&str> = list["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["keep"], "{list}");
    assert_eq!(
        bob.json(&["info", "--json"])["collections"],
        serde_json::json!(["keep"])
    );
    let e = bob.fails(&["vector", "search", "docs", "--vector", "[1, 0, 0, 0]"], 3);
    assert!(e.contains("no collection \"docs\""), "{e}");
    let e = alice.fails(&["vector", "delete-collection", "docs"], 3);
    assert!(e.contains("no collection \"docs\""), "{e}");
    let log = alice.ok(&["audit", "--event", "vector.collection_deleted", "--json"]);
    assert!(log.contains("\"docs\""), "{log}");

    // A new collection under the same name starts empty: as many changes as the old one had,
    // then a crash (no save at shutdown), and nothing of the old records comes back.
    alice.ok(&["vector", "create", "docs", "--dim", "4"]);
    for (id, v) in [
        ("a", "[0, 0, 0, 1]"),
        ("b", "[0, 0, 1, 1]"),
        ("c", "[0, 1, 1, 1]"),
        ("d", "[1, 1, 1, 1]"),
    ] {
        alice.ok(&["vector", "store", "docs", "--id", id, "--vector", v]);
    }
    broker.kill9();
    broker.restart();
    let near = search_ids(&bob, &["docs", "--vector", "[0, 0, 0, 1]", "--limit", "4"]);
    assert_eq!(near, ["a", "b", "c", "d"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_tools_store_and_search_vectors() {
    use common::mcp::{call, mcp_process};
    use rmcp::ServiceExt;
    use serde_json::json;

    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    store_four(&alice);
    let mcp = ().serve(mcp_process(&bob)).await.expect("MCP handshake");
    // The MCP server connects to the broker after its handshake.
    eventually("bob's MCP server to connect", || async {
        call(&mcp, "list_collections", json!({})).await.0
    })
    .await;
    let (ok, out) = call(
        &mcp,
        "vector_store",
        json!({"collection": "docs", "id": "mcp-1", "vector": [0.7, 0.7, 0, 0],
               "metadata": {"lang": "rust"}, "text": "from MCP"}),
    )
    .await;
    assert!(ok && out.contains("mcp-1"), "{out}");
    let (ok, out) = call(
        &mcp,
        "vector_search",
        json!({"collection": "docs", "vector": [0.7, 0.7, 0, 0], "limit": 2,
               "filter": {"lang": "rust"}}),
    )
    .await;
    assert!(ok, "{out}");
    let got: Value = serde_json::from_str(out.split("\n\n[").next().unwrap()).expect("JSON");
    let results = got["results"].as_array().expect("results");
    assert_eq!(results[0]["id"], "mcp-1", "{got}");
    assert_eq!(results[0]["text"], "from MCP", "{got}");
    assert_eq!(results[1]["id"], "north", "{got}");
    // A wrong dimension is refused with the reason.
    let (ok, out) = call(
        &mcp,
        "vector_search",
        json!({"collection": "docs", "vector": [1, 0]}),
    )
    .await;
    assert!(!ok && out.contains("4-dimension"), "{out}");
    mcp.cancel().await.ok();
    // Alice's CLI sees what bob stored through MCP.
    assert_eq!(
        search_ids(
            &alice,
            &["docs", "--vector", "[0.7, 0.7, 0, 0]", "--limit", "1"]
        ),
        ["mcp-1"]
    );
}

/// `n` deterministic 16-dimension vectors, far enough apart that each is its own nearest.
fn spread_vectors(n: usize) -> Vec<Vec<f32>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            (0..16)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

/// Searches "docs" for each vector and returns the ids found first, in order.
async fn nearest_each(
    client: &claudemesh::client::MeshClient,
    vectors: &[Vec<f32>],
) -> Vec<String> {
    let mut out = Vec::new();
    for v in vectors {
        let found = client
            .vector_search(VectorSearch {
                collection: "docs".into(),
                vector: v.clone(),
                limit: Some(1),
                filter: None,
            })
            .await
            .expect("search");
        out.push(found.first().map(|r| r.id.clone()).unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn an_index_behind_redb_is_rebuilt_whether_older_or_truncated() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    // More records than a search takes candidates from the index (40): a search that finds a
    // record must have found it in the index.
    let vectors = spread_vectors(90);
    let ids: Vec<String> = (0..vectors.len()).map(|i| format!("r{i}")).collect();
    let client = alice.client().await;
    for (id, v) in ids.iter().zip(&vectors).take(60) {
        client
            .vector_store(docs_record(id, v.clone(), None))
            .await
            .expect("store");
    }
    client.close().await;

    // A clean stop saves the index of the first 60; a copy of it is kept.
    broker.restart();
    let index_dir = broker
        .data_dir()
        .join("vectors")
        .join(alice.entry().mesh_id)
        .join("docs");
    let older = tempfile::tempdir().expect("temp dir");
    for file in ["index.usearch", "state.json"] {
        std::fs::copy(index_dir.join(file), older.path().join(file)).expect("copy the index");
    }

    // 30 more records and 5 deletions, saved by a clean stop, then the older copy put back.
    let client = alice.client().await;
    for (id, v) in ids.iter().zip(&vectors).skip(60) {
        client
            .vector_store(docs_record(id, v.clone(), None))
            .await
            .expect("store");
    }
    for id in &ids[..5] {
        client.vector_delete("docs", id).await.expect("delete");
    }
    client.close().await;
    let status = broker.terminate();
    assert!(status.success(), "{status}");
    for file in ["index.usearch", "state.json"] {
        std::fs::copy(older.path().join(file), index_dir.join(file)).expect("restore the copy");
    }
    broker.restart();

    // Every record is found by its own vector; the deleted ones are not.
    let client = alice.client().await;
    let found = nearest_each(&client, &vectors).await;
    assert_eq!(found[5..], ids[5..], "every live record is found");
    for (i, id) in found[..5].iter().enumerate() {
        assert_ne!(id, &ids[i], "a deleted record stays deleted");
    }
    client.close().await;

    // Stopped, the index file cut to half its length (its state file intact): rebuilt.
    let status = broker.terminate();
    assert!(status.success(), "{status}");
    let file = index_dir.join("index.usearch");
    let len = std::fs::metadata(&file).expect("index file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate the index");
    broker.restart();
    let client = alice.client().await;
    let found = nearest_each(&client, &vectors).await;
    assert_eq!(found[5..], ids[5..], "every live record is found");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_past_its_vector_byte_quota_is_refused_until_it_deletes() {
    // Each record below weighs 2 (id) + 4 × 4 (vector) + 1000 (text) = 1018 bytes: four fit.
    let mut broker = BrokerProc::start(&["--max-vector-bytes", "4096"]);
    let (alice, _bob) = alice_and_bob(&broker);
    let text = "t".repeat(1000);
    let store = |id: &str| {
        let mut args = vec!["vector", "store", "docs", "--id", id];
        args.extend(["--vector", "[1, 2, 3, 4]", "--text", text.as_str()]);
        alice.run(&args)
    };
    for id in ["r0", "r1", "r2", "r3"] {
        let out = store(id);
        assert_eq!(out.code, 0, "{id}: {}", out.stderr);
    }
    let refused = store("r4");
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("4096 bytes") && refused.stderr.contains("--max-vector-bytes"),
        "{}",
        refused.stderr
    );
    // Metadata counts too: a small record with large metadata is refused as well.
    let meta = format!(r#"{{"blob": "{}"}}"#, "m".repeat(200));
    let e = alice.fails(
        &[
            "vector",
            "store",
            "docs",
            "--id",
            "m",
            "--vector",
            "[1, 0, 0, 0]",
            "--metadata",
            &meta,
        ],
        1,
    );
    assert!(e.contains("--max-vector-bytes"), "{e}");
    // Nothing of the refused records was stored.
    assert_eq!(
        search_ids(
            &alice,
            &["docs", "--vector", "[1, 2, 3, 4]", "--limit", "10"]
        )
        .len(),
        4
    );

    // The usage is kept in redb: still refused after a restart; a deletion makes room.
    broker.restart();
    assert_eq!(store("r4").code, 1);
    alice.ok(&["vector", "delete", "docs", "r0"]);
    let out = store("r4");
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Replacing a record by a smaller one is allowed at the quota.
    alice.ok(&[
        "vector",
        "store",
        "docs",
        "--id",
        "r1",
        "--vector",
        "[1, 2, 3, 4]",
    ]);
    let list = alice.json(&["vector", "collections", "--json"]);
    assert_eq!(list["collections"][0]["count"], 4, "{list}");
}
