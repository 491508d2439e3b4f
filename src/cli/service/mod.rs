//! `claudemesh service install|uninstall|status`: run the broker as a service — a systemd unit
//! on Linux, a launchd job on macOS — with the broker flags given to `install`.

mod launchd;
mod systemd;

use std::path::{Path, PathBuf};

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::outln;
use super::{CliError, CliResult, print_json};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "service", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh service install --user --listen 127.0.0.1:7900")]
/// run the broker as a service: a systemd unit on Linux, a launchd job on macOS
pub struct ServiceCmd {
    #[argh(subcommand)]
    action: ServiceAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum ServiceAction {
    Install(InstallCmd),
    Uninstall(UninstallCmd),
    Status(StatusCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "install", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh service install --system --listen 0.0.0.0:443 --acme mesh.example.com"
)]
/// install the broker as a service and start it; the words after the options are `claudemesh
/// broker` flags, e.g. `service install --system --listen 0.0.0.0:7900 --lan`
pub struct InstallCmd {
    /// a system service: starts at boot, runs as its own user, data in /var/lib/claudemesh
    #[argh(switch)]
    system: bool,
    /// a service of your login (systemctl --user), data in ~/.local/share/claudemesh
    #[argh(switch)]
    user: bool,
    /// the claudemesh binary the service runs (default: this one)
    #[argh(option)]
    binary: Option<PathBuf>,
    /// a file of VARIABLE=value lines for the broker's environment (e.g. the AWS_* secrets of
    /// --files s3://…), read by systemd: secrets stay out of the unit
    #[argh(option)]
    env_file: Option<PathBuf>,
    /// print the unit (or plist) and change nothing
    #[argh(switch)]
    print: bool,
    /// write the unit but do not enable or start it
    #[argh(switch)]
    no_start: bool,
    /// flags for `claudemesh broker` in the service, e.g. --listen 0.0.0.0:7900 --lan
    #[argh(positional)]
    broker_flags: Vec<String>,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "uninstall", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh service uninstall --user")]
/// stop and remove the service (the broker's data directory is kept)
pub struct UninstallCmd {
    /// the system service
    #[argh(switch)]
    system: bool,
    /// the service of your login
    #[argh(switch)]
    user: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "status", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh service status --json")]
/// say whether the service is installed, what it runs, and whether it is running
pub struct StatusCmd {
    /// only the system service
    #[argh(switch)]
    system: bool,
    /// only the service of your login
    #[argh(switch)]
    user: bool,
    /// print JSON: {services:[{scope, manager, path, installed, exec, state}]}
    #[argh(switch)]
    json: bool,
}

impl ServiceCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            ServiceAction::Install(c) => c.run().await,
            ServiceAction::Uninstall(c) => c.run(),
            ServiceAction::Status(c) => c.run(),
        }
    }
}

/// Which service manager instance: the machine's, or the logged-in user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::User => "user",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Scope::System => "--system",
            Scope::User => "--user",
        }
    }

    /// The scopes `--system` / `--user` pick; neither picks both.
    fn chosen(system: bool, user: bool) -> Vec<Scope> {
        match (system, user) {
            (true, false) => vec![Scope::System],
            (false, true) => vec![Scope::User],
            _ => vec![Scope::System, Scope::User],
        }
    }
}

/// One broker flag word for the service: as given, or a file the broker reads (made absolute,
/// and for a system unit passed as a systemd credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerArg {
    Plain(String),
    File { name: &'static str, path: PathBuf },
}

/// The credential name of `--tls-cert`.
const TLS_CERT: &str = "tls-cert.pem";

/// Broker flags whose value is a file: (flag, credential name).
const FILE_FLAGS: &[(&str, &str)] = &[
    ("--tls-cert", TLS_CERT),
    ("--tls-key", "tls-key.pem"),
    ("--metrics-token-file", "metrics.token"),
];

/// What the service runs.
pub struct ServiceSpec {
    pub scope: Scope,
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub broker_args: Vec<BrokerArg>,
    pub env_file: Option<PathBuf>,
}

impl ServiceSpec {
    /// True when the broker serves TLS from `--tls-cert` files (which a system unit hands over
    /// as credentials, copied at each start: a renewal then needs a restart).
    pub fn has_certificate_files(&self) -> bool {
        self.broker_args
            .iter()
            .any(|a| matches!(a, BrokerArg::File { name, .. } if *name == TLS_CERT))
    }
}

