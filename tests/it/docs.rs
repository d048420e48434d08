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

/// The top of the source tree.
fn top() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The targets of a Markdown text's links (`[text](target)`) outside code
/// blocks that point into the tree: no URL, no bare `#anchor`.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut links = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        for (at, _) in line.match_indices("](") {
            let rest = &line[at + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            if !target.contains("://") && !target.starts_with('#') && !target.starts_with("mailto:") {
                links.push(target.to_owned());
            }
        }
    }
    links
}

/// The anchors GitHub gives a Markdown text's headings: lower case, spaces
/// as `-`, punctuation dropped.
fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        found.push(
            title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect(),
        );
    }
    found
}

/// Every broken link of the Markdown file `file`: a target that does not
/// exist, or an anchor its Markdown target has no heading for.
fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut broken = Vec::new();
    for link in relative_links(&text) {
        let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
        let target = file.parent().unwrap().join(path);
        if !target.exists() {
            broken.push(format!("{link}: no such file"));
        } else if !anchor.is_empty() && path.ends_with(".md") {
            let headings = anchors(&std::fs::read_to_string(&target).unwrap());
            if !headings.iter().any(|h| h == anchor) {
                broken.push(format!("{link}: no such heading in {path}"));
            }
        }
    }
    broken
}

/// The `docs/*.md` files of the tree, by name.
fn docs_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(top().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_readme_is_short_links_every_docs_file_and_no_link_is_broken() {
    let readme = std::fs::read_to_string(top().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 320,
        "README.md has {lines} lines: a newcomer's README has at most ~300"
    );
    let links = relative_links(&readme);
    let docs = docs_files();
    assert!(docs.len() >= 10, "{docs:?}");
    for name in &docs {
        assert!(
            links
                .iter()
                .any(|l| l.split('#').next() == Some(&format!("docs/{name}"))),
            "README.md does not link docs/{name} (its Documentation section lists every docs/ file)"
        );
    }
    let mut broken = Vec::new();
    for file in ["README.md".to_owned()]
        .into_iter()
        .chain(docs.iter().map(|n| format!("docs/{n}")))
    {
        broken.extend(
            broken_links(&top().join(&file))
                .into_iter()
                .map(|b| format!("{file}: {b}")),
        );
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every `docs/<name>.md` named in the files below `dir` (recursively).
fn docs_named_in(dir: &Path, named: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            docs_named_in(&path, named);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (at, _) in text.match_indices("docs/") {
            let name: String = text[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if let Some(name) = name.strip_suffix(".md").filter(|n| !n.is_empty()) {
                named.push((path.display().to_string(), format!("docs/{name}.md")));
            }
        }
    }
}

#[test]
fn every_docs_file_that_hwdr_its_units_and_its_packaging_name_exists() {
    let mut named = Vec::new();
    docs_named_in(&top().join("src"), &mut named);
    assert!(
        named.iter().any(|(_, doc)| doc == "docs/security.md"),
        "src/ names no docs/security.md: {named:?}"
    );
    for dir in ["systemd", "packaging", "debian"] {
        docs_named_in(&top().join(dir), &mut named);
    }
    let missing: Vec<_> = named
        .iter()
        .filter(|(_, doc)| !top().join(doc).is_file())
        .map(|(file, doc)| format!("{file} names {doc}"))
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
