//! Moving a node's files several at once (`[repository]
//! upload_parallelism`): the caller feeds items from its own loop (an
//! inventory walk, a list of files) into a channel bounded to twice the
//! thread count, and that many scoped threads take them, each with its own
//! [`Worker`] (its own batch). The first error, or the job being stopped,
//! stops the feeder and every thread after the item it is on, and is what
//! [`run`] returns. A worker's [`Worker::finish`] (a batch's commit) runs
//! only once every item is done and nothing failed: a failed job makes
//! nothing of its work visible, and a job succeeds only after every finish.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};

use anyhow::{anyhow, Result};

use crate::job::JobControl;

/// What one thread does with the items it takes.
pub(crate) trait Worker<T> {
    /// What the thread hands back once all is done.
    type Done: Send;

    /// Handles one item.
    fn take(&mut self, item: T) -> Result<()>;

    /// Ends the thread's work (commits its batch), once every thread's
    /// items are done and none failed.
    fn finish(self) -> Result<Self::Done>;
}

/// The feeder's end of the channel.
pub(crate) struct Feed<'s, T> {
    tx: SyncSender<T>,
    shared: &'s Shared<T>,
    control: &'s JobControl,
}

impl<T> Feed<'_, T> {
    /// Hands `item` to the threads, waiting while the channel is full.
    /// Fails once the work stopped (an error, the job stopped): the feeder
    /// should then return the error, which [`run`] replaces by the cause.
    pub(crate) fn send(&self, item: T) -> Result<()> {
        self.control.check()?;
        if self.shared.stopped() {
            return Err(anyhow!(Stopped));
        }
        self.tx.send(item).map_err(|_| anyhow!(Stopped))
    }
}

impl<T> Drop for Feed<'_, T> {
    fn drop(&mut self) {
        // A feeder that panics must not let the threads take the end of the
        // feed for a whole feed (and commit).
        if std::thread::panicking() {
            self.shared.fail(anyhow!("the feeder of the transfers panicked"));
        }
    }
}

/// The error a feed's `send` fails with once the threads stopped.
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the transfers stopped")
    }
}

/// What the threads and the feeder share.
struct Shared<T> {
    /// The items; dropped once the work stops, which wakes a waiting feeder.
    rx: Mutex<Option<Receiver<T>>>,
    stop: AtomicBool,
    /// The first error.
    error: Mutex<Option<anyhow::Error>>,
    /// Threads still taking items, and the wait for none.
    working: Mutex<usize>,
    all_done: Condvar,
}

fn lock<V>(m: &Mutex<V>) -> MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Shared<T> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records `e` (if it is the first) and stops everything.
    fn fail(&self, e: anyhow::Error) {
        lock(&self.error).get_or_insert(e);
        self.stop.store(true, Ordering::SeqCst);
        // The items left are not wanted: dropping them wakes a feeder waiting
        // on a full channel. A thread holding them is in `next`, and drops
        // them when its wait ends (an item, or the end of the feed).
        match self.rx.try_lock() {
            Ok(mut rx) => drop(rx.take()),
            Err(TryLockError::Poisoned(p)) => drop(p.into_inner().take()),
            Err(TryLockError::WouldBlock) => {}
        }
    }

    /// The next item, or `None` once the feed ended or the work stopped.
    fn next(&self) -> Option<T> {
        let mut rx = lock(&self.rx);
        let item = if self.stopped() { None } else { rx.as_ref()?.recv().ok() };
        if self.stopped() {
            rx.take();
            return None;
        }
        item
    }

    /// Waits until no thread takes items any more.
    fn wait_all(&self) {
        let mut working = lock(&self.working);
        while *working > 0 {
            working = self.all_done.wait(working).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Counts a thread out of the work when dropped, also when it panics.
struct Leaving<'s, T>(&'s Shared<T>);

impl<T> Drop for Leaving<'_, T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail(anyhow!("a transfer thread panicked"));
        }
        let mut working = lock(&self.0.working);
        *working -= 1;
        if *working == 0 {
            self.0.all_done.notify_all();
        }
    }
}

/// Runs `feed` on this thread and `threads` threads, each with a worker from
/// `new_worker` (made on its own thread), taking what it sends, checking
/// `control` before each item. Returns every worker's [`Worker::finish`],
/// or the first error.
pub(crate) fn run<T, W>(
    threads: usize,
    control: &JobControl,
    new_worker: impl Fn() -> Result<W> + Sync,
    feed: impl FnOnce(&Feed<'_, T>) -> Result<()>,
) -> Result<Vec<W::Done>>
where
    T: Send,
    W: Worker<T>,
{
    let threads = threads.max(1);
    let (tx, rx) = mpsc::sync_channel(2 * threads);
    let shared = Shared {
        rx: Mutex::new(Some(rx)),
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
        working: Mutex::new(threads),
        all_done: Condvar::new(),
    };
    let done = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| scope.spawn(|| work(&shared, control, &new_worker)))
            .collect();
        let feeder = Feed {
            tx,
            shared: &shared,
            control,
        };
        // Recorded before the channel closes: a thread that sees it closed
        // must know whether the feed was whole.
        if let Err(e) = feed(&feeder) {
            shared.fail(e);
        }
        drop(feeder);
        let done: Vec<_> = handles.into_iter().filter_map(|h| h.join().ok().flatten()).collect();
        done
    });
    let error = lock(&shared.error).take();
    match error {
        Some(e) if e.is::<Stopped>() => Err(anyhow!("the transfers stopped without an error")),
        Some(e) => Err(e),
        None if done.len() == threads => Ok(done),
        None => Err(anyhow!("a transfer thread ended without its result")),
    }
}

