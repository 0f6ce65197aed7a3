//! Credential cipher compatible with the Go proxy (`auth_encrypt`, `/encrypt`, `/decrypt`).
//!
//! The Go proxy stores credentials "encrypted" with AES-128 in CBC mode, where both the key
//! and the IV are the public 16 ASCII bytes [`KEY`]. It is obfuscation, not security: anyone
//! with this source can decrypt. We keep it only so that configs and scripts written for the
//! Go proxy keep working.
//!
//! Format (frozen, must match the Go proxy byte for byte):
//!
//! ```text
//! plaintext --zero-pad to a multiple of 16--> AES-128-CBC(key = IV = "consistentcipher")
//!           --base64, no '=' padding, alphabet A-Z a-z 0-9 '_' '!'--> ciphertext
//! ```
//!
//! * Zero padding adds nothing when the input is already a multiple of 16 bytes, so a
//!   16-byte input gives a 16-byte ciphertext (22 base64 characters). Empty stays empty.
//! * Decryption strips **all** leading and trailing NUL bytes, so plaintexts that start or
//!   end with NUL do not round-trip (the same is true of the Go proxy).
//! * Base64 decoding follows Go's `encoding/base64` (non-strict, no padding): `\r` and `\n`
//!   are skipped, unused trailing bits are ignored, and an error names the input byte offset
//!   with Go's exact text (`illegal base64 data at input byte 3`).
//!
//! Neither function panics on any input.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, NO_PAD};
use base64::engine::Engine;

/// The AES-128 key, also used as the CBC initialisation vector (a public constant of the Go proxy).
pub const KEY: &str = "consistentcipher";

/// [`KEY`] as a fixed-size array, so no length check is needed at run time.
const KEY_BYTES: [u8; 16] = *b"consistentcipher";

/// The 64 base64 symbols in value order: standard base64 with `+` -> `_` and `/` -> `!`.
const SYMBOLS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_!";

/// AES block size in bytes.
const BLOCK: usize = 16;

type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;
type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;

/// Why a ciphertext could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The text is not valid base64 in the cipher's alphabet. The payload is Go's message,
    /// e.g. `illegal base64 data at input byte 0`, which the Go proxy's `/decrypt` returned
    /// as its response body.
    #[error("{0}")]
    InvalidBase64(String),
    /// The decoded bytes are not a whole number of 16-byte AES blocks.
    #[error("crypto/cipher: input not full blocks")]
    NotFullBlocks,
    /// The decrypted bytes (after stripping NULs) are not UTF-8; the key is probably not a
    /// ciphertext of this cipher.
    #[error("decrypted text is not valid UTF-8")]
    InvalidUtf8,
}

/// Encrypts `plain` the way the Go proxy does (see the module doc). Never fails.
pub fn encrypt(plain: &str) -> String {
    if plain.is_empty() {
        return String::new();
    }
    let mut buf = plain.as_bytes().to_vec();
    let padded_len = buf.len().div_ceil(BLOCK) * BLOCK;
    buf.resize(padded_len, 0);
    let mut enc = Aes128CbcEnc::new(&KEY_BYTES.into(), &KEY_BYTES.into());
    // `chunks_exact_mut(BLOCK)` yields slices of exactly 16 bytes (the buffer was padded),
    // so `from_mut_slice` cannot hit its length assertion.
    for block in buf.chunks_exact_mut(BLOCK) {
        enc.encrypt_block_mut(aes::Block::from_mut_slice(block));
    }
    engine().encode(&buf)
}

/// Decrypts a ciphertext made by [`encrypt`] (or by the Go proxy) into text.
///
/// Empty input gives empty output. All leading and trailing NUL bytes are stripped.
pub fn decrypt(cipher: &str) -> Result<String, CipherError> {
    String::from_utf8(decrypt_bytes(cipher)?).map_err(|_| CipherError::InvalidUtf8)
}

/// Like [`decrypt`] but returns the raw bytes (for callers that want a lossy conversion, such
/// as the `/decrypt` endpoint, which in the Go proxy returned whatever bytes came out).
pub fn decrypt_bytes(cipher: &str) -> Result<Vec<u8>, CipherError> {
    let mut buf = go_base64_decode(cipher.as_bytes()).map_err(|offset| {
        CipherError::InvalidBase64(format!("illegal base64 data at input byte {offset}"))
    })?;
    if buf.len() % BLOCK != 0 {
        return Err(CipherError::NotFullBlocks);
    }
    let mut dec = Aes128CbcDec::new(&KEY_BYTES.into(), &KEY_BYTES.into());
    // Exactly 16-byte chunks: the length was checked just above.
    for block in buf.chunks_exact_mut(BLOCK) {
        dec.decrypt_block_mut(aes::Block::from_mut_slice(block));
    }
    let start = buf.iter().position(|&b| b != 0).unwrap_or(buf.len());
    let end = buf.iter().rposition(|&b| b != 0).map_or(start, |i| i + 1);
    Ok(buf[start..end].to_vec())
}

