//! `claudemesh discover`, and `--broker lan:NAME` for `create` and `join`: brokers announced on
//! the LAN (`claudemesh broker --lan`). An advert is a hint — anyone on the LAN can send one —
//! so what it names is shown with its key fingerprint, and trust still comes from keys.

use std::time::Duration;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, print_json};
use crate::client::lan::{self, LanBroker};
use crate::client::tls::Trust;

/// What `discover` and `lan:NAME` say about trust.
pub const HINT: &str = "discovery is only a hint (anyone on the LAN can announce a broker): compare the key fingerprint with the one the broker printed at start; your messages stay end-to-end encrypted with your mesh keys either way";

/// How long `lan:NAME` looks before giving up.
const FIND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "discover", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh discover --json --timeout 5s")]
/// list brokers announced on the LAN (`claudemesh broker --lan`), with their key fingerprints
pub struct DiscoverCmd {
    /// how long to listen for answers, e.g. 2s, 10s (default 2s)
    #[argh(option, default = "String::from(\"2s\")")]
    timeout: String,
    /// print JSON: {brokers:[{name, url, fingerprint, host, port, addresses}]}
    #[argh(switch)]
    json: bool,
}

impl DiscoverCmd {
    pub async fn run(self) -> CliResult {
        let timeout = crate::protocol::time::parse_duration(&self.timeout)
            .map_err(|e| CliError::Usage(format!("--timeout: {e}")))?;
        let brokers = lan::browse(timeout).await?;
        if self.json {
            print_json(&json!({ "brokers": brokers }));
            return Ok(());
        }
        if brokers.is_empty() {
            outln!(
                "no broker answered on the LAN within {}: start one with `claudemesh broker --lan --listen 0.0.0.0:7900` and its TLS flags (README, \"On a LAN\"), or wait longer with --timeout 10s",
                self.timeout
            );
            return Ok(());
        }
        outln!("{:<20} {:<32} KEY FINGERPRINT", "NAME", "URL");
        for b in &brokers {
            outln!(
                "{:<20} {:<32} {}",
                b.name,
                b.url,
                b.fingerprint.as_deref().unwrap_or("(none)")
            );
        }
        outln!("use one: `claudemesh create <mesh> --broker lan:NAME`");
        outln!("note: {HINT}");
        Ok(())
    }
}

impl From<lan::LanError> for CliError {
    fn from(e: lan::LanError) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// `lan:NAME` → the URL of the broker announced under NAME (`lan:` alone: the only one
/// announced); any other broker argument is returned as it is.
pub async fn resolve_broker(arg: String, trust: &Trust) -> Result<String, CliError> {
    let Some(name) = arg.strip_prefix("lan:") else {
        return Ok(arg);
    };
    let seen = if name.is_empty() {
        lan::browse(Duration::from_secs(2)).await?
    } else {
        lan::find(name, FIND_TIMEOUT).await?
    };
    let chosen: Option<&LanBroker> = if name.is_empty() {
        match seen.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    } else {
        seen.iter().find(|b| b.name == name)
    };
    let Some(broker) = chosen else {
        let names: Vec<&str> = seen.iter().map(|b| b.name.as_str()).collect();
        let answered = if names.is_empty() {
            "no broker answered".to_string()
        } else {
            format!("brokers that answered: {}", names.join(", "))
        };
        let wanted = if name.is_empty() {
            "lan: needs exactly one broker on the LAN, or a name (lan:NAME)".to_string()
        } else {
            format!("no broker named \"{name}\" answered on the LAN")
        };
        return Err(CliError::failed(format!(
            "{wanted} ({answered}); `claudemesh discover` lists them"
        )));
    };
    lan::prove_key(broker, trust).await?;
    output::error(&format!(
        "found broker \"{}\" on the LAN at {} (key fingerprint {}, proven by the broker); {HINT}",
        broker.name,
        broker.url,
        broker.fingerprint.as_deref().unwrap_or("none")
    ));
    Ok(broker.url.clone())
}