/// systemd here, launchd on macOS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    fn here() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    fn name(self) -> &'static str {
        match self {
            Manager::Systemd => "systemd",
            Manager::Launchd => "launchd",
        }
    }

    fn file(self, scope: Scope) -> Result<PathBuf, CliError> {
        match self {
            Manager::Systemd => systemd::unit_path(scope),
            Manager::Launchd => launchd::plist_path(scope),
        }
    }

    fn render(self, spec: &ServiceSpec) -> Result<String, CliError> {
        match self {
            Manager::Systemd => systemd::render(spec),
            Manager::Launchd => launchd::render(spec),
        }
    }

    fn running(self, scope: Scope) -> bool {
        match self {
            Manager::Systemd => systemd::running(scope),
            Manager::Launchd => launchd::running(scope),
        }
    }

    fn start_commands(self, scope: Scope, file: &Path) -> Vec<Vec<String>> {
        match self {
            Manager::Systemd => systemd::start_commands(scope),
            Manager::Launchd => launchd::start_commands(scope, file),
        }
    }

    fn stop_commands(self, scope: Scope) -> Vec<Vec<String>> {
        match self {
            Manager::Systemd => systemd::stop_commands(scope),
            Manager::Launchd => launchd::stop_commands(scope),
        }
    }

    fn after_removal_commands(self, scope: Scope) -> Vec<Vec<String>> {
        match self {
            Manager::Systemd => systemd::reload_commands(scope),
            Manager::Launchd => Vec::new(),
        }
    }

    fn state(self, scope: Scope) -> Vec<(&'static str, String)> {
        match self {
            Manager::Systemd => systemd::state(scope),
            Manager::Launchd => launchd::state(scope),
        }
    }

    /// The data directory a service of `scope` keeps when `--data` is not given.
    fn default_data_dir(self, scope: Scope) -> Result<PathBuf, CliError> {
        match (self, scope) {
            (Manager::Systemd, Scope::System) => Ok(PathBuf::from("/var/lib/claudemesh")),
            (Manager::Launchd, Scope::System) => Ok(PathBuf::from("/usr/local/var/claudemesh")),
            (_, Scope::User) => dirs::data_dir()
                .map(|d| d.join("claudemesh"))
                .ok_or_else(|| CliError::failed("cannot tell your data directory: is $HOME set?")),
        }
    }
}

/// Runs each command, stopping at the first that fails.
fn run_commands(commands: &[Vec<String>]) -> Result<(), String> {
    for cmd in commands {
        let status = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .status()
            .map_err(|e| format!("cannot run `{}`: {e}", cmd.join(" ")))?;
        if !status.success() {
            return Err(format!("`{}` failed ({status})", cmd.join(" ")));
        }
    }
    Ok(())
}

/// The commands on one line, for an error message.
fn show(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|c| format!("`{}`", c.join(" ")))
        .collect::<Vec<_>>()
        .join(", then ")
}

/// `head`, then one indented line per command, ready to paste.
fn print_commands(head: &str, commands: &[Vec<String>]) {
    outln!("{head}");
    for c in commands {
        outln!("  {}", c.join(" "));
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path)
        .map_err(|e| CliError::failed(format!("cannot make {} absolute: {e}", path.display())))
}

impl InstallCmd {
    fn scope(&self) -> Result<Scope, CliError> {
        match (self.system, self.user) {
            (true, false) => Ok(Scope::System),
            (false, true) => Ok(Scope::User),
            _ => Err(CliError::Usage(
                "say which service: --system (a server: starts at boot, runs as its own user) or --user (your login)".into(),
            )),
        }
    }

