//! Multi-file skill bundles: a tar (optionally gzipped) or zip archive holding a `SKILL.md` and
//! the files it refers to. Read with the `tar`, `flate2` and `zip` crates, in memory, within
//! bounds; only regular files with plain relative paths are taken.

use std::io::{Cursor, Read};
use std::path::{Component, Path};

use super::SkillError;

/// Largest archive read.
pub const MAX_BUNDLE_BYTES: u64 = 16 << 20;
/// Largest file in a bundle, most files, and most bytes unpacked in all.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
pub const MAX_FILES: usize = 256;
pub const MAX_UNPACKED_BYTES: u64 = 8 << 20;

/// One file of a bundle: its relative path (with `/`) and its bytes.
pub struct BundleFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

fn bad(what: impl Into<String>) -> SkillError {
    SkillError::Format(what.into())
}

/// A plain relative path (`a/b.md`): no root, no `..`, no `.` only.
fn relative(path: &Path) -> Result<String, SkillError> {
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
                    "{}: a bundle path must be relative, without ..",
                    path.display()
                )));
            }
        }
    }
    if parts.is_empty() {
        return Err(bad("a bundle entry has an empty path"));
    }
    Ok(parts.join("/"))
}

/// Keeps count of what is unpacked.
#[derive(Default)]
struct Budget {
    files: usize,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, path: &str, size: u64) -> Result<(), SkillError> {
        self.files += 1;
        self.bytes += size;
        if size > MAX_FILE_BYTES {
            return Err(bad(format!(
                "{path} is {size} bytes; a bundle file may be at most {MAX_FILE_BYTES}"
            )));
        }
        if self.files > MAX_FILES {
            return Err(bad(format!("a bundle may hold at most {MAX_FILES} files")));
        }
        if self.bytes > MAX_UNPACKED_BYTES {
            return Err(bad(format!(
                "a bundle may hold at most {MAX_UNPACKED_BYTES} bytes unpacked"
            )));
        }
        Ok(())
    }
}

fn read_bounded(mut r: impl Read, path: &str) -> Result<Vec<u8>, SkillError> {
    let mut bytes = Vec::new();
    (&mut r)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("{path}: cannot read it from the archive: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(bad(format!(
            "{path} is larger than {MAX_FILE_BYTES} bytes, the most a bundle file may be"
        )));
    }
    Ok(bytes)
}

fn untar(reader: impl Read) -> Result<Vec<BundleFile>, SkillError> {
    let mut archive = tar::Archive::new(reader);
    let mut budget = Budget::default();
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
                "{path}: a bundle holds regular files only (no links or devices)"
            )));
        }
        budget.take(&path, entry.size())?;
        let bytes = read_bounded(entry, &path)?;
        out.push(BundleFile { path, bytes });
    }
    Ok(out)
}

fn unzip(bytes: &[u8]) -> Result<Vec<BundleFile>, SkillError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let mut budget = Budget::default();
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
                "{}: a bundle path must be relative, without ..",
                file.name()
            ))
        })?;
        let path = relative(&raw)?;
        if !file.is_file() {
            return Err(bad(format!("{path}: a bundle holds regular files only")));
        }
        budget.take(&path, file.size())?;
        let bytes = read_bounded(file, &path)?;
        out.push(BundleFile { path, bytes });
    }
    Ok(out)
}

/// The files of an archive (tar, tar.gz or zip, told apart by their first bytes), with one
/// top directory shared by all of them taken off (`deploy/SKILL.md` → `SKILL.md`). It must
/// hold a `SKILL.md`; the second value is the top directory's name, if there was one.
pub fn unpack(bytes: &[u8]) -> Result<(Vec<BundleFile>, Option<String>), SkillError> {
    let mut files = if bytes.starts_with(b"PK\x03\x04") {
        unzip(bytes)?
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::read::GzDecoder::new(bytes).take(MAX_BUNDLE_BYTES * 4);
        untar(gz)?
    } else {
        untar(bytes)?
    };
    let mut top = None;
    if !files.iter().any(|f| f.path == "SKILL.md") {
        let first = files
            .first()
            .and_then(|f| f.path.split_once('/'))
            .map(|(d, _)| format!("{d}/"));
        if let Some(dir) = first
            && files.iter().all(|f| f.path.starts_with(&dir))
        {
            for f in &mut files {
                f.path = f.path[dir.len()..].to_string();
            }
            top = Some(dir.trim_end_matches('/').to_string());
        }
    }
    if !files.iter().any(|f| f.path == "SKILL.md") {
        return Err(bad("the bundle has no SKILL.md at its top"));
    }
    Ok((files, top))
}

/// A tar of the regular files under `dir`, under one top directory `top` (which names the
/// skill when its SKILL.md does not), for sharing as a bundle.
pub fn pack_dir(dir: &Path, top: &str) -> Result<Vec<u8>, SkillError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut budget = Budget::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let mut children: Vec<_> = std::fs::read_dir(&at)
            .map_err(SkillError::io(&at))?
            .collect::<Result<_, _>>()
            .map_err(SkillError::io(&at))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let path = child.path();
            let kind = child.file_type().map_err(SkillError::io(&path))?;
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let name = relative(rel)?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let size = child.metadata().map_err(SkillError::io(&path))?.len();
                budget.take(&name, size)?;
                builder
                    .append_path_with_name(&path, format!("{top}/{name}"))
                    .map_err(SkillError::io(&path))?;
            } else {
                return Err(bad(format!(
                    "{}: a bundle holds regular files only (no symlinks or devices)",
                    path.display()
                )));
            }
        }
    }
    builder.into_inner().map_err(SkillError::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *bytes).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn unpacks_tar_gz_and_zip_with_a_top_directory() {
        let tar = tar_of(&[
            ("deploy/SKILL.md", b"---\nname: d\n---\nx"),
            ("deploy/run.sh", b"echo"),
        ]);
        let (files, top) = unpack(&tar).unwrap();
        assert_eq!(top.as_deref(), Some("deploy"));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["SKILL.md", "run.sh"]);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        assert_eq!(unpack(&gz.finish().unwrap()).unwrap().0.len(), 2);

        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("SKILL.md", opts).unwrap();
        std::io::Write::write_all(&mut zip, b"body").unwrap();
        let zip = zip.finish().unwrap().into_inner();
        let (files, top) = unpack(&zip).unwrap();
        assert_eq!((files[0].path.as_str(), top), ("SKILL.md", None));
    }

    #[test]
    fn refuses_escapes_links_and_missing_skill_md() {
        // tar's own `append_data` refuses `..`, so the path goes into the header by hand.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil.s");
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(b"x");
        raw.resize(1024 + 512 * 2, 0);
        assert!(unpack(&raw).is_err_and(|e| e.to_string().contains("relative")));

        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "SKILL.md", "/etc/passwd").unwrap();
        let link = b.into_inner().unwrap();
        assert!(unpack(&link).is_err_and(|e| e.to_string().contains("regular files")));

        let none = tar_of(&[("README.md", b"x"), ("other/SKILL.md", b"y")]);
        assert!(unpack(&none).is_err_and(|e| e.to_string().contains("no SKILL.md")));
    }
}
