//! Tests of the generator: the data node layout, VERSION files, adding
//! blocks, reproducibility, replication and owner.

use super::scan::read_properties;
use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn small_spec() -> GenSpec {
    GenSpec {
        nodes: 4,
        block_pools: 2,
        blocks: 60,
        replication: 3,
        min_size: 0,
        max_size: 3000,
        seed: 7,
        owner: None,
        rbw_blocks_per_node: 1,
        content: BlockContent::Random,
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every finalized replica exists where HopsFS puts it, verifies, and is
/// byte-identical to the other replicas.
fn check_blocks(g: &Generated) {
    // Block and meta bytes of every replica.
    type Copies = Vec<(Vec<u8>, Vec<u8>)>;
    let mut replicas: BTreeMap<GenBlock, Copies> = BTreeMap::new();
    for (n, node) in g.nodes.iter().enumerate() {
        for b in g.node_blocks(n) {
            let rel = g.block_rel_path(b);
            let want = format!(
                "current/{}/current/finalized/subdir{}/subdir{}/blk_{}",
                g.pool_name(b),
                (b.id >> 16) & 0xff,
                (b.id >> 8) & 0xff,
                b.id
            );
            assert_eq!(rel, Path::new(&want));
            let path = node.data_dir.join(&rel);
            let meta_path = node.data_dir.join(g.meta_rel_path(b));
            assert_eq!(meta::verify_file(&path, &meta_path).unwrap(), b.len);
            assert_eq!(fs::metadata(&meta_path).unwrap().len(), b.meta_len());
            assert_eq!(mode(&path), 0o644);
            assert_eq!(mode(path.parent().unwrap()), 0o755);
            replicas
                .entry(*b)
                .or_default()
                .push((fs::read(&path).unwrap(), fs::read(&meta_path).unwrap()));
        }
    }
    assert_eq!(replicas.len(), g.blocks.len());
    for (b, copies) in &replicas {
        assert_eq!(copies.len(), 3, "{b:?}");
        assert!(copies.iter().all(|c| *c == copies[0]), "{b:?}");
    }
}

#[test]
fn small_tree_has_the_data_node_layout() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let g = generate(dir.path(), &spec).unwrap();
    assert_eq!(g.nodes.len(), 4);
    assert_eq!(g.blocks.len(), 60);
    assert_eq!(g.pools.len(), 2);
    check_blocks(&g);
    assert_eq!(g.unique_bytes, g.blocks.iter().map(|b| b.len).sum::<u64>());
    assert_eq!(
        g.replica_bytes,
        (0..4).flat_map(|n| g.node_blocks(n)).map(|b| b.len).sum::<u64>()
    );
    assert_eq!((0..4).map(|n| g.nodes[n].blocks.len()).sum::<usize>(), 180);
    let ids: BTreeSet<u64> = g.blocks.iter().map(|b| b.id).collect();
    assert!(ids.iter().all(|&id| id >= FIRST_BLOCK_ID));
    assert!(g.blocks.iter().all(|b| b.genstamp >= FIRST_GENSTAMP));
    let leaves: BTreeSet<(u32, u32)> = ids.iter().map(|&id| block_subdirs(id)).collect();
    assert!(leaves.len() >= 10, "only {} subdirs used", leaves.len());

    for (n, node) in g.nodes.iter().enumerate() {
        assert_eq!(node.data_dir, dir.path().join(format!("node{}/dn", n + 1)));
        let lock = fs::read_to_string(node.data_dir.join("in_use.lock")).unwrap();
        assert!(lock.contains('@'), "{lock}");
        assert_eq!(mode(&node.data_dir), 0o755);
        for pool in &g.pools {
            let bp = node.data_dir.join("current").join(pool);
            assert_eq!(fs::read_dir(bp.join("tmp")).unwrap().count(), 0);
            let used = fs::read_to_string(bp.join("current/dfsUsed")).unwrap();
            let bytes: u64 = used.split(' ').next().unwrap().parse().unwrap();
            assert!(bytes > 0, "{used}");
        }
        assert_eq!(node.rbw.len(), 1);
        let (rbw, rbw_meta) = g.rbw_rel_paths(&node.rbw[0]);
        assert!(rbw.starts_with(format!("current/{}/current/rbw", g.pool_name(&node.rbw[0]))));
        meta::verify_file(&node.data_dir.join(rbw), &node.data_dir.join(rbw_meta)).unwrap();
        assert!(!ids.contains(&node.rbw[0].id));
    }

    // Content is not zeros, and blocks differ.
    let big: Vec<&GenBlock> = g.blocks.iter().filter(|b| b.len > 64).take(2).collect();
    let read = |b: &GenBlock| {
        let n = (0..4).find(|&n| g.node_blocks(n).any(|x| x == b)).unwrap();
        fs::read(g.nodes[n].data_dir.join(g.block_rel_path(b))).unwrap()
    };
    assert!(read(big[0]).iter().any(|&x| x != 0));
    assert_ne!(read(big[0])[..64], read(big[1])[..64]);

    // What is on disk is what was reported.
    assert_eq!(scan(dir.path()).unwrap(), g);
}

#[test]
fn version_files_are_properties_with_one_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), &small_spec()).unwrap();
    let mut storage_ids = BTreeSet::new();
    for node in &g.nodes {
        let path = node.data_dir.join("current/VERSION");
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#") && text.lines().next().unwrap().ends_with("UTC 2024"),
            "{text}"
        );
        let props = read_properties(&path).unwrap();
        assert_eq!(props["clusterID"], g.cluster_id);
        assert!(g.cluster_id.starts_with("CID-") && g.cluster_id.len() == 40);
        assert!(props["storageID"].starts_with("DS-"));
        storage_ids.insert(props["storageID"].clone());
        assert_eq!(props["datanodeUuid"].len(), 36);
        assert_eq!(props["storageType"], "DATA_NODE");
        assert_eq!(props["layoutVersion"], "-57");
        assert_eq!(props["cTime"], "0");
        for pool in &g.pools {
            let props = read_properties(&node.data_dir.join("current").join(pool).join("current/VERSION")).unwrap();
            assert_eq!(&props["blockpoolID"], pool);
            assert!(props["namespaceID"].parse::<u32>().is_ok());
            assert_eq!(props["layoutVersion"], "-57");
            let parts: Vec<&str> = pool.split('-').collect();
            assert_eq!(parts.len(), 4, "{pool}");
            assert!(parts[2].starts_with("10.0.0."));
        }
    }
    assert_eq!(storage_ids.len(), g.nodes.len());
}

