//! The repository lock: one backup, restore or prune at a time per cluster,
//! safe on any store, whether or not it honours create-only writes.
//!
//! Each contender writes a lease, `locks/<host>-<pid>-<random>.json`
//! ([`lease`]), and takes the lock only when a listing right after shows
//! its lease alone (as restic does). It first lists the leases: one that
//! holds refuses it at once; one that expired, or whose process on this
//! host is gone, is reported as stale with what to do, never taken over
//! silently. Two contenders that wrote at the same moment both see the
//! other: both remove their lease and try again after a random wait, the
//! one whose lease came first sooner; after a few tries the lock is refused.
//! Where `hwdr repo init` found that the store honours create-only writes,
//! the winner also puts the object `lock` create-only (the guard hwdr had
//! before leases, which `hwdr unlock` and older tools read).
//!
//! The holder renews its lease on a thread of its own. When the lease is
//! removed (`hwdr unlock --force`) or cannot be renewed for half its length,
//! every long loop of the command fails with "lost the repository lock:
//! <why>" (through [`crate::cancel`]), before any contender could judge the
//! lease expired. Dropping the lock (on every exit path: errors, panics
//! unwinding, SIGTERM) stops the renewal and removes its objects.

mod lease;
#[cfg(test)]
mod tests;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::{Backend, ObjectKey, PutOptions, StoreError};
use crate::cancel::{self, Stop, Watch};
use crate::exit::HwdrError;
use lease::{Found, Own, Renewal, Written};
pub use lease::{Lease, LeaseSettings};

/// Names of the objects [`probe_create_only`] writes (and removes).
pub const PROBE_PREFIX: &str = "hwdr-probe-";

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// Start time of the process (clock ticks since boot), to tell a reused pid.
    pub pid_start: Option<u64>,
    pub since: DateTime<Utc>,
    /// `backup`, `restore`, `prune`, ...
    pub operation: String,
    pub backup_id: Option<String>,
}

impl LockInfo {
    /// A lock record for this process.
    pub fn for_this_process(operation: &str, backup_id: Option<String>, now: DateTime<Utc>) -> LockInfo {
        let pid = std::process::id();
        LockInfo {
            host: this_host(),
            pid,
            pid_start: process_start(pid),
            since: now,
            operation: operation.to_owned(),
            backup_id,
        }
    }

    /// Whether the holder is known to be dead: it ran on this host and its pid
    /// is gone or belongs to a newer process.
    pub fn is_stale(&self) -> bool {
        if self.host != this_host() {
            return false;
        }
        match (process_start(self.pid), self.pid_start) {
            (None, _) => true,
            (Some(now), Some(then)) => now != then,
            (Some(_), None) => false,
        }
    }

