//! Broker-hosted MCP services (issue 15 tier 2): alice deploys a small script MCP server
//! (`tests/fixtures/service_mcp.py`) on the broker; it runs in the bubblewrap sandbox and bob
//! calls its tools through the broker, from the client library, the CLI and his MCP server.

use crate::common;

mod failures;
mod sandbox;
mod sources;

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
    // The hint names a real command, and the scope as that command spells it.
    assert!(
        message.contains("(its scope: peer)")
            && message.contains("claudemesh deployments scope private SCOPE"),
        "{message}"
    );
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
    // From a directory, the client refuses the name by the same rule before it uploads.
    match a.deploy_dir("..", dir.path(), None, None).await {
        Err(claudemesh::client::deployments::DeployError::Name(message)) => {
            assert!(message.contains("server_name"), "{message}")
        }
        other => panic!("..: expected the name refused, got {other:?}"),
    }
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
