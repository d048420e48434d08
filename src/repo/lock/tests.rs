use std::io::Read;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use chrono::Utc;

use super::*;
use crate::repo::store::memory::Memory;
use crate::repo::store::posix::Posix;
use crate::repo::store::{Batch, ObjectMeta, Written as Stored};

/// A store that can ignore create-only puts (as Garage 2.5 does) and fail
/// every call on request (a store out of reach).
#[derive(Debug)]
struct Unreliable {
    inner: Arc<dyn Backend>,
    overwrites: bool,
    failing: Arc<AtomicBool>,
}

impl Unreliable {
    fn check(&self) -> Result<(), StoreError> {
        match self.failing.load(Ordering::SeqCst) {
            true => Err(StoreError::Io("the store".into(), std::io::Error::other("unreachable"))),
            false => Ok(()),
        }
    }
}

impl Backend for Unreliable {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn check_location(&self) -> Result<(), String> {
        self.inner.check_location()
    }
    fn put(&self, key: &ObjectKey, data: &mut dyn Read, mut options: PutOptions) -> Result<Stored, StoreError> {
        self.check()?;
        options.create_only &= !self.overwrites;
        self.inner.put(key, data, options)
    }
    fn batch(&self) -> Box<dyn Batch + '_> {
        self.inner.batch()
    }
    fn get(&self, key: &ObjectKey) -> Result<Box<dyn Read + Send>, StoreError> {
        self.check()?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Box<dyn Read + Send>, StoreError> {
        self.inner.get_range(key, range)
    }
    fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        self.check()?;
        self.inner.head(key)
    }
    fn list(&self, prefix: &str, each: &mut dyn FnMut(ObjectMeta) -> anyhow::Result<()>) -> anyhow::Result<()> {
        self.check()?;
        self.inner.list(prefix, each)
    }
    fn list_children(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_children(prefix)
    }
    fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.check()?;
        self.inner.delete(key)
    }
}

fn memory() -> Arc<dyn Backend> {
    Arc::new(Memory::new())
}

fn garage_like(inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(Unreliable {
        inner,
        overwrites: true,
        failing: Arc::default(),
    })
}

fn this(operation: &str) -> LockInfo {
    LockInfo::for_this_process(operation, None, Utc::now())
}

/// Leases that hold long, and contenders that back off quickly.
fn quick(lease: Duration) -> LeaseSettings {
    LeaseSettings {
        lease,
        attempts: 8,
        backoff: Duration::from_millis(5),
    }
}

fn leases(b: &dyn Backend) -> Vec<String> {
    let mut names = Vec::new();
    b.list("locks/", &mut |o| {
        names.push(o.key.as_str().to_owned());
        Ok(())
    })
    .unwrap();
    names
}

/// Writes the lease of another holder, as its own process would.
fn put_lease(b: &dyn Backend, info: &LockInfo, lease_ms: u64) -> ObjectKey {
    let key = ObjectKey::lease(&format!("{}-{}-0123456789abcdef", info.host, info.pid)).unwrap();
    let body = serde_json::to_vec(&Lease {
        info: info.clone(),
        lease_ms,
    })
    .unwrap();
    b.put(&key, &mut &body[..], PutOptions::default()).unwrap();
    key
}

fn elsewhere(pid: u32) -> LockInfo {
    LockInfo {
        host: "head2".into(),
        pid,
        pid_start: Some(1),
        since: Utc::now(),
        operation: "backup".into(),
        backup_id: Some("2611231819".into()),
    }
}

#[test]
fn second_holder_is_refused_and_drop_releases() {
    for guard in [false, true] {
        let b = memory();
        let lock = RepoLock::acquire(b.clone(), this("backup"), guard).unwrap();
        assert_eq!(read(b.as_ref()).unwrap().is_some(), guard);
        assert_eq!(holder(b.as_ref()).unwrap().as_ref(), Some(lock.info()));
        assert_eq!(holders(b.as_ref()).unwrap(), [lock.info().clone()], "named once");
        let err = RepoLock::acquire(b.clone(), this("backup"), guard).unwrap_err();
        assert!(
            err.to_string().contains("the repository is locked: backup by pid"),
            "{err}"
        );
        assert!(err.to_string().contains("(memory/locks/"), "{err}");
        drop(lock);
        assert!(read(b.as_ref()).unwrap().is_none());
        assert_eq!(leases(b.as_ref()), Vec::<String>::new());
    }
}

