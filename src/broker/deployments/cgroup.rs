//! Limits on a service as a whole — its memory, CPU share and number of processes, all its
//! processes counted together — with cgroups, where this host lets the broker make them: the
//! broker's own cgroup delegated to it (cgroup v2; systemd's `Delegate=yes`), or writable
//! cgroup v1 hierarchies (a broker running as root outside systemd). Elsewhere services keep
//! only the per-process rlimits of the [`super::sandbox`]. Only this module knows the files.
//!
//! Each service gets `<broker's cgroup>/claudemesh-services/<mesh>.<name>` (in each v1
//! hierarchy), made with its limits before it starts; the child moves itself in (writes `0` to
//! `cgroup.procs`) before it execs, so everything it starts stays inside.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The directory under the broker's own cgroup that holds the services' groups.
const SERVICES: &str = "claudemesh-services";
/// The CPU period the quota is a share of (µs), the kernel's default.
const PERIOD_US: u64 = 100_000;

/// Where this broker may make cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// `dir` is `<broker's cgroup>/claudemesh-services`, with cpu, memory and pids enabled.
    V2 { dir: PathBuf },
    /// The `claudemesh-services` directory in each v1 hierarchy (cpu, memory, pids).
    V1 {
        cpu: PathBuf,
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

/// The limits of one service.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_mb: u64,
    /// CPUs' worth of time per period (`--cpus`); none: no CPU cap.
    pub cpus: Option<f64>,
    pub processes: u64,
}

/// One service's groups: the `cgroup.procs` files its child writes itself into.
#[derive(Debug, Clone)]
pub struct ServiceGroup {
    pub dirs: Vec<PathBuf>,
    pub procs: Vec<CString>,
}

impl Cgroups {
    /// Finds where the broker may make cgroups and prepares `claudemesh-services` there; the
    /// reason when it cannot.
    pub fn probe() -> Result<Cgroups, String> {
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let v2 = probe_v2(&own, &mounts);
        match v2 {
            Ok(c) => Ok(c),
            Err(why2) => probe_v1(&own, &mounts).map_err(|why1| format!("{why2}; {why1}")),
        }
    }

    /// A human name for the status: `cgroup v2` or `cgroup v1`.
    pub fn kind(&self) -> &'static str {
        match self {
            Cgroups::V2 { .. } => "cgroup v2",
            Cgroups::V1 { .. } => "cgroup v1",
        }
    }

    /// Makes (or reuses) the groups of service `name` of mesh `mesh_id`, with `limits`.
    pub fn service(
        &self,
        mesh_id: &str,
        name: &str,
        limits: Limits,
    ) -> Result<ServiceGroup, String> {
        let leaf = leaf_name(mesh_id, name);
        let memory = limits.memory_mb.saturating_mul(1 << 20).to_string();
        let quota = limits
            .cpus
            .map(|c| ((c * PERIOD_US as f64).round() as u64).max(1000));
        let mut dirs = Vec::new();
        match self {
            Cgroups::V2 { dir } => {
                let d = make(&dir.join(&leaf))?;
                write(&d, "memory.max", &memory)?;
                let _ = write(&d, "memory.swap.max", "0");
                let cpu = match quota {
                    Some(q) => format!("{q} {PERIOD_US}"),
                    None => format!("max {PERIOD_US}"),
                };
                write(&d, "cpu.max", &cpu)?;
                write(&d, "pids.max", &limits.processes.to_string())?;
                dirs.push(d);
            }
            Cgroups::V1 {
                cpu,
                memory: mem,
                pids,
            } => {
                let c = make(&cpu.join(&leaf))?;
                write(&c, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                let q = quota.map(|q| q.to_string());
                write(&c, "cpu.cfs_quota_us", q.as_deref().unwrap_or("-1"))?;
                dirs.push(c);
                let m = make(&mem.join(&leaf))?;
                // A group kept from an earlier run has its old limits: the kernel wants
                // memsw ≥ limit at every step, so the order depends on the direction.
                let current = std::fs::read_to_string(m.join("memory.limit_in_bytes"))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let new = memory.parse::<u64>().ok();
                for file in v1_memory_order(current, new) {
                    match file {
                        V1_LIMIT => write(&m, file, &memory)?,
                        // Swap counted in too, where the kernel accounts it.
                        _ => {
                            let _ = write(&m, file, &memory);
                        }
                    }
                }
                dirs.push(m);
                if let Some(p) = pids {
                    let p = make(&p.join(&leaf))?;
                    write(&p, "pids.max", &limits.processes.to_string())?;
                    dirs.push(p);
                }
            }
        }
        let procs = dirs
            .iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .map_err(|_| format!("{} holds a NUL byte", d.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServiceGroup { dirs, procs })
    }

    /// Removes the groups of a service that has ended; false while one still holds a process.
    pub fn remove(&self, mesh_id: &str, name: &str) -> bool {
        let leaf = leaf_name(mesh_id, name);
        let parents: Vec<&PathBuf> = match self {
            Cgroups::V2 { dir } => vec![dir],
            Cgroups::V1 { cpu, memory, pids } => {
                let mut v = vec![cpu, memory];
                v.extend(pids.as_ref());
                v
            }
        };
        parents
            .into_iter()
            .all(|p| match std::fs::remove_dir(p.join(&leaf)) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            })
    }
}

