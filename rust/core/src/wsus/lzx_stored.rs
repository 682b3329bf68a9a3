//! Test support: cabinets whose one folder is LZX made of uncompressed blocks (LZX block type 3). No LZX compressor
//! is packaged for this project, and WSUS sends its compressed update blobs as LZX cabinets; stored blocks make a
//! valid LZX stream of any content, so the decoder can be checked against `cabextract` on real LZX framing.
//!
//! The cabinet around the frames is `cabinet::assemble_cabinet`'s. From the LZX bitstream description, each 32 KiB
//! frame holds one uncompressed block: the block header (the first frame starts with the one-bit "no E8 translation"
//! flag) packed MSB-first into little-endian 16-bit words and padded to the next word (1 to 16 bits), then the three
//! repeated-offset registers as 32-bit little-endian values, the raw bytes, and a pad byte after an odd-sized block.

use crate::wsus::cabinet::{CabinetMember, assemble_cabinet};

/// typeCompress: LZX (3) with a 2 MiB window (21 bits), as the specification names for update blobs.
const LZX_2MB: u16 = 3 | (21 << 8);

/// Bits packed most significant first into 16-bit little-endian words.
struct BitWriter {
    bytes: Vec<u8>,
    word: u16,
    used: u32,
}

impl BitWriter {
    fn new() -> Self {
        BitWriter { bytes: Vec::new(), word: 0, used: 0 }
    }

    fn put(&mut self, value: u32, count: u32) {
        for shift in (0..count).rev() {
            self.word = (self.word << 1) | ((value >> shift) & 1) as u16;
            self.used += 1;
            if self.used == 16 {
                self.bytes.extend_from_slice(&self.word.to_le_bytes());
                self.word = 0;
                self.used = 0;
            }
        }
    }

    /// An uncompressed block's header ends with 1-16 bits of padding: a whole word when already aligned.
    fn align_for_stored_block(mut self) -> Vec<u8> {
        let padding = 16 - self.used;
        self.put(0, padding);
        self.bytes
    }
}

fn lzx_frame(frame: &[u8], first: bool) -> Vec<u8> {
    let mut bits = BitWriter::new();
    if first {
        bits.put(0, 1); // no E8 call translation
    }
    bits.put(3, 3); // block type: uncompressed
    bits.put(frame.len() as u32, 24);
    let mut out = bits.align_for_stored_block();
    for _ in 0..3 {
        out.extend_from_slice(&1u32.to_le_bytes()); // R0, R1, R2
    }
    out.extend_from_slice(frame);
    if frame.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// A cabinet of the given members in one LZX folder of stored blocks.
pub fn lzx_stored_cabinet(members: &[(&str, &[u8])]) -> Vec<u8> {
    let members: Vec<CabinetMember> =
        members.iter().map(|(name, data)| CabinetMember { name: (*name).to_owned(), data: data.to_vec() }).collect();
    assemble_cabinet(&members, LZX_2MB, |frame, index| lzx_frame(frame, index == 0)).unwrap()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::wsus::cabinet::{CabinetLimits, read_cabinet};

    /// What `cabextract` makes of a cabinet: (name, bytes) for each member, in cabextract's own reading.
    fn cabextract(cabinet: &[u8]) -> Vec<(String, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.cab");
        std::fs::write(&path, cabinet).unwrap();
        let out_dir = dir.path().join("out");
        let status = Command::new("cabextract")
            .arg("-q")
            .arg("-d")
            .arg(&out_dir)
            .arg(&path)
            .status()
            .expect("cabextract is installed (apt-get install cabextract)");
        assert!(status.success(), "cabextract refused the cabinet");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                (entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut n = 0u32;
        while out.len() < len {
            n = n.wrapping_mul(2_654_435_761).wrapping_add(1);
            out.extend_from_slice(format!("<upd:File Size=\"{n}\"/>").as_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn cabextract_and_the_decoder_read_an_lzx_cabinet_alike() {
        // One odd-sized frame; a member across a frame boundary; several frames ending short; an empty member.
        let first = text(1001);
        let second = text(70_003);
        let third = text(32_768);
        let cabinet = lzx_stored_cabinet(&[("blob", &first), ("metadata.txt", &second), ("z", &third), ("e", b"")]);
        assert_eq!(cabinet[42..44], LZX_2MB.to_le_bytes(), "typeCompress says LZX");

        let ours = read_cabinet(&cabinet, &CabinetLimits::with_max_size(1 << 20)).unwrap();
        let expected = vec![
            CabinetMember { name: "blob".into(), data: first },
            CabinetMember { name: "metadata.txt".into(), data: second },
            CabinetMember { name: "z".into(), data: third },
            CabinetMember { name: "e".into(), data: Vec::new() },
        ];
        assert_eq!(ours, expected);

        let mut ours_sorted: Vec<(String, Vec<u8>)> = ours.into_iter().map(|m| (m.name, m.data)).collect();
        ours_sorted.sort();
        assert_eq!(cabextract(&cabinet), ours_sorted);
    }

    #[test]
    fn a_frame_ending_exactly_on_a_word_still_pads() {
        let mut bits = BitWriter::new();
        bits.put(0xabcd, 16);
        assert_eq!(bits.align_for_stored_block(), vec![0xcd, 0xab, 0, 0]);
    }

    #[test]
    fn a_truncated_lzx_cabinet_is_refused() {
        let cabinet = lzx_stored_cabinet(&[("blob", &text(50_000))]);
        for cut in [50, 100, cabinet.len() - 3] {
            let message = read_cabinet(&cabinet[..cut], &CabinetLimits::with_max_size(1 << 20)).unwrap_err();
            assert!(message.to_string().contains("truncated"), "{message}");
        }
    }
}
