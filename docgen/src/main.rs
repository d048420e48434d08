//! Writes hwdr's shell completions and man pages (see the library,
//! `lib.rs`); debian/rules runs it and installs what it writes. Prints each
//! file.
//!
//! ```text
//! cargo run --release -p docgen -- target/generated
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use docgen as docs;

/// Write hwdr's completions (`<out>/completions/`: hwdr, _hwdr, hwdr.fish)
/// and man pages (`<out>/man/*.1`).
#[derive(Debug, Parser)]
struct Args {
    /// Folder to write into.
    out: PathBuf,
}

fn run(args: &Args) -> Result<()> {
    let mut files = docs::write_completions(&args.out.join("completions"))?;
    files.extend(docs::write_man_pages(&args.out.join("man"), &docs::page_date()?)?);
    for file in files {
        println!("{}", file.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
