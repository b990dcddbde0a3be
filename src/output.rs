//! The one place that writes to stdout and stderr.
//!
//! stdout carries data (ids, tables, `--json`); stderr carries progress,
//! notes and errors. Progress bars appear only when stderr is a terminal and
//! `-q` is not given; colour only on a terminal and without `NO_COLOR`.
//! Also how sizes read for people ([`human_bytes`]), so that the host's
//! errors and the client's tables say them the same way.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::{Error, one_line};

/// `1.2 MiB`-style sizes for people.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[derive(Debug, Clone)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    stderr_tty: bool,
    color: bool,
    multi: MultiProgress,
}

impl Output {
    pub fn new(json: bool, quiet: bool, verbose: u8) -> Output {
        let stderr_tty = std::io::stderr().is_terminal();
        let color = stderr_tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let multi = if stderr_tty && !quiet {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        Output {
            json,
            quiet,
            verbose,
            stderr_tty,
            color,
            multi,
        }
    }

    /// One line of data on stdout. Its control characters, newlines
    /// included, are escaped: a line may quote what a host sent (a reason,
    /// an actor), which must not forge lines or drive the terminal.
    pub fn data(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", one_line(line));
    }

    /// Bytes on stdout as they are (a completion script, a man page).
    ///
    /// # Errors
    /// When stdout cannot be written (e.g. a closed pipe).
    pub fn raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// A JSON document on stdout (pretty, one trailing newline).
    pub fn json_value<T: Serialize>(&self, value: &T) {
        // serde_json escapes every control character inside strings.
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }

    /// A note on stderr, silenced by `-q` (control characters escaped, as
    /// for [`Output::data`]).
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            self.eprint(&printable(msg));
        }
    }

    /// Extra detail on stderr, shown with `-v` (control characters escaped).
    pub fn detail(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            self.eprint(&printable(msg));
        }
    }

    /// A warning on stderr, always shown, on one line.
    pub fn warn(&self, msg: &str) {
        let label = self.paint("warning:", "33");
        self.eprint(&format!("{label} {}", one_line(msg)));
    }

    /// The final error line on stderr: always one line, whatever text from
    /// hostile input (names, tar headers, a peer's messages) it quotes.
    pub fn error(&self, err: &Error) {
        let label = self.paint("error:", "31");
        self.eprint(&format!("{label} {}", one_line(&err.to_string())));
    }

    /// Raw text on stderr (a build command's output is passed through elsewhere).
    pub fn eprint(&self, msg: &str) {
        let _ = self.multi.println(msg);
        if self.multi.is_hidden() {
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
        }
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// True when progress bars are drawn.
    pub fn progress_enabled(&self) -> bool {
        self.stderr_tty && !self.quiet
    }

    /// A byte-count progress bar on stderr (hidden when not a terminal).
    pub fn bytes_bar(&self, total: u64, prefix: &str) -> ProgressBar {
        if !self.progress_enabled() {
            return ProgressBar::hidden();
        }
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

/// `text` with every control character but newline and tab escaped
/// (`\u{1b}`), so that what a host or a hook printed can neither forge
/// lines of its own kind nor drive the operator's terminal (colours, titles,
/// cursor moves).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let is_bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(is_bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_bad(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_terminal_controls_but_keeps_lines() {
        assert_eq!(printable("a\tb\nc"), "a\tb\nc");
        assert_eq!(printable("\u{1b}]0;owned\u{7}x\r"), "\\u{1b}]0;owned\\u{7}x\\r");
    }
}
