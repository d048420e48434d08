//! Where a HopsFS data node keeps things (facts, section 4):
//!
//! ```text
//! <data dir>/current/VERSION
//! <data dir>/current/BP-<n>-<ip>-<ts>/current/VERSION
//! <data dir>/current/BP-…/current/finalized/subdir<d1>/subdir<d2>/blk_<id>
//! <data dir>/current/BP-…/current/finalized/subdir<d1>/subdir<d2>/blk_<id>_<genstamp>.meta
//! <data dir>/current/BP-…/current/rbw/   replicas being written: not backed up
//! <data dir>/current/BP-…/tmp/           not backed up
//! ```
//!
//! HopsFS places block `id` in `d1 = (id >> 16) & 0xff`, `d2 = (id >> 8) & 0xff`.

use std::path::{Path, PathBuf};

/// The `current/` folder of a storage folder.
pub fn current(data_dir: &Path) -> PathBuf {
    data_dir.join("current")
}

/// The `finalized/` folder of block pool `pool`.
pub fn finalized(data_dir: &Path, pool: &str) -> PathBuf {
    data_dir.join("current").join(pool).join("current").join("finalized")
}

/// The VERSION file of block pool `pool`.
pub fn pool_version(data_dir: &Path, pool: &str) -> PathBuf {
    data_dir.join("current").join(pool).join("current").join("VERSION")
}

/// Where HopsFS puts block `id`, relative to `finalized/`.
pub fn canonical_rel_path(id: u64) -> String {
    format!("subdir{}/subdir{}/blk_{id}", (id >> 16) & 0xff, (id >> 8) & 0xff)
}

/// The id of a block file name `blk_<id>`.
pub fn parse_block_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("blk_")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Id and genstamp of a meta file name `blk_<id>_<genstamp>.meta`.
pub fn parse_meta_name(name: &str) -> Option<(u64, u64)> {
    let (id, gs) = name.strip_prefix("blk_")?.strip_suffix(".meta")?.split_once('_')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(id) || !all_digits(gs) {
        return None;
    }
    Some((id.parse().ok()?, gs.parse().ok()?))
}

/// Whether `name` names a block pool folder (`BP-<n>-<ip>-<ts>`), safe to
/// use as a path component.
pub fn is_pool_name(name: &str) -> bool {
    name.starts_with("BP-")
        && name.len() < 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Whether a recorded path below `finalized/` is safe: `subdir<n>/` parts and
/// a block file name, nothing that climbs out.
pub fn is_safe_rel_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let Some((file, dirs)) = parts.split_last() else {
        return false;
    };
    parse_block_name(file).is_some()
        && dirs.iter().all(|d| {
            d.strip_prefix("subdir")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_placement() {
        assert_eq!(canonical_rel_path(1_073_741_825), "subdir0/subdir0/blk_1073741825");
        assert_eq!(canonical_rel_path(0x0012_3456), "subdir18/subdir52/blk_1193046");
        assert_eq!(parse_block_name("blk_42"), Some(42));
        assert_eq!(parse_block_name("blk_42_1001.meta"), None);
        assert_eq!(parse_block_name("blk_-42"), None);
        assert_eq!(parse_meta_name("blk_42_1001.meta"), Some((42, 1001)));
        assert_eq!(parse_meta_name("blk_42.meta"), None);
        assert!(is_pool_name("BP-1234-10.0.0.1-1700000000000"));
        assert!(!is_pool_name("BP-../x"));
        assert!(is_safe_rel_path("subdir1/subdir2/blk_5"));
        assert!(!is_safe_rel_path("../blk_5"));
        assert!(!is_safe_rel_path("subdir1/../../blk_5"));
    }
}
