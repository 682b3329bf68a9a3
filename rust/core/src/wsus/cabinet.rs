//! Microsoft cabinets held in memory: the compressed update blobs of MS-WSUSSS (one LZX folder) and wsusutil export
//! packages. Decoding goes through the `cab` crate (LZX by `lzxd`, MSZIP, stored folders) behind limits the caller
//! sets, because a cabinet comes from the network and a few kilobytes of LZX can claim gigabytes.

use std::io::{self, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use cab::{Cabinet, CompressionType};
use flate2::Compression;
use flate2::write::DeflateEncoder;

use crate::error::{Error, Result};

/// One file of a cabinet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CabinetMember {
    pub name: String,
    pub data: Vec<u8>,
}

/// What a cabinet may unpack to before it is refused as a decompression bomb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CabinetLimits {
    /// The members' unpacked sizes added up.
    pub max_total_size: u64,
    pub max_members: usize,
}

impl CabinetLimits {
    /// A limit on the unpacked size, and the member count a wsusutil package or an update blob never comes near.
    pub fn with_max_size(max_total_size: u64) -> Self {
        CabinetLimits { max_total_size, max_members: 1024 }
    }
}

const SIGNATURE: &[u8; 4] = b"MSCF";
/// CFHEADER: signature, reserved, cbCabinet, ... ; the fixed part is 36 bytes.
const HEADER_SIZE: usize = 36;

/// Unpacks every member of a cabinet, in the order the cabinet lists them.
pub fn read_cabinet(data: &[u8], limits: &CabinetLimits) -> Result<Vec<CabinetMember>> {
    if data.len() < HEADER_SIZE {
        return Err(bad_cabinet(if data.starts_with(SIGNATURE) {
            format!("truncated: {} bytes, shorter than a cabinet header", data.len())
        } else {
            "not a cabinet (no MSCF signature)".to_owned()
        }));
    }
    if !data.starts_with(SIGNATURE) {
        return Err(bad_cabinet("not a cabinet (no MSCF signature)".to_owned()));
    }
    let declared_size = u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize;
    if declared_size > data.len() {
        return Err(bad_cabinet(format!("truncated: {} of its {declared_size} bytes", data.len())));
    }
    // A decoder that panics on hostile input must not take the process with it.
    catch_unwind(AssertUnwindSafe(|| unpack(data, limits)))
        .unwrap_or_else(|_| Err(bad_cabinet("its compressed data is corrupt (the decoder gave up)".to_owned())))
}

fn unpack(data: &[u8], limits: &CabinetLimits) -> Result<Vec<CabinetMember>> {
    let mut cabinet = Cabinet::new(Cursor::new(data)).map_err(|e| io_to_error(&e))?;
    let mut entries: Vec<(String, u64)> = Vec::new();
    for folder in cabinet.folder_entries() {
        if let CompressionType::Quantum(..) = folder.compression_type() {
            return Err(bad_cabinet("Quantum compression is not supported".to_owned()));
        }
        for file in folder.file_entries() {
            entries.push((file.name().to_owned(), u64::from(file.uncompressed_size())));
        }
    }
    if entries.len() > limits.max_members {
        return Err(bad_cabinet(format!("{} members, above the limit of {}", entries.len(), limits.max_members)));
    }
    let total: u64 = entries.iter().map(|(_, size)| size).sum();
    if total > limits.max_total_size {
        return Err(bad_cabinet(format!(
            "it would unpack to {total} bytes, above the limit of {} (a decompression bomb?)",
            limits.max_total_size
        )));
    }
    let mut members = Vec::with_capacity(entries.len());
    for (index, (name, size)) in entries.iter().enumerate() {
        if entries[..index].iter().any(|(earlier, _)| earlier == name) {
            return Err(bad_cabinet(format!("it names the member {name:?} twice")));
        }
        let mut bytes = Vec::with_capacity(*size as usize);
        cabinet
            .read_file(name)
            .and_then(|reader| reader.take(*size).read_to_end(&mut bytes))
            .map_err(|e| member_error(name, &e))?;
        if bytes.len() as u64 != *size {
            return Err(bad_cabinet(format!("member {name:?}: truncated at {} of {size} bytes", bytes.len())));
        }
        members.push(CabinetMember { name: name.clone(), data: bytes });
    }
    Ok(members)
}

/// Packs members into a cabinet with one MSZIP folder, as wsusutil's packages and cabinet tools expect.
///
/// Each 32 KiB frame is its own complete deflate stream. (The `cab` crate's writer continues one deflate stream
/// across frames; `cabextract` rejects the result as soon as a member spans two frames, so it is not used here.)
pub fn write_cabinet(members: &[CabinetMember]) -> Result<Vec<u8>> {
    assemble_cabinet(members, TYPE_MSZIP, mszip_frame)
}

