//! XChaCha20-Poly1305 for the sealed segments, computed by aws-lc-rs: the
//! key for each segment is HChaCha20 of the data key and the first 16 bytes
//! of the segment's 24-byte nonce, and the IETF ChaCha20-Poly1305 of
//! aws-lc (assembly for AVX2 and AVX-512) runs with the nonce's last 8 bytes
//! (draft-irtf-cfrg-xchacha, the construction RustCrypto's
//! `XChaCha20Poly1305` implements). The bytes are the same as before, at a
//! multiple of the speed; a test checks both against each other.

use std::io;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use chacha20poly1305::aead::generic_array::GenericArray;

/// The data key, ready to seal and open segments. Never printed.
#[derive(Clone)]
pub(crate) struct Cipher {
    key: [u8; 32],
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

/// The Poly1305 tag's length.
pub(super) const TAG_LEN: usize = 16;

impl Cipher {
    /// The cipher of a 256-bit key.
    pub(super) fn new(key: &[u8; 32]) -> Cipher {
        Cipher { key: *key }
    }

    /// The ChaCha20-Poly1305 key and 12-byte nonce of an XChaCha20 nonce.
    fn subkey(&self, nonce: &[u8; 24]) -> Option<(LessSafeKey, Nonce)> {
        let sub = chacha20::hchacha::<chacha20::cipher::consts::U10>(
            GenericArray::from_slice(&self.key),
            GenericArray::from_slice(&nonce[..16]),
        );
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(&nonce[16..]);
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, sub.as_slice()).ok()?;
        Some((LessSafeKey::new(unbound), Nonce::assume_unique_for_key(short)))
    }

    /// Seals `buf[from..]` in place and appends the tag.
    pub(super) fn seal(&self, nonce: &[u8; 24], aad: &[u8], buf: &mut Vec<u8>, from: usize) -> io::Result<()> {
        let (key, nonce) = self.subkey(nonce).ok_or_else(|| io::Error::other("no ChaCha20 key"))?;
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut buf[from..])
            .map_err(|_| io::Error::other("sealing failed"))?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `sealed` (ciphertext and tag): the plaintext, or None if the
    /// tag does not match.
    pub(super) fn open(&self, nonce: &[u8; 24], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (key, nonce) = self.subkey(nonce)?;
        let mut buf = sealed.to_vec();
        let len = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?.len();
        buf.truncate(len);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    #[test]
    fn the_same_bytes_as_rustcryptos_xchacha20poly1305() {
        let key = [7u8; 32];
        let reference = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key));
        let cipher = Cipher::new(&key);
        for len in [0usize, 1, 63, 64, 65, 4096, 100_003] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let nonce: [u8; 24] = std::array::from_fn(|i| (i as u8).wrapping_mul(13).wrapping_add(len as u8));
            let aad = format!("segment {len}");
            let expected = reference
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &plain,
                        aad: aad.as_bytes(),
                    },
                )
                .unwrap();
            let mut buf = b"frame".to_vec();
            buf.extend_from_slice(&plain);
            cipher.seal(&nonce, aad.as_bytes(), &mut buf, 5).unwrap();
            assert_eq!(&buf[5..], &expected[..], "length {len}");
            assert_eq!(cipher.open(&nonce, aad.as_bytes(), &expected).unwrap(), plain);
            let mut flipped = expected.clone();
            flipped[len / 2] ^= 1;
            assert!(cipher.open(&nonce, aad.as_bytes(), &flipped).is_none());
            assert!(cipher.open(&nonce, b"another name", &expected).is_none());
        }
    }
}
