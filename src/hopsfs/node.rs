//! The node-local HopsFS steps of a backup, called in-process by the leader
//! for its own node or by an agent for a remote leader: list this node's
//! blocks into an inventory, and upload the blocks the leader assigned.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::fsuser::FsUser;
use super::inventory::{self, BlockLine, DirLine, Line, PoolLine, VersionLine};
use super::layout;
use super::store::{BlockKey, BlockStore, PutError};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::job::JobControl;
use crate::repo::fsutil::{self, FileEntry};
use crate::repo::{mkdir, Repository};
use crate::runner::RunAs;

/// Folder of a node's HopsFS files inside a backup folder.
pub fn node_rel_dir(node: &str) -> String {
    format!("hopsfs/{node}")
}

/// A node's inventory inside a backup folder.
pub fn inventory_rel(node: &str) -> String {
    format!("{}/inventory.tsv", node_rel_dir(node))
}

/// The list of blocks assigned to `node` in upload round `round`.
pub fn assignment_rel(node: &str, round: u32) -> String {
    format!("{}/assign-{round}.tsv", node_rel_dir(node))
}

/// What listing a node stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// The inventory and the VERSION files.
    pub files: Vec<FileEntry>,
    pub blocks: u64,
    pub bytes: u64,
    /// Block files without their `.meta` (or the reverse), left out.
    pub skipped: Vec<String>,
}

/// A replica that could not be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadReplica {
    pub pool: String,
    pub id: u64,
    pub genstamp: u64,
    pub error: String,
}

impl BadReplica {
    /// The block's identity.
    pub fn key(&self) -> BlockKey {
        BlockKey {
            pool: self.pool.clone(),
            id: self.id,
            genstamp: self.genstamp,
        }
    }
}

/// What an upload stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uploaded {
    pub blocks: u64,
    pub bytes: u64,
    /// Replicas that failed their CRC check or could not be read.
    pub bad: Vec<BadReplica>,
}

fn hdfs_user(config: &Config) -> Result<RunAs> {
    RunAs::lookup(&config.hopsfs.user, &config.origins.key("hopsfs", "user"))
}

/// A small file read as `hdfs`, to be stored in the backup.
struct Captured {
    stored: String,
    bytes: Vec<u8>,
    mode: u32,
}

impl Captured {
    fn read(path: &Path, stored: String) -> Result<Captured> {
        let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Captured {
            stored,
            bytes,
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    fn line(&self, dir: u16) -> VersionLine {
        VersionLine {
            dir,
            mode: self.mode,
            size: self.bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&self.bytes)),
            stored: self.stored.clone(),
        }
    }
}

