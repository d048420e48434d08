//! The shell completions and man pages the package installs (docgen/, run
//! by debian/rules): every command
//! that `hwdr --help` lists completes in bash with the options its own
//! `--help` lists, and has a page that `man` renders without a warning.

use std::path::Path;
use std::process::Command;

use crate::common::{hwdr_bin, run_ok, text};

/// A command as typed after `hwdr`, e.g. `["config", "check"]`; `[]` is
/// `hwdr` itself.
type CommandPath = Vec<String>;

/// `hwdr <path> --help`.
fn help(path: &[String]) -> String {
    text(&run_ok(Command::new(hwdr_bin()).args(path).arg("--help")).stdout)
}

/// The subcommands a help text lists under "Commands:", clap's `help` aside.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long options a help text lists (`--id <ID>`, `-h, --help`).
fn listed_options(help: &str) -> Vec<String> {
    help.lines()
        .map(|line| line.trim_start().trim_start_matches("-h, ").trim_start_matches("-V, "))
        .filter(|line| line.starts_with("--"))
        .filter_map(|line| line.split([' ', ',']).next())
        .map(str::to_owned)
        .collect()
}

/// Every command `hwdr --help` shows, and theirs, recursively, `hwdr` first.
fn every_command() -> Vec<CommandPath> {
    let mut all = vec![Vec::new()];
    let mut next = 0;
    while next < all.len() {
        let path = all[next].clone();
        for sub in listed_subcommands(&help(&path)) {
            all.push([path.clone(), vec![sub]].concat());
        }
        next += 1;
    }
    all
}

/// What bash offers for `words` (the last one being completed), from the
/// completion script as bash-completion would call its function.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let program = r#"source "$1" && shift && COMP_WORDS=("$@") &&
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) &&
        _hwdr hwdr "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" &&
        printf '%s\n' "${COMPREPLY[@]}""#;
    let out = run_ok(
        Command::new("bash")
            .args(["-c", program, "bash"])
            .arg(script)
            .args(words),
    );
    assert!(out.stderr.is_empty(), "bash on {words:?}: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

#[test]
fn every_command_and_its_options_complete_in_bash_and_the_hidden_hook_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let written = docgen::write_completions(dir.path()).unwrap();
    let names: Vec<_> = written.iter().map(|p| p.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["hwdr", "_hwdr", "hwdr.fish"]);
    let script = dir.path().join("hwdr");
    let commands = every_command();
    assert!(commands.len() > 20, "too few commands found in --help: {commands:?}");
    for path in &commands {
        let mut words: Vec<&str> = ["hwdr"].into_iter().chain(path.iter().map(String::as_str)).collect();
        words.push("");
        let offered = bash_complete(&script, &words);
        for sub in listed_subcommands(&help(path)) {
            assert!(
                offered.contains(&sub),
                "`{}` does not complete {sub}: {offered:?}",
                words.join(" ")
            );
        }
        *words.last_mut().unwrap() = "--";
        let offered = bash_complete(&script, &words);
        for option in listed_options(&help(path)) {
            assert!(
                offered.contains(&option),
                "`{}` does not complete {option}: {offered:?}",
                words.join(" ")
            );
        }
    }
    // The units' OnFailure= hook is hidden from --help, and from completion.
    assert!(!bash_complete(&script, &["hwdr", "on"]).contains(&"on-failure".to_owned()));
    for name in ["_hwdr", "hwdr.fish"] {
        let script = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(
            script.contains("check-store") && !script.contains("on-failure"),
            "{name}"
        );
    }
}

/// The warnings `man` (or, without man-db, groff) gives rendering `page`,
/// as lintian asks; `None` when neither is installed.
fn render_warnings(page: &Path) -> Option<String> {
    let man = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
        .arg(page)
        .output();
    let out = match man {
        Ok(out) => out,
        Err(_) => Command::new("groff")
            .args(["-man", "-Tutf8", "-wmac", "-z"])
            .arg(page)
            .output()
            .ok()?,
    };
    assert!(
        out.status.success(),
        "rendering {}: {}",
        page.display(),
        text(&out.stderr)
    );
    Some(text(&out.stderr))
}

/// `page` as a person reads it, lines not wrapped.
fn rendered(page: &Path) -> String {
    let out = match Command::new("man").arg("-l").arg(page).env("MANWIDTH", "400").output() {
        Ok(out) => out,
        Err(_) => run_ok(
            Command::new("groff")
                .args(["-man", "-Tutf8", "-P-cbou", "-rLL=400n"])
                .arg(page),
        ),
    };
    assert!(out.status.success(), "man -l {}: {}", page.display(), text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn every_command_has_a_man_page_that_renders_without_warnings_and_lists_its_options() {
    let dir = tempfile::tempdir().unwrap();
    // A page of a command that no longer exists does not survive a new run.
    std::fs::write(dir.path().join("hwdr-gone.1"), ".TH HWDR-GONE 1\n").unwrap();
    let written = docgen::write_man_pages(dir.path(), "2026-01-02").unwrap();
    assert!(!dir.path().join("hwdr-gone.1").exists());
    let commands = every_command();
    assert_eq!(
        written.len(),
        commands.len(),
        "pages {written:?} for commands {commands:?}"
    );
    if render_warnings(&written[0]).is_none() {
        eprintln!("SKIPPED: neither man nor groff is installed (make deps installs man-db)");
        return;
    }
    for path in &commands {
        let page = dir.path().join(format!(
            "{}.1",
            ["hwdr"]
                .iter()
                .copied()
                .chain(path.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("-")
        ));
        assert!(written.contains(&page), "no page {} in {written:?}", page.display());
        assert_eq!(render_warnings(&page).unwrap(), "", "{}", page.display());
        let shown = rendered(&page);
        let name = page.file_stem().unwrap().to_str().unwrap();
        assert!(shown.contains(&format!("{name} - ")), "{name}: no NAME line:\n{shown}");
        assert!(shown.contains("2026-01-02"), "{name}: no date:\n{shown}");
        for option in listed_options(&help(path)) {
            assert!(shown.contains(&option), "{name} does not list {option}:\n{shown}");
        }
        for sub in listed_subcommands(&help(path)) {
            assert!(
                shown.contains(&format!("{name}-{sub}(1)")),
                "{name} does not point at {sub}:\n{shown}"
            );
        }
    }
    assert!(!written.iter().any(|p| p.to_string_lossy().contains("on-failure")));
}
