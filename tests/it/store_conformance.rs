//! The storage seam's conformance suite: what every repository backend must
//! do, run against each (`hwdr::repo::store`): the folder (POSIX), the
//! in-memory one, and object storage against a real S3 server (Garage).

use std::io::{self, Read};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use hwdr::repo::store::memory::Memory;
use hwdr::repo::store::posix::Posix;
use hwdr::repo::store::sealed::{DataKey, Sealed, Settings};
use hwdr::repo::store::{Backend, ObjectKey, PutOptions, StoreError};
use sha2::{Digest, Sha256};
use testkit::garage::Garage;

/// A backend under test, and what keeps it alive (a temp folder).
type Made = (Arc<dyn Backend>, Box<dyn std::any::Any>);

/// How to make a fresh backend of one kind.
type Maker = Box<dyn Fn() -> Made>;

/// Backends and whether they honour create-only puts (Garage 2.5 ignores
/// `If-None-Match: *` and overwrites: the lock must not rely on it).
fn honours_create_only(name: &str) -> bool {
    !name.ends_with("s3")
}

/// Each backend again through the sealing layer (1 MiB segments, zstd).
fn sealed(make: fn() -> Made) -> Maker {
    Box::new(move || {
        let (inner, keep) = make();
        let key = DataKey::from_bytes([42; 32]);
        let backend: Arc<dyn Backend> = Arc::new(Sealed::new(inner, &key, Settings::default()));
        (backend, keep)
    })
}

fn backends() -> Vec<(&'static str, Maker)> {
    vec![
        ("posix", Box::new(posix)),
        ("memory", Box::new(memory)),
        ("s3", Box::new(s3)),
        ("sealed posix", sealed(posix)),
        ("sealed memory", sealed(memory)),
        ("sealed s3", sealed(s3)),
    ]
}

fn posix() -> Made {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Posix::new(dir.path()));
    (backend, Box::new(dir) as Box<dyn std::any::Any>)
}

fn memory() -> Made {
    (Arc::new(Memory::new()) as Arc<dyn Backend>, Box::new(()))
}

/// A fresh prefix in a real S3 server (Garage), shared by the checks
/// running at the same time and stopped when the last one ends.
fn s3() -> Made {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let garage = shared_garage();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    garage.write_credentials(&credentials).unwrap();
    let prefix = format!("conformance/{}", N.fetch_add(1, Ordering::SeqCst));
    let toml = format!(
        "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"h\"\naddress = \"127.0.0.1:7878\"\nroles = [\"head\"]\n\
         [node]\nname = \"h\"\n[repository]\nurl = \"s3://{}/{prefix}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
         path_style = true\npart_size_mib = 5\ncredentials_file = \"{}\"\n",
        garage.bucket(),
        garage.endpoint(),
        garage.region(),
        credentials.display()
    );
    std::fs::write(dir.path().join("hwdr.toml"), toml).unwrap();
    let config = hwdr::config::Config::load(&dir.path().join("hwdr.toml")).unwrap();
    let backend = hwdr::repo::Repository::store(&config);
    (backend, Box::new((dir, garage)))
}

fn shared_garage() -> Arc<Garage> {
    static SHARED: Mutex<Weak<Garage>> = Mutex::new(Weak::new());
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(garage) = slot.upgrade() {
        return garage;
    }
    let garage = Arc::new(Garage::start().unwrap());
    *slot = Arc::downgrade(&garage);
    garage
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::parse(name).unwrap()
}

fn get(b: &dyn Backend, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    b.get(&key(name)).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn put(b: &dyn Backend, name: &str, data: &[u8]) {
    b.put(&key(name), &mut &data[..], PutOptions::default()).unwrap();
}

fn names(b: &dyn Backend, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    b.list(prefix, &mut |o| {
        out.push(o.key.as_str().to_owned());
        Ok(())
    })
    .unwrap();
    out.sort();
    out
}

/// Runs every check against every backend, naming the failing one.
fn each(check: impl Fn(&dyn Backend)) {
    each_named(|b, _| check(b))
}

/// [`each`], telling the check which backend it runs against.
fn each_named(check: impl Fn(&dyn Backend, &str)) {
    for (name, make) in backends() {
        let (backend, _keep) = make();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(backend.as_ref(), name)));
        if let Err(e) = run {
            panic!(
                "backend {name}: {}",
                e.downcast_ref::<String>().cloned().unwrap_or_default()
            );
        }
    }
}

