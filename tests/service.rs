//! `claudemesh service install|uninstall|status` against a temporary HOME: the unit it writes
//! is one `systemd-analyze verify` accepts, `uninstall` removes it, `status` reports it, and
//! without a running systemd (a container, CI) install still succeeds and says what to run.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{BIN, skip_unless_strict};
use serde_json::Value;

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

/// `claudemesh ARGS` with `home` as HOME, and no user systemd to talk to.
fn claudemesh(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env("USER", "alice")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("CLAUDEMESH_DATA_DIR")
        .current_dir(home)
        .output()
        .expect("run claudemesh")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `systemd-analyze verify` on `unit`; `None` when it accepted it without a word, else what it
/// said. Skips (returns `None`) where systemd-analyze is missing.
fn verify(unit: &Path, user: bool, home: &Path) -> Option<String> {
    if !Path::new(SYSTEMD_ANALYZE).exists() {
        skip_unless_strict("systemd-analyze is not installed (Debian package systemd)");
        return None;
    }
    let runtime = home.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let mut cmd = Command::new(SYSTEMD_ANALYZE);
    if user {
        cmd.arg("--user");
    }
    let out = cmd
        .arg("verify")
        .arg(unit)
        .env("HOME", home)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .expect("run systemd-analyze");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (!out.status.success() || !said.trim().is_empty()).then_some(said)
}

fn unit_path(home: &Path) -> PathBuf {
    home.join(".config/systemd/user/claudemesh.service")
}

#[test]
fn a_user_service_is_written_verified_reported_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    // Relative, as given: the unit names it from the directory install ran in.
    std::fs::write(
        home.join("metrics.token"),
        "a-metrics-token-of-32-characters\n",
    )
    .unwrap();
    let out = claudemesh(
        home,
        &[
            "service",
            "install",
            "--user",
            "--listen",
            "127.0.0.1:7911",
            "--public-url",
            "http://my host:7900/%h$HOME\"q",
            "--metrics-token-file",
            "metrics.token",
            "--retention",
            "3d",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    // No systemd here: nothing started, and the person is told what to run.
    assert!(
        stdout.contains("systemd is not running here")
            && stdout.contains("\n  systemctl --user daemon-reload\n")
            && stdout.contains("\n  systemctl --user enable --now claudemesh.service\n"),
        "{stdout}"
    );

    let unit = std::fs::read_to_string(unit_path(home)).expect("the unit is written");
    let data = home.join(".local/share/claudemesh");
    let exec = format!(
        "ExecStart={BIN} broker --data {} --listen 127.0.0.1:7911 --public-url \"http://my host:7900/%%h$$HOME\\\"q\" --metrics-token-file {} --retention 3d\n",
        data.display(),
        home.join("metrics.token").display()
    );
    assert!(unit.contains(&exec), "wanted {exec}in\n{unit}");
    for line in [
        "Restart=on-failure",
        "StandardError=journal",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        &format!("ReadWritePaths={}", data.display()),
        "WantedBy=default.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line} in\n{unit}");
    }
    assert!(
        !unit.contains("MemoryDenyWriteExecute"),
        "node services abort under it:\n{unit}"
    );
    assert!(
        data.is_dir(),
        "install makes the data dir the sandbox opens"
    );
    if let Some(said) = verify(&unit_path(home), true, home) {
        panic!("systemd-analyze --user verify refused the unit:\n{said}\n{unit}");
    }

    let out = claudemesh(home, &["service", "status", "--user", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    let s = &v["services"][0];
    assert_eq!(s["scope"], "user");
    assert_eq!(s["installed"], true);
    assert!(
        s["exec"].as_str().unwrap().contains("--retention 3d"),
        "{v}"
    );
    let out = claudemesh(home, &["service", "status"]);
    assert!(
        text(&out.stdout).contains(&format!(
            "user service: installed at {}",
            unit_path(home).display()
        )),
        "{}",
        text(&out.stdout)
    );

    let out = claudemesh(home, &["service", "uninstall", "--user"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!unit_path(home).exists(), "uninstall removes the unit");
    assert!(data.is_dir(), "uninstall keeps the data");
    let out = claudemesh(home, &["service", "status", "--user", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(v["services"][0]["installed"], false);
    let out = claudemesh(home, &["service", "uninstall"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("nothing to do"));
}

#[test]
fn a_system_unit_is_sandboxed_and_reads_secrets_as_credentials() {
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("metrics.token");
    std::fs::write(&token, "a-metrics-token-of-32-characters\n").unwrap();
    let out = claudemesh(
        home.path(),
        &[
            "service",
            "install",
            "--system",
            "--print",
            "--env-file",
            "/etc/claudemesh/env",
            "--listen",
            "0.0.0.0:443",
            "--insecure-plaintext",
            "--lan",
            "--metrics-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let unit = text(&out.stdout);
    assert!(unit.contains(&format!(
        "ExecStart={BIN} broker --data /var/lib/claudemesh --listen 0.0.0.0:443 --insecure-plaintext --lan --metrics-token-file ${{CREDENTIALS_DIRECTORY}}/metrics.token\n"
    )), "{unit}");
    for line in [
        &format!("LoadCredential=metrics.token:{}", token.display()),
        "EnvironmentFile=/etc/claudemesh/env",
        "DynamicUser=yes",
        "StateDirectory=claudemesh",
        "ProtectHome=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "WantedBy=multi-user.target",
        // Deployed services' bubblewrap makes these namespaces, mounts in them and names
        // its host; node needs its protection keys.
        "RestrictNamespaces=user mnt pid ipc uts net cgroup",
        "SystemCallFilter=@system-service @mount sethostname @pkey",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "PrivateDevices=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line} in\n{unit}");
    }
    // node aborts under MemoryDenyWriteExecute; the mounts of ProtectKernelTunables and
    // ProtectKernelLogs over /proc make the kernel refuse bwrap a /proc; ProtectHostname's
    // seccomp filter refuses bwrap's sethostname.
    for gone in [
        "MemoryDenyWriteExecute",
        "ProtectKernelTunables",
        "ProtectKernelLogs",
        "ProtectHostname",
        "RestrictNamespaces=yes",
    ] {
        assert!(
            !unit.lines().any(|l| l.starts_with(gone)),
            "{gone} in\n{unit}"
        );
    }
    let file = home.path().join("claudemesh.service");
    std::fs::write(&file, &unit).unwrap();
    if let Some(said) = verify(&file, false, home.path()) {
        panic!("systemd-analyze verify refused the system unit:\n{said}\n{unit}");
    }
}

#[test]
fn install_refuses_flags_the_broker_would_refuse() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let out = claudemesh(home, &["service", "install", "--user", "--listne", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--listne"),
        "{}",
        text(&out.stderr)
    );
    assert!(!unit_path(home).exists());

    let out = claudemesh(home, &["service", "install", "--listen", "0.0.0.0:7900"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--system"),
        "{}",
        text(&out.stderr)
    );

    // --lan on the default loopback address would make a service that fails at every start.
    let out = claudemesh(home, &["service", "install", "--user", "--lan"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--listen 0.0.0.0:7900"), "{stderr}");
    assert!(!unit_path(home).exists());

    let out = claudemesh(
        home,
        &[
            "service", "install", "--system", "--print", "--data", "/srv",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/var/lib/claudemesh"));

    // What the broker checks before it starts, install checks too, and says the broker's words.
    for (flags, said) in [
        (
            &["--listen", "0.0.0.0:7902"][..],
            "refusing to listen on 0.0.0.0:7902 without TLS",
        ),
        (
            &["--files", "/srv/files"][..],
            "--files /srv/files: only s3://bucket[/prefix] URLs are supported",
        ),
        (
            &[
                "--listen",
                "0.0.0.0:443",
                "--tls-cert",
                "/nonexist/c.pem",
                "--tls-key",
                "/nonexist/k.pem",
            ][..],
            "TLS: --tls-cert /nonexist/c.pem",
        ),
        (
            &["--metrics-token-file", "/nonexist/metrics.token"][..],
            "cannot read /nonexist/metrics.token",
        ),
    ] {
        let mut args = vec!["service", "install", "--user"];
        args.extend_from_slice(flags);
        let out = claudemesh(home, &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(
            stderr.contains("the broker would not start with these flags") && stderr.contains(said),
            "{flags:?}: {stderr}"
        );
        assert!(!unit_path(home).exists(), "{flags:?}: no unit written");
    }
}

#[test]
fn a_system_service_refuses_a_binary_its_sandbox_hides() {
    let home = tempfile::tempdir().unwrap();
    // PrivateTmp=yes gives the service an empty /tmp and /var/tmp: a binary there would fail
    // at every start (203/EXEC).
    for dir in ["/tmp", "/var/tmp"] {
        let holder = tempfile::tempdir_in(dir).unwrap();
        let binary = holder.path().join("claudemesh");
        std::fs::copy(BIN, &binary).unwrap();
        let out = claudemesh(
            home.path(),
            &[
                "service",
                "install",
                "--system",
                "--print",
                "--binary",
                binary.to_str().unwrap(),
            ],
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{dir}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot see {}", binary.display()))
                && stderr.contains("PrivateTmp")
                && stderr.contains("/usr/local/bin/claudemesh"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "no unit is printed");
    }
}

/// A broker whose bubblewrap may not make its mounts (here /proc/kmsg covered, as a unit's
/// ProtectKernelLogs= does, which makes the kernel refuse bwrap a /proc) says that something
/// around it forbids them, not that bubblewrap is missing.
#[test]
fn a_sandbox_forbidden_its_namespaces_is_reported_as_such() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let bwrap = Path::new("/usr/bin/bwrap");
    if !root || !bwrap.exists() || Command::new("unshare").arg("--help").output().is_err() {
        return skip_unless_strict("needs root, unshare and /usr/bin/bwrap");
    }
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("bwrap");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\nexec unshare -m sh -c 'mount --bind /dev/null /proc/kmsg && exec /usr/bin/bwrap \"$@\"' bwrap \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let broker = common::BrokerProc::start_with_env(&[], &[("PATH", &path)]);
    let (alice, _bob) = common::alice_and_bob(&broker);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service_mcp.py"),
        dir.path().join("server.py"),
    )
    .unwrap();
    let out = alice.run(&[
        "deploy",
        "svc",
        "--dir",
        dir.path().to_str().unwrap(),
        "--scope",
        "mesh",
        "--json",
    ]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let said = &out.stderr;
    assert!(
        said.contains("cannot sandbox services")
            && said.contains("Operation not permitted")
            && said.contains("not permitted to make namespaces or mounts")
            && said.contains("RestrictNamespaces=")
            && !said.contains("install bubblewrap"),
        "{said}"
    );
}