/// Lists this node's finalized blocks and VERSION files, reading as
/// `[hopsfs] user`, into `hopsfs/<node>/` of backup `id`.
pub fn take_inventory(config: &Config, id: BackupId, control: &JobControl) -> Result<Listed> {
    let hdfs = hdfs_user(config)?;
    let backup_dir = Repository::new(&config.repository).backup_in_progress(id)?;
    let node = config.this_node.as_str();
    let rel_root = node_rel_dir(node);
    mkdir(&backup_dir.join(&rel_root), 0o750)?;
    let inv_rel = inventory_rel(node);
    let inv_path = backup_dir.join(&inv_rel);
    let (tmp, file) = fsutil::create_temp(&inv_path, 0o640)?;
    let scanned = scan_all(config, &hdfs, node, &rel_root, file, control);
    let (file, blocks, bytes, captured, skipped) = match scanned {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    fsutil::commit_temp(&tmp, file, &inv_path)?;
    let mut files = vec![entry(&backup_dir, &inv_rel)?];
    for c in captured {
        let path = backup_dir.join(&c.stored);
        mkdir(path.parent().unwrap_or(&backup_dir), 0o750)?;
        fsutil::write_atomic(&path, &c.bytes, 0o640)?;
        files.push(entry(&backup_dir, &c.stored)?);
    }
    for s in &skipped {
        warn!("left out of the backup: {s}");
    }
    info!(blocks, bytes, "listed {blocks} finalized blocks ({bytes} bytes)");
    Ok(Listed {
        files,
        blocks,
        bytes,
        skipped,
    })
}

fn entry(backup_dir: &Path, rel: &str) -> Result<FileEntry> {
    let (size, sha256) = fsutil::hash_file(&backup_dir.join(rel))?;
    Ok(FileEntry {
        path: rel.to_owned(),
        size,
        sha256,
    })
}

type Scanned = (File, u64, u64, Vec<Captured>, Vec<String>);

fn scan_all(
    config: &Config,
    hdfs: &RunAs,
    node: &str,
    rel_root: &str,
    file: File,
    control: &JobControl,
) -> Result<Scanned> {
    let mut w = inventory::Writer::new(BufWriter::new(file), node)?;
    let mut captured = Vec::new();
    let mut skipped = Vec::new();
    let mut pool_index = 0u16;
    // Everything below is read with hdfs's permissions.
    let _as_hdfs = FsUser::switch(hdfs.uid, hdfs.gid)?;
    for (di, dir) in config.hopsfs.data_dirs.iter().enumerate() {
        let di = u16::try_from(di).map_err(|_| anyhow!("too many data folders"))?;
        let meta = fs::metadata(dir).with_context(|| format!("[hopsfs] data_dirs: {}", dir.display()))?;
        let path = dir.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", dir.display()))?;
        w.write(&Line::Dir(DirLine {
            index: di,
            mode: meta.permissions().mode() & 0o7777,
            path: path.into(),
        }))?;
        let version = Captured::read(
            &layout::current(dir).join("VERSION"),
            format!("{rel_root}/{di}/VERSION"),
        )
        .context("a data folder without current/VERSION is not a HopsFS storage folder")?;
        w.write(&Line::Version(version.line(di)))?;
        captured.push(version);
        let mut pools = Vec::new();
        for e in
            fs::read_dir(layout::current(dir)).with_context(|| format!("listing {}", layout::current(dir).display()))?
        {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type()?.is_dir() && name.starts_with("BP-") {
                if !layout::is_pool_name(&name) {
                    bail!("{}: unexpected block pool name {name:?}", dir.display());
                }
                pools.push(name);
            }
        }
        pools.sort();
        for pool in pools {
            let version = Captured::read(
                &layout::pool_version(dir, &pool),
                format!("{rel_root}/{di}/{pool}/VERSION"),
            )?;
            w.write(&Line::Pool(PoolLine {
                dir: di,
                index: pool_index,
                id: pool.clone(),
                version: version.line(di),
            }))?;
            captured.push(version);
            scan_pool(
                &layout::finalized(dir, &pool),
                di,
                pool_index,
                &mut w,
                &mut skipped,
                control,
            )?;
            pool_index = pool_index
                .checked_add(1)
                .ok_or_else(|| anyhow!("too many block pools"))?;
        }
    }
    let (out, blocks, bytes) = w.finish()?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the inventory")?;
    Ok((file, blocks, bytes, captured, skipped))
}

/// Walks a `finalized/` folder, pairing every `blk_<id>` with its one
/// `blk_<id>_<gs>.meta` in the same folder.
fn scan_pool<W: std::io::Write>(
    finalized: &Path,
    dir: u16,
    pool: u16,
    w: &mut inventory::Writer<W>,
    skipped: &mut Vec<String>,
    control: &JobControl,
) -> Result<()> {
    if !finalized.is_dir() {
        return Ok(());
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        control.check()?;
        let here = finalized.join(&rel);
        let mut blocks: BTreeMap<u64, (u64, u32)> = BTreeMap::new();
        let mut metas: HashMap<u64, Vec<(u64, u64, u32)>> = HashMap::new();
        let mut subdirs = Vec::new();
        for e in fs::read_dir(&here).with_context(|| format!("listing {}", here.display()))? {
            let e = e.with_context(|| format!("listing {}", here.display()))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let kind = e.file_type()?;
            if kind.is_dir() {
                subdirs.push(rel.join(&name));
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let m = e
                .metadata()
                .with_context(|| format!("stat {}", here.join(&name).display()))?;
            let mode = m.permissions().mode() & 0o7777;
            if let Some(id) = layout::parse_block_name(&name) {
                blocks.insert(id, (m.len(), mode));
            } else if let Some((id, gs)) = layout::parse_meta_name(&name) {
                metas.entry(id).or_default().push((gs, m.len(), mode));
            }
        }
        subdirs.sort();
        subdirs.reverse();
        stack.extend(subdirs);
        for (id, (len, mode)) in blocks {
            let rel_file = rel.join(format!("blk_{id}"));
            let rel_str = rel_file.to_string_lossy().into_owned();
            match metas.remove(&id).as_deref() {
                Some([(gs, meta_len, meta_mode)]) => {
                    let canonical = layout::canonical_rel_path(id);
                    w.write(&Line::Block(BlockLine {
                        dir,
                        pool,
                        id,
                        genstamp: *gs,
                        len,
                        mode,
                        meta_len: *meta_len,
                        meta_mode: *meta_mode,
                        path: (rel_str != canonical).then_some(rel_str),
                    }))?;
                }
                Some(several) => skipped.push(format!(
                    "{}: block {id} has {} .meta files",
                    here.display(),
                    several.len()
                )),
                None => skipped.push(format!("{}: blk_{id} has no .meta", here.display())),
            }
        }
        for id in metas.keys() {
            skipped.push(format!("{}: a .meta of block {id} without its block", here.display()));
        }
    }
    Ok(())
}

/// Uploads the blocks of assignment round `round` of backup `id` from this
/// node into the block store, each checked against its CRCs. Replicas that
/// fail are reported, not fatal: the leader takes them from another node.
pub fn upload(config: &Config, id: BackupId, round: u32, control: &JobControl) -> Result<Uploaded> {
    let hdfs = hdfs_user(config)?;
    let backup_dir = Repository::new(&config.repository).backup_in_progress(id)?;
    let node = config.this_node.as_str();
    let store = BlockStore::new(&config.repository);

    // The assignment: pool, id, genstamp per line.
    let assign_path = backup_dir.join(assignment_rel(node, round));
    let text = BufReader::new(File::open(&assign_path).with_context(|| format!("opening {}", assign_path.display()))?);
    let mut pools: Vec<String> = Vec::new();
    let mut wanted: HashSet<(usize, u64, u64)> = HashSet::new();
    for line in text.lines() {
        let line = line?;
        let mut f = line.split('\t');
        let (Some(pool), Some(bid), Some(gs), None) = (f.next(), f.next(), f.next(), f.next()) else {
            bail!("{}: bad line {line:?}", assign_path.display());
        };
        let pi = match pools.iter().position(|p| p == pool) {
            Some(i) => i,
            None => {
                pools.push(pool.to_owned());
                pools.len() - 1
            }
        };
        wanted.insert((pi, bid.parse()?, gs.parse()?));
    }
    let total = wanted.len();

    // Walk this node's inventory and upload what was assigned.
    let inv_path = backup_dir.join(inventory_rel(node));
    let inv = BufReader::new(File::open(&inv_path).with_context(|| format!("opening {}", inv_path.display()))?);
    let mut dirs: HashMap<u16, PathBuf> = HashMap::new();
    let mut inv_pools: HashMap<u16, (u16, String)> = HashMap::new();
    let mut done = Uploaded {
        blocks: 0,
        bytes: 0,
        bad: Vec::new(),
    };
    inventory::read(inv, |line| {
        match line {
            Line::Dir(d) => {
                dirs.insert(d.index, PathBuf::from(d.path));
            }
            Line::Pool(p) => {
                inv_pools.insert(p.index, (p.dir, p.id));
            }
            Line::Block(b) => {
                let Some((_, pool)) = inv_pools.get(&b.pool) else {
                    bail!("inventory names pool {} before listing it", b.pool);
                };
                let Some(pi) = pools.iter().position(|p| p == pool) else {
                    return Ok(());
                };
                if !wanted.remove(&(pi, b.id, b.genstamp)) {
                    return Ok(());
                }
                control.check()?;
                let dir = dirs
                    .get(&b.dir)
                    .ok_or_else(|| anyhow!("inventory names data folder {}", b.dir))?;
                let key = BlockKey {
                    pool: pool.clone(),
                    id: b.id,
                    genstamp: b.genstamp,
                };
                match upload_one(&store, &hdfs, dir, &key, &b) {
                    Ok(len) => {
                        done.blocks += 1;
                        done.bytes += len;
                        control.file_done(len);
                    }
                    Err(PutError::Corrupt(error)) => {
                        warn!("replica of {key} on this node is bad: {error}");
                        done.bad.push(BadReplica {
                            pool: key.pool,
                            id: key.id,
                            genstamp: key.genstamp,
                            error,
                        });
                    }
                    Err(PutError::Io(e)) => return Err(e.context(format!("storing {key}"))),
                }
            }
            Line::Node(_) | Line::Version(_) | Line::End { .. } => {}
        }
        Ok(())
    })?;
    if let Some((pi, bid, gs)) = wanted.iter().next() {
        bail!(
            "{} of {total} assigned blocks are not in this node's inventory, e.g. {}/blk_{bid}_{gs}",
            wanted.len(),
            pools[*pi]
        );
    }
    store.sync()?;
    info!(
        blocks = done.blocks,
        bytes = done.bytes,
        bad = done.bad.len(),
        "uploaded {} blocks ({} bytes)",
        done.blocks,
        done.bytes
    );
    Ok(done)
}

fn upload_one(store: &BlockStore, hdfs: &RunAs, dir: &Path, key: &BlockKey, b: &BlockLine) -> Result<u64, PutError> {
    let finalized = layout::finalized(dir, &key.pool);
    let rel = b.path.clone().unwrap_or_else(|| layout::canonical_rel_path(b.id));
    let block_path = finalized.join(&rel);
    let meta_path = block_path.with_file_name(format!("blk_{}_{}.meta", b.id, b.genstamp));
    let (mut block, mut meta) = {
        let _as_hdfs = FsUser::switch(hdfs.uid, hdfs.gid)?;
        let open = |p: &Path| File::open(p).map_err(|e| PutError::Corrupt(format!("cannot read {}: {e}", p.display())));
        (open(&block_path)?, open(&meta_path)?)
    };
    store.put(key, &mut block, &mut meta, b.len)
}