#[test]
fn a_put_stores_exactly_its_bytes_and_reports_size_and_sha256() {
    each(|b| {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let written = b
            .put(&key("backups/1/rondb/x.Data"), &mut &data[..], PutOptions::default())
            .unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(get(b, "backups/1/rondb/x.Data"), data);
        let head = b.head(&key("backups/1/rondb/x.Data")).unwrap().unwrap();
        assert_eq!(head.size, data.len() as u64);
        assert!(head.modified > SystemTime::now() - Duration::from_secs(60));
        // A put replaces the object whole.
        put(b, "backups/1/rondb/x.Data", b"short");
        assert_eq!(get(b, "backups/1/rondb/x.Data"), b"short");
        // Empty objects exist too.
        put(b, "empty", b"");
        assert_eq!(b.head(&key("empty")).unwrap().unwrap().size, 0);
    });
}

#[test]
fn what_does_not_exist_is_not_found() {
    each(|b| {
        assert!(matches!(b.get(&key("nope")), Err(StoreError::NotFound(_))));
        assert!(b.head(&key("nope/deeper")).unwrap().is_none());
        assert!(names(b, "nope/").is_empty());
        assert!(b.list_children("nope/").unwrap().is_empty());
        // Deleting what is not there is no error.
        b.delete(&key("nope")).unwrap();
    });
}

#[test]
fn a_create_only_put_never_overwrites_where_the_store_honours_it() {
    each_named(|b, name| {
        b.put(&key("lock"), &mut &b"first"[..], PutOptions::create_only())
            .unwrap();
        let again = b.put(&key("lock"), &mut &b"second"[..], PutOptions::create_only());
        if !honours_create_only(name) {
            // What the lock's design assumes of such a server: it overwrites.
            assert!(again.is_ok(), "{again:?}");
            assert_eq!(get(b, "lock"), b"second");
            return;
        }
        assert!(matches!(again, Err(StoreError::AlreadyExists(_))), "{again:?}");
        assert_eq!(get(b, "lock"), b"first");
        b.delete(&key("lock")).unwrap();
        b.put(&key("lock"), &mut &b"third"[..], PutOptions::create_only())
            .unwrap();
        assert_eq!(get(b, "lock"), b"third");
    });
}

/// A source that fails after some bytes, as a block read from a failing disk.
struct Failing(usize);

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("the source broke"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(7);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_put_whose_source_fails_leaves_nothing_new() {
    each(|b| {
        let failed = b.put(&key("a/b"), &mut Failing(100_000), PutOptions::default());
        assert!(matches!(failed, Err(StoreError::Source(..))), "{failed:?}");
        assert!(b.head(&key("a/b")).unwrap().is_none());
        put(b, "a/b", b"old");
        assert!(b.put(&key("a/b"), &mut Failing(10), PutOptions::default()).is_err());
        assert_eq!(get(b, "a/b"), b"old");
        assert_eq!(names(b, "a/"), ["a/b"]);
    });
}

/// Bytes no two parts of a multipart upload share.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 4099 + i * 31) as u8).collect()
}

#[test]
fn a_large_object_round_trips_whole_and_in_ranges() {
    // Bigger than two parts of the smallest part size (5 MiB, the S3 minimum).
    each(|b| {
        let data = pattern(12 * 1024 * 1024 + 3);
        let written = b.put(&key("big/blk"), &mut &data[..], PutOptions::default()).unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
        assert!(get(b, "big/blk") == data, "the object read back differs");
        let across = 5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10;
        let mut out = Vec::new();
        b.get_range(&key("big/blk"), across.start as u64..across.end as u64)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data[across]);
        assert_eq!(b.head(&key("big/blk")).unwrap().unwrap().size, data.len() as u64);
    });
}

#[test]
fn a_large_put_whose_source_fails_midway_leaves_nothing_new() {
    each(|b| {
        let failed = b.put(&key("big/x"), &mut Failing(11 * 1024 * 1024), PutOptions::default());
        assert!(matches!(failed, Err(StoreError::Source(..))), "{failed:?}");
        assert!(b.head(&key("big/x")).unwrap().is_none());
        put(b, "big/x", b"old");
        assert!(b
            .put(&key("big/x"), &mut Failing(7 * 1024 * 1024), PutOptions::default())
            .is_err());
        assert_eq!(get(b, "big/x"), b"old");
        assert_eq!(names(b, "big/"), ["big/x"]);
    });
}

