//! The sandbox a deployed service runs in: bubblewrap (`bwrap`) with its own namespaces
//! (mount, pid, ipc, uts, user, cgroup, and network unless allowed), uid and gid 65534 inside
//! with every capability dropped, a read-only view of `/usr` and a few world-readable files of
//! `/etc`, a tmpfs `/tmp`, the service's code read-only at `/app` and its own writable
//! `/work`. Nothing else of the host — the broker's data directory included — is mounted.
//! Memory, processes and file sizes are bounded with rlimits set in the child before bwrap
//! starts (this host's cgroups are not delegated to the broker). Only this module knows how;
//! the supervisor asks it for a command.
//!
//! A service allowed named hosts keeps its own network namespace; the broker's executable
//! runs first inside (`claudemesh service-net`), relaying the service's proxy port on its
//! loopback to the broker's [`proxy`](super::proxy) through a socket mounted read-only.
//!
//! bwrap runs as the broker's user: it must reach the service's directories, which sit in the
//! broker's private data directory. Outside the sandbox the service's uid is therefore the
//! broker's (its files in `/work` belong to the broker's user), without any capability.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::hosts::AllowList;

/// The broker's limit on open files as it started, which services get back (as Go's `os/exec`
/// does): a program using `select()` fails on descriptors above 1023.
static STARTING_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the broker's soft limit on open files to its hard limit (every connection through a
/// service's proxy holds two); the limit now, or why not.
pub fn raise_fd_limit() -> Result<u64, std::io::Error> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = STARTING_NOFILE.set(l);
        let raised = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(l.rlim_max)
}

/// Processes the service's user may have (RLIMIT_NPROC), and the service (its cgroup).
pub const MAX_PROCESSES: u64 = 256;
/// The largest file it may write (RLIMIT_FSIZE).
const MAX_FILE_BYTES: u64 = 256 << 20;
/// Memory when the deployment does not say (RLIMIT_DATA, MiB).
pub const DEFAULT_MEMORY_MB: u64 = 512;
/// Where the code and the writable directory appear inside the sandbox.
pub const APP: &str = "/app";
pub const WORK: &str = "/work";
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// Where the broker's proxy socket and its own executable appear inside the sandbox.
pub const PROXY_SOCKET: &str = "/run/claudemesh/proxy.sock";
const SELF: &str = "/run/claudemesh/claudemesh";
/// The port on the sandbox's loopback where the service finds its proxy.
pub const PROXY_PORT: u16 = 3128;
/// The environment that points a service at its proxy (set by the broker, not the deployer).
/// No `NO_PROXY`: every host, `127.0.0.1` included, is the broker host's as the proxy sees it;
/// a service that talks to its own loopback sets `NO_PROXY` in its deployment's env.
pub const PROXY_ENV: &[&str] = &["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"];

/// Files of `/etc` a program commonly needs (name resolution, TLS roots, users, time zone).
const ETC: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/localtime",
    "/etc/mime.types",
];

/// How services run on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    Bwrap(PathBuf),
    /// No sandbox (`--allow-unsandboxed-services`); says why there is none.
    Unsandboxed(String),
}

/// Whether the service may use the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Off,
    /// The host's network (`network_allow: ["*"]`).
    Host,
    /// These hosts only, through the broker's proxy.
    Hosts(Arc<AllowList>),
}

/// Whether `isolation` can hold a service to `network`: without a sandbox there is no network
/// namespace, so named hosts cannot be enforced.
pub fn confines(isolation: &Isolation, network: &Network) -> Result<(), String> {
    match (isolation, network) {
        (Isolation::Unsandboxed(_), Network::Hosts(_)) => Err(
            "this broker runs services without a sandbox (--allow-unsandboxed-services), so it cannot limit one to named hosts: give network_allow [] or [\"*\"], or install bubblewrap".into(),
        ),
        _ => Ok(()),
    }
}

/// Each of [`PROXY_ENV`] with its value.
fn proxy_env() -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{PROXY_PORT}");
    PROXY_ENV
        .iter()
        .map(|name| (name.to_string(), url.clone()))
        .collect()
}

/// The broker's own executable, to run `service-net` inside.
fn own_executable() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the broker's executable: {e}"))?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(format!(
            "the broker's executable {} was replaced since it started; restart the broker to start services limited to named hosts",
            exe.display()
        ));
    }
    Ok(exe)
}

