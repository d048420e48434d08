//! How sizes, rates and times read to a person: binary units (`8.1 GiB`,
//! `690 MiB/s`), short durations (`7 s`, `3 min 20 s`), and the progress
//! line that the terminal's bar and systemd's `STATUS=` both show. Exact
//! byte counts stay in `--json`, the manifest and the metrics.

use std::time::Duration;

const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/// The unit `bytes` is best shown in: its index in [`UNITS`] and its size.
fn unit_of(bytes: u64) -> (usize, f64) {
    let mut i = 0;
    let mut scale = 1u64;
    while i + 1 < UNITS.len() && bytes >= scale << 10 {
        scale <<= 10;
        i += 1;
    }
    (i, scale as f64)
}

/// `bytes` in the unit `unit` (an index into [`UNITS`]), without the unit.
fn number_in(bytes: u64, (i, scale): (usize, f64)) -> String {
    if i == 0 {
        return bytes.to_string();
    }
    let value = bytes as f64 / scale;
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A size in binary units: `512 B`, `48.2 KiB`, `8.1 GiB`.
pub fn size(bytes: u64) -> String {
    let unit = unit_of(bytes);
    format!("{} {}", number_in(bytes, unit), UNITS[unit.0])
}

/// Two sizes in the unit of the larger: `3.3 of 8.1 GiB`.
pub fn size_of(done: u64, total: u64) -> String {
    let unit = unit_of(total.max(done));
    format!(
        "{} of {} {}",
        number_in(done, unit),
        number_in(total, unit),
        UNITS[unit.0]
    )
}

/// A rate: `690 MiB/s`.
pub fn rate(bytes_per_sec: f64) -> String {
    format!("{}/s", size(bytes_per_sec.max(0.0) as u64))
}

/// A duration for people: `0.8 s` under ten seconds, then `42 s`,
/// `3 min 20 s`, `2 h 5 min`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..10 => format!("{:.1} s", d.as_secs_f64()),
        10..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Files and their bytes, as a step's summary: `12 files, 48.2 KiB`.
pub fn files(count: usize, bytes: u64) -> String {
    match count {
        0 => String::new(),
        1 => format!("1 file, {}", size(bytes)),
        n => format!("{n} files, {}", size(bytes)),
    }
}

/// Where long work stands, from its real counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub items: u64,
    pub bytes: u64,
    /// Totals; 0 where not known (yet).
    pub total_items: u64,
    pub total_bytes: u64,
}

impl Snapshot {
    /// The share done, from the bytes when their total is known, else from
    /// the items; `None` when neither total is.
    pub fn fraction(&self) -> Option<f64> {
        let (done, total) = if self.total_bytes > 0 {
            (self.bytes, self.total_bytes)
        } else {
            (self.items, self.total_items)
        };
        (total > 0).then(|| (done as f64 / total as f64).min(1.0))
    }
}

/// What is done, e.g. `41% (3.3 of 8.1 GiB, 120 of 290 blocks, 690 MiB/s,
/// ETA 7 s)`: the share, sizes and `unit`s (objects) done of their totals,
/// the mean rate since the start `elapsed` ago, and the time left at that
/// rate. Parts whose totals are unknown show only what is done.
pub fn progress(s: &Snapshot, unit: &str, elapsed: Duration) -> String {
    let mut parts = Vec::new();
    parts.push(if s.total_bytes > 0 {
        size_of(s.bytes, s.total_bytes)
    } else {
        size(s.bytes)
    });
    parts.push(if s.total_items > 0 {
        format!("{} of {} {unit}", s.items, s.total_items)
    } else {
        format!("{} {unit}", s.items)
    });
    let secs = elapsed.as_secs_f64();
    let fraction = s.fraction();
    if secs >= 0.5 && s.bytes > 0 {
        let per_sec = s.bytes as f64 / secs;
        parts.push(rate(per_sec));
        if s.total_bytes > s.bytes {
            let left = (s.total_bytes - s.bytes) as f64 / per_sec;
            parts.push(format!("ETA {}", eta(left)));
        }
    } else if let Some(f) = fraction.filter(|f| *f > 0.0 && *f < 1.0 && secs >= 0.5) {
        parts.push(format!("ETA {}", eta(secs * (1.0 - f) / f)));
    }
    match fraction {
        Some(f) => format!("{}% ({})", (f * 100.0).floor() as u64, parts.join(", ")),
        None => parts.join(", "),
    }
}

/// Seconds left, rounded up, for people.
fn eta(secs: f64) -> String {
    let secs = secs.ceil().clamp(0.0, 1e7) as u64;
    if secs < 60 {
        format!("{secs} s")
    } else {
        duration(Duration::from_secs(secs))
    }
}

/// The `STATUS=` line for systemd: `uploading blocks: 41% (3.3 of 8.1 GiB,
/// …)`.
pub fn status(label: &str, s: &Snapshot, unit: &str, elapsed: Duration) -> String {
    format!("{label}: {}", progress(s, unit, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(94_588), "92.4 KiB");
        assert_eq!(size(3_663_134), "3.5 MiB");
        assert_eq!(size(8_697_308_774), "8.1 GiB");
        assert_eq!(size(300 << 30), "300 GiB");
        assert_eq!(size_of(3_543_348_019, 8_697_308_774), "3.3 of 8.1 GiB");
        assert_eq!(size_of(0, 512), "0 of 512 B");
    }

    #[test]
    fn durations_read_for_people() {
        assert_eq!(duration(Duration::from_millis(800)), "0.8 s");
        assert_eq!(duration(Duration::from_secs(42)), "42 s");
        assert_eq!(duration(Duration::from_secs(200)), "3 min 20 s");
        assert_eq!(duration(Duration::from_secs(7500)), "2 h 5 min");
    }

    #[test]
    fn status_line_shows_percent_sizes_rate_and_eta() {
        let s = Snapshot {
            items: 120,
            bytes: 3_543_348_019,
            total_items: 290,
            total_bytes: 8_697_308_774,
        };
        // 3.3 GiB in 4.9 s: 690 MiB/s; 4.8 GiB left at that rate: 7.1 s.
        let line = status("uploading blocks", &s, "blocks", Duration::from_millis(4900));
        assert_eq!(
            line,
            "uploading blocks: 40% (3.3 of 8.1 GiB, 120 of 290 blocks, 690 MiB/s, ETA 8 s)"
        );
    }

    #[test]
    fn status_line_without_totals_or_time() {
        let s = Snapshot {
            items: 3,
            bytes: 2048,
            ..Snapshot::default()
        };
        assert_eq!(
            status("staging", &s, "blocks", Duration::ZERO),
            "staging: 2.0 KiB, 3 blocks"
        );
        let by_items = Snapshot {
            items: 1,
            total_items: 4,
            ..Snapshot::default()
        };
        assert_eq!(
            progress(&by_items, "blocks", Duration::from_secs(2)),
            "25% (0 B, 1 of 4 blocks, ETA 6 s)"
        );
    }

    #[test]
    fn done_work_shows_no_eta() {
        let s = Snapshot {
            items: 4,
            bytes: 4096,
            total_items: 4,
            total_bytes: 4096,
        };
        assert_eq!(
            progress(&s, "blocks", Duration::from_secs(2)),
            "100% (4.0 of 4.0 KiB, 4 of 4 blocks, 2.0 KiB/s)"
        );
    }
}