    /// The broker flags, checked as `claudemesh broker` would parse and check them before it
    /// starts, and the data directory they name.
    async fn broker_args(
        &self,
        manager: Manager,
        scope: Scope,
    ) -> Result<(Vec<BrokerArg>, PathBuf), CliError> {
        let words: Vec<&str> = self.broker_flags.iter().map(String::as_str).collect();
        let broker = match super::broker::BrokerCmd::from_args(&["claudemesh", "broker"], &words) {
            Ok(broker) => broker,
            Err(early) => {
                let why = early.output.trim().to_string();
                return Err(CliError::Usage(if early.status.is_ok() {
                    "`--help` is not a broker flag for the service; see `claudemesh broker --help`"
                        .into()
                } else {
                    format!("the broker flags for the service do not parse: {why}")
                }));
            }
        };
        // A service that cannot start would only restart in a loop: refuse it here, with the
        // broker's own reason.
        if let Err(e) = broker.preflight().await {
            let why = match e {
                CliError::Usage(m) | CliError::Failed(m) | CliError::NotFound(m) => m,
            };
            return Err(CliError::Usage(format!(
                "the broker would not start with these flags: {why}"
            )));
        }
        let mut data_dir = None;
        let mut args = Vec::new();
        let mut words = self.broker_flags.iter();
        while let Some(word) = words.next() {
            if word == "--data" {
                let value = words.next().map(PathBuf::from).unwrap_or_default();
                if scope == Scope::System && manager == Manager::Systemd {
                    return Err(CliError::Usage(
                        "a system service keeps its data in /var/lib/claudemesh (systemd's StateDirectory, owned by the service's own user); leave out --data".into(),
                    ));
                }
                data_dir = Some(absolute(&value)?);
                continue;
            }
            if let Some((_, name)) = FILE_FLAGS.iter().find(|(flag, _)| flag == word) {
                let value = words.next().map(PathBuf::from).unwrap_or_default();
                args.push(BrokerArg::Plain(word.clone()));
                args.push(BrokerArg::File {
                    name,
                    path: absolute(&value)?,
                });
                continue;
            }
            args.push(BrokerArg::Plain(word.clone()));
        }
        let data_dir = match data_dir {
            Some(d) => d,
            None => manager.default_data_dir(scope)?,
        };
        Ok((args, data_dir))
    }

    fn binary(&self, scope: Scope) -> Result<PathBuf, CliError> {
        let binary = match &self.binary {
            Some(b) => absolute(b)?,
            None => std::env::current_exe().map_err(|e| {
                CliError::failed(format!(
                    "cannot tell where this binary is ({e}); pass --binary PATH"
                ))
            })?,
        };
        if !binary.is_file() {
            return Err(CliError::failed(format!(
                "{} is not a file: pass --binary PATH",
                binary.display()
            )));
        }
        if scope == Scope::System
            && let Some(why) = hidden_from_system_service(&binary)
        {
            return Err(CliError::failed(format!(
                "the system service cannot see {} ({why}): copy it first, e.g. `sudo install -m 0755 {} /usr/local/bin/claudemesh`, then run `/usr/local/bin/claudemesh service install --system …`",
                binary.display(),
                binary.display()
            )));
        }
        Ok(binary)
    }

    pub async fn run(self) -> CliResult {
        let scope = self.scope()?;
        let manager = Manager::here();
        let (broker_args, data_dir) = self.broker_args(manager, scope).await?;
        let spec = ServiceSpec {
            scope,
            binary: self.binary(scope)?,
            data_dir,
            broker_args,
            env_file: self.env_file.as_deref().map(absolute).transpose()?,
        };
        let text = manager.render(&spec)?;
        if self.print {
            super::output::ours(&text);
            return Ok(());
        }
        let file = manager.file(scope)?;
        write_file(&file, &text)?;
        outln!("wrote {}", file.display());
        if scope == Scope::User {
            // The sandbox can only open up a directory that exists.
            std::fs::create_dir_all(&spec.data_dir)
                .and_then(|()| set_private(&spec.data_dir))
                .map_err(|e| {
                    CliError::failed(format!(
                        "cannot make the data directory {}: {e}",
                        spec.data_dir.display()
                    ))
                })?;
        }
        outln!("data directory: {}", spec.data_dir.display());
        let commands = manager.start_commands(scope, &file);
        if self.no_start {
            print_commands("not started (--no-start); to start it, run:", &commands);
        } else if manager.running(scope) {
            run_commands(&commands).map_err(|e| {
                CliError::failed(format!(
                    "the service file is written, but starting it failed: {e}; see its log and run {}",
                    show(&commands)
                ))
            })?;
            outln!("enabled and started the {} service", scope.name());
        } else {
            print_commands(
                &format!(
                    "{} is not running here (a container?), so nothing was started; where it runs, start the service with:",
                    manager.name()
                ),
                &commands,
            );
        }
        outln!(
            "admin token (for `claudemesh create`): {} once the broker has started",
            spec.data_dir.join("admin.token").display()
        );
        match (manager, scope) {
            (Manager::Systemd, Scope::System) => {
                outln!("logs: journalctl -u claudemesh -f");
                if spec.has_certificate_files() {
                    outln!(
                        "renewed certificates: the service gets --tls-cert and --tls-key as systemd credentials, copied when it starts, so restart it after each renewal; for certbot, a deploy hook does it:"
                    );
                    outln!(
                        "  printf '#!/bin/sh\\nsystemctl restart claudemesh\\n' | sudo tee /etc/letsencrypt/renewal-hooks/deploy/claudemesh && sudo chmod 0755 /etc/letsencrypt/renewal-hooks/deploy/claudemesh"
                    );
                }
            }
            (Manager::Systemd, Scope::User) => {
                outln!("logs: journalctl --user -u claudemesh -f");
                outln!(
                    "to keep it running after you log out: loginctl enable-linger {}",
                    std::env::var("USER").unwrap_or_else(|_| "$USER".into())
                );
            }
            (Manager::Launchd, _) => {
                if let Some(log) = launchd::log_path(scope) {
                    outln!("logs: {}", log.display());
                }
            }
        }
        Ok(())
    }
}

