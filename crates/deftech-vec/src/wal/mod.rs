//! The write-ahead log: CRC32C-framed records in numbered files.
//!
//! A file `wal/<first lsn, 20 digits>.wal` starts with the common 64-byte header (magic
//! `DTWAL\0\0\x02`, parameter 0 = the LSN of its first record; body length and checksum unused)
//! and continues with frames:
//!
//! ```text
//! offset size field
//!      0    4 body length n (u32 LE)
//!      4    4 CRC32C of bytes 8..24+n (the LSN, the time and the body)
//!      8    8 LSN (u64 LE), exactly one more than the previous record's
//!     16    8 time the record was logged, milliseconds since the Unix epoch (u64 LE), for
//!             point-in-time restore
//!     24    n body: an operation (see `record.rs`)
//! ```
//!
//! On open, a damaged frame at the end of the newest file with nothing valid after it is a torn
//! write: it is cut off with a warning. Any other damage is an error naming the file and offset.

pub(crate) mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::codec::{HEADER_LEN, Header};
use crate::directory::{Directory, SyncHandle, WritableFile};
use crate::error::{Error, IoContext, Result};
use crate::types::Lsn;

pub(crate) use record::{Op, PointData};

pub(crate) const WAL_MAGIC: &[u8; 8] = b"DTWAL\0\0\x02";
pub(crate) const FRAME_HEADER: usize = 24;
/// Largest record body accepted when reading.
pub(crate) const MAX_RECORD_BYTES: usize = 1 << 30;

/// A byte position in the WAL, for rolling back writes that could not be made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalPos {
    file_first: Lsn,
    len: u64,
    next_lsn: Lsn,
}

struct WalFile {
    first_lsn: Lsn,
    path: PathBuf,
}

/// The open log of one collection. Not thread-safe by itself: the collection's writer lock
/// orders appends.
pub(crate) struct Wal {
    dir: Arc<dyn Directory>,
    folder: PathBuf,
    files: Vec<WalFile>,
    active: Box<dyn WritableFile>,
    segment_bytes: u64,
    next_lsn: Lsn,
    /// Set when a failed append could not be cut back: the next append repairs first.
    broken_at: Option<u64>,
    closed_bytes: u64,
    /// Syncs the active file from other threads (group commit).
    handle: Arc<dyn SyncHandle>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("folder", &self.folder)
            .field("files", &self.files.len())
            .field("next_lsn", &self.next_lsn)
            .finish()
    }
}

fn file_name(lsn: Lsn) -> String {
    format!("{lsn:020}.wal")
}

fn wal_header(first_lsn: Lsn) -> [u8; HEADER_LEN] {
    Header {
        magic: *WAL_MAGIC,
        body_len: 0,
        body_crc: 0,
        params: [first_lsn, 0, 0],
    }
    .encode()
}

/// A frame parsed at some offset.
enum Frame<'a> {
    Ok {
        lsn: Lsn,
        time_ms: u64,
        body: &'a [u8],
        end: usize,
    },
    Bad(String),
}

fn parse_frame(bytes: &[u8], pos: usize) -> Frame<'_> {
    let rest = &bytes[pos..];
    if rest.len() < FRAME_HEADER {
        return Frame::Bad(format!("incomplete frame header ({} bytes)", rest.len()));
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let lsn = u64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD_BYTES {
        return Frame::Bad(format!(
            "record length {len} over the {MAX_RECORD_BYTES}-byte limit"
        ));
    }
    if rest.len() - FRAME_HEADER < len {
        return Frame::Bad(format!(
            "record of {len} bytes runs past the end of the file ({} bytes left)",
            rest.len() - FRAME_HEADER
        ));
    }
    if crc32c::crc32c(&rest[8..FRAME_HEADER + len]) != crc {
        return Frame::Bad("record checksum mismatch".into());
    }
    Frame::Ok {
        lsn,
        time_ms: u64::from_le_bytes(rest[16..24].try_into().expect("8 bytes")),
        body: &rest[FRAME_HEADER..FRAME_HEADER + len],
        end: pos + FRAME_HEADER + len,
    }
}

