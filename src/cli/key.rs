//! `hwdr key …`: the keys that open an encrypted repository's data key.
//! Every one re-wraps the same data key: no backup is encrypted again.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::config::KeySource;
use crate::exit::Code;
use crate::outln;
use crate::repo::Repository;

/// `hwdr key ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Let another key file or passphrase file open the repository.
    Add(NewKey),
    /// The keys that open the repository (id, kind, created).
    List {
        /// Print JSON (one array).
        #[arg(long)]
        json: bool,
    },
    /// Remove a key: never the last, never this node's own unless another opens.
    Remove {
        /// The key's id (see `hwdr key list`).
        id: String,
    },
    /// Add a new key, then remove the one this node's configuration uses.
    Rotate(NewKey),
}

/// The new key: a key file or a passphrase file.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct NewKey {
    /// 32 random bytes (raw or hex), mode 0600.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// A passphrase of 8 bytes or more, mode 0600 (stretched with argon2id).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl NewKey {
    fn source(&self) -> Result<KeySource> {
        let (path, source) = match (&self.key_file, &self.passphrase_file) {
            (Some(f), _) => (f, KeySource::File(f.clone())),
            (None, Some(f)) => (f, KeySource::Passphrase(f.clone())),
            (None, None) => anyhow::bail!("give --key-file or --passphrase-file"),
        };
        if !path.is_absolute() {
            anyhow::bail!(
                "{}: give an absolute path (the configuration names it so)",
                path.display()
            );
        }
        Ok(source)
    }
}

/// One row of `hwdr key list`.
#[derive(Debug, Serialize)]
struct Row {
    id: String,
    kind: String,
    created: chrono::DateTime<chrono::Utc>,
    /// Whether this node's key opens it.
    this_node: bool,
}

/// Runs `hwdr key ...`.
pub fn run(config_path: &Path, command: Command) -> Result<Code> {
    let config = super::load_config(config_path)?;
    match command {
        Command::Add(new) => {
            let source = new.source()?;
            let wrap = Repository::add_key(&config, &source)?;
            outln!(
                "key {} added: {} opens the repository too",
                wrap.id,
                source.path().display()
            );
        }
        Command::List { json } => list(&config, json)?,
        Command::Remove { id } => {
            Repository::remove_key(&config, &id)?;
            outln!("key {id} removed");
        }
        Command::Rotate(new) => {
            let source = new.source()?;
            let (wrap, old) = Repository::rotate_key(&config, &source)?;
            outln!(
                "key {} added ({}), key {old} removed: the same data key, re-wrapped; no backup was encrypted again",
                wrap.id,
                source.path().display()
            );
            outln!(
                "now set [repository] {} = \"{}\" on every node, restart hwdr-agent there, and back the file up away \
                 from the repository",
                match source {
                    KeySource::File(_) => "key_file",
                    KeySource::Passphrase(_) => "passphrase_file",
                },
                source.path().display()
            );
        }
    }
    Ok(Code::Success)
}

fn list(config: &crate::config::Config, json: bool) -> Result<()> {
    let (wraps, used) = Repository::keys(config)?;
    let rows: Vec<Row> = wraps
        .into_iter()
        .map(|w| Row {
            this_node: w.id == used,
            id: w.id,
            kind: w.kind,
            created: w.created,
        })
        .collect();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    outln!("{:<16}  {:<10}  {:<20}  THIS NODE", "ID", "KIND", "CREATED");
    for r in &rows {
        outln!(
            "{:<16}  {:<10}  {:<20}  {}",
            r.id,
            r.kind,
            r.created.format("%Y-%m-%d %H:%M:%S"),
            if r.this_node { "yes" } else { "" }
        );
    }
    Ok(())
}
