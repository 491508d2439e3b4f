//! The systemd unit `service install` writes on Linux: journald logging, restart on failure,
//! and a sandbox in which the broker can write its data directory and nothing else.

use std::path::{Path, PathBuf};

use super::{Scope, ServiceSpec};
use crate::cli::CliError;

pub const UNIT: &str = "claudemesh.service";

/// Where the unit goes: `/etc/systemd/system`, or `$XDG_CONFIG_HOME/systemd/user`.
pub fn unit_path(scope: Scope) -> Result<PathBuf, CliError> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system").join(UNIT)),
        Scope::User => dirs::config_dir()
            .map(|d| d.join("systemd/user").join(UNIT))
            .ok_or_else(|| CliError::failed("cannot tell your config directory: is $HOME set?")),
    }
}

/// True when systemd runs this machine (and, for a user unit, this user's session), so
/// `systemctl` can act now.
pub fn running(scope: Scope) -> bool {
    Path::new("/run/systemd/system").is_dir()
        && (scope == Scope::System
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| Path::new(&d).join("systemd").is_dir()))
}

fn systemctl(scope: Scope, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["systemctl".to_string()];
    if scope == Scope::User {
        cmd.push("--user".into());
    }
    cmd.extend(args.iter().map(|a| a.to_string()));
    cmd
}

pub fn start_commands(scope: Scope) -> Vec<Vec<String>> {
    vec![
        systemctl(scope, &["daemon-reload"]),
        systemctl(scope, &["enable", "--now", UNIT]),
    ]
}

pub fn stop_commands(scope: Scope) -> Vec<Vec<String>> {
    vec![systemctl(scope, &["disable", "--now", UNIT])]
}

pub fn reload_commands(scope: Scope) -> Vec<Vec<String>> {
    vec![systemctl(scope, &["daemon-reload"])]
}

/// `is-active` and `is-enabled`, as systemctl says them.
pub fn state(scope: Scope) -> Vec<(&'static str, String)> {
    ["is-active", "is-enabled"]
        .into_iter()
        .map(|q| {
            let cmd = systemctl(scope, &[q, UNIT]);
            let said = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_else(|e| format!("unknown ({e})"));
            (q.trim_start_matches("is-"), said)
        })
        .collect()
}

/// The namespaces `bwrap --unshare-all` makes for a deployed service (all but `time`).
const SANDBOX_NAMESPACES: &str = "user mnt pid ipc uts net cgroup";

/// The system calls of a system service, bubblewrap's (mounts, sethostname) and node's.
const SYSTEM_CALLS: &str = "@system-service @mount sethostname @pkey";

/// Credentials are copied when the service starts, so the broker's 30 s check of its
/// certificate file sees the copy, never a renewal: the service must be restarted after one.
pub const RENEWAL_NOTE: &str = "# The TLS files are copied for the service when it starts: restart it after a renewal (certbot: a deploy hook running `systemctl restart claudemesh`).";

