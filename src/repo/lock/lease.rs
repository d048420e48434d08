//! Leases: the lock's objects `locks/<host>-<pid>-<random>.json`, one per
//! contender, each holding who wrote it ([`LockInfo`]) and for how long it
//! holds after its last write. Its holder writes it again every third of
//! that; a lease not written for longer has expired.
//!
//! Expiry is judged with the store's clock only: a lease's time is the
//! store's `modified`, compared with the `modified` of an object the judge
//! has just written itself. The nodes' clocks never meet, so their skew does
//! not matter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::LockInfo;
use crate::cancel::Stop;
use crate::repo::store::{Backend, ObjectKey, PutOptions, StoreError};

/// How long leases hold and how contenders back off.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// How long a lease holds after its last write. The holder writes it
    /// again every third of it, and stops (the lease lost) when it could not
    /// for half of it.
    pub lease: Duration,
    /// How many times a contender tries when it meets another one taking
    /// the lock at the same moment, before it gives up.
    pub attempts: u32,
    /// The unit of the random wait between those tries.
    pub backoff: Duration,
}

impl Default for LeaseSettings {
    fn default() -> LeaseSettings {
        LeaseSettings {
            lease: Duration::from_secs(60),
            attempts: 5,
            backoff: Duration::from_millis(500),
        }
    }
}

/// What a lease object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it (the same fields as the object `lock`).
    #[serde(flatten)]
    pub info: LockInfo,
    /// How long it holds after its last write, in milliseconds.
    pub lease_ms: u64,
}

/// A lease as a listing finds it.
#[derive(Debug)]
pub(super) struct Found {
    pub key: ObjectKey,
    /// When it was last written (the store's clock).
    pub modified: SystemTime,
    /// What it says, or why it cannot be read.
    pub lease: Result<Lease, String>,
}

impl Found {
    /// How long ago it ran out, at the store's time `now`; `None` while it holds.
    pub fn expired(&self, now: SystemTime) -> Option<Duration> {
        let lease = self.lease.as_ref().ok()?;
        let end = self.modified + Duration::from_millis(lease.lease_ms);
        now.duration_since(end).ok().filter(|d| !d.is_zero())
    }
}

/// Every lease in the store (names under `locks/` not ending in `.json` are
/// not leases; one removed while it is read is skipped).
pub(super) fn list(backend: &dyn Backend) -> Result<Vec<Found>> {
    let mut objects = Vec::new();
    backend
        .list(ObjectKey::LEASES, &mut |o| {
            if o.key.as_str().ends_with(".json") {
                objects.push(o);
            }
            Ok(())
        })
        .with_context(|| format!("listing the leases {}/{}", backend.location(), ObjectKey::LEASES))?;
    let mut found = Vec::new();
    for o in objects {
        let mut bytes = Vec::new();
        let read = match backend.get(&o.key) {
            Ok(mut r) => r.read_to_end(&mut bytes),
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("reading the lease {}", o.key))),
        };
        let lease = read
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
        found.push(Found {
            key: o.key,
            modified: o.modified,
            lease,
        });
    }
    Ok(found)
}

/// The store's time now: the `modified` of an object written for it (named
/// after `name`, not a lease), then removed.
pub(super) fn store_now(backend: &dyn Backend, name: &str) -> Result<SystemTime> {
    let key = ObjectKey::parse(&format!("{}{name}.now", ObjectKey::LEASES))?;
    let what = || format!("asking {} for its time", backend.location());
    backend
        .put(&key, &mut &b""[..], PutOptions::default())
        .with_context(what)?;
    let meta = backend.head(&key);
    let _ = backend.delete(&key);
    meta.with_context(what)?
        .map(|m| m.modified)
        .ok_or_else(|| anyhow::anyhow!("{} lost {key} right after it was written", backend.location()))
}

/// A contender's own lease: its name, key and content.
#[derive(Debug)]
pub(super) struct Own {
    pub name: String,
    pub key: ObjectKey,
    pub body: Vec<u8>,
}

impl Own {
    /// The lease of `info` for `lease`, under a name no other contender has.
    pub fn new(info: &LockInfo, lease: Duration) -> Result<Own> {
        // Only what is safe in any store's names.
        let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let host: String = info.host.chars().map(|c| if safe(c) { c } else { '_' }).collect();
        let name = format!("{host}-{}-{:016x}", info.pid, random());
        let body = serde_json::to_vec_pretty(&Lease {
            info: info.clone(),
            lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
        })?;
        Ok(Own {
            key: ObjectKey::lease(&name)?,
            name,
            body,
        })
    }

