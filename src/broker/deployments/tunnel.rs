//! A proxied connection once it is open: bytes copied both ways until either side ends or
//! neither sends anything for a while (a tunnel holds two descriptors of the broker's).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Copies both ways until either side ends, or until `idle` passes with no byte read from or
/// written to `client` (every byte of the tunnel is one or the other).
pub async fn tunnel(
    client: &mut (impl AsyncRead + AsyncWrite + Unpin),
    upstream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    idle: Duration,
) {
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut watched = Watched {
        inner: client,
        start,
        last: &last,
    };
    let quiet = async {
        loop {
            let since = start
                .elapsed()
                .saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut watched, upstream) => {}
        _ = quiet => {}
    }
}

/// A stream that notes when bytes last moved through it (milliseconds after `start`).
struct Watched<'a, S> {
    inner: S,
    start: Instant,
    last: &'a AtomicU64,
}

impl<S> Watched<'_, S> {
    fn moved(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_tunnel_closes_after_a_quiet_spell_but_not_while_bytes_move() {
        let (mut client, mut client_far) = tokio::io::duplex(1024);
        let (mut upstream, mut upstream_far) = tokio::io::duplex(1024);
        let idle = Duration::from_millis(300);
        // Bytes every 100 ms for 600 ms, then none: the tunnel stays for the first (else
        // `talk` waits for a byte forever) and ends after the second.
        let talk = async {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                client_far.write_all(b"x").await.unwrap();
                let mut b = [0u8; 1];
                upstream_far.read_exact(&mut b).await.unwrap();
            }
        };
        let both = async { tokio::join!(tunnel(&mut client, &mut upstream, idle), talk) };
        assert!(
            tokio::time::timeout(Duration::from_secs(10), both)
                .await
                .is_ok(),
            "the tunnel closes once quiet, not before"
        );
    }
}