/// What to run, where, with what.
pub struct Jail<'a> {
    pub app_dir: &'a Path,
    pub work_dir: &'a Path,
    /// The broker's data directory: never visible inside.
    pub data_dir: &'a Path,
    pub program: &'a [String],
    /// Environment beyond PATH, HOME and TMPDIR. Passed in bwrap's environment, never argv.
    pub env: &'a [(String, String)],
    /// Files placed read-only at their path inside (vault `file` entries), from memory.
    pub files: &'a [(String, Vec<u8>)],
    pub memory_mb: u64,
    pub network: &'a Network,
    /// The broker's proxy socket for [`Network::Hosts`].
    pub proxy: Option<&'a Path>,
    /// The `cgroup.procs` files of the service's own cgroups, entered before exec (none: the
    /// broker's).
    pub cgroup: Vec<std::ffi::CString>,
}

impl<'a> Jail<'a> {
    /// `program` in `app_dir`, with nothing more: no environment, files, network or cgroup,
    /// the default memory.
    pub fn bare(
        app_dir: &'a Path,
        work_dir: &'a Path,
        data_dir: &'a Path,
        program: &'a [String],
    ) -> Jail<'a> {
        Jail {
            app_dir,
            work_dir,
            data_dir,
            program,
            env: &[],
            files: &[],
            memory_mb: DEFAULT_MEMORY_MB,
            network: &Network::Off,
            proxy: None,
            cgroup: Vec::new(),
        }
    }
}

/// A command ready to spawn and the descriptors it inherits (kept open until it has spawned).
pub struct Prepared {
    pub command: tokio::process::Command,
    pub held: Vec<OwnedFd>,
}

/// Finds `bwrap` on PATH.
fn find_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
}

/// Why bubblewrap cannot sandbox services here.
#[derive(Debug, Clone)]
pub enum Unavailable {
    NotInstalled,
    /// It runs, but may not make its namespaces or mounts: something around the broker
    /// forbids them (bwrap's own words).
    Forbidden(String),
    /// Anything else (bwrap's or the system's words).
    Failed(String),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::NotInstalled => f.write_str("bubblewrap (bwrap) is not installed"),
            Unavailable::Forbidden(why) | Unavailable::Failed(why) => f.write_str(why),
        }
    }
}

impl Unavailable {
    /// What would make the sandbox work.
    pub fn remedy(&self) -> &'static str {
        match self {
            Unavailable::NotInstalled => {
                "install bubblewrap (Debian/Ubuntu: apt install bubblewrap)"
            }
            Unavailable::Forbidden(_) => {
                "bubblewrap is installed, but this broker is not permitted to make namespaces or mounts: a service manager's restrictions (a systemd unit's RestrictNamespaces=, SystemCallFilter=, ProtectKernelTunables= or ProtectKernelLogs=; the unit `claudemesh service install` writes allows them), a container's seccomp or AppArmor profile, or a kernel that refuses user namespaces to unprivileged users (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns) forbids them here; lift that restriction"
            }
            Unavailable::Failed(_) => "make bubblewrap work here",
        }
    }

    /// Sorts bwrap's failure: a refused namespace, mount or id map is a permission of the
    /// environment, not a missing program.
    fn from_bwrap(said: String) -> Unavailable {
        let forbidden = [
            "Operation not permitted",
            "Permission denied",
            "No permissions",
        ]
        .iter()
        .any(|m| said.contains(m));
        if forbidden {
            Unavailable::Forbidden(said)
        } else {
            Unavailable::Failed(said)
        }
    }
}

