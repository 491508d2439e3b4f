//! TLS end to end: a broker serving a certificate made here (rcgen) or one it obtained over
//! ACME from a real local ACME server (pebble, Let's Encrypt's test CA), and every client path
//! over `wss://` / `https://` with `--ca-file`; the refusals of plain text off loopback.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use claudemesh::client::http;
use claudemesh::client::tls::Trust;
use claudemesh::client::{ConnectOptions, MeshClient};

use common::*;

/// A CA and a server certificate it signed, as PEM files in a temp dir.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A CA, and a certificate for `names` (DNS names or IP addresses) signed by it.
    fn new(names: &[&str]) -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "claudemesh test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem() + &ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        TestPki { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// Runs `claudemesh hook STATUS` as Claude Code would, with the hook JSON on stdin.
fn run_hook(person: &Person, status: &str, session: &str) {
    let mut child = Command::new(BIN)
        .args(["hook", status])
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .env_remove("CLAUDEMESH_CA_FILE")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let hook = json!({"session_id": session, "cwd": "/tmp/claudemesh-test"}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(hook.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "a hook always exits 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_works_over_tls_with_a_ca_file() {
    let pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let broker = BrokerProc::start(&[
        "--tls-cert",
        &pki.path("cert.pem"),
        "--tls-key",
        &pki.path("key.pem"),
    ]);
    let wss = format!("wss://127.0.0.1:{}/ws", broker.port);
    let ca = pki.path("ca.pem");
    let alice = Person::new("alice");
    let bob = Person::new("bob");

    // Without the CA, the self-signed broker is refused, saying what to do.
    let refused = alice.run(&[
        "create",
        "team",
        "--broker",
        &wss,
        "--admin-token",
        &broker.admin_token(),
    ]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("TLS") && refused.stderr.contains("--ca-file"),
        "{}",
        refused.stderr
    );
    // The broker answered: no hint to start one.
    assert!(
        !refused.stderr.contains("is the broker running"),
        "{}",
        refused.stderr
    );

    // create, invite, join: over https:// with the CA given once, then remembered.
    alice.json(&[
        "create",
        "team",
        "--broker",
        &wss,
        "--admin-token",
        &broker.admin_token(),
        "--ca-file",
        &ca,
        "--name",
        "alice",
        "--json",
    ]);
    let (_, link) = invite(&alice, &[]);
    assert!(
        link.starts_with(&format!("https://127.0.0.1:{}/i/", broker.port)),
        "{link}"
    );
    // The invite's own words say the joiner needs the CA too.
    let said = alice.run(&["invite"]);
    assert_eq!(said.code, 0, "{}", said.stderr);
    assert!(
        said.stdout.contains("' --ca-file CA.pem\n")
            && said
                .stdout
                .contains(&format!("CA certificate {ca}: send them a copy")),
        "{}",
        said.stdout
    );
    let carol = Person::new("carol");
    let no_ca = carol.run(&["join", &link, "--name", "carol"]);
    assert_eq!(no_ca.code, 1);
    assert!(no_ca.stderr.contains("--ca-file"), "{}", no_ca.stderr);
    bob.json(&["join", &link, "--name", "bob", "--ca-file", &ca, "--json"]);

    // Messages over wss://.
    let sent = alice.json(&["send", "bob", "hello over TLS", "--json"]);
    assert_eq!(sent["results"][0]["queued"], true, "{sent}");
    let inbox = bob.run(&["inbox", "--wait", "10", "--json"]);
    assert_eq!(inbox.code, 0, "{}", inbox.stderr);
    let first: Value = serde_json::from_str(inbox.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["text"], "hello over TLS");

    // A file up and down over https:// (the raw upload connection included).
    let files = tempfile::tempdir().unwrap();
    let original = files.path().join("notes.txt");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&original, &bytes).unwrap();
    let shared = alice.json(&["file", "share", original.to_str().unwrap(), "--json"]);
    let id = shared["fileId"].as_str().unwrap().to_string();
    let out = files.path().join("got.txt");
    let got = bob.run(&["file", "get", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // The status hook posts over https:// for bob's live session.
    let _live = bob.client().await;
    run_hook(&bob, "working", "test-bob");
    let watcher = alice.client().await;
    eventually("the hook to set working over TLS", || async {
        let peers = watcher.list_peers(None).await.unwrap();
        peers
            .iter()
            .any(|p| p.session_id == "test-bob" && p.status == "working")
    })
    .await;

    // An MCP session (as Claude Code starts it: no flags, no CA in the environment).
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .env("CLAUDEMESH_CONFIG_DIR", bob.config_dir())
        .env("CLAUDEMESH_SESSION_ID", "test-bob-mcp")
        .env("HOME", bob.config_dir())
        .env_remove("CLAUDEMESH_CA_FILE");
    let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
    let mcp = ().serve(transport).await.expect("MCP handshake");
    let args = json!({"to": "alice", "message": "hello from MCP over TLS"});
    let deadline = Instant::now() + WAIT;
    loop {
        let result = mcp
            .call_tool(
                CallToolRequestParams::new("send_message")
                    .with_arguments(args.as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        if result.is_error != Some(true) {
            break;
        }
        // The server connects in the background; until then tools say "connecting…".
        assert!(
            Instant::now() < deadline && format!("{result:?}").contains("connecting"),
            "{result:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inbox = alice.run(&["inbox", "--wait", "10", "--json"]);
    assert!(
        inbox.stdout.contains("hello from MCP over TLS"),
        "{}",
        inbox.stderr
    );
    let _ = mcp.cancel().await;

    // Plain ws:// to the TLS port does not work.
    let mut plain = bob.entry();
    plain.broker_url = broker.ws_url();
    assert!(
        MeshClient::connect(ConnectOptions::new(plain, peer_info("plain")))
            .await
            .is_err()
    );
}

#[test]
fn a_broker_off_loopback_without_tls_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["broker", "--listen", "0.0.0.0:0", "--data"])
        .arg(data.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A broker that wrongly starts is stopped, so the test fails rather than hangs.
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for why in [
        "refusing to listen on 0.0.0.0",
        "in clear text",
        "--insecure-plaintext",
        "--tls-cert",
        "--acme",
    ] {
        assert!(stderr.contains(why), "{why} in {stderr}");
    }
    assert!(
        !data.path().join("admin.token").exists(),
        "refused before anything was made"
    );

    // The same on a named address: names resolve first, and only loopback may be plain.
    let local = BrokerProc::start_listening("localhost:0", &[]).expect("localhost:0 is accepted");
    let deadline = Instant::now() + WAIT;
    while local.stdout_lines().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let first = local.stdout_lines().first().cloned().unwrap_or_default();
    assert!(
        first.starts_with("claudemesh broker listening on 127.0.0.1:"),
        "{first}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_on_every_address_makes_links_others_can_use() {
    let broker = BrokerProc::start_listening("0.0.0.0:0", &["--insecure-plaintext"])
        .expect("--insecure-plaintext lets it start");
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let out = alice.run(&["invite", "--json"]);
    match claudemesh::net::reachable_address() {
        Some(ip) => {
            assert_eq!(out.code, 0, "{}", out.stderr);
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            let url = v["url"].as_str().unwrap();
            let authority = claudemesh::net::url_authority(ip, broker.port);
            assert!(url.starts_with(&format!("http://{authority}/i/")), "{url}");
        }
        None => {
            // No address others could reach: the broker says so rather than mint a dead link.
            assert_eq!(out.code, 1);
            assert!(out.stderr.contains("--public-url"), "{}", out.stderr);
        }
    }
    let log = broker.stderr_lines().join("\n");
    assert!(log.contains("without --public-url"), "{log}");
    // With --public-url, links carry it whatever the listen address.
    let proxied = BrokerProc::start(&["--public-url", "https://mesh.example.com/"]);
    let owner = Person::new("owner");
    create_mesh(&proxied, &owner, "team");
    let (_, link) = invite(&owner, &[]);
    assert!(link.starts_with("https://mesh.example.com/i/"), "{link}");
}

#[test]
fn the_client_refuses_plain_text_off_loopback() {
    let alice = Person::new("alice");
    // 192.0.2.1 is a documentation address: the refusal comes before any packet is sent.
    for args in [
        vec!["join", "http://192.0.2.1:7900/i/AbCd1234"],
        vec![
            "create",
            "team",
            "--broker",
            "ws://192.0.2.1:7900/ws",
            "--admin-token",
            "t",
        ],
    ] {
        let started = Instant::now();
        let out = alice.run(&args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("refusing plain text")
                && out.stderr.contains("not loopback")
                && out.stderr.contains("CLAUDEMESH_INSECURE_PLAINTEXT=1")
                && !out.stderr.contains("is the broker running"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ACME against pebble
// ---------------------------------------------------------------------------------------------

/// A free port on loopback (closed again; pebble is told to validate on it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// pebble on loopback, its HTTPS directory served with a certificate from `pki`.
struct Pebble {
    child: Child,
    directory: String,
    management: String,
    _config: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Validates TLS-ALPN-01 for real by connecting to `tls_port`; issued certificates live
    /// `validity` seconds.
    fn start(pki: &TestPki, tls_port: u16, validity: u64) -> Option<Pebble> {
        let (dir_port, mgmt_port) = (free_port(), free_port());
        let config = tempfile::tempdir().unwrap();
        let file = config.path().join("pebble.json");
        let settings = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{dir_port}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": pki.path("cert.pem"),
            "privateKey": pki.path("key.pem"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(&file, settings.to_string()).unwrap();
        let mut child = Command::new("pebble")
            .arg("-config")
            .arg(&file)
            // No random waits before validating (pebble's own switch for tests).
            .env("PEBBLE_VA_NOSLEEP", "1")
            // Pebble refuses 5% of valid nonces by default (`badNonce`), and a refused request
            // fails the whole order, which the broker retries with a growing backoff: five
            // orders in a row refused (seen once) outlasted the test's wait.
            // The test is about serving and renewal, not that backoff.
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let out = child.stdout.take()?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("Listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(WAIT).ok()?;
        Some(Pebble {
            child,
            directory: format!("https://127.0.0.1:{dir_port}/dir"),
            management: format!("https://127.0.0.1:{mgmt_port}"),
            _config: config,
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_acme_serves_clients_and_is_renewed_without_a_restart() {
    if Command::new("pebble").arg("-version").output().is_err() {
        return skip_unless_strict(
            "pebble (Debian package `pebble`, Let's Encrypt's test CA) is not installed",
        );
    }
    // pebble's own HTTPS (its directory) gets a certificate from a CA made here.
    let pebble_pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let port = free_port();
    // Certificates live 20 s, so the broker renews one (at two thirds) within this test.
    let Some(pebble) = Pebble::start(&pebble_pki, port, 20) else {
        return skip_unless_strict("pebble did not start");
    };
    let broker = BrokerProc::start_listening(
        &format!("127.0.0.1:{port}"),
        &[
            "--acme",
            "localhost",
            "--acme-email",
            "ops@example.com",
            "--acme-directory",
            &pebble.directory,
            "--acme-ca-file",
            &pebble_pki.path("ca.pem"),
        ],
    )
    .expect("the ACME broker starts");
    // The root pebble issues under, fetched from its management port.
    let directory_trust = Trust {
        ca_file: Some(PathBuf::from(pebble_pki.path("ca.pem"))),
        ..Trust::default()
    };
    let root = http::request_with(
        "GET",
        &format!("{}/roots/0", pebble.management),
        &[],
        None,
        &directory_trust,
    )
    .await
    .expect("pebble's root");
    let roots = tempfile::tempdir().unwrap();
    let root_file = roots.path().join("pebble-root.pem");
    std::fs::write(&root_file, &root.body).unwrap();
    let ca = root_file.to_str().unwrap().to_string();
    let trust = Trust {
        ca_file: Some(root_file.clone()),
        ..Trust::default()
    };
    let health = format!("https://localhost:{port}/health");
    eventually("the broker to serve a certificate from pebble", || async {
        http::request_with("GET", &health, &[], None, &trust)
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    let log = broker.stderr_lines().join("\n");
    assert!(
        log.contains("TLS-ALPN-01"),
        "pebble validated on this port:\n{log}"
    );
    // The certificate is served as soon as it is deployed, and cached just after.
    eventually("account and certificate cached in <data>/acme", || {
        std::future::ready(
            std::fs::read_dir(broker.data_dir().join("acme"))
                .unwrap()
                .count()
                >= 2,
        )
    })
    .await;

    // A mesh over the ACME certificate.
    let wss = format!("wss://localhost:{port}/ws");
    let alice = Person::new("alice");
    let bob = Person::new("bob");
    alice.json(&[
        "create",
        "team",
        "--broker",
        &wss,
        "--admin-token",
        &broker.admin_token(),
        "--ca-file",
        &ca,
        "--json",
    ]);
    let (_, link) = invite(&alice, &[]);
    assert!(
        link.starts_with(&format!("https://localhost:{port}/i/")),
        "{link}"
    );
    bob.json(&["join", &link, "--name", "bob", "--ca-file", &ca, "--json"]);
    alice.json(&["send", "bob", "hello via ACME", "--json"]);
    let inbox = bob.run(&["inbox", "--wait", "10", "--json"]);
    assert!(inbox.stdout.contains("hello via ACME"), "{}", inbox.stderr);

    // Renewed before expiry, served without a restart.
    let deadline = Instant::now() + Duration::from_secs(40);
    while broker
        .stderr_lines()
        .iter()
        .filter(|l| l.contains("DeployedNewCert"))
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no renewal:\n{}",
            broker.stderr_lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice.json(&["send", "bob", "after the renewal", "--json"]);
    let inbox = bob.run(&["inbox", "--wait", "10", "--json"]);
    assert!(
        inbox.stdout.contains("after the renewal"),
        "{}",
        inbox.stderr
    );
    drop(pebble);
}

/// An ACME directory whose HTTPS certificate we do not trust (pebble's, from a CA of its own):
/// the broker keeps retrying, and its log says to give that CA with `--acme-ca-file`.
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_acme_directory_is_logged_with_the_flag_that_trusts_it() {
    if Command::new("pebble").arg("-version").output().is_err() {
        return skip_unless_strict(
            "pebble (Debian package `pebble`, Let's Encrypt's test CA) is not installed",
        );
    }
    let pebble_pki = TestPki::new(&["localhost", "127.0.0.1"]);
    let port = free_port();
    let Some(pebble) = Pebble::start(&pebble_pki, port, 60) else {
        return skip_unless_strict("pebble did not start");
    };
    let broker = BrokerProc::start_listening(
        &format!("127.0.0.1:{port}"),
        &["--acme", "localhost", "--acme-directory", &pebble.directory],
    )
    .expect("the ACME broker starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = broker.stderr_lines();
        if let Some(line) = lines.iter().find(|l| l.contains("UnknownIssuer")) {
            assert!(line.contains("--acme-ca-file"), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ACME error logged:\n{}",
            lines.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(pebble);
}

/// A system service gets its certificate as a systemd credential, copied when it starts: its
/// unit says to restart it after a renewal (the broker's own reload would only see the copy).
#[test]
fn a_system_unit_with_certificate_files_says_renewals_need_a_restart() {
    let pki = TestPki::new(&["localhost"]);
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "service",
            "install",
            "--system",
            "--print",
            "--listen",
            "0.0.0.0:443",
            "--tls-cert",
            &pki.path("cert.pem"),
            "--tls-key",
            &pki.path("key.pem"),
        ])
        .env("HOME", home.path())
        .output()
        .unwrap();
    let unit = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        unit.contains(&format!(
            "LoadCredential=tls-cert.pem:{}\n",
            pki.path("cert.pem")
        )) && unit.contains("--tls-cert ${CREDENTIALS_DIRECTORY}/tls-cert.pem"),
        "{unit}"
    );
    assert!(
        unit.lines().any(|l| l.starts_with('#')
            && l.contains("restart it after a renewal")
            && l.contains("systemctl restart claudemesh")),
        "{unit}"
    );
}