/// typeCompress of an MSZIP folder.
const TYPE_MSZIP: u16 = 1;
/// A folder's data is cut into frames of this many bytes, one CFDATA each.
pub(crate) const FRAME_SIZE: usize = 32 * 1024;

fn mszip_frame(frame: &[u8], _index: usize) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(b"CK".to_vec(), Compression::default());
    // Writing to a Vec cannot fail.
    io::Write::write_all(&mut encoder, frame).expect("deflate into memory");
    encoder.finish().expect("deflate into memory")
}

/// A cabinet of one folder: CFHEADER, CFFOLDER, a CFFILE per member, then the folder's data cut into 32 KiB frames,
/// each encoded by `encode_frame(frame, index)` into one CFDATA with its checksum (readers check it: a changed byte of
/// a frame is caught before it is decoded).
pub(crate) fn assemble_cabinet(
    members: &[CabinetMember],
    type_compress: u16,
    mut encode_frame: impl FnMut(&[u8], usize) -> Vec<u8>,
) -> Result<Vec<u8>> {
    for member in members {
        if member.name.is_empty() || member.name.len() > 255 || member.name.contains('\0') {
            return Err(Error::InvalidInput(format!("cabinet member name {:?} is not allowed", member.name)));
        }
    }
    let folder_data: Vec<u8> = members.iter().flat_map(|member| member.data.iter().copied()).collect();
    if members.len() > usize::from(u16::MAX) || folder_data.len() > 0x7fff_8000 {
        return Err(Error::InvalidInput("too much for one cabinet folder".to_owned()));
    }
    let frames: Vec<Vec<u8>> =
        folder_data.chunks(FRAME_SIZE).enumerate().map(|(index, chunk)| encode_frame(chunk, index)).collect();
    let files_size: usize = members.iter().map(|member| 16 + member.name.len() + 1).sum();
    let data_start = HEADER_SIZE + 8 + files_size;
    let total = data_start + frames.iter().map(|frame| 8 + frame.len()).sum::<usize>();
    let total_u32 = u32::try_from(total).map_err(|_| Error::InvalidInput("too much for one cabinet".to_owned()))?;

    let mut out = Vec::with_capacity(total);
    let u16_le = |out: &mut Vec<u8>, value: usize| out.extend_from_slice(&(value as u16).to_le_bytes());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&total_u32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&((HEADER_SIZE + 8) as u32).to_le_bytes()); // the first CFFILE
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&[3, 1]); // format version 1.3
    u16_le(&mut out, 1); // folders
    u16_le(&mut out, members.len());
    u16_le(&mut out, 0); // flags
    u16_le(&mut out, 0); // set id
    u16_le(&mut out, 0); // index in the set
    out.extend_from_slice(&(data_start as u32).to_le_bytes());
    u16_le(&mut out, frames.len());
    out.extend_from_slice(&type_compress.to_le_bytes());
    let mut offset = 0usize;
    for member in members {
        out.extend_from_slice(&(member.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        u16_le(&mut out, 0); // folder 0
        u16_le(&mut out, (1 << 5) | 1); // 1980-01-01: a fixed date keeps the cabinet reproducible
        u16_le(&mut out, 0);
        u16_le(&mut out, if member.name.is_ascii() { 0x20 } else { 0xa0 }); // archive, name in UTF-8
        out.extend_from_slice(member.name.as_bytes());
        out.push(0);
        offset += member.data.len();
    }
    for (frame, chunk) in frames.iter().zip(folder_data.chunks(FRAME_SIZE)) {
        if frame.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidInput("a cabinet frame does not fit a CFDATA block".to_owned()));
        }
        out.extend_from_slice(&data_checksum(frame, chunk.len()).to_le_bytes());
        u16_le(&mut out, frame.len());
        u16_le(&mut out, chunk.len());
        out.extend_from_slice(frame);
    }
    Ok(out)
}

/// The CFDATA checksum of the cabinet format: the block's bytes XORed as little-endian 32-bit words (the last one to
/// three bytes taken most significant first), then the block's two sizes as one more word.
fn data_checksum(frame: &[u8], uncompressed: usize) -> u32 {
    let mut words = frame.chunks_exact(4);
    let mut sum = words.by_ref().fold(0u32, |sum, word| sum ^ u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
    sum ^= words.remainder().iter().fold(0u32, |tail, &byte| (tail << 8) | u32::from(byte));
    sum ^ (frame.len() as u32 | ((uncompressed as u32) << 16))
}

fn bad_cabinet(why: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("bad cabinet: {why}"))
}

fn io_to_error(error: &io::Error) -> Error {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        bad_cabinet("truncated".to_owned())
    } else {
        bad_cabinet(error.to_string())
    }
}