    /// "backup of backup <id> by pid <pid> on host <host> since <time>".
    pub fn describe(&self) -> String {
        let id = self
            .backup_id
            .as_deref()
            .map(|id| format!(" of backup {id}"))
            .unwrap_or_default();
        format!(
            "{}{id} by pid {} on host {} since {}",
            self.operation,
            self.pid,
            self.host,
            self.since.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A held lock; dropping it stops the renewal and removes its lease (and
/// the object `lock`, if it took it).
#[derive(Debug)]
pub struct RepoLock {
    backend: Arc<dyn Backend>,
    info: LockInfo,
    key: ObjectKey,
    renewal: Renewal,
    /// Removes the lease when dropped (after [`RepoLock`]'s own drop).
    _lease: Written,
    /// It took the object `lock` too.
    guarded: bool,
    acquired: SystemTime,
    stop: Arc<Stop>,
    _watch: Watch,
}

/// One try to take the lock.
enum Attempt {
    /// The lease is alone: the lock is ours.
    Won(Won),
    /// Another contender's lease (that holds); whether ours came first.
    Met(Box<Found>, bool),
}

/// A lease that is alone in the store.
struct Won {
    lease: Written,
    /// Its `modified` (the store's clock).
    modified: SystemTime,
    /// Before it was written (this node's clock).
    written_at: Instant,
}

impl RepoLock {
    /// Takes the lock or explains who holds it; `guard`: also put the object
    /// `lock` create-only (where the store honours that).
    pub fn acquire(backend: Arc<dyn Backend>, info: LockInfo, guard: bool) -> Result<RepoLock> {
        let mut settings = LeaseSettings::default();
        // The tests' build may shorten the lease (src/fault.rs).
        if let Some(ms) = crate::fault::value("lock-lease-ms").and_then(|ms| ms.parse().ok()) {
            settings.lease = Duration::from_millis(ms);
        }
        RepoLock::acquire_with(backend, info, guard, &settings)
    }

    /// [`RepoLock::acquire`] with leases of `settings`.
    pub fn acquire_with(
        backend: Arc<dyn Backend>,
        info: LockInfo,
        guard: bool,
        settings: &LeaseSettings,
    ) -> Result<RepoLock> {
        let own = Own::new(&info, settings.lease)?;
        let mut met = None;
        for n in 0..settings.attempts.max(1) {
            if let Some((_, first)) = &met {
                // The contender whose lease came first tries again first.
                cancel::sleep(lease::jitter(settings.backoff, if *first { 1 } else { 3 }))?;
            }
            let previous = met.as_ref().map(|(other, _): &(Box<Found>, bool)| &other.key);
            match attempt(&backend, &own, n == 0, previous)? {
                Attempt::Won(won) => return RepoLock::hold(backend, info, guard, &own, won, settings),
                Attempt::Met(other, first) => met = Some((other, first)),
            }
        }
        match met {
            Some((other, _)) => Err(locked(backend.as_ref(), &other).into()),
            None => bail!("taking the lock of {}: no attempt was made", backend.location()),
        }
    }

    /// Holds the lock of a lease that won: renews it and, with `guard`,
    /// takes the object `lock` (else checks nobody wrote it by hand or with
    /// an older hwdr).
    fn hold(
        backend: Arc<dyn Backend>,
        info: LockInfo,
        guard: bool,
        own: &Own,
        won: Won,
        settings: &LeaseSettings,
    ) -> Result<RepoLock> {
        let stop = Arc::new(Stop::default());
        let renewal = Renewal::start(backend.clone(), own, settings.lease, won.written_at, stop.clone())?;
        let mut lock = RepoLock {
            _watch: cancel::watch(&stop),
            backend,
            info,
            key: own.key.clone(),
            renewal,
            _lease: won.lease,
            guarded: false,
            acquired: won.modified,
            stop,
        };
        let b = lock.backend.as_ref();
        if guard {
            let body = serde_json::to_vec_pretty(&lock.info)?;
            match b.put(&ObjectKey::lock(), &mut &body[..], PutOptions::create_only()) {
                Ok(_) => lock.guarded = true,
                Err(StoreError::AlreadyExists(_)) => return Err(held_error(b).into()),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("taking the lock of {}", b.location()))),
            }
        } else if !matches!(read(b), Ok(None)) {
            return Err(held_error(b).into());
        }
        Ok(lock)
    }

    /// Who holds it.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Its lease.
    pub fn lease(&self) -> &ObjectKey {
        &self.key
    }

    /// When it was taken by the store's clock (its lease's first write): the
    /// time to compare the store's `modified` times with.
    pub fn acquired(&self) -> SystemTime {
        self.acquired
    }

    /// Why the lock was lost, if it was (then every [`cancel::check`] fails).
    pub fn lost(&self) -> Option<String> {
        self.stop.reason()
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.renewal.stop();
        // Only remove the object `lock` if it is still ours.
        if self.guarded && read(self.backend.as_ref()).ok().flatten().as_ref() == Some(&self.info) {
            let _ = self.backend.delete(&ObjectKey::lock());
        }
    }
}

/// One try: list the leases; none there → write ours and list again.
/// `first`: the first try, where a lease that holds refuses at once (in
/// later ones it may be a contender's that is about to go). `previous`: the
/// contender's lease met last time: still there after a back-off, its
/// contender won and holds the lock, so it refuses too (else a loser would
/// wait out the winner's whole run and proceed after it).
fn attempt(backend: &Arc<dyn Backend>, own: &Own, first: bool, previous: Option<&ObjectKey>) -> Result<Attempt> {
    let b = backend.as_ref();
    let mut before = lease::list(b)?;
    if !before.is_empty() {
        let now = lease::store_now(b, &own.name)?;
        if let Some(refused) = refused(b, &before, now) {
            return Err(refused.into());
        }
        if let Some(held) = before.iter().find(|f| Some(&f.key) == previous) {
            return Err(locked(b, held).into());
        }
        let other = before.swap_remove(0);
        if first {
            return Err(locked(b, &other).into());
        }
        return Ok(Attempt::Met(Box::new(other), true));
    }
    let written_at = Instant::now();
    let written = own.write(backend)?;
    let after = lease::list(b)?;
    let Some(modified) = after.iter().find(|f| f.key == own.key).map(|f| f.modified) else {
        bail!(
            "{} did not list the lease {} just written: the lock needs a store whose listings show every \
             finished write",
            b.location(),
            own.key
        );
    };
    let mut others: Vec<Found> = after.into_iter().filter(|f| f.key != own.key).collect();
    if others.is_empty() {
        return Ok(Attempt::Won(Won {
            lease: written,
            modified,
            written_at,
        }));
    }
    written.remove()?;
    if let Some(refused) = refused(b, &others, modified) {
        return Err(refused.into());
    }
    let first = others.iter().all(|o| (modified, &own.key) < (o.modified, &o.key));
    Ok(Attempt::Met(Box::new(others.swap_remove(0)), first))
}

/// The refusal for leases that do not hold, if any does not: unreadable,
/// expired at the store's time `now`, or of a process on this host that is gone.
fn refused(backend: &dyn Backend, found: &[Found], now: SystemTime) -> Option<HwdrError> {
    found.iter().find_map(|f| {
        let at = backend.location_of(&f.key);
        let stale = |why: String| {
            HwdrError::LockHeld(format!(
                "stale lock {at}: {why}; check the backup it left, then run `hwdr unlock`"
            ))
        };
        match &f.lease {
            Err(e) => Some(HwdrError::LockHeld(format!(
                "the repository lock {at} exists but is unreadable: {e}"
            ))),
            Ok(lease) if lease.info.is_stale() => {
                Some(stale(format!("{} but that process is gone", lease.info.describe())))
            }
            Ok(lease) => f.expired(now).map(|ago| {
                stale(format!(
                    "{} but that process is gone (its lease ran out {}s ago)",
                    lease.info.describe(),
                    ago.as_secs()
                ))
            }),
        }
    })
}

/// The refusal for a lease that holds.
fn locked(backend: &dyn Backend, holder: &Found) -> HwdrError {
    let at = backend.location_of(&holder.key);
    match &holder.lease {
        Ok(lease) => HwdrError::LockHeld(format!("the repository is locked: {} ({at})", lease.info.describe())),
        Err(e) => HwdrError::LockHeld(format!("the repository lock {at} exists but is unreadable: {e}")),
    }
}

/// The refusal for the object `lock`.
fn held_error(backend: &dyn Backend) -> HwdrError {
    let at = backend.location_of(&ObjectKey::lock());
    match read(backend) {
        Ok(Some(holder)) if holder.is_stale() => HwdrError::LockHeld(format!(
            "stale lock {at}: {} but that process is gone; check the backup it left, then run `hwdr unlock`",
            holder.describe()
        )),
        Ok(Some(holder)) => HwdrError::LockHeld(format!("the repository is locked: {} ({at})", holder.describe())),
        Ok(None) => HwdrError::LockHeld(format!("the repository lock {at} was just released; try again")),
        Err(e) => HwdrError::LockHeld(format!("the repository lock {at} exists but is unreadable: {e:#}")),
    }
}

/// Reads the object `lock`; `None` when there is none.
pub fn read(backend: &dyn Backend) -> Result<Option<LockInfo>> {
    let mut bytes = Vec::new();
    match backend.get(&ObjectKey::lock()) {
        Ok(mut r) => r.read_to_end(&mut bytes).context("reading the repository lock")?,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context("reading the repository lock")),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("parsing the lock {}", backend.location_of(&ObjectKey::lock())))
}

/// Who holds the lock: the object `lock` if there is one, else the oldest
/// lease (an expired one too: it holds the repository until `hwdr unlock`).
pub fn holder(backend: &dyn Backend) -> Result<Option<LockInfo>> {
    Ok(holders(backend)?.into_iter().next())
}

/// Everyone named by the lock's objects, the holder first (see [`holder`]):
/// while a contender tries, its lease is there for a moment too.
pub fn holders(backend: &dyn Backend) -> Result<Vec<LockInfo>> {
    let mut leases: Vec<LockInfo> = lease::list(backend)?
        .into_iter()
        .filter_map(|f| f.lease.ok().map(|l| l.info))
        .collect();
    leases.sort_by_key(|info| info.since);
    let guard = read(backend)?;
    let mut all: Vec<LockInfo> = guard.clone().into_iter().collect();
    all.extend(leases.into_iter().filter(|info| Some(info) != guard.as_ref()));
    Ok(all)
}

/// A holder `hwdr unlock` removed.
#[derive(Debug)]
pub struct Removed {
    /// Who it was; `None` for an unreadable lease.
    pub holder: Option<LockInfo>,
    /// Why it could go: its process is gone, its lease ran out, `--force`.
    pub why: String,
    /// Where its objects were.
    pub objects: Vec<String>,
}

impl Removed {
    /// "backup of backup <id> by pid … since …: that process is gone (<objects>)".
    pub fn describe(&self) -> String {
        let who = self
            .holder
            .as_ref()
            .map_or_else(|| "an unreadable lease".to_owned(), LockInfo::describe);
        format!("{who}: {} ({})", self.why, self.objects.join(", "))
    }
}

/// A holder as `hwdr unlock` finds it: its lease and the object `lock`, or either.
struct Held {
    info: Result<LockInfo, String>,
    expired: Option<Duration>,
    keys: Vec<ObjectKey>,
}

/// Removes every holder of the lock, leases and the object `lock`: only
/// stale ones (the process on this host is gone, or the lease ran out by
/// the store's clock) unless `force`. Nothing is removed if one may not be.
pub fn unlock(backend: &dyn Backend, force: bool) -> Result<Vec<Removed>> {
    let guard = read(backend)?;
    let leases = lease::list(backend)?;
    let now = if leases.is_empty() {
        SystemTime::UNIX_EPOCH
    } else {
        lease::store_now(
            backend,
            &format!("unlock-{}-{:016x}", std::process::id(), lease::random()),
        )?
    };
    let mut held: Vec<Held> = leases
        .into_iter()
        .map(|f| Held {
            expired: f.expired(now),
            info: f.lease.map(|l| l.info),
            keys: vec![f.key],
        })
        .collect();
    if let Some(guard) = guard {
        match held.iter_mut().find(|h| h.info.as_ref() == Ok(&guard)) {
            Some(h) => h.keys.insert(0, ObjectKey::lock()),
            None => held.insert(
                0,
                Held {
                    info: Ok(guard),
                    expired: None,
                    keys: vec![ObjectKey::lock()],
                },
            ),
        }
    }
    let mut removed = Vec::new();
    for h in held {
        let why = match (&h.info, h.expired) {
            (Ok(info), _) if info.is_stale() => "that process is gone".to_owned(),
            (Ok(_), Some(ago)) => format!("its lease ran out {}s ago", ago.as_secs()),
            _ if force => "removed with --force".to_owned(),
            (Ok(info), None) => bail!(HwdrError::LockHeld(format!(
                "the lock is not stale: {}; use --force only if you know that process is gone",
                info.describe()
            ))),
            (Err(e), _) => bail!(HwdrError::LockHeld(format!(
                "the lease {} is unreadable ({e}); use --force to remove it",
                backend.location_of(&h.keys[0])
            ))),
        };
        let objects = h.keys.iter().map(|k| backend.location_of(k)).collect();
        removed.push((
            h.keys,
            Removed {
                holder: h.info.ok(),
                why,
                objects,
            },
        ));
    }
    for (keys, _) in &removed {
        for key in keys {
            backend
                .delete(key)
                .with_context(|| format!("removing {}", backend.location_of(key)))?;
        }
    }
    Ok(removed.into_iter().map(|(_, r)| r).collect())
}

/// Whether the store honours create-only puts: a probe object put
/// create-only twice must fail the second time (`hwdr repo init` records
/// it; the probe is removed).
pub fn probe_create_only(backend: &dyn Backend) -> Result<bool> {
    let key = ObjectKey::parse(&format!("{PROBE_PREFIX}{:016x}", lease::random()))?;
    let what = || format!("probing {} for create-only writes", backend.location());
    backend
        .put(&key, &mut &b"1"[..], PutOptions::create_only())
        .with_context(what)?;
    let again = backend.put(&key, &mut &b"2"[..], PutOptions::create_only());
    let removed = backend.delete(&key);
    let honoured = match again {
        Ok(_) => false,
        Err(StoreError::AlreadyExists(_)) => true,
        Err(e) => return Err(anyhow::Error::new(e).context(what())),
    };
    removed.with_context(what)?;
    Ok(honoured)
}

/// This host's name.
pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The start time of `pid` in clock ticks since boot, if it runs.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
