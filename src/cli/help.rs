//! What the command line says before any command runs: the version, the command list a bare
//! `claudemesh` shows, `claudemesh help <command>`, and usage errors that name the fix ("did
//! you mean …?"). Everything here reads argh's own metadata of the commands (`ArgsInfo`), so a
//! new command is listed, suggested and completed without being named here.

use argh::{ArgsInfo, CommandInfoWithArgs, FromArgs};

use super::Cli;
use super::output;

/// `claudemesh --version`.
pub fn version() -> String {
    format!("claudemesh {}", env!("CARGO_PKG_VERSION"))
}

/// `claudemesh help [command…]` is `claudemesh [command…] --help`. The word `help` is not a help
/// trigger inside commands, so that `send bob can you help` sends it.
pub fn rewrite_help_word(mut args: Vec<&str>) -> Vec<&str> {
    if args.first() == Some(&"help") {
        args.remove(0);
        args.push("--help");
    }
    args
}

/// The top-level help: usage, options and every command with its one-line description.
pub fn overview(name: &str) -> String {
    match Cli::from_args(&[name], &["--help"]) {
        Err(early) => early.output,
        Ok(_) => String::new(),
    }
}

/// A bare `claudemesh`: the command list on stderr, exit 2 (as `rg` without a pattern: a usage
/// error, and the list is what to do next).
pub fn bare(name: &str) -> i32 {
    for line in overview(name).trim_end().lines() {
        output::error(line);
    }
    output::error("");
    output::error(&format!(
        "Run `{name} <command> --help` for a command's options and an example."
    ));
    2
}

/// Prints argh's complaint about the arguments `args` as our usage error: one `error:` line,
/// what we guess was meant, and the help to read. Returns the exit code (2).
pub fn usage_error(name: &str, args: &[&str], argh_output: &str) -> i32 {
    let (path, node) = command_path(args);
    let mut lines = argh_output.trim_end().lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let command = std::iter::once(name)
        .chain(path.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    match unrecognized(first) {
        // A word past a command's last positional argument: most often a value with spaces
        // that was not quoted (`state set note hello world`).
        Some(given) if !given.starts_with('-') && node.commands.is_empty() => {
            output::error(&format!(
                "error: `{command}` takes no further argument \"{given}\"; put a value that has spaces in quotes"
            ));
        }
        Some(given) => {
            let what = if given.starts_with('-') {
                "flag"
            } else {
                "command"
            };
            let mut line = format!("error: `{command}` has no {what} \"{given}\"");
            if let Some(guess) = did_you_mean(given, &node) {
                line.push_str(&format!("; did you mean \"{guess}\"?"));
            } else if what == "flag" && !node.positionals.is_empty() {
                // `send bob -1 is wrong`: a word of the text that looks like a flag.
                line.push_str(&format!(
                    "; if it is text, put `--` before it (`{command} -- {given} …`)"
                ));
            }
            output::error(&line);
        }
        None => output::error(&format!("error: {first}")),
    }
    for line in lines {
        output::error(line);
    }
    output::error(&format!("Run `{command} --help` for usage."));
    2
}

/// `Unrecognized argument: X` (argh's wording) → `X`.
fn unrecognized(line: &str) -> Option<&str> {
    let given = line.strip_prefix("Unrecognized argument: ")?;
    Some(given.trim_matches('"'))
}

/// The commands named at the start of `args` (`state get …` → `[state, get]`) and the metadata
/// of the last one.
fn command_path<'a>(args: &[&'a str]) -> (Vec<&'a str>, CommandInfoWithArgs) {
    let mut node = Cli::get_args_info();
    let mut path = Vec::new();
    for arg in args {
        let Some(sub) = node.commands.iter().position(|c| c.name == *arg) else {
            break;
        };
        node = node.commands.swap_remove(sub).command;
        path.push(*arg);
    }
    (path, node)
}

/// The subcommand (or, for `-…`, the flag) of `node` closest to what was typed, if one is
/// close enough to be a typo rather than something else.
fn did_you_mean(given: &str, node: &CommandInfoWithArgs) -> Option<String> {
    let candidates: Vec<&str> = if given.starts_with('-') {
        node.flags
            .iter()
            .filter(|f| !f.long.is_empty())
            .map(|f| f.long)
            .collect()
    } else {
        node.commands.iter().map(|c| c.name).collect()
    };
    // Close means one slip (a swapped, missing or extra letter: `gte`, `peer`) or a similar
    // spelling (`membres`); of those, the fewest edits, then the most alike, wins.
    candidates
        .into_iter()
        .map(|c| {
            let edits = strsim::damerau_levenshtein(given, c);
            (edits, strsim::jaro_winkler(given, c), c)
        })
        .filter(|(edits, similar, _)| *edits <= 1 || *similar >= 0.8)
        .min_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)))
        .map(|(_, _, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guess(args: &[&str], given: &str) -> Option<String> {
        did_you_mean(given, &command_path(args).1)
    }

    #[test]
    fn typos_of_commands_and_flags_are_guessed() {
        assert_eq!(guess(&[], "sned").as_deref(), Some("send"));
        assert_eq!(guess(&[], "peer").as_deref(), Some("peers"));
        assert_eq!(guess(&["state"], "gte").as_deref(), Some("get"));
        assert_eq!(guess(&["peers"], "--jsno").as_deref(), Some("--json"));
        assert_eq!(guess(&[], "xyzzy"), None);
    }

    #[test]
    fn help_word_becomes_the_flag() {
        assert_eq!(
            rewrite_help_word(vec!["help", "state", "get"]),
            ["state", "get", "--help"]
        );
        assert_eq!(
            rewrite_help_word(vec!["send", "bob", "help"]),
            ["send", "bob", "help"]
        );
    }
}
