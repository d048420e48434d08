//! One client connection: its requests in turn, each forwarded to the
//! server on a connection of its own with its answer, or faulted (which
//! ends the connection).

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;

use tracing::debug;

use super::http::{copy_body, slow_down, Body, Head};
use super::{Fault, Shared, Side};

/// Serves connection `id` until it ends, a fault ends it or the proxy stops.
pub(super) fn serve(client: TcpStream, id: u64, shared: &Shared) {
    if let Err(e) = serve_requests(client, id, shared) {
        debug!(connection = id, error = %e, "fault proxy: connection ended");
    }
    shared.unregister(id);
}

fn serve_requests(client: TcpStream, id: u64, shared: &Shared) -> io::Result<()> {
    client.set_nodelay(true)?;
    shared.register(id, Side::Client, &client)?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client;
    while let Some(head) = Head::read(&mut reader)? {
        let request = shared.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(fault) = shared.decide() {
            debug!(connection = id, request, ?fault, start = %head.start, "fault proxy: fault");
            return inject(fault, &head, &mut reader, &mut writer, request);
        }
        // A fresh server connection per request: a kept-alive one the server
        // closes just as a request is sent would fail that request.
        let mut server = Upstream::connect(shared, id)?;
        if !forward(&head, &mut reader, &mut writer, &mut server)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Answers the request with `fault` instead of the server's answer.
fn inject(
    fault: Fault,
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    request: u64,
) -> io::Result<()> {
    match fault {
        Fault::SlowDown => {
            // Closing with unread bytes would reset the connection, maybe
            // before the client reads the answer.
            if !head.expects_continue() {
                copy_body(head.request_body()?, reader, &mut io::sink())?;
            }
            writer.write_all(&slow_down(request))?;
            writer.shutdown(Shutdown::Write)
        }
        Fault::Drop => Ok(()),
        // Until the client gives up, or the proxy stops and shuts it down.
        Fault::BlackHole => io::copy(reader, &mut io::sink()).map(drop),
    }
}

/// Passes one request to the server and its answer back; whether the
/// connection may carry another request.
fn forward(
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    server: &mut Upstream,
) -> io::Result<bool> {
    server.writer.write_all(&head.raw)?;
    if head.expects_continue() {
        // The client sends its body after `100 Continue` only.
        let answer = server.read_head()?;
        writer.write_all(&answer.raw)?;
        if !answer.is_interim() {
            let body = answer.response_body(head.method())?;
            copy_body(body, &mut server.reader, writer)?;
            return Ok(false);
        }
    }
    let mut to_server = Tracked::new(&mut server.writer);
    if let Err(e) = copy_body(head.request_body()?, reader, &mut to_server) {
        if !to_server.failed {
            return Err(e);
        }
        // The server answered before it read the whole body (a refused
        // request) and closed: its answer, then the end.
        let answer = server.read_head().map_err(|_| e)?;
        writer.write_all(&answer.raw)?;
        copy_body(answer.response_body(head.method())?, &mut server.reader, writer)?;
        return Ok(false);
    }
    loop {
        let answer = server.read_head()?;
        writer.write_all(&answer.raw)?;
        if answer.is_interim() {
            continue;
        }
        let body = answer.response_body(head.method())?;
        copy_body(body, &mut server.reader, writer)?;
        return Ok(!(head.closes() || answer.closes() || body == Body::UntilClose));
    }
}

/// A writer that remembers whether a write failed.
struct Tracked<'a, W: Write> {
    inner: &'a mut W,
    failed: bool,
}

impl<'a, W: Write> Tracked<'a, W> {
    fn new(inner: &'a mut W) -> Self {
        Tracked { inner, failed: false }
    }
}

impl<W: Write> Write for Tracked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf);
        self.failed |= written.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::Interrupted);
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.inner.flush();
        self.failed |= flushed.is_err();
        flushed
    }
}

/// A connection to the server, for one request.
struct Upstream {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Upstream {
    fn connect(shared: &Shared, id: u64) -> io::Result<Upstream> {
        let stream = TcpStream::connect(shared.upstream)?;
        stream.set_nodelay(true)?;
        shared.register(id, Side::Server, &stream)?;
        Ok(Upstream {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn read_head(&mut self) -> io::Result<Head> {
        Head::read(&mut self.reader)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed without answering"))
    }
}
