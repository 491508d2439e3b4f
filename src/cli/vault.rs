//! The vault (README "Vault"): `vault set|list|get|delete`. A value is never an argument (any
//! user of the machine can read a process's argv): it comes from stdin or a file, and is
//! encrypted here before it leaves.

use std::io::Read;

use argh::{ArgsInfo, FromArgs};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::output::{self, outln, raw};
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::client::vault::VaultOptions;
use crate::protocol::messages::{MAX_VAULT_VALUE_BYTES, VaultEntryType, VaultListEntry};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "vault", help_triggers("-h", "--help"))]
#[argh(example = "printf %s \"$TOKEN\" | claudemesh vault set GITHUB_TOKEN --value-stdin")]
#[argh(
    example = "claudemesh vault set TLS_KEY --file key.pem --type file --mount /run/secrets/tls.key"
)]
#[argh(example = "claudemesh vault list")]
/// your secrets for services deployed on the broker: only you can read them back
pub struct VaultCmd {
    #[argh(subcommand)]
    action: VaultAction,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum VaultAction {
    Set(VaultSetCmd),
    List(VaultListCmd),
    Get(VaultGetCmd),
    Delete(VaultDeleteCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "set", help_triggers("-h", "--help"))]
#[argh(example = "printf %s \"$TOKEN\" | claudemesh vault set GITHUB_TOKEN --value-stdin")]
#[argh(
    example = "claudemesh vault set TLS_KEY --file key.pem --type file --mount /run/secrets/tls.key"
)]
/// encrypt a value and store it under KEY (the value comes from stdin or a file, never argv)
struct VaultSetCmd {
    /// the key: letters, digits and _, like an environment variable name
    #[argh(positional)]
    key: String,
    /// read the value from stdin (for type env, one trailing newline is dropped)
    #[argh(switch)]
    value_stdin: bool,
    /// read the value from this file (exactly its bytes)
    #[argh(option)]
    file: Option<String>,
    /// how a deployed service gets it: env (an environment variable, the default) or file
    #[argh(option, long = "type", default = "String::from(\"env\")")]
    entry_type: String,
    /// where a file entry is mounted in the service's sandbox (absolute, e.g. /run/secrets/x)
    #[argh(option)]
    mount: Option<String>,
    /// a note shown by `vault list`
    #[argh(option)]
    description: Option<String>,
    /// do not seal it to the broker's service key: only you can read it, no deployed service
    #[argh(switch)]
    no_services: bool,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {key, action}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "list", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vault list --json")]
/// list your entries: keys and metadata, never values
struct VaultListCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {entries: [{key, entry_type, mount_path?, description?, updated_at, forServices}]}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "get", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vault get GITHUB_TOKEN > token.txt")]
#[argh(error_code(3, "you stored no entry of that name"))]
/// print one of your values exactly as stored (no newline added)
struct VaultGetCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {key, entryType, mountPath?, value | valueBase64}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "delete", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh vault delete GITHUB_TOKEN")]
#[argh(error_code(3, "you stored no entry of that name"))]
/// delete one of your entries
struct VaultDeleteCmd {
    /// the key
    #[argh(positional)]
    key: String,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {key, action}
    #[argh(switch)]
    json: bool,
}

/// The value, from stdin or a file, at most the vault's limit.
fn read_value(c: &VaultSetCmd, entry_type: VaultEntryType) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let limit = MAX_VAULT_VALUE_BYTES as u64 + 1;
    // Reserved up front: a growing Vec would leave copies of the secret in freed memory.
    let mut value = Zeroizing::new(Vec::with_capacity(limit as usize));
    let read = match (&c.file, c.value_stdin) {
        (Some(_), true) => {
            return Err(CliError::Usage(
                "give the value either with --file or with --value-stdin, not both".into(),
            ));
        }
        (Some(path), false) => std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut value))
            .map_err(|e| CliError::failed(format!("cannot read {path}: {e}")))?,
        (None, true) => std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut value)
            .map_err(|e| CliError::failed(format!("cannot read stdin: {e}")))?,
        (None, false) => {
            return Err(CliError::Usage(format!(
                "give the value on stdin (`… | claudemesh vault set {} --value-stdin`) or in a file (--file PATH); never as an argument, which other users of this machine can see",
                c.key
            )));
        }
    };
    if read as u64 >= limit {
        return Err(CliError::failed(format!(
            "the value is over {MAX_VAULT_VALUE_BYTES} bytes, the most a vault entry holds"
        )));
    }
    if entry_type == VaultEntryType::Env && c.file.is_none() {
        let newline = if value.ends_with(b"\r\n") {
            2
        } else {
            usize::from(value.ends_with(b"\n"))
        };
        let len = value.len() - newline;
        value.truncate(len);
    }
    Ok(value)
}

