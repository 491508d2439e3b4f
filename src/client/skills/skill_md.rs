//! The `SKILL.md` format Claude Code loads skills from: YAML front matter between `---` lines,
//! then the instructions in Markdown. Read when a skill is shared from a file, written when
//! one is installed or read as an MCP resource; and how a prompt's arguments fill the
//! instructions (`$ARGUMENTS`, `$ARGUMENTS[N]`, `$N`, `${name}`).

use serde::{Deserialize, Serialize};

use super::SkillError;
use crate::protocol::messages::{ShareSkill, SkillEntry};

/// A list written either as YAML list or as one comma-separated string (Claude Code's
/// `allowed-tools: Read, Grep`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Listed {
    One(String),
    Many(Vec<String>),
}

impl Listed {
    fn items(self) -> Vec<String> {
        let raw = match self {
            Listed::One(s) => s.split(',').map(str::to_string).collect(),
            Listed::Many(v) => v,
        };
        raw.into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The front matter as read: Claude Code's kebab-case names, with snake_case and camelCase
/// accepted too. Keys it does not know are ignored.
#[derive(Debug, Default, Deserialize)]
struct FrontIn {
    name: Option<String>,
    description: Option<String>,
    #[serde(alias = "when-to-use", alias = "whenToUse")]
    when_to_use: Option<String>,
    #[serde(
        rename = "allowed-tools",
        alias = "allowed_tools",
        alias = "allowedTools"
    )]
    allowed_tools: Option<Listed>,
    model: Option<String>,
    #[serde(
        rename = "argument-hint",
        alias = "argument_hint",
        alias = "argumentHint"
    )]
    argument_hint: Option<String>,
    #[serde(
        rename = "user-invocable",
        alias = "user_invocable",
        alias = "userInvocable"
    )]
    user_invocable: Option<bool>,
    context: Option<String>,
    agent: Option<String>,
    tags: Option<Listed>,
}

/// The front matter as written (what Claude Code reads).
#[derive(Serialize)]
struct FrontOut<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    when_to_use: Option<&'a str>,
    #[serde(rename = "allowed-tools", skip_serializing_if = "Option::is_none")]
    allowed_tools: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(rename = "argument-hint", skip_serializing_if = "Option::is_none")]
    argument_hint: Option<&'a str>,
    #[serde(rename = "user-invocable", skip_serializing_if = "Option::is_none")]
    user_invocable: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    /// Where it came from: the mesh's version.
    version: u32,
}

/// Splits `---\nyaml\n---\nbody` into the YAML and the body; `None` without front matter.
fn split_front(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))?;
    // The closing line is `---` alone.
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..at], &rest[at + line.len()..]));
        }
        at += line.len();
    }
    None
}

/// Reads a SKILL.md. `default_name` names the skill when the front matter does not (Claude Code
/// takes the directory's name); a missing description is the body's first paragraph.
pub fn parse(text: &str, default_name: Option<&str>) -> Result<ShareSkill, SkillError> {
    let (front, body) = match split_front(text) {
        Some((yaml, body)) if yaml.trim().is_empty() => (FrontIn::default(), body),
        Some((yaml, body)) => {
            let front: FrontIn = serde_yaml_ng::from_str(yaml)
                .map_err(|e| SkillError::Format(format!("the front matter is not valid: {e}")))?;
            (front, body)
        }
        None => (FrontIn::default(), text),
    };
    let instructions = body.trim().to_string();
    if instructions.is_empty() {
        return Err(SkillError::Format(
            "the skill has no instructions after its front matter".into(),
        ));
    }
    let name = front
        .name
        .or_else(|| default_name.map(str::to_string))
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            SkillError::Format("the skill has no name: add `name:` to its front matter".into())
        })?;
    let description = front
        .description
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| first_paragraph(&instructions));
    Ok(ShareSkill {
        name: name.trim().to_string(),
        description: description.trim().to_string(),
        instructions,
        tags: front.tags.map(Listed::items),
        when_to_use: front.when_to_use,
        allowed_tools: front.allowed_tools.map(Listed::items),
        model: front.model,
        argument_hint: front.argument_hint,
        user_invocable: front.user_invocable,
        context: front.context,
        agent: front.agent,
        bundle: None,
    })
}

fn first_paragraph(body: &str) -> String {
    let para: Vec<&str> = body
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    para.join(" ").chars().take(1024).collect()
}

/// The SKILL.md of a skill (its instructions must be present).
pub fn render(skill: &SkillEntry) -> String {
    let front = FrontOut {
        name: &skill.name,
        description: &skill.description,
        when_to_use: skill.when_to_use.as_deref(),
        allowed_tools: (!skill.allowed_tools.is_empty()).then(|| skill.allowed_tools.join(", ")),
        model: skill.model.as_deref(),
        argument_hint: skill.argument_hint.as_deref(),
        user_invocable: skill.user_invocable,
        context: skill.context.as_deref(),
        agent: skill.agent.as_deref(),
        tags: &skill.tags,
        version: skill.version,
    };
    // Serialising plain strings and lists cannot fail; an empty front matter would still load.
    let yaml = serde_yaml_ng::to_string(&front).unwrap_or_default();
    format!(
        "---\n{yaml}---\n\n{}\n",
        skill.instructions.as_deref().unwrap_or("").trim_end()
    )
}

/// One argument a skill's prompt takes: its name and whether it is required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptArg {
    pub name: String,
    pub required: bool,
}

