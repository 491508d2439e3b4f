//! `claudemesh launch` as root: Claude Code refuses `--dangerously-skip-permissions` there, so
//! `launch -y` says why before starting it (and before anything is used up), unless
//! `IS_SANDBOX=1` declares a throw-away container.

use crate::common;

use std::process::Command;

use common::{BIN, BrokerProc, Person, create_mesh, skip_unless_strict};

#[test]
fn launch_y_as_root_says_why_claude_would_refuse() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip_unless_strict("not running as root");
        return;
    }
    let broker = BrokerProc::start(&[]);
    let alice = Person::new("alice");
    create_mesh(&broker, &alice, "team");
    let claude = common::mcp::FakeClaude::new();
    let (record, path) = (&claude.record, &claude.path);
    let home = tempfile::tempdir().unwrap();
    let launch = |sandbox: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["launch", "-y", "--quiet"])
            .env("HOME", home.path())
            .env("CLAUDEMESH_CONFIG_DIR", alice.config_dir())
            .env("PATH", path)
            .env_remove("IS_SANDBOX")
            .stdin(std::process::Stdio::null());
        if let Some(v) = sandbox {
            cmd.env("IS_SANDBOX", v);
        }
        cmd.output().unwrap()
    };

    for sandbox in [None, Some("yes")] {
        let out = launch(sandbox);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("refuses to run as root")
                && stderr.contains("as a normal user")
                && stderr.contains("leave out -y")
                && stderr.contains("IS_SANDBOX=1"),
            "{stderr}"
        );
        assert!(!record.exists(), "claude was not started");
    }

    // Declared a sandbox, as Claude Code itself accepts: launched with the flag.
    let out = launch(Some("1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = std::fs::read_to_string(record).expect("claude was started");
    assert!(
        seen.lines()
            .any(|l| l == "ARG --dangerously-skip-permissions"),
        "{seen}"
    );
}