#[test]
fn any_name_round_trips_through_a_listing() {
    // Config files are kept under their own names: editors' backups, spaces.
    each(|b| {
        let odd = [
            "backups/1/config/etc/hwdr/hwdr.toml~",
            "backups/1/config/a b#c%7E[x]",
            "backups/1/é",
        ];
        for name in odd {
            put(b, name, name.as_bytes());
        }
        let mut want: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names(b, "backups/1/"), want);
        for name in odd {
            assert_eq!(get(b, name), name.as_bytes());
        }
        assert_eq!(b.list_children("backups/1/config/").unwrap(), ["a b#c%7E[x]", "etc"]);
    });
}

#[test]
fn ranges_read_part_of_an_object() {
    each(|b| {
        put(b, "r", b"0123456789");
        let mut out = String::new();
        b.get_range(&key("r"), 2..5).unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "234");
        out.clear();
        b.get_range(&key("r"), 8..100)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "89");
    });
}

#[test]
fn listings_find_every_object_below_a_prefix_and_only_those() {
    each_named(|b, backend| {
        for name in [
            "backups/2611231819/manifest.json",
            "backups/2611231819/rondb/users.sql",
            "backups/2611231820/hopsfs/n1/inventory.tsv",
            "blocks/BP-1/subdir0/subdir1/blk_1_2",
            "blocks/BP-1/subdir0/subdir1/blk_1_2.meta",
            "blocks/BP-10/subdir0/subdir0/blk_3_4",
            "lock",
        ] {
            put(b, name, name.as_bytes());
        }
        assert_eq!(
            names(b, "backups/2611231819/"),
            ["backups/2611231819/manifest.json", "backups/2611231819/rondb/users.sql"]
        );
        assert_eq!(names(b, "blocks/").len(), 3);
        // A prefix that ends inside a name.
        assert_eq!(
            names(b, "blocks/BP-1/"),
            [
                "blocks/BP-1/subdir0/subdir1/blk_1_2",
                "blocks/BP-1/subdir0/subdir1/blk_1_2.meta"
            ]
        );
        assert_eq!(names(b, "blocks/BP-1").len(), 3);
        assert_eq!(b.list_children("backups/").unwrap(), ["2611231819", "2611231820"]);
        assert_eq!(b.list_children("blocks/").unwrap(), ["BP-1", "BP-10"]);
        let sizes: u64 = {
            let mut total = 0;
            b.list("backups/", &mut |o| {
                total += o.size;
                Ok(())
            })
            .unwrap();
            total
        };
        let plain = [
            "backups/2611231819/manifest.json",
            "backups/2611231819/rondb/users.sql",
            "backups/2611231820/hopsfs/n1/inventory.tsv",
        ]
        .iter()
        .map(|n| n.len() as u64)
        .sum::<u64>();
        // A sealed store lists the bytes it holds: more than the plaintext.
        if backend.starts_with("sealed") {
            assert!(sizes > plain, "{sizes}");
        } else {
            assert_eq!(sizes, plain);
        }
    });
}

#[test]
fn deletes_remove_objects_and_prefixes() {
    each(|b| {
        for name in ["backups/1/manifest.json", "backups/1/x/y", "backups/2/manifest.json"] {
            put(b, name, b"x");
        }
        b.delete(&key("backups/1/manifest.json")).unwrap();
        assert_eq!(names(b, "backups/1/"), ["backups/1/x/y"]);
        b.delete_prefix("backups/1/").unwrap();
        assert!(names(b, "backups/1/").is_empty());
        assert_eq!(b.list_children("backups/").unwrap(), ["2"]);
        b.delete_prefix("backups/9/").unwrap();
    });
}

