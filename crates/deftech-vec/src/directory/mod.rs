//! Storage behind a trait: the real file system (with mmapped reads) and an in-memory directory
//! that can simulate a crash and a full disk, so tests and fuzzing run in memory (the idea of
//! tantivy's `Directory`).
//!
//! All paths are relative to the directory's root and use `/` separators.

mod fs;
mod memory;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

pub use fs::FsDirectory;
pub use memory::MemoryDirectory;

/// Where a database keeps its files.
pub trait Directory: Send + Sync + fmt::Debug {
    /// A human-readable location, for error messages.
    fn describe(&self, path: &Path) -> std::path::PathBuf;
    /// Creates a folder and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Maps a whole file for reading. The bytes never change: files are never modified once
    /// written and synced, and a replaced file keeps its old bytes for existing readers.
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens an existing file for appending at its end.
    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Atomically renames a file or folder, replacing `to` if it is a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a folder and everything under it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists a folder's direct children, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    /// True if a file or folder exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Makes the folder's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive ownership lock of the whole directory; `WouldBlock` when another
    /// owner holds it. Released when the returned guard drops.
    fn lock(&self) -> io::Result<Box<dyn LockGuard>>;
}

/// Held while a directory is owned.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// A file open for writing.
pub trait WritableFile: Send + fmt::Debug {
    /// Appends bytes at the end. On error, some prefix of `buf` may have been written.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Overwrites bytes at an offset below the current length (used for headers).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Flushes data to stable storage (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A handle that syncs this same file from another thread (for group commit).
    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>>;
}

/// Syncs a file from any thread.
pub trait SyncHandle: Send + Sync + fmt::Debug {
    /// `fdatasync` on the file.
    fn sync(&self) -> io::Result<()>;
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name.
    pub name: String,
    /// True for a folder.
    pub is_dir: bool,
}

/// Immutable bytes of a file: an mmap or a shared in-memory buffer. Aligned to at least 8 bytes.
#[derive(Clone)]
pub struct FileBytes {
    inner: Arc<dyn AsBytes>,
}

pub(crate) trait AsBytes: Send + Sync {
    fn as_bytes(&self) -> &[u8];
    /// Locks the bytes in memory (mlock for maps).
    fn lock(&self) -> io::Result<()> {
        Ok(())
    }
    /// Bytes currently in memory (`mincore` for maps; everything for heap buffers).
    fn resident(&self) -> u64 {
        self.as_bytes().len() as u64
    }
    /// True for a copy in anonymous memory (process memory, not the page cache).
    fn anonymous(&self) -> bool {
        false
    }
}

/// A file's bytes copied into anonymous memory aligned to 2 MiB and advised for transparent
/// huge pages (see [`FileBytes::copy_to_huge_pages`]).
struct HugePageCopy {
    map: memmap2::Mmap,
    start: usize,
    len: usize,
}

impl AsBytes for HugePageCopy {
    fn as_bytes(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len]
    }

    fn lock(&self) -> io::Result<()> {
        // Only the copy, not the untouched slack around it.
        let bytes = self.as_bytes();
        // SAFETY: mlock(2) only pins pages of a live mapping; the range lies inside `map`.
        let rc = unsafe { libc::mlock(bytes.as_ptr().cast(), bytes.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn anonymous(&self) -> bool {
        true
    }
}

/// The huge page size the copies align to.
const HUGE_PAGE: usize = 2 << 20;

/// Whether transparent huge pages can back an `MADV_HUGEPAGE` region: Linux, with
/// `transparent_hugepage/enabled` set to `always` or `madvise` (read once per process).
pub(crate) fn huge_pages_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        cfg!(target_os = "linux")
            && std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .is_ok_and(|s| !s.contains("[never]"))
    })
}

impl FileBytes {
    pub(crate) fn new(inner: Arc<dyn AsBytes>) -> Self {
        FileBytes { inner }
    }

    /// Locks the bytes in memory (mlock for maps): they stay resident.
    pub fn lock_in_memory(&self) -> io::Result<()> {
        self.inner.lock()
    }

