//! `hwdr-bench-crc verify|read <data dir or block store> [more…]`
//!
//! Walks the folders for block files `blk_<id>` (and `blk_<id>_<gs>` in a
//! repository's block store), pairs each with its `.meta`, and either
//! verifies it with hwdr's `meta::verify_file` (the code path of every upload)
//! or only reads it in 1 MiB pieces, like `verify_file` does, without the
//! CRCs. Single-threaded, like one node's upload. Prints one line:
//! `mode=… files=… bytes=… seconds=… bytes_per_s=…`.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use hwdr::hopsfs::meta;

/// (block, meta) pairs below `dir`, sorted by path.
fn pairs(dir: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let mut blocks = Vec::new();
    let mut metas = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e.file_type()?;
        if kind.is_dir() {
            pairs(&e.path(), out)?;
        } else if name.starts_with("blk_") && kind.is_file() {
            if name.ends_with(".meta") {
                metas.push(name);
            } else {
                blocks.push(name);
            }
        }
    }
    blocks.sort();
    metas.sort();
    for b in blocks {
        // Data node: blk_<id> + blk_<id>_<gs>.meta; block store: blk_<id>_<gs> + blk_<id>_<gs>.meta.
        let own = format!("{b}.meta");
        let prefix = format!("{b}_");
        let meta = metas
            .iter()
            .find(|m| **m == own || (m.starts_with(&prefix) && !m[prefix.len()..].contains('_')))
            .with_context(|| format!("{}/{b} has no .meta", dir.display()))?;
        out.push((dir.join(&b), dir.join(meta)));
    }
    Ok(())
}

fn read_only(block: &Path) -> Result<u64> {
    let mut file = File::open(block).with_context(|| format!("opening {}", block.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                std::hint::black_box(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", block.display())),
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, dirs)) = args.split_first() else {
        bail!("usage: hwdr-bench-crc verify|read DIR...");
    };
    let mut list = Vec::new();
    for d in dirs {
        pairs(Path::new(d), &mut list)?;
    }
    let start = Instant::now();
    let mut bytes = 0u64;
    for (block, meta_path) in &list {
        bytes += match mode.as_str() {
            "verify" => meta::verify_file(block, meta_path)?,
            "read" => read_only(block)?,
            other => bail!("unknown mode {other}"),
        };
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "mode={mode} files={} bytes={bytes} seconds={secs:.3} bytes_per_s={:.0}",
        list.len(),
        bytes as f64 / secs
    );
    Ok(())
}
