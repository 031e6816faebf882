//! The real file system, with mmapped reads.
//!
//! # Safety
//!
//! `memmap2::Mmap::map` is unsafe because the mapped file could change underneath the map. This
//! crate never modifies a file after it is written, synced and renamed into place: new state is
//! always a new file (see ARCHITECTURE.md, "Invariants"). Files are only ever replaced by rename
//! or unlinked, which leaves existing maps intact. The WAL is the one file written while it may
//! be read, and it is only mapped during recovery, before any appends. Another process writing
//! into the folder is prevented by the ownership lock (`LOCK`), which `Database::open` takes
//! before reading anything. `mincore` (resident-page reporting) only reads page-table state of
//! a live map.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AsBytes, DirEntry, Directory, FileBytes, LockGuard, SyncHandle, WritableFile};

/// A directory on the local file system.
#[derive(Debug, Clone)]
pub struct FsDirectory {
    root: PathBuf,
}

impl FsDirectory {
    /// Uses `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(FsDirectory { root })
    }

    fn full(&self, path: &Path) -> PathBuf {
        self.root.join(path)
    }
}

struct MappedFile(memmap2::Mmap);

impl AsBytes for MappedFile {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn lock(&self) -> io::Result<()> {
        self.0.lock()
    }

    fn resident(&self) -> u64 {
        let page = 4096usize;
        let len = self.0.len();
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: the map starts page-aligned (mmap returns page-aligned addresses) and spans
        // `len` bytes; `vec` has one byte per page of that range, as mincore(2) requires.
        let rc =
            unsafe { libc::mincore(self.0.as_ptr() as *mut libc::c_void, len, vec.as_mut_ptr()) };
        if rc != 0 {
            return 0;
        }
        let pages = vec.iter().filter(|b| **b & 1 == 1).count();
        (pages * page).min(len) as u64
    }
}

struct EmptyFile;

impl AsBytes for EmptyFile {
    fn as_bytes(&self) -> &[u8] {
        &[]
    }
}

#[derive(Debug)]
struct FsLock {
    _file: File,
}

impl LockGuard for FsLock {}

impl Directory for FsDirectory {
    fn describe(&self, path: &Path) -> PathBuf {
        self.full(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(self.full(path))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(self.full(path))?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::new(Arc::new(EmptyFile)));
        }
        // SAFETY: see the module-level contract: the file is never modified while mapped.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let _ = map.advise(memmap2::Advice::Random);
        Ok(FileBytes::new(Arc::new(MappedFile(map))))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(self.full(path))?;
        Ok(Box::new(FsFile { file, len: 0 }))
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.full(path))?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsFile { file, len }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(self.full(from), self.full(to))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(self.full(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(self.full(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.full(dir))? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            out.push(DirEntry {
                name,
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn exists(&self, path: &Path) -> bool {
        self.full(path).exists()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(self.full(dir))?.sync_all()
    }

    fn lock(&self) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(self.full(Path::new("LOCK")))?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(FsLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[derive(Debug)]
struct FsFile {
    file: File,
    len: u64,
}

impl WritableFile for FsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // Positional writes keep `len` exact even when a write fails half-way.
        let mut done = 0;
        while done < buf.len() {
            match self.file.write_at(&buf[done..], self.len) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write_at past the end",
            ));
        }
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(FsSync(self.file.try_clone()?)))
    }
}

#[derive(Debug)]
struct FsSync(File);

impl SyncHandle for FsSync {
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}
