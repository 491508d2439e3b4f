//! Everything the CLI prints goes through here (`#![deny(clippy::print_stdout)]` in `cli/mod.rs`
//! keeps it so):
//! - text is printed one line per call, and every line is [`neutralise`]d: what peers wrote
//!   (names, summaries, messages, state, memories, file names, task titles, stream data) can
//!   neither drive the terminal nor fake a line from someone else;
//! - JSON stays exact JSON (serde escapes control characters; the invisible ones serde leaves
//!   raw are written as `\uXXXX`, which is the same JSON value);
//! - a reader that went away (`claudemesh peers --json | head -c1`) ends the program quietly
//!   with exit code 0, as ripgrep does: the reader took what it wanted.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{ErrorKind, Write};

use serde::Serialize;

/// `outln!("...", args)`: prints one neutralised line on stdout (see [`line`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::output::line(&format!($($arg)*))
    };
}
pub(crate) use outln;

/// How continuation lines of a multi-line text (a message, a memory) start, so that a line a
/// peer wrote never starts where our own lines do.
pub const CONTINUATION: &str = "  | ";

/// Prints one line of text on stdout. Control characters in it, newlines included, are shown
/// as escapes, so one call is always exactly one line.
pub fn line(text: &str) {
    write_stdout(&[neutralise(text).as_bytes(), b"\n"]);
}

/// Prints `head` followed by a text that may have several lines: the first on the same line as
/// `head`, each further one on its own line after [`CONTINUATION`].
pub fn block(head: &str, text: &str) {
    let text = text.replace("\r\n", "\n");
    let mut lines = text.split('\n');
    line(&format!("{head}{}", lines.next().unwrap_or("")));
    for rest in lines {
        line(&format!("{CONTINUATION}{rest}"));
    }
}

/// Prints a text that may have several lines, each neutralised as [`line`] does, with no
/// prefix: the answer the user asked for (a tool's result), not a peer's words among ours.
pub fn lines(text: &str) {
    for l in text.replace("\r\n", "\n").split('\n') {
        line(l);
    }
}

/// Prints one pretty-printed JSON document.
pub fn json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => write_stdout(&[json_invisibles(&s).as_bytes(), b"\n"]),
        Err(e) => error(&format!("error: cannot print JSON: {e}")),
    }
}

/// A list command's answer: with `as_json` one document `{key: items}`; otherwise `empty` when
/// there are none, else one line per item.
pub fn list<T: Serialize>(
    as_json: bool,
    key: &str,
    items: &[T],
    empty: &str,
    item_line: impl Fn(&T) -> String,
) {
    if as_json {
        json(&serde_json::json!({ key: items }));
    } else if items.is_empty() {
        line(empty);
    } else {
        for item in items {
            line(&item_line(item));
        }
    }
}

/// Prints one JSON document on one line (for `--json` streams of lines).
pub fn json_line(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(s) => write_stdout(&[json_invisibles(&s).as_bytes(), b"\n"]),
        Err(e) => error(&format!("error: cannot print JSON: {e}")),
    }
}

/// Prints text of our own (help pages) as it is, several lines allowed.
pub fn ours(text: &str) {
    write_stdout(&[text.as_bytes(), b"\n"]);
}

/// Prints bytes exactly as they are (`vault get`: the member's own value, for a pipe or a file).
pub fn raw(bytes: &[u8]) {
    write_stdout(&[bytes]);
}

/// Prints one neutralised line on stderr. A stderr that cannot be written to is ignored: there
/// is nowhere left to say so.
pub fn error(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(neutralise(text).as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}

/// Prints an error that may have several lines on stderr (a broker's message: a query's syntax
/// error with its caret): the first as [`error`] does, each further one indented, so that no
/// line of it starts where our own lines do.
pub fn error_lines(text: &str) {
    let text = text.replace("\r\n", "\n");
    let mut lines = text.split('\n');
    error(lines.next().unwrap_or(""));
    for rest in lines {
        error(&format!("  {rest}"));
    }
}

/// Asks on stderr, leaving the cursor after the question.
pub fn prompt(question: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(neutralise(question).as_bytes())
        .and_then(|()| err.flush());
}

/// Asks a yes/no `question` on stderr and reads the answer from stdin: true for `y` or `yes`.
pub fn ask_yes(question: &str) -> std::io::Result<bool> {
    use std::io::BufRead;
    prompt(question);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

fn write_stdout(parts: &[&[u8]]) {
    let result = {
        let mut out = std::io::stdout().lock();
        parts
            .iter()
            .try_for_each(|p| out.write_all(p))
            .and_then(|()| out.flush())
    };
    match result {
        Ok(()) => {}
        // Not an error: whoever read our output has all they wanted.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            error(&format!("error: cannot write the output: {e}"));
            std::process::exit(1);
        }
    }
}

/// True for what must not reach a terminal raw: C0 controls but tab (ESC starts colour, cursor
/// and screen commands; CR rewrites the line; LF fakes a new one), DEL, C1 controls (8-bit CSI),
/// the Unicode bidi controls (text that reads in another order than it is stored, as in
/// "Trojan Source") and the line and paragraph separators.
fn is_hazard(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Makes text harmless for a terminal: every hazard (see above) becomes a visible escape —
/// `\n`, `\r`, `\x1b`, `\u{202e}` — and everything else stays as it is. Used for every line the
/// CLI prints, whether stdout is a terminal or not (piped output is often read on one later).
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_hazard(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hazard(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// serde_json writes DEL, C1 controls and bidi controls raw inside strings; as `\uXXXX` they are
/// the same JSON value and harmless on a terminal. They can only occur inside strings (JSON's
/// own syntax is ASCII), so replacing them everywhere is exact.
fn json_invisibles(json: &str) -> Cow<'_, str> {
    // C0 controls inside strings are escaped by serde already; outside them, newlines are
    // pretty-printing.
    let hazard = |c: char| c >= ' ' && is_hazard(c);
    if !json.chars().any(hazard) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if hazard(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazards_become_visible_escapes() {
        assert_eq!(
            neutralise("plain text, tabs\tand ünïcode ✓"),
            "plain text, tabs\tand ünïcode ✓"
        );
        assert_eq!(
            neutralise("\x1b[2J\x1b]0;pwned\x07a\rb\nc\x7f"),
            "\\x1b[2J\\x1b]0;pwned\\x07a\\rb\\nc\\x7f"
        );
        assert_eq!(neutralise("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(
            neutralise("admin\u{202e}txt.exe\u{2066}"),
            "admin\\u{202e}txt.exe\\u{2066}"
        );
        assert!(!neutralise("\u{2028}\u{200f}").chars().any(is_hazard));
    }

    #[test]
    fn json_stays_the_same_value() {
        let v = serde_json::json!({"name": "a\u{202e}b\u{7f}\u{85}\x1b\n", "n": 1});
        for s in [
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string_pretty(&v).unwrap(),
        ] {
            let safe = json_invisibles(&s);
            assert!(!safe.chars().any(|c| c != '\n' && is_hazard(c)), "{safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back, v);
        }
    }
}