    /// A copy of these bytes in anonymous memory backed by transparent huge pages, for data every
    /// search reads all over (graph, quantized codes): random reads then miss the TLB far less
    /// than over 4 KiB page-cache pages (ARCHITECTURE.md §11 has the measurements). The bytes
    /// are returned as they are below 2 MiB (one huge page would not pay), off Linux, when
    /// `/sys/kernel/mm/transparent_hugepage/enabled` says `[never]`, and when the kernel
    /// refuses the memory.
    pub(crate) fn copy_to_huge_pages(&self) -> FileBytes {
        let len = self.len();
        if len < HUGE_PAGE || self.inner.anonymous() || !huge_pages_available() {
            return self.clone();
        }
        // One huge page of slack, so that the copy can start on a 2 MiB boundary. The huge page
        // holding the copy's end is backed whole (up to 2 MiB more than the copy); the pages
        // past it are never touched and cost address space only.
        let map = memmap2::MmapOptions::new()
            .len(len.div_ceil(HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE)
            .map_anon();
        let mut map = match map {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("keeping {len} bytes in the page cache: no anonymous memory: {e}");
                return self.clone();
            }
        };
        let start = map.as_ptr().align_offset(HUGE_PAGE);
        // Before the first touch, so the faults of the copy allocate huge pages.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        map[start..start + len].copy_from_slice(self);
        match map.make_read_only() {
            Ok(map) => FileBytes::new(Arc::new(HugePageCopy { map, start, len })),
            Err(e) => {
                tracing::warn!("keeping {len} bytes in the page cache: {e}");
                self.clone()
            }
        }
    }

    /// These bytes as searches should read them: [`copy_to_huge_pages`](Self::copy_to_huge_pages)
    /// when `in_ram`, as they are otherwise (`hnsw.on_disk`).
    pub(crate) fn for_search(&self, in_ram: bool) -> FileBytes {
        if in_ram {
            self.copy_to_huge_pages()
        } else {
            self.clone()
        }
    }

    /// True when the bytes are a copy in anonymous memory (counted in the process's resident
    /// memory, not in the page cache).
    pub fn is_anonymous(&self) -> bool {
        self.inner.anonymous()
    }

    /// Bytes currently resident in memory (page cache pages mapped in, or heap).
    pub fn resident_bytes(&self) -> u64 {
        self.inner.resident()
    }

    /// Bytes copied into an 8-byte-aligned buffer (for tests and fuzzing).
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        FileBytes {
            inner: Arc::new(memory::AlignedBytes::from_slice(&bytes)),
        }
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.inner.as_bytes()
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_page_copies_hold_the_same_bytes_on_a_2_mib_boundary() {
        let len = 5 * HUGE_PAGE / 2 + 123;
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let original = FileBytes::from_vec(bytes.clone());
        assert!(!original.is_anonymous());
        let copy = original.copy_to_huge_pages();
        if !huge_pages_available() {
            assert_eq!(
                copy.as_ptr(),
                original.as_ptr(),
                "no copy without huge pages"
            );
            return;
        }
        assert!(copy.is_anonymous());
        assert_eq!(&copy[..], &bytes[..]);
        assert_eq!(copy.as_ptr() as usize % HUGE_PAGE, 0);
        // A copy is not copied again.
        let again = copy.copy_to_huge_pages();
        assert_eq!(again.as_ptr(), copy.as_ptr());
        // Locking pins the copy (or fails on a low RLIMIT_MEMLOCK); it never changes the bytes.
        let _ = copy.lock_in_memory();
        assert_eq!(&copy[..], &bytes[..]);
        // Below one huge page the bytes stay where they are.
        let small = FileBytes::from_vec(bytes[..HUGE_PAGE - 1].to_vec());
        let kept = small.copy_to_huge_pages();
        assert!(!kept.is_anonymous());
        assert_eq!(kept.as_ptr(), small.as_ptr());
    }
}
