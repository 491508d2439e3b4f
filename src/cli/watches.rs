//! URL watches (README "Watches and webhooks"): `watch URL …`, `watch list`, `watch remove ID`.

use std::collections::BTreeMap;

use argh::{ArgsInfo, FromArgs};
use serde_json::json;

use super::output::{self, outln};
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{Watch, WatchEntry};
use crate::protocol::time;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "watch", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh watch https://status.example.com/api --mode json --path $.status --notify-on match:green --to @ops"
)]
#[argh(example = "claudemesh watch https://example.com/releases --interval 10m")]
#[argh(example = "claudemesh watch https://api.example.com/ci --header-file ~/.config/ci-headers")]
#[argh(example = "claudemesh watch list")]
#[argh(example = "claudemesh watch remove 01JD…")]
/// have the broker poll a URL and message you (or --to) when it changes: watch URL [options]; `watch list`; `watch remove ID`
pub struct WatchCmd {
    /// the URL; or `list`; or `remove ID`
    #[argh(positional)]
    args: Vec<String>,
    /// what is compared: hash (SHA-256 of the body, the default), json (the value at --path) or status (the HTTP status code)
    #[argh(option)]
    mode: Option<String>,
    /// the JSONPath of the value for --mode json, e.g. $.status
    #[argh(option)]
    path: Option<String>,
    /// time between polls, 5s to 24h (default 30s)
    #[argh(option)]
    interval: Option<String>,
    /// when to tell: change (the default), match:VALUE or not_match:VALUE
    #[argh(option)]
    notify_on: Option<String>,
    /// a request header NAME:VALUE (repeatable; kept sealed on the broker). Its value is in
    /// this command's arguments, which other users of the machine can see: put secrets in
    /// --header-file
    #[argh(option)]
    header: Vec<String>,
    /// a file of request headers, one NAME: VALUE per line (blank lines and lines starting
    /// with # skipped); - reads them from stdin
    #[argh(option)]
    header_file: Option<std::path::PathBuf>,
    /// a label shown in the messages
    #[argh(option)]
    label: Option<String>,
    /// who is told: a name, pubkey, @group or * (default: you)
    #[argh(option)]
    to: Option<String>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {watchId, url, mode, interval}
    #[argh(switch)]
    json: bool,
}

/// The most a header file may hold.
const MAX_HEADER_FILE: u64 = 64 * 1024;

/// The headers of `--header` and `--header-file` together (the file's win on a repeated name).
fn headers(
    given: &[String],
    file: Option<&std::path::Path>,
) -> Result<Option<BTreeMap<String, String>>, CliError> {
    let mut out = BTreeMap::new();
    for h in given {
        let (k, v) = header_line(h)
            .ok_or_else(|| CliError::Usage(format!("--header takes NAME:VALUE, not \"{h}\"")))?;
        out.insert(k, v);
    }
    if let Some(path) = file {
        let text = super::read_secret_text(path, MAX_HEADER_FILE).map_err(|e| {
            CliError::failed(format!("cannot read headers from {}: {e}", path.display()))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The line is not echoed: it may hold the secret the file is there to keep.
            let (k, v) = header_line(line).ok_or_else(|| {
                CliError::Usage(format!(
                    "{} line {}: expected NAME: VALUE",
                    path.display(),
                    n + 1
                ))
            })?;
            out.insert(k, v);
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn header_line(h: &str) -> Option<(String, String)> {
    let (k, v) = h.split_once(':')?;
    (!k.trim().is_empty()).then(|| (k.trim().to_string(), v.trim().to_string()))
}

fn interval_s(given: Option<&str>) -> Result<Option<u64>, CliError> {
    let Some(text) = given else {
        return Ok(None);
    };
    let d = time::parse_duration(text).map_err(|e| CliError::Usage(format!("--interval: {e}")))?;
    Ok(Some(d.as_secs()))
}

/// `--mode json` and `--path` go together. Checked here, as the broker would refuse them
/// naming its wire field (`extract`), not the flag.
fn usage_of_path(mode: Option<&str>, path: Option<&str>) -> Result<(), CliError> {
    let path = path.filter(|p| !p.trim().is_empty());
    match (mode, path) {
        (Some("json"), None) => Err(CliError::Usage(
            "--mode json needs --path, the JSONPath of the value to compare (e.g. --path '$.status')"
                .into(),
        )),
        (None | Some("hash" | "status"), Some(_)) => Err(CliError::Usage(
            "--path goes with --mode json only".into(),
        )),
        _ => Ok(()),
    }
}

fn entry_line(w: &WatchEntry) -> String {
    let mut line = format!("{}  {} [{}", w.id, w.url, w.mode);
    if let Some(p) = &w.extract {
        line.push_str(&format!(" {p}"));
    }
    line.push_str(&format!(
        "] every {}s, on {} → {}",
        w.interval, w.notify_on, w.target
    ));
    if let Some(v) = &w.last_value {
        line.push_str(&format!(
            "  last: {}",
            v.chars().take(80).collect::<String>()
        ));
    }
    if let Some(e) = &w.last_error {
        line.push_str(&format!("  (failing: {e})"));
    }
    line
}

impl WatchCmd {
    pub async fn run(self) -> CliResult {
        let plain = self.mode.is_none() && self.path.is_none() && self.interval.is_none();
        match self.args.as_slice() {
            [only] if only == "list" && plain => return self.list().await,
            [first, id] if first == "remove" && plain => return self.remove(id).await,
            [_] => {}
            _ => {
                return Err(CliError::Usage(
                    "give one URL (or `list`, or `remove ID`)".into(),
                ));
            }
        }
        usage_of_path(self.mode.as_deref(), self.path.as_deref())?;
        let url = self.args[0].clone();
        let watch = Watch {
            url,
            mode: self.mode.clone(),
            extract: self.path.clone(),
            interval: interval_s(self.interval.as_deref())?,
            notify_on: self.notify_on.clone(),
            headers: headers(&self.header, self.header_file.as_deref())?,
            label: self.label.clone(),
            target: None,
        };
        let (mesh, to) = super::target::unqualify_option(self.to.as_deref(), self.mesh.as_deref())?;
        let created = with_client(mesh.as_deref(), async |client: &MeshClient| {
            let target = match to.as_deref() {
                None => None,
                Some(t) => Some(super::target::one_spec(client, t).await?),
            };
            Ok(client.watch(Watch { target, ..watch }).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({
                "watchId": created.watch_id,
                "url": created.url,
                "mode": created.mode,
                "interval": created.interval,
            }));
        } else {
            outln!(
                "watch {}: {} ({}, every {}s)",
                created.watch_id,
                created.url,
                created.mode,
                created.interval
            );
        }
        Ok(())
    }

    async fn list(&self) -> CliResult {
        let watches = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.watches().await?)
        })
        .await?;
        output::list(self.json, "watches", &watches, "no watches", entry_line);
        Ok(())
    }

    async fn remove(&self, id: &str) -> CliResult {
        with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.unwatch(id).await?)
        })
        .await?;
        if self.json {
            print_json(&json!({ "watchId": id, "removed": true }));
        } else {
            outln!("removed watch {id}");
        }
        Ok(())
    }
}