    /// Writes it: from then on it is in the store until the [`Written`] is dropped.
    pub fn write(&self, backend: &Arc<dyn Backend>) -> Result<Written> {
        backend
            .put(&self.key, &mut &self.body[..], PutOptions::default())
            .with_context(|| format!("writing the lease {}", backend.location_of(&self.key)))?;
        Ok(Written {
            backend: backend.clone(),
            key: self.key.clone(),
            removed: false,
        })
    }
}

/// A lease written to the store; dropping it removes it.
#[derive(Debug)]
pub(super) struct Written {
    backend: Arc<dyn Backend>,
    key: ObjectKey,
    removed: bool,
}

impl Written {
    /// Removes it now, saying whether that failed.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.backend
            .delete(&self.key)
            .with_context(|| format!("removing the lease {}", self.backend.location_of(&self.key)))
    }
}

impl Drop for Written {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(e) = self.backend.delete(&self.key) {
            warn!("cannot remove the lease {}: {e}", self.backend.location_of(&self.key));
        }
    }
}

/// A random number (for names and waits): std's random hash keys.
pub(super) fn random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A random wait of between `unit * times` and `unit * (times + 1)`.
pub(super) fn jitter(unit: Duration, times: u32) -> Duration {
    let fraction = (random() % 1000) as f64 / 1000.0;
    unit * times + unit.mul_f64(fraction)
}

/// The thread that writes the holder's lease again every third of its
/// length. When the lease was removed, or could not be written for half of
/// its length, it requests the holder's [`Stop`].
#[derive(Debug)]
pub(super) struct Renewal {
    quit: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Renewal {
    /// Starts renewing `own`, last written at `written` (the node's clock).
    pub fn start(
        backend: Arc<dyn Backend>,
        own: &Own,
        lease: Duration,
        written: Instant,
        stop: Arc<Stop>,
    ) -> Result<Renewal> {
        let (quit, quitting) = mpsc::channel();
        let (key, body) = (own.key.clone(), own.body.clone());
        // Half a lease without a renewal, counted from before the last write.
        stop.request_at(
            written + lease / 2,
            lapsed(backend.as_ref(), &key, lease, "no renewal got through"),
        );
        let thread = std::thread::Builder::new()
            .name("hwdr-lease".into())
            .spawn(move || renew(backend.as_ref(), &key, &body, lease, &quitting, &stop))
            .context("starting the thread that renews the lock's lease")?;
        Ok(Renewal {
            quit: Some(quit),
            thread: Some(thread),
        })
    }

    /// Stops renewing (waits for a renewal under way).
    pub fn stop(&mut self) {
        self.quit.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the stop says when the lease could not be renewed in time.
fn lapsed(backend: &dyn Backend, key: &ObjectKey, lease: Duration, why: &str) -> String {
    format!(
        "lost the repository lock: its lease {} could not be renewed for {:.1}s, half its length ({why})",
        backend.location_of(key),
        (lease / 2).as_secs_f64()
    )
}

/// The renewal loop, until `quitting` says stop (or its sender is gone).
fn renew(
    backend: &dyn Backend,
    key: &ObjectKey,
    body: &[u8],
    lease: Duration,
    quitting: &mpsc::Receiver<()>,
    stop: &Stop,
) {
    let mut wait = lease / 3;
    loop {
        if quitting.recv_timeout(wait) != Err(mpsc::RecvTimeoutError::Timeout) {
            return;
        }
        // Lost (half a lease passed): never written again, it may be judged expired.
        if stop.reason().is_some() {
            return;
        }
        let started = Instant::now();
        // Removed (`hwdr unlock --force`): never written back. A removal
        // that falls between this look and the write is undone by the write
        // and goes unnoticed: a window of one request.
        let renewed = match backend.head(key) {
            Ok(None) => {
                stop.request(format!(
                    "lost the repository lock: its lease {} was removed (by `hwdr unlock --force`?)",
                    backend.location_of(key)
                ));
                return;
            }
            // Half a lease may have passed while the look waited.
            Ok(Some(_)) if stop.reason().is_some() => return,
            Ok(Some(_)) => backend.put(key, &mut &body[..], PutOptions::default()),
            Err(e) => Err(e),
        };
        match renewed {
            Ok(_) => {
                stop.request_at(
                    started + lease / 2,
                    lapsed(backend, key, lease, "no renewal got through"),
                );
                wait = lease / 3;
            }
            Err(e) => {
                warn!("cannot renew the lease {}: {e}", backend.location_of(key));
                stop.update_reason(lapsed(backend, key, lease, &format!("last: {e}")));
                // Again soon: the lease is lost once half of it passes.
                wait = lease / 12;
            }
        }
    }
}
