//! The sandbox around a deployed service: its memory and CPU caps, the network off unless the
//! deployment shares the host's or names hosts, and no deploy without a sandbox unless the
//! broker's operator allows it.

use super::*;

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
