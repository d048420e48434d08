//! From hwdr's blocking threads to `object_store`'s async calls: one runtime
//! for the process, futures spawned on it and waited for over a channel, and
//! streams pumped through bounded channels into blocking readers and loops.
//!
//! Waiting on a std channel works from any thread (a job's thread, a
//! `spawn_blocking` thread of the agent), where `block_on` would panic on a
//! runtime's own threads.

use std::future::Future;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::OnceLock;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::runtime::{Handle, Runtime};

/// The runtime every object storage call runs on; it lives as long as the
/// process (never dropped, so never dropped on a runtime thread).
fn runtime() -> object_store::Result<&'static Runtime> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let made = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hwdr-store")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    made.as_ref()
        .map_err(|e| failed(format!("starting the object storage runtime: {e}")))
}

/// An error of hwdr's own around a call.
fn failed(why: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "hwdr",
        source: why.into(),
    }
}

/// A handle to spawn on the runtime.
pub(super) fn handle() -> object_store::Result<Handle> {
    Ok(runtime()?.handle().clone())
}

/// Runs `fut` on the runtime and waits for it here.
pub(super) fn wait<T, F>(fut: F) -> object_store::Result<T>
where
    F: Future<Output = object_store::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(failed("an object storage call ended without an answer".into())))
}

/// Pumps `stream` into a channel of `bound` items, on a blocking thread of
/// the runtime: the receiver reads at its own pace and the stream waits.
pub(super) fn pump<T: Send + 'static>(
    stream: BoxStream<'static, T>,
    bound: usize,
) -> object_store::Result<Receiver<T>> {
    let (tx, rx) = sync_channel(bound);
    let runtime = runtime()?;
    let handle = runtime.handle().clone();
    runtime.spawn_blocking(move || {
        let mut stream = stream;
        while let Some(item) = handle.block_on(stream.next()) {
            if tx.send(item).is_err() {
                // The reader went away: stop fetching.
                return;
            }
        }
    });
    Ok(rx)
}

/// A blocking reader over a pumped stream of chunks; an error of the stream
/// is an error of the read, naming the object.
pub(super) struct StreamRead {
    chunks: Receiver<Result<Bytes, object_store::Error>>,
    current: Bytes,
    what: String,
}

impl StreamRead {
    /// Reads `stream`, which fetches object `what` (for messages).
    pub(super) fn new(
        stream: BoxStream<'static, Result<Bytes, object_store::Error>>,
        what: String,
    ) -> object_store::Result<StreamRead> {
        Ok(StreamRead {
            // Four chunks ahead: enough to keep the network busy, bounded.
            chunks: pump(stream, 4)?,
            current: Bytes::new(),
            what,
        })
    }
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(Ok(chunk)) => self.current = chunk,
                Ok(Err(e)) => return Err(io::Error::other(format!("reading {}: {e}", self.what))),
                // The stream ended.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