/// True if a valid frame with an LSN after `after` starts anywhere past `from`: then damage
/// at `from` is not a torn tail but corruption in the middle of the log.
fn valid_frame_after(bytes: &[u8], from: usize, after: Lsn) -> bool {
    (from + 1..bytes.len().saturating_sub(FRAME_HEADER - 1)).any(|p| {
        let lsn = u64::from_le_bytes(bytes[p + 8..p + 16].try_into().expect("8 bytes"));
        lsn > after && lsn - after < (1 << 32) && matches!(parse_frame(bytes, p), Frame::Ok { .. })
    })
}

/// One frame of a WAL file read whole (archived WAL for point-in-time restore).
pub(crate) struct RawFrame {
    pub lsn: Lsn,
    pub time_ms: u64,
    /// Byte range of the whole frame (header and body) in the file.
    pub range: std::ops::Range<usize>,
}

/// Checks a WAL file's header and returns its first LSN and every frame. A file read whole
/// must hold only complete, valid, consecutive frames: anything else is an error naming `shown`
/// and the offset.
pub(crate) fn read_frames(bytes: &[u8], shown: &str) -> Result<(Lsn, Vec<RawFrame>)> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::corrupted(shown, 0, "shorter than a WAL file header"));
    }
    let mut h = bytes[..HEADER_LEN].to_vec();
    h[16..24].copy_from_slice(&0u64.to_le_bytes());
    Header::decode(&h, WAL_MAGIC, Path::new(shown))?;
    let first = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes"));
    let mut out = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < bytes.len() {
        match parse_frame(bytes, pos) {
            Frame::Ok {
                lsn, time_ms, end, ..
            } => {
                let expected = first + out.len() as u64;
                if lsn != expected {
                    return Err(Error::corrupted(
                        shown,
                        pos as u64,
                        format!("expected LSN {expected}, found {lsn}"),
                    ));
                }
                out.push(RawFrame {
                    lsn,
                    time_ms,
                    range: pos..end,
                });
                pos = end;
            }
            Frame::Bad(why) => return Err(Error::corrupted(shown, pos as u64, why)),
        }
    }
    Ok((first, out))
}

/// A WAL file holding `frames` (whole frames copied from other files), first LSN `first`.
pub(crate) fn file_bytes(first: Lsn, frames: &[u8]) -> Vec<u8> {
    let mut out = wal_header(first).to_vec();
    out.extend_from_slice(frames);
    out
}

impl Wal {
    /// The active file's name, its first LSN and its length.
    pub(crate) fn active_file(&self) -> (PathBuf, Lsn, u64) {
        let f = self
            .files
            .last()
            .expect("the log always has an active file");
        (f.path.clone(), f.first_lsn, self.active.len())
    }

