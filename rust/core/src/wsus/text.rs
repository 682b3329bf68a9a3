//! The text of an update's XML as it arrives: UTF-8 in XmlUpdateBlob, UTF-16LE without a byte-order mark inside the
//! cabinet of XmlUpdateBlobCompressed. A byte-order mark, where one is present, wins over the guess.

use crate::error::{Error, Result};

/// Decodes update XML bytes to text: UTF-8 or UTF-16LE, with or without a byte-order mark.
pub fn decode_xml_text(bytes: &[u8]) -> Result<String> {
    if let Some(rest) = bytes.strip_prefix(b"\xef\xbb\xbf") {
        return utf8(rest);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xff\xfe") {
        return utf16le(rest);
    }
    // XML starts with '<' (or whitespace): in UTF-16LE its second byte is zero, in UTF-8 never.
    if bytes.len() >= 2 && bytes[1] == 0 {
        return utf16le(bytes);
    }
    utf8(bytes)
}

/// UTF-16LE without a byte-order mark: what the cabinet of a compressed update blob holds.
pub fn encode_utf16le(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

fn utf8(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        Error::InvalidInput(format!("update XML is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
    })
}

fn utf16le(bytes: &[u8]) -> Result<String> {
    if bytes.len() % 2 != 0 {
        return Err(Error::InvalidInput(format!("update XML in UTF-16 has an odd length ({} bytes)", bytes.len())));
    }
    let unit = |index: usize| u16::from_le_bytes([bytes[2 * index], bytes[2 * index + 1]]);
    let units = bytes.len() / 2;
    let mut out: Vec<u8> = Vec::with_capacity(units + units / 8);
    let mut index = 0;
    while index < units {
        // Update XML is nearly all ASCII: eight units at a time while every high byte is zero and no low byte has
        // its top bit (one char::decode_utf16 step per unit took a fifth of a compressed blob's decode).
        if let Some(group) = bytes.get(2 * index..2 * index + 16) {
            let word = u128::from_le_bytes(group.try_into().expect("16 bytes"));
            if word & 0xff80_ff80_ff80_ff80_ff80_ff80_ff80_ff80 == 0 {
                // The eight low bytes packed together, in order.
                let word = (word | (word >> 8)) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
                let word = (word | (word >> 16)) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
                let word = (word | (word >> 32)) & 0xffff_ffff_ffff_ffff;
                out.extend_from_slice(&(word as u64).to_le_bytes());
                index += 8;
                continue;
            }
        }
        let first = unit(index);
        let (c, step) = match first {
            0xd800..=0xdbff if index + 1 < units && (0xdc00..=0xdfff).contains(&unit(index + 1)) => {
                let high = u32::from(first - 0xd800);
                let low = u32::from(unit(index + 1) - 0xdc00);
                (char::from_u32(0x10000 + (high << 10) + low), 2)
            }
            0xd800..=0xdfff => (None, 1),
            _ => (char::from_u32(u32::from(first)), 1),
        };
        let Some(c) = c else {
            return Err(Error::InvalidInput(format!(
                "update XML in UTF-16 has an unpaired surrogate at byte {}",
                index * 2
            )));
        };
        let mut buffer = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        index += step;
    }
    // Only whole characters were written.
    Ok(String::from_utf8(out).expect("UTF-8 made of chars"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_and_utf16_read_alike() {
        let xml = "<upd:Update><t>Mise à jour — 更新 🛡</t></upd:Update>";
        assert_eq!(decode_xml_text(xml.as_bytes()).unwrap(), xml);
        assert_eq!(decode_xml_text(&encode_utf16le(xml)).unwrap(), xml);
        let mut with_bom = vec![0xff, 0xfe];
        with_bom.extend(encode_utf16le(xml));
        assert_eq!(decode_xml_text(&with_bom).unwrap(), xml);
        let mut utf8_bom = b"\xef\xbb\xbf".to_vec();
        utf8_bom.extend_from_slice(xml.as_bytes());
        assert_eq!(decode_xml_text(&utf8_bom).unwrap(), xml);
    }

    #[test]
    fn bad_text_is_named() {
        assert!(decode_xml_text(b"<a>\xff\xfe\xfd</a>").unwrap_err().to_string().contains("not valid UTF-8"));
        assert!(decode_xml_text(b"<\0a").unwrap_err().to_string().contains("odd length"));
        assert!(decode_xml_text(b"<\0\x00\xd8").unwrap_err().to_string().contains("unpaired surrogate at byte 2"));
        // The eight-unit path and the one-unit path meet: a surrogate pair, ASCII, a lone low surrogate.
        let mixed = "0123456789abcdef\u{1f6e1}0123456789abcdefé";
        assert_eq!(decode_xml_text(&encode_utf16le(mixed)).unwrap(), mixed);
        let mut lone = encode_utf16le("0123456789abcdefgh");
        lone.extend_from_slice(&[0x00, 0xdc]);
        assert!(decode_xml_text(&lone).unwrap_err().to_string().contains("unpaired surrogate at byte 36"));
    }
}