/// An entry as `vault list --json` prints it: in the camelCase of every other `--json` output
/// (`vault get --json` says `mountPath`), whatever the wire's field names (the original's
/// snake_case and our `forServices`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed<'a> {
    key: &'a str,
    entry_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mount_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    updated_at: &'a str,
    for_services: bool,
}

impl<'a> From<&'a VaultListEntry> for Listed<'a> {
    fn from(e: &'a VaultListEntry) -> Self {
        Listed {
            key: &e.key,
            entry_type: e.entry_type.as_str(),
            mount_path: e.mount_path.as_deref(),
            description: e.description.as_deref(),
            updated_at: &e.updated_at,
            for_services: e.for_services,
        }
    }
}

fn entry_line(e: &VaultListEntry) -> String {
    let mut line = format!("{}  {}", e.key, e.entry_type.as_str());
    if let Some(m) = &e.mount_path {
        line.push_str(&format!(" at {m}"));
    }
    if !e.for_services {
        line.push_str("  (not for services)");
    }
    line.push_str(&format!("  {}", e.updated_at));
    if let Some(d) = &e.description {
        line.push_str(&format!("  — {d}"));
    }
    line
}

impl VaultCmd {
    pub async fn run(self) -> CliResult {
        match self.action {
            VaultAction::Set(c) => {
                let entry_type = VaultEntryType::parse(&c.entry_type).ok_or_else(|| {
                    CliError::Usage(format!("--type is env or file, not \"{}\"", c.entry_type))
                })?;
                let value = read_value(&c, entry_type)?;
                let options = VaultOptions {
                    entry_type,
                    mount_path: c.mount.clone(),
                    description: c.description.clone(),
                    for_services: !c.no_services,
                };
                with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vault_set(&c.key, &value, options).await?)
                })
                .await?;
                if c.json {
                    print_json(&json!({ "key": c.key, "action": "stored" }));
                } else {
                    outln!("stored {} ({} bytes, encrypted)", c.key, value.len());
                }
            }
            VaultAction::List(c) => {
                let entries = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vault_list().await?)
                })
                .await?;
                if c.json {
                    let listed: Vec<Listed> = entries.iter().map(Listed::from).collect();
                    print_json(&json!({ "entries": listed }));
                } else {
                    output::list(false, "entries", &entries, "no vault entries", entry_line);
                }
            }
            VaultAction::Get(c) => {
                let found = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vault_get(&c.key).await?)
                })
                .await?;
                let Some(v) = found else {
                    return Err(CliError::NotFound(format!(
                        "you stored no vault entry \"{}\" (see `claudemesh vault list`)",
                        c.key
                    )));
                };
                if c.json {
                    // Serialised by hand into zeroed buffers: a serde_json::Value would keep
                    // copies of the secret that are never wiped.
                    let mut out = Zeroizing::new(String::with_capacity(256 + 6 * v.value.len()));
                    out.push_str(&format!(
                        "{{\"key\":{},\"entryType\":\"{}\"",
                        json!(v.key),
                        v.entry_type.as_str()
                    ));
                    if let Some(m) = &v.mount_path {
                        out.push_str(&format!(",\"mountPath\":{}", json!(m)));
                    }
                    match std::str::from_utf8(&v.value) {
                        Ok(text) => {
                            out.push_str(",\"value\":");
                            let mut quoted = Zeroizing::new(Vec::with_capacity(6 * text.len() + 2));
                            serde_json::to_writer(&mut *quoted, text)
                                .map_err(|e| CliError::failed(e.to_string()))?;
                            out.push_str(std::str::from_utf8(&quoted).unwrap_or_default());
                        }
                        Err(_) => {
                            let mut encoded = Zeroizing::new(String::with_capacity(
                                v.value.len().div_ceil(3) * 4,
                            ));
                            STANDARD.encode_string(&*v.value, &mut encoded);
                            out.push_str(",\"valueBase64\":\"");
                            out.push_str(&encoded);
                            out.push('"');
                        }
                    }
                    out.push_str("}\n");
                    raw(out.as_bytes());
                } else {
                    raw(&v.value);
                }
            }
            VaultAction::Delete(c) => {
                let deleted = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
                    Ok(client.vault_delete(&c.key).await?)
                })
                .await?;
                let action = if deleted { "deleted" } else { "not_found" };
                if c.json {
                    print_json(&json!({ "key": c.key, "action": action }));
                } else if deleted {
                    outln!("deleted {}", c.key);
                }
                if !deleted {
                    return Err(CliError::NotFound(format!(
                        "you stored no vault entry \"{}\"",
                        c.key
                    )));
                }
            }
        }
        Ok(())
    }
}