/// Moves the calling process into `group`. Runs in the forked child before exec: only
/// `open`, `write` and `close`, on paths made before the fork.
///
/// # Safety
/// Call only between fork and exec (from `pre_exec`).
pub unsafe fn enter(group: &[CString]) -> std::io::Result<()> {
    for path in group {
        // SAFETY: a valid C string; the descriptor is checked and closed.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// `<mesh>.<name>`, with anything but letters, digits, `-` and `_` replaced (names are checked
/// by the handlers; this keeps a path a path whatever comes).
fn leaf_name(mesh_id: &str, name: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}.{}", clean(mesh_id), clean(name))
}

const V1_LIMIT: &str = "memory.limit_in_bytes";
const V1_MEMSW: &str = "memory.memsw.limit_in_bytes";

/// The order to write cgroup v1's two memory limits in, from the group's `current` limit to
/// `new` (both in bytes, `None` when unknown): the kernel refuses a memory limit above the
/// memory+swap limit, so raising writes memsw first, and lowering (or a new group) the limit
/// first.
fn v1_memory_order(current: Option<u64>, new: Option<u64>) -> [&'static str; 2] {
    match (current, new) {
        (Some(current), Some(new)) if new > current => [V1_MEMSW, V1_LIMIT],
        _ => [V1_LIMIT, V1_MEMSW],
    }
}

fn make(dir: &Path) -> Result<PathBuf, String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(dir.to_path_buf()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir.to_path_buf()),
        Err(e) => Err(format!("cannot make {}: {e}", dir.display())),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| format!("cannot write {value} to {}: {e}", dir.join(file).display()))
}

/// One line of `/proc/self/mountinfo`: the mount's root, where it is mounted, its type and
/// super options.
struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    options: &'a str,
}

fn mounts(mountinfo: &str) -> impl Iterator<Item = Mount<'_>> {
    mountinfo.lines().filter_map(|line| {
        let (head, tail) = line.split_once(" - ")?;
        let head: Vec<&str> = head.split(' ').collect();
        let mut tail = tail.split(' ');
        let fstype = tail.next()?;
        let _source = tail.next()?;
        Some(Mount {
            root: head.get(3)?,
            point: head.get(4)?,
            fstype,
            options: tail.next().unwrap_or(""),
        })
    })
}

/// The directory of cgroup `path` (as `/proc/self/cgroup` gives it) under `mount`.
fn under(mount: &Mount<'_>, path: &str) -> Option<PathBuf> {
    let rel = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root)?
    };
    Some(Path::new(mount.point).join(rel.trim_start_matches('/')))
}

