//! The sealed object format, version 1: a header, then segments, each
//! sealed on its own, the last one followed by the plaintext's length.
//!
//! ```text
//! header   "HWDRSEAL" | version 1 | flags (bit 0: segments may be zstd) | segment shift | 5 zero bytes
//! segment  nonce (24, random) | last? (1) | sealed length (u32 LE) | XChaCha20-Poly1305(kind | payload)
//! footer   after the last segment: the plaintext's length (u64 LE)
//! ```
//!
//! A segment holds `1 << shift` plaintext bytes, all but the last exactly
//! that many. Its associated data binds the object's name, the header, the
//! segment's index, whether it is the last, and for the last the footer:
//! an object read under another name, segments reordered or dropped, a
//! truncated object or a changed length all fail a tag. `kind` says whether
//! the payload is raw (0) or zstd (1).

use std::fmt;
use std::io::{self, Read};

use super::aead::Cipher;

use crate::repo::store::ObjectKey;

pub(super) const HEADER_LEN: usize = 16;
/// Nonce, last flag, sealed length.
pub(super) const FRAME_LEN: usize = 24 + 1 + 4;
pub(super) const FOOTER_LEN: usize = 8;
use super::aead::TAG_LEN;
const MAGIC: &[u8; 8] = b"HWDRSEAL";
const VERSION: u8 = 1;
const MAY_COMPRESS: u8 = 1;
const RAW: u8 = 0;
const ZSTD: u8 = 1;
/// Segments from 4 KiB (tests) to 16 MiB.
pub(super) const SHIFTS: std::ops::RangeInclusive<u8> = 12..=24;

/// The repository's data key: 256 random bits. Never printed.
#[derive(Clone)]
pub struct DataKey([u8; 32]);

impl DataKey {
    /// A new random key.
    pub fn generate() -> io::Result<DataKey> {
        let mut bytes = [0u8; 32];
        random(&mut bytes)?;
        Ok(DataKey(bytes))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(bytes)
    }

    /// Its bytes, for wrapping it.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(super) fn cipher(&self) -> Cipher {
        Cipher::new(&self.0)
    }

    /// The key that names content-addressed objects (inventory pieces):
    /// HMAC-SHA256 under a subkey of the data key, HMAC-SHA256(data key,
    /// "hwdr content names 1"), so names reveal nothing of the content and
    /// the data key itself is never used twice for different purposes.
    pub(super) fn name_key(&self) -> aws_lc_rs::hmac::Key {
        let outer = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let sub = aws_lc_rs::hmac::sign(&outer, b"hwdr content names 1");
        aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, sub.as_ref())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// An object's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Whether segments may be compressed (the sample test said it pays).
    pub compressed: bool,
    pub shift: u8,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[..8].copy_from_slice(MAGIC);
        bytes[8] = VERSION;
        bytes[9] = if self.compressed { MAY_COMPRESS } else { 0 };
        bytes[10] = self.shift;
        bytes
    }

    /// The header in `bytes`, `None` if they are not one this hwdr reads.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        let ok = bytes.len() == HEADER_LEN
            && &bytes[..8] == MAGIC
            && bytes[8] == VERSION
            && bytes[9] & !MAY_COMPRESS == 0
            && SHIFTS.contains(&bytes[10])
            && bytes[11..].iter().all(|b| *b == 0);
        ok.then_some(Header {
            compressed: bytes[9] & MAY_COMPRESS != 0,
            shift: bytes[10],
        })
    }

    /// Plaintext bytes in a segment.
    pub fn segment_size(&self) -> u64 {
        1 << self.shift
    }

    /// Stored bytes of a whole segment that is not compressed: where
    /// segment `n` starts when none is.
    pub fn raw_stride(&self) -> u64 {
        (FRAME_LEN + 1 + TAG_LEN) as u64 + self.segment_size()
    }

    /// The largest sealed length of a segment (a compressed payload is only
    /// kept when smaller than the raw one).
    pub fn max_sealed(&self) -> u64 {
        1 + TAG_LEN as u64 + self.segment_size()
    }
}

/// A segment's frame: what precedes its sealed bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    pub nonce: [u8; 24],
    pub last: bool,
    pub sealed_len: u32,
}

