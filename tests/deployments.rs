//! Broker-hosted MCP services (issue 15 tier 2): alice deploys a small script MCP server
//! (`tests/fixtures/service_mcp.py`) on the broker; it runs in the bubblewrap sandbox and bob
//! calls its tools through the broker, from the client library, the CLI and his MCP server.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use claudemesh::client::{ClientError, MeshClient};
use claudemesh::protocol::messages::{DeployConfig, McpDeployStatus, ScopeSpec};
use common::*;

/// A directory holding the service, as a deployer would have it.
fn service_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service_mcp.py");
    std::fs::copy(script, dir.path().join("server.py")).expect("copy the service");
    dir
}

fn config(env: &[(&str, &str)]) -> DeployConfig {
    DeployConfig {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

/// Deploys `dir` as `name`; `None` (the test is skipped, reason printed) when this broker has
/// no sandbox.
async fn deploy(
    client: &MeshClient,
    name: &str,
    dir: &Path,
    config: DeployConfig,
    scope: Option<ScopeSpec>,
) -> Option<McpDeployStatus> {
    match client.deploy_dir(name, dir, Some(config), scope).await {
        Ok(status) => Some(status),
        Err(claudemesh::client::deployments::DeployError::Client(ClientError::Broker {
            code,
            message,
        })) if code == "not_supported" && message.contains("cannot sandbox") => {
            skip_unless_strict(&format!("no sandbox for deployed services here: {message}"));
            None
        }
        Err(e) => panic!("deploy {name}: {e}"),
    }
}

/// Whether a file named `name` is anywhere under `dir`.
fn contains_file(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let p = e.path();
            p.file_name().is_some_and(|n| n == name) || (p.is_dir() && contains_file(&p, name))
        })
}

/// The text a tool call returned (its first content item).
fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {result}"))
        .to_string()
}

async fn call(client: &MeshClient, server: &str, tool: &str, args: Value) -> String {
    let result = client
        .tool_call(server, tool, args, None)
        .await
        .unwrap_or_else(|e| panic!("{server}/{tool}: {e}"));
    text_of(&result)
}

/// Waits until service `name` reports `running` to `client` (after a restart, an unban …);
/// `what` names the wait in a failure.
async fn running(client: &MeshClient, name: &str, what: &str) {
    eventually(what, || async {
        client
            .mcp_deploy_status(name)
            .await
            .is_ok_and(|s| s.status == "running")
    })
    .await;
}

