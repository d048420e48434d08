//! The `.meta` file a HopsFS data node keeps next to every block, and checking
//! a block against it.
//!
//! Layout (facts, section 4): a 7-byte header (2-byte big-endian version 1,
//! 1-byte checksum type: 0 none, 1 CRC32, 2 CRC32C; 4-byte big-endian bytes
//! per checksum), then one 4-byte big-endian checksum per chunk of the block
//! file, the last chunk possibly short. Data nodes write CRC32C over 512 bytes.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Length of the header at the start of every `.meta` file.
pub const HEADER_LEN: usize = 7;

/// The only `.meta` version HopsFS writes.
pub const META_VERSION: u16 = 1;

/// Chunk size data nodes use unless configured otherwise.
pub const DEFAULT_BYTES_PER_CHECKSUM: u32 = 512;

/// Larger chunks than this are taken for a corrupt header.
pub const MAX_BYTES_PER_CHECKSUM: u32 = 64 << 20;

/// Size of one stored checksum.
const CHECKSUM_LEN: usize = 4;

/// The checksum algorithm named in a `.meta` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumType {
    /// No checksums are stored.
    None,
    /// CRC-32 (IEEE), as `java.util.zip.CRC32`.
    Crc32,
    /// CRC-32C (Castagnoli), the data node default.
    Crc32c,
}

impl ChecksumType {
    /// The type stored as `code` in a header, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Crc32),
            2 => Some(Self::Crc32c),
            _ => None,
        }
    }

    /// The header byte for this type.
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Crc32 => 1,
            Self::Crc32c => 2,
        }
    }

    /// Bytes stored per chunk: 0 for [`ChecksumType::None`], else 4.
    pub fn checksum_len(self) -> usize {
        match self {
            Self::None => 0,
            Self::Crc32 | Self::Crc32c => CHECKSUM_LEN,
        }
    }

    /// The checksum of one chunk (0 for [`ChecksumType::None`]).
    pub fn compute(self, chunk: &[u8]) -> u32 {
        match self {
            Self::None => 0,
            Self::Crc32 => crc32fast::hash(chunk),
            Self::Crc32c => crc32c::crc32c(chunk),
        }
    }
}

/// The parsed header of a `.meta` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaHeader {
    pub version: u16,
    pub checksum: ChecksumType,
    pub bytes_per_checksum: u32,
}

impl MetaHeader {
    /// The 7 header bytes as a data node writes them.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..2].copy_from_slice(&self.version.to_be_bytes());
        out[2] = self.checksum.code();
        out[3..].copy_from_slice(&self.bytes_per_checksum.to_be_bytes());
        out
    }
}

/// Parses the header at the start of `meta` (the rest is ignored).
pub fn parse_header(meta: &[u8]) -> Result<MetaHeader> {
    let Some(head) = meta.get(..HEADER_LEN) else {
        bail!(
            "meta file too short: {} bytes, the header alone is {HEADER_LEN}",
            meta.len()
        );
    };
    let version = u16::from_be_bytes([head[0], head[1]]);
    if version != META_VERSION {
        bail!("unknown meta version {version} (expected {META_VERSION})");
    }
    let Some(checksum) = ChecksumType::from_code(head[2]) else {
        bail!(
            "unknown checksum type {} (expected 0 none, 1 CRC32 or 2 CRC32C)",
            head[2]
        );
    };
    let bytes_per_checksum = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if bytes_per_checksum == 0 {
        bail!("bytes per checksum is 0");
    }
    if bytes_per_checksum > MAX_BYTES_PER_CHECKSUM {
        bail!("bytes per checksum {bytes_per_checksum} is absurd (more than 64 MiB)");
    }
    Ok(MetaHeader {
        version,
        checksum,
        bytes_per_checksum,
    })
}

/// Checks a block's bytes, fed in any pieces, against its `.meta` file.
///
/// After an error the verifier is in an unspecified state: drop it.
#[derive(Debug, Clone)]
pub struct BlockVerifier {
    header: MetaHeader,
    /// The checksum area of the `.meta` file (after the header).
    sums: Vec<u8>,
    bytes_per_checksum: usize,
    /// The start of a chunk not yet complete, carried across `update` calls.
    partial: Vec<u8>,
    /// Chunks checked so far.
    chunks: u64,
    /// Bytes seen so far.
    len: u64,
}

