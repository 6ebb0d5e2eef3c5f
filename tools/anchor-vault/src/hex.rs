// SPDX-License-Identifier: GPL-3.0-or-later
//! Lower-case hex for the LUKS2 token's binary fields.

/// Hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for n in [b >> 4, b & 0x0f] {
            s.push(char::from(
                DIGITS.get(usize::from(n)).copied().unwrap_or(b'0'),
            ));
        }
    }
    s
}

/// Bytes of lower-case hex `text`; `None` if it is not exactly that.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => Some((digit(*hi)? << 4) | digit(*lo)?),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let v: Vec<u8> = (0..=255).collect();
        assert_eq!(super::decode(&super::encode(&v)).unwrap(), v);
        assert_eq!(super::decode("abc"), None);
        assert_eq!(super::decode("AB"), None);
        assert_eq!(super::decode("").unwrap(), Vec::<u8>::new());
    }
}