#[test]
fn the_lease_holds_who_and_for_how_long() {
    let b = memory();
    let info = LockInfo::for_this_process("restore", Some("2611231819".into()), Utc::now());
    let lock = RepoLock::acquire_with(b.clone(), info.clone(), false, &quick(Duration::from_secs(7))).unwrap();
    let name = lock.lease().as_str().to_owned();
    assert!(
        name.starts_with(&format!("locks/{}-{}-", info.host.replace('.', "_"), info.pid)) && name.ends_with(".json"),
        "{name}"
    );
    let mut body = Vec::new();
    b.get(lock.lease()).unwrap().read_to_end(&mut body).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["operation"], "restore");
    assert_eq!(json["backup_id"], "2611231819");
    assert_eq!(json["pid"], info.pid);
    assert_eq!(json["lease_ms"], 7000);
    assert!(lock.acquired() <= SystemTime::now());
}

#[test]
fn dead_holder_is_reported_stale_not_taken() {
    let b = memory();
    let mut info = LockInfo::for_this_process("backup", Some("2611231819".into()), Utc::now());
    // A pid above the kernel's maximum is never alive.
    info.pid = 4_194_304 + 1;
    b.put(
        &ObjectKey::lock(),
        &mut &serde_json::to_vec(&info).unwrap()[..],
        PutOptions::default(),
    )
    .unwrap();
    let err = RepoLock::acquire(b.clone(), this("backup"), false).unwrap_err();
    assert!(
        err.to_string().starts_with("stale lock memory/lock: backup of backup"),
        "{err}"
    );
    assert!(read(b.as_ref()).unwrap().is_some());
    let removed = unlock(b.as_ref(), false).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].why, "that process is gone");
    assert!(read(b.as_ref()).unwrap().is_none());

    // The same as a lease, with the object `lock` of the same holder.
    let key = put_lease(b.as_ref(), &info, 60_000);
    let err = RepoLock::acquire(b.clone(), this("backup"), true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "stale lock memory/{key}: {} but that process is gone; check the backup it left, then run `hwdr unlock`",
            info.describe()
        )
    );
    b.put(
        &ObjectKey::lock(),
        &mut &serde_json::to_vec(&info).unwrap()[..],
        PutOptions::default(),
    )
    .unwrap();
    let removed = unlock(b.as_ref(), false).unwrap();
    assert_eq!(removed.len(), 1, "one holder: {removed:?}");
    assert_eq!(removed[0].objects, ["memory/lock".to_owned(), format!("memory/{key}")]);
    assert!(leases(b.as_ref()).is_empty() && read(b.as_ref()).unwrap().is_none());
    RepoLock::acquire(b, this("backup"), true).unwrap();
}

#[test]
fn live_lock_is_not_removed_without_force() {
    for guard in [false, true] {
        let b = memory();
        let _lock = RepoLock::acquire(b.clone(), this("backup"), guard).unwrap();
        let err = unlock(b.as_ref(), false).unwrap_err();
        assert!(
            err.to_string().starts_with("the lock is not stale: backup by pid"),
            "{err}"
        );
        let removed = unlock(b.as_ref(), true).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].why, "removed with --force");
        assert!(leases(b.as_ref()).is_empty() && read(b.as_ref()).unwrap().is_none());
    }
}

/// Another host's lease that is no longer renewed: stale once it ran out by
/// the store's clock, removed by `hwdr unlock` without `--force`.
#[test]
fn an_expired_lease_is_stale_and_unlock_removes_it() {
    let b = memory();
    let other = elsewhere(42);
    let key = put_lease(b.as_ref(), &other, 20);
    std::thread::sleep(Duration::from_millis(40));
    let err = RepoLock::acquire(b.clone(), this("backup"), false).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "stale lock memory/{key}: backup of backup 2611231819 by pid 42 on host head2"
        )) && text.contains("but that process is gone (its lease ran out ")
            && text.ends_with("then run `hwdr unlock`"),
        "{text}"
    );
    assert_eq!(leases(b.as_ref()), [key.as_str()], "never taken over");
    let removed = unlock(b.as_ref(), false).unwrap();
    assert!(removed[0].why.starts_with("its lease ran out "), "{removed:?}");
    assert_eq!(removed[0].holder.as_ref(), Some(&other));
    RepoLock::acquire(b, this("backup"), false).unwrap();
}

