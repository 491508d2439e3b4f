//! Who may talk to the dashboard: the browser that opened the one-time login link, on this
//! machine, from the dashboard's own pages. Every request passes [`Gate::check`]:
//! - `Host` must be the address it listens on (`127.0.0.1:PORT`) or `localhost:PORT` (a
//!   DNS-rebinding page has another);
//! - a request that changes something (not GET/HEAD) must carry `Origin` equal to the
//!   dashboard's own origin (a cross-site form or fetch has another, or none);
//! - every path but `/login` needs the session cookie that the login handed out.
//!
//! The login token is printed once and works once; the cookie is random, `HttpOnly`,
//! `SameSite=Strict`, and lives as long as this process.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use hyper::header::{self, HeaderMap};
use hyper::{Method, Request};

use crate::crypto;

/// The cookie's name.
pub const COOKIE: &str = "claudemesh_dashboard";

pub struct Gate {
    /// Where the dashboard listens, as `Host` names it: `127.0.0.1:PORT` (or `[::1]:PORT`).
    host: String,
    port: u16,
    /// The login token until it is used.
    login_token: Mutex<Option<String>>,
    sessions: Mutex<HashSet<String>>,
}

/// 32 random bytes as hex: a login token or a session id.
fn random_secret() -> String {
    hex::encode(crypto::random_bytes::<32>())
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Gate {
    /// A gate for a dashboard listening on `addr`, with a fresh login token.
    pub fn new(addr: SocketAddr) -> Gate {
        Gate {
            host: addr.to_string(),
            port: addr.port(),
            login_token: Mutex::new(Some(random_secret())),
            sessions: Mutex::new(HashSet::new()),
        }
    }

    /// The one-time login link (call once, before serving).
    pub fn login_url(&self) -> String {
        let token = self
            .login_token
            .lock()
            .map(|t| t.clone().unwrap_or_default())
            .unwrap_or_default();
        format!("http://{}/login?token={token}", self.host)
    }

    /// The `Host` values this dashboard answers to.
    fn host_allowed(&self, host: &str) -> bool {
        host == self.host || host == format!("localhost:{}", self.port)
    }

    /// Refuses a request that does not pass the rules above; the reason is one line.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), &'static str> {
        let host = header_str(req.headers(), header::HOST).unwrap_or("");
        if !self.host_allowed(host) {
            return Err("wrong Host: open the dashboard at the address it printed");
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let origin = header_str(req.headers(), header::ORIGIN).unwrap_or("");
            if origin != format!("http://{host}") {
                return Err("this request did not come from the dashboard's own page (Origin)");
            }
        }
        if req.uri().path() == "/login" {
            return Ok(());
        }
        match session_cookie(req.headers()) {
            Some(id) if self.is_session(id) => Ok(()),
            _ => Err("not logged in: open the login link `claudemesh dashboard` printed"),
        }
    }

    fn is_session(&self, id: &str) -> bool {
        self.sessions
            .lock()
            .map(|s| s.iter().any(|known| same_secret(known, id)))
            .unwrap_or(false)
    }

    /// Swaps the login token for a new session id; `None` when the token is wrong or was
    /// already used.
    pub fn login(&self, token: &str) -> Option<String> {
        let mut slot = self.login_token.lock().ok()?;
        let matches = slot.as_deref().is_some_and(|t| same_secret(t, token));
        if !matches {
            return None;
        }
        *slot = None;
        let id = random_secret();
        self.sessions.lock().ok()?.insert(id.clone());
        Some(id)
    }
}

/// The `Set-Cookie` value for a session id.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/")
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn the_token_works_once_and_the_cookie_then_opens_the_api() {
        let gate = Gate::new(SocketAddr::from(([127, 0, 0, 1], 4242)));
        let url = gate.login_url();
        let token = url.split("token=").nth(1).expect("token").to_string();
        assert!(gate.login("wrong").is_none());
        let id = gate.login(&token).expect("first use");
        assert!(gate.login(&token).is_none(), "second use");
        let cookie = format!("{COOKIE}={id}");
        let host = "127.0.0.1:4242";
        let ok = request(
            Method::GET,
            "/api/peers",
            &[("host", host), ("cookie", &cookie)],
        );
        assert!(gate.check(&ok).is_ok());
        let no_cookie = request(Method::GET, "/api/peers", &[("host", host)]);
        assert!(gate.check(&no_cookie).is_err());
        let rebound = request(
            Method::GET,
            "/api/peers",
            &[("host", "evil.example:4242"), ("cookie", &cookie)],
        );
        assert!(gate.check(&rebound).is_err());
        let foreign = request(
            Method::POST,
            "/api/send",
            &[
                ("host", host),
                ("cookie", &cookie),
                ("origin", "http://evil.example"),
            ],
        );
        assert!(gate.check(&foreign).is_err());
        let own = request(
            Method::POST,
            "/api/send",
            &[
                ("host", host),
                ("cookie", &cookie),
                ("origin", "http://127.0.0.1:4242"),
            ],
        );
        assert!(gate.check(&own).is_ok());
    }
}