#[test]
fn add_blocks_adds_only_new_ids() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small_spec();
    let mut g = generate(dir.path(), &spec).unwrap();
    let before = g.clone();
    let old: BTreeSet<(u32, u64)> = before.blocks.iter().map(|b| (b.pool, b.id)).collect();
    let rbw: BTreeSet<u64> = before.nodes.iter().flat_map(|n| n.rbw.iter().map(|b| b.id)).collect();
    add_blocks(dir.path(), &spec, &mut g, 25, 99).unwrap();
    assert_eq!(g.blocks.len(), 85);
    let now: BTreeSet<(u32, u64)> = g.blocks.iter().map(|b| (b.pool, b.id)).collect();
    assert!(old.is_subset(&now));
    assert!(now.difference(&old).all(|(_, id)| !rbw.contains(id)));
    for b in &before.blocks {
        assert!(g.blocks.contains(b));
    }
    check_blocks(&g);
    assert_eq!(g.unique_bytes, g.blocks.iter().map(|b| b.len).sum::<u64>());
    assert_eq!(scan(dir.path()).unwrap(), g);

    // Adding to what was scanned works the same.
    let mut scanned = scan(dir.path()).unwrap();
    add_blocks(dir.path(), &spec, &mut scanned, 5, 100).unwrap();
    assert_eq!(scanned.blocks.len(), 90);
    check_blocks(&scanned);
}

#[test]
fn same_spec_gives_the_same_tree() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ga = generate(a.path(), &small_spec()).unwrap();
    let gb = generate(b.path(), &small_spec()).unwrap();
    assert_eq!(ga.blocks, gb.blocks);
    assert_eq!(ga.cluster_id, gb.cluster_id);
    let blk = &ga.blocks[5];
    let n = (0..4).find(|&n| ga.node_blocks(n).any(|x| x == blk)).unwrap();
    let rel = ga.block_rel_path(blk);
    assert_eq!(
        fs::read(a.path().join(format!("node{}/dn", n + 1)).join(&rel)).unwrap(),
        fs::read(b.path().join(format!("node{}/dn", n + 1)).join(&rel)).unwrap()
    );
    let other = generate(
        tempfile::tempdir().unwrap().path(),
        &GenSpec {
            seed: 8,
            ..small_spec()
        },
    )
    .unwrap();
    assert_ne!(other.blocks, ga.blocks);
}

#[test]
fn fewer_nodes_than_replicas_puts_blocks_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let spec = GenSpec {
        nodes: 2,
        blocks: 20,
        rbw_blocks_per_node: 0,
        ..GenSpec::default()
    };
    let g = generate(dir.path(), &spec).unwrap();
    assert!(g.nodes.iter().all(|n| n.blocks.len() == 20 && n.rbw.is_empty()));
    assert_eq!(g.replica_bytes, 2 * g.unique_bytes);
}

#[test]
fn owner_is_applied_and_existing_trees_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let me = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    let spec = GenSpec {
        blocks: 10,
        owner: Some(me),
        ..GenSpec::default()
    };
    let g = generate(dir.path(), &spec).unwrap();
    let b = g.node_blocks(0).next().unwrap();
    let meta = fs::metadata(g.nodes[0].data_dir.join(g.block_rel_path(b))).unwrap();
    assert_eq!((meta.uid(), meta.gid()), me);
    let err = format!("{:#}", generate(dir.path(), &spec).unwrap_err());
    assert!(err.contains("node1 already exists"), "{err}");
}

#[test]
fn text_blocks_are_csv_lines_with_matching_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let spec = GenSpec {
        min_size: 2000,
        content: BlockContent::Text,
        ..small_spec()
    };
    let g = generate(dir.path(), &spec).unwrap();
    let b = g.node_blocks(0).next().unwrap();
    let path = g.nodes[0].data_dir.join(g.block_rel_path(b));
    let text = String::from_utf8(fs::read(&path).unwrap()).unwrap();
    let first = text.lines().next().unwrap();
    assert_eq!(first.split(',').count(), 6, "{first}");
    assert!(first.contains(",2024-01-"), "{first}");
    meta::verify_file(&path, &g.nodes[0].data_dir.join(g.meta_rel_path(b))).unwrap();
    // The same spec gives the same bytes; random blocks differ from text ones.
    let again = tempfile::tempdir().unwrap();
    generate(again.path(), &spec).unwrap();
    assert_eq!(
        fs::read(again.path().join("node1/dn").join(g.block_rel_path(b))).unwrap(),
        text.as_bytes()
    );
    let random = tempfile::tempdir().unwrap();
    generate(
        random.path(),
        &GenSpec {
            min_size: 2000,
            ..small_spec()
        },
    )
    .unwrap();
    assert_ne!(
        fs::read(random.path().join("node1/dn").join(g.block_rel_path(b))).unwrap(),
        text.as_bytes()
    );
}
