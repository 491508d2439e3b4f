//! The launchd job `service install` writes on macOS: a LaunchAgent (`--user`) or a
//! LaunchDaemon (`--system`), restarted when it fails, logging to a file launchd appends to.
//! Built on every platform, so its text is tested on Linux too.

use std::path::PathBuf;

use super::{BrokerArg, Scope, ServiceSpec};
use crate::cli::CliError;

pub const LABEL: &str = "dev.claudemesh.broker";

pub fn plist_path(scope: Scope) -> Result<PathBuf, CliError> {
    let file = format!("{LABEL}.plist");
    match scope {
        Scope::System => Ok(PathBuf::from("/Library/LaunchDaemons").join(file)),
        Scope::User => dirs::home_dir()
            .map(|h| h.join("Library/LaunchAgents").join(file))
            .ok_or_else(|| CliError::failed("cannot tell your home directory: is $HOME set?")),
    }
}

/// Where the broker's log goes (launchd has no journal).
pub fn log_path(scope: Scope) -> Option<PathBuf> {
    match scope {
        Scope::System => Some(PathBuf::from("/Library/Logs/claudemesh/broker.log")),
        Scope::User => dirs::home_dir().map(|h| h.join("Library/Logs/claudemesh/broker.log")),
    }
}

/// `gui/<uid>` or `system`: the launchd domain the job lives in.
fn domain(scope: Scope) -> String {
    match scope {
        Scope::System => "system".into(),
        Scope::User => {
            let uid = std::process::Command::new("id")
                .arg("-u")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default();
            format!("gui/{uid}")
        }
    }
}

pub fn running(_scope: Scope) -> bool {
    cfg!(target_os = "macos")
}

pub fn start_commands(scope: Scope, plist: &std::path::Path) -> Vec<Vec<String>> {
    vec![vec![
        "launchctl".into(),
        "bootstrap".into(),
        domain(scope),
        plist.display().to_string(),
    ]]
}

pub fn stop_commands(scope: Scope) -> Vec<Vec<String>> {
    vec![vec![
        "launchctl".into(),
        "bootout".into(),
        format!("{}/{LABEL}", domain(scope)),
    ]]
}

pub fn state(scope: Scope) -> Vec<(&'static str, String)> {
    let loaded = std::process::Command::new("launchctl")
        .args(["print", &format!("{}/{LABEL}", domain(scope))])
        .output()
        .is_ok_and(|o| o.status.success());
    vec![("loaded", if loaded { "yes" } else { "no" }.to_string())]
}

pub fn render(spec: &ServiceSpec) -> Result<String, CliError> {
    if spec.env_file.is_some() {
        return Err(CliError::Usage(
            "launchd reads no environment file: put the variables in the plist's EnvironmentVariables by hand, or use the AWS credentials file (~/.aws/credentials)".into(),
        ));
    }
    let mut args = vec![
        spec.binary.display().to_string(),
        "broker".into(),
        "--data".into(),
        spec.data_dir.display().to_string(),
    ];
    for arg in &spec.broker_args {
        args.push(match arg {
            BrokerArg::Plain(a) => a.clone(),
            BrokerArg::File { path, .. } => path.display().to_string(),
        });
    }
    let log = log_path(spec.scope)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/tmp/claudemesh-broker.log".into());
    let mut p = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `claudemesh service install`; `claudemesh service uninstall` removes it. -->\n\
         <plist version=\"1.0\">\n<dict>\n",
    );
    p += &format!("  <key>Label</key>\n  <string>{LABEL}</string>\n");
    p += "  <key>ProgramArguments</key>\n  <array>\n";
    for a in &args {
        p += &format!("    <string>{}</string>\n", xml(a)?);
    }
    p += "  </array>\n";
    p += "  <key>RunAtLoad</key>\n  <true/>\n";
    // Restart when it fails; a clean exit (SIGTERM from launchctl) stays stopped.
    p += "  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n";
    p += "  <key>ThrottleInterval</key>\n  <integer>2</integer>\n";
    p += "  <key>ProcessType</key>\n  <string>Background</string>\n";
    p += "  <key>Umask</key>\n  <integer>63</integer>\n";
    p += "  <key>EnvironmentVariables</key>\n  <dict>\n    <key>NO_COLOR</key>\n    <string>1</string>\n  </dict>\n";
    p += &format!(
        "  <key>StandardOutPath</key>\n  <string>{0}</string>\n  <key>StandardErrorPath</key>\n  <string>{0}</string>\n",
        xml(&log)?
    );
    p += "</dict>\n</plist>\n";
    Ok(p)
}

/// Text as XML character data.
fn xml(text: &str) -> Result<String, CliError> {
    if text.chars().any(|c| c.is_control()) {
        return Err(CliError::Usage(format!(
            "{text:?} holds a control character, which a plist cannot carry"
        )));
    }
    Ok(text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plist_runs_the_broker_with_its_flags_escaped() {
        let spec = ServiceSpec {
            scope: Scope::User,
            binary: "/usr/local/bin/claudemesh".into(),
            data_dir: "/Users/a/Library/Application Support/claudemesh".into(),
            broker_args: vec![
                BrokerArg::Plain("--public-url".into()),
                BrokerArg::Plain("http://a&b<c>:7900".into()),
            ],
            env_file: None,
        };
        let plist = render(&spec).unwrap();
        assert!(plist.contains(&format!("<string>{LABEL}</string>")));
        assert!(plist.contains(
            "    <string>/usr/local/bin/claudemesh</string>\n    <string>broker</string>\n    <string>--data</string>\n    <string>/Users/a/Library/Application Support/claudemesh</string>\n    <string>--public-url</string>\n    <string>http://a&amp;b&lt;c&gt;:7900</string>\n"
        ), "{plist}");
        assert!(plist.contains("<key>SuccessfulExit</key>\n    <false/>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
        let mut spec = spec;
        spec.broker_args = vec![BrokerArg::Plain("a\u{7}".into())];
        assert!(render(&spec).is_err());
    }
}
