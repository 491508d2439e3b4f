//! `claudemesh completions bash|zsh|fish`: a completion script generated from argh's own
//! metadata of every command (`ArgsInfo`) by `argh_complete`, so it cannot drift from the parser.

use argh::{ArgsInfo, FromArgs};
use argh_complete::Generator;

use super::output;
use super::{Cli, CliError, CliResult};

#[derive(FromArgs, ArgsInfo)]
#[argh(subcommand, name = "completions", help_triggers("-h", "--help"))]
#[argh(
    example = "claudemesh completions bash > ~/.local/share/bash-completion/completions/claudemesh"
)]
#[argh(example = "claudemesh completions zsh > \"${{fpath[1]}}/_claudemesh\"")]
#[argh(example = "claudemesh completions fish > ~/.config/fish/completions/claudemesh.fish")]
/// print a shell completion script: bash, zsh or fish
pub struct CompletionsCmd {
    /// bash, zsh or fish
    #[argh(positional)]
    shell: String,
}

impl CompletionsCmd {
    pub fn run(self) -> CliResult {
        output::ours(script(&self.shell)?.trim_end());
        Ok(())
    }
}

/// The completion script for `shell`.
pub fn script(shell: &str) -> Result<String, CliError> {
    let info = Cli::get_args_info();
    Ok(match shell {
        "bash" => argh_complete::bash::Bash::generate("claudemesh", &info),
        "zsh" => argh_complete::zsh::Zsh::generate("claudemesh", &info),
        // argh_complete asks fish for `commandline -xpc`, which fish learnt in 3.8; `-opc` is the
        // same on every fish from 3.0 on (Debian 12 ships 3.6, where `-x` fails at each TAB).
        "fish" => argh_complete::fish::Fish::generate("claudemesh", &info)
            .replace("commandline -xpc", "commandline -opc"),
        other => {
            return Err(CliError::Usage(format!(
                "no completions for \"{other}\": say bash, zsh or fish"
            )));
        }
    })
}