fn probe_v2(own: &str, mountinfo: &str) -> Result<Cgroups, String> {
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 membership")?;
    let mount = mounts(mountinfo)
        .find(|m| m.fstype == "cgroup2")
        .ok_or("no cgroup v2 mounted")?;
    let base = under(&mount, path).ok_or("the broker's cgroup v2 is outside the mount")?;
    let controllers = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("cpu") && has("memory") && has("pids")) {
        return Err(format!(
            "cgroup v2 at {} offers no cpu, memory and pids controllers (\"{}\")",
            base.display(),
            controllers.trim()
        ));
    }
    // Only a group systemd delegated to this broker (`Delegate=yes`, which marks it with a
    // `delegate` extended attribute): any other belongs to whoever made it.
    if !delegated(&base) {
        return Err(format!(
            "the broker's cgroup {} is not delegated to it (systemd: Delegate=yes)",
            base.display()
        ));
    }
    // A cgroup that holds processes cannot hand controllers down (the no-internal-processes
    // rule): the broker moves itself into a leaf of its delegated group first.
    let procs = std::fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
    if !procs.trim().is_empty() {
        let leaf = make(&base.join("claudemesh-broker"))?;
        std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
            .map_err(|e| format!("cannot move the broker into {}: {e}", leaf.display()))?;
    }
    for c in ["+cpu", "+memory", "+pids"] {
        write(&base, "cgroup.subtree_control", c)?;
    }
    let dir = make(&base.join(SERVICES))?;
    for c in ["+cpu", "+memory", "+pids"] {
        write(&dir, "cgroup.subtree_control", c)?;
    }
    Ok(Cgroups::V2 { dir })
}

/// Whether systemd marked `dir` as delegated (`trusted.delegate` for the system manager,
/// `user.delegate` for a user's).
fn delegated(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    [c"trusted.delegate", c"user.delegate"].iter().any(|name| {
        // SAFETY: valid C strings; a null buffer of size 0 asks only for the value's size.
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
    })
}

fn probe_v1(own: &str, mountinfo: &str) -> Result<Cgroups, String> {
    let hierarchy = |controller: &str| -> Option<PathBuf> {
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names.split(',').any(|n| n == controller).then_some(path)
        })?;
        let mount = mounts(mountinfo)
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == controller))?;
        let dir = under(&mount, path)?.join(SERVICES);
        make(&dir).ok()
    };
    let cpu = hierarchy("cpu").ok_or("no writable cgroup v1 cpu hierarchy")?;
    let memory = hierarchy("memory").ok_or("no writable cgroup v1 memory hierarchy")?;
    Ok(Cgroups::V1 {
        cpu,
        memory,
        pids: hierarchy("pids"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 /docker/abc /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";

    #[test]
    fn mounts_are_read_with_their_root_and_options() {
        let all: Vec<Mount<'_>> = mounts(MOUNTINFO).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].fstype, "cgroup2");
        assert_eq!(all[2].options, "rw,cpu,cpuacct");
        let memory = &all[3];
        assert_eq!(
            under(memory, "/docker/abc/x"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/x"))
        );
        assert_eq!(under(memory, "/elsewhere"), None);
        assert_eq!(
            under(&all[2], "/user.slice"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user.slice"))
        );
    }

    #[test]
    fn cgroup_v1_memory_limits_are_written_so_memsw_stays_at_least_the_limit() {
        let mib = 1024 * 1024;
        // Raising: memsw first, or the new limit would exceed the old memsw.
        assert_eq!(
            v1_memory_order(Some(256 * mib), Some(512 * mib)),
            [V1_MEMSW, V1_LIMIT]
        );
        // Lowering: the limit first, or the new memsw would fall below the old limit.
        assert_eq!(
            v1_memory_order(Some(512 * mib), Some(256 * mib)),
            [V1_LIMIT, V1_MEMSW]
        );
        // A fresh group (the kernel's default is unlimited) or the same limit.
        assert_eq!(
            v1_memory_order(Some(u64::MAX / 2), Some(256 * mib)),
            [V1_LIMIT, V1_MEMSW]
        );
        assert_eq!(v1_memory_order(None, Some(mib)), [V1_LIMIT, V1_MEMSW]);
        assert_eq!(v1_memory_order(Some(mib), Some(mib)), [V1_LIMIT, V1_MEMSW]);
    }

    #[test]
    fn a_service_group_name_stays_one_path_component() {
        assert_eq!(leaf_name("m1", "weather"), "m1.weather");
        assert_eq!(leaf_name("../m", "a/b"), "___m.a_b");
    }
}
