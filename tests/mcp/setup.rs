//! Setting Claude Code up for a mesh: `install` and `uninstall` edit its configuration
//! idempotently and leave the user's own edits, `launch` runs `claude` with our arguments and
//! environment, and `doctor` tells a working setup from a broken one, check by check.

use super::*;

/// Runs `claudemesh ARGS` with this HOME and config dir, which must succeed; its stdout.
fn run_at_home(home: &std::path::Path, config: &std::path::Path, args: &[&str]) -> String {
    succeeds(at_home(home, config).args(args))
}

/// `claudemesh` with this HOME and config dir.
fn at_home(home: &std::path::Path, config: &std::path::Path) -> StdCommand {
    let mut cmd = StdCommand::new(BIN);
    cmd.env("HOME", home).env("CLAUDEMESH_CONFIG_DIR", config);
    cmd
}

/// Runs `cmd`, which must succeed; its stdout.
fn succeeds(cmd: &mut StdCommand) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `install` twice then `uninstall` leaves Claude's files as they were.
#[test]
fn install_is_idempotent_and_uninstall_restores() {
    let home = tempfile::tempdir().unwrap();
    let claude_json = home.path().join(".claude.json");
    let original = "{\n  \"numStartups\": 7,\n  \"mcpServers\": {\n    \"other\": {\n      \"command\": \"x\"\n    }\n  }\n}\n";
    std::fs::write(&claude_json, original).unwrap();
    let settings = home.path().join(".claude/settings.json");
    let run = |args: &[&str]| run_at_home(home.path(), &home.path().join(".claudemesh"), args);
    run(&["install"]);
    let after_first = std::fs::read_to_string(&claude_json).unwrap();
    let v: Value = serde_json::from_str(&after_first).unwrap();
    assert_eq!(v["mcpServers"]["claudemesh"]["args"], json!(["mcp"]));
    assert_eq!(v["mcpServers"]["other"]["command"], "x");
    assert_eq!(v["numStartups"], 7);
    let hooks: Value = serde_json::from_str(&std::fs::read_to_string(&settings).unwrap()).unwrap();
    assert!(
        hooks["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("hook working")
    );
    assert!(
        hooks["hooks"]["Stop"][0]["hooks"][0]["command"]
            .as_str()
            .unwrap()
            .ends_with("hook idle")
    );
    let settings_first = std::fs::read_to_string(&settings).unwrap();
    let second = run(&["install"]);
    assert!(second.contains("already set up"), "{second}");
    assert_eq!(std::fs::read_to_string(&claude_json).unwrap(), after_first);
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), settings_first);
    // A backup of the original was made before editing.
    let backups = std::fs::read_dir(home.path().join(".claudemesh/backups"))
        .unwrap()
        .count();
    assert!(backups >= 1);
    run(&["uninstall"]);
    assert_eq!(std::fs::read_to_string(&claude_json).unwrap(), original);
    assert!(
        !settings.exists(),
        "settings.json did not exist before install"
    );
}

/// A hand-edited file is not reverted wholesale: only our entries go.
#[test]
fn uninstall_after_user_edits_removes_only_ours() {
    let home = tempfile::tempdir().unwrap();
    let claude_json = home.path().join(".claude.json");
    std::fs::write(&claude_json, "{\"a\": 1}").unwrap();
    let run = |args: &[&str]| {
        run_at_home(home.path(), &home.path().join(".claudemesh"), args);
    };
    run(&["install", "--no-hooks"]);
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&claude_json).unwrap()).unwrap();
    v["b"] = json!(2);
    std::fs::write(&claude_json, serde_json::to_string(&v).unwrap()).unwrap();
    run(&["uninstall"]);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&claude_json).unwrap()).unwrap();
    assert_eq!(v["a"], 1);
    assert_eq!(v["b"], 2);
    assert!(v["mcpServers"].get("claudemesh").is_none());
}