fn refused_code(r: Result<impl std::fmt::Debug, ClientError>) -> (String, String) {
    match r {
        Err(ClientError::Broker { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The broker's refusal (code, message) of deploying `dir` as `name`; `why` names the case in
/// a failure.
async fn deploy_refused(
    client: &MeshClient,
    name: &str,
    dir: &Path,
    config: Option<DeployConfig>,
    why: &str,
) -> (String, String) {
    match client.deploy_dir(name, dir, config, None).await {
        Err(claudemesh::client::deployments::DeployError::Client(ClientError::Broker {
            code,
            message,
        })) => (code, message),
        other => panic!("{why}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_service_runs_sandboxed_answers_calls_and_survives_a_restart() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    let Some(status) = deploy(
        &a,
        "svc",
        dir.path(),
        config(&[("GREETING", "hello from the deployer")]),
        Some(ScopeSpec::Word("mesh".into())),
    )
    .await
    else {
        return;
    };
    assert_eq!(status.status, "running", "{status:?}");
    assert!(status.sandboxed, "it runs in the sandbox");
    let tools: Vec<&str> = status
        .tools
        .as_ref()
        .expect("tools")
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(
        tools,
        [
            "echo",
            "env",
            "probe",
            "whoami",
            "alloc",
            "connect",
            "crash",
            "cat",
            "burn",
            "spawn_alloc",
            "fetch"
        ]
    );

    // bob sees it hosted by the broker and calls it: caller → broker → service → result.
    let b = bob.reconnecting_client().await;
    let listed = b.mcp_list().await.expect("mcp_list");
    let svc = listed.iter().find(|s| s.name == "svc").expect("svc listed");
    assert_eq!((svc.hosted_by.as_str(), svc.online), ("broker", true));
    assert_eq!(
        call(&b, "svc", "echo", json!({"text": "hi"})).await,
        "echo: hi"
    );
    assert_eq!(
        call(&b, "svc", "env", json!({"name": "GREETING"})).await,
        "hello from the deployer"
    );
    let who: Value =
        serde_json::from_str(&call(&b, "svc", "whoami", json!({})).await).expect("json");
    assert_eq!(who["name"], "bob", "the broker names the caller: {who}");

    // Inside the sandbox: the broker's data dir is out of reach, and only its own dir is
    // writable.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let probe: Value = serde_json::from_str(
        &call(
            &b,
            "svc",
            "probe",
            json!({"data_dir": broker.data_dir().display().to_string(), "home": home}),
        )
        .await,
    )
    .expect("probe json");
    for denied in [
        "read_redb",
        "list_data_dir",
        "write_data_dir",
        "write_etc",
        "write_home",
        "write_usr",
    ] {
        assert!(
            probe[denied]
                .as_str()
                .is_some_and(|s| s.starts_with("denied")),
            "{denied} must be refused inside the sandbox: {probe}"
        );
    }
    assert_eq!(
        probe["write_work"], "ok",
        "its own directory is writable: {probe}"
    );
    assert!(!broker.data_dir().join("planted").exists());
    assert!(!Path::new("/etc/planted").exists());

    // The catalog shows it; its log has the service's stderr.
    let catalog = b.mcp_catalog().await.expect("catalog");
    let entry = catalog
        .iter()
        .find(|s| s.name == "svc")
        .expect("in catalog");
    assert_eq!(
        (
            entry.status.as_str(),
            entry.tool_count,
            entry.deployed_by.as_str()
        ),
        ("running", 11, "alice")
    );
    let logs = a.mcp_logs("svc", None).await.expect("logs");
    assert!(logs.iter().any(|l| l == "service starting"), "{logs:?}");

    // After a broker restart the deployment comes back and answers again.
    drop(a);
    broker.restart();
    let b = bob.reconnecting_client().await;
    running(&b, "svc", "the service to be running again").await;
    assert_eq!(
        call(&b, "svc", "echo", json!({"text": "again"})).await,
        "echo: again"
    );
    assert_eq!(
        call(&b, "svc", "env", json!({"name": "GREETING"})).await,
        "hello from the deployer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scope_decides_who_sees_and_calls_a_service() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob, carol) = team_with_admin(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    // The default scope is the deployer alone.
    let Some(status) = deploy(&a, "private", dir.path(), config(&[]), None).await else {
        return;
    };
    assert_eq!(status.status, "running", "{status:?}");
    assert_eq!(
        call(&a, "private", "echo", json!({"text": "me"})).await,
        "echo: me"
    );
    let b = bob.client().await;
    assert!(
        !b.mcp_list()
            .await
            .expect("list")
            .iter()
            .any(|s| s.name == "private"),
        "out of scope, not listed"
    );
    let (code, _) = refused_code(b.tool_call("private", "echo", json!({}), None).await);
    assert_eq!(
        code, "not_found",
        "our client does not find what it may not see"
    );
    // A call straight to the broker, unsealed as the original's clients send it: refused.
    let raw = b
        .request(claudemesh::protocol::ClientMessage::McpCall(Box::new(
            claudemesh::protocol::messages::McpCall {
                server_name: "private".into(),
                tool_name: "echo".into(),
                args: Some(json!({"text": "sneak"})),
                sealed: None,
                timeout_ms: None,
            },
        )))
        .await;
    let (code, message) = refused_code(raw);
    assert_eq!(code, "forbidden", "{message}");
    assert!(message.contains("not shared with you"), "{message}");
    let (code, _) = refused_code(b.mcp_schema("private", None).await);
    assert_eq!(code, "forbidden");

    // Only its deployer (or a manager) changes the scope; a list of peers lets bob in, not carol.
    let (code, _) = refused_code(
        b.mcp_scope("private", Some(ScopeSpec::Word("mesh".into())))
            .await,
    );
    assert_eq!(code, "forbidden");
    let (scope, by) = a
        .mcp_scope(
            "private",
            Some(ScopeSpec::Peers {
                peers: vec!["bob".into()],
            }),
        )
        .await
        .expect("set scope");
    assert_eq!(by, "alice");
    assert!(matches!(
        scope,
        claudemesh::protocol::messages::Scope::Peers { .. }
    ));
    assert_eq!(
        call(&b, "private", "echo", json!({"text": "bob"})).await,
        "echo: bob"
    );
    let c = carol.client().await;
    assert_eq!(
        refused_code(c.tool_call("private", "echo", json!({}), None).await).0,
        "not_found"
    );
    // A group scope: carol joins the group and gets in.
    a.mcp_scope(
        "private",
        Some(ScopeSpec::Group {
            group: "ops".into(),
        }),
    )
    .await
    .expect("group scope");
    assert_eq!(
        refused_code(c.mcp_schema("private", None).await).0,
        "forbidden"
    );
    c.request(claudemesh::protocol::ClientMessage::JoinGroup(
        claudemesh::protocol::messages::GroupRef {
            name: "ops".into(),
            role: None,
        },
    ))
    .await
    .expect("join ops");
    let schema = c.mcp_schema("private", Some("echo")).await.expect("schema");
    assert_eq!(
        schema[0].input_schema["properties"]["text"]["type"],
        "string"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deploying_needs_the_deploy_capability_and_a_plain_safe_archive() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = service_dir();
    // bob is a plain member: no `deploy` capability.
    let b = bob.client().await;
    let (code, message) =
        deploy_refused(&b, "mine", dir.path(), None, "a member without deploy").await;
    assert_eq!(code, "forbidden");
    assert!(message.contains("\"deploy\""), "{message}");
    let a = alice.client().await;
    // An archive that would write outside its directory.
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..12].copy_from_slice(b"../escape.py");
    h.set_size(1);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(b"x");
    raw.resize(1024 + 512 * 2, 0);
    let evil = dir.path().join("evil.tar");
    std::fs::write(&evil, &raw).unwrap();
    let shared = alice.json(&["file", "share", evil.to_str().unwrap(), "--json"]);
    let file_id = shared["fileId"].as_str().expect("fileId").to_string();
    let attempt = a
        .mcp_deploy(claudemesh::protocol::messages::McpDeploy {
            server_name: "evil".into(),
            source: claudemesh::protocol::messages::DeploySource::Zip { file_id },
            config: None,
            scope: None,
        })
        .await;
    let (code, message) = refused_code(attempt);
    if code == "not_supported" {
        return skip_unless_strict(&message);
    }
    assert_eq!(code, "invalid_argument", "{message}");
    assert!(message.contains("relative"), "{message}");
    assert!(!contains_file(broker.data_dir(), "escape.py"));

    // An encrypted file: the broker cannot read it.
    let enc = alice.json(&[
        "file",
        "share",
        dir.path().join("server.py").to_str().unwrap(),
        "--to",
        "bob",
        "--json",
    ]);
    let attempt = a
        .mcp_deploy(claudemesh::protocol::messages::McpDeploy {
            server_name: "enc".into(),
            source: claudemesh::protocol::messages::DeploySource::Zip {
                file_id: enc["fileId"].as_str().unwrap().into(),
            },
            config: None,
            scope: None,
        })
        .await;
    let (code, message) = refused_code(attempt);
    assert_eq!(code, "invalid_argument");
    assert!(message.contains("encrypted"), "{message}");

    // A git URL to a local path, file:// or a transport helper is refused before git runs.
    for url in ["file:///etc", "/srv/repo", "ext::sh -c id"] {
        let attempt = a
            .mcp_deploy(claudemesh::protocol::messages::McpDeploy {
                server_name: "git".into(),
                source: claudemesh::protocol::messages::DeploySource::Git {
                    url: url.into(),
                    branch: None,
                },
                config: None,
                scope: None,
            })
            .await;
        let (code, message) = refused_code(attempt);
        assert_eq!(code, "invalid_argument", "{url}: {message}");
    }
    // A network_allow that is not [], ["*"] or a list of host names is refused, naming the
    // entry.
    for (list, wrong) in [
        (&["*.*"][..], "*.*"),
        (&["a b"], "a b"),
        (&["*", "api.example.com"], "\"*\""),
        (&["api.example.com", "*"], "\"*\""),
        (&["*.com"], "*.com"),
    ] {
        let mut cfg = config(&[]);
        cfg.network_allow = list.iter().map(|h| h.to_string()).collect();
        let (code, message) =
            deploy_refused(&a, "net", dir.path(), Some(cfg), &format!("{list:?}")).await;
        assert_eq!(code, "invalid_argument", "{list:?}: {message}");
        assert!(
            message.contains("network_allow") && message.contains(wrong),
            "{list:?}: {message}"
        );
    }
    // A name is a directory under the mesh's services: `.`, `..` and dotted names are refused,
    // so no deploy (or undeploy) reaches another service's files.
    for name in [".", "..", ".hidden", "a.b"] {
        let attempt = a
            .mcp_deploy(claudemesh::protocol::messages::McpDeploy {
                server_name: name.into(),
                source: claudemesh::protocol::messages::DeploySource::Zip {
                    file_id: "0000".into(),
                },
                config: None,
                scope: None,
            })
            .await;
        let (code, message) = refused_code(attempt);
        assert_eq!(code, "invalid_argument", "{name}: {message}");
        assert!(message.contains("server_name"), "{name}: {message}");
    }
    // From a directory too: the name is the broker's to refuse, with the same reason.
    let (code, message) = deploy_refused(&a, "..", dir.path(), None, "..").await;
    assert_eq!(code, "invalid_argument", "{message}");
    assert!(message.contains("server_name"), "{message}");
    // A `$vault:` reference to an entry the deployer does not have fails the deploy, naming it.
    let attempt = a
        .deploy_dir(
            "vaulted",
            dir.path(),
            Some(config(&[("TOKEN", "$vault:token")])),
            None,
        )
        .await
        .expect("the deploy answers");
    assert_eq!(attempt.status, "failed");
    assert!(
        attempt
            .error
            .as_deref()
            .is_some_and(|e| e.contains("token")),
        "{attempt:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_sees_its_vault_values_and_nobody_else_does() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let token = "vault-token-7f3a9c1e5b2d";
    let cert = "-----BEGIN vault-cert-04e8d2a6-----";
    // alice keeps a token (env) and a certificate (file) in her vault, from the CLI (stdin).
    let stored = alice.run_with_stdin(
        &["vault", "set", "API_TOKEN", "--value-stdin"],
        token.as_bytes(),
    );
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    let cert_file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(cert_file.path(), cert).expect("write the cert");
    alice.ok(&[
        "vault",
        "set",
        "TLS_CERT",
        "--file",
        cert_file.path().to_str().expect("utf-8"),
        "--type",
        "file",
        "--mount",
        "/run/secrets/tls.crt",
    ]);
    let a = alice.client().await;
    let dir = service_dir();
    let Some(status) = deploy(
        &a,
        "vaulted",
        dir.path(),
        config(&[
            ("TOKEN", "$vault:API_TOKEN"),
            ("CERT_PATH", "$vault:TLS_CERT"),
        ]),
        Some(ScopeSpec::Word("mesh".into())),
    )
    .await
    else {
        return;
    };
    assert_eq!(status.status, "running", "{status:?}");

    // Inside the sandbox the service sees the values: the token as its env, the cert as a file.
    let b = bob.reconnecting_client().await;
    assert_eq!(
        call(&b, "vaulted", "env", json!({"name": "TOKEN"})).await,
        token
    );
    assert_eq!(
        call(&b, "vaulted", "env", json!({"name": "CERT_PATH"})).await,
        "/run/secrets/tls.crt"
    );
    assert_eq!(
        call(
            &b,
            "vaulted",
            "cat",
            json!({"path": "/run/secrets/tls.crt"})
        )
        .await,
        cert
    );

    // The sandbox gets them, never bwrap's own environment on the host (where LD_PRELOAD and
    // its kind would run before any namespace) nor anyone's arguments.
    let launchers = bwraps_of(broker.pid());
    assert!(
        !launchers.is_empty(),
        "the broker runs its service under bwrap"
    );
    for pid in launchers {
        for what in ["environ", "cmdline"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(token),
                "bwrap's {what} holds the vault value"
            );
        }
    }

    // Nothing bob can ask the broker for carries them: not his vault, not the catalog, schema,
    // status or list of servers.
    assert!(b.vault_get("API_TOKEN").await.expect("vault_get").is_none());
    for text in [
        bob.ok(&["deployments", "--json"]),
        bob.ok(&["deployments", "--json", "status", "vaulted"]),
        bob.ok(&["deployments", "--json", "schema", "vaulted"]),
        bob.ok(&["tools", "list", "--json"]),
    ] {
        assert!(!text.contains(token) && !text.contains(cert), "{text}");
    }

    // The values come back after a broker restart (opened again from the vault at each start),
    // and at no point did the broker write them to its data dir or log in any encoding.
    broker.restart();
    let b = bob.reconnecting_client().await;
    running(&b, "vaulted", "the service to be running again").await;
    assert_eq!(
        call(&b, "vaulted", "env", json!({"name": "TOKEN"})).await,
        token
    );
    assert_broker_never_saw(&broker, token.as_bytes());
    assert_broker_never_saw(&broker, cert.as_bytes());
}

/// The `bwrap` processes the broker `pid` started (its children).
fn bwraps_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // `pid (comm) state ppid …`; comm may hold spaces, so read after its `)`.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let ppid = after.split_whitespace().nth(1).and_then(|x| x.parse().ok());
            stat.contains("(bwrap)") && ppid == Some(pid)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_service_is_restarted_and_undeploy_stops_it() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    let Some(_) = deploy(&a, "flaky", dir.path(), config(&[]), None).await else {
        return;
    };
    let crashed = a.tool_call("flaky", "crash", json!({}), None).await;
    assert!(
        crashed.is_err(),
        "the call dies with the service: {crashed:?}"
    );
    running(&a, "flaky", "the service to come back").await;
    assert_eq!(
        call(&a, "flaky", "echo", json!({"text": "back"})).await,
        "echo: back"
    );
    let catalog = a.mcp_catalog().await.expect("catalog");
    assert!(catalog[0].restarts >= 1, "{catalog:?}");
    let logs = a.mcp_logs("flaky", Some(50)).await.expect("logs");
    assert!(logs.iter().any(|l| l == "crashing on request"), "{logs:?}");

    a.mcp_undeploy("flaky").await.expect("undeploy");
    assert!(a.mcp_catalog().await.expect("catalog").is_empty());
    let (code, _) = refused_code(a.tool_call("flaky", "echo", json!({}), None).await);
    assert_eq!(code, "not_found");
    assert!(
        !broker
            .data_dir()
            .join("services")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().path().join("flaky").exists() })
    );
}

/// The command line deploys a directory; bob's MCP server lists and calls it.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_deploys_a_directory_and_bobs_mcp_client_calls_it() {
    use rmcp::ServiceExt;
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = service_dir();
    let out = alice.run(&[
        "deploy",
        "svc",
        "--dir",
        dir.path().to_str().unwrap(),
        "--scope",
        "mesh",
        "--env",
        "GREETING=hi there",
        "--json",
    ]);
    if out.stderr.contains("cannot sandbox") {
        return skip_unless_strict(&out.stderr);
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status: Value = serde_json::from_str(&out.stdout).expect("json status");
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["server_name"], "svc");

    let listed = alice.json(&["deployments", "--json"]);
    assert_eq!(listed["services"][0]["name"], "svc", "{listed}");
    assert_eq!(listed["services"][0]["scope"]["type"], "mesh", "{listed}");
    assert!(
        alice
            .ok(&["deployments", "scope", "svc"])
            .contains("scope mesh"),
        "the scope is shown"
    );

    let mcp = ().serve(common::mcp::mcp_process(&bob)).await.expect("MCP");
    eventually("bob's MCP server to see the service", || async {
        let (ok, text) = common::mcp::call(&mcp, "mesh_mcp_catalog", json!({})).await;
        ok && text.contains("\"svc\"")
    })
    .await;
    let (ok, text) = common::mcp::call(
        &mcp,
        "mesh_tool_call",
        json!({"server_name": "svc", "tool_name": "env", "args": {"name": "GREETING"}}),
    )
    .await;
    assert!(ok, "{text}");
    assert_eq!(text, "hi there");
    let (ok, text) =
        common::mcp::call(&mcp, "mesh_mcp_schema", json!({"server_name": "svc"})).await;
    assert!(ok && text.contains("\"probe\""), "{text}");
    // bob is not its deployer: no logs, no undeploy.
    let (ok, text) =
        common::mcp::call(&mcp, "mesh_mcp_undeploy", json!({"server_name": "svc"})).await;
    assert!(!ok && text.contains("only its deployer"), "{text}");
    let _ = mcp.cancel().await;

    assert!(
        alice
            .ok(&["tools", "call", "svc", "echo", r#"{"text":"cli"}"#])
            .contains("echo: cli")
    );
    // Each call to the service is audited: caller, tool, outcome — not its arguments.
    let calls = alice.json(&["audit", "--event", "mcp.called", "--json"]);
    let calls = calls["entries"].as_array().expect("entries");
    let by = |actor: &str, tool: &str| {
        calls.iter().any(|e| {
            e["actor"] == actor
                && e["payload"]["tool"] == tool
                && e["payload"]["host"] == "broker"
                && e["payload"]["outcome"] == "ok"
        })
    };
    assert!(by("bob", "env") && by("alice", "echo"), "{calls:#?}");
    assert!(!serde_json::to_string(calls).unwrap().contains("GREETING"));
    assert!(
        alice
            .ok(&["deployments", "logs", "svc"])
            .contains("service starting")
    );
    // An update fetches the source again and restarts it.
    let updated = alice.json(&["deployments", "--json", "update", "svc"]);
    assert_eq!(updated["status"], "running", "{updated}");
    alice.ok(&["undeploy", "svc"]);
    assert!(alice.ok(&["deployments"]).contains("no MCP services"));
}

/// Concurrent deploys cannot overshoot the mesh's quota: with `--max-services 2`, five
/// deploys at once leave two running and refuse three with the quota error.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_deploys_stay_within_the_quota() {
    let broker = BrokerProc::start(&["--max-services", "2"]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = std::sync::Arc::new(alice.client().await);
    let dir = std::sync::Arc::new(service_dir());
    let deploys: Vec<_> = (0..5)
        .map(|i| {
            let (a, dir) = (a.clone(), dir.clone());
            tokio::spawn(async move {
                a.deploy_dir(&format!("svc{i}"), dir.path(), Some(config(&[])), None)
                    .await
            })
        })
        .collect();
    let mut running = 0;
    let mut refused = Vec::new();
    for d in deploys {
        match d.await.expect("the deploy task") {
            Ok(status) => {
                assert_eq!(status.status, "running", "{status:?}");
                running += 1;
            }
            Err(claudemesh::client::deployments::DeployError::Client(ClientError::Broker {
                code,
                message,
            })) if code == "not_supported" && message.contains("cannot sandbox") => {
                return skip_unless_strict(&format!("no sandbox here: {message}"));
            }
            Err(claudemesh::client::deployments::DeployError::Client(ClientError::Broker {
                code,
                message,
            })) => refused.push((code, message)),
            Err(e) => panic!("deploy: {e}"),
        }
    }
    assert_eq!(running, 2, "{refused:?}");
    assert_eq!(refused.len(), 3, "{refused:?}");
    for (code, message) in &refused {
        assert_eq!(code, "quota_exceeded", "{message}");
        assert!(message.contains("2 deployed services"), "{message}");
    }
    let listed = alice.json(&["deployments", "--json"]);
    assert_eq!(
        listed["services"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    // The refused ones were refused before fetching: nothing of theirs is on the broker's disk.
    let mesh_dirs = std::fs::read_dir(broker.data_dir().join("services")).expect("services");
    let fetched: Vec<String> = mesh_dirs
        .flatten()
        .filter(|m| m.path().is_dir())
        .flat_map(|m| std::fs::read_dir(m.path()).into_iter().flatten().flatten())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(fetched.len(), 2, "{fetched:?}");
}

/// Memory is capped, and the network is off unless the deployment shares the host's.
#[tokio::test(flavor = "multi_thread")]
async fn memory_is_capped_and_the_network_is_off_unless_allowed() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    let mut cfg = config(&[]);
    cfg.memory_mb = Some(128);
    let Some(_) = deploy(&a, "boxed", dir.path(), cfg, None).await else {
        return;
    };
    assert_eq!(call(&a, "boxed", "alloc", json!({"mb": 16})).await, "ok");
    assert!(
        call(&a, "boxed", "alloc", json!({"mb": 512}))
            .await
            .starts_with("denied: MemoryError"),
        "512 MiB is over the 128 MiB limit"
    );
    // The broker listens on the host's loopback; the sandbox has a loopback of its own.
    let port = broker
        .http_url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse::<u16>()
        .unwrap();
    let dial = json!({"host": "127.0.0.1", "port": port});
    assert!(
        call(&a, "boxed", "connect", dial.clone())
            .await
            .starts_with("denied"),
        "no network by default"
    );
    let mut cfg = config(&[]);
    cfg.network_allow = vec!["*".into()];
    deploy(&a, "online", dir.path(), cfg, None)
        .await
        .expect("deployed");
    assert_eq!(call(&a, "online", "connect", dial).await, "ok");
}

/// Serves `body` to every HTTP request on a port of the host's loopback, for as long as the
/// test runs; the port.
fn http_server(body: &'static str) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("port").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A service whose network_allow names hosts reaches those hosts through the broker's proxy
/// (the HTTP_PROXY its environment names), plainly or with CONNECT, and nothing else: other
/// hosts get the proxy's 403, and a direct connection still finds only its own loopback; so
/// again after a broker restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_reaches_only_the_hosts_it_names() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    let port = http_server("hello from the host");
    let url = json!({"url": format!("http://127.0.0.1:{port}/")});
    let tunnel = json!({"url": format!("http://127.0.0.1:{port}/"), "tunnel": true});

    let mut cfg = config(&[]);
    cfg.network_allow = vec!["127.0.0.1".into()];
    let Some(status) = deploy(&a, "listed", dir.path(), cfg, None).await else {
        return;
    };
    assert_eq!(status.status, "running", "{status:?}");
    assert_eq!(
        call(&a, "listed", "env", json!({"name": "HTTPS_PROXY"})).await,
        "http://127.0.0.1:3128"
    );
    assert_eq!(
        call(&a, "listed", "fetch", url.clone()).await,
        "ok: hello from the host"
    );
    assert_eq!(
        call(&a, "listed", "fetch", tunnel.clone()).await,
        "ok: hello from the host",
        "through CONNECT too"
    );
    let direct = call(
        &a,
        "listed",
        "connect",
        json!({"host": "127.0.0.1", "port": port}),
    )
    .await;
    assert!(
        direct.starts_with("denied"),
        "past the proxy, the service has its own loopback only: {direct}"
    );

    // The same fetches from a service that names other hosts (localhost among them: a name
    // never leads to the host's loopback) are refused by the proxy.
    let mut cfg = config(&[]);
    cfg.network_allow = vec!["localhost".into(), "*.example.com".into()];
    deploy(&a, "elsewhere", dir.path(), cfg, None)
        .await
        .expect("deployed");
    let refused = call(&a, "elsewhere", "fetch", url.clone()).await;
    assert!(
        refused.starts_with("refused 403") && refused.contains("network_allow"),
        "{refused}"
    );
    let refused = call(&a, "elsewhere", "fetch", tunnel).await;
    assert!(refused.contains("403"), "{refused}");
    let localhost = json!({"url": format!("http://localhost:{port}/")});
    let refused = call(&a, "elsewhere", "fetch", localhost).await;
    assert!(
        refused.starts_with("refused 502") && refused.contains("this host itself"),
        "{refused}"
    );
    let logs = a.mcp_logs("elsewhere", None).await.expect("logs");
    assert!(
        logs.iter()
            .any(|l| l.contains("403") && l.contains(&format!("127.0.0.1:{port}"))),
        "the service's log says what was refused: {logs:?}"
    );

    // After a broker restart the service has its proxy again.
    drop(a);
    broker.restart();
    let a = alice.reconnecting_client().await;
    running(&a, "listed", "the listed service to run again").await;
    assert_eq!(
        call(&a, "listed", "fetch", url).await,
        "ok: hello from the host"
    );
}

/// Where the host lets the broker make cgroups (here: root with writable cgroup v1
/// hierarchies, or a systemd-delegated v2 group), memory, CPU and processes are capped for the
/// service as a whole: children that each stay under the per-process limit are killed once
/// together they pass `--memory-mb`, and `--cpus` throttles a busy service.
#[tokio::test(flavor = "multi_thread")]
async fn the_service_as_a_whole_is_held_to_its_memory_and_cpu() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let dir = service_dir();
    let mut cfg = config(&[]);
    cfg.memory_mb = Some(128);
    cfg.cpus = Some(0.2);
    let Some(status) = deploy(&a, "held", dir.path(), cfg, None).await else {
        return;
    };
    if status.cgroups.is_empty() {
        skip_unless_strict("this host gives the broker no cgroups (the broker log says why)");
        return;
    }
    let file = |name: &str| -> Option<(std::path::PathBuf, String)> {
        status.cgroups.iter().find_map(|d| {
            let p = Path::new(d).join(name);
            std::fs::read_to_string(&p).ok().map(|t| (p, t))
        })
    };
    let (procs, members) = file("cgroup.procs").expect("the service's cgroup");
    assert!(
        !members.trim().is_empty(),
        "{} lists the service",
        procs.display()
    );

    // Three children of 80 MiB each: each under the 128 MiB per-process limit, together over
    // the service's 128 MiB.
    let codes: Vec<i64> =
        serde_json::from_str(&call(&a, "held", "spawn_alloc", json!({"count": 3, "mb": 80})).await)
            .expect("exit codes");
    assert!(
        codes.contains(&-9),
        "the memory cap on the whole service kills one: exit codes {codes:?}"
    );

    // 0.2 CPU: a second of spinning is throttled by the kernel.
    call(&a, "held", "burn", json!({"seconds": 1.0})).await;
    let (stat, text) = file("cpu.stat").expect("cpu.stat");
    let throttled: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}: {text}", stat.display()));
    assert!(throttled > 0, "--cpus 0.2 throttles it: {text}");

    // Undeployed, its groups are gone.
    alice.ok(&["undeploy", "held"]);
    for d in &status.cgroups {
        assert!(!Path::new(d).exists(), "{d} is removed with the service");
    }
}

/// Without bubblewrap (here: not on the broker's PATH) deploys are refused, unless the broker
/// runs with --allow-unsandboxed-services, which says so.
#[tokio::test(flavor = "multi_thread")]
async fn without_a_sandbox_deploys_are_refused_unless_allowed() {
    let dir = service_dir();
    let broker = BrokerProc::start_with_env(&[], &[("PATH", "/nonexistent")]);
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let (code, message) = deploy_refused(&a, "svc", dir.path(), None, "no sandbox").await;
    assert_eq!(code, "not_supported");
    assert!(
        message.contains("--allow-unsandboxed-services"),
        "{message}"
    );
    drop(a);
    let broker = BrokerProc::start_with_env(
        &["--allow-unsandboxed-services"],
        &[("PATH", "/nonexistent")],
    );
    let (alice, _bob) = alice_and_bob(&broker);
    let a = alice.client().await;
    let status = a
        .deploy_dir("svc", dir.path(), None, None)
        .await
        .expect("deployed without a sandbox");
    assert_eq!(
        (status.status.as_str(), status.sandboxed),
        ("running", false)
    );
    let logs = a.mcp_logs("svc", None).await.expect("logs");
    assert!(logs[0].contains("WITHOUT a sandbox"), "{logs:?}");
    // Without a network namespace nothing holds a service to named hosts: refused.
    let mut cfg = config(&[]);
    cfg.network_allow = vec!["api.example.com".into()];
    let (code, message) = deploy_refused(&a, "named", dir.path(), Some(cfg), "unsandboxed").await;
    assert_eq!(code, "not_supported");
    assert!(message.contains("named hosts"), "{message}");
    assert!(
        broker
            .stderr_lines()
            .iter()
            .any(|l| l.contains("NO SANDBOX")),
        "the broker's log says it loudly"
    );
}

/// A git repository holding the service, served by `git daemon` on loopback.
struct GitServer {
    _root: tempfile::TempDir,
    daemon: std::process::Child,
    url: String,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

fn git_server() -> Option<GitServer> {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = root.path().join("svc");
    std::fs::create_dir(&repo).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service_mcp.py");
    std::fs::copy(script, repo.join("server.py")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "server.py"]);
    git(&repo, &["commit", "-q", "-m", "the service"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let daemon = std::process::Command::new("git")
        .args([
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", root.path().display()),
        ])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(daemon) = daemon else {
        skip_unless_strict("git daemon cannot run here");
        return None;
    };
    // Ready once it accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(GitServer {
                _root: root,
                daemon,
                url: format!("git://127.0.0.1:{port}/svc"),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("git daemon did not start on {port}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_deploys_from_a_git_url() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(server) = git_server() else {
        return;
    };
    let a = alice.client().await;
    let attempt = a
        .mcp_deploy(claudemesh::protocol::messages::McpDeploy {
            server_name: "from-git".into(),
            source: claudemesh::protocol::messages::DeploySource::Git {
                url: server.url.clone(),
                branch: Some("main".into()),
            },
            config: Some(config(&[("GREETING", "cloned")])),
            scope: Some(ScopeSpec::Word("mesh".into())),
        })
        .await;
    let status = match attempt {
        Err(ClientError::Broker { code, message }) if code == "not_supported" => {
            return skip_unless_strict(&message);
        }
        other => other.expect("deploy from git"),
    };
    assert_eq!(status.status, "running", "{status:?}");
    let b = bob.reconnecting_client().await;
    assert_eq!(
        call(&b, "from-git", "env", json!({"name": "GREETING"})).await,
        "cloned"
    );
    assert_eq!(
        call(&b, "from-git", "echo", json!({"text": "via git"})).await,
        "echo: via git"
    );
    // A branch that is not there fails the deploy with git's reason.
    let (code, message) = refused_code(
        a.mcp_deploy(claudemesh::protocol::messages::McpDeploy {
            server_name: "no-branch".into(),
            source: claudemesh::protocol::messages::DeploySource::Git {
                url: server.url.clone(),
                branch: Some("nope".into()),
            },
            config: None,
            scope: None,
        })
        .await,
    );
    assert!(message.contains("git clone"), "{code}: {message}");
}

/// Relays each connection to `127.0.0.1:target`, but only once `open` turns true; `accepted`
/// is told of each connection as it comes. The port it listens on.
async fn held_relay(
    target: u16,
    accepted: std::sync::Arc<tokio::sync::Notify>,
    open: tokio::sync::watch::Receiver<bool>,
) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (accepted, mut open) = (accepted.clone(), open.clone());
            tokio::spawn(async move {
                accepted.notify_one();
                if open.wait_for(|o| *o).await.is_err() {
                    return;
                }
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// A deploy still fetching its code when its deployer is revoked never lands: the revocation
/// goes through at once, and what the deploy would store and start after it is refused
/// (`revoked`), so no service of the revoked member is listed, audited or running.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_still_fetching_when_its_deployer_is_revoked_never_lands() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let Some(server) = git_server() else {
        return;
    };
    alice.ok(&["perms", "set", "bob", "+deploy"]);
    let daemon_port: u16 = server
        .url
        .trim_start_matches("git://127.0.0.1:")
        .trim_end_matches("/svc")
        .parse()
        .expect("the git daemon's port");
    let accepted = std::sync::Arc::new(tokio::sync::Notify::new());
    let (open, opened) = tokio::sync::watch::channel(false);
    let relay = held_relay(daemon_port, accepted.clone(), opened).await;
    let b = bob.client().await;
    let mut deploying = tokio::spawn(async move {
        b.mcp_deploy(claudemesh::protocol::messages::McpDeploy {
            server_name: "raced".into(),
            source: claudemesh::protocol::messages::DeploySource::Git {
                url: format!("git://127.0.0.1:{relay}/svc"),
                branch: Some("main".into()),
            },
            config: Some(config(&[])),
            scope: Some(ScopeSpec::Word("mesh".into())),
        })
        .await
    });
    tokio::select! {
        _ = accepted.notified() => {}
        ended = &mut deploying => match ended.expect("the deploy task") {
            Err(ClientError::Broker { code, message }) if code == "not_supported" => {
                return skip_unless_strict(&message);
            }
            other => panic!("the deploy ended before it fetched: {other:?}"),
        },
    }
    // The clone is under way (held at the relay): bob is revoked, then the clone goes on.
    alice.ok(&["revoke", "bob"]);
    open.send(true).expect("the relay listens");
    let refusal = || {
        broker
            .stderr_lines()
            .into_iter()
            .find(|l| l.contains("refused mcp_deploy from bob"))
    };
    eventually("bob's deploy to end", || async { refusal().is_some() }).await;
    let refusal = refusal().unwrap();
    assert!(refusal.contains(": revoked: "), "{refusal}");
    let a = alice.client().await;
    let listed = a.mcp_catalog().await.expect("the catalog");
    assert!(listed.is_empty(), "{listed:?}");
    let log = alice.json(&["audit", "--event", "mcp.deployed", "--json"]);
    assert_eq!(log["total"], 0, "{log:#}");
    let _ = deploying.await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_deployers_service_stops_stays_down_and_runs_again_when_unbanned() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    alice.ok(&["perms", "set", "bob", "+deploy"]);
    let b = bob.client().await;
    let dir = service_dir();
    let Some(status) = deploy(
        &b,
        "bobs",
        dir.path(),
        config(&[]),
        Some(ScopeSpec::Word("mesh".into())),
    )
    .await
    else {
        return;
    };
    assert_eq!(status.status, "running", "{status:?}");
    let a = alice.reconnecting_client().await;
    assert_eq!(
        call(&a, "bobs", "echo", json!({"text": "up"})).await,
        "echo: up"
    );
    drop(b);

    // alice bans bob: his service stops at once and is not started again with the broker.
    alice.ok(&["ban", "bob", "--no-rotate"]);
    let down = |s: &McpDeployStatus| s.status != "running";
    eventually("bob's service to stop", || async {
        a.mcp_deploy_status("bobs").await.is_ok_and(|s| down(&s))
    })
    .await;
    let (code, _) = refused_code(
        a.tool_call("bobs", "echo", json!({"text": "x"}), None)
            .await,
    );
    assert_eq!(code, "host_offline");
    // alice's own service, started after bob's at a broker start (by name), shows when the
    // broker is through them.
    let Some(_) = deploy(&a, "zeta", dir.path(), config(&[]), None).await else {
        return;
    };
    drop(a);
    broker.restart();
    let a = alice.reconnecting_client().await;
    running(&a, "zeta", "alice's service to be running again").await;
    let status = a.mcp_deploy_status("bobs").await.expect("status");
    assert_eq!(status.status, "stopped", "{status:?}");

    // Unbanned, bob is an active member again: his service runs again at once.
    alice.ok(&["unban", "bob", "--no-rotate"]);
    running(&a, "bobs", "bob's service to run again after the unban").await;
    assert_eq!(
        call(&a, "bobs", "echo", json!({"text": "back"})).await,
        "echo: back"
    );
}

/// The published npm MCP server the tests deploy.
const MEMORY_SERVER: &str = "@modelcontextprotocol/server-memory@2026.8.31";

/// A published npm MCP server (`deploy --npm`, run with `npx -y` inside the sandbox with the
/// host's network): it installs into the service's own directory, answers through `tools
/// call` (its multi-line answer printed line by line), and keeps what it stored in `/work`
/// across a broker restart; allowed only the registry's host, it deploys too, through its
/// proxy. Needs the npm registry; skipped (failing under CLAUDEMESH_STRICT_TESTS) when it
/// cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn a_published_npm_server_deploys_answers_and_keeps_its_data() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let Some(deployed) = deploy_published(
        &alice,
        "npx",
        "the npm registry",
        "*",
        &[
            "graph",
            "--npm",
            MEMORY_SERVER,
            "--env",
            "MEMORY_FILE_PATH=/work/memory.jsonl",
        ],
    ) else {
        return;
    };
    assert!(deployed.contains("read_graph"), "{deployed}");
    let entity = r#"{"entities":[{"name":"claudemesh","entityType":"project","observations":["a broker in Rust"]}]}"#;
    alice.ok(&["tools", "call", "graph", "create_entities", entity]);
    let graph = alice.ok(&["tools", "call", "graph", "read_graph"]);
    assert!(
        graph
            .lines()
            .any(|l| l.trim() == r#""name": "claudemesh","#),
        "one line per line of the answer: {graph}"
    );
    // What it stores lands in its own writable directory under the broker's data.
    assert!(contains_file(broker.data_dir(), "memory.jsonl"));

    runs_again_after_a_restart(&mut broker, &alice, "graph").await;
    let graph = alice.ok(&["tools", "call", "graph", "read_graph"]);
    assert!(graph.contains("a broker in Rust"), "kept in /work: {graph}");

    // Allowed only the registry's host, npx fetches it (into another /work) through the
    // service's proxy.
    let args = ["proxied", "--npm", MEMORY_SERVER];
    let proxied = deploy_published(
        &alice,
        "npx",
        "the npm registry",
        "registry.npmjs.org",
        &args,
    )
    .expect("deployed through the proxy");
    assert!(proxied.contains("read_graph"), "{proxied}");
}

/// A published PyPI MCP server (`deploy --pypi`, run with `uvx` inside the sandbox with the
/// host's network) deploys, answers a tool call, and runs again after a broker restart. Needs
/// `uvx` and PyPI; skipped (failing under CLAUDEMESH_STRICT_TESTS) without them.
#[tokio::test(flavor = "multi_thread")]
async fn a_published_pypi_server_deploys_and_answers() {
    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let Some(deployed) = deploy_published(
        &alice,
        "uvx",
        "PyPI",
        "*",
        &["clock", "--pypi", "mcp-server-time==2026.10.19"],
    ) else {
        return;
    };
    assert!(deployed.contains("get_current_time"), "{deployed}");
    let utc = r#"{"timezone":"UTC"}"#;
    let now = alice.ok(&["tools", "call", "clock", "get_current_time", utc]);
    assert!(now.contains("UTC"), "{now}");

    runs_again_after_a_restart(&mut broker, &alice, "clock").await;
    let now = alice.ok(&["tools", "call", "clock", "get_current_time", utc]);
    assert!(now.contains("UTC"), "{now}");
}

/// `deploy NAME --allow-net ALLOW ARGS…` of a published package run by `runner` from
/// `registry`: what it printed, or `None` (skipped, failing under CLAUDEMESH_STRICT_TESTS) when
/// the runner is not installed or the registry cannot be reached.
fn deploy_published(
    person: &Person,
    runner: &str,
    registry: &str,
    allow: &str,
    args: &[&str],
) -> Option<String> {
    if which(runner).is_none() {
        skip_unless_strict(&format!("{runner} is not installed"));
        return None;
    }
    let mut all = vec!["deploy", "--allow-net", allow];
    all.extend_from_slice(args);
    let out = person.run(&all);
    if out.code != 0 {
        skip_unless_strict(&format!(
            "the package did not deploy (is {registry} reachable?): {}",
            out.stderr
        ));
        return None;
    }
    Some(out.stdout)
}

/// Restarts the broker and waits for service `name` to run again.
async fn runs_again_after_a_restart(broker: &mut BrokerProc, person: &Person, name: &str) {
    broker.restart();
    eventually(&format!("{name} to run again after a restart"), || async {
        person
            .run(&["deployments", "status", name])
            .stdout
            .contains("running")
    })
    .await;
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