impl BlockVerifier {
    /// A verifier for the block whose whole `.meta` file is `meta`.
    pub fn new(meta: &[u8]) -> Result<Self> {
        let header = parse_header(meta)?;
        let sums = &meta[HEADER_LEN..];
        let size = header.checksum.checksum_len();
        if size > 0 && sums.len() % size != 0 {
            bail!(
                "meta checksum area is {} bytes, not a multiple of {size}: the meta file is truncated or corrupt",
                sums.len()
            );
        }
        let bytes_per_checksum = header.bytes_per_checksum as usize;
        Ok(Self {
            header,
            sums: if size > 0 { sums.to_vec() } else { Vec::new() },
            bytes_per_checksum,
            partial: Vec::with_capacity(if size > 0 { bytes_per_checksum } else { 0 }),
            chunks: 0,
            len: 0,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &MetaHeader {
        &self.header
    }

    /// How many checksums the `.meta` file holds.
    pub fn checksum_count(&self) -> u64 {
        match self.header.checksum.checksum_len() {
            0 => 0,
            n => (self.sums.len() / n) as u64,
        }
    }

    /// Feeds the next `data` of the block; fails at the first chunk whose
    /// checksum does not match.
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        match self.header.checksum {
            ChecksumType::None => {
                self.len += data.len() as u64;
                Ok(())
            }
            ChecksumType::Crc32 => self.update_with(data, crc32fast::hash),
            ChecksumType::Crc32c => self.update_with(data, crc32c::crc32c),
        }
    }

    /// [`Self::update`] for one algorithm, so the chunk loop has no branch on it.
    #[inline(always)]
    fn update_with(&mut self, mut data: &[u8], crc: impl Fn(&[u8]) -> u32) -> Result<()> {
        let bpc = self.bytes_per_checksum;
        if !self.partial.is_empty() {
            let take = (bpc - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() < bpc {
                return Ok(());
            }
            let actual = crc(&self.partial);
            self.partial.clear();
            self.check(actual, bpc)?;
        }
        let mut whole = data.chunks_exact(bpc);
        for chunk in &mut whole {
            self.check(crc(chunk), bpc)?;
        }
        self.partial.extend_from_slice(whole.remainder());
        Ok(())
    }

    /// Compares the checksum of the next chunk, `len` bytes long, with the meta.
    #[inline(always)]
    fn check(&mut self, actual: u32, len: usize) -> Result<()> {
        let index = self.chunks;
        let start = self.len;
        let at = index as usize * CHECKSUM_LEN;
        let Some(stored) = self.sums.get(at..at + CHECKSUM_LEN) else {
            bail!(
                "block is longer than its meta covers: {} checksums of {} bytes end at byte {}, \
                 the block has more",
                self.checksum_count(),
                self.bytes_per_checksum,
                start
            );
        };
        let expected = u32::from_be_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if expected != actual {
            bail!(
                "checksum mismatch in chunk {index} (bytes {start}..{}): meta has {expected:#010x}, \
                 data has {actual:#010x}",
                start + len as u64
            );
        }
        self.chunks += 1;
        self.len += len as u64;
        Ok(())
    }

    /// Checks the last, possibly short, chunk and that the block has exactly
    /// as many chunks as the meta has checksums; returns the block length.
    pub fn finish(mut self) -> Result<u64> {
        if self.header.checksum == ChecksumType::None {
            return Ok(self.len);
        }
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            let actual = self.header.checksum.compute(&partial);
            self.check(actual, partial.len())?;
        }
        let expected = self.checksum_count();
        if self.chunks != expected {
            bail!(
                "block is shorter than its meta: {} bytes make {} chunks of at most {} bytes, the meta has {} checksums",
                self.len,
                self.chunks,
                self.bytes_per_checksum,
                expected
            );
        }
        Ok(self.len)
    }
}

/// Verifies the block file `block` against its `.meta` file; returns the
/// block length.
pub fn verify_file(block: &Path, meta: &Path) -> Result<u64> {
    let meta_bytes = fs::read(meta).with_context(|| format!("reading {}", meta.display()))?;
    let mut verifier = BlockVerifier::new(&meta_bytes).with_context(|| format!("parsing {}", meta.display()))?;
    let mut file = File::open(block).with_context(|| format!("opening {}", block.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {}", block.display()))?
        .len();
    // Small blocks are the common case: a 1 MiB buffer for each would cost more
    // than reading them. One spare byte sees the end of the file in one read.
    let buf_len = len.saturating_add(1).min(1 << 20) as usize;
    let mut buf = vec![0u8; buf_len];
    loop {
        crate::cancel::check()?;
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", block.display())),
        };
        verifier
            .update(&buf[..n])
            .with_context(|| format!("verifying {} against {}", block.display(), meta.display()))?;
    }
    verifier
        .finish()
        .with_context(|| format!("verifying {} against {}", block.display(), meta.display()))
}

/// The `.meta` file a data node writes for a block holding `data`.
///
/// # Panics
/// If `bytes_per_checksum` is 0.
pub fn build_meta(data: &[u8], checksum: ChecksumType, bytes_per_checksum: u32) -> Vec<u8> {
    let header = MetaHeader {
        version: META_VERSION,
        checksum,
        bytes_per_checksum,
    };
    let mut meta = Vec::with_capacity(meta_len(data.len() as u64, checksum, bytes_per_checksum) as usize);
    meta.extend_from_slice(&header.encode());
    append_checksums(&mut meta, data, checksum, bytes_per_checksum);
    meta
}

/// Length of the `.meta` file of a block of `block_len` bytes.
pub fn meta_len(block_len: u64, checksum: ChecksumType, bytes_per_checksum: u32) -> u64 {
    let chunks = block_len.div_ceil(u64::from(bytes_per_checksum.max(1)));
    HEADER_LEN as u64 + chunks * checksum.checksum_len() as u64
}

/// Appends the checksums of `data`'s chunks to `meta`. `data` must start at a
/// chunk boundary of the block; only its last chunk may be short.
///
/// # Panics
/// If `bytes_per_checksum` is 0.
pub fn append_checksums(meta: &mut Vec<u8>, data: &[u8], checksum: ChecksumType, bytes_per_checksum: u32) {
    if checksum == ChecksumType::None {
        return;
    }
    assert!(bytes_per_checksum > 0, "bytes per checksum must be positive");
    for chunk in data.chunks(bytes_per_checksum as usize) {
        meta.extend_from_slice(&checksum.compute(chunk).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: [usize; 7] = [0, 1, 511, 512, 513, 4096, 100_000];

    fn data(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn verify_in_pieces(meta: &[u8], block: &[u8], piece: usize) -> Result<u64> {
        let mut v = BlockVerifier::new(meta)?;
        for p in block.chunks(piece) {
            v.update(p)?;
        }
        v.finish()
    }

    #[test]
    fn known_vectors_are_stored_big_endian() {
        let meta = build_meta(b"123456789", ChecksumType::Crc32c, 512);
        assert_eq!(meta, [0, 1, 2, 0, 0, 2, 0, 0xE3, 0x06, 0x92, 0x83]);
        let meta = build_meta(b"123456789", ChecksumType::Crc32, 512);
        assert_eq!(meta, [0, 1, 1, 0, 0, 2, 0, 0xCB, 0xF4, 0x39, 0x26]);
    }

    #[test]
    fn round_trip_for_both_crcs_and_all_sizes() {
        for checksum in [ChecksumType::Crc32c, ChecksumType::Crc32] {
            for len in SIZES {
                let block = data(len);
                let meta = build_meta(&block, checksum, 512);
                assert_eq!(meta.len() as u64, meta_len(len as u64, checksum, 512));
                assert_eq!(
                    verify_in_pieces(&meta, &block, 1 << 20).unwrap(),
                    len as u64,
                    "{checksum:?} {len}"
                );
            }
        }
    }

    #[test]
    fn any_chunking_gives_the_same_result() {
        for len in SIZES {
            let block = data(len);
            let meta = build_meta(&block, ChecksumType::Crc32c, 512);
            for piece in [1, 7, 1000, 512, 513] {
                assert_eq!(
                    verify_in_pieces(&meta, &block, piece).unwrap(),
                    len as u64,
                    "{len} by {piece}"
                );
            }
            // Empty updates change nothing.
            let mut v = BlockVerifier::new(&meta).unwrap();
            v.update(&[]).unwrap();
            v.update(&block).unwrap();
            v.update(&[]).unwrap();
            assert_eq!(v.finish().unwrap(), len as u64);
        }
    }

    #[test]
    fn flipped_byte_names_its_chunk() {
        let mut block = data(4096);
        let meta = build_meta(&block, ChecksumType::Crc32c, 512);
        block[3 * 512 + 17] ^= 0x40;
        for piece in [1, 7, 1000, 1 << 20] {
            let err = format!("{:#}", verify_in_pieces(&meta, &block, piece).unwrap_err());
            assert!(err.contains("chunk 3 (bytes 1536..2048)"), "{err}");
            assert!(err.contains("meta has 0x"), "{err}");
        }
        // In the short last chunk, found by finish.
        let mut block = data(1000);
        let meta = build_meta(&block, ChecksumType::Crc32, 512);
        block[999] ^= 1;
        let err = format!("{:#}", verify_in_pieces(&meta, &block, 7).unwrap_err());
        assert!(err.contains("chunk 1 (bytes 512..1000)"), "{err}");
    }

    #[test]
    fn length_mismatches_are_errors() {
        let block = data(4096);
        let meta = build_meta(&block, ChecksumType::Crc32c, 512);
        // A block cut at a chunk boundary: fewer chunks than checksums.
        let err = format!("{:#}", verify_in_pieces(&meta, &block[..2048], 100).unwrap_err());
        assert!(err.contains("shorter than its meta"), "{err}");
        // Cut inside a chunk: the short chunk does not match.
        let err = format!("{:#}", verify_in_pieces(&meta, &block[..2000], 100).unwrap_err());
        assert!(err.contains("chunk 3"), "{err}");
        // Extra bytes past the last checksum.
        let mut longer = block.clone();
        longer.extend_from_slice(b"x");
        let err = format!("{:#}", verify_in_pieces(&meta, &longer, 7).unwrap_err());
        assert!(err.contains("longer than its meta"), "{err}");
        // Meta missing its last checksum.
        let err = format!(
            "{:#}",
            verify_in_pieces(&meta[..meta.len() - 4], &block, 1000).unwrap_err()
        );
        assert!(err.contains("longer than its meta"), "{err}");
        // Meta cut inside a checksum.
        let err = format!("{:#}", BlockVerifier::new(&meta[..meta.len() - 2]).unwrap_err());
        assert!(err.contains("not a multiple of 4"), "{err}");
        // An empty block has a header only.
        let empty = build_meta(&[], ChecksumType::Crc32c, 512);
        assert_eq!(empty.len(), HEADER_LEN);
        let err = format!("{:#}", verify_in_pieces(&empty, b"a", 1).unwrap_err());
        assert!(err.contains("longer than its meta"), "{err}");
    }

    #[test]
    fn bad_headers_are_named() {
        let cases: [(&[u8], &str); 5] = [
            (&[0, 1, 2], "too short: 3 bytes"),
            (&[0, 2, 2, 0, 0, 2, 0], "unknown meta version 2"),
            (&[0, 1, 7, 0, 0, 2, 0], "unknown checksum type 7"),
            (&[0, 1, 2, 0, 0, 0, 0], "bytes per checksum is 0"),
            (&[0, 1, 2, 0x10, 0, 0, 0], "absurd"),
        ];
        for (meta, want) in cases {
            let err = format!("{:#}", BlockVerifier::new(meta).unwrap_err());
            assert!(err.contains(want), "{err}");
        }
        let header = parse_header(&[0, 1, 2, 0, 0, 2, 0, 9, 9]).unwrap();
        assert_eq!(
            header,
            MetaHeader {
                version: 1,
                checksum: ChecksumType::Crc32c,
                bytes_per_checksum: 512
            }
        );
        assert_eq!(header.encode(), [0, 1, 2, 0, 0, 2, 0]);
    }

    #[test]
    fn no_checksums_accepts_any_data() {
        let meta = build_meta(b"ignored", ChecksumType::None, 512);
        assert_eq!(meta.len(), HEADER_LEN);
        assert_eq!(verify_in_pieces(&meta, &data(5000), 7).unwrap(), 5000);
    }

    #[test]
    fn other_chunk_sizes_work() {
        let block = data(100_000);
        for bpc in [1, 3, 4096, 65536, 200_000] {
            let meta = build_meta(&block, ChecksumType::Crc32c, bpc);
            assert_eq!(verify_in_pieces(&meta, &block, 1000).unwrap(), 100_000, "{bpc}");
        }
    }

    #[test]
    fn verify_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let block = dir.path().join("blk_1073741825");
        let meta = dir.path().join("blk_1073741825_1001.meta");
        let bytes = data(3_000_000);
        fs::write(&block, &bytes).unwrap();
        fs::write(&meta, build_meta(&bytes, ChecksumType::Crc32c, 512)).unwrap();
        assert_eq!(verify_file(&block, &meta).unwrap(), 3_000_000);
        let mut bad = bytes;
        bad[2_500_000] ^= 0xff;
        fs::write(&block, &bad).unwrap();
        let err = format!("{:#}", verify_file(&block, &meta).unwrap_err());
        assert!(err.contains("blk_1073741825 against"), "{err}");
        assert!(err.contains(&format!("chunk {}", 2_500_000 / 512)), "{err}");
        let err = format!("{:#}", verify_file(&dir.path().join("nope"), &meta).unwrap_err());
        assert!(err.contains("opening") && err.contains("nope"), "{err}");
    }
}
