//! The client on a person's machine against hostile peers and careless surroundings (issue 10,
//! item 10), each through the real binary: Claude Code's files keep their modes, decrypted
//! downloads are owner-only, a closed pipe ends the CLI quietly, what peers wrote cannot drive
//! the terminal, secrets stay out of error messages, and concurrent config writers lose nothing.

use crate::common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

use claudemesh::client::Target;
use claudemesh::protocol::ClientMessage;
use claudemesh::protocol::messages::PeerInfo;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[cfg(unix)]
fn set_mode(path: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).expect("chmod");
}

/// `claudemesh ARGS` as `person`, with stdio left to the caller.
fn cli(person: &Person, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("CLAUDEMESH_CONFIG_DIR", person.config_dir())
        .env(
            "CLAUDEMESH_DATA_DIR",
            person.config_dir().join("no-broker-here"),
        )
        .env("USER", &person.name)
        .env_remove("CLAUDEMESH_BROKER_URL")
        .env_remove("CLAUDEMESH_ADMIN_TOKEN")
        .stdin(Stdio::null());
    cmd
}

// ---------------------------------------------------------------------------------------------
// 1. install / uninstall keep the modes of Claude Code's files
// ---------------------------------------------------------------------------------------------

/// A person whose `~/.claude.json` is 0640 (shared with their group on purpose) and whose
/// `settings.json` is 0600 runs install and uninstall: the modes stay, backups and our record
/// are owner-only, and a file install creates is 0600.
#[cfg(unix)]
#[test]
fn install_and_uninstall_keep_file_modes() {
    let home = tempfile::tempdir().expect("home");
    let config = tempfile::tempdir().expect("config");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("HOME", home.path())
            .env("CLAUDEMESH_CONFIG_DIR", config.path())
            .output()
            .expect("run claudemesh");
        assert!(
            out.status.success(),
            "`claudemesh {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let claude_json = home.path().join(".claude.json");
    let settings = home.path().join(".claude").join("settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&claude_json, "{\"numStartups\": 3}\n").unwrap();
    std::fs::write(&settings, "{\"theme\": \"dark\"}\n").unwrap();
    set_mode(&claude_json, 0o640);
    set_mode(&settings, 0o600);

    run(&["install"]);
    assert!(
        std::fs::read_to_string(&claude_json)
            .unwrap()
            .contains("claudemesh")
    );
    assert_eq!(mode(&claude_json), 0o640, "~/.claude.json after install");
    assert_eq!(mode(&settings), 0o600, "settings.json after install");
    let backups: Vec<_> = std::fs::read_dir(config.path().join("backups"))
        .expect("backups made")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    for b in &backups {
        assert_eq!(mode(b), 0o600, "backup {}", b.display());
    }
    assert_eq!(mode(&config.path().join("install.json")), 0o600);

    run(&["uninstall"]);
    assert_eq!(
        std::fs::read_to_string(&claude_json).unwrap(),
        "{\"numStartups\": 3}\n"
    );
    assert_eq!(mode(&claude_json), 0o640, "~/.claude.json after uninstall");
    assert_eq!(mode(&settings), 0o600, "settings.json after uninstall");

    // A user edit after install makes uninstall remove only our entries (another write path).
    run(&["install"]);
    for file in [&claude_json, &settings] {
        let mut v: Value =
            serde_json::from_str(&std::fs::read_to_string(file).unwrap()).expect("JSON");
        v["mine"] = true.into();
        std::fs::write(file, v.to_string()).unwrap();
    }
    run(&["uninstall"]);
    // Only our entries go, and the `mcpServers` and `hooks` they leave empty with them.
    let read = |file: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).expect("JSON")
    };
    assert_eq!(
        read(&claude_json),
        serde_json::json!({"numStartups": 3, "mine": true})
    );
    assert_eq!(
        read(&settings),
        serde_json::json!({"theme": "dark", "mine": true})
    );
    assert_eq!(mode(&claude_json), 0o640, "after removing only our entries");

    // Files that did not exist are created owner-only (they end up holding API keys).
    std::fs::remove_file(&claude_json).unwrap();
    std::fs::remove_file(&settings).unwrap();
    run(&["install"]);
    assert_eq!(mode(&claude_json), 0o600, "a new ~/.claude.json");
    assert_eq!(mode(&settings), 0o600, "a new settings.json");
    run(&["uninstall"]);
    assert!(!claude_json.exists() && !settings.exists());
}

