//! Peer files (PROTOCOL.md §15): read and list another member's shared directory,
//! and — on the hosting side — answer those requests from a directory on this machine.
//!
//! The host is where the file system is, so it enforces the rules: every path is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to a descriptor of the shared
//! root, so the kernel refuses `..`, absolute paths and symlinks that lead out of the root in
//! the same call that opens the file (no check-then-open race); files are opened
//! `O_NONBLOCK | O_NOCTTY` and checked with `fstat` on the open descriptor, so a fifo cannot
//! hang the host and only regular files up to [`MAX_PEER_FILE_BYTES`] are sent, in chunks of at
//! most [`MAX_PEER_CHUNK_BYTES`] (one answer each). Answers are
//! sealed to the reader's key, so the broker relays ciphertext only.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::shared_tools::{open_from, seal_to};
use super::{ClientError, MeshClient, unexpected};
use crate::protocol::messages::{
    DEFAULT_PEER_FILES_TIMEOUT_MS, MAX_LIST_DEPTH, MAX_LIST_ENTRIES, MAX_PEER_CHUNK_BYTES,
    MAX_PEER_FILE_BYTES, MAX_PEER_FILES_ANSWER_BYTES, MAX_PEER_PATTERN_BYTES,
    MAX_PEER_REQUEST_SKEW_MS, PeerDirRequest, PeerDirRequestForward, PeerDirResponse,
    PeerFileRequest, PeerFileRequestForward, PeerFileResponse, PeerFilesAnswer, PeerFilesShare,
    PeerListing, Requester, SealedPayload, SealedPeerRequest, path_problem,
};
use crate::protocol::{ClientMessage, ServerMessage};

mod host;
mod read;
pub use host::{FileHost, Forwarded, Served, seal_request};
pub use read::{PeerFile, PeerHost, PeerListed};

/// Names a listing may carry, in bytes, so that its sealed form stays under the answer limit.
const MAX_LIST_BYTES: usize = 36 * 1024;
/// Requests one host answers at once; more are answered "busy".
const MAX_HOSTED_REQUESTS: usize = 8;
/// Names a filtered listing looks at, matching or not, before it stops (`truncated`).
const MAX_LIST_SEEN: usize = 20 * MAX_LIST_ENTRIES;

/// A host's refusal: the code the reader sees and a sentence naming the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

