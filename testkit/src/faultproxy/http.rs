//! Just enough HTTP/1.1 to find where one message ends and the next
//! begins on a kept-alive connection: heads as read, bodies by
//! `Content-Length`, chunked encoding or the connection's end.

use std::io::{self, BufRead, Read, Write};

/// The most a head may hold (S3 heads are a few KiB).
const MAX_HEAD: usize = 64 * 1024;

/// A request or response head: its bytes as read, first line and headers.
#[derive(Debug)]
pub(super) struct Head {
    /// Every byte of the head, up to and with the blank line.
    pub(super) raw: Vec<u8>,
    /// `GET /b/k HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub(super) start: String,
    headers: Vec<(String, String)>,
}

/// Where a message's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    Empty,
    Length(u64),
    Chunked,
    /// At the end of the connection (a response without length).
    UntilClose,
}

impl Head {
    /// Reads one head; `None` if the stream ends before its first byte.
    pub(super) fn read(from: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut raw = Vec::new();
        loop {
            let before = raw.len();
            let n = (&mut *from)
                .take((MAX_HEAD + 1 - before) as u64)
                .read_until(b'\n', &mut raw)?;
            if n == 0 {
                return match before {
                    0 => Ok(None),
                    _ => Err(invalid("the stream ended inside a head")),
                };
            }
            if raw.len() > MAX_HEAD {
                return Err(invalid("a head over 64 KiB"));
            }
            let line = &raw[before..];
            // Blank lines before a request line are allowed (RFC 9112 2.2).
            if line == b"\r\n" || line == b"\n" {
                if before == 0 {
                    raw.clear();
                    continue;
                }
                return Head::parse(raw).map(Some);
            }
        }
    }

    fn parse(raw: Vec<u8>) -> io::Result<Head> {
        let text = std::str::from_utf8(&raw).map_err(|_| invalid("a head that is not UTF-8"))?;
        let mut lines = text.lines();
        let start = lines.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or_else(|| invalid("a header without ':'"))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        Ok(Head { raw, start, headers })
    }

    /// The value of header `name` (lowercase), the first if repeated.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether header `name` lists `token` (`Connection: close`).
    fn lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// A request's method.
    pub(super) fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or_default()
    }

    /// A response's status code.
    fn status(&self) -> Option<u16> {
        self.start.split(' ').nth(1)?.parse().ok()
    }

    /// Whether the sender closes the connection after this message.
    pub(super) fn closes(&self) -> bool {
        self.lists("connection", "close") || self.start.ends_with("HTTP/1.0")
    }

    /// Whether a request waits for `100 Continue` before its body.
    pub(super) fn expects_continue(&self) -> bool {
        self.lists("expect", "100-continue")
    }

    /// Whether a response is an interim one (`100 Continue`), a final one
    /// following it.
    pub(super) fn is_interim(&self) -> bool {
        self.status().is_some_and(|s| (100..200).contains(&s) && s != 101)
    }

    /// A request's body.
    pub(super) fn request_body(&self) -> io::Result<Body> {
        Ok(match self.framing()? {
            Some(body) => body,
            None => Body::Empty,
        })
    }

    /// The body of this response to a `method` request.
    pub(super) fn response_body(&self, method: &str) -> io::Result<Body> {
        let bodiless = matches!(self.status(), Some(204 | 304) | Some(100..=199));
        if method == "HEAD" || bodiless {
            return Ok(Body::Empty);
        }
        Ok(self.framing()?.unwrap_or(Body::UntilClose))
    }

    /// The body as `Transfer-Encoding` or `Content-Length` frame it.
    fn framing(&self) -> io::Result<Option<Body>> {
        if let Some(te) = self.header("transfer-encoding") {
            if te
                .split(',')
                .next_back()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
            {
                return Ok(Some(Body::Chunked));
            }
            return Err(invalid("a transfer coding other than chunked"));
        }
        match self.header("content-length") {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(|n| Some(Body::Length(n)))
                .map_err(|_| invalid("a bad Content-Length")),
        }
    }
}

/// Copies one body from `from` to `to`, chunk framing included.
pub(super) fn copy_body(body: Body, from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
    match body {
        Body::Empty => Ok(()),
        Body::Length(n) => copy_exact(from, to, n),
        Body::UntilClose => io::copy(from, to).map(drop),
        Body::Chunked => loop {
            let line = read_line(from)?;
            to.write_all(&line)?;
            let text = std::str::from_utf8(&line).map_err(|_| invalid("a bad chunk size"))?;
            let size = text.split(';').next().unwrap_or_default().trim();
            let size = u64::from_str_radix(size, 16).map_err(|_| invalid("a bad chunk size"))?;
            if size == 0 {
                return copy_trailers(from, to);
            }
            copy_exact(from, to, size)?;
            let end = read_line(from)?;
            to.write_all(&end)?;
        },
    }
}

/// The trailer section after the last chunk, up to its blank line.
fn copy_trailers(from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
    loop {
        let line = read_line(from)?;
        to.write_all(&line)?;
        if line == b"\r\n" || line == b"\n" {
            return Ok(());
        }
    }
}

fn copy_exact(from: &mut impl BufRead, to: &mut impl Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut (&mut *from).take(n), to)?;
    if copied < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended inside a body",
        ));
    }
    Ok(())
}

fn read_line(from: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    (&mut *from).take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if !line.ends_with(b"\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stream ended inside a chunk",
        ));
    }
    Ok(line)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The answer of an S3 server asking its client to slow down: a 503 with
/// an S3 XML error body; the connection closes after it.
pub(super) fn slow_down(request_id: u64) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate.</Message>\
         <RequestId>faultproxy-{request_id}</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