    /// Opens (or creates) the log in `folder`, replaying every record after `applied` through
    /// `apply`, in order.
    pub(crate) fn open(
        dir: Arc<dyn Directory>,
        folder: &Path,
        segment_bytes: u64,
        applied: Lsn,
        mut apply: impl FnMut(Lsn, Op) -> Result<()>,
    ) -> Result<Wal> {
        let shown_folder = dir.describe(folder);
        dir.create_dir_all(folder).at(&shown_folder)?;
        let mut files = Vec::new();
        for entry in dir.list(folder).at(&shown_folder)? {
            let path = folder.join(&entry.name);
            if entry.is_dir {
                continue;
            }
            if let Some(stem) = entry.name.strip_suffix(".wal")
                && stem.len() == 20
                && let Ok(first_lsn) = stem.parse::<Lsn>()
            {
                files.push(WalFile { first_lsn, path });
            } else if entry.name.ends_with(".tmp") {
                dir.remove_file(&path).at(&dir.describe(&path))?;
            }
        }
        files.sort_by_key(|f| f.first_lsn);

        let mut expected: Option<Lsn> = None;
        let mut tail: Option<(usize, u64)> = None; // (file index, valid length) of the last file
        let count = files.len();
        let mut drop_last = false;
        for (i, file) in files.iter().enumerate() {
            let last = i + 1 == count;
            let shown = dir.describe(&file.path);
            let bytes = dir.read(&file.path).at(&shown)?;
            let header_ok = bytes.len() >= HEADER_LEN && {
                let mut h = bytes[..HEADER_LEN].to_vec();
                // The WAL header's body length is unused; check the rest as for any file.
                h[16..24].copy_from_slice(&0u64.to_le_bytes());
                Header::decode(&h, WAL_MAGIC, &shown).is_ok()
            };
            if !header_ok {
                if last && (bytes.len() < HEADER_LEN || bytes.iter().all(|&b| b == 0)) {
                    tracing::warn!(file = %shown.display(), "removing WAL file with a torn header");
                    drop_last = true;
                    break;
                }
                let mut h = bytes.to_vec();
                h.resize(h.len().max(HEADER_LEN), 0);
                h[16..24].copy_from_slice(&0u64.to_le_bytes());
                return Err(Header::decode(&h[..HEADER_LEN], WAL_MAGIC, &shown)
                    .err()
                    .unwrap_or_else(|| Error::corrupted(&shown, 0, "bad WAL header")));
            }
            let header_lsn = u64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes"));
            if header_lsn != file.first_lsn {
                return Err(Error::corrupted(
                    &shown,
                    32,
                    format!(
                        "header names first LSN {header_lsn}, the file name {}",
                        file.first_lsn
                    ),
                ));
            }
            match expected {
                None if file.first_lsn > applied + 1 => {
                    return Err(Error::corrupted(
                        &shown,
                        0,
                        format!(
                            "the log starts at LSN {} but the manifest covers only up to {applied}: \
                             records {}..{} are missing",
                            file.first_lsn,
                            applied + 1,
                            file.first_lsn - 1
                        ),
                    ));
                }
                Some(e) if e != file.first_lsn => {
                    return Err(Error::corrupted(
                        &shown,
                        0,
                        format!(
                            "expected the next file to start at LSN {e}, it starts at {}",
                            file.first_lsn
                        ),
                    ));
                }
                _ => {}
            }
            let mut next = file.first_lsn;
            let mut pos = HEADER_LEN;
            while pos < bytes.len() {
                match parse_frame(&bytes, pos) {
                    Frame::Ok { lsn, body, end, .. } => {
                        if lsn != next {
                            return Err(Error::corrupted(
                                &shown,
                                pos as u64,
                                format!("expected LSN {next}, found {lsn}"),
                            ));
                        }
                        if lsn > applied {
                            let op = Op::decode(body).map_err(|e| {
                                Error::corrupted(
                                    &shown,
                                    (pos + FRAME_HEADER + e.offset) as u64,
                                    format!("undecodable operation at LSN {lsn}: {}", e.reason),
                                )
                            })?;
                            apply(lsn, op)?;
                        }
                        next += 1;
                        pos = end;
                    }
                    Frame::Bad(reason) => {
                        if !last || valid_frame_after(&bytes, pos, next.saturating_sub(1)) {
                            return Err(Error::corrupted(&shown, pos as u64, reason));
                        }
                        tracing::warn!(
                            file = %shown.display(),
                            offset = pos,
                            dropped_bytes = bytes.len() - pos,
                            "truncating torn WAL tail: {reason}"
                        );
                        break;
                    }
                }
            }
            if last {
                tail = Some((i, pos as u64));
            }
            expected = Some(next);
        }
        if drop_last {
            let f = files.pop().expect("last file exists");
            dir.remove_file(&f.path).at(&dir.describe(&f.path))?;
            dir.sync_dir(folder).at(&shown_folder)?;
        }

        let next_lsn = expected.unwrap_or(applied + 1).max(applied + 1);
        let mut wal = match tail {
            Some((i, valid_len)) if !drop_last && expected == Some(next_lsn) => {
                let path = files[i].path.clone();
                let shown = dir.describe(&path);
                let mut active = dir.append(&path).at(&shown)?;
                if active.len() != valid_len {
                    active.set_len(valid_len).at(&shown)?;
                    active.sync().at(&shown)?;
                }
                let handle = active.sync_handle().at(&shown)?;
                Wal {
                    handle,
                    dir,
                    folder: folder.to_owned(),
                    files,
                    active,
                    segment_bytes,
                    next_lsn,
                    broken_at: None,
                    closed_bytes: 0,
                }
            }
            _ => {
                // No usable file to continue: start a new one at the next LSN.
                let active = create_file(&*dir, folder, next_lsn)?;
                let path = folder.join(file_name(next_lsn));
                let handle = active.sync_handle().at(&dir.describe(&path))?;
                files.push(WalFile {
                    first_lsn: next_lsn,
                    path,
                });
                Wal {
                    handle,
                    dir,
                    folder: folder.to_owned(),
                    files,
                    active,
                    segment_bytes,
                    next_lsn,
                    broken_at: None,
                    closed_bytes: 0,
                }
            }
        };
        wal.closed_bytes = wal.measure_closed();
        Ok(wal)
    }