/// The encoding engine for [`encrypt`]: the custom alphabet, no padding.
fn engine() -> GeneralPurpose {
    // The alphabet is a valid compile-time constant (64 distinct printable ASCII symbols,
    // none of them '='), so this never falls back; the fallback only avoids a panic path.
    match std::str::from_utf8(SYMBOLS)
        .ok()
        .and_then(|s| Alphabet::new(s).ok())
    {
        Some(alphabet) => GeneralPurpose::new(&alphabet, NO_PAD),
        None => GeneralPurpose::new(&base64::alphabet::URL_SAFE, NO_PAD),
    }
}

/// Value of one base64 symbol, or `None` if `c` is not in the alphabet.
fn symbol_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'_' => Some(62),
        b'!' => Some(63),
        _ => None,
    }
}

/// Decodes like Go's `base64.Encoding.WithPadding(NoPadding).DecodeString` (non-strict):
/// quanta of four symbols, `\r`/`\n` skipped, a final quantum of two or three symbols allowed,
/// trailing bits ignored. On error returns the byte offset Go would report.
fn go_base64_decode(src: &[u8]) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut si = 0;
    loop {
        let mut quantum = [0u8; 4];
        let mut len = 0;
        while len < 4 {
            let Some(&c) = src.get(si) else {
                // End of input inside a quantum.
                match len {
                    0 => return Ok(out),
                    1 => return Err(si - len),
                    _ => break,
                }
            };
            si += 1;
            match symbol_value(c) {
                Some(v) => {
                    quantum[len] = v;
                    len += 1;
                }
                None if c == b'\n' || c == b'\r' => {}
                None => return Err(si - 1),
            }
        }
        let val = (u32::from(quantum[0]) << 18)
            | (u32::from(quantum[1]) << 12)
            | (u32::from(quantum[2]) << 6)
            | u32::from(quantum[3]);
        let bytes = [(val >> 16) as u8, (val >> 8) as u8, val as u8];
        out.extend_from_slice(&bytes[..len - 1]);
        if len < 4 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §5 vectors, verified against the Go proxy.
    const VECTORS: [(&str, &str); 6] = [
        ("admin", "YgvEyuPZlDYAH8sGDkC!Ag"),
        ("root", "HNuE5KxI!nNofosmqZR!mw"),
        ("password", "7vnwDnX!xzLY_jqHoFX41w"),
        ("influxdb", "wWTbdw!BwVqjWHDTM6a3hw"),
        ("0123456789abcdef", "CADsguKx8D5nVxhjWH4NTw"),
        ("p@ss w0rd!", "wNWCj4D06a1zJtY9K4VM6A"),
    ];

    #[test]
    fn encrypt_matches_go_vectors() {
        for (plain, cipher) in VECTORS {
            assert_eq!(encrypt(plain), cipher, "encrypt({plain:?})");
        }
    }

    #[test]
    fn decrypt_matches_go_vectors() {
        for (plain, cipher) in VECTORS {
            assert_eq!(decrypt(cipher).as_deref(), Ok(plain), "decrypt({cipher:?})");
        }
    }

    #[test]
    fn empty_input_gives_empty_output_both_ways() {
        assert_eq!(encrypt(""), "");
        assert_eq!(decrypt("").as_deref(), Ok(""));
    }

    #[test]
    fn sixteen_byte_input_adds_no_padding_block() {
        assert_eq!(encrypt("0123456789abcdef").len(), 22);
        assert_eq!(encrypt("0123456789abcdef0").len(), 43);
    }

    #[test]
    fn bad_base64_names_the_byte_offset_like_go() {
        let msg = |s: &str| decrypt(s).map_err(|e| e.to_string());
        assert_eq!(
            msg("+abc"),
            Err("illegal base64 data at input byte 0".into())
        );
        assert_eq!(
            msg("YgvE/uPZ"),
            Err("illegal base64 data at input byte 4".into())
        );
        // Padding is not part of this encoding.
        assert_eq!(
            msg("YgvEyuPZlDYAH8sGDkC!Ag=="),
            Err("illegal base64 data at input byte 22".into())
        );
        // A lone trailing symbol is reported at its own offset.
        assert_eq!(
            msg("YgvEy"),
            Err("illegal base64 data at input byte 4".into())
        );
        assert_eq!(msg("A"), Err("illegal base64 data at input byte 0".into()));
        assert_eq!(
            decrypt("ab cd"),
            Err(CipherError::InvalidBase64(
                "illegal base64 data at input byte 2".into()
            ))
        );
    }

    #[test]
    fn newlines_are_skipped_like_go() {
        assert_eq!(
            decrypt("YgvEyuPZlDYA\nH8sGDkC!Ag\r\n").as_deref(),
            Ok("admin")
        );
    }

    #[test]
    fn input_that_is_not_whole_blocks_is_rejected_with_go_text() {
        // "YWRtaW4" is plain base64 of "admin": 5 bytes, not a whole block.
        let err = decrypt("YWRtaW4").unwrap_err();
        assert_eq!(err, CipherError::NotFullBlocks);
        assert_eq!(err.to_string(), "crypto/cipher: input not full blocks");
        // 23 symbols of a two-block ciphertext decode to 17 bytes.
        assert_eq!(
            decrypt(&encrypt("0123456789abcdef0")[..23]),
            Err(CipherError::NotFullBlocks)
        );
        // A 21-symbol prefix ends in a lone symbol, which is a base64 error (as in Go).
        assert_eq!(
            decrypt(&encrypt("0123456789abcdef")[..21]),
            Err(CipherError::InvalidBase64(
                "illegal base64 data at input byte 20".into()
            ))
        );
    }

    #[test]
    fn garbage_block_that_is_not_utf8_is_reported() {
        // Encrypting arbitrary bytes is not possible through the &str API, so build a
        // ciphertext of a block holding invalid UTF-8 by hand.
        let mut block = [0xffu8; 16];
        let mut enc = Aes128CbcEnc::new(&KEY_BYTES.into(), &KEY_BYTES.into());
        enc.encrypt_block_mut(aes::Block::from_mut_slice(&mut block));
        let text = engine().encode(block);
        assert_eq!(decrypt(&text), Err(CipherError::InvalidUtf8));
        assert_eq!(decrypt_bytes(&text), Ok(vec![0xff; 16]));
    }

    #[test]
    fn round_trip_over_many_strings() {
        let mut inputs: Vec<String> = [
            "a",
            "admin",
            "0123456789abcde",
            "0123456789abcdef",
            "0123456789abcdef0",
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef!",
            "pässwörd ünïcödé 密码 🔑",
            " leading and trailing spaces ",
            "with\ttab\nand newline",
            "inner\0nul",
            "quotes \"' and \\ backslash",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.extend((1..=40).map(|n| "x".repeat(n)));
        for plain in &inputs {
            let cipher = encrypt(plain);
            assert!(
                cipher.bytes().all(|b| symbol_value(b).is_some()),
                "{cipher:?} uses only the alphabet"
            );
            assert_eq!(&decrypt(&cipher).unwrap(), plain, "round trip of {plain:?}");
        }
    }

    #[test]
    fn leading_and_trailing_nuls_are_stripped() {
        assert_eq!(decrypt(&encrypt("\0\0admin\0")).as_deref(), Ok("admin"));
        assert_eq!(decrypt(&encrypt("\0")).as_deref(), Ok(""));
    }

    #[test]
    fn never_panics_on_odd_inputs() {
        let mut inputs: Vec<String> = vec![
            "=".into(),
            "==".into(),
            "\n".into(),
            "\r\n\r\n".into(),
            "\0".into(),
            "é".into(),
            "🔑🔑🔑🔑".into(),
            "!!!!".into(),
            "____".into(),
            "AAAAAAAAAAAAAAAAAAAAAA".into(),
            "AAAAAAAAAAAAAAAAAAAAAAA".into(),
            "/////".into(),
            "+".repeat(100),
            "A".repeat(10_000),
        ];
        // Every length from 0 to 70 with a few symbol mixes, every single byte value.
        for n in 0..70 {
            inputs.push("A".repeat(n));
            inputs.push("_!".repeat(n));
            inputs.push("9z\n".repeat(n));
        }
        for b in 0u8..=127 {
            inputs.push(String::from(char::from(b)));
            inputs.push(format!("YgvEyuPZlDYAH8sGDkC{}Ag", char::from(b)));
        }
        for s in &inputs {
            let _ = decrypt(s);
            let _ = decrypt_bytes(s);
            let _ = encrypt(s);
        }
    }
}
