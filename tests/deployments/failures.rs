//! Deploys that fail: the service's own words reach its log, and nothing of a refused or failed
//! deploy stays behind (no archive in the mesh's files, no directory on the broker).

use super::*;

/// A directory holding a node service that cannot start: it says why on stderr and exits.
fn crashing_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("index.js"),
        "console.error(\"CRASH-REASON: missing config X\");\nprocess.exit(3);\n",
    )
    .expect("write the service");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_cannot_start_leaves_its_reason_in_its_log() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dir = crashing_dir();
    let out = alice.run(&["deploy", "crash", "--dir", dir.path().to_str().unwrap()]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    assert_ne!(out.code, 0, "it did not start: {}", out.stdout);
    let logs = alice.ok(&["deployments", "logs", "crash"]);
    let reason = logs.find("CRASH-REASON: missing config X");
    let failed = logs.find("cannot start");
    assert!(reason.is_some(), "its stderr is its log:\n{logs}");
    assert!(reason < failed, "its reason comes first:\n{logs}");
}

/// A service deployed (mesh-wide) that does not run: a caller is pointed at
/// `deployments status`, a command that exists and that he may run.
#[tokio::test(flavor = "multi_thread")]
async fn a_caller_of_a_service_that_is_down_is_told_a_real_command() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = crashing_dir();
    let path = dir.path().to_str().unwrap();
    let out = alice.run(&["deploy", "crash", "--dir", path, "--scope", "mesh"]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    let said = bob.refused(&["tools", "call", "crash", "anything", "{}"]);
    assert!(
        said.contains("claudemesh deployments status crash"),
        "{said}"
    );
    let status = bob.run(&["deployments", "status", "crash"]);
    assert!(status.stderr.contains("crash did not start"), "{status:?}");
}

/// The names of the archives in the mesh's files that `person` sees.
fn archives(person: &Person) -> Vec<String> {
    let listed = person.json(&["file", "list", "--json"]);
    let files = listed["files"].as_array().cloned().unwrap_or_default();
    files
        .iter()
        .filter_map(|f| f["name"].as_str())
        .filter(|n| n.ends_with(".tar"))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_name_is_refused_before_anything_is_uploaded() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dir = service_dir();
    let said = alice.refused(&["deploy", "../x", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        said.contains("server_name \"../x\"") && said.contains("letters, digits, - and _"),
        "{said}"
    );
    assert!(!said.contains("No such file"), "{said}");
    assert_eq!(archives(&alice), Vec::<String>::new());
}

/// A member without the `deploy` capability is told so before his directory is packed or
/// uploaded: the owner's audit log shows no file of his, neither shared nor deleted again.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_deploy_uploads_nothing() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = service_dir();
    let said = bob.refused(&["deploy", "mine", "--dir", dir.path().to_str().unwrap()]);
    assert!(
        said.contains("lacks the \"deploy\" capability")
            && said.contains("claudemesh perms set bob +deploy"),
        "{said}"
    );
    let uploads = file_events(&alice);
    assert!(uploads.is_empty(), "bob uploaded: {uploads:#?}");
}

/// The mesh's audit log entries about files (shared, deleted), as `owner` reads it.
fn file_events(owner: &Person) -> Vec<Value> {
    let log = owner.json(&["audit", "--json"]);
    (log["entries"].as_array().expect("entries").iter())
        .filter(|e| {
            e["eventType"]
                .as_str()
                .is_some_and(|t| t.starts_with("file."))
        })
        .cloned()
        .collect()
}

/// What the broker can refuse before it has the code is refused before anything is packed or
/// uploaded: with no sandbox, and at the mesh's services quota, no file is shared at all.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_the_broker_knows_in_advance_come_before_the_upload() {
    let dir = service_dir();
    let path = dir.path().to_str().unwrap();
    let broker = BrokerProc::start_with_env(&[], &[("PATH", "/nonexistent")]);
    let (alice, _bob) = alice_and_bob(&broker);
    let said = alice.refused(&["deploy", "svc", "--dir", path]);
    assert!(said.contains("--allow-unsandboxed-services"), "{said}");
    let uploads = file_events(&alice);
    assert!(uploads.is_empty(), "uploaded: {uploads:#?}");
    let broker = BrokerProc::start(&["--max-services", "0", "--allow-unsandboxed-services"]);
    let (alice, _bob) = alice_and_bob(&broker);
    let said = alice.refused(&["deploy", "svc", "--dir", path]);
    assert!(said.contains("--max-services"), "{said}");
    let uploads = file_events(&alice);
    assert!(uploads.is_empty(), "uploaded: {uploads:#?}");
}