#[test]
fn another_hosts_live_lease_refuses_and_needs_force() {
    let b = memory();
    put_lease(b.as_ref(), &elsewhere(42), 60_000);
    let err = RepoLock::acquire(b.clone(), this("prune"), true).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the repository is locked: backup of backup 2611231819 by pid 42"),
        "{err}"
    );
    assert!(
        read(b.as_ref()).unwrap().is_none(),
        "the guard is taken only by a winner"
    );
    assert!(unlock(b.as_ref(), false).is_err());
    assert_eq!(unlock(b.as_ref(), true).unwrap().len(), 1);
    assert_eq!(unlock(b.as_ref(), false).unwrap().len(), 0);
}

/// An hwdr from before leases (or `lock` written by hand) holds the
/// repository all the same, with or without the guard.
#[test]
fn an_object_lock_alone_refuses_too() {
    for guard in [false, true] {
        let b = memory();
        let info = elsewhere(7);
        let body = serde_json::to_vec(&info).unwrap();
        b.put(&ObjectKey::lock(), &mut &body[..], PutOptions::default())
            .unwrap();
        let err = RepoLock::acquire(b.clone(), this("backup"), guard).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("the repository is locked: {} (memory/lock)", info.describe())
        );
        assert!(leases(b.as_ref()).is_empty(), "its lease went with the refusal");
        assert_eq!(holder(b.as_ref()).unwrap(), Some(info));
    }
}

#[test]
fn a_renewed_lease_holds_past_its_length_and_goes_with_the_lock() {
    let b = memory();
    let lease = Duration::from_millis(600);
    let lock = RepoLock::acquire_with(b.clone(), this("backup"), true, &quick(lease)).unwrap();
    let written = b.head(lock.lease()).unwrap().unwrap().modified;
    std::thread::sleep(lease * 2);
    assert!(b.head(lock.lease()).unwrap().unwrap().modified > written, "renewed");
    let err = RepoLock::acquire(b.clone(), this("backup"), true).unwrap_err();
    assert!(err.to_string().starts_with("the repository is locked"), "{err}");
    assert_eq!(lock.lost(), None);
    drop(lock);
    std::thread::sleep(lease / 2);
    assert!(leases(b.as_ref()).is_empty(), "no renewal after the drop");
    assert!(read(b.as_ref()).unwrap().is_none());
}

#[test]
fn repo_init_probes_whether_create_only_puts_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let posix: Arc<dyn Backend> = Arc::new(Posix::new(dir.path()));
    assert!(probe_create_only(memory().as_ref()).unwrap());
    assert!(probe_create_only(posix.as_ref()).unwrap());
    assert!(!probe_create_only(garage_like(memory()).as_ref()).unwrap());
    assert!(!probe_create_only(garage_like(posix.clone()).as_ref()).unwrap());
    assert_eq!(
        posix.list_children("").unwrap(),
        Vec::<String>::new(),
        "the probe is removed"
    );
}

/// A store to race on: its name, itself, whether the lock takes the guard,
/// and its folder.
type Store = (String, Arc<dyn Backend>, bool, Option<tempfile::TempDir>);

/// Every kind of store the lock must be safe on: honest about create-only
/// puts or not, each with and without the guard (with it on a store that
/// overwrites: a wrong record must not make the lock unsafe).
fn stores() -> Vec<Store> {
    let mut out = Vec::new();
    for guard in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let posix: Arc<dyn Backend> = Arc::new(Posix::new(dir.path()));
        out.push((format!("memory, guard {guard}"), memory(), guard, None));
        out.push((
            format!("garage-like memory, guard {guard}"),
            garage_like(memory()),
            guard,
            None,
        ));
        out.push((format!("posix, guard {guard}"), posix.clone(), guard, Some(dir)));
        let dir = tempfile::tempdir().unwrap();
        let posix: Arc<dyn Backend> = Arc::new(Posix::new(dir.path()));
        out.push((
            format!("garage-like posix, guard {guard}"),
            garage_like(posix),
            guard,
            Some(dir),
        ));
    }
    out
}