fn member_error(name: &str, error: &io::Error) -> Error {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        bad_cabinet(format!("member {name:?}: truncated"))
    } else {
        bad_cabinet(format!("member {name:?}: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(pairs: &[(&str, &[u8])]) -> Vec<CabinetMember> {
        pairs.iter().map(|(name, data)| CabinetMember { name: (*name).to_owned(), data: data.to_vec() }).collect()
    }

    fn generous() -> CabinetLimits {
        CabinetLimits::with_max_size(64 << 20)
    }

    /// Bytes that compress, and bytes that do not, above one 32 KiB block.
    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i % 3 == 0 { (state >> 16) as u8 } else { b"update"[i % 6] }
            })
            .collect()
    }

    #[test]
    fn round_trip_through_mszip() {
        let big = sample(200_000, 7);
        let input = members(&[("package.xml", b"<ExportPackage/>"), ("metadata.txt", &big), ("empty", b"")]);
        let packed = write_cabinet(&input).unwrap();
        assert!(packed.len() < big.len());
        assert_eq!(read_cabinet(&packed, &generous()).unwrap(), input);
    }

    #[test]
    fn cabextract_reads_what_write_cabinet_makes() {
        let dir = tempfile::tempdir().unwrap();
        let input = members(&[("metadata.txt", &sample(100_000, 5)), ("package.xml", b"<ExportPackage/>")]);
        let path = dir.path().join("package.cab");
        std::fs::write(&path, write_cabinet(&input).unwrap()).unwrap();
        let status = std::process::Command::new("cabextract").arg("-q").arg("-d").arg(dir.path()).arg(&path).status();
        assert!(status.expect("cabextract is installed").success(), "cabextract refused the cabinet");
        for member in &input {
            assert_eq!(std::fs::read(dir.path().join(&member.name)).unwrap(), member.data, "{}", member.name);
        }
    }

    #[test]
    fn a_truncated_cabinet_is_refused() {
        let packed = write_cabinet(&members(&[("blob", &sample(70_000, 3))])).unwrap();
        for cut in [10, 40, 60, packed.len() / 2, packed.len() - 1] {
            let message = read_cabinet(&packed[..cut], &generous()).unwrap_err().to_string();
            assert!(message.contains("truncated"), "cut at {cut}: {message}");
        }
    }

    #[test]
    fn not_a_cabinet() {
        let message = read_cabinet(b"PK\x03\x04 this is a zip file, not a cabinet....", &generous()).unwrap_err();
        assert!(message.to_string().contains("no MSCF signature"), "{message}");
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let packed = write_cabinet(&members(&[("blob", &sample(100_000, 11))])).unwrap();
        for position in (60..packed.len()).step_by(97) {
            let mut damaged = packed.clone();
            damaged[position] ^= 0x5a;
            // Either the damage is caught, or the bytes come back changed; never a panic or an endless loop.
            let _ = read_cabinet(&damaged, &generous());
        }
    }

    #[test]
    fn a_changed_byte_of_any_frame_fails_its_checksum() {
        let packed = write_cabinet(&members(&[("blob", &sample(100_000, 13))])).unwrap();
        let data_start = HEADER_SIZE + 8 + 16 + "blob".len() + 1;
        for position in (data_start..packed.len()).step_by(89) {
            let mut damaged = packed.clone();
            damaged[position] ^= 0x01;
            assert!(read_cabinet(&damaged, &generous()).is_err(), "a flip at {position} went unnoticed");
        }
    }

    #[test]
    fn a_bomb_is_refused_before_unpacking() {
        let zeros = vec![0u8; 8 << 20];
        let packed = write_cabinet(&members(&[("a", &zeros), ("b", &zeros)])).unwrap();
        assert!(packed.len() < 200_000, "{} bytes", packed.len());
        let limits = CabinetLimits::with_max_size(10 << 20);
        let message = read_cabinet(&packed, &limits).unwrap_err().to_string();
        assert!(message.contains("above the limit of 10485760"), "{message}");
        assert_eq!(read_cabinet(&packed, &CabinetLimits::with_max_size(16 << 20)).unwrap().len(), 2);
    }

    #[test]
    fn too_many_members_are_refused() {
        let many: Vec<CabinetMember> =
            (0..20).map(|i| CabinetMember { name: format!("m{i}"), data: vec![1, 2, 3] }).collect();
        let packed = write_cabinet(&many).unwrap();
        let limits = CabinetLimits { max_total_size: 1 << 20, max_members: 10 };
        let message = read_cabinet(&packed, &limits).unwrap_err().to_string();
        assert!(message.contains("20 members, above the limit of 10"), "{message}");
    }

    #[test]
    fn a_bad_member_name_is_refused_when_writing() {
        assert!(write_cabinet(&members(&[("", b"x")])).is_err());
        assert!(write_cabinet(&members(&[("a\0b", b"x")])).is_err());
    }
}
