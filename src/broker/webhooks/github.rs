//! One-line summaries of the GitHub events agents care about most (`X-GitHub-Event`: `push`,
//! `pull_request`, `workflow_run`). Other events, and fields missing from a payload, give no
//! summary or a shorter one; the payload itself always travels too.

use serde_json::Value;

/// The longest summary: the payload's fields (names, branches, titles) are the sender's to
/// choose, and a summary is one line.
const MAX_SUMMARY_CHARS: usize = 1000;

/// The summary of `event` with `payload`, if it is one of the normalised events.
pub fn summary(event: &str, p: &Value) -> Option<String> {
    let line = summary_line(event, p)?;
    Some(line.chars().take(MAX_SUMMARY_CHARS).collect())
}

fn summary_line(event: &str, p: &Value) -> Option<String> {
    let repo = p["repository"]["full_name"]
        .as_str()
        .unwrap_or("a repository");
    Some(match event {
        "push" => {
            let who = p["pusher"]["name"]
                .as_str()
                .or(p["sender"]["login"].as_str())
                .unwrap_or("someone");
            let branch = p["ref"].as_str().unwrap_or("?");
            let branch = branch
                .strip_prefix("refs/heads/")
                .or(branch.strip_prefix("refs/tags/"))
                .unwrap_or(branch);
            let n = p["commits"].as_array().map_or(0, Vec::len);
            let plural = if n == 1 { "" } else { "s" };
            let mut line = format!("{who} pushed {n} commit{plural} to {repo} {branch}");
            if let Some(msg) = p["head_commit"]["message"].as_str() {
                line.push_str(&format!(": {}", first_line(msg)));
            }
            line
        }
        "pull_request" => {
            let who = p["sender"]["login"].as_str().unwrap_or("someone");
            let action = match (p["action"].as_str(), p["pull_request"]["merged"].as_bool()) {
                (Some("closed"), Some(true)) => "merged",
                (Some(a), _) => a,
                (None, _) => "updated",
            };
            let number = p["number"]
                .as_u64()
                .or(p["pull_request"]["number"].as_u64())
                .map_or(String::new(), |n| format!(" #{n}"));
            let title = p["pull_request"]["title"]
                .as_str()
                .map_or(String::new(), |t| format!(" \"{}\"", first_line(t)));
            format!("{who} {action} pull request{number}{title} in {repo}")
        }
        "workflow_run" => {
            let run = &p["workflow_run"];
            let name = run["name"].as_str().unwrap_or("a workflow");
            let action = p["action"].as_str().unwrap_or("updated");
            let state = run["conclusion"]
                .as_str()
                .or(run["status"].as_str())
                .unwrap_or("unknown");
            let branch = run["head_branch"]
                .as_str()
                .map_or(String::new(), |b| format!(" on {b}"));
            format!("workflow \"{name}\" {action} ({state}){branch} in {repo}")
        }
        _ => return None,
    })
}

/// The first line, at most 200 characters.
fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn push_pull_request_and_workflow_run_read_as_one_line() {
        let push = json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "acme/api"},
            "pusher": {"name": "alice"},
            "commits": [{}, {}],
            "head_commit": {"message": "Fix the login bug\n\nLong body"},
        });
        assert_eq!(
            summary("push", &push).unwrap(),
            "alice pushed 2 commits to acme/api main: Fix the login bug"
        );
        let pr = json!({
            "action": "closed",
            "number": 42,
            "pull_request": {"title": "Add watches", "merged": true},
            "repository": {"full_name": "acme/api"},
            "sender": {"login": "bob"},
        });
        assert_eq!(
            summary("pull_request", &pr).unwrap(),
            "bob merged pull request #42 \"Add watches\" in acme/api"
        );
        let run = json!({
            "action": "completed",
            "workflow_run": {"name": "CI", "conclusion": "failure", "head_branch": "main"},
            "repository": {"full_name": "acme/api"},
        });
        assert_eq!(
            summary("workflow_run", &run).unwrap(),
            "workflow \"CI\" completed (failure) on main in acme/api"
        );
        assert_eq!(summary("star", &run), None);
    }
}