fn refused(code: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// The resolution every open uses: inside the directory, no `/proc` magic links.
fn beneath() -> ResolveFlags {
    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV
}

/// How long one read or listing may take on the host (a hung mount answers `timeout`).
const HOST_WORK_TIMEOUT: Duration = Duration::from_secs(10);

fn errno_refusal(e: Errno, path: &str) -> Refused {
    match e {
        Errno::NOENT => refused("not_found", format!("\"{path}\" does not exist")),
        Errno::XDEV | Errno::LOOP => refused(
            "forbidden_path",
            format!(
                "\"{path}\" leads outside the shared directory (a symlink, \"..\" or another mount)"
            ),
        ),
        Errno::NOTDIR => refused("not_a_file", format!("\"{path}\" is not a directory")),
        Errno::NXIO => refused("not_a_file", format!("\"{path}\" is a socket, not a file")),
        Errno::ACCESS | Errno::PERM => refused(
            "forbidden_path",
            format!("the host may not read \"{path}\" (permission denied)"),
        ),
        other => refused("host_error", format!("\"{path}\": {other}")),
    }
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a fifo",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

/// Names a host never lists nor reads, at any depth: they hold keys and tokens. `.env.*`
/// (e.g. `.env.local`) counts as `.env`, and `config` counts only under `.git` (remote URLs
/// may carry tokens). README "Peer files" lists them.
const SECRET_NAMES: [&str; 13] = [
    ".ssh",
    ".gnupg",
    ".aws",
    ".claudemesh",
    ".claude",
    ".env",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".docker",
    ".kube",
    ".password-store",
];

/// Whether `name`, under a directory named `parent`, is one of the [`SECRET_NAMES`].
fn is_secret(parent: &str, name: &str) -> bool {
    SECRET_NAMES.contains(&name)
        || name.starts_with(".env.")
        || (parent == ".git" && name == "config")
}

/// The first secret component of `rel` (a path relative to the shared root), if any.
fn secret_in(rel: &Path) -> Option<String> {
    let mut parent = String::new();
    for c in rel.components() {
        let name = c.as_os_str().to_string_lossy().into_owned();
        if is_secret(&parent, &name) {
            return Some(name);
        }
        parent = name;
    }
    None
}

fn secret_refusal(path: &str, name: &str) -> Refused {
    refused(
        "forbidden_path",
        format!(
            "\"{path}\" is not shared: \"{name}\" may hold keys or tokens, and hosts never serve it"
        ),
    )
}

/// Why sharing `root` (canonical) would hand out secrets: it is `/`, the home directory, or
/// it contains the claudemesh config dir (`config`), `~/.ssh`, `~/.gnupg`, `~/.aws` or
/// `~/.claude`.
pub fn root_problem(root: &Path, home: Option<&Path>, config: &Path) -> Option<String> {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    if root == Path::new("/") {
        return Some(
            "refusing to share / (the whole file system): share a project directory".into(),
        );
    }
    let home = home.map(canonical);
    if home.as_deref() == Some(root) {
        return Some(format!(
            "refusing to share your home directory {}: it holds keys and tokens (~/.ssh, ~/.aws, claudemesh's own keys); share a project directory",
            root.display()
        ));
    }
    let mut secrets = vec![(config.to_path_buf(), "claudemesh's keys (the config dir)")];
    if let Some(home) = &home {
        for (dir, why) in [
            (".ssh", "SSH keys"),
            (".gnupg", "GPG keys"),
            (".aws", "AWS credentials"),
            (".claude", "Claude Code's credentials and transcripts"),
        ] {
            secrets.push((home.join(dir), why));
        }
    }
    secrets.into_iter().find_map(|(dir, why)| {
        let dir = canonical(&dir);
        dir.starts_with(root).then(|| {
            format!(
                "refusing to share {}: it contains {} ({why}); share a directory without it",
                root.display(),
                dir.display()
            )
        })
    })
}

/// A directory this machine shares with the mesh, held open by descriptor.
pub struct SharedDir {
    root: OwnedFd,
    pub path: PathBuf,
    pub read_only: bool,
}

impl SharedDir {
    /// Opens `path` for sharing. Fails when it is no directory, or when the kernel lacks
    /// `openat2` (Linux 5.6+), without which reads could not be kept inside it.
    pub fn open(path: &Path, read_only: bool) -> Result<SharedDir, String> {
        let path = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot share {}: {e}", path.display()))?;
        let config = crate::identity::ConfigDir::from_env().path;
        if let Some(problem) = root_problem(&path, dirs::home_dir().as_deref(), &config) {
            return Err(problem);
        }
        let root = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("cannot share {}: {e}", path.display()))?;
        match rustix::fs::openat2(
            &root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        ) {
            Ok(_) => {}
            Err(Errno::NOSYS) => {
                return Err(
                    "this kernel lacks openat2 (Linux 5.6 or later), which share-dir needs to keep reads inside the directory".into(),
                );
            }
            Err(e) => return Err(format!("cannot share {}: {e}", path.display())),
        }
        Ok(SharedDir {
            root,
            path,
            read_only,
        })
    }

    /// The whole regular file at `rel` (relative to the shared root), when it fits one answer
    /// ([`MAX_PEER_CHUNK_BYTES`]): what a request without `offset`/`length` gets.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, Refused> {
        let (content, size) = self.read_range(rel, 0, MAX_PEER_CHUNK_BYTES)?;
        if size > MAX_PEER_CHUNK_BYTES {
            return Err(refused(
                "too_large",
                format!(
                    "\"{rel}\" is {size} bytes; one answer carries up to {MAX_PEER_CHUNK_BYTES} bytes (claudemesh reads larger files in chunks)"
                ),
            ));
        }
        Ok(content)
    }

    /// Up to `length` bytes (at most [`MAX_PEER_CHUNK_BYTES`]) of the regular file at `rel`
    /// from `offset`, and the file's size; files over [`MAX_PEER_FILE_BYTES`] are refused.
    pub fn read_range(
        &self,
        rel: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Vec<u8>, u64), Refused> {
        if let Some(problem) = path_problem(rel, true) {
            return Err(refused("forbidden_path", problem));
        }
        if let Some(name) = secret_in(Path::new(rel)) {
            return Err(secret_refusal(rel, &name));
        }
        // O_PATH first: a fifo or a device is looked at, never opened for reading.
        let path_fd = self.open_beneath(rel, rel, OFlags::PATH)?;
        self.refuse_secret_target(&path_fd, rel)?;
        let stat = rustix::fs::fstat(&path_fd).map_err(|e| errno_refusal(e, rel))?;
        let kind = FileType::from_raw_mode(stat.st_mode);
        if kind != FileType::RegularFile {
            return Err(refused(
                "not_a_file",
                format!(
                    "\"{rel}\" is {}; only regular files are shared",
                    type_name(kind)
                ),
            ));
        }
        if stat.st_nlink > 1 {
            // Another name of the same file may live outside the share.
            return Err(refused(
                "forbidden_path",
                format!(
                    "\"{rel}\" has {} hard links; hosts serve only files with one name",
                    stat.st_nlink
                ),
            ));
        }
        let fd = self.open_beneath(rel, rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        let again = rustix::fs::fstat(&fd).map_err(|e| errno_refusal(e, rel))?;
        if (again.st_dev, again.st_ino) != (stat.st_dev, stat.st_ino) {
            return Err(refused(
                "host_error",
                format!("\"{rel}\" changed while it was opened; ask again"),
            ));
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > MAX_PEER_FILE_BYTES {
            return Err(refused(
                "too_large",
                format!(
                    "\"{rel}\" is {size} bytes; peers read files up to {MAX_PEER_FILE_BYTES} bytes"
                ),
            ));
        }
        if offset > size {
            return Err(refused(
                "invalid_argument",
                format!("offset {offset} is past the end of \"{rel}\" ({size} bytes)"),
            ));
        }
        let length = length.min(MAX_PEER_CHUNK_BYTES).min(size - offset);
        let mut file = std::fs::File::from(fd);
        let mut content = Vec::with_capacity(length as usize);
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| (&file).take(length).read_to_end(&mut content))
            .map_err(|e| refused("host_error", format!("\"{rel}\": {e}")))?;
        Ok((content, size))
    }

    /// Opens `path` beneath the shared root with `flags` (close-on-exec); a refusal names
    /// `shown`.
    fn open_beneath(&self, path: &str, shown: &str, flags: OFlags) -> Result<OwnedFd, Refused> {
        rustix::fs::openat2(
            &self.root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            beneath(),
        )
        .map_err(|e| errno_refusal(e, shown))
    }

    /// Refuses what `fd` opened when its real path (a symlink inside the share may lead to
    /// it) passes through a secret name.
    fn refuse_secret_target(&self, fd: &OwnedFd, rel: &str) -> Result<(), Refused> {
        use std::os::fd::AsRawFd;
        let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
            return Ok(());
        };
        match real.strip_prefix(&self.path).ok().and_then(secret_in) {
            Some(name) => Err(secret_refusal(rel, &name)),
            None => Ok(()),
        }
    }

    /// The names under `rel` (empty: the root), `depth` levels deep, bounded by
    /// [`MAX_LIST_ENTRIES`] and a byte budget. Symlinks are listed, never followed.
    pub fn list(&self, rel: &str, depth: u32) -> Result<PeerListing, Refused> {
        self.list_matching(rel, depth, None)
    }

    /// [`SharedDir::list`], keeping only the paths (relative to `rel`, without a directory's
    /// trailing `/`) that match the glob `pattern` (`*`, `?` within one name, `**` across).
    pub fn list_matching(
        &self,
        rel: &str,
        depth: u32,
        pattern: Option<&str>,
    ) -> Result<PeerListing, Refused> {
        let pattern = pattern.map(glob).transpose()?;
        if let Some(problem) = path_problem(rel, false) {
            return Err(refused("forbidden_path", problem));
        }
        let start = match rel.trim_matches('/') {
            "" => ".",
            p => p,
        };
        let dir = self.open_beneath(
            start,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NONBLOCK,
        )?;
        if let Some(name) = secret_in(Path::new(rel)) {
            return Err(secret_refusal(rel, &name));
        }
        self.refuse_secret_target(&dir, rel)?;
        let mut walked = Walked {
            out: PeerListing::default(),
            bytes: 0,
            seen: 0,
            pattern,
        };
        // The listed directory's own name decides what under it is secret (`.git/config`).
        let parent = Path::new(start)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        walk(
            dir,
            &parent,
            "",
            depth.clamp(1, MAX_LIST_DEPTH),
            &mut walked,
        )
        .map_err(|e| errno_refusal(e, rel))?;
        Ok(walked.out)
    }
}

