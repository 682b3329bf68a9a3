//! The metadata layer of the WSUS world (MS-WSUSSS): Microsoft cabinets, the text of update blobs, and one update's
//! XML read into plain fields and written back. Upstream clients and servers of the WSUS protocol and wsusutil
//! packages build on it; nothing here does I/O.

pub mod cabinet;
#[cfg(test)]
mod lzx_stored;
pub mod text;
pub mod update_xml;

use rayon::prelude::*;

pub use cabinet::{CabinetLimits, CabinetMember, read_cabinet, write_cabinet};
pub use text::{decode_xml_text, encode_utf16le};
pub use update_xml::{
    CategoryType, DriverMetadata, LocalizedProperties, ParseLimits, PublicationState, UpdateFile, UpdateIdentity,
    UpdateMetadata, UpdateType, parse_update_xml, write_update_xml,
};

use crate::error::{Error, Result};

/// The name WSUS gives the one member of a compressed update blob.
pub const BLOB_MEMBER: &str = "blob";

/// The XML text of an update blob: XmlUpdateBlob as it is, or XmlUpdateBlobCompressed unpacked (a cabinet holding
/// UTF-16LE text), within the parse limits.
pub fn update_blob_text(data: &[u8], compressed: bool, limits: &ParseLimits) -> Result<String> {
    if !compressed {
        if data.len() > limits.max_bytes {
            return Err(Error::InvalidInput(format!(
                "update XML: {} bytes, above the limit of {}",
                data.len(),
                limits.max_bytes
            )));
        }
        return decode_xml_text(data);
    }
    // UTF-16 takes two bytes for each of the text's characters that UTF-8 writes in one.
    let cabinet_limits = CabinetLimits { max_total_size: 2 * limits.max_bytes as u64, max_members: 1 };
    let mut members = read_cabinet(data, &cabinet_limits)?;
    let member = members.pop().ok_or_else(|| Error::InvalidInput("compressed update blob: an empty cabinet".into()))?;
    decode_xml_text(&member.data)
}

/// Reads one update blob into its metadata.
pub fn decode_update_blob(data: &[u8], compressed: bool, limits: &ParseLimits) -> Result<UpdateMetadata> {
    parse_update_xml(&update_blob_text(data, compressed, limits)?, limits)
}

/// Reads many update blobs on rayon's pool; each result stands alone, in the order given.
pub fn decode_update_blobs<B: AsRef<[u8]> + Sync>(
    blobs: &[(B, bool)],
    limits: &ParseLimits,
) -> Vec<Result<UpdateMetadata>> {
    blobs.par_iter().map(|(data, compressed)| decode_update_blob(data.as_ref(), *compressed, limits)).collect()
}