/// Two contenders taking and releasing the lock over and over: never do
/// both hold it, and every refusal names the holder.
#[test]
fn two_contenders_racing_never_both_hold_the_lock() {
    let settings = quick(Duration::from_secs(30));
    for (name, b, guard, _dir) in stores() {
        let holders = AtomicUsize::new(0);
        let wins = AtomicUsize::new(0);
        let rounds = if name.contains("posix") { 25 } else { 100 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        match RepoLock::acquire_with(b.clone(), this("backup"), guard, &settings) {
                            Ok(lock) => {
                                assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "{name}: both hold the lock");
                                std::thread::sleep(Duration::from_micros(lease::random() % 2000));
                                holders.fetch_sub(1, Ordering::SeqCst);
                                wins.fetch_add(1, Ordering::SeqCst);
                                drop(lock);
                            }
                            Err(e) => assert!(
                                e.to_string().starts_with("the repository is locked: backup by pid"),
                                "{name}: {e:#}"
                            ),
                        }
                    }
                });
            }
        });
        assert!(wins.load(Ordering::SeqCst) > 0, "{name}: nobody ever got the lock");
        assert_eq!(leases(b.as_ref()), Vec::<String>::new(), "{name}");
    }
}

/// Two backups started at once: exactly one proceeds (the other is refused
/// while the first holds the lock), round after round.
#[test]
fn two_contenders_started_at_once_exactly_one_proceeds() {
    let settings = quick(Duration::from_secs(30));
    for (name, b, guard, _dir) in stores() {
        let rounds = if name.contains("posix") { 10 } else { 40 };
        for round in 0..rounds {
            let start = Barrier::new(2);
            let tried = Barrier::new(2);
            let wins = AtomicUsize::new(0);
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        start.wait();
                        let got = RepoLock::acquire_with(b.clone(), this("backup"), guard, &settings);
                        if got.is_ok() {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                        // Held until both have tried.
                        tried.wait();
                    });
                }
            });
            assert_eq!(wins.load(Ordering::SeqCst), 1, "{name}, round {round}");
        }
    }
}

/// The holder whose lease is removed (`hwdr unlock --force`), or cannot be
/// renewed for half its length, stops: every check of the process fails
/// with why. A lost lock stops the whole process, so this runs in a process
/// of its own (the test binary again, with only the test below).
#[test]
fn a_lost_lease_stops_its_holder_with_the_reason() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "repo::lock::tests::lose_leases", "--ignored", "--nocapture"])
        .env("HWDR_TEST_LOSE_LEASES", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

#[test]
#[ignore = "run by a_lost_lease_stops_its_holder_with_the_reason, in a process of its own"]
fn lose_leases() {
    if std::env::var_os("HWDR_TEST_LOSE_LEASES").is_none() {
        return;
    }
    let lease = Duration::from_secs(1);
    let b = memory();
    let lock = RepoLock::acquire_with(b.clone(), this("backup"), true, &quick(lease)).unwrap();
    crate::cancel::check().unwrap();
    b.delete(lock.lease()).unwrap();
    let err = wait_for_a_stop();
    assert_eq!(
        err,
        format!(
            "lost the repository lock: its lease memory/{} was removed (by `hwdr unlock --force`?)",
            lock.lease()
        )
    );
    assert_eq!(lock.lost(), Some(err));
    assert!(leases(b.as_ref()).is_empty(), "never written back");
    drop(lock);
    crate::cancel::check().unwrap();

    let failing = Arc::new(AtomicBool::new(false));
    let b: Arc<dyn Backend> = Arc::new(Unreliable {
        inner: memory(),
        overwrites: false,
        failing: failing.clone(),
    });
    let lease = Duration::from_millis(400);
    let lock = RepoLock::acquire_with(b.clone(), this("backup"), false, &quick(lease)).unwrap();
    failing.store(true, Ordering::SeqCst);
    let err = wait_for_a_stop();
    assert!(
        err.starts_with(&format!(
            "lost the repository lock: its lease memory/{} could not be renewed for 0.2s, half its length (",
            lock.lease()
        )),
        "{err}"
    );
    failing.store(false, Ordering::SeqCst);
    std::thread::sleep(lease);
    assert_eq!(lock.lost(), Some(err), "lost for good");
    drop(lock);
    crate::cancel::check().unwrap();
}

/// The error of the next stop of this process (within seconds).
fn wait_for_a_stop() -> String {
    for _ in 0..500 {
        if let Err(e) = crate::cancel::check() {
            return e.to_string();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the process was never stopped");
}
