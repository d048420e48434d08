//! Sealing and opening as streams: a put reads its source through a
//! [`Sealer`], a get reads the stored bytes through an [`Opener`]; each holds
//! about two segments in memory, whatever the object's size.

use std::io::{self, Read};
use std::sync::Arc;

use super::aead::Cipher;

use super::format::{open_segment, read_full, seal_segment, Frame, Header, FOOTER_LEN, FRAME_LEN, HEADER_LEN};
use crate::repo::store::{Hashing, ObjectKey, Written};

/// How objects are sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Segments of `1 << segment_shift` bytes (12 to 24).
    pub segment_shift: u8,
    /// The zstd level, `None` for no compression.
    pub compression: Option<i32>,
}

impl Default for Settings {
    /// 1 MiB segments, zstd level 3.
    fn default() -> Settings {
        Settings {
            segment_shift: 20,
            compression: Some(3),
        }
    }
}

/// The sample the compression test compresses: if level 1 saves less than a
/// tenth of it, the object is stored as it is (Parquet, ORC, encrypted data).
const SAMPLE: usize = 64 << 10;

/// Whether compressing `first` (the object's start) pays.
fn worth_compressing(first: &[u8]) -> bool {
    let sample = &first[..first.len().min(SAMPLE)];
    match zstd::bulk::compress(sample, 1) {
        Ok(c) => !sample.is_empty() && (c.len() as f64) < 0.9 * sample.len() as f64,
        Err(_) => false,
    }
}

