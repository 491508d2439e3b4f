//! The command line itself, run as a person would (issue 11, "a command line people trust"):
//! version, the command list, "did you mean", help with an example on every command, shell
//! completions, unquoted messages, `mesh:peer` targets, errors that say what to do, exit codes,
//! and the broker's log lines.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use common::*;

/// Runs the binary with no config of its own beyond `env`, outside any mesh.
fn bare_run(args: &[&str], env: &[(&str, &Path)]) -> CmdOutput {
    let scratch = tempfile::tempdir().expect("temp dir");
    let out = Command::new(BIN)
        .args(args)
        .env("CLAUDEMESH_CONFIG_DIR", scratch.path().join("config"))
        .env("CLAUDEMESH_DATA_DIR", scratch.path().join("data"))
        .env_remove("CLAUDEMESH_BROKER_URL")
        .env_remove("CLAUDEMESH_ADMIN_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .expect("run claudemesh");
    CmdOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> CmdOutput {
    bare_run(args, &[])
}

/// The `Commands:` section of a help page: (name, one-line description).
fn commands_of(help: &str) -> Vec<(String, String)> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| {
            let (name, description) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            (name.to_string(), description.trim().to_string())
        })
        .collect()
}

#[test]
fn version_is_printed_with_dash_v_and_double_dash_version() {
    for flag in ["--version", "-V"] {
        let out = run(&[flag]);
        assert_eq!(out.code, 0, "{flag}: {}", out.stderr);
        assert_eq!(
            out.stdout,
            format!("claudemesh {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
        assert_eq!(out.stderr, "");
    }
}

/// A bare `claudemesh` is a usage error (exit 2, as `rg` without a pattern) that shows every
/// command with its one-line description on stderr; `-h`, `--help` and `help` show the same
/// on stdout with exit 0.
#[test]
fn bare_claudemesh_lists_the_commands_with_descriptions() {
    let bare = run(&[]);
    assert_eq!(bare.code, 2, "{}", bare.stderr);
    assert_eq!(bare.stdout, "");
    let commands = commands_of(&bare.stderr);
    let names: Vec<&str> = commands.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "broker",
        "create",
        "join",
        "send",
        "inbox",
        "state",
        "completions",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    for (name, description) in &commands {
        assert!(!description.is_empty(), "{name} has no description");
    }
    assert!(
        bare.stderr.contains("Run `claudemesh <command> --help`"),
        "{}",
        bare.stderr
    );
    for help in ["-h", "--help", "help"] {
        let out = run(&[help]);
        assert_eq!(out.code, 0, "{help}: {}", out.stderr);
        assert_eq!(commands_of(&out.stdout), commands, "{help}");
        assert!(out.stdout.contains("-V, --version"), "{}", out.stdout);
    }
}

#[test]
fn typos_get_a_did_you_mean() {
    for (args, guess) in [
        (&["sned", "bob", "hi"][..], "did you mean \"send\"?"),
        (&["membres"], "did you mean \"members\"?"),
        (&["state", "gte", "key"], "did you mean \"get\"?"),
        (&["peers", "--jsno"], "did you mean \"--json\"?"),
        (&["completion", "bash"], "did you mean \"completions\"?"),
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(guess), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("--help` for usage"), "{}", out.stderr);
    }
    // Nothing close: no wild guess, but still what was wrong and where to look.
    let out = run(&["xyzzy"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("error: `claudemesh` has no command \"xyzzy\""),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("did you mean"), "{}", out.stderr);
    // A word past the last argument is a value that was not quoted, not a command.
    let out = run(&["state", "set", "note", "hello", "world"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`claudemesh state set` takes no further argument \"world\"")
            && out.stderr.contains("quotes"),
        "{}",
        out.stderr
    );
}

/// Every command and subcommand, found by walking the help pages themselves, answers `--help`
/// and `-h` with exit 0 and at least one example that starts with `claudemesh`.
#[test]
fn every_command_has_help_with_an_example() {
    let mut pending: Vec<Vec<String>> = commands_of(&run(&["--help"]).stdout)
        .into_iter()
        .map(|(name, _)| vec![name])
        .collect();
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        seen += 1;
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = run(&args);
        let what = path.join(" ");
        assert_eq!(out.code, 0, "`{what} --help`: {}", out.stderr);
        let examples: Vec<&str> = out
            .stdout
            .lines()
            .skip_while(|l| l.trim_end() != "Examples:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(
            examples
                .iter()
                .any(|e| e.trim().starts_with("claudemesh ") || e.contains("| claudemesh ")),
            "`claudemesh {what} --help` has no example:\n{}",
            out.stdout
        );
        args.pop();
        args.push("-h");
        assert_eq!(run(&args).stdout, out.stdout, "`{what} -h`");
        for (sub, _) in commands_of(&out.stdout) {
            let mut deeper = path.clone();
            deeper.push(sub);
            pending.push(deeper);
        }
    }
    assert!(seen > 50, "only {seen} commands found");
    // `help <command>` is `<command> --help`.
    assert_eq!(
        run(&["help", "state", "get"]).stdout,
        run(&["state", "get", "--help"]).stdout
    );
}

/// The scripts of `claudemesh completions` parse in their shells, and bash's completes.
#[test]
fn completions_are_valid_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("claudemesh"), "{shell}");
        assert!(out.stdout.contains("msg-status"), "{shell}");
        let script = dir.path().join(format!("claudemesh.{shell}"));
        std::fs::write(&script, &out.stdout).unwrap();
        let check = Command::new(shell).arg("-n").arg(&script).output();
        match check {
            Err(e) => skip_unless_strict(&format!("{shell} is not installed ({e})")),
            Ok(check) => assert!(
                check.status.success(),
                "{shell} -n rejects the script: {}",
                String::from_utf8_lossy(&check.stderr)
            ),
        }
    }
    // bash: what `claudemesh sen<TAB>` and `claudemesh state <TAB>` offer.
    let script = dir.path().join("claudemesh.bash");
    let complete = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _claudemesh; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("claudemesh sen"), "send");
    let state: Vec<String> = complete("claudemesh state ''")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for sub in ["get", "set", "list"] {
        assert!(state.contains(&sub.to_string()), "{state:?}");
    }

    // fish: the same, through fish's own `complete -C`, with the script sourced.
    let fish = dir.path().join("claudemesh.fish");
    match Command::new("fish")
        .args([
            "-c",
            &format!("source {}; complete -C 'claudemesh sen'", fish.display()),
        ])
        .output()
    {
        Err(e) => skip_unless_strict(&format!("fish is not installed ({e})")),
        Ok(out) => {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            let head: String = stderr.chars().take(400).collect();
            assert!(stderr.is_empty(), "fish complained: {head}");
            let offered = String::from_utf8_lossy(&out.stdout);
            assert!(offered.lines().any(|l| l.starts_with("send")), "{offered}");
        }
    }

    // zsh: the script registers its function with compinit, one function per command.
    let zsh = dir.path().join("claudemesh.zsh");
    let probe = format!(
        "autoload -U compinit; compinit -u -d {}/zcompdump; source {}; \
         print -r -- $_comps[claudemesh]; whence -w _claudemesh_state_get",
        dir.path().display(),
        zsh.display()
    );
    match Command::new("zsh").args(["-c", &probe]).output() {
        Err(e) => skip_unless_strict(&format!("zsh is not installed ({e})")),
        Ok(out) => assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "_claudemesh\n_claudemesh_state_get: function\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }

    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("bash, zsh or fish"), "{}", out.stderr);
}

