//! Microsoft cabinets held in memory: the compressed update blobs of MS-WSUSSS (one LZX folder) and wsusutil export
//! packages, behind limits the caller sets, because a cabinet comes from the network and a few kilobytes of LZX can
//! claim gigabytes.
//!
//! A cabinet of one folder, nothing reserved and no neighbours in a set (every update blob, every package upmirror
//! writes) is read here: its frames are inflated in place, MSZIP by miniz_oxide into one output buffer (a frame's
//! back-references into the frame before are plain offsets into it), LZX by the `lzxd` crate, one decoder of the
//! folder's declared window per folder. Anything else goes through the `cab` crate (LZX by `lzxd`, MSZIP, stored
//! folders), which is what read them all before: slower per small blob.

use std::cell::RefCell;
use std::io::{self, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use cab::{Cabinet, CompressionType};
use flate2::Compression;
use flate2::write::DeflateEncoder;
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::error::{Error, Result};
use lzxd::{Lzxd, WindowSize};

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
    catch_unwind(AssertUnwindSafe(|| read_one_folder(data, limits).unwrap_or_else(|| unpack(data, limits))))
        .unwrap_or_else(|_| {
            // The thread's decoders may have been left half-way: the next cabinet gets new ones.
            forget_decoders();
            Err(bad_cabinet("its compressed data is corrupt (the decoder gave up)".to_owned()))
        })
}

/// CFHEADER flags (prev/next cabinet, reserve fields): none in a simple cabinet.
const HEADER_FLAGS_AT: usize = 30;
/// CFFOLDER: coffCabStart (u32), cCFData (u16), typeCompress (u16).
const FOLDER_SIZE: usize = 8;
/// CFFILE before its name: cbFile, uoffFolderStart (u32 each), iFolder, date, time, attribs (u16 each).
const FILE_FIXED_SIZE: usize = 16;
/// CFDATA before its bytes: csum (u32), cbData, cbUncomp (u16 each).
const DATA_HEADER_SIZE: usize = 8;

enum Method {
    Stored,
    MsZip,
    Lzx(WindowSize),
}

thread_local! {
    /// One inflater per thread (about 11 KB of tables).
    static INFLATE: RefCell<Option<Box<DecompressorOxide>>> = const { RefCell::new(None) };
}