/// Reads a source and yields its sealed form, hashing the plaintext.
pub(super) struct Sealer<'a> {
    source: Hashing<&'a mut dyn Read>,
    cipher: Arc<Cipher>,
    name: ObjectKey,
    settings: Settings,
    /// `None` until the first segment is read.
    header: Option<Header>,
    /// The segment read ahead (the one before it is last only if this is empty).
    ahead: Vec<u8>,
    index: u64,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<'a> Sealer<'a> {
    pub fn new(cipher: Arc<Cipher>, name: &ObjectKey, settings: Settings, source: &'a mut dyn Read) -> Self {
        Sealer {
            source: Hashing::new(source),
            cipher,
            name: name.clone(),
            settings,
            header: None,
            ahead: Vec::new(),
            index: 0,
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    /// The plaintext's size and SHA-256 (once everything was read).
    pub fn finish(self) -> Written {
        self.source.finish()
    }

    fn read_segment(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 1 << self.settings.segment_shift];
        let n = read_full(&mut self.source, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Fills `out` with the next piece: the header, or a segment.
    fn produce(&mut self) -> io::Result<()> {
        let header = match self.header {
            Some(header) => header,
            None => {
                self.ahead = self.read_segment()?;
                let compressed = self.settings.compression.is_some() && worth_compressing(&self.ahead);
                let header = Header {
                    compressed,
                    shift: self.settings.segment_shift,
                };
                self.header = Some(header);
                self.out = header.encode().to_vec();
                return Ok(());
            }
        };
        let current = std::mem::take(&mut self.ahead);
        // A full segment may be the last: only the next read tells.
        if current.len() as u64 == header.segment_size() {
            self.ahead = self.read_segment()?;
        }
        let last = self.ahead.is_empty();
        let total = last.then(|| self.index * header.segment_size() + current.len() as u64);
        let level = self.settings.compression.filter(|_| header.compressed);
        self.out = seal_segment(&self.cipher, &self.name, &header, self.index, &current, total, level)?;
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

impl Read for Sealer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.pos = 0;
            self.out.clear();
            self.produce()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A sealed object found tampered with or damaged, naming it: every read of
/// its bytes fails with this (kind `InvalidData`, carrying a [`Tampered`]).
pub fn tampered(location: &str, segment: Option<u64>, why: &str) -> io::Error {
    let at = segment.map(|n| format!(" segment {n}")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::InvalidData,
        Tampered(format!("tampered or damaged: {location}{at} ({why})")),
    )
}

/// What a read of a sealed object that fails its tags carries: the stored
/// bytes are not what was sealed under this name (damage, not an outage).
#[derive(Debug)]
pub struct Tampered(pub String);

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Tampered {}

impl Tampered {
    /// Whether `e`, or an error it wraps, says a sealed object was tampered with.
    pub fn is_in(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cause = Some(e);
        while let Some(c) = cause {
            let io_inner = c.downcast_ref::<io::Error>().and_then(|io| io.get_ref());
            if c.is::<Tampered>() || io_inner.is_some_and(|i| i.is::<Tampered>()) {
                return true;
            }
            cause = c.source();
        }
        false
    }
}

/// Reads sealed bytes from segment `index` on and yields the plaintext,
/// checking every tag; `skip` bytes dropped first, at most `take` yielded.
pub(super) struct Opener {
    stored: Box<dyn Read + Send>,
    cipher: Arc<Cipher>,
    name: ObjectKey,
    location: String,
    header: Header,
    index: u64,
    skip: u64,
    take: u64,
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Opener {
    /// A whole object: reads its header first.
    pub fn whole(
        mut stored: Box<dyn Read + Send>,
        cipher: Arc<Cipher>,
        name: &ObjectKey,
        location: String,
    ) -> io::Result<Opener> {
        let header = read_header(&mut stored, &location)?;
        Ok(Opener::at(stored, cipher, name, location, header, 0, 0, u64::MAX))
    }

    /// Stored bytes from the start of segment `index` on.
    #[allow(clippy::too_many_arguments)]
    pub fn at(
        stored: Box<dyn Read + Send>,
        cipher: Arc<Cipher>,
        name: &ObjectKey,
        location: String,
        header: Header,
        index: u64,
        skip: u64,
        take: u64,
    ) -> Opener {
        Opener {
            stored,
            cipher,
            name: name.clone(),
            location,
            header,
            index,
            skip,
            take,
            out: Vec::new(),
            pos: 0,
            done: false,
        }
    }

    fn damaged(&self, why: &str) -> io::Error {
        tampered(&self.location, Some(self.index), why)
    }

    /// Reads exactly `buf`; a short read is a truncated object.
    fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if read_full(&mut self.stored, buf)? < buf.len() {
            return Err(self.damaged("truncated"));
        }
        Ok(())
    }

    /// Opens the next segment into `out`.
    fn next_segment(&mut self) -> io::Result<()> {
        let mut frame = [0u8; FRAME_LEN];
        self.exact(&mut frame)?;
        let frame = Frame::decode(&frame).ok_or_else(|| self.damaged("bad frame"))?;
        if u64::from(frame.sealed_len) > self.header.max_sealed() {
            return Err(self.damaged("bad frame"));
        }
        let mut sealed = vec![0u8; frame.sealed_len as usize];
        self.exact(&mut sealed)?;
        let total = if frame.last {
            let mut footer = [0u8; FOOTER_LEN];
            self.exact(&mut footer)?;
            Some(u64::from_le_bytes(footer))
        } else {
            None
        };
        let plain = open_segment(
            &self.cipher,
            &self.name,
            &self.header,
            self.index,
            &frame,
            &sealed,
            total,
        )
        .map_err(|why| self.damaged(why))?;
        if frame.last && read_full(&mut self.stored, &mut [0u8; 1])? != 0 {
            return Err(self.damaged("bytes after its end"));
        }
        self.index += 1;
        self.done = frame.last;
        self.out = plain;
        self.pos = 0;
        Ok(())
    }
}

impl Read for Opener {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.take == 0 {
                return Ok(0);
            }
            if self.pos < self.out.len() {
                let skipped = self.skip.min((self.out.len() - self.pos) as u64) as usize;
                self.pos += skipped;
                self.skip -= skipped as u64;
                let n = buf
                    .len()
                    .min(self.out.len() - self.pos)
                    .min(self.take.min(usize::MAX as u64) as usize);
                if n > 0 || buf.is_empty() {
                    buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
                    self.pos += n;
                    self.take -= n as u64;
                    return Ok(n);
                }
                continue;
            }
            if self.done {
                return Ok(0);
            }
            self.next_segment()?;
        }
    }
}

/// Reads and checks an object's header.
pub(super) fn read_header(stored: &mut dyn Read, location: &str) -> io::Result<Header> {
    let mut bytes = [0u8; HEADER_LEN];
    let n = read_full(stored, &mut bytes)?;
    Header::decode(&bytes[..n]).ok_or_else(|| tampered(location, None, "not a sealed object of this format"))
}