/// `send bob hello world`: the words after the target are one message, and a word such as
/// `help` in it is text, not a request for help.
#[tokio::test(flavor = "multi_thread")]
async fn send_without_quotes_arrives_as_one_message() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    let out = alice.run(&["send", "bob", "hello", "world,", "can", "you", "help?"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("sent to bob"), "{}", out.stdout);
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let texts: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].to_string())
        .collect();
    assert_eq!(texts, ["\"hello world, can you help?\""]);
    // A word that looks like a flag: the error says how to send it; `--` does.
    let out = alice.run(&["send", "bob", "-1", "is", "wrong"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("put `--` before it"), "{}", out.stderr);
    let out = alice.run(&["send", "bob", "--", "-1", "is", "wrong"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = bob.run(&["inbox", "--json"]);
    assert!(out.stdout.contains("\"-1 is wrong\""), "{}", out.stdout);
    // No words at all is a usage error.
    let out = alice.run(&["send", "bob"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// `send team:bob …` picks mesh `team` from the config among several joined meshes.
#[tokio::test(flavor = "multi_thread")]
async fn a_mesh_qualified_target_picks_the_mesh() {
    let broker = BrokerProc::start(&[]);
    let (alice, bob) = alice_and_bob(&broker);
    create_mesh(&broker, &alice, "ops");
    let team = alice
        .config()
        .meshes
        .iter()
        .find(|m| m.name == "team")
        .unwrap()
        .slug
        .clone();

    let out = alice.run(&["send", "bob", "which", "mesh?"]);
    assert_eq!(out.code, 1, "several meshes and no --mesh: {}", out.stderr);
    for to in ["team:bob", &format!("{team}:bob")] {
        let out = alice.run(&["send", to, "from", "the", "command", "line"]);
        assert_eq!(out.code, 0, "{to}: {}", out.stderr);
    }
    let out = bob.run(&["inbox", "--json"]);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(out.stdout.contains("from the command line"));
    // `--to` of reminders and files takes the same form.
    let out = alice.run(&[
        "remind", "stand-up", "--in", "1h", "--to", "team:bob", "--json",
    ]);
    assert_eq!(out.code, 0, "remind --to team:bob: {}", out.stderr);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "notes").unwrap();
    let path = file.path().to_str().unwrap();
    let out = alice.run(&["file", "share", path, "--to", "team:bob", "--json"]);
    assert_eq!(out.code, 0, "file share --to team:bob: {}", out.stderr);
    // The qualifier and --mesh disagree: said, nothing sent.
    let out = alice.run(&["send", "team:bob", "hi", "--mesh", "ops"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("one message goes to one mesh"),
        "{}",
        out.stderr
    );
}

/// `bench` against a broker on this machine finds its admin token in the data dir, as `create`
/// does, or takes `--admin-token-file`; without either it says where the token is.
#[test]
fn bench_finds_the_local_admin_token() {
    let broker = BrokerProc::start(&[]);
    let bench = [
        "bench",
        "--broker",
        &broker.ws_url(),
        "--peers",
        "2",
        "--messages",
        "3",
        "--json",
    ];
    let out = bare_run(&bench, &[("CLAUDEMESH_DATA_DIR", broker.data_dir())]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["delivered"], 6, "{report}");
    assert_eq!(
        report["threads"], 1,
        "one load thread unless asked: {report}"
    );

    let token_file = broker.data_dir().join("admin.token");
    let mut with_file = bench.to_vec();
    with_file.extend(["--admin-token-file", token_file.to_str().unwrap()]);
    let out = run(&with_file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The same load in MessagePack frames, on two load threads.
    with_file.extend(["--msgpack", "--threads", "2"]);
    let out = run(&with_file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            &report["delivered"],
            &report["encoding"],
            &report["threads"]
        ),
        (&6.into(), &"msgpack".into(), &2.into()),
        "{report}"
    );
    let none = [&bench[..], &["--threads", "0"]].concat();
    let out = run(&none);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("needs at least 1"), "{}", out.stderr);

    let out = run(&bench);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--admin-token-file"), "{}", out.stderr);
}

/// A broker that is not there: the error says to start one, for `create` (HTTP) and for a
/// command on a joined mesh (WebSocket).
#[tokio::test(flavor = "multi_thread")]
async fn a_broker_that_is_down_gets_a_hint_to_start_it() {
    const HINT: &str = "is the broker running? start it with `claudemesh broker`";
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(&[
        "create",
        "team",
        "--broker",
        &format!("ws://127.0.0.1:{free_port}/ws"),
        "--admin-token",
        "x",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(HINT), "{}", out.stderr);

    let mut broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    broker.kill9();
    let out = alice.run(&["peers"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains(HINT), "{}", out.stderr);
}

/// Whatever the command, what the broker says is not there exits 3 (README: exit codes), and
/// the error still names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_for_something_not_there_exits_3() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    for args in [
        &["forget", "01JZZZZZZZZZZZZZZZZZZZZZZZ"][..],
        &["msg-status", "no-such-message"],
    ] {
        let out = alice.run(args);
        assert_eq!(out.code, 3, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("not_found"), "{args:?}: {}", out.stderr);
    }
    // A refusal of another kind stays a failure (1).
    let out = alice.run(&["send", "nobody-by-that-name", "hi"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// `state get` of a key that is not set exits 3 (documented in its help), with the JSON
/// document still on stdout under `--json`; a set key exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn state_get_of_a_missing_key_exits_3() {
    let broker = BrokerProc::start(&[]);
    let (alice, _bob) = alice_and_bob(&broker);
    let out = alice.run(&["state", "get", "nothing-here"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("nothing-here is not set"),
        "{}",
        out.stderr
    );
    let out = alice.run(&["state", "get", "nothing-here", "--json"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["value"], Value::Null);

    assert_eq!(alice.run(&["state", "set", "here", "yes"]).code, 0);
    assert_eq!(alice.run(&["state", "get", "here"]).code, 0);

    let help = run(&["state", "get", "--help"]).stdout;
    assert!(
        help.contains("Error codes:\n  3 the key is not set"),
        "{help}"
    );
}

/// A broker whose stderr is a pipe (a file, journald) writes no colour codes.
#[tokio::test(flavor = "multi_thread")]
async fn broker_logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let broker = BrokerProc::start(&[]);
    let _people = alice_and_bob(&broker);
    let lines = broker.stderr_lines();
    assert!(!lines.is_empty(), "the broker logged nothing");
    for line in &lines {
        assert!(!line.contains('\x1b'), "colour code in {line:?}");
    }
}

/// `--log-format json`: every log line is one JSON object with a timestamp, level and message.
#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_parse() {
    let broker = BrokerProc::start(&["--log-format", "json"]);
    let _people = alice_and_bob(&broker);
    let lines = broker.stderr_lines();
    assert!(!lines.is_empty(), "the broker logged nothing");
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for field in ["timestamp", "level", "message"] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
    }
    let out = run(&["broker", "--log-format", "xml"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("text or json"), "{}", out.stderr);
}

/// A retention of more than a century (a typo; a huge one would reach the end of the clock) or
/// of none at all is refused before the broker starts; a century itself is taken.
#[test]
fn a_retention_of_zero_or_past_a_century_is_refused() {
    for retention in ["0s", "101years", "500000000y"] {
        let scratch = tempfile::tempdir().expect("temp dir");
        let child = Command::new(BIN)
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--retention",
                retention,
            ])
            .env("CLAUDEMESH_DATA_DIR", scratch.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run claudemesh broker");
        // A broker that took the flag would run on: `finish` stops it at the bound and fails.
        let (status, stderr) = finish(child, &format!("broker --retention {retention}"));
        assert_eq!(status.code(), Some(2), "--retention {retention}: {stderr}");
        assert!(
            stderr.contains("--retention must be above 0 and at most 100 years"),
            "{stderr}"
        );
    }
    // A century exactly (humantime's years are 365.25 days) starts.
    drop(BrokerProc::start(&["--retention", "100y"]));
}
