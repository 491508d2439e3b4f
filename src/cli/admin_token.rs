//! The broker's admin token, for the commands that create meshes (`create`, `bench`): from
//! `--admin-token`, `--admin-token-file`, `$CLAUDEMESH_ADMIN_TOKEN`, or, for a broker on this
//! machine, the `admin.token` its data directory holds (`$CLAUDEMESH_DATA_DIR` or the default).

use std::path::Path;

use super::CliError;
use crate::client::tls::Endpoint;
use crate::identity::http_base;
use crate::net;

/// The token to present to `broker`, if one is known.
pub fn find(
    token: Option<&str>,
    token_file: Option<&Path>,
    broker: &str,
) -> Result<Option<String>, CliError> {
    if let Some(t) = token {
        return Ok(Some(t.trim().to_string()));
    }
    if let Some(path) = token_file {
        let t = std::fs::read_to_string(path).map_err(|e| {
            CliError::failed(format!(
                "cannot read the admin token file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(t.trim().to_string()));
    }
    if let Ok(t) = std::env::var("CLAUDEMESH_ADMIN_TOKEN") {
        return Ok(Some(t.trim().to_string()));
    }
    if on_this_machine(broker) {
        let path = super::broker::default_data_dir().join("admin.token");
        if let Ok(t) = std::fs::read_to_string(path) {
            return Ok(Some(t.trim().to_string()));
        }
    }
    Ok(None)
}

/// A broker URL naming loopback (an address, or `localhost`): judged as the TLS client judges
/// where plain text may go.
fn on_this_machine(broker: &str) -> bool {
    Endpoint::parse(&http_base(broker)).is_ok_and(|e| {
        e.host
            .parse()
            .map_or_else(|_| net::is_localhost_name(&e.host), net::is_loopback)
    })
}

#[cfg(test)]
mod tests {
    use super::on_this_machine;

    #[test]
    fn only_loopback_brokers_get_the_local_token() {
        for url in [
            "ws://127.0.0.1:7900/ws",
            "http://localhost:7900",
            "wss://[::1]:7900/ws",
            "https://localhost:443",
        ] {
            assert!(on_this_machine(url), "{url}");
        }
        for url in [
            "ws://192.0.2.1:7900/ws",
            "wss://mesh.example.com/ws",
            "http://127.0.0.1.example.com:7900",
            "not a url",
        ] {
            assert!(!on_this_machine(url), "{url}");
        }
    }
}
