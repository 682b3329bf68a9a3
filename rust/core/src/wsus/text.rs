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
    let units = bytes.chunks_exact(2).map(|pair| u16::from_le_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .enumerate()
        .map(|(index, unit)| {
            unit.map_err(|_| {
                Error::InvalidInput(format!("update XML in UTF-16 has an unpaired surrogate at byte {}", index * 2))
            })
        })
        .collect()
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
        assert!(decode_xml_text(b"<\0\x00\xd8").unwrap_err().to_string().contains("unpaired surrogate"));
    }
}