#[test]
fn a_batch_is_visible_at_its_commit_and_gone_if_dropped() {
    each(|b| {
        {
            let mut batch = b.batch();
            let written = batch
                .put(&key("blocks/p/a.meta"), &mut &b"m"[..], PutOptions::default())
                .unwrap();
            assert_eq!(written.size, 1);
            batch
                .put(&key("blocks/p/a"), &mut &b"block"[..], PutOptions::default())
                .unwrap();
            assert_eq!(batch.pending(), 2);
            batch.commit().unwrap();
            assert_eq!(batch.pending(), 0);
        }
        assert_eq!(get(b, "blocks/p/a"), b"block");
        assert_eq!(get(b, "blocks/p/a.meta"), b"m");
        {
            let mut batch = b.batch();
            batch
                .put(&key("blocks/p/dropped"), &mut &b"x"[..], PutOptions::default())
                .unwrap();
            // Dropped without a commit.
        }
        // Either never visible (a folder, memory) or durable already: never half.
        if let Some(meta) = b.head(&key("blocks/p/dropped")).unwrap() {
            assert_eq!(meta.size, 1);
        }
        assert!(names(b, "blocks/").iter().all(|n| !n.contains(".tmp")));
    });
}

#[test]
fn a_flushed_batch_is_visible_and_goes_on_until_its_commit() {
    // Issue 17: a full batch is flushed (durable, then visible) and the
    // same batch takes more puts; its commit makes those visible too.
    each(|b| {
        {
            let mut batch = b.batch();
            batch
                .put(&key("blocks/p/s1/a"), &mut &b"first"[..], PutOptions::default())
                .unwrap();
            batch.flush().unwrap();
            assert_eq!(batch.pending(), 0);
            assert_eq!(get(b, "blocks/p/s1/a"), b"first");
            batch
                .put(&key("blocks/p/s2/b"), &mut &b"second"[..], PutOptions::default())
                .unwrap();
            batch.flush().unwrap();
            batch
                .put(&key("blocks/p/s3/c"), &mut &b"third"[..], PutOptions::default())
                .unwrap();
            batch.commit().unwrap();
        }
        assert_eq!(get(b, "blocks/p/s2/b"), b"second");
        assert_eq!(get(b, "blocks/p/s3/c"), b"third");
        {
            let mut batch = b.batch();
            batch
                .put(&key("blocks/p/s4/d"), &mut &b"flushed"[..], PutOptions::default())
                .unwrap();
            batch.flush().unwrap();
            batch
                .put(&key("blocks/p/s4/e"), &mut &b"dropped"[..], PutOptions::default())
                .unwrap();
            // Dropped without a commit: what was flushed stays, whole.
        }
        assert_eq!(get(b, "blocks/p/s4/d"), b"flushed");
        if let Some(meta) = b.head(&key("blocks/p/s4/e")).unwrap() {
            assert_eq!(meta.size, 7);
        }
        assert!(names(b, "blocks/").iter().all(|n| !n.contains(".tmp")));
    });
}

#[test]
fn concurrent_puts_of_different_objects_all_land() {
    each(|b| {
        std::thread::scope(|scope| {
            for t in 0..4 {
                scope.spawn(move || {
                    for i in 0..25 {
                        let name = format!("blocks/p/t{t}/o{i}");
                        put(b, &name, name.as_bytes());
                    }
                });
            }
        });
        let all = names(b, "blocks/");
        assert_eq!(all.len(), 100);
        for name in all {
            assert_eq!(get(b, &name), name.as_bytes());
        }
    });
}

#[test]
fn a_group_in_a_batch_is_kept_whole_or_not_at_all() {
    use hwdr::repo::store::Put;
    each(|b| {
        let (meta, block) = (key("blocks/p/x.meta"), key("blocks/p/x"));
        {
            let mut batch = b.batch();
            let failed = batch.put_group(&mut [
                Put {
                    key: &meta,
                    data: &mut &b"m"[..],
                    options: PutOptions::default(),
                },
                Put {
                    key: &block,
                    data: &mut Failing(1000),
                    options: PutOptions::default(),
                },
            ]);
            assert!(failed.is_err());
            assert_eq!(batch.pending(), 0);
            let written = batch
                .put_group(&mut [
                    Put {
                        key: &meta,
                        data: &mut &b"m"[..],
                        options: PutOptions::default(),
                    },
                    Put {
                        key: &block,
                        data: &mut &b"block"[..],
                        options: PutOptions::default(),
                    },
                ])
                .unwrap();
            assert_eq!(written.iter().map(|w| w.size).collect::<Vec<_>>(), [1, 5]);
            batch.commit().unwrap();
        }
        assert_eq!(names(b, "blocks/"), ["blocks/p/x", "blocks/p/x.meta"]);
    });
}
