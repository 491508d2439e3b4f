//! Multi-file skill bundles: a tar (optionally gzipped) or zip archive holding a `SKILL.md` and
//! the files it refers to, read in memory within the bounds below (see [`crate::archive`]).

use std::path::Path;

#[cfg(test)]
use std::io::Cursor;

use super::SkillError;
use crate::archive::{self, ArchiveError, Limits};

/// Largest archive read.
pub const MAX_BUNDLE_BYTES: u64 = 16 << 20;
/// Largest file in a bundle, most files, and most bytes unpacked in all.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
pub const MAX_FILES: usize = 256;
pub const MAX_UNPACKED_BYTES: u64 = 8 << 20;

const LIMITS: Limits = Limits {
    file_bytes: MAX_FILE_BYTES,
    files: MAX_FILES,
    unpacked_bytes: MAX_UNPACKED_BYTES,
};

/// One file of a bundle: its relative path (with `/`) and its bytes.
pub type BundleFile = archive::ArchiveFile;

impl From<ArchiveError> for SkillError {
    fn from(e: ArchiveError) -> SkillError {
        SkillError::Format(e.0)
    }
}

/// The files of an archive (tar, tar.gz or zip, told apart by their first bytes), with one
/// top directory shared by all of them taken off (`deploy/SKILL.md` → `SKILL.md`). It must
/// hold a `SKILL.md`; the second value is the top directory's name, if there was one.
pub fn unpack(bytes: &[u8]) -> Result<(Vec<BundleFile>, Option<String>), SkillError> {
    let mut files = archive::unpack(bytes, &LIMITS)?;
    let has_skill = |files: &[BundleFile]| files.iter().any(|f| f.path == "SKILL.md");
    let top = archive::strip_top(&mut files, has_skill);
    if !has_skill(&files) {
        return Err(SkillError::Format(
            "the bundle has no SKILL.md at its top".into(),
        ));
    }
    Ok((files, top))
}

/// A tar of the regular files under `dir`, under one top directory `top` (which names the
/// skill when its SKILL.md does not), for sharing as a bundle.
pub fn pack_dir(dir: &Path, top: &str) -> Result<Vec<u8>, SkillError> {
    Ok(archive::pack_dir(dir, top, &LIMITS)?)
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
