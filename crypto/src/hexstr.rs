//! Hex text of keys, hashes and signatures.

use crate::error::CryptoError;

/// Decodes exactly `N` bytes from hex (upper or lower case).
pub fn decode_hex_array<const N: usize>(
    what: &'static str,
    text: &str,
) -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| CryptoError::InvalidHex {
        what,
        expected: N,
        detail: e.to_string(),
    })?;
    Ok(out)
}

/// Lower-case hex of `bytes`, two characters a byte from a table (`hex::encode` builds its
/// string a `char` at a time, which showed in the API's profiles).
pub fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_hex_is_hex_encode() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&all), hex::encode(&all));
        assert_eq!(lower_hex(&[]), "");
        assert_eq!(
            decode_hex_array::<3>("x", &lower_hex(&[0, 0xab, 0xff])).unwrap(),
            [0, 0xab, 0xff]
        );
    }
}
