//! What a person sees: their inbox, the messages pushed to a live client, the member list.

use std::time::Duration;

use serde_json::Value;

use claudemesh::client::MeshClient;
use claudemesh::protocol::ServerMessage;
use claudemesh::protocol::messages::Push;

use super::Person;

/// Every line of `inbox --json` as a value.
pub fn inbox(person: &Person, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["inbox", "--json"];
    args.extend_from_slice(extra);
    let out = person.run(&args);
    assert_eq!(out.code, 0, "inbox failed: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("inbox prints JSON lines"))
        .collect()
}

pub fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["text"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The next message push (system events skipped) within `wait`, if any.
pub async fn next_message(client: &MeshClient, wait: Duration) -> Option<Push> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, client.next_push()).await {
            Ok(Some(ServerMessage::Push(p))) if p.subtype.as_deref() != Some("system") => {
                return Some(*p);
            }
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => return None,
        }
    }
}

/// How many members `members --json` lists.
pub fn member_count(person: &Person) -> usize {
    person.json(&["members", "--json"])["members"]
        .as_array()
        .unwrap()
        .len()
}
