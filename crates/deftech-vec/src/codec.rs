//! Byte-level helpers: the 64-byte header of every immutable file, a bounds-checked reader and
//! little-endian writers. On-disk integers are fixed-width little-endian; never `usize`.

use std::path::Path;

use crate::directory::{Directory, FileBytes, WritableFile};
use crate::error::{Error, IoContext, Result};

#[cfg(target_endian = "big")]
compile_error!(
    "deftech-vec maps little-endian files directly and supports little-endian targets only"
);

/// Size of the header at the start of every immutable file.
pub(crate) const HEADER_LEN: usize = 64;

/// Current version of every immutable file format in this crate.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The fixed header of an immutable file.
///
/// ```text
/// offset size field
///      0    8 magic (file kind)
///      8    4 format version (u32 LE)
///     12    4 flags (u32 LE, 0)
///     16    8 body length in bytes (u64 LE); the body starts at offset 64
///     24    4 CRC32C of the body (u32 LE)
///     28    4 reserved (0)
///     32   24 three kind-specific u64 LE parameters
///     56    4 CRC32C of bytes 0..56 (u32 LE)
///     60    4 reserved (0)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub magic: [u8; 8],
    pub body_len: u64,
    pub body_crc: u32,
    pub params: [u64; 3],
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&self.magic);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.body_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            b[32 + i * 8..40 + i * 8].copy_from_slice(&p.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks the header of `bytes` (magic, version, header checksum, body length).
    /// The body checksum is checked by [`verify_body`], which reads the whole file.
    pub(crate) fn decode(bytes: &[u8], magic: &[u8; 8], path: &Path) -> Result<Header> {
        if bytes.len() < HEADER_LEN {
            return Err(Error::corrupted(
                path,
                0,
                format!(
                    "file is {} bytes, shorter than its {HEADER_LEN}-byte header",
                    bytes.len()
                ),
            ));
        }
        let b = &bytes[..HEADER_LEN];
        if &b[0..8] != magic {
            return Err(Error::corrupted(
                path,
                0,
                format!(
                    "bad magic {:?}, expected {:?}",
                    ascii(&b[0..8]),
                    ascii(magic)
                ),
            ));
        }
        let stored = u32::from_le_bytes(b[56..60].try_into().expect("4 bytes"));
        if stored != crc32c::crc32c(&b[..56]) {
            return Err(Error::corrupted(path, 56, "header checksum mismatch"));
        }
        let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let header = Header {
            magic: *magic,
            body_len: u64_at(16),
            body_crc: u32::from_le_bytes(b[24..28].try_into().expect("4 bytes")),
            params: [u64_at(32), u64_at(40), u64_at(48)],
        };
        let actual = (bytes.len() - HEADER_LEN) as u64;
        if header.body_len != actual {
            return Err(Error::corrupted(
                path,
                16,
                format!(
                    "header says the body is {} bytes, the file holds {actual}",
                    header.body_len
                ),
            ));
        }
        Ok(header)
    }
}

fn ascii(b: &[u8]) -> String {
    b.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '.' })
        .collect()
}

/// Checks the body checksum (reads the whole file).
pub(crate) fn verify_body(bytes: &[u8], header: &Header, path: &Path) -> Result<()> {
    if crc32c::crc32c(&bytes[HEADER_LEN..]) != header.body_crc {
        return Err(Error::corrupted(
            path,
            HEADER_LEN as u64,
            "body checksum mismatch",
        ));
    }
    Ok(())
}

/// Writes an immutable file: a placeholder header, the streamed body, then the real header;
/// synced before returning. The caller renames or publishes it afterwards.
pub(crate) struct FileWriter {
    file: Box<dyn WritableFile>,
    path: std::path::PathBuf,
    shown: std::path::PathBuf,
    magic: [u8; 8],
    crc: u32,
    len: u64,
    buf: Vec<u8>,
}

impl FileWriter {
    pub(crate) fn create(dir: &dyn Directory, path: &Path, magic: &[u8; 8]) -> Result<FileWriter> {
        let shown = dir.describe(path);
        let mut file = dir.create(path).at(&shown)?;
        file.write_all(&[0u8; HEADER_LEN]).at(&shown)?;
        Ok(FileWriter {
            file,
            path: path.to_owned(),
            shown,
            magic: *magic,
            crc: 0,
            len: 0,
            buf: Vec::with_capacity(1 << 16),
        })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        if self.buf.len() + bytes.len() > (1 << 16) {
            self.flush_buf()?;
        }
        if bytes.len() >= (1 << 16) {
            self.file.write_all(bytes).at(&self.shown)
        } else {
            self.buf.extend_from_slice(bytes);
            Ok(())
        }
    }