fn forget_decoders() {
    let _ = INFLATE.try_with(|cell| cell.try_borrow_mut().map(|mut decoder| *decoder = None));
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2).map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4).map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The members of a simple one-folder cabinet, or None when the cabinet is anything else (the `cab` crate's turn,
/// which also words the errors of malformed headers). Limits and errors are those of `unpack`.
fn read_one_folder(data: &[u8], limits: &CabinetLimits) -> Option<Result<Vec<CabinetMember>>> {
    // Version 1.3, one folder, no flags.
    if data[24..26] != [3, 1] || u16_at(data, 26)? != 1 || u16_at(data, HEADER_FLAGS_AT)? != 0 {
        return None;
    }
    let data_start = u32_at(data, HEADER_SIZE)? as usize;
    let blocks = usize::from(u16_at(data, HEADER_SIZE + 4)?);
    let type_compress = u16_at(data, HEADER_SIZE + 6)?;
    let method = match type_compress & 0x000f {
        0 => Method::Stored,
        1 => Method::MsZip,
        3 => Method::Lzx(match (type_compress >> 8) & 0x1f {
            15 => WindowSize::KB32,
            16 => WindowSize::KB64,
            17 => WindowSize::KB128,
            18 => WindowSize::KB256,
            19 => WindowSize::KB512,
            20 => WindowSize::MB1,
            21 => WindowSize::MB2,
            _ => return None,
        }),
        _ => return None,
    };
    // The members: (name, size, offset in the folder), ASCII names only (the crate decides about the others).
    let file_count = usize::from(u16_at(data, 28)?);
    let mut at = u32_at(data, 16)? as usize;
    if at < HEADER_SIZE + FOLDER_SIZE {
        return None;
    }
    let mut entries: Vec<(String, u64, u64)> = Vec::with_capacity(file_count.min(limits.max_members + 1));
    for _ in 0..file_count {
        let size = u32_at(data, at)?;
        let offset = u32_at(data, at + 4)?;
        if u16_at(data, at + 8)? != 0 {
            return None;
        }
        let name_start = at + FILE_FIXED_SIZE;
        let name_len = data.get(name_start..)?.iter().position(|&byte| byte == 0)?;
        let name = &data[name_start..name_start + name_len];
        if name.is_empty() || !name.is_ascii() {
            return None;
        }
        entries.push((String::from_utf8_lossy(name).into_owned(), u64::from(size), u64::from(offset)));
        at = name_start + name_len + 1;
    }
    if entries.len() > limits.max_members {
        return Some(Err(bad_cabinet(format!("{} members, above the limit of {}", entries.len(), limits.max_members))));
    }
    let total: u64 = entries.iter().map(|(_, size, _)| size).sum();
    if total > limits.max_total_size {
        return Some(Err(bad_cabinet(format!(
            "it would unpack to {total} bytes, above the limit of {} (a decompression bomb?)",
            limits.max_total_size
        ))));
    }
    for (index, (name, _, _)) in entries.iter().enumerate() {
        if entries[..index].iter().any(|(earlier, _, _)| earlier == name) {
            return Some(Err(bad_cabinet(format!("it names the member {name:?} twice"))));
        }
    }
    // Only what the members cover is unpacked; members beyond the limit (gaps, overlaps) are the crate's business.
    let end = entries.iter().map(|(_, size, offset)| size + offset).max().unwrap_or(0);
    if end > limits.max_total_size {
        return None;
    }
    let folder = match unpack_folder(data, data_start, blocks, &method, end as usize) {
        Ok(folder) => folder,
        Err(why) => {
            // Named after the member being unpacked when it failed, as the crate's reader does.
            let produced = why.produced as u64;
            let name = entries.iter().find(|(_, size, offset)| offset + size > produced).map_or("", |e| &e.0);
            return Some(Err(bad_cabinet(format!("member {name:?}: {}", why.message))));
        }
    };
    // Frames that end before the members do: the member cut short is named, as `unpack` names it.
    if let Some((name, size, offset)) = entries.iter().find(|(_, size, offset)| offset + size > folder.len() as u64) {
        let got = (folder.len() as u64).saturating_sub(*offset);
        return Some(Err(bad_cabinet(format!("member {name:?}: truncated at {got} of {size} bytes"))));
    }
    Some(Ok(split_members(entries, folder)))
}

struct FolderError {
    /// How many bytes of the folder were unpacked before the failure.
    produced: usize,
    message: String,
}

/// The first `end` bytes of the folder (fewer if its frames end first).
fn unpack_folder(
    data: &[u8],
    mut at: usize,
    blocks: usize,
    method: &Method,
    end: usize,
) -> std::result::Result<Vec<u8>, FolderError> {
    let mut out: Vec<u8> = Vec::with_capacity(end);
    let failed = |out: &Vec<u8>, message: String| FolderError { produced: out.len(), message };
    let mut lzx = match method {
        // A decoder per folder, of the window the folder declares (the lzxd crate's reset allocates a new window
        // anyway, so keeping one would not save its zeroing).
        Method::Lzx(window) => Some(Lzxd::new(*window)),
        _ => None,
    };
    let mut inflate = match method {
        Method::MsZip => Some(INFLATE.with(|cell| cell.borrow_mut().take()).unwrap_or_default()),
        _ => None,
    };
    let mut result = Ok(());
    for index in 0..blocks {
        if out.len() >= end {
            break;
        }
        let header = data.get(at..at + DATA_HEADER_SIZE);
        let Some(header) = header else {
            result = Err(failed(&out, "truncated".to_owned()));
            break;
        };
        let checksum = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let packed_size = usize::from(u16::from_le_bytes([header[4], header[5]]));
        let size = usize::from(u16::from_le_bytes([header[6], header[7]]));
        let Some(packed) = data.get(at + DATA_HEADER_SIZE..at + DATA_HEADER_SIZE + packed_size) else {
            result = Err(failed(&out, "truncated".to_owned()));
            break;
        };
        at += DATA_HEADER_SIZE + packed_size;
        if checksum != 0 && checksum != data_checksum(packed, size) {
            result = Err(failed(&out, format!("checksum error in data block {index}")));
            break;
        }
        let start = out.len();
        let step = match method {
            Method::Stored if packed_size == size => {
                out.extend_from_slice(packed);
                Ok(())
            }
            Method::Stored => Err(format!("data block {index} stores {packed_size} bytes but says {size}")),
            Method::MsZip => inflate_frame(inflate.as_deref_mut().expect("an inflater"), packed, &mut out, size)
                .map_err(|why| format!("MSZIP data block {index}: {why}")),
            Method::Lzx(_) => match lzx.as_mut().expect("an LZX decoder").decompress_next(packed, size) {
                Ok(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(())
                }
                Err(error) => Err(format!("LZX data block {index}: {error}")),
            },
        };
        if let Err(message) = step {
            out.truncate(start);
            result = Err(failed(&out, message));
            break;
        }
    }
    if let Some(decoder) = inflate {
        INFLATE.with(|cell| *cell.borrow_mut() = Some(decoder));
    }
    result.map(|()| out)
}

/// One MSZIP frame ("CK", then a deflate stream of `size` bytes that may refer back into the frames before it)
/// appended to `out`.
fn inflate_frame(
    inflater: &mut DecompressorOxide,
    packed: &[u8],
    out: &mut Vec<u8>,
    size: usize,
) -> std::result::Result<(), String> {
    let Some(stream) = packed.strip_prefix(b"CK") else {
        return Err("no CK signature".to_owned());
    };
    let start = out.len();
    out.resize(start + size, 0);
    inflater.init();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(inflater, stream, &mut out[..], start, flags);
    match status {
        TINFLStatus::Done if written == size => Ok(()),
        TINFLStatus::Done | TINFLStatus::HasMoreOutput => {
            Err(format!("it unpacks to other than the {size} bytes it declares"))
        }
        TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => Err("truncated".to_owned()),
        _ => Err("corrupt deflate data".to_owned()),
    }
}

/// The members cut out of the unpacked folder (the only member of an update blob takes the buffer as it is).
fn split_members(entries: Vec<(String, u64, u64)>, mut folder: Vec<u8>) -> Vec<CabinetMember> {
    folder.truncate(entries.iter().map(|(_, size, offset)| size + offset).max().unwrap_or(0) as usize);
    if entries.len() == 1 && entries[0].2 == 0 && entries[0].1 as usize == folder.len() {
        let name = entries.into_iter().next().map(|(name, _, _)| name).unwrap_or_default();
        return vec![CabinetMember { name, data: std::mem::take(&mut folder) }];
    }
    entries
        .into_iter()
        .map(|(name, size, offset)| {
            let (offset, size) = (offset as usize, size as usize);
            CabinetMember { name, data: folder[offset..offset + size].to_vec() }
        })
        .collect()
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

    /// What the `cab` crate alone makes of a cabinet (the way every cabinet was read before the one-folder path).
    fn through_the_crate(data: &[u8]) -> Result<Vec<CabinetMember>> {
        unpack(data, &generous())
    }

    /// A cabinet the `cab` crate writes: one deflate stream continued across frames, checksums, a stored folder.
    fn crate_cabinet(compression: CompressionType, input: &[CabinetMember]) -> Vec<u8> {
        let mut builder = cab::CabinetBuilder::new();
        let folder = builder.add_folder(compression);
        for member in input {
            folder.add_file(member.name.clone());
        }
        let mut writer = builder.build(Cursor::new(Vec::new())).unwrap();
        let mut index = 0;
        while let Some(mut file) = writer.next_file().unwrap() {
            io::Write::write_all(&mut file, &input[index].data).unwrap();
            index += 1;
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn the_one_folder_path_reads_as_the_crate_does() {
        let input = members(&[("a.xml", &sample(70_001, 1)), ("b", &sample(40_000, 2)), ("empty", b"")]);
        let cabinets = [
            write_cabinet(&input).unwrap(),
            crate_cabinet(CompressionType::MsZip, &input),
            crate_cabinet(CompressionType::None, &input),
            super::super::lzx_stored::lzx_stored_cabinet(&[("a.xml", &input[0].data), ("b", &input[1].data)]),
        ];
        for (index, cabinet) in cabinets.iter().enumerate() {
            let fast = read_one_folder(cabinet, &generous()).expect("a simple one-folder cabinet").unwrap();
            assert_eq!(fast, through_the_crate(cabinet).unwrap(), "cabinet {index}");
            assert_eq!(fast[..2], input[..2], "cabinet {index}");
        }
    }

    #[test]
    fn one_thread_reads_many_lzx_cabinets_one_after_another() {
        // Each cabinet is read on its own: a shorter one after a longer one, and one after a failure.
        let long = super::super::lzx_stored::lzx_stored_cabinet(&[("blob", &sample(90_000, 4))]);
        let short = super::super::lzx_stored::lzx_stored_cabinet(&[("blob", &sample(5_000, 5))]);
        let mut broken = long.clone();
        broken[70] ^= 0xff;
        for _ in 0..3 {
            assert_eq!(read_cabinet(&long, &generous()).unwrap(), through_the_crate(&long).unwrap());
            let _ = read_cabinet(&broken, &generous());
            assert_eq!(read_cabinet(&short, &generous()).unwrap(), through_the_crate(&short).unwrap());
        }
    }

    #[test]
    fn a_changed_byte_fails_its_checksum() {
        let packed = write_cabinet(&members(&[("blob", &sample(70_000, 9))])).unwrap();
        let mut damaged = packed.clone();
        let last = damaged.len() - 5;
        damaged[last] ^= 1;
        let message = read_cabinet(&damaged, &generous()).unwrap_err().to_string();
        assert!(message.contains("checksum error in data block"), "{message}");
    }

    #[test]
    fn frames_that_end_before_the_members_name_the_member() {
        let mut packed = write_cabinet(&members(&[("blob", &sample(70_000, 6))])).unwrap();
        packed[HEADER_SIZE + 4] = 2; // two CFDATA of the three
        let message = read_cabinet(&packed, &generous()).unwrap_err().to_string();
        assert!(message.contains("member \"blob\": truncated at 65536 of 70000 bytes"), "{message}");
        assert_eq!(message, through_the_crate(&packed).unwrap_err().to_string());
    }

    #[test]
    fn a_bad_member_name_is_refused_when_writing() {
        assert!(write_cabinet(&members(&[("", b"x")])).is_err());
        assert!(write_cabinet(&members(&[("a\0b", b"x")])).is_err());
    }
}
