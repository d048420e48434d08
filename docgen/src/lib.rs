//! hwdr's shell completions and man pages, rendered from its clap definition
//! ([`hwdr::cli::Cli`]) by clap_complete and clap_mangen, for the package
//! build (`src/main.rs`, run by debian/rules) and the tests (tests/it/docs.rs).
//! Why a crate of its own: Cargo.toml.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

/// The program name the completions and pages are for.
const BIN: &str = "hwdr";

/// The shells completed, each with the file name its Debian folder expects
/// (bash-completion looks a command up by its name, zsh by `_name`).
pub const SHELLS: [(Shell, &str); 3] = [(Shell::Bash, "hwdr"), (Shell::Zsh, "_hwdr"), (Shell::Fish, "hwdr.fish")];

/// Writes the bash, zsh and fish completion scripts into `dir` (created if
/// missing) under the names in [`SHELLS`]; returns their paths.
pub fn write_completions(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    // Leaked, a few KiB per call: Command::new takes only 'static names
    // without clap's `string` feature, which, enabled here, would make the
    // package build compile clap and hwdr's library a second time (Cargo.toml).
    let cli: &'static clap::Command = Box::leak(Box::new(hwdr::cli::Cli::command()));
    let cmd = without_hidden(cli);
    for (shell, name) in SHELLS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), BIN, &mut script);
        let path = dir.join(name);
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `cmd` without its hidden subcommands (`hwdr on-failure`, the units'
/// hook), at every level: clap_complete completes hidden subcommands too
/// (clap issue 1335), and clap has no way to remove one, so the command is
/// assembled again from its name, about, version, arguments and visible
/// subcommands, all that the completion scripts use.
fn without_hidden(cmd: &'static clap::Command) -> clap::Command {
    let mut visible = clap::Command::new(cmd.get_name())
        .args(cmd.get_arguments().cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(without_hidden),
        );
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    if let Some(version) = cmd.get_version() {
        visible = visible.version(version);
    }
    visible
}

/// Writes `hwdr.1` and a page per subcommand, nested ones included
/// (`hwdr-backup.1`, `hwdr-config-check.1`), into `dir` (created if
/// missing), after removing the pages a previous run left there, so a
/// removed subcommand leaves no page behind. Hidden subcommands get none.
/// `date` (YYYY-MM-DD) goes into every page's title line; returns the paths.
pub fn write_man_pages(dir: &Path, date: &str) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    remove_pages(dir)?;
    // As clap_mangen::generate_to does: no `help` subcommand to document,
    // and a built command, whose subcommands know their full names.
    let mut cmd = hwdr::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_page(&cmd, dir, date, &mut written)?;
    Ok(written)
}

/// Writes `cmd`'s page, then its visible subcommands' pages, recursively.
fn write_page(cmd: &clap::Command, dir: &Path, date: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).date(date).manual("hwdr manual");
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .with_context(|| format!("rendering {}", path.display()))?;
    let mut file = fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&page)
        .with_context(|| format!("writing {}", path.display()))?;
    out.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir, date, out)?;
    }
    Ok(())
}

/// Removes the `*.1` files in `dir`.
fn remove_pages(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "1") {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The pages' date: the day of `SOURCE_DATE_EPOCH` (dpkg-buildpackage sets
/// it from debian/changelog, so a rebuilt package has the same pages), or
/// today's.
pub fn page_date() -> Result<String> {
    let secs = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => epoch
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={epoch:?}: not a number"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs()
            .try_into()
            .context("the clock is past the year 2^63 s")?,
    };
    let day =
        chrono::DateTime::from_timestamp(secs, 0).with_context(|| format!("{secs} s since 1970: out of range"))?;
    Ok(day.format("%Y-%m-%d").to_string())
}