impl Frame {
    pub fn decode(bytes: &[u8; FRAME_LEN]) -> Option<Frame> {
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&bytes[..24]);
        let last = match bytes[24] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let sealed_len = u32::from_le_bytes([bytes[25], bytes[26], bytes[27], bytes[28]]);
        Some(Frame {
            nonce,
            last,
            sealed_len,
        })
    }
}

/// What a segment's tag binds besides its bytes.
fn associated_data(name: &ObjectKey, header: &Header, index: u64, total: Option<u64>) -> Vec<u8> {
    let mut ad = Vec::with_capacity(64 + name.as_str().len());
    ad.extend_from_slice(b"hwdr-seal-v1\0");
    ad.extend_from_slice(&header.encode());
    ad.extend_from_slice(&index.to_le_bytes());
    match total {
        Some(total) => {
            ad.push(1);
            ad.extend_from_slice(&total.to_le_bytes());
        }
        None => ad.push(0),
    }
    ad.extend_from_slice(name.as_str().as_bytes());
    ad
}

/// Seals segment `index` of `name`: its frame and sealed bytes, and, for the
/// last one (`total` given), the footer. `level`: compress at this zstd
/// level if that makes it smaller.
pub(super) fn seal_segment(
    cipher: &Cipher,
    name: &ObjectKey,
    header: &Header,
    index: u64,
    plain: &[u8],
    total: Option<u64>,
    level: Option<i32>,
) -> io::Result<Vec<u8>> {
    let compressed = match level {
        Some(level) => Some(zstd::bulk::compress(plain, level)?).filter(|c| c.len() < plain.len()),
        None => None,
    };
    let (kind, payload) = match &compressed {
        Some(c) => (ZSTD, c.as_slice()),
        None => (RAW, plain),
    };
    // One buffer: the frame, then kind and payload sealed in place, the tag, the footer.
    let mut out = Vec::with_capacity(FRAME_LEN + 1 + payload.len() + TAG_LEN + FOOTER_LEN);
    let mut nonce = [0u8; 24];
    random(&mut nonce)?;
    let sealed_len = u32::try_from(1 + payload.len() + TAG_LEN).map_err(io::Error::other)?;
    out.extend_from_slice(&nonce);
    out.push(u8::from(total.is_some()));
    out.extend_from_slice(&sealed_len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let ad = associated_data(name, header, index, total);
    cipher
        .seal(&nonce, &ad, &mut out, FRAME_LEN)
        .map_err(|_| io::Error::other(format!("sealing segment {index} of {name}")))?;
    if let Some(total) = total {
        out.extend_from_slice(&total.to_le_bytes());
    }
    Ok(out)
}

/// Why a segment does not open (the caller names the object and segment).
pub(super) type Damage = &'static str;

/// Opens segment `index` of `name`: its plaintext.
pub(super) fn open_segment(
    cipher: &Cipher,
    name: &ObjectKey,
    header: &Header,
    index: u64,
    frame: &Frame,
    sealed: &[u8],
    total: Option<u64>,
) -> Result<Vec<u8>, Damage> {
    let ad = associated_data(name, header, index, total);
    let mut body = cipher.open(&frame.nonce, &ad, sealed).ok_or("its tag does not match")?;
    let plain = match body.split_first() {
        Some((&RAW, _)) => {
            body.remove(0);
            body
        }
        Some((&ZSTD, payload)) if header.compressed => {
            zstd::bulk::decompress(payload, header.segment_size() as usize).map_err(|_| "it does not decompress")?
        }
        _ => return Err("unknown kind"),
    };
    let size = header.segment_size();
    match total {
        None if plain.len() as u64 != size => Err("a short segment that is not the last"),
        Some(total) if total != index * size + plain.len() as u64 => Err("its length contradicts the footer"),
        _ => Ok(plain),
    }
}

/// Fills `buf` from the operating system's random source.
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::getrandom(buf).map_err(|e| io::Error::other(format!("no random bytes: {e}")))
}

/// Reads until `buf` is full or the source ends: how many bytes.
pub(super) fn read_full(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
