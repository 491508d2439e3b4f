//! What a child process the broker starts inherits: no descriptor of the broker's but those
//! it is handed (deployed services, graph workers).

/// Marks every descriptor from `first` on close-on-exec, for a child between fork and exec
/// (async-signal-safe): one system call, or where the kernel lacks it (before 5.11) or a
/// filter refuses it, each descriptor listed in /proc/self/fd (read with raw system calls into
/// a buffer on the stack); without /proc, each number up to 65 536.
pub fn close_on_exec_from(first: u32) {
    // SAFETY: close_range with a flag only changes descriptor flags.
    let all = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if all != 0 {
        mark_listed(first);
    }
}

/// [`close_on_exec_from`] without close_range.
fn mark_listed(first: u32) {
    let mark = |fd: u64| {
        // SAFETY: fcntl only changes a descriptor's flags (EBADF for a number not open).
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
    };
    // SAFETY: open of a constant path; the descriptor is closed below.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        (u64::from(first)..1 << 16).for_each(mark);
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: getdents64 writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        // Each record: inode (8), offset (8), record length (2), type (1), NUL-ended name.
        let mut at = 0;
        while at + 19 < n as usize {
            let len = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
            if len == 0 {
                break;
            }
            let name = &buf[at + 19..(at + len).min(n as usize)];
            let digits = name.iter().take_while(|b| b.is_ascii_digit());
            let fd = digits.fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
            if name.first().is_some_and(u8::is_ascii_digit) && fd >= u64::from(first) {
                mark(fd);
            }
            at += len;
        }
    }
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(dir) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where close_range cannot mark them, every open descriptor from the first given on is
    /// marked close-on-exec from the listing of /proc/self/fd.
    #[test]
    fn descriptors_are_marked_from_their_listing() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::ffi::CString::new(dir.path().join("f").to_str().unwrap()).unwrap();
        // SAFETY: open, fcntl and close on descriptors of this test.
        unsafe {
            // Enough that their listing takes more than one read.
            let fds: Vec<i32> = (0..300)
                .map(|_| libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600))
                .collect();
            assert!(fds.iter().all(|fd| *fd > 2));
            let cloexec = |fd: i32| libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC != 0;
            assert!(!fds.iter().any(|fd| cloexec(*fd)));
            let last = *fds.iter().max().unwrap();
            mark_listed(last as u32);
            assert!(cloexec(last), "the first one given is marked");
            assert!(fds.iter().filter(|fd| **fd < last).all(|fd| !cloexec(*fd)));
            mark_listed(3);
            assert!(fds.iter().all(|fd| cloexec(*fd)), "all of them are marked");
            for fd in fds {
                libc::close(fd);
            }
        }
    }
}