/// `deploy --dir` uploads the code for its deployer alone, whatever the service's scope: only
/// he (and the owner and admins, who may delete any file) sees its archive in `file list`, and
/// the archive goes when the deploy is refused or the service is undeployed.
#[tokio::test(flavor = "multi_thread")]
async fn a_directorys_code_is_readable_by_its_deployer_alone_and_does_not_pile_up() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let dir = service_dir();
    let path = dir.path().to_str().unwrap();
    let out = alice.run(&["deploy", "svc", "--dir", path, "--scope", "mesh"]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(archives(&bob), Vec::<String>::new(), "bob cannot read it");
    assert_eq!(archives(&carol), vec!["svc.tar".to_string()], "an admin");
    let listed = alice.json(&["file", "list", "--json"]);
    let id = listed["files"][0]["id"]
        .as_str()
        .or(listed["files"][0]["fileId"].as_str())
        .unwrap_or_else(|| panic!("the archive's id in {listed}"))
        .to_string();
    let out_dir = tempfile::tempdir().unwrap();
    let said = bob.refused(&[
        "file",
        "get",
        &id,
        "--out",
        out_dir.path().to_str().unwrap(),
    ]);
    assert!(said.contains("not with you"), "{said}");
    assert!(!contains_file(out_dir.path(), "svc.tar"));
    // The service still runs for everyone, and its deployer updates it from its archive.
    assert!(
        bob.ok(&["tools", "call", "svc", "echo", r#"{"text":"hi"}"#])
            .contains("echo: hi")
    );
    alice.ok(&["deployments", "update", "svc"]);
    // An admin fetches it again too: the broker reads the deployer's own archive for him.
    carol.ok(&["deployments", "update", "svc"]);
    // New code from him is his (and must be readable by him): another private archive of
    // alice's is not the admin's to put into svc.
    alice.ok(&["deploy", "other", "--dir", path]);
    let listed = alice.json(&["file", "list", "--json"]);
    let other = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "other.tar")
        .and_then(|f| f["id"].as_str().or(f["fileId"].as_str()))
        .unwrap_or_else(|| panic!("other.tar in {listed}"))
        .to_string();
    let said = carol.refused(&["deployments", "update", "svc", "--file", &other]);
    assert!(said.contains("not with you"), "{said}");
    alice.ok(&["undeploy", "other"]);
    // Deployed again from the directory: the new archive replaces the old one.
    alice.ok(&["deploy", "svc", "--dir", path, "--scope", "mesh"]);

    // Refused by the broker for its config: alice's archive does not stay.
    alice.refused(&["deploy", "other", "--dir", path, "--allow-net", "*.*"]);
    assert_eq!(archives(&alice), vec!["svc.tar".to_string()]);
    alice.ok(&["undeploy", "svc"]);
    assert_eq!(archives(&alice), Vec::<String>::new());
}

/// The directories of the services of the (one) mesh on the broker's disk.
fn service_dirs(broker: &BrokerProc) -> Vec<String> {
    std::fs::read_dir(broker.data_dir().join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|m| m.path().is_dir())
        .flat_map(|m| std::fs::read_dir(m.path()).into_iter().flatten().flatten())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_deploy_leaves_no_directory() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = service_dir();
    let out = alice.run(&["deploy", "nogit", "--git", "git://127.0.0.1:1/none.git"]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    assert_ne!(out.code, 0, "{}", out.stdout);
    let server = dir.path().join("server.py");
    let enc = alice.json(&[
        "file",
        "share",
        server.to_str().unwrap(),
        "--to",
        "bob",
        "--json",
    ]);
    let said = alice.refused(&["deploy", "enc", "--file", enc["fileId"].as_str().unwrap()]);
    assert!(said.contains("encrypted"), "{said}");
    assert_eq!(service_dirs(&broker), Vec::<String>::new());
    // The shared file is alice's own: still there.
    assert!(bob.ok(&["file", "list"]).contains("server.py"));
}

/// The list says what a service runs on and where it came from.
#[tokio::test(flavor = "multi_thread")]
async fn the_list_tells_the_runtime_and_an_archive() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let dir = service_dir();
    let out = alice.run(&["deploy", "svc", "--dir", dir.path().to_str().unwrap()]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    let listed = alice.ok(&["deployments"]);
    assert!(listed.contains("python, from an archive"), "{listed}");
    assert!(!listed.contains("zip"), "{listed}");
}

/// A member who lost `deploy` cannot widen his service's scope; he may still undeploy it.
#[tokio::test(flavor = "multi_thread")]
async fn widening_a_scope_needs_the_deploy_capability() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+deploy"]);
    let dir = service_dir();
    let out = bob.run(&["deploy", "echo", "--dir", dir.path().to_str().unwrap()]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    alice.ok(&["perms", "set", "bob", "-deploy"]);
    let said = bob.refused(&["deployments", "scope", "echo", "mesh"]);
    assert!(said.contains("\"deploy\""), "{said}");
    assert!(
        bob.ok(&["deployments", "scope", "echo"])
            .contains("scope peer")
    );
    bob.ok(&["undeploy", "echo"]);
}
