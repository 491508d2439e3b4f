//! `claudemesh service-net`: the first program inside the sandbox of a service whose
//! `network_allow` names hosts. It listens on the sandbox's own loopback (`127.0.0.1:PORT`,
//! where the service's `HTTP_PROXY` points), relays each connection to the broker's
//! [`proxy`](super::proxy) through the Unix socket mounted at [`SOCKET`](super::sandbox), runs
//! the service with the same stdin, stdout and stderr, passes SIGTERM and SIGINT on to it, and
//! exits as it does. It never writes to stdout: that is the service's MCP stream.

use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

/// Runs `program` with the relay listening; the exit code to exit with.
pub fn main(socket: PathBuf, port: u16, program: Vec<String>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run(&socket, port, &program))
}

fn fail(message: &str) -> i32 {
    say(message);
    125
}

fn say(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "claudemesh service-net: {message}");
}

async fn run(socket: &Path, port: u16, program: &[String]) -> i32 {
    let Some((name, args)) = program.split_first() else {
        return fail("no program to run (give it after --)");
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")),
    };
    let socket = socket.to_path_buf();
    tokio::spawn(async move {
        loop {
            let mut tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                // Out of descriptors, most likely: some connections will end.
                Err(e) => {
                    say(&format!("accept failed: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    let mut command = tokio::process::Command::new(name);
    command.args(args);
    // SAFETY: prctl is async-signal-safe; it runs in the child before exec.
    unsafe {
        command.pre_exec(|| {
            // The service does not outlive its relay.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot run {name}: {e}")),
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        let _ = child.start_kill();
        return fail("cannot handle signals");
    };
    let status = loop {
        let pass = tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        };
        if let Some(pid) = child.id() {
            // SAFETY: kill with a pid of our own living child and a valid signal.
            unsafe { libc::kill(pid as libc::pid_t, pass) };
        }
    };
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(1)
        }
        Err(e) => fail(&format!("cannot wait for {name}: {e}")),
    }
}