/// An update's XML as XmlUpdateBlobCompressed carries it: UTF-16LE in a one-member cabinet (MSZIP here, since no
/// LZX compressor is at hand; readers take either).
pub fn compress_update_xml(xml: &str) -> Result<Vec<u8>> {
    write_cabinet(&[CabinetMember { name: BLOB_MEMBER.to_owned(), data: encode_utf16le(xml) }])
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::lzx_stored::lzx_stored_cabinet;
    use super::*;

    const LEAF: &str = include_str!("../../tests/fixtures/wsus/leaf-update.xml");
    const BUNDLE: &str = include_str!("../../tests/fixtures/wsus/bundle.xml");

    /// A leaf update grown past the 5,120 bytes above which WSUS compresses blobs: more applicability rules.
    fn large_update() -> String {
        let rule = "<bar:RegDword Key=\"HKEY_LOCAL_MACHINE\" Subkey=\"SOFTWARE\\Microsoft\\Windows Defender\" \
                    Value=\"DeltaUpdateFailure\" Comparison=\"GreaterThanOrEqualTo\" Data=\"1\" />";
        LEAF.replace("<upd:IsInstallable>", &format!("<upd:IsInstallable><lar:Or>{}", rule.repeat(60)))
            .replace("</upd:IsInstallable>", "</lar:Or></upd:IsInstallable>")
    }

    #[test]
    fn plain_and_compressed_blobs_read_alike() {
        let limits = ParseLimits::default();
        let expected = parse_update_xml(LEAF, &limits).unwrap();
        assert_eq!(decode_update_blob(LEAF.as_bytes(), false, &limits).unwrap(), expected);
        let mszip = compress_update_xml(LEAF).unwrap();
        assert_eq!(decode_update_blob(&mszip, true, &limits).unwrap(), expected);
        let lzx = lzx_stored_cabinet(&[(BLOB_MEMBER, &encode_utf16le(LEAF))]);
        assert_eq!(decode_update_blob(&lzx, true, &limits).unwrap(), expected);
        assert_eq!(update_blob_text(&lzx, true, &limits).unwrap(), LEAF);
    }

    #[test]
    fn blob_limits_hold_for_compressed_text() {
        let limits = ParseLimits { max_bytes: 1000, max_depth: 64 };
        let compressed = compress_update_xml(LEAF).unwrap();
        let message = decode_update_blob(&compressed, true, &limits).unwrap_err().to_string();
        assert!(message.contains("above the limit of 2000"), "{message}");
        let message = decode_update_blob(LEAF.as_bytes(), false, &limits).unwrap_err().to_string();
        assert!(message.contains("above the limit of 1000"), "{message}");
        let two = write_cabinet(&[
            CabinetMember { name: "a".into(), data: b"<".to_vec() },
            CabinetMember { name: "b".into(), data: b"<".to_vec() },
        ])
        .unwrap();
        assert!(decode_update_blob(&two, true, &ParseLimits::default()).unwrap_err().to_string().contains("members"));
        assert!(decode_update_blob(b"MSCF", true, &limits).unwrap_err().to_string().contains("truncated"));
    }

    #[test]
    fn many_blobs_keep_their_order_and_their_own_errors() {
        let compressed = compress_update_xml(BUNDLE).unwrap();
        let blobs: Vec<(&[u8], bool)> =
            vec![(LEAF.as_bytes(), false), (b"<oops", false), (&compressed, true), (LEAF.as_bytes(), true)];
        let results = decode_update_blobs(&blobs, &ParseLimits::default());
        assert_eq!(results[0].as_ref().unwrap().revision_number, 201);
        assert!(results[1].is_err());
        assert_eq!(results[2].as_ref().unwrap().update_id, "c0ffee00-1234-4abc-8def-0123456789ab");
        assert!(results[3].as_ref().unwrap_err().to_string().contains("no MSCF signature"));
    }

    /// The decode+parse rate of typical blobs on every core:
    /// `cargo test --release -p upmirror-core --lib decode_rate -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn decode_rate() {
        let count = 100_000;
        let large = large_update();
        assert!(large.len() > 5120);
        let lzx = lzx_stored_cabinet(&[(BLOB_MEMBER, &encode_utf16le(&large))]);
        let mszip = compress_update_xml(&large).unwrap();
        let plain: Vec<(&[u8], bool)> =
            (0..count).map(|i| (if i % 2 == 0 { LEAF } else { BUNDLE }.as_bytes(), false)).collect();
        let lzx_blobs: Vec<(&[u8], bool)> = (0..count).map(|_| (lzx.as_slice(), true)).collect();
        let mszip_blobs: Vec<(&[u8], bool)> = (0..count).map(|_| (mszip.as_slice(), true)).collect();
        let limits = ParseLimits::default();
        for (name, blobs, bytes) in [
            ("plain UTF-8 (leaf and bundle, 3.2 KB / 2.5 KB)", &plain, usize::midpoint(LEAF.len(), BUNDLE.len())),
            ("LZX cabinet, UTF-16 (stored blocks, 17 KB of XML)", &lzx_blobs, large.len()),
            ("MSZIP cabinet, UTF-16 (17 KB of XML)", &mszip_blobs, large.len()),
        ] {
            let started = Instant::now();
            let results = decode_update_blobs(blobs, &limits);
            let seconds = started.elapsed().as_secs_f64();
            if let Some(Err(error)) = results.iter().find(|result| result.is_err()) {
                panic!("{name}: {error}");
            }
            println!(
                "{name}: {count} blobs in {seconds:.2} s on {} threads = {:.0} blobs/s, {:.0} MB/s of XML",
                rayon::current_num_threads(),
                count as f64 / seconds,
                (count * bytes) as f64 / seconds / 1e6
            );
        }
    }
}
