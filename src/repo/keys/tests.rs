use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::repo::store::memory::Memory;

/// Cheap argon2id parameters: the tests stretch many passphrases.
const QUICK: KdfParams = KdfParams { m_kib: 64, t: 1, p: 1 };

#[test]
fn a_wrap_opens_with_its_key_only() {
    let data = DataKey::generate().unwrap();
    let wrap = WrappedKey::wrap(&data, &Secret::Key([1; 32]), chrono::Utc::now()).unwrap();
    let json = serde_json::to_string(&wrap).unwrap();
    let back: WrappedKey = serde_json::from_str(&json).unwrap();
    assert_eq!(back.unwrap_with(&Secret::Key([1; 32])).unwrap().bytes(), data.bytes());
    assert!(back.unwrap_with(&Secret::Key([2; 32])).is_none());
    assert!(back.unwrap_with(&Secret::Passphrase(vec![1; 32])).is_none());
    let e = open(&[back], &Secret::Key([2; 32]), Path::new("/etc/hwdr/repo.key")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the key in /etc/hwdr/repo.key opens none of the repository's keys"
    );
}

#[test]
fn a_passphrase_wrap_records_its_stretch_and_opens_with_the_passphrase_only() {
    let data = DataKey::generate().unwrap();
    let secret = Secret::Passphrase(b"correct horse battery".to_vec());
    let wrap = WrappedKey::wrap_with(&data, &secret, QUICK, chrono::Utc::now()).unwrap();
    let json = serde_json::to_value(&wrap).unwrap();
    assert_eq!(json["kind"], "passphrase");
    assert_eq!(json["kdf"]["algorithm"], "argon2id");
    assert_eq!(json["kdf"]["m_kib"], 64);
    assert_eq!(json["kdf"]["salt"].as_str().unwrap().len(), 32);
    let back: WrappedKey = serde_json::from_value(json).unwrap();
    let (opened, id) = open(std::slice::from_ref(&back), &secret, Path::new("p")).unwrap();
    assert_eq!((opened.bytes(), id), (data.bytes(), wrap.id));
    assert!(back
        .unwrap_with(&Secret::Passphrase(b"wrong horse battery".to_vec()))
        .is_none());
}

#[test]
fn wraps_are_stored_listed_and_removed() {
    let mem = Memory::new();
    let data = DataKey::generate().unwrap();
    let t0 = chrono::Utc::now();
    let a = WrappedKey::wrap(&data, &Secret::Key([1; 32]), t0).unwrap();
    let b = WrappedKey::wrap_with(
        &data,
        &Secret::Passphrase(b"12345678".to_vec()),
        QUICK,
        t0 + chrono::Duration::seconds(1),
    )
    .unwrap();
    store(&mem, &b).unwrap();
    store(&mem, &a).unwrap();
    let ids: Vec<_> = list(&mem).unwrap().into_iter().map(|w| w.id).collect();
    assert_eq!(ids, [a.id.clone(), b.id.clone()]);
    remove(&mem, &a.id).unwrap();
    assert_eq!(list(&mem).unwrap().len(), 1);
    assert!(remove(&mem, "../x").is_err());
}

#[test]
fn key_files_are_raw_or_hex_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.key");
    std::fs::write(&path, format!("{}\n", hex::encode([3u8; 32]))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_key_file(&path).unwrap(), [3; 32]);
    std::fs::write(&path, [4u8; 32]).unwrap();
    assert_eq!(read_key_file(&path).unwrap(), [4; 32]);
    std::fs::write(&path, b"short").unwrap();
    assert!(read_key_file(&path).is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(read_key_file(&path).unwrap_err().to_string().contains("chmod 600"));
}

#[test]
fn passphrase_files_lose_their_newline_and_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo.pass");
    std::fs::write(&path, "long enough\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(read_passphrase_file(&path).unwrap(), b"long enough");
    std::fs::write(&path, "short\n").unwrap();
    assert!(read_passphrase_file(&path)
        .unwrap_err()
        .to_string()
        .contains("shorter than 8"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(read_passphrase_file(&path)
        .unwrap_err()
        .to_string()
        .contains("chmod 600"));
}