/// The glob a filtered listing matches, or `invalid_argument`.
fn glob(pattern: &str) -> Result<globset::GlobMatcher, Refused> {
    if pattern.len() > MAX_PEER_PATTERN_BYTES {
        return Err(refused(
            "invalid_argument",
            format!("the pattern is over {MAX_PEER_PATTERN_BYTES} bytes"),
        ));
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| refused("invalid_argument", format!("pattern \"{pattern}\": {e}")))
}

/// What a listing has gathered so far, and what it may still take.
struct Walked {
    out: PeerListing,
    /// Bytes the names cost in the JSON listing.
    bytes: usize,
    /// Names looked at, kept or not (bounded by [`MAX_LIST_SEEN`]).
    seen: usize,
    pattern: Option<globset::GlobMatcher>,
}

fn walk(
    dir: OwnedFd,
    parent: &str,
    prefix: &str,
    depth: u32,
    walked: &mut Walked,
) -> Result<(), Errno> {
    let mut names: Vec<(String, FileType)> = Vec::new();
    for entry in Dir::read_from(&dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str().map(str::to_owned) else {
            // A name that is not UTF-8 cannot be named back: left out, and said so.
            walked.out.truncated = true;
            continue;
        };
        if name == "." || name == ".." || is_secret(parent, &name) {
            continue;
        }
        let mut kind = entry.file_type();
        if kind == FileType::Unknown {
            kind = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_or(FileType::Unknown, |s| FileType::from_raw_mode(s.st_mode));
        }
        names.push((name, kind));
        // Reading far past what can be sent would only cost time.
        if names.len() > MAX_LIST_ENTRIES {
            break;
        }
    }
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, kind) in names {
        walked.seen += 1;
        if walked.seen > MAX_LIST_SEEN {
            walked.out.truncated = true;
            return Ok(());
        }
        let is_dir = kind == FileType::Directory;
        let path = format!("{prefix}{name}");
        let kept = walked.pattern.as_ref().is_none_or(|p| p.is_match(&path));
        let shown = format!("{path}{}", if is_dir { "/" } else { "" });
        if kept {
            // What the name costs in the JSON listing, escapes included, and a comma.
            let cost = serde_json::to_string(&shown).map_or(shown.len() * 6 + 2, |j| j.len()) + 1;
            if walked.out.entries.len() >= MAX_LIST_ENTRIES || walked.bytes + cost > MAX_LIST_BYTES
            {
                walked.out.truncated = true;
                return Ok(());
            }
            walked.bytes += cost;
            walked.out.entries.push(shown.clone());
        }
        if is_dir && depth > 1 {
            // NOFOLLOW: a directory swapped for a symlink meanwhile is not entered.
            let sub = rustix::fs::openat2(
                &dir,
                name.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                beneath(),
            );
            if let Ok(sub) = sub {
                walk(sub, &name, &shown, depth - 1, walked)?;
                if walked.out.truncated {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