/// The arguments an `argument-hint` names: `<file>` is required, `[issue] [priority]` or a bare
/// word optional. Without a hint, one optional argument `arguments`.
pub fn prompt_args(hint: Option<&str>) -> Vec<PromptArg> {
    let mut out: Vec<PromptArg> = Vec::new();
    for word in hint.unwrap_or("").split_whitespace() {
        let required = word.starts_with('<');
        let name: String = word
            .trim_matches(|c| matches!(c, '<' | '>' | '[' | ']'))
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_'))
            .collect();
        if !name.is_empty() && !out.iter().any(|a| a.name == name) {
            out.push(PromptArg { name, required });
        }
    }
    if out.is_empty() {
        out.push(PromptArg {
            name: "arguments".into(),
            required: false,
        });
    }
    out
}

/// The instructions with the arguments filled in, as Claude Code fills a skill's:
/// `$ARGUMENTS` is all of them (in the hint's order, space-separated), `$ARGUMENTS[N]` and `$N`
/// the N-th (from 0), `${name}` the named one. Instructions that use none get the arguments
/// appended as `ARGUMENTS: …`.
pub fn fill(instructions: &str, args: &[(String, String)]) -> String {
    let given: Vec<&str> = args
        .iter()
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
        .collect();
    let all = given.join(" ");
    let mut out = String::with_capacity(instructions.len() + all.len());
    let mut used = false;
    let mut rest = instructions;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        if let Some(after) = tail.strip_prefix("ARGUMENTS") {
            used = true;
            if let Some((n, after_index)) = index(after) {
                out.push_str(given.get(n).copied().unwrap_or(""));
                rest = after_index;
            } else {
                out.push_str(&all);
                rest = after;
            }
        } else if let Some(end) = tail.strip_prefix('{').and_then(|t| t.find('}')) {
            let key = &tail[1..=end];
            match args.iter().find(|(k, _)| k == key) {
                Some((_, v)) => {
                    used = true;
                    out.push_str(v);
                }
                None => out.push_str(&rest[at..at + end + 3]),
            }
            rest = &tail[end + 2..];
        } else if let Some(digits) = leading_digits(tail) {
            used = true;
            let n: usize = tail[..digits].parse().unwrap_or(usize::MAX);
            out.push_str(given.get(n).copied().unwrap_or(""));
            rest = &tail[digits..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    if !used && !all.is_empty() {
        out.push_str(&format!("\n\nARGUMENTS: {all}"));
    }
    out
}

/// `[N]` at the start: N and what follows.
fn index(s: &str) -> Option<(usize, &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    let n = inner[..close].parse().ok()?;
    Some((n, &inner[close + 1..]))
}

fn leading_digits(s: &str) -> Option<usize> {
    let n = s.chars().take_while(char::is_ascii_digit).count();
    (n > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_claude_code_front_matter() {
        let md = "---\nname: fix-issue\ndescription: Fix a GitHub issue\nallowed-tools: Read, Grep, Bash(git:*)\nargument-hint: \"<issue> [priority]\"\nuser-invocable: true\ntags: [github, bugs]\nunknown-key: 1\n---\n\nFix issue $0 with priority $1.\n";
        let s = parse(md, None).unwrap();
        assert_eq!(s.name, "fix-issue");
        assert_eq!(s.description, "Fix a GitHub issue");
        assert_eq!(s.allowed_tools.unwrap(), ["Read", "Grep", "Bash(git:*)"]);
        assert_eq!(s.tags.unwrap(), ["github", "bugs"]);
        assert_eq!(s.user_invocable, Some(true));
        assert_eq!(s.instructions, "Fix issue $0 with priority $1.");
        let args = prompt_args(s.argument_hint.as_deref());
        assert_eq!(
            args[0],
            PromptArg {
                name: "issue".into(),
                required: true
            }
        );
        assert_eq!(
            args[1],
            PromptArg {
                name: "priority".into(),
                required: false
            }
        );
    }

    #[test]
    fn defaults_and_errors() {
        let s = parse("# Deploy\nShip the app.\n\nMore.", Some("deploy")).unwrap();
        assert_eq!(
            (s.name.as_str(), s.description.as_str()),
            ("deploy", "Deploy Ship the app.")
        );
        assert!(parse("---\nname: x\n---\n", None).is_err());
        assert!(parse("---\nname: [unclosed\n---\nbody", None).is_err());
        assert!(parse("body only", None).is_err(), "no name");
    }

    #[test]
    fn fills_arguments() {
        let args = vec![
            ("issue".to_string(), "42".to_string()),
            ("priority".to_string(), "high".to_string()),
        ];
        assert_eq!(
            fill("Fix $0 ($1): $ARGUMENTS", &args),
            "Fix 42 (high): 42 high"
        );
        assert_eq!(fill("Fix $ARGUMENTS[1] ${issue} $5", &args), "Fix high 42 ");
        assert_eq!(
            fill("Costs $ and ${nope}", &args),
            "Costs $ and ${nope}\n\nARGUMENTS: 42 high"
        );
        assert_eq!(fill("Plain.", &[]), "Plain.");
    }

    #[test]
    fn renders_what_it_reads() {
        let entry = SkillEntry {
            name: "review".into(),
            version: 3,
            description: "Review: a PR".into(),
            instructions: Some("Read the diff.".into()),
            tags: vec!["code".into()],
            when_to_use: None,
            allowed_tools: vec!["Read".into(), "Grep".into()],
            model: None,
            argument_hint: Some("[pr]".into()),
            user_invocable: None,
            context: None,
            agent: None,
            bundle: None,
            author: "alice".into(),
            created_at: String::new(),
            score: None,
        };
        let md = render(&entry);
        let back = parse(&md, None).unwrap();
        assert_eq!(back.name, "review");
        assert_eq!(back.description, "Review: a PR");
        assert_eq!(back.allowed_tools.unwrap(), ["Read", "Grep"]);
        assert_eq!(back.instructions, "Read the diff.");
    }
}
