//! The generator's seeded streams: SplitMix64 for sizes, ids and choices,
//! and an xorshift64* stream per block for its content.

use std::fmt::Write;

use super::spec::BlockContent;

/// SplitMix64: seeds, sizes, ids and replica choices (also the fault
/// proxy's random faults, `faultproxy`).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform enough in `0..n` for a generator (`n` > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// A positive Java int, as `Random.nextInt(Integer.MAX_VALUE)`.
    pub(super) fn int31(&mut self) -> u32 {
        self.below(i32::MAX as u64) as u32
    }
}

/// The SplitMix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) UUID in its usual text form.
pub(super) fn uuid(rng: &mut Rng) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&rng.next().to_be_bytes());
    b[8..].copy_from_slice(&rng.next().to_be_bytes());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Block content: an xorshift64* stream seeded from (seed, pool, id), as
/// random bytes or as lines of CSV text drawn from it.
pub(super) struct Content {
    state: u64,
    kind: BlockContent,
    /// Text made and not handed out yet: `line[pos..]`.
    line: String,
    pos: usize,
    row: u64,
}

/// The text rows' categories.
const CATEGORIES: [&str; 12] = [
    "grocery",
    "fuel",
    "travel",
    "dining",
    "health",
    "utilities",
    "entertainment",
    "clothing",
    "electronics",
    "insurance",
    "education",
    "transfer",
];

impl Content {
    pub(super) fn new(seed: u64, pool: &str, id: u64, kind: BlockContent) -> Self {
        // FNV-1a of the pool name.
        let pool_hash = pool.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
        Self {
            state: mix(seed ^ mix(pool_hash ^ mix(id))) | 1,
            kind,
            line: String::new(),
            pos: 0,
            row: id.wrapping_mul(1_000_000),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes; only the last call for a block may
    /// have a length that is not a multiple of 8.
    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        match self.kind {
            BlockContent::Random => self.fill_random(buf),
            BlockContent::Text => self.fill_text(buf),
        }
    }

    fn fill_random(&mut self, buf: &mut [u8]) {
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = words.into_remainder();
        if !rest.is_empty() {
            let last = self.next().to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
        }
    }

    fn fill_text(&mut self, buf: &mut [u8]) {
        let mut at = 0;
        while at < buf.len() {
            if self.pos == self.line.len() {
                self.next_line();
            }
            let n = (self.line.len() - self.pos).min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&self.line.as_bytes()[self.pos..self.pos + n]);
            self.pos += n;
            at += n;
        }
    }

    /// One row: id, event time, customer, amount, category, card present.
    fn next_line(&mut self) {
        let (a, b) = (self.next(), self.next());
        self.row += 1;
        self.line.clear();
        self.pos = 0;
        let (day, secs, customer) = (1 + a % 31, (a >> 8) % 86_400, (a >> 32) % 100_000);
        let (cents, category, present) = (b % 1_000_000, CATEGORIES[((b >> 24) % 12) as usize], b >> 63 == 1);
        // Writing to a String cannot fail.
        let _ = writeln!(
            self.line,
            "{},2024-01-{day:02}T{:02}:{:02}:{:02}Z,c{customer:05},{}.{:02},{category},{present}",
            self.row,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            cents / 100,
            cents % 100,
        );
    }
}
