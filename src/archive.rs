//! Reading and writing tar / tar.gz / zip archives of plain files, within bounds: skill bundles
//! and service code both come this way. Only regular files with plain relative paths are taken
//! (no `..`, no root, no links or devices), so nothing unpacked can land outside its directory.

use std::io::{Cursor, Read};
use std::path::{Component, Path};

/// What an archive may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file, most files, and most bytes unpacked in all.
    pub file_bytes: u64,
    pub files: usize,
    pub unpacked_bytes: u64,
}

/// An archive that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

fn bad(what: impl Into<String>) -> ArchiveError {
    ArchiveError(what.into())
}

/// One file of an archive: its relative path (with `/`), its bytes, and whether it was marked
/// executable.
pub struct ArchiveFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub executable: bool,
}

/// A plain relative path (`a/b.md`): no root, no `..`, no `.` only.
pub fn relative(path: &Path) -> Result<String, ArchiveError> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| bad(format!("{}: not a UTF-8 path", path.display())))?
                    .to_string(),
            ),
            Component::CurDir => {}
            _ => {
                return Err(bad(format!(
                    "{}: an archive path must be relative, without ..",
                    path.display()
                )));
            }
        }
    }
    if parts.is_empty() {
        return Err(bad("an archive entry has an empty path"));
    }
    Ok(parts.join("/"))
}

/// Keeps count of what is unpacked.
struct Budget {
    limits: Limits,
    files: usize,
    bytes: u64,
}

impl Budget {
    fn new(limits: &Limits) -> Budget {
        Budget {
            limits: *limits,
            files: 0,
            bytes: 0,
        }
    }

    fn take(&mut self, path: &str, size: u64) -> Result<(), ArchiveError> {
        let l = self.limits;
        self.files += 1;
        self.bytes += size;
        if size > l.file_bytes {
            return Err(bad(format!(
                "{path} is {size} bytes; an archive file may be at most {}",
                l.file_bytes
            )));
        }
        if self.files > l.files {
            return Err(bad(format!(
                "an archive may hold at most {} files",
                l.files
            )));
        }
        if self.bytes > l.unpacked_bytes {
            return Err(bad(format!(
                "an archive may hold at most {} bytes unpacked",
                l.unpacked_bytes
            )));
        }
        Ok(())
    }

    /// Reads one file whose header declared `declared` bytes (already counted by `take`),
    /// counting what it really holds: a header that lies about its size (a zip bomb) is
    /// stopped by the same limits.
    fn read(
        &mut self,
        mut r: impl Read,
        path: &str,
        declared: u64,
    ) -> Result<Vec<u8>, ArchiveError> {
        let max = self.limits.file_bytes;
        let mut bytes = Vec::new();
        (&mut r)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("{path}: cannot read it from the archive: {e}")))?;
        if bytes.len() as u64 > max {
            return Err(bad(format!(
                "{path} is larger than {max} bytes, the most an archive file may be"
            )));
        }
        self.bytes = self.bytes - declared.min(self.bytes) + bytes.len() as u64;
        if self.bytes > self.limits.unpacked_bytes {
            return Err(bad(format!(
                "an archive may hold at most {} bytes unpacked",
                self.limits.unpacked_bytes
            )));
        }
        Ok(bytes)
    }
}

fn untar(reader: impl Read, limits: &Limits) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget::new(limits);
    let mut out = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a readable tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(format!("a broken tar entry: {e}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| bad(format!("a tar entry has an unreadable path: {e}")))?
            .into_owned();
        let path = relative(&raw)?;
        if !kind.is_file() {
            return Err(bad(format!(
                "{path}: an archive may hold regular files only (no links or devices)"
            )));
        }
        let declared = entry.size();
        budget.take(&path, declared)?;
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        let bytes = budget.read(entry, &path, declared)?;
        out.push(ArchiveFile {
            path,
            bytes,
            executable,
        });
    }
    Ok(out)
}

