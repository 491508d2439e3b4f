//! Where a service comes from and what stops it: a git URL, published npm and PyPI packages
//! (each still running after a broker restart), and a deployer revoked while fetching or
//! banned while running.

use super::*;

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
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
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
