//! Generates HopsFS data node trees for tests and benchmarks, see
//! `testkit::gen`. Prints one summary line.
//!
//! ```text
//! cargo run --release -p testkit --bin gen_datanodes -- --out /tmp/dn --nodes 3 --blocks 1000000 \
//!     --min-size 1K --max-size 2K
//! cargo run --release -p testkit --bin gen_datanodes -- --out /tmp/dn --nodes 3 --blocks 1000000 \
//!     --min-size 1K --max-size 2K --add 1000
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use testkit::gen::{self, BlockContent, GenSpec};

/// Generate HopsFS data node trees (`<out>/node<i>/dn/`).
#[derive(Debug, Parser)]
struct Args {
    /// Folder to write the nodes into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Block pools.
    #[arg(long, default_value_t = 2)]
    pools: usize,
    /// Distinct finalized blocks.
    #[arg(long, default_value_t = 300)]
    blocks: usize,
    #[arg(long, default_value_t = 3)]
    replication: usize,
    /// Smallest block, in bytes (suffixes K, M, G: powers of 1024).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    min_size: u64,
    /// Largest block, in bytes (suffixes K, M, G).
    #[arg(long, default_value = "256K", value_parser = parse_size)]
    max_size: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Blocks in rbw/ on each node.
    #[arg(long, default_value_t = 1)]
    rbw: usize,
    /// Owner of the generated files, as uid:gid.
    #[arg(long, value_parser = parse_owner)]
    owner: Option<(u32, u32)>,
    /// Add this many blocks to a tree generated before with the same arguments.
    #[arg(long)]
    add: Option<usize>,
    /// What the blocks hold: `random` bytes (incompressible) or CSV `text`.
    #[arg(long, default_value = "random", value_parser = parse_content)]
    content: BlockContent,
}

fn parse_content(text: &str) -> Result<BlockContent> {
    match text {
        "random" => Ok(BlockContent::Random),
        "text" => Ok(BlockContent::Text),
        _ => bail!("{text}: expected random or text"),
    }
}

fn parse_size(text: &str) -> Result<u64> {
    let upper = text.trim().to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (number, shift) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 10),
        Some('M') => (&digits[..digits.len() - 1], 20),
        Some('G') => (&digits[..digits.len() - 1], 30),
        _ => (digits, 0),
    };
    let n: u64 = number.trim().parse().with_context(|| format!("not a size: {text}"))?;
    n.checked_mul(1 << shift)
        .with_context(|| format!("size too large: {text}"))
}

fn parse_owner(text: &str) -> Result<(u32, u32)> {
    let Some((uid, gid)) = text.split_once(':') else {
        bail!("owner must be uid:gid, not {text}");
    };
    Ok((
        uid.parse().with_context(|| format!("bad uid in {text}"))?,
        gid.parse().with_context(|| format!("bad gid in {text}"))?,
    ))
}

fn run(args: &Args) -> Result<()> {
    let spec = GenSpec {
        nodes: args.nodes,
        block_pools: args.pools,
        blocks: args.blocks,
        replication: args.replication,
        min_size: args.min_size,
        max_size: args.max_size,
        seed: args.seed,
        owner: args.owner,
        rbw_blocks_per_node: args.rbw,
        content: args.content,
    };
    let start = Instant::now();
    let generated = match args.add {
        None => gen::generate(&args.out, &spec)?,
        Some(count) => {
            let mut generated = gen::scan(&args.out)?;
            // A different seed for every addition, so sizes differ from the first run's.
            let seed = args.seed.wrapping_add(generated.blocks.len() as u64);
            gen::add_blocks(&args.out, &spec, &mut generated, count, seed)?;
            generated
        }
    };
    println!(
        "nodes={} blocks={} unique_bytes={} replica_bytes={} seconds={:.2}",
        generated.nodes.len(),
        generated.blocks.len(),
        generated.unique_bytes,
        generated.replica_bytes,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_datanodes: {e:#}");
            ExitCode::FAILURE
        }
    }
}