    fn measure_closed(&self) -> u64 {
        let n = self.files.len().saturating_sub(1);
        self.files[..n]
            .iter()
            .filter_map(|f| self.dir.read(&f.path).ok().map(|b| b.len() as u64))
            .sum()
    }

    /// The LSN the next record must carry.
    pub(crate) fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Bytes held by all WAL files.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.closed_bytes + self.active.len()
    }

    /// Number of WAL files.
    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    fn active_path(&self) -> &Path {
        &self.files.last().expect("an active file").path
    }

    /// Where the log ends now.
    pub(crate) fn pos(&self) -> WalPos {
        WalPos {
            file_first: self.files.last().expect("an active file").first_lsn,
            len: self.active.len(),
            next_lsn: self.next_lsn,
        }
    }

    /// Cuts the active file back to the length recorded by a failed append or a rollback, and
    /// makes that durable. Until this succeeds nothing is appended.
    fn repair(&mut self) -> Result<()> {
        if let Some(len) = self.broken_at {
            let shown = self.dir.describe(self.active_path());
            self.active.set_len(len).at(&shown)?;
            self.active.sync().at(&shown)?;
            self.broken_at = None;
        }
        Ok(())
    }

    /// Appends one record with the next LSN. On failure nothing is appended: a partial write
    /// is cut off (or, if even that fails, cut off before the next append).
    pub(crate) fn append(&mut self, lsn: Lsn, body: &[u8]) -> Result<()> {
        assert_eq!(lsn, self.next_lsn, "WAL appends must be in LSN order");
        self.repair()?;
        let frame_len = (FRAME_HEADER + body.len()) as u64;
        if self.active.len() > HEADER_LEN as u64
            && self.active.len() + frame_len > self.segment_bytes
        {
            self.rotate()?;
        }
        let before = self.active.len();
        let mut head = [0u8; FRAME_HEADER];
        head[0..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        head[8..16].copy_from_slice(&lsn.to_le_bytes());
        head[16..24].copy_from_slice(&crate::snapshot::now_ms().to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[8..24]), body);
        head[4..8].copy_from_slice(&crc.to_le_bytes());
        let result = self
            .active
            .write_all(&head)
            .and_then(|()| self.active.write_all(body));
        if let Err(e) = result {
            let shown = self.dir.describe(self.active_path());
            if self.active.set_len(before).is_err() {
                self.broken_at = Some(before);
            }
            return Err(Error::io(shown, e));
        }
        self.next_lsn += 1;
        Ok(())
    }

    /// Closes the active file (synced) and starts a new one at the next LSN.
    fn rotate(&mut self) -> Result<()> {
        let shown = self.dir.describe(self.active_path());
        self.active.sync().at(&shown)?;
        let active = create_file(&*self.dir, &self.folder, self.next_lsn)?;
        let handle = active.sync_handle().at(&self
            .dir
            .describe(&self.folder.join(file_name(self.next_lsn))))?;
        self.closed_bytes += self.active.len();
        self.active = active;
        self.handle = handle;
        self.files.push(WalFile {
            first_lsn: self.next_lsn,
            path: self.folder.join(file_name(self.next_lsn)),
        });
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.repair()?;
        let shown = self.dir.describe(self.active_path());
        self.active.sync().at(&shown)
    }

    /// A handle that syncs the active file from another thread. Closed files were synced when
    /// they were closed, so syncing the active file makes every appended record durable.
    pub(crate) fn sync_handle(&self) -> Arc<dyn SyncHandle> {
        self.handle.clone()
    }

    /// Cuts the log back to `pos`, removing files started after it, and syncs. If the sync
    /// fails, the cut is retried (and must succeed) before the next append.
    pub(crate) fn rollback(&mut self, pos: WalPos) -> Result<()> {
        let mut removed = false;
        while self.files.len() > 1
            && self.files.last().expect("non-empty").first_lsn > pos.file_first
        {
            let f = self.files.pop().expect("non-empty");
            let shown = self.dir.describe(&f.path);
            self.dir.remove_file(&f.path).at(&shown)?;
            let prev = self.files.last().expect("non-empty").path.clone();
            self.active = self.dir.append(&prev).at(&self.dir.describe(&prev))?;
            self.handle = self.active.sync_handle().at(&self.dir.describe(&prev))?;
            self.closed_bytes = self.closed_bytes.saturating_sub(self.active.len());
            removed = true;
        }
        self.next_lsn = pos.next_lsn;
        self.broken_at = Some(pos.len);
        if removed {
            // A removed file must not come back after a crash: appends continue in the
            // previous file.
            self.dir
                .sync_dir(&self.folder)
                .at(&self.dir.describe(&self.folder))?;
        }
        self.repair()
    }

    /// Every WAL file with its current length (file name, bytes).
    pub(crate) fn files_with_len(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::with_capacity(self.files.len());
        let last = self.files.len() - 1;
        for (i, f) in self.files.iter().enumerate() {
            let len = if i == last {
                self.active.len()
            } else {
                self.dir
                    .read(&f.path)
                    .at(&self.dir.describe(&f.path))?
                    .len() as u64
            };
            let name = f
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            out.push((name, len));
        }
        Ok(out)
    }

    /// Closed files as `(name, first LSN, last LSN)`.
    pub(crate) fn closed_files(&self) -> Vec<(PathBuf, Lsn, Lsn)> {
        self.files
            .windows(2)
            .map(|w| (w[0].path.clone(), w[0].first_lsn, w[1].first_lsn - 1))
            .collect()
    }

    /// Deletes closed files whose records are all at or below `applied`. When the active file
    /// itself is wholly covered, it is closed first so that its space is returned too.
    pub(crate) fn remove_covered(&mut self, applied: Lsn) -> Result<usize> {
        if self.next_lsn - 1 <= applied && self.active.len() > HEADER_LEN as u64 {
            self.rotate()?;
        }
        let mut removed = 0;
        while self.files.len() > 1 && self.files[1].first_lsn - 1 <= applied {
            let f = self.files.remove(0);
            let shown = self.dir.describe(&f.path);
            let len = self.dir.read(&f.path).map(|b| b.len() as u64).unwrap_or(0);
            self.dir.remove_file(&f.path).at(&shown)?;
            self.closed_bytes = self.closed_bytes.saturating_sub(len);
            removed += 1;
        }
        if removed > 0 {
            self.dir
                .sync_dir(&self.folder)
                .at(&self.dir.describe(&self.folder))?;
        }
        Ok(removed)
    }
}

fn create_file(
    dir: &dyn Directory,
    folder: &Path,
    first_lsn: Lsn,
) -> Result<Box<dyn WritableFile>> {
    let path = folder.join(file_name(first_lsn));
    let shown = dir.describe(&path);
    let result = (|| {
        let mut f = dir.create(&path)?;
        f.write_all(&wal_header(first_lsn))?;
        f.sync()?;
        dir.sync_dir(folder)?;
        Ok(f)
    })();
    result.map_err(|e| {
        let _ = dir.remove_file(&path);
        Error::io(shown, e)
    })
}

#[cfg(test)]
mod tests;