/// A dotfile manager's symlink stays a symlink; the file it points to keeps its mode.
#[cfg(unix)]
#[test]
fn install_writes_through_a_symlinked_claude_json() {
    let home = tempfile::tempdir().expect("home");
    let config = tempfile::tempdir().expect("config");
    let dotfiles = home.path().join("dotfiles");
    std::fs::create_dir_all(&dotfiles).unwrap();
    let real = dotfiles.join("claude.json");
    std::fs::write(&real, "{}\n").unwrap();
    set_mode(&real, 0o644);
    let link = home.path().join(".claude.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for args in [&["install", "--no-hooks"][..], &["uninstall"]] {
        let out = Command::new(BIN)
            .args(args)
            .env("HOME", home.path())
            .env("CLAUDEMESH_CONFIG_DIR", config.path())
            .output()
            .expect("run claudemesh");
        assert!(out.status.success(), "{:?}", out);
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "~/.claude.json is still a link after {}",
            args[0]
        );
        assert_eq!(mode(&real), 0o644, "the linked file after {}", args[0]);
    }
    assert!(std::fs::read_to_string(&real).unwrap() == "{}\n");
}

// ---------------------------------------------------------------------------------------------
// 2. decrypted downloads are owner-only
// ---------------------------------------------------------------------------------------------

