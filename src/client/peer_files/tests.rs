use super::*;

fn shared() -> (tempfile::TempDir, SharedDir) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("src/deep")).expect("dirs");
    std::fs::write(root.join("README.md"), b"hello").expect("write");
    std::fs::write(root.join("src/deep/x.rs"), b"fn x() {}").expect("write");
    std::fs::write(tmp.path().join("outside.txt"), b"secret outside").expect("write");
    let dir = SharedDir::open(&root, true).expect("share");
    (tmp, dir)
}

#[test]
fn reads_inside_and_refuses_what_leads_out() {
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    assert_eq!(dir.read("README.md").expect("read"), b"hello");
    assert_eq!(dir.read("./src/deep/x.rs").expect("read"), b"fn x() {}");
    std::os::unix::fs::symlink("../outside.txt", root.join("out")).expect("link");
    std::os::unix::fs::symlink("README.md", root.join("in")).expect("link");
    std::os::unix::fs::symlink(tmp.path(), root.join("up")).expect("link");
    assert_eq!(dir.read("in").expect("a symlink inside"), b"hello");
    for bad in ["out", "up/outside.txt", "../outside.txt", "/etc/passwd"] {
        let r = dir.read(bad).expect_err(bad);
        assert_eq!(r.code, "forbidden_path", "{bad}: {r:?}");
    }
    assert_eq!(dir.read("nope").expect_err("missing").code, "not_found");
    assert_eq!(dir.read("src").expect_err("a dir").code, "not_a_file");
}

/// Runs `f` on a thread and fails (rather than hangs) when it does not return in time.
fn within_time(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the check returned (a read blocked, or it panicked)");
}

#[test]
fn special_and_large_files_are_refused_without_blocking() {
    within_time(special_and_large_files);
}

fn special_and_large_files() {
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    let fifo = root.join("fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o600)).expect("fifo");
    let r = dir.read("fifo").expect_err("a fifo");
    assert_eq!(r.code, "not_a_file");
    assert!(r.message.contains("fifo"), "{r:?}");
    std::fs::write(
        root.join("big"),
        vec![b'x'; MAX_PEER_CHUNK_BYTES as usize + 1],
    )
    .expect("big");
    assert_eq!(dir.read("big").expect_err("too large").code, "too_large");
    let (chunk, size) = dir.read_range("big", 10, 100).expect("a chunk of it");
    assert_eq!((chunk.len(), size), (100, MAX_PEER_CHUNK_BYTES + 1));
    let (tail, _) = dir
        .read_range("big", MAX_PEER_CHUNK_BYTES, 1000)
        .expect("its end");
    assert_eq!(tail.len(), 1);
    std::fs::write(root.join("fits"), vec![b'x'; MAX_PEER_CHUNK_BYTES as usize]).expect("fits");
    assert!(dir.read("fits").is_ok());
    let huge = std::fs::File::create(root.join("huge")).expect("huge");
    huge.set_len(MAX_PEER_FILE_BYTES + 1).expect("sparse");
    assert_eq!(
        dir.read_range("huge", 0, 10)
            .expect_err("over the host's limit")
            .code,
        "too_large"
    );
}

#[test]
fn lists_names_bounded_and_never_follows_links_out() {
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    std::os::unix::fs::symlink(tmp.path(), root.join("up")).expect("link");
    let all = dir.list("", 6).expect("list");
    assert_eq!(
        all.entries,
        vec!["README.md", "src/", "src/deep/", "src/deep/x.rs", "up"]
    );
    let shallow = dir.list("", 1).expect("list");
    assert_eq!(shallow.entries, vec!["README.md", "src/", "up"]);
    assert_eq!(dir.list("src", 1).expect("sub").entries, vec!["deep/"]);
    assert_eq!(
        dir.list("up", 1).expect_err("link out").code,
        "forbidden_path"
    );
    assert_eq!(
        dir.list("..", 1).expect_err("dotdot").code,
        "forbidden_path"
    );
    for i in 0..(MAX_LIST_ENTRIES + 5) {
        std::fs::write(root.join(format!("f{i:05}")), b"").expect("many");
    }
    let many = dir.list("", 1).expect("list");
    assert!(many.truncated);
    assert!(many.entries.len() <= MAX_LIST_ENTRIES);
}

#[test]
fn roots_holding_secrets_are_not_shared() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let config = tmp.path().join("elsewhere/.claudemesh");
    std::fs::create_dir_all(home.join(".ssh")).expect("ssh");
    std::fs::create_dir_all(home.join("work/project")).expect("project");
    std::fs::create_dir_all(&config).expect("config");
    let home = std::fs::canonicalize(&home).expect("canonical");
    let check = |root: &Path| root_problem(root, Some(&home), &config);
    assert!(
        check(Path::new("/"))
            .expect("/")
            .contains("whole file system")
    );
    assert!(check(&home).expect("home").contains("home directory"));
    let above = home.parent().expect("parent");
    assert!(
        check(above)
            .expect("above home")
            .contains("refusing to share")
    );
    let no_config = Path::new("/nonexistent/.claudemesh");
    let ssh = root_problem(above, Some(&home), no_config).expect("above home");
    assert!(ssh.contains(".ssh") && ssh.contains("SSH keys"), "{ssh}");
    let config_parent = std::fs::canonicalize(tmp.path().join("elsewhere")).expect("c");
    assert!(
        check(&config_parent)
            .expect("config")
            .contains("claudemesh's keys")
    );
    assert_eq!(check(&home.join("work/project")), None);
    assert_eq!(check(&home.join("work")), None);
}

