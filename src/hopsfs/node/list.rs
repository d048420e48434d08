//! Listing this node's HopsFS storage into an inventory: its storage
//! folders, block pools and VERSION files, each pool's `finalized/` folder
//! listed by `list_pool`; the inventory and VERSION files are stored
//! in the backup.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::list_pool::{scan_pool, FolderCount, PoolScan};
use super::{inventory_rel, node_rel_dir};
use crate::backup_id::BackupId;
use crate::config::Config;
use crate::fsutil;
use crate::hopsfs::fsuser::FsUser;
use crate::hopsfs::inventory::{self, DirLine, Line, PieceWriter, PoolLine, VersionLine};
use crate::hopsfs::layout;
use crate::hopsfs::listcache;
use crate::job::JobControl;
use crate::repo::manifest::FileEntry;
use crate::repo::store::Access;
use crate::repo::Repository;
use crate::runner::RunAs;

/// What listing a node stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The inventory and the VERSION files.
    pub files: Vec<FileEntry>,
    pub blocks: u64,
    pub bytes: u64,
    /// Block files without their `.meta` (or the reverse), left out.
    pub skipped: Vec<String>,
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
    let hdfs = config.hdfs_user()?;
    let writer = Repository::of(config).backup_in_progress(id)?;
    let node = config.this_node.as_str();
    let rel_root = node_rel_dir(node);
    // Written as it is scanned, stored once whole.
    let spool = fsutil::spool(&config.restore.state_dir)?;
    // The pieces are stored while the folders are scanned, the inventory
    // naming them after: a backup never names a piece that is not stored.
    let pieces = PieceWriter::new(writer.backend());
    let (mut file, blocks, bytes, captured, skipped) =
        scan_all(config, &hdfs, node, &rel_root, (spool, pieces), control)?;
    file.rewind().context("rereading the inventory")?;
    let mut files = vec![writer.put(&inventory_rel(node), &mut BufReader::new(file), Access::Group)?];
    for c in captured {
        files.push(writer.put_bytes(&c.stored, &c.bytes, Access::Group)?);
    }
    for s in &skipped {
        warn!("left out of the backup: {s}");
    }
    info!(
        blocks,
        bytes,
        "listed {blocks} finalized blocks ({})",
        crate::progress::text::size(bytes)
    );
    Ok(Listed {
        files,
        blocks,
        bytes,
        skipped,
    })
}

type Scanned = (File, u64, u64, Vec<Captured>, Vec<String>);

fn scan_all(
    config: &Config,
    hdfs: &RunAs,
    node: &str,
    rel_root: &str,
    (file, pieces): (File, PieceWriter),
    control: &JobControl,
) -> Result<Scanned> {
    let mut w = inventory::Writer::new(BufWriter::new(file), node, pieces)?;
    let mut captured = Vec::new();
    let mut skipped = Vec::new();
    let mut pool_index = 0u16;
    let started_ns = listcache::now_ns();
    let mut folders = FolderCount::default();
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
            let finalized = layout::finalized(dir, &pool);
            let scan = PoolScan {
                finalized: &finalized,
                ids: (di, pool_index),
                hdfs,
                cache_dir: config
                    .hopsfs
                    .list_cache
                    .then(|| listcache::dir_for(&config.restore.state_dir, &finalized)),
                started_ns,
            };
            let counted = scan_pool(&scan, &mut w, &mut skipped, control)?;
            folders.read += counted.read;
            folders.cached += counted.cached;
            pool_index = pool_index
                .checked_add(1)
                .ok_or_else(|| anyhow!("too many block pools"))?;
        }
    }
    info!(
        folders_read = folders.read,
        folders_cached = folders.cached,
        "{} block folders read, {} unchanged ones taken from the listing cache",
        folders.read,
        folders.cached
    );
    let (out, blocks, bytes, stored) = w.finish()?;
    info!(
        pieces = stored.named,
        new_pieces = stored.new,
        new_piece_bytes = stored.new_bytes,
        "the inventory names {} pieces, {} of them new ({} bytes)",
        stored.named,
        stored.new,
        stored.new_bytes
    );
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .context("writing the inventory")?;
    Ok((file, blocks, bytes, captured, skipped))
}