/// `launch` (and the flag-first shortcut) hands over to `claude` with the channel flags and
/// the session's identity in the environment.
#[test]
fn launch_runs_claude_with_arguments_and_environment() {
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let claude = common::mcp::FakeClaude::new();
    let (record, path) = (&claude.record, &claude.path);
    let home = tempfile::tempdir().unwrap();
    // Runs `claudemesh ARGS` without a terminal, which must succeed; what `claude` was given.
    let launch = |args: &[&str]| {
        succeeds(
            at_home(home.path(), &alice.config_dir())
                .args(args)
                .env("PATH", path)
                // `-y` as root needs Claude Code's own exemption (tests may run as root).
                .env("IS_SANDBOX", "1")
                .stdin(std::process::Stdio::null()),
        );
        std::fs::read_to_string(record).unwrap()
    };
    let seen = launch(&[
        "--name",
        "Reviewer",
        "-y",
        "--groups",
        "backend:lead,qa",
        "--",
        "--model",
        "opus",
    ]);
    let args: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .collect();
    assert_eq!(
        &args[..2],
        [
            "--dangerously-load-development-channels",
            "server:claudemesh"
        ]
    );
    assert!(args.contains(&"--dangerously-skip-permissions"), "{args:?}");
    assert_eq!(&args[args.len() - 2..], ["--model", "opus"]);
    // Not installed: the server is handed over for this session.
    assert!(args.contains(&"--mcp-config"), "{args:?}");
    assert!(seen.contains("CLAUDEMESH_NAME=Reviewer"), "{seen}");
    assert!(seen.contains("CLAUDEMESH_GROUPS=backend:lead,qa"), "{seen}");
    assert!(seen.contains("CLAUDEMESH_CHANNEL=1"), "{seen}");
    assert!(seen.contains("CLAUDEMESH_SESSION_ID=cl-"), "{seen}");

    // Without -y and without a terminal, permissions are not skipped.
    let seen = launch(&["launch", "--quiet"]);
    assert!(!seen.contains("--dangerously-skip-permissions"), "{seen}");
}

/// `doctor` tells a working setup from a broken one, check by check.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_what_is_wrong() {
    let mut broker = BrokerProc::start(&[]);
    let (_alice, bob) = alice_and_bob(&broker);
    let home = bob.config_dir(); // a HOME with no Claude Code files yet
    let fake_claude = tempfile::tempdir().unwrap();
    let claude = fake_claude.path().join("claude");
    std::fs::write(&claude, "#!/bin/sh\n").unwrap();
    let doctor = || {
        let out = at_home(&home, &bob.config_dir())
            .args(["doctor", "--json"])
            .env("PATH", fake_claude.path())
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json: {e}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let checks: Vec<(String, bool, String)> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["ok"].as_bool().unwrap(),
                    c["detail"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (out.status.success(), report["ok"] == true, checks)
    };
    let check = |checks: &[(String, bool, String)], name: &str| -> (bool, String) {
        checks
            .iter()
            .find(|c| c.0 == name)
            .map(|c| (c.1, c.2.clone()))
            .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
    };

    // Not installed yet: that is what fails, and it says what to run.
    let (success, ok, checks) = doctor();
    assert!(!success && !ok);
    let (installed, detail) = check(&checks, "MCP server installed");
    assert!(
        !installed && detail.contains("claudemesh install"),
        "{detail}"
    );
    assert!(check(&checks, "broker for team").0, "{checks:?}");
    assert!(check(&checks, "keys for team").0, "{checks:?}");
    assert!(check(&checks, "claude on PATH").0, "{checks:?}");

    // Installed, with the broker up: all green.
    run_at_home(&home, &bob.config_dir(), &["install"]);
    let (success, ok, checks) = doctor();
    assert!(success && ok, "{checks:?}");

    // The broker down, and the config readable by others: both named.
    broker.terminate();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = bob.config_dir().join("config.json");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (success, ok, checks) = doctor();
    assert!(!success && !ok);
    let (up, detail) = check(&checks, "broker for team");
    assert!(!up && detail.contains("127.0.0.1"), "{detail}");
    #[cfg(unix)]
    {
        let (private, detail) = check(&checks, "config file permissions");
        assert!(!private && detail.contains("644"), "{detail}");
    }
}
