//! The status hook (`claudemesh hook`, installed into Claude Code) sets the status of the
//! session it runs under, found by its process id, also from under a shell.

use super::*;

#[tokio::test(flavor = "multi_thread")]
async fn hook_sets_the_status_of_the_matching_session() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let _live = bob.client().await; // peer_info: session test-bob, our pid, /tmp/claudemesh-test
    // A second session of bob's, same pid and cwd: only the session id tells them apart.
    let _other = MeshClient::connect(ConnectOptions::new(bob.entry(), peer_info("bob-2")))
        .await
        .unwrap();
    let hook = |status: &str| {
        let mut child = Command::new(BIN)
            .args(["hook", status])
            .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"session_id":"test-bob","cwd":"/tmp/claudemesh-test","hook_event_name":"UserPromptSubmit"}"#)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "a hook always exits 0");
    };
    hook("working");
    let watcher = alice.client().await;
    eventually("the hook to set working", || async {
        let peers = watcher.list_peers(None).await.unwrap();
        let status = |session: &str| {
            peers
                .iter()
                .find(|p| p.session_id == session)
                .map(|p| (p.status.clone(), p.status_source.clone()))
        };
        // peers_list names where a status came from (PROTOCOL.md §5.1).
        status("test-bob") == Some(("working".into(), Some("hook".into())))
            && status("test-bob-2").is_some_and(|(s, _)| s == "idle")
    })
    .await;
    hook("idle");
    bob_comes_to_be(&alice, "idle", "the hook to set idle").await;
    // Unsigned hook requests are refused.
    let r = http_post(
        &format!("{}/hook/set-status", broker.http_url()),
        r#"{"cwd":"/tmp/claudemesh-test","status":"dnd"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    // A hook whose broker does not answer (it accepts and then says nothing) still returns
    // within its one-second budget, and with success.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (reached, held) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((conn, _)) = silent.accept() {
            let _ = reached.send(conn);
        }
    });
    let stuck = Person::new("bob-offline");
    let mut config = bob.config();
    let ws = broker.ws_url();
    for entry in &mut config.meshes {
        entry.broker_url = ws.replace(
            ws.trim_start_matches("ws://").split('/').next().unwrap(),
            &silent_addr.to_string(),
        );
    }
    ConfigDir::new(stuck.config_dir())
        .update(|c| {
            *c = config;
            Ok(())
        })
        .unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["hook", "idle"])
        .env("CLAUDEMESH_CONFIG_DIR", stuck.config_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success());
    let _conn = held
        .recv_timeout(Duration::from_secs(5))
        .expect("the hook reached the silent broker");
    // The budget is 0.9 s; the bound leaves room for a slow machine starting a process.
    assert!(took < Duration::from_secs(5), "the hook took {took:?}");
}

/// Claude Code runs hooks through a shell and may give no session id: the hook then names the
/// process above the shell, which is the pid the session itself reported.
#[tokio::test(flavor = "multi_thread")]
async fn a_hook_under_a_shell_finds_its_session_by_pid() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let _live = bob.client().await; // reports this test process's pid
    let mut direct = Command::new(BIN)
        .args(["hook", "dnd"])
        .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    drop(
        direct
            .stdin
            .take()
            .map(|mut i| i.write_all(br#"{"cwd":"/nowhere"}"#)),
    );
    assert!(direct.wait_with_output().unwrap().status.success());
    bob_comes_to_be(&alice, "dnd", "the hook to set bob dnd by its parent's pid").await;
    assert_eq!(bob.run(&["status", "set", "idle"]).code, 0);
    let script =
        format!("echo '{{\"cwd\":\"/nowhere-in-particular\"}}' | {BIN} hook working; true");
    let out = Command::new("sh")
        .args(["-c", &script])
        .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    bob_comes_to_be(&alice, "working", "the hook to set bob working by pid").await;
}
