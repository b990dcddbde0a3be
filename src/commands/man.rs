//! `slipway man [--dir DIR]`: the manual, generated from the clap definition
//! (clap_mangen). Without `--dir`, the page for `slipway` goes to stdout;
//! with it, `slipway.1` and one `slipway-COMMAND.1` per command (nested ones
//! as `slipway-host-check.1`) are written atomically into DIR.

use std::path::Path;

use clap::CommandFactory;

use crate::Context;
use crate::cli::{Cli, ManArgs};
use crate::error::{Error, Result, describe_io};
use crate::fs;

/// # Errors
/// When DIR cannot be created or written, or stdout cannot be written.
pub fn run(args: &ManArgs, ctx: &Context) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = &args.dir else {
        let page = render(&cmd)?;
        return ctx
            .out
            .raw(&page)
            .map_err(|e| Error::other(format!("cannot write the man page to stdout: {}", describe_io(&e))));
    };
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    if ctx.out.json {
        ctx.out.json_value(&written);
    } else {
        for p in &written {
            ctx.out.data(&p.display().to_string());
        }
        ctx.out.info(&format!(
            "wrote {} man pages into {}; {}",
            written.len(),
            dir.display(),
            where_man_looks(dir)
        ));
    }
    Ok(())
}

/// How `man` finds pages written into `dir`: it looks in the `man1/`
/// directory under each MANPATH entry, so the entry is the parent of `man1`.
fn where_man_looks(dir: &Path) -> String {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match dir.parent() {
        Some(parent) if dir.file_name().is_some_and(|n| n == "man1") => format!(
            "`man slipway` finds them when `{}` (the parent of `man1`) is on MANPATH",
            parent.display()
        ),
        _ => format!(
            "`man` looks for them in a `man1` directory under each MANPATH entry, so write them into one \
             (e.g. `--dir ~/.local/share/man/man1`), or read one with `man {}`",
            dir.join("slipway.1").display()
        ),
    }
}

/// Write the page of `cmd`, then of each of its visible subcommands.
fn write_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let path = dir.join(clap_mangen::Man::new(cmd.clone()).get_filename());
    fs::write_user_file(&path, &render(cmd)?)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

/// One page: clap_mangen's title, name, synopsis, options and version
/// sections, with the command's `after_help` split into DESCRIPTION (prose)
/// and EXAMPLES (kept verbatim) instead of clap_mangen's single EXTRA section.
fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone()).source(format!("slipway {}", crate::protocol::VERSION));
    let after = cmd.get_after_help().map(|h| h.to_string()).unwrap_or_default();
    let (prose, examples) = match after.find("Examples:\n") {
        Some(i) => (after[..i].trim(), after[i + "Examples:\n".len()..].trim_end()),
        None => (after.trim(), ""),
    };
    let mut page = Vec::new();
    sections(&mut page, &man, cmd, prose, examples).map_err(|e| {
        Error::other(format!(
            "cannot render the man page of `{}`: {}",
            cmd.get_name(),
            describe_io(&e)
        ))
    })?;
    Ok(page)
}

fn sections(
    w: &mut dyn std::io::Write,
    man: &clap_mangen::Man,
    cmd: &clap::Command,
    prose: &str,
    examples: &str,
) -> std::io::Result<()> {
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    if !prose.is_empty() {
        writeln!(w, ".SH DESCRIPTION")?;
        for para in prose.split("\n\n") {
            writeln!(w, ".PP\n{}", roff_text(para))?;
        }
    }
    man.render_options_section(w)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if !examples.is_empty() {
        writeln!(w, ".SH EXAMPLES\n.nf\n{}\n.fi", roff_text(examples))?;
    }
    man.render_version_section(w)
}

/// Plain text for roff: backslashes and hyphens escaped, no line read as a request.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_roff() {
        assert_eq!(
            roff_text(".hidden\n'quoted\na-b \\x"),
            "\\&.hidden\n\\&'quoted\na\\-b \\ex"
        );
    }
}