/// Finds bwrap and runs `true` in the same sandbox services get (using `scratch`, an empty
/// directory of ours); the reason when it cannot.
pub async fn probe(scratch: &Path) -> Result<PathBuf, Unavailable> {
    let bwrap = find_bwrap().ok_or(Unavailable::NotInstalled)?;
    let (app, work) = (scratch.join("app"), scratch.join("work"));
    for d in [&app, &work] {
        std::fs::create_dir_all(d)
            .map_err(|e| Unavailable::Failed(format!("cannot make {}: {e}", d.display())))?;
    }
    prepare_work_dir(&work).map_err(Unavailable::Failed)?;
    let program = ["true".to_string()];
    let jail = Jail::bare(&app, &work, scratch, &program);
    let mut prepared =
        command(&Isolation::Bwrap(bwrap.clone()), &jail).map_err(Unavailable::Failed)?;
    prepared
        .command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = prepared
        .command
        .output()
        .await
        .map_err(|e| Unavailable::from_bwrap(format!("cannot run {}: {e}", bwrap.display())))?;
    if out.status.success() {
        Ok(bwrap)
    } else {
        Err(Unavailable::from_bwrap(format!(
            "{} fails to start a sandbox here: {}",
            bwrap.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// bwrap's `--setenv NAME VALUE` for each pair, NUL-separated as `--args` reads them.
fn setenv_args(env: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in env {
        for part in ["--setenv", name, value] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
    }
    out
}

/// Makes the writable directory private to the broker's user (and so to the service).
pub fn prepare_work_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// A sealed in-memory file holding `bytes`, for `--ro-bind-data` and `--args` (never on disk).
fn memory_file(bytes: &[u8]) -> Result<OwnedFd, String> {
    use std::io::{Seek, Write};
    use std::os::fd::FromRawFd;
    let name = c"claudemesh-secret";
    // SAFETY: the name is a valid C string; the result is checked before use.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)
        .and_then(|_| file.rewind())
        .map_err(|e| format!("cannot fill a secret file: {e}"))?;
    Ok(file.into())
}

/// The command that runs `jail.program` under `isolation`.
pub fn command(isolation: &Isolation, jail: &Jail<'_>) -> Result<Prepared, String> {
    confines(isolation, jail.network)?;
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut base_env: Vec<(String, String)> = vec![
        ("PATH".into(), PATH.into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    let mut cmd = match isolation {
        Isolation::Bwrap(bwrap) => {
            let mut cmd = tokio::process::Command::new(bwrap);
            cmd.args([
                "--unshare-all",
                "--unshare-user",
                "--uid",
                "65534",
                "--gid",
                "65534",
                "--cap-drop",
                "ALL",
                "--die-with-parent",
                "--new-session",
                "--hostname",
                "claudemesh-service",
            ]);
            // The deployment's env (vault values among them) is set inside the sandbox only:
            // `--setenv` pairs read from a sealed memory file (`--args`), so it is neither in
            // bwrap's own environment — where LD_PRELOAD and the like would run a deployer's
            // code on the host before any namespace — nor in any process's arguments.
            if !jail.env.is_empty() {
                let fd = memory_file(&setenv_args(jail.env))?;
                cmd.arg("--args").arg(fd.as_raw_fd().to_string());
                held.push(fd);
            }
            let relay = match jail.network {
                Network::Off => None,
                Network::Host => {
                    cmd.arg("--share-net");
                    None
                }
                Network::Hosts(_) => Some((
                    own_executable()?,
                    jail.proxy.ok_or("the network proxy is not running")?,
                )),
            };
            cmd.args(["--ro-bind", "/usr", "/usr"]);
            // `/bin`, `/lib`… are links into /usr on merged-/usr systems, directories elsewhere.
            for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64"] {
                match std::fs::read_link(top) {
                    Ok(target) => {
                        cmd.arg("--symlink").arg(target).arg(top);
                    }
                    Err(_) if Path::new(top).is_dir() => {
                        cmd.args(["--ro-bind", top, top]);
                    }
                    Err(_) => {}
                }
            }
            for etc in ETC {
                cmd.args(["--ro-bind-try", etc, etc]);
            }
            cmd.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
            // Should the data directory sit under a path mounted above, hide it.
            if jail.data_dir.starts_with("/usr") || jail.data_dir.starts_with("/etc") {
                cmd.arg("--tmpfs").arg(jail.data_dir);
            }
            cmd.arg("--ro-bind").arg(jail.app_dir).arg(APP);
            cmd.arg("--bind").arg(jail.work_dir).arg(WORK);
            for (dest, bytes) in jail.files {
                let fd = memory_file(bytes)?;
                cmd.args(["--perms", "0400", "--ro-bind-data"])
                    .arg(fd.as_raw_fd().to_string())
                    .arg(dest);
                held.push(fd);
            }
            if let Some((exe, socket)) = &relay {
                cmd.arg("--ro-bind").arg(exe).arg(SELF);
                cmd.arg("--ro-bind").arg(socket).arg(PROXY_SOCKET);
            }
            // The root bwrap builds (a tmpfs holding the mount points) becomes read-only too.
            cmd.args(["--remount-ro", "/", "--chdir", APP, "--"]);
            if relay.is_some() {
                let port = PROXY_PORT.to_string();
                cmd.args([
                    SELF,
                    "service-net",
                    "--socket",
                    PROXY_SOCKET,
                    "--port",
                    &port,
                    "--",
                ]);
                base_env.extend(proxy_env());
            }
            cmd.args(jail.program);
            base_env.push(("HOME".into(), WORK.into()));
            base_env.push(("TMPDIR".into(), "/tmp".into()));
            cmd
        }
        Isolation::Unsandboxed(_) => {
            if !jail.files.is_empty() {
                return Err(
                    "vault file entries need the sandbox (they are mounted inside it)".into(),
                );
            }
            let (program, args) = jail
                .program
                .split_first()
                .ok_or("the service has no command")?;
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args);
            base_env.push(("HOME".into(), jail.work_dir.display().to_string()));
            base_env.extend(jail.env.iter().cloned());
            cmd
        }
    };
    cmd.env_clear()
        .envs(base_env)
        .current_dir(match isolation {
            Isolation::Bwrap(_) => Path::new("/"),
            Isolation::Unsandboxed(_) => jail.app_dir,
        })
        .kill_on_drop(true);
    let inherit: Vec<i32> = held.iter().map(AsRawFd::as_raw_fd).collect();
    let memory = jail.memory_mb.saturating_mul(1 << 20);
    let cgroup = jail.cgroup.clone();
    let nofile = STARTING_NOFILE.get().copied();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (open, write, close, close_range, fcntl, setrlimit, nice) on values computed
    // above.
    unsafe {
        cmd.pre_exec(move || {
            super::cgroup::enter(&cgroup)?;
            // Nothing the broker has open reaches the service but stdio and the descriptors
            // handed to bwrap: a library's file opened without close-on-exec (usearch's index
            // files) would otherwise be readable inside through /proc/self/fd.
            crate::child::close_on_exec_from(3);
            for fd in &inherit {
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (resource, limit) in [
                (libc::RLIMIT_DATA, memory),
                (libc::RLIMIT_NPROC, MAX_PROCESSES),
                (libc::RLIMIT_FSIZE, MAX_FILE_BYTES),
                (libc::RLIMIT_CORE, 0),
            ] {
                let l = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(resource, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(l) = &nofile
                && libc::setrlimit(libc::RLIMIT_NOFILE, l) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::nice(10);
            Ok(())
        });
    }
    Ok(Prepared { command: cmd, held })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_may_open_as_many_files_as_its_hard_limit_allows() {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit with a pointer to a live rlimit; lowering the soft
        // limit is always allowed.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
            l.rlim_cur = l.rlim_max.min(1024);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
        }
        let raised = raise_fd_limit().expect("raised");
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!((l.rlim_cur, l.rlim_max), (raised, raised));
    }

    /// A descriptor the broker holds without close-on-exec does not reach a service, sandboxed
    /// or not (bwrap passes on whatever it inherits).
    #[tokio::test]
    async fn a_service_inherits_no_descriptor_of_the_broker() {
        let dir = tempfile::tempdir().unwrap();
        let stray_path =
            std::ffi::CString::new(dir.path().join("stray").to_str().unwrap().as_bytes()).unwrap();
        // SAFETY: open with a valid C string; the descriptor is closed below.
        let stray = unsafe {
            libc::open(
                stray_path.as_ptr(),
                libc::O_RDWR | libc::O_CREAT,
                0o600 as libc::c_uint,
            )
        };
        assert!(stray > 2, "{}", std::io::Error::last_os_error());
        let (app, work) = (dir.path().join("app"), dir.path().join("work"));
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let program = ["sh".to_string(), "-c".into(), "ls /proc/self/fd".into()];
        let mut isolations = vec![Isolation::Unsandboxed("test".into())];
        match probe(&dir.path().join("probe")).await {
            Ok(b) => isolations.push(Isolation::Bwrap(b)),
            Err(why) => eprintln!("SKIPPED the sandboxed half: {why}"),
        }
        for isolation in isolations {
            let jail = Jail::bare(&app, &work, dir.path(), &program);
            let mut prepared = command(&isolation, &jail).unwrap();
            let out = prepared.command.output().await.unwrap();
            let fds: Vec<i32> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|f| f.parse().ok())
                .collect();
            assert!(fds.contains(&1), "{fds:?} {:?}", out.stderr);
            assert!(
                !fds.contains(&stray),
                "fd {stray} reached the service ({isolation:?}): {fds:?}"
            );
        }
        // SAFETY: the descriptor opened above.
        unsafe { libc::close(stray) };
    }

    /// A vault file entry appears read-only at its path inside, from memory; nothing of it is
    /// written to the host's disk. Skipped (said why) where bwrap cannot run.
    #[tokio::test]
    async fn a_secret_file_is_mounted_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let bwrap = match probe(&dir.path().join("probe")).await {
            Ok(b) => b,
            Err(why) => return eprintln!("SKIPPED: {why}"),
        };
        let (app, work) = (dir.path().join("app"), dir.path().join("work"));
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let program = [
            "sh".to_string(),
            "-c".into(),
            "cat /run/secrets/token; echo x > /run/secrets/token && echo WROTE".into(),
        ];
        let files = [("/run/secrets/token".to_string(), b"s3cret".to_vec())];
        let jail = Jail {
            files: &files,
            ..Jail::bare(&app, &work, dir.path(), &program)
        };
        let mut prepared = command(&Isolation::Bwrap(bwrap), &jail).unwrap();
        let out = prepared.command.output().await.unwrap();
        drop(prepared.held);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("s3cret"), "{stdout} {:?}", out.stderr);
        assert!(!stdout.contains("WROTE"), "the secret file is read-only");
    }
}
