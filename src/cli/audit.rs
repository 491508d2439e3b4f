//! The audit log (README "Governance"): `audit [--since …] [--event …]` and `audit verify`.

use argh::{ArgsInfo, FromArgs};

use super::output::outln;
use super::{CliError, CliResult, print_json, with_client};
use crate::client::MeshClient;
use crate::protocol::messages::{AuditEntry, AuditQuery, AuditVerifyResult};
use crate::protocol::time;

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "audit", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh audit --since 1h")]
#[argh(example = "claudemesh audit --event member.revoked --json")]
#[argh(example = "claudemesh audit verify")]
/// the mesh's audit log: who changed what (owner and admins)
pub struct AuditCmd {
    #[argh(subcommand)]
    action: Option<AuditAction>,
    /// only entries since then: a duration back from now (30m, 1h, 7d) or an ISO-8601 time
    #[argh(option)]
    since: Option<String>,
    /// only this event type (member.joined, state.set, task.claimed, …)
    #[argh(option)]
    event: Option<String>,
    /// the newest N entries (default 100, at most 500)
    #[argh(option)]
    limit: Option<usize>,
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {entries: [...oldest first], total}
    #[argh(switch)]
    json: bool,
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand)]
enum AuditAction {
    Verify(AuditVerifyCmd),
}

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "verify", help_triggers("-h", "--help"))]
#[argh(example = "claudemesh audit verify")]
#[argh(error_code(
    1,
    "the chain is broken (the first broken record is named) or the broker could not be asked"
))]
/// recompute the audit chain; name the first broken record
struct AuditVerifyCmd {
    /// mesh slug or id (needed when several are joined)
    #[argh(option)]
    mesh: Option<String>,
    /// print JSON: {valid, entries, firstId, brokenAt?, brokenEvent?, reason?, headHash?}
    #[argh(switch)]
    json: bool,
}

/// `--since`: a duration back from now, or an ISO-8601 time; the ISO form the wire takes.
pub(super) fn since_iso(given: &str) -> Result<String, CliError> {
    if let Ok(back) = time::parse_duration(given) {
        let ms = i64::try_from(back.as_millis()).unwrap_or(i64::MAX);
        return Ok(time::iso(time::now_ms().saturating_sub(ms)));
    }
    match time::parse_iso(given) {
        Some(ms) => Ok(time::iso(ms)),
        None => Err(CliError::Usage(format!(
            "--since takes a duration (30m, 1h, 7d) or an ISO-8601 time, not \"{given}\""
        ))),
    }
}

fn metadata(e: &AuditEntry) -> String {
    e.payload
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_entries(entries: &[AuditEntry], total: u64) {
    outln!(
        "{:<5}  {:<24}  {:<14}  {:<18}  METADATA",
        "SEQ",
        "TIME",
        "ACTOR",
        "EVENT"
    );
    for e in entries {
        outln!(
            "{:<5}  {:<24}  {:<14}  {:<18}  {}",
            e.id,
            e.created_at,
            e.actor,
            e.event_type,
            metadata(e)
        );
    }
    if total > entries.len() as u64 {
        outln!(
            "({} of {total} entries; --limit or --since show others)",
            entries.len()
        );
    }
}

/// What a broken chain is called, for people.
fn broken_sentence(v: &AuditVerifyResult) -> String {
    let at = v.broken_at.unwrap_or_default();
    let what = match v.broken_event.as_deref() {
        Some(event) => format!("record {at} ({event})"),
        None => format!("record {at}"),
    };
    let why = match v.reason.as_deref() {
        Some("hash_mismatch") => "its contents do not match its hash (edited)",
        Some("broken_link") => "it does not link to the record before it",
        Some("missing") => "it is missing (deleted)",
        Some("unreadable") => "its stored bytes do not read as a record",
        _ => "it does not verify",
    };
    format!(
        "the audit chain is broken at {what}: {why}; {} records before it verify",
        v.entries
    )
}

impl AuditCmd {
    pub async fn run(self) -> CliResult {
        if let Some(AuditAction::Verify(v)) = self.action {
            return verify(v).await;
        }
        let query = AuditQuery {
            limit: self.limit,
            offset: None,
            event_type: self.event.clone(),
            since: self.since.as_deref().map(since_iso).transpose()?,
        };
        let mut result = with_client(self.mesh.as_deref(), async |client: &MeshClient| {
            Ok(client.audit_query(query).await?)
        })
        .await?;
        // The broker answers newest first; a log reads oldest first.
        result.entries.reverse();
        if self.json {
            print_json(&result);
        } else if result.entries.is_empty() {
            outln!("no audit entries");
        } else {
            print_entries(&result.entries, result.total);
        }
        Ok(())
    }
}

async fn verify(c: AuditVerifyCmd) -> CliResult {
    let v = with_client(c.mesh.as_deref(), async |client: &MeshClient| {
        Ok(client.audit_verify().await?)
    })
    .await?;
    if c.json {
        print_json(&v);
    } else if v.valid {
        let from = if v.first_id > 1 {
            format!(
                " (from record {}; older ones were dropped at the cap)",
                v.first_id
            )
        } else {
            String::new()
        };
        outln!(
            "the audit chain verifies: {} records{from}, head {}",
            v.entries,
            v.head_hash.as_deref().unwrap_or("(empty)")
        );
    }
    if v.valid {
        Ok(())
    } else {
        Err(CliError::failed(broken_sentence(&v)))
    }
}