    pub(crate) fn write_u32(&mut self, v: u32) -> Result<()> {
        self.write(&v.to_le_bytes())
    }

    pub(crate) fn write_u64(&mut self, v: u64) -> Result<()> {
        self.write(&v.to_le_bytes())
    }

    pub(crate) fn write_f32s(&mut self, v: &[f32]) -> Result<()> {
        self.write(bytemuck::cast_slice(v))
    }

    /// Pads the body with zeros to a multiple of `align` bytes.
    pub(crate) fn pad_to(&mut self, align: u64) -> Result<()> {
        let rem = self.len % align;
        if rem != 0 {
            self.write(&vec![0u8; (align - rem) as usize])?;
        }
        Ok(())
    }

    pub(crate) fn body_len(&self) -> u64 {
        self.len
    }

    fn flush_buf(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf).at(&self.shown)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the header, syncs, and returns the body checksum.
    pub(crate) fn finish(mut self, params: [u64; 3]) -> Result<u32> {
        self.flush_buf()?;
        let header = Header {
            magic: self.magic,
            body_len: self.len,
            body_crc: self.crc,
            params,
        };
        self.file.write_at(0, &header.encode()).at(&self.shown)?;
        self.file.sync().at(&self.shown)?;
        let _ = &self.path;
        Ok(self.crc)
    }
}

/// Reads a whole immutable file and checks its header.
pub(crate) fn open_file(
    dir: &dyn Directory,
    path: &Path,
    magic: &[u8; 8],
) -> Result<(FileBytes, Header)> {
    let shown = dir.describe(path);
    let bytes = dir.read(path).at(&shown)?;
    let header = Header::decode(&bytes, magic, &shown)?;
    Ok((bytes, header))
}

/// A bounds-checked little-endian reader over a byte slice; every read that runs past the end is
/// an error, never a panic.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Decoding ran past the end or met an invalid value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    pub offset: usize,
    pub reason: String,
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn fail<T>(&self, reason: impl Into<String>) -> DecodeResult<T> {
        Err(DecodeError {
            offset: self.pos,
            reason: reason.into(),
        })
    }

    pub(crate) fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return self.fail(format!("needs {n} bytes, {} left", self.remaining()));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn u128(&mut self) -> DecodeResult<u128> {
        Ok(u128::from_le_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }

    /// A `u32` count, checked against the bytes left assuming each item needs at least
    /// `min_item_bytes`, so a corrupt count cannot trigger a huge allocation.
    pub(crate) fn count(&mut self, min_item_bytes: usize) -> DecodeResult<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.remaining() {
            return self.fail(format!(
                "count {n} exceeds the {} bytes left",
                self.remaining()
            ));
        }
        Ok(n)
    }

    pub(crate) fn string(&mut self) -> DecodeResult<String> {
        let n = self.count(1)?;
        let start = self.pos;
        let b = self.take(n)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError {
                offset: start,
                reason: "string is not valid UTF-8".into(),
            })
    }
}

/// Little-endian append helpers for building records in memory.
pub(crate) trait PutLe {
    fn put_u8(&mut self, v: u8);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_u128(&mut self, v: u128);
    fn put_str(&mut self, s: &str);
}

impl PutLe for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u128(&mut self, v: u128) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_str(&mut self, s: &str) {
        self.put_u32(s.len() as u32);
        self.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::MemoryDirectory;

    #[test]
    fn header_round_trip_and_checks() {
        let dir = MemoryDirectory::new();
        let mut w = FileWriter::create(&dir, Path::new("f"), b"DTTEST\0\0").unwrap();
        w.write(b"hello").unwrap();
        w.finish([1, 2, 3]).unwrap();
        let (bytes, h) = open_file(&dir, Path::new("f"), b"DTTEST\0\0").unwrap();
        assert_eq!(h.params, [1, 2, 3]);
        verify_body(&bytes, &h, Path::new("f")).unwrap();
        assert!(open_file(&dir, Path::new("f"), b"DTOTHER\0").is_err());

        let mut damaged = bytes.to_vec();
        damaged[HEADER_LEN] ^= 1;
        let h = Header::decode(&damaged, b"DTTEST\0\0", Path::new("f")).unwrap();
        assert!(verify_body(&damaged, &h, Path::new("f")).is_err());
        damaged[33] ^= 1;
        assert!(Header::decode(&damaged, b"DTTEST\0\0", Path::new("f")).is_err());
        assert!(Header::decode(&damaged[..10], b"DTTEST\0\0", Path::new("f")).is_err());
    }

    #[test]
    fn reader_never_panics_past_the_end() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert!(r.u32().is_err());
        assert_eq!(r.u8().unwrap(), 1);
        let mut r = Reader::new(&[255, 255, 255, 255]);
        assert!(r.count(1).is_err());
    }
}
