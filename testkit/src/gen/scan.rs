//! Reading a generated tree back from disk: its nodes, pools and blocks.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use super::tree::pool_current;
use super::{GenBlock, GenNode, Generated};

/// Reads back a tree [`super::generate`] wrote below `root`: nodes, pools,
/// and every block in `finalized/` and `rbw/`.
pub fn scan(root: &Path) -> Result<Generated> {
    let mut shared = Shared::default();
    let mut found: Vec<ScannedNode> = Vec::new();
    for name in node_names(root)? {
        found.push(scan_node(root, name, &mut shared)?);
    }
    let blocks = distinct_blocks(&found)?;
    let nodes = found.into_iter().map(|scanned| scanned.into_node(&blocks)).collect();
    let mut generated = Generated {
        cluster_id: shared.cluster_id.unwrap_or_default(),
        pools: shared.pools.unwrap_or_default(),
        nodes,
        blocks,
        unique_bytes: 0,
        replica_bytes: 0,
    };
    generated.normalize();
    Ok(generated)
}

/// The `node<i>` folders below `root`, in order of `i`.
fn node_names(root: &Path) -> Result<Vec<String>> {
    let mut numbered = Vec::new();
    for entry in fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let entry = entry.with_context(|| format!("listing {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) {
            numbered.push((n, name));
        }
    }
    numbered.sort();
    ensure!(!numbered.is_empty(), "no node<i> folders in {}", root.display());
    Ok(numbered.into_iter().map(|(_, name)| name).collect())
}

/// What every node of a tree must agree on, as the first node says.
#[derive(Default)]
struct Shared {
    cluster_id: Option<String>,
    pools: Option<Vec<String>>,
}

/// Reads node `name` below `root`: its cluster id and block pools (checked
/// against the other nodes' in `shared`) and its blocks.
fn scan_node(root: &Path, name: String, shared: &mut Shared) -> Result<ScannedNode> {
    let data_dir = root.join(&name).join("dn");
    let version = data_dir.join("current/VERSION");
    let props = read_properties(&version)?;
    let cid = props
        .get("clusterID")
        .with_context(|| format!("{}: no clusterID", version.display()))?;
    match &shared.cluster_id {
        None => shared.cluster_id = Some(cid.clone()),
        Some(c) if c != cid => bail!("{}: clusterID {cid} differs from {c}", version.display()),
        Some(_) => {}
    }
    let current = data_dir.join("current");
    let node_pools = pool_names(&current)?;
    match &shared.pools {
        None => shared.pools = Some(node_pools.clone()),
        Some(p) if *p != node_pools => bail!("{}: block pools differ from the other nodes'", current.display()),
        Some(_) => {}
    }
    let mut blocks = Vec::new();
    for (p, pool) in node_pools.iter().enumerate() {
        scan_pool(&data_dir.join(pool_current(pool)), p as u32, &mut blocks)?;
    }
    Ok(ScannedNode { name, data_dir, blocks })
}

/// The block pools (`BP-…` folders) in a data node's `current/`, sorted.
fn pool_names(current: &Path) -> Result<Vec<String>> {
    let mut pools = Vec::new();
    for entry in fs::read_dir(current).with_context(|| format!("listing {}", current.display()))? {
        let entry = entry.with_context(|| format!("listing {}", current.display()))?;
        let pool = entry.file_name().to_string_lossy().into_owned();
        if pool.starts_with("BP-") {
            pools.push(pool);
        }
    }
    pools.sort();
    Ok(pools)
}

/// Adds the blocks of one pool's `current/` folder, `finalized/` then
/// `rbw/`, to `out`.
fn scan_pool(pool_dir: &Path, pool: u32, out: &mut Vec<(GenBlock, bool)>) -> Result<()> {
    let finalized = pool_dir.join("finalized");
    for d1 in list_dirs(&finalized)? {
        for d2 in list_dirs(&d1)? {
            scan_block_dir(&d2, pool, false, out)?;
        }
    }
    scan_block_dir(&pool_dir.join("rbw"), pool, true, out)
}

/// The distinct finalized blocks of all nodes, sorted; fails if two replicas
/// of a block differ in length.
fn distinct_blocks(found: &[ScannedNode]) -> Result<Vec<GenBlock>> {
    let mut distinct: BTreeMap<(u32, u64, u64), u64> = BTreeMap::new();
    for ScannedNode { name, blocks, .. } in found {
        for (b, rbw) in blocks {
            if *rbw {
                continue;
            }
            let len = *distinct.entry((b.pool, b.id, b.genstamp)).or_insert(b.len);
            ensure!(
                len == b.len,
                "{name}: block {} is {} bytes, another replica is {len}",
                b.id,
                b.len
            );
        }
    }
    Ok(distinct
        .iter()
        .map(|(&(pool, id, genstamp), &len)| GenBlock {
            pool,
            id,
            genstamp,
            len,
        })
        .collect())
}

/// A node's blocks as found on disk, each with whether it is in `rbw/`.
struct ScannedNode {
    name: String,
    data_dir: PathBuf,
    blocks: Vec<(GenBlock, bool)>,
}

impl ScannedNode {
    /// The node as [`Generated`] lists it: its finalized replicas as indexes
    /// into `blocks` (the distinct blocks, sorted), its `rbw/` blocks.
    fn into_node(self, blocks: &[GenBlock]) -> GenNode {
        let mut node = GenNode {
            name: self.name,
            data_dir: self.data_dir,
            blocks: Vec::new(),
            rbw: Vec::new(),
        };
        for (b, rbw) in self.blocks {
            if rbw {
                node.rbw.push(b);
            } else if let Ok(i) = blocks.binary_search(&b) {
                node.blocks.push(i as u32);
            }
        }
        node
    }
}

/// Sub-folders of `dir`.
fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Adds the blocks in `dir` (pairs of `blk_<id>` and `blk_<id>_<gs>.meta`) to `out`.
fn scan_block_dir(dir: &Path, pool: u32, rbw: bool, out: &mut Vec<(GenBlock, bool)>) -> Result<()> {
    let mut lens = BTreeMap::new();
    let mut metas = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("blk_") else {
            continue;
        };
        if let Some(stem) = rest.strip_suffix(".meta") {
            let parsed = stem
                .split_once('_')
                .and_then(|(id, gs)| Some((id.parse::<u64>().ok()?, gs.parse::<u64>().ok()?)));
            let (id, gs) = parsed.with_context(|| format!("{}: not a meta file name", entry.path().display()))?;
            metas.push((id, gs));
        } else if let Ok(id) = rest.parse::<u64>() {
            let len = entry
                .metadata()
                .with_context(|| format!("reading {}", entry.path().display()))?
                .size();
            lens.insert(id, len);
        }
    }
    for (id, genstamp) in metas {
        let len = lens
            .remove(&id)
            .with_context(|| format!("{}: blk_{id}_{genstamp}.meta has no block file", dir.display()))?;
        out.push((
            GenBlock {
                pool,
                id,
                genstamp,
                len,
            },
            rbw,
        ));
    }
    if let Some(id) = lens.keys().next() {
        bail!("{}: blk_{id} has no meta file", dir.display());
    }
    Ok(())
}

/// Java properties (`key=value` lines, `#` comments) read from `path`.
pub(super) fn read_properties(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}