/// One thread: takes items until the feed ends, then, once all threads are
/// done and none failed, finishes.
fn work<T, W: Worker<T>>(
    shared: &Shared<T>,
    control: &JobControl,
    new_worker: &(impl Fn() -> Result<W> + Sync),
) -> Option<W::Done> {
    let worker = {
        let _leaving = Leaving(shared);
        let taken = new_worker().and_then(|mut worker| {
            while let Some(item) = shared.next() {
                control.check()?;
                worker.take(item)?;
            }
            Ok(worker)
        });
        match taken {
            Ok(worker) => worker,
            Err(e) => {
                shared.fail(e);
                return None;
            }
        }
    };
    shared.wait_all();
    if shared.stopped() {
        return None;
    }
    match worker.finish() {
        Ok(done) => Some(done),
        Err(e) => {
            shared.fail(e);
            None
        }
    }
}

/// Runs `work` on every item of `items`, `threads` at once (see [`run`]);
/// the results in the items' order.
pub(crate) fn map<T, R>(
    threads: usize,
    control: &JobControl,
    items: impl IntoIterator<Item = T>,
    work: impl Fn(T) -> Result<R> + Sync,
) -> Result<Vec<R>>
where
    T: Send,
    R: Send,
{
    /// Results with their item's place.
    struct Collect<'w, F, R> {
        work: &'w F,
        out: Vec<(usize, R)>,
    }

    impl<T, R: Send, F: Fn(T) -> Result<R>> Worker<(usize, T)> for Collect<'_, F, R> {
        type Done = Vec<(usize, R)>;

        fn take(&mut self, (i, item): (usize, T)) -> Result<()> {
            self.out.push((i, (self.work)(item)?));
            Ok(())
        }

        fn finish(self) -> Result<Self::Done> {
            Ok(self.out)
        }
    }

    let new_worker = || {
        Ok(Collect {
            work: &work,
            out: Vec::new(),
        })
    };
    let done = run(threads, control, new_worker, |feed| {
        items.into_iter().enumerate().try_for_each(|item| feed.send(item))
    })?;
    let mut all: Vec<(usize, R)> = done.into_iter().flatten().collect();
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    /// Counts the threads inside `f` at once.
    struct Gauge {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    impl Gauge {
        fn new() -> Gauge {
            Gauge {
                now: AtomicUsize::new(0),
                max: AtomicUsize::new(0),
            }
        }

        fn inside<R>(&self, f: impl FnOnce() -> R) -> R {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            let r = f();
            self.now.fetch_sub(1, Ordering::SeqCst);
            r
        }
    }

    #[test]
    fn at_most_n_items_are_worked_on_at_once_and_results_keep_their_order() {
        for threads in [1, 4] {
            let gauge = Gauge::new();
            let control = JobControl::default();
            let out = map(threads, &control, 0..24u64, |i| {
                gauge.inside(|| std::thread::sleep(Duration::from_millis(10)));
                Ok(i * 2)
            })
            .unwrap();
            assert_eq!(out, (0..24).map(|i| i * 2).collect::<Vec<_>>());
            let max = gauge.max.load(Ordering::SeqCst);
            assert!(max <= threads, "{max} at once with {threads} threads");
            if threads > 1 {
                assert!(max > 1, "never more than one at once with {threads} threads");
            }
        }
    }

    #[test]
    fn the_first_error_stops_the_rest_and_is_returned() {
        let control = JobControl::default();
        let started = AtomicUsize::new(0);
        let err = map(4, &control, 0..1000u32, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            if i == 10 {
                anyhow::bail!("copying file {i}: disk full");
            }
            std::thread::sleep(Duration::from_millis(2));
            Ok(i)
        })
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "copying file 10: disk full");
        // The threads took no more than what was in flight and queued.
        let started = started.load(Ordering::SeqCst);
        assert!(started < 10 + 4 + 2 * 4 + 4, "{started} items started");
    }

    #[test]
    fn a_feeder_error_stops_the_threads_and_nothing_is_finished() {
        struct Batch<'a>(&'a AtomicUsize);
        impl Worker<u32> for Batch<'_> {
            type Done = ();
            fn take(&mut self, _: u32) -> Result<()> {
                Ok(())
            }
            fn finish(self) -> Result<()> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
        let finished = AtomicUsize::new(0);
        let control = JobControl::default();
        let err = run(
            3,
            &control,
            || Ok(Batch(&finished)),
            |feed| {
                (0..20).try_for_each(|i| feed.send(i))?;
                anyhow::bail!("3 of 20 assigned blocks are not in this node's inventory")
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("not in this node's inventory"), "{err}");
        assert_eq!(finished.load(Ordering::SeqCst), 0);

        let done = run(
            3,
            &control,
            || Ok(Batch(&finished)),
            |feed| (0..20).try_for_each(|i| feed.send(i)),
        )
        .unwrap();
        assert_eq!((done.len(), finished.load(Ordering::SeqCst)), (3, 3));
    }

    #[test]
    fn stopping_the_job_stops_every_thread_promptly() {
        let control = JobControl::default();
        let taken = AtomicUsize::new(0);
        let started = Instant::now();
        let err = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(100));
                control.cancel();
            });
            // Each item waits up to a minute, waking when the job is stopped.
            map(4, &control, 0..1000u32, |_| {
                taken.fetch_add(1, Ordering::SeqCst);
                control.sleep(Duration::from_secs(60))
            })
            .unwrap_err()
        });
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(err.to_string().contains("the job was stopped"), "{err}");
        assert_eq!(taken.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_feeder_waiting_on_a_full_channel_wakes_when_the_threads_fail() {
        let control = JobControl::default();
        let err = map(2, &control, 0..10_000u32, |i| -> Result<()> {
            anyhow::bail!("item {i} failed")
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("item "), "{err}");
    }
}