/// bob downloads a file alice encrypted for him: it is 0600, whether new or replacing a file
/// of his that was 0644; a plain (mesh-wide) file gets the usual mode.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn decrypted_downloads_are_owner_only() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("salaries.csv");
    std::fs::write(&src, "name,salary\nbob,1\n").unwrap();
    let share = |extra: &[&str]| {
        let mut args = vec!["file", "share", src.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        alice.json(&args)["fileId"]
            .as_str()
            .expect("fileId")
            .to_string()
    };
    let sealed = share(&["--to", "bob"]);
    let plain = share(&["--name", "readme.txt"]);

    let out = dir.path().join("bob");
    std::fs::create_dir(&out).unwrap();
    let got = bob.json(&[
        "file",
        "get",
        &sealed,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(got["encrypted"], true);
    let saved = out.join("salaries.csv");
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        "name,salary\nbob,1\n"
    );
    assert_eq!(mode(&saved), 0o600, "a decrypted download");

    let existing = dir.path().join("existing.csv");
    std::fs::write(&existing, "old").unwrap();
    set_mode(&existing, 0o644);
    bob.json(&[
        "file",
        "get",
        &sealed,
        "--out",
        existing.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(
        std::fs::read_to_string(&existing).unwrap(),
        "name,salary\nbob,1\n"
    );
    assert_eq!(
        mode(&existing),
        0o600,
        "a decrypted download over a 0644 file"
    );

    bob.json(&[
        "file",
        "get",
        &plain,
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let usual = out.join("made-here.txt");
    std::fs::write(&usual, "").unwrap();
    assert_eq!(
        mode(&out.join("readme.txt")),
        mode(&usual),
        "a plain file gets the usual (umask) mode"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. a closed pipe ends the CLI quietly
// ---------------------------------------------------------------------------------------------

/// Commands whose stdout reader is already gone (`claudemesh peers --json | head -c1` when head
/// was quicker) exit 0 with nothing on stderr: no panic, no "failed printing to stdout", no
/// exit 101. A message inbox could not print stays queued.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_pipe_ends_quietly() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let out = alice.run(&["send", "bob", "are you there?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = alice.run(&["state", "set", "build", "green"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    for args in [
        &["peers", "--json"][..],
        &["peers"],
        &["members"],
        &["list"],
        &["state", "list"],
        &["state", "list", "--json"],
        &["inbox"],
        &["inbox", "--json"],
        &["--help"],
    ] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let child = cli(&bob, args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run claudemesh");
        let (status, stderr) = finish(child, &args.join(" "));
        assert_eq!(
            status.code(),
            Some(0),
            "`claudemesh {}` into a closed pipe: {status}, stderr: {stderr}",
            args.join(" ")
        );
        assert_eq!(stderr, "", "`claudemesh {}` said something", args.join(" "));
    }

    // The message inbox could not print is still there.
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("are you there?"), "{}", out.stdout);
}

/// The reader takes one byte and leaves while the CLI still has most of its output to write.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_leaves_early_ends_the_cli_quietly() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    // Well over a pipe buffer (64 KiB on Linux), so the CLI is still writing when we leave.
    let value = "x".repeat(10_000);
    for i in 0..12 {
        let out = alice.run(&["state", "set", &format!("key{i}"), &value]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    for args in [&["state", "list"][..], &["state", "list", "--json"]] {
        let mut child = cli(&bob, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run claudemesh");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut one = [0u8; 1];
        stdout.read_exact(&mut one).expect("one byte of output");
        drop(stdout); // `head -c1` is done
        let (status, stderr) = finish(child, &args.join(" "));
        assert_eq!(status.code(), Some(0), "{status}, stderr: {stderr}");
        assert_eq!(stderr, "");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. what peers wrote cannot drive the terminal
// ---------------------------------------------------------------------------------------------

/// Clears the screen, sets the window title, rewrites the line, then fakes a message from alice
/// on a line of its own, and turns text around with a bidi override.
const HOSTILE: &str = "\x1b[2J\x1b]0;owned\x07hello\rpwned\x1b[1A\u{9b}2K\n[2030-01-01T00:00:00Z] alice (now): send me your keys\u{202e}txt.exe";

/// Nothing that drives a terminal: no ESC, CR, BEL, C1 control or bidi control.
fn assert_harmless(what: &str, out: &str) {
    for c in out.chars() {
        let bad = (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        assert!(!bad, "{what} printed a raw {c:?}:\n{out}");
    }
}

/// mallory, a member, puts escape sequences, carriage returns, a fake line and a bidi override
/// into her name, summary, a message, a state value, a memory, a task and a file name; bob's
/// text output shows them as visible escapes, and a peer's line never starts where ours do.
/// `--json` keeps the exact text.
#[tokio::test(flavor = "multi_thread")]
async fn peer_text_cannot_drive_the_terminal() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let mallory = Person::new("mallory");
    let (_, url) = invite(&alice, &[]);
    // The broker strips C0/C1 controls from names; bidi controls get through.
    let name = "mal\u{202e}lory\x1b[31m";
    let out = mallory.run(&["join", &url, "--name", name, "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let client = claudemesh::client::MeshClient::connect(claudemesh::client::ConnectOptions::new(
        mallory.entry(),
        PeerInfo {
            display_name: Some(name.into()),
            ..peer_info("mallory")
        },
    ))
    .await
    .expect("mallory connects");
    client
        .request_ack(ClientMessage::SetSummary {
            summary: HOSTILE.into(),
        })
        .await
        .expect("summary set");
    let bob_key = bob.entry().member_pubkey;
    let to_bob = Target {
        label: "bob".into(),
        spec: bob_key,
    };
    for _ in 0..2 {
        let ack = client
            .send_text(&to_bob, HOSTILE, "now", None)
            .await
            .expect("send");
        assert_eq!(ack.queued, Some(true));
    }
    for args in [
        &["state", "set", "deploy", HOSTILE][..],
        &["remember", HOSTILE, "--tags", "ops"],
        &["task", "create", HOSTILE],
        &["context", "share", HOSTILE],
    ] {
        let out = mallory.run(args);
        assert_eq!(out.code, 0, "`{}`: {}", args[0], out.stderr);
    }
    // A file name travels in an HTTP header, which refuses controls on the way up: the client
    // cannot even upload such a name, so `file list` below only shows ordinary names.

    // Text output: harmless, with the escapes visible.
    for args in [
        &["peers"][..],
        &["members"],
        &["state", "list"],
        &["state", "get", "deploy"],
        &["recall", "keys"],
        &["task", "list"],
        &["context", "list"],
        &["file", "list"],
    ] {
        let out = bob.run(args);
        assert_eq!(out.code, 0, "`{}`: {}", args.join(" "), out.stderr);
        assert_harmless(&args.join(" "), &out.stdout);
        assert!(
            !out.stdout.lines().any(|l| l.starts_with("[2030")),
            "`{}` let a peer start a line:\n{}",
            args.join(" "),
            out.stdout
        );
    }
    let peers = bob.run(&["peers"]);
    assert!(peers.stdout.contains("\\x1b[2J"), "{}", peers.stdout);
    // The broker drops the direction override from the name (it cannot pass for another).
    assert!(peers.stdout.contains("mallory[31m"), "{}", peers.stdout);

    // One message in the text inbox: one header line, the rest marked as its continuation.
    let inbox = bob.run(&["inbox", "--limit", "1"]);
    assert_eq!(inbox.code, 0, "{}", inbox.stderr);
    assert_harmless("inbox", &inbox.stdout);
    let lines: Vec<&str> = inbox.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", inbox.stdout);
    assert!(
        lines[0].contains("\\x1b]0;owned\\x07hello\\rpwned"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "  | [2030-01-01T00:00:00Z] alice (now): send me your keys\\u{202e}txt.exe"
    );

    // JSON: exact text, and still nothing raw on the terminal.
    let peers = bob.run(&["peers", "--json"]);
    assert_harmless("peers --json", &peers.stdout);
    let v: Value = serde_json::from_str(&peers.stdout).expect("JSON");
    let m = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["summary"] == HOSTILE)
        .unwrap_or_else(|| panic!("mallory's exact summary in {v}"));
    assert_eq!(m["displayName"], "mallory[31m");
    let inbox = bob.run(&["inbox", "--json"]);
    assert_harmless("inbox --json", &inbox.stdout);
    let line: Value = serde_json::from_str(inbox.stdout.trim()).expect("one JSON line");
    assert_eq!(line["text"], HOSTILE);
    let state = bob.json(&["state", "get", "deploy", "--json"]);
    assert_eq!(state["value"], HOSTILE);

    // Errors quote peer text too: harmless on stderr.
    let out = bob.run(&["send", "mal\u{202e}lory\x1b[31m-nobody", "hi"]);
    assert_ne!(out.code, 0);
    assert_harmless("an error", &out.stderr);
    client.close().await;
}

// ---------------------------------------------------------------------------------------------
// 5. secrets stay out of error messages
// ---------------------------------------------------------------------------------------------

/// A hand-edited config with the member secret where a number belongs: the error names the
/// place, not the value.
#[test]
fn a_broken_config_error_does_not_print_the_secret() {
    let person = Person::new("erin");
    let secret = claudemesh::crypto::SignKeyPair::generate().secret_hex();
    std::fs::create_dir_all(person.config_dir()).unwrap();
    std::fs::write(
        person.config_dir().join("config.json"),
        format!("{{\n  \"version\": \"{secret}\",\n  \"meshes\": []\n}}\n"),
    )
    .unwrap();
    for args in [&["list"][..], &["peers"], &["doctor"]] {
        let out = person.run(args);
        assert_ne!(out.code, 0, "`{}` with a broken config", args[0]);
        assert!(
            !out.stderr.contains(&secret[..16]) && !out.stdout.contains(&secret[..16]),
            "`{}` printed the secret:\n{}{}",
            args[0],
            out.stdout,
            out.stderr
        );
        assert!(
            out.stderr.contains("line 2") || out.stdout.contains("line 2"),
            "`{}` names the place:\n{}{}",
            args[0],
            out.stdout,
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. concurrent config writers lose nothing
// ---------------------------------------------------------------------------------------------

/// Runs `claudemesh ARGS` for each args list at once, as `person`; returns the outputs.
fn all_at_once(person: &Person, runs: &[Vec<String>]) -> Vec<(i32, String, String)> {
    let waiting: Vec<_> = runs
        .iter()
        .map(|args| {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let child = cli(person, &argv)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run claudemesh");
            let pid = child.id();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(child.wait_with_output());
            });
            (pid, rx, args.join(" "))
        })
        .collect();
    let deadline = std::time::Instant::now() + WAIT;
    waiting
        .into_iter()
        .map(|(pid, rx, what)| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(out) = rx.recv_timeout(left) else {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("`claudemesh {what}` took over {WAIT:?}");
            };
            let out = out.expect("claudemesh output");
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

/// Twelve `create`s into one config dir at once, then twelve `join`s into another, then six
/// `leave`s at once: every mesh a process reported is in the final config, every mesh left is
/// gone, and the others stay.
#[test]
fn concurrent_creates_joins_and_leaves_lose_no_mesh() {
    const N: usize = 12;
    let broker = BrokerProc::start(&[]);
    let token = broker.admin_token();
    let alice = Person::new("alice");
    let bob = Person::new("bob");

    let creates: Vec<Vec<String>> = (0..N)
        .map(|i| {
            [
                "create",
                &format!("m{i}"),
                "--broker",
                &broker.ws_url(),
                "--admin-token",
                &token,
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["--json".into()])
            .collect()
        })
        .collect();
    let mut created = Vec::new();
    for (code, stdout, stderr) in all_at_once(&alice, &creates) {
        assert_eq!(code, 0, "a concurrent create failed: {stderr}");
        let v: Value = serde_json::from_str(&stdout).expect("create --json");
        created.push(v["meshId"].as_str().unwrap().to_string());
    }
    let mut have: Vec<String> = alice
        .config()
        .meshes
        .into_iter()
        .map(|m| m.mesh_id)
        .collect();
    have.sort();
    created.sort();
    assert_eq!(have, created, "alice's config after {N} concurrent creates");

    let joins: Vec<Vec<String>> = alice
        .config()
        .meshes
        .iter()
        .map(|m| {
            let (_, url) = invite(&alice, &["--mesh", &m.slug]);
            vec!["join".into(), url, "--json".into()]
        })
        .collect();
    let mut joined = Vec::new();
    for (code, stdout, stderr) in all_at_once(&bob, &joins) {
        assert_eq!(code, 0, "a concurrent join failed: {stderr}");
        let v: Value = serde_json::from_str(&stdout).expect("join --json");
        joined.push(v["meshId"].as_str().unwrap().to_string());
    }
    let mut have: Vec<String> = bob.config().meshes.into_iter().map(|m| m.mesh_id).collect();
    have.sort();
    joined.sort();
    assert_eq!(have, joined, "bob's config after {N} concurrent joins");
    assert_eq!(have.len(), N);

    let (leaving, staying) = joined.split_at(N / 2);
    let leaves: Vec<Vec<String>> = leaving
        .iter()
        .map(|id| vec!["leave".into(), id.clone()])
        .collect();
    for (code, _, stderr) in all_at_once(&bob, &leaves) {
        assert_eq!(code, 0, "a concurrent leave failed: {stderr}");
    }
    let mut have: Vec<String> = bob.config().meshes.into_iter().map(|m| m.mesh_id).collect();
    have.sort();
    assert_eq!(have, staying, "bob's config after concurrent leaves");
    #[cfg(unix)]
    assert_eq!(mode(&bob.config_dir().join("config.json")), 0o600);
    // No temp files left behind.
    let stray: Vec<_> = std::fs::read_dir(bob.config_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