fn unzip(bytes: &[u8], limits: &Limits) -> Result<Vec<ArchiveFile>, ArchiveError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let mut budget = Budget::new(limits);
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let file = archive
            .by_index(i)
            .map_err(|e| bad(format!("a broken zip entry: {e}")))?;
        if file.is_dir() {
            continue;
        }
        let raw = file.enclosed_name().ok_or_else(|| {
            bad(format!(
                "{}: an archive path must be relative, without ..",
                file.name()
            ))
        })?;
        let path = relative(&raw)?;
        if !file.is_file() {
            return Err(bad(format!(
                "{path}: an archive may hold regular files only"
            )));
        }
        let declared = file.size();
        budget.take(&path, declared)?;
        let executable = file.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let bytes = budget.read(file, &path, declared)?;
        out.push(ArchiveFile {
            path,
            bytes,
            executable,
        });
    }
    Ok(out)
}

/// The files of an archive: tar, tar.gz or zip, told apart by their first bytes.
pub fn unpack(bytes: &[u8], limits: &Limits) -> Result<Vec<ArchiveFile>, ArchiveError> {
    if bytes.starts_with(b"PK\x03\x04") {
        unzip(bytes, limits)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::read::GzDecoder::new(bytes).take(limits.unpacked_bytes * 2 + (1 << 20));
        untar(gz, limits)
    } else {
        untar(bytes, limits)
    }
}

/// Takes off one top directory shared by every file (`srv/main.py` → `main.py`), unless
/// `at_top` already holds for the files as they are; returns that directory's name.
pub fn strip_top(
    files: &mut [ArchiveFile],
    at_top: impl Fn(&[ArchiveFile]) -> bool,
) -> Option<String> {
    if at_top(files) {
        return None;
    }
    let dir = files
        .first()
        .and_then(|f| f.path.split_once('/'))
        .map(|(d, _)| format!("{d}/"))?;
    if !files.iter().all(|f| f.path.starts_with(&dir)) {
        return None;
    }
    for f in files.iter_mut() {
        f.path = f.path[dir.len()..].to_string();
    }
    Some(dir.trim_end_matches('/').to_string())
}

/// A tar of the regular files under `dir`, under one top directory `top`.
pub fn pack_dir(dir: &Path, top: &str, limits: &Limits) -> Result<Vec<u8>, ArchiveError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| bad(format!("{p}: {e}"))
    };
    let mut builder = tar::Builder::new(Vec::new());
    let mut budget = Budget::new(limits);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&at)
            .map_err(io(&at))?
            .collect::<Result<_, _>>()
            .map_err(io(&at))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let path = child.path();
            let kind = child.file_type().map_err(io(&path))?;
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let name = relative(rel)?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let size = child.metadata().map_err(io(&path))?.len();
                budget.take(&name, size)?;
                builder
                    .append_path_with_name(&path, format!("{top}/{name}"))
                    .map_err(io(&path))?;
            } else {
                return Err(bad(format!(
                    "{}: an archive may hold regular files only (no symlinks or devices)",
                    path.display()
                )));
            }
        }
    }
    builder.into_inner().map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of `n` files of `size` zero bytes each, deflated, whose headers then claim each
    /// file holds one byte.
    fn lying_zip(n: usize, size: usize) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for i in 0..n {
            w.start_file(format!("f{i}"), opts).unwrap();
            w.write_all(&vec![0u8; size]).unwrap();
        }
        let mut bytes = w.finish().unwrap().into_inner();
        let mut patch = |sig: [u8; 4], at: usize| {
            let mut i = 0;
            while i + 4 <= bytes.len() {
                if bytes[i..i + 4] == sig {
                    bytes[i + at..i + at + 4].copy_from_slice(&1u32.to_le_bytes());
                }
                i += 1;
            }
        };
        patch([0x50, 0x4b, 0x03, 0x04], 22); // local headers: uncompressed size
        patch([0x50, 0x4b, 0x01, 0x02], 24); // central directory: uncompressed size
        bytes
    }

    #[test]
    fn an_archive_is_counted_by_what_it_unpacks_not_what_it_declares() {
        let limits = Limits {
            file_bytes: 1 << 20,
            files: 100,
            unpacked_bytes: 2 << 20,
        };
        // 8 files of 512 KiB each declare 1 byte: 4 MiB in all, past the 2 MiB budget.
        let Err(err) = unpack(&lying_zip(8, 512 << 10), &limits) else {
            panic!("a lying archive past the budget was unpacked");
        };
        assert!(err.0.contains("unpacked"), "{}", err.0);
        // Within the budget the same kind of archive unpacks.
        let files = unpack(&lying_zip(2, 512 << 10), &limits).expect("within the budget");
        assert_eq!(files.len(), 2);
    }
}
