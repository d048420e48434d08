use std::io::Read;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::*;
use crate::repo::store::memory::Memory;

/// Small segments, so boundaries are cheap to cross.
const SHIFT: u8 = 12;
const SEG: usize = 1 << SHIFT;

fn sealed(compression: Option<i32>) -> (Memory, Sealed) {
    let memory = Memory::new();
    let key = DataKey::from_bytes([7; 32]);
    let settings = Settings {
        segment_shift: SHIFT,
        compression,
    };
    (memory.clone(), Sealed::new(Arc::new(memory), &key, settings))
}

fn key(name: &str) -> ObjectKey {
    ObjectKey::parse(name).unwrap()
}

/// Bytes that do not compress.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes that compress well.
fn text(len: usize) -> Vec<u8> {
    b"INSERT INTO users VALUES ('alice', 'hash');\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn read(b: &dyn Backend, name: &str) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    b.get(&key(name)).unwrap().read_to_end(&mut out)?;
    Ok(out)
}

fn stored(memory: &Memory, name: &str) -> Vec<u8> {
    read(memory, name).unwrap()
}

fn store(memory: &Memory, name: &str, bytes: &[u8]) {
    memory.put(&key(name), &mut &bytes[..], PutOptions::default()).unwrap();
}

#[test]
fn every_size_round_trips_and_reports_the_plaintext() {
    for compression in [None, Some(3)] {
        let (memory, b) = sealed(compression);
        for len in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 5 << 20] {
            for data in [noise(len), text(len)] {
                let written = b.put(&key("o"), &mut &data[..], PutOptions::default()).unwrap();
                assert_eq!(written.size, len as u64);
                assert_eq!(written.sha256, hex::encode(Sha256::digest(&data)));
                assert_eq!(read(&b, "o").unwrap(), data, "{len} {compression:?}");
                assert_eq!(b.head(&key("o")).unwrap().unwrap().size, len as u64);
                assert_ne!(stored(&memory, "o"), data);
            }
        }
    }
}

#[test]
fn ranges_across_segments_read_their_bytes() {
    for data in [noise(5 * SEG + 17), text(5 * SEG + 17)] {
        let (_, b) = sealed(Some(3));
        b.put(&key("o"), &mut &data[..], PutOptions::default()).unwrap();
        for (start, end) in [
            (0, 1),
            (SEG - 3, SEG + 3),
            (2 * SEG, 4 * SEG + 1),
            (5 * SEG, 5 * SEG + 17),
            (10, 100 * SEG),
        ] {
            let mut out = Vec::new();
            b.get_range(&key("o"), start as u64..end as u64)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data[start..end.min(data.len())], "{start}..{end}");
        }
        let mut out = Vec::new();
        b.get_range(&key("o"), 6 * SEG as u64..7 * SEG as u64)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}

#[test]
fn compressible_objects_shrink_and_incompressible_ones_do_not_grow_much() {
    let (memory, b) = sealed(Some(3));
    let (t, n) = (text(1 << 20), noise(1 << 20));
    b.put(&key("text"), &mut &t[..], PutOptions::default()).unwrap();
    b.put(&key("noise"), &mut &n[..], PutOptions::default()).unwrap();
    assert!(stored(&memory, "text").len() < t.len() / 10);
    let overhead = stored(&memory, "noise").len() - n.len();
    assert!(overhead < n.len() / 50, "{overhead}");
    assert!(
        !Header::decode(&stored(&memory, "noise")[..HEADER_LEN])
            .unwrap()
            .compressed
    );
}

fn assert_tampered(result: std::io::Result<Vec<u8>>, name: &str) {
    let e = result.expect_err("read a damaged object");
    let message = e.to_string();
    assert!(message.starts_with("tampered or damaged: "), "{message}");
    assert!(message.contains(name), "{message}");
}

#[test]
fn a_flipped_byte_is_tampering_naming_the_object_and_segment() {
    let (memory, b) = sealed(None);
    let data = noise(3 * SEG);
    b.put(&key("blocks/b"), &mut &data[..], PutOptions::default()).unwrap();
    let mut bytes = stored(&memory, "blocks/b");
    let in_second = HEADER_LEN + SEG + SEG / 2;
    bytes[in_second] ^= 1;
    store(&memory, "blocks/b", &bytes);
    let e = read(&b, "blocks/b").unwrap_err();
    assert!(e.to_string().contains("blocks/b segment 1"), "{e}");
}

#[test]
fn an_object_under_another_name_is_detected() {
    let (memory, b) = sealed(Some(3));
    b.put(&key("a"), &mut &text(100)[..], PutOptions::default()).unwrap();
    b.put(&key("b"), &mut &text(200)[..], PutOptions::default()).unwrap();
    store(&memory, "b", &stored(&memory, "a"));
    assert_tampered(read(&b, "b"), "b segment 0");
}