/// The unit file.
pub fn render(spec: &ServiceSpec) -> Result<String, CliError> {
    let mut exec = vec![quote(&spec.binary.display().to_string())?];
    exec.push("broker".into());
    exec.push("--data".into());
    exec.push(quote(&spec.data_dir.display().to_string())?);
    let mut credentials = Vec::new();
    for arg in &spec.broker_args {
        match arg {
            super::BrokerArg::Plain(a) => exec.push(quote(a)?),
            super::BrokerArg::File { name, path } if spec.scope == Scope::System => {
                // Read by systemd as root and handed to the service alone: the key file
                // can stay 0600 root, and the unit names a path, never the secret.
                credentials.push(format!(
                    "LoadCredential={name}:{}",
                    quote(&path.display().to_string())?
                ));
                exec.push(format!("${{CREDENTIALS_DIRECTORY}}/{name}"));
            }
            super::BrokerArg::File { path, .. } => exec.push(quote(&path.display().to_string())?),
        }
    }
    let scope_flag = match spec.scope {
        Scope::System => "--system",
        Scope::User => "--user",
    };
    let mut u = String::new();
    let mut line = |s: &str| {
        u.push_str(s);
        u.push('\n');
    };
    line(&format!(
        "# Written by `claudemesh service install {scope_flag}`; `claudemesh service uninstall {scope_flag}` removes it."
    ));
    line("[Unit]");
    line("Description=claudemesh broker");
    line("After=network-online.target");
    line("Wants=network-online.target");
    line("");
    line("[Service]");
    line("Type=exec");
    line(&format!("ExecStart={}", exec.join(" ")));
    line("Restart=on-failure");
    line("RestartSec=2s");
    line("TimeoutStopSec=30s");
    line("StandardOutput=journal");
    line("StandardError=journal");
    line("SyslogIdentifier=claudemesh");
    line("Environment=NO_COLOR=1");
    if let Some(file) = &spec.env_file {
        line(&format!(
            "EnvironmentFile={}",
            quote(&file.display().to_string())?
        ));
    }
    if spec.scope == Scope::System && spec.has_certificate_files() {
        line(RENEWAL_NOTE);
    }
    for c in &credentials {
        line(c);
    }
    line("UMask=0077");
    line("LimitNOFILE=65536");
    line("NoNewPrivileges=yes");
    line("ProtectSystem=strict");
    line("PrivateTmp=yes");
    line("LockPersonality=yes");
    line("RestrictRealtime=yes");
    line("RestrictSUIDSGID=yes");
    // No MemoryDenyWriteExecute: deployed services run in the broker's cgroup under the same
    // filters, and node (V8's JIT) aborts without writable, executable pages.
    line("SystemCallArchitectures=native");
    match spec.scope {
        Scope::System => {
            // Its own throw-away user; /var/lib/claudemesh is made and owned for it.
            line("DynamicUser=yes");
            line("StateDirectory=claudemesh");
            line("StateDirectoryMode=0700");
            line("ProtectHome=yes");
            line("PrivateDevices=yes");
            // Deployed services run in bubblewrap, which needs what follows: no
            // ProtectKernelTunables or ProtectKernelLogs (their mounts over /proc make the
            // kernel refuse bwrap a /proc of its own; this user, without capabilities, cannot
            // write /proc/sys or read /proc/kmsg anyway), no ProtectHostname (its seccomp
            // filter refuses the sethostname bwrap makes in its own UTS namespace; without
            // CAP_SYS_ADMIN this user cannot rename the host), the namespaces
            // `bwrap --unshare-all` makes, and the mount calls and sethostname it makes in
            // them. @pkey: node's memory protection keys.
            line("ProtectKernelModules=yes");
            line("ProtectControlGroups=yes");
            line("ProtectClock=yes");
            line(&format!("RestrictNamespaces={SANDBOX_NAMESPACES}"));
            line("RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK");
            line(&format!("SystemCallFilter={SYSTEM_CALLS}"));
            line("SystemCallErrorNumber=EPERM");
            // Ports below 1024 (443 for ACME) without being root.
            line("AmbientCapabilities=CAP_NET_BIND_SERVICE");
            line("CapabilityBoundingSet=CAP_NET_BIND_SERVICE");
        }
        Scope::User => {
            line("ProtectHome=read-only");
            line(&format!(
                "ReadWritePaths={}",
                quote(&spec.data_dir.display().to_string())?
            ));
        }
    }
    line("");
    line("[Install]");
    line(match spec.scope {
        Scope::System => "WantedBy=multi-user.target",
        Scope::User => "WantedBy=default.target",
    });
    Ok(u)
}

/// One word of a unit file line as systemd will split it: `%` and `$` doubled (no specifier or
/// variable is expanded), and quoted with `\` escapes unless it is plainly safe.
pub fn quote(word: &str) -> Result<String, CliError> {
    if word.chars().any(char::is_control) {
        return Err(CliError::Usage(format!(
            "{word:?} holds a control character, which a unit file cannot carry"
        )));
    }
    let escaped = word.replace('%', "%%").replace('$', "$$");
    let plain = !escaped.is_empty()
        && escaped
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%$+=:,./-".contains(c));
    if plain {
        return Ok(escaped);
    }
    Ok(format!(
        "\"{}\"",
        escaped.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_as_systemd_splits_them() {
        assert_eq!(quote("--retention").unwrap(), "--retention");
        assert_eq!(quote("0.0.0.0:7900").unwrap(), "0.0.0.0:7900");
        assert_eq!(quote("/srv/my data").unwrap(), "\"/srv/my data\"");
        assert_eq!(quote("100%").unwrap(), "100%%");
        assert_eq!(quote("$HOME").unwrap(), "$$HOME");
        assert_eq!(quote("a\"b\\c d").unwrap(), "\"a\\\"b\\\\c d\"");
        assert_eq!(quote("").unwrap(), "\"\"");
        assert_eq!(quote(";").unwrap(), "\";\"");
        assert!(quote("a\nExecStartPre=/bin/sh").is_err());
    }
}