#[test]
fn secret_names_are_neither_listed_nor_read_even_through_a_symlink() {
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    for d in [".ssh", ".git", "sub/.aws"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    for f in [
        ".ssh/id_ed25519",
        ".env",
        ".env.local",
        ".git/config",
        ".git/HEAD",
        "sub/.aws/credentials",
        ".netrc",
    ] {
        std::fs::write(root.join(f), b"secret").expect("write");
    }
    std::os::unix::fs::symlink(".ssh/id_ed25519", root.join("key")).expect("link");
    std::os::unix::fs::symlink(".ssh", root.join("keys")).expect("link");
    for bad in [
        ".ssh/id_ed25519",
        ".env",
        ".env.local",
        ".git/config",
        "sub/.aws/credentials",
        ".netrc",
        "key",
        "keys/id_ed25519",
    ] {
        let r = dir.read(bad).expect_err(bad);
        assert_eq!(r.code, "forbidden_path", "{bad}: {r:?}");
        assert!(r.message.contains("keys or tokens"), "{bad}: {r:?}");
    }
    assert_eq!(dir.read(".git/HEAD").expect("not a secret"), b"secret");
    let all = dir.list("", 6).expect("list").entries;
    for secret in [
        ".ssh/",
        ".env",
        ".env.local",
        ".git/config",
        "sub/.aws/",
        ".netrc",
    ] {
        assert!(!all.iter().any(|e| e == secret), "{secret} listed: {all:?}");
    }
    assert!(all.iter().any(|e| e == ".git/HEAD"), "{all:?}");
    assert_eq!(dir.list(".git", 1).expect("git").entries, vec!["HEAD"]);
    assert_eq!(
        dir.list("keys", 1).expect_err("link to .ssh").code,
        "forbidden_path"
    );
    assert_eq!(
        dir.list(".ssh", 1).expect_err(".ssh").code,
        "forbidden_path"
    );
}

#[test]
fn hard_links_and_names_that_are_not_utf8_are_not_served() {
    use std::os::unix::ffi::OsStrExt;
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    std::fs::hard_link(tmp.path().join("outside.txt"), root.join("linked")).expect("link");
    let r = dir.read("linked").expect_err("a hard link");
    assert_eq!(r.code, "forbidden_path", "{r:?}");
    assert!(r.message.contains("hard links"), "{r:?}");
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-name");
    std::fs::write(root.join(odd), b"x").expect("odd");
    let listing = dir.list("", 1).expect("list");
    assert!(listing.truncated, "a skipped name is said: {listing:?}");
    assert!(
        !listing.entries.iter().any(|e| e.starts_with("odd")),
        "{listing:?}"
    );
}

#[test]
fn a_listing_of_names_full_of_escapes_stays_under_the_answer_limit() {
    let (tmp, dir) = shared();
    let root = tmp.path().join("root");
    // Each name escapes to about six times its length in JSON.
    for i in 0..200 {
        let name = format!("{i:03}{}", "\"\\\u{1}\u{7f}\u{1b}".repeat(50));
        std::fs::write(root.join(name), b"").expect("odd name");
    }
    let listing = dir.list("", 1).expect("list");
    assert!(listing.truncated, "the escapes count against the budget");
    let json = serde_json::to_vec(&listing).expect("json");
    assert!(json.len() <= MAX_LIST_BYTES + 64, "{} bytes", json.len());
}