#[test]
fn truncated_reordered_or_extended_objects_are_detected() {
    let (memory, b) = sealed(None);
    let data = noise(3 * SEG + 5);
    b.put(&key("o"), &mut &data[..], PutOptions::default()).unwrap();
    let whole = stored(&memory, "o");
    let stride = Header::decode(&whole[..HEADER_LEN]).unwrap().raw_stride() as usize;
    // Cut after two whole segments: no last segment.
    store(&memory, "o", &whole[..HEADER_LEN + 2 * stride]);
    assert_tampered(read(&b, "o"), "o segment 2");
    // Cut inside a segment.
    store(&memory, "o", &whole[..whole.len() - 10]);
    assert_tampered(read(&b, "o"), "o segment 3");
    // Segments 0 and 1 swapped.
    let mut swapped = whole[..HEADER_LEN].to_vec();
    swapped.extend_from_slice(&whole[HEADER_LEN + stride..HEADER_LEN + 2 * stride]);
    swapped.extend_from_slice(&whole[HEADER_LEN..HEADER_LEN + stride]);
    swapped.extend_from_slice(&whole[HEADER_LEN + 2 * stride..]);
    store(&memory, "o", &swapped);
    assert_tampered(read(&b, "o"), "o segment 0");
    // A segment dropped, and the footer's length changed.
    let mut dropped = whole[..HEADER_LEN + stride].to_vec();
    dropped.extend_from_slice(&whole[HEADER_LEN + 2 * stride..]);
    store(&memory, "o", &dropped);
    assert_tampered(read(&b, "o"), "o segment 1");
    let mut longer = whole.clone();
    let at = longer.len() - 8;
    longer[at] ^= 1;
    store(&memory, "o", &longer);
    assert_tampered(read(&b, "o"), "o segment 3");
    let mut extended = whole;
    extended.push(0);
    store(&memory, "o", &extended);
    assert_tampered(read(&b, "o"), "o segment 3");
}

#[test]
fn a_plain_object_in_a_sealed_store_is_refused_and_the_marker_stays_plain() {
    let (memory, b) = sealed(Some(3));
    store(&memory, "backups/1/users.sql", b"CREATE USER");
    assert!(b.get(&key("backups/1/users.sql")).is_err());
    b.put(&ObjectKey::marker(), &mut &b"{}"[..], PutOptions::default())
        .unwrap();
    assert_eq!(stored(&memory, "hwdr-repo.json"), b"{}");
}

#[test]
fn another_key_opens_nothing() {
    let (memory, b) = sealed(Some(3));
    b.put(&key("o"), &mut &text(100)[..], PutOptions::default()).unwrap();
    let other = Sealed::new(
        Arc::new(memory),
        &DataKey::from_bytes([8; 32]),
        Settings {
            segment_shift: SHIFT,
            compression: None,
        },
    );
    assert_tampered(read(&other, "o"), "o segment 0");
}

#[test]
fn a_batch_seals_and_reports_the_plaintext() {
    let (memory, b) = sealed(Some(3));
    let mut batch = b.batch();
    let (m, d) = (text(10), noise(SEG + 1));
    let written = batch
        .put_group(&mut [
            Put {
                key: &key("blocks/x.meta"),
                data: &mut &m[..],
                options: PutOptions::default(),
            },
            Put {
                key: &key("blocks/x"),
                data: &mut &d[..],
                options: PutOptions::default(),
            },
        ])
        .unwrap();
    batch.commit().unwrap();
    drop(batch);
    assert_eq!(written.iter().map(|w| w.size).collect::<Vec<_>>(), [10, SEG as u64 + 1]);
    assert_eq!(read(&b, "blocks/x").unwrap(), d);
    assert_ne!(stored(&memory, "blocks/x.meta"), m);
}

#[test]
fn puts_report_the_bytes_stored() {
    for compression in [None, Some(3)] {
        let (memory, b) = sealed(compression);
        for (name, data) in [("noise", noise(3 * SEG + 5)), ("text", text(3 * SEG + 5))] {
            let written = b.put(&key(name), &mut &data[..], PutOptions::default()).unwrap();
            let on_store = stored(&memory, name).len() as u64;
            assert_eq!(written.stored, on_store, "{name} {compression:?}");
            let compressed = compression.is_some() && name == "text";
            assert_eq!(
                on_store < data.len() as u64,
                compressed,
                "{name} {compression:?}: {on_store}"
            );
        }
        // A batch's puts say the same.
        let mut batch = b.batch();
        let (meta, block) = (text(100), noise(SEG));
        let written = batch
            .put_group(&mut [
                Put {
                    key: &key("g.meta"),
                    data: &mut &meta[..],
                    options: PutOptions::default(),
                },
                Put {
                    key: &key("g"),
                    data: &mut &block[..],
                    options: PutOptions::default(),
                },
            ])
            .unwrap();
        batch.commit().unwrap();
        drop(batch);
        assert_eq!(written[1].size, SEG as u64);
        for (w, name) in written.iter().zip(["g.meta", "g"]) {
            assert_eq!(w.stored, stored(&memory, name).len() as u64, "{name}");
        }
    }
    // A plain object is stored as it is.
    let (_, b) = sealed(Some(3));
    let marker = b
        .put(&ObjectKey::marker(), &mut &b"{}"[..], PutOptions::default())
        .unwrap();
    assert_eq!((marker.size, marker.stored), (2, 2));
}