/// Why the system unit's sandbox would hide `path` from the broker, if it would: home
/// directories (`ProtectHome=yes`) and the temporary directories (`PrivateTmp=yes` gives the
/// service empty ones of its own).
fn hidden_from_system_service(path: &Path) -> Option<&'static str> {
    if ["/home", "/root", "/run/user"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        return Some("its sandbox hides home directories");
    }
    if ["/tmp", "/var/tmp"].iter().any(|p| path.starts_with(p)) {
        return Some("its sandbox gives it an empty /tmp and /var/tmp of its own (PrivateTmp)");
    }
    None
}

fn write_file(path: &Path, text: &str) -> CliResult {
    let fail = |e: std::io::Error| {
        CliError::failed(format!(
            "cannot write {}: {e}{}",
            path.display(),
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                " (a system service needs root: sudo)"
            } else {
                ""
            }
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    std::fs::write(path, text).map_err(fail)
}

#[cfg(unix)]
fn set_private(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_private(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

impl UninstallCmd {
    pub fn run(self) -> CliResult {
        let manager = Manager::here();
        let mut installed = Vec::new();
        for scope in Scope::chosen(self.system, self.user) {
            let file = manager.file(scope)?;
            if file.exists() {
                installed.push((scope, file));
            }
        }
        let (scope, file) = match installed.as_slice() {
            [] => {
                outln!("no claudemesh service is installed: nothing to do");
                return Ok(());
            }
            [one] => one.clone(),
            _ => {
                return Err(CliError::Usage(
                    "both a system and a user service are installed: say --system or --user".into(),
                ));
            }
        };
        let running = manager.running(scope);
        if running {
            // A service that is already stopped or disabled is no reason to keep its file.
            if let Err(e) = run_commands(&manager.stop_commands(scope)) {
                super::output::error(&format!("warning: {e}"));
            }
        }
        std::fs::remove_file(&file)
            .map_err(|e| CliError::failed(format!("cannot remove {}: {e}", file.display())))?;
        outln!("removed {}", file.display());
        let after = manager.after_removal_commands(scope);
        if running {
            run_commands(&after).map_err(CliError::failed)?;
            outln!("stopped and disabled the {} service", scope.name());
        } else {
            let mut all = manager.stop_commands(scope);
            all.extend(after);
            print_commands(
                &format!(
                    "{} is not running here; where it runs, also stop the service with:",
                    manager.name()
                ),
                &all,
            );
        }
        outln!(
            "the broker's data directory is kept: delete it yourself if you mean to (it holds every mesh)"
        );
        Ok(())
    }
}

impl StatusCmd {
    pub fn run(self) -> CliResult {
        let manager = Manager::here();
        let mut services = Vec::new();
        for scope in Scope::chosen(self.system, self.user) {
            let file = manager.file(scope)?;
            let text = std::fs::read_to_string(&file).ok();
            let exec = text.as_deref().and_then(exec_line);
            let state = (text.is_some() && manager.running(scope)).then(|| manager.state(scope));
            services.push((scope, file, text.is_some(), exec, state));
        }
        if self.json {
            let list: Vec<_> = services
                .iter()
                .map(|(scope, file, installed, exec, state)| {
                    json!({
                        "scope": scope.name(),
                        "manager": manager.name(),
                        "path": file,
                        "installed": installed,
                        "exec": exec,
                        "state": state.as_ref().map(|s| {
                            s.iter()
                                .map(|(k, v)| (k.to_string(), json!(v)))
                                .collect::<serde_json::Map<_, _>>()
                        }),
                    })
                })
                .collect();
            print_json(&json!({ "services": list }));
            return Ok(());
        }
        for (scope, file, installed, exec, state) in &services {
            if !installed {
                outln!(
                    "{} service: not installed (`claudemesh service install {}` makes {})",
                    scope.name(),
                    scope.flag(),
                    file.display()
                );
                continue;
            }
            outln!("{} service: installed at {}", scope.name(), file.display());
            if let Some(exec) = exec {
                outln!("  runs: {exec}");
            }
            match state {
                Some(state) => {
                    let said: Vec<String> =
                        state.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    outln!("  {}", said.join(", "));
                }
                None => outln!(
                    "  {} is not running here, so it is not running either",
                    manager.name()
                ),
            }
        }
        Ok(())
    }
}

/// What the unit or plist runs, for `status`.
fn exec_line(text: &str) -> Option<String> {
    if let Some(line) = text.lines().find_map(|l| l.strip_prefix("ExecStart=")) {
        return Some(line.to_string());
    }
    let start = text.find("<key>ProgramArguments</key>")?;
    let rest = &text[start..];
    let end = rest.find("</array>")?;
    let words: Vec<&str> = rest[..end]
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("<string>")
                .and_then(|l| l.strip_suffix("</string>"))
        })
        .collect();
    Some(words.join(" "))
}

/// `service install` takes broker flags after its own options without `--`: this puts the
/// `--` before the first word that is not an `install` option, so argh hands the rest over.
pub fn separate_broker_flags(args: &mut Vec<&str>) {
    if args.len() < 2 || args[0] != "service" || args[1] != "install" || args.contains(&"--") {
        return;
    }
    let mut i = 2;
    while i < args.len() {
        match args[i] {
            "--system" | "--user" | "--print" | "--no-start" | "--help" | "-h" => i += 1,
            "--binary" | "--env-file" => i += 2,
            _ => {
                args.insert(i, "--");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_flags_follow_install_options_without_a_separator() {
        let mut args = vec![
            "service",
            "install",
            "--user",
            "--binary",
            "/b",
            "--listen",
            "0.0.0.0:7900",
        ];
        separate_broker_flags(&mut args);
        assert_eq!(
            args,
            [
                "service",
                "install",
                "--user",
                "--binary",
                "/b",
                "--",
                "--listen",
                "0.0.0.0:7900"
            ]
        );
        let mut args = vec!["service", "install", "--user", "--", "--lan"];
        separate_broker_flags(&mut args);
        assert_eq!(args, ["service", "install", "--user", "--", "--lan"]);
    }

    #[test]
    fn a_system_unit_reads_key_files_as_credentials() {
        let spec = ServiceSpec {
            scope: Scope::System,
            binary: "/usr/local/bin/claudemesh".into(),
            data_dir: "/var/lib/claudemesh".into(),
            broker_args: vec![
                BrokerArg::Plain("--metrics-token-file".into()),
                BrokerArg::File {
                    name: "metrics.token",
                    path: "/etc/claudemesh/metrics token".into(),
                },
            ],
            env_file: Some("/etc/claudemesh/env".into()),
        };
        let unit = systemd::render(&spec).unwrap();
        assert!(unit.contains(
            "ExecStart=/usr/local/bin/claudemesh broker --data /var/lib/claudemesh --metrics-token-file ${CREDENTIALS_DIRECTORY}/metrics.token\n"
        ), "{unit}");
        assert!(unit.contains("LoadCredential=metrics.token:\"/etc/claudemesh/metrics token\"\n"));
        assert!(unit.contains("EnvironmentFile=/etc/claudemesh/env\n"));
        assert!(unit.contains("DynamicUser=yes\nStateDirectory=claudemesh\n"));
        assert_eq!(
            exec_line(&unit).as_deref(),
            Some(
                "/usr/local/bin/claudemesh broker --data /var/lib/claudemesh --metrics-token-file ${CREDENTIALS_DIRECTORY}/metrics.token"
            )
        );
    }
}
