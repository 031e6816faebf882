//! An in-memory directory with a realistic durability model, for tests and fuzzing.
//!
//! Files and folders are inodes, as on a POSIX file system. A file's bytes become durable when
//! the file is synced; a folder's entries (creations, renames, removals) become durable when the
//! folder is synced. [`MemoryDirectory::crash_copy`] returns what a machine would find after a
//! power cut: only durable entries, each file with its last synced bytes. A capacity limit
//! simulates a full disk (writes fail half-way with `StorageFull`), and syncs can be made to
//! fail.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::{AsBytes, DirEntry, Directory, FileBytes, LockGuard, SyncHandle, WritableFile};

/// Bytes kept in an 8-byte-aligned buffer so that zero-copy casts to `f32`/`u64` work.
pub(crate) struct AlignedBytes {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBytes {
    pub(crate) fn from_slice(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }
}

impl AsBytes for AlignedBytes {
    fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

#[derive(Default)]
struct FileData {
    data: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Default)]
struct DirData {
    live: BTreeMap<String, Inode>,
    durable: BTreeMap<String, Inode>,
}

#[derive(Clone)]
enum Inode {
    File(Arc<Mutex<FileData>>),
    Dir(Arc<Mutex<DirData>>),
}

struct Shared {
    root: Arc<Mutex<DirData>>,
    /// Serializes namespace operations (path walks plus edits).
    ns: Mutex<()>,
    capacity: Mutex<Option<u64>>,
    fail_syncs: AtomicBool,
    locked: AtomicBool,
}

/// A directory held in memory. Clones share the same contents.
#[derive(Clone)]
pub struct MemoryDirectory {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryDirectory").finish_non_exhaustive()
    }
}

impl Default for MemoryDirectory {
    fn default() -> Self {
        Self::new()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn names(path: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(
                s.to_str()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "non-UTF-8 path"))?
                    .to_owned(),
            ),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unsupported path",
                ));
            }
        }
    }
    Ok(out)
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        MemoryDirectory {
            shared: Arc::new(Shared {
                root: Arc::new(Mutex::new(DirData::default())),
                ns: Mutex::new(()),
                capacity: Mutex::new(None),
                fail_syncs: AtomicBool::new(false),
                locked: AtomicBool::new(false),
            }),
        }
    }

    /// Limits the total bytes of all files; writes past it fail with `StorageFull` after writing
    /// what fits. `None` removes the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        *self.shared.capacity.lock() = bytes;
    }

    /// Total bytes of all live files.
    pub fn used_bytes(&self) -> u64 {
        let _g = self.shared.ns.lock();
        fn walk(d: &DirData) -> u64 {
            d.live
                .values()
                .map(|n| match n {
                    Inode::File(f) => f.lock().data.len() as u64,
                    Inode::Dir(d) => walk(&d.lock()),
                })
                .sum()
        }
        walk(&self.shared.root.lock())
    }

    /// Makes every following sync fail (or succeed again).
    pub fn set_fail_syncs(&self, fail: bool) {
        self.shared.fail_syncs.store(fail, Ordering::SeqCst);
    }

    /// What survives a power cut now: a new, independent directory holding only durable entries,
    /// each file with its last synced bytes. This directory is left as it is.
    pub fn crash_copy(&self) -> MemoryDirectory {
        let _g = self.shared.ns.lock();
        fn copy(d: &DirData) -> DirData {
            let mut out = DirData::default();
            for (name, node) in &d.durable {
                let n = match node {
                    Inode::File(f) => {
                        let synced = f.lock().synced.clone();
                        Inode::File(Arc::new(Mutex::new(FileData {
                            data: synced.clone(),
                            synced,
                        })))
                    }
                    Inode::Dir(sub) => Inode::Dir(Arc::new(Mutex::new(copy(&sub.lock())))),
                };
                out.live.insert(name.clone(), n.clone());
                out.durable.insert(name.clone(), n);
            }
            out
        }
        let root = copy(&self.shared.root.lock());
        let new = MemoryDirectory::new();
        *new.shared.root.lock() = root;
        new
    }

    /// Walks to the folder at `path`.
    fn dir_at(&self, path: &Path) -> io::Result<Arc<Mutex<DirData>>> {
        let mut cur = self.shared.root.clone();
        for name in names(path)? {
            let next = match cur.lock().live.get(&name) {
                Some(Inode::Dir(d)) => d.clone(),
                Some(Inode::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        path.display().to_string(),
                    ));
                }
                None => return Err(not_found(path)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// The parent folder and the last name of `path`.
    fn parent_of(&self, path: &Path) -> io::Result<(Arc<Mutex<DirData>>, String)> {
        let mut n = names(path)?;
        let last = n
            .pop()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty path"))?;
        let parent: PathBuf = n.iter().collect();
        Ok((self.dir_at(&parent)?, last))
    }

    fn node_at(&self, path: &Path) -> io::Result<Inode> {
        let (parent, name) = self.parent_of(path)?;
        let node = parent.lock().live.get(&name).cloned();
        node.ok_or_else(|| not_found(path))
    }

    fn open_file(&self, node: Arc<Mutex<FileData>>) -> Box<dyn WritableFile> {
        Box::new(MemFile {
            node,
            dir: self.clone(),
        })
    }
}

impl Directory for MemoryDirectory {
    fn describe(&self, path: &Path) -> PathBuf {
        Path::new("mem:/").join(path)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let _g = self.shared.ns.lock();
        let mut cur = self.shared.root.clone();
        for name in names(path)? {
            let next = {
                let mut d = cur.lock();
                match d.live.get(&name) {
                    Some(Inode::Dir(sub)) => sub.clone(),
                    Some(Inode::File(_)) => {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            path.display().to_string(),
                        ));
                    }
                    None => {
                        let sub = Arc::new(Mutex::new(DirData::default()));
                        d.live.insert(name, Inode::Dir(sub.clone()));
                        sub
                    }
                }
            };
            cur = next;
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let _g = self.shared.ns.lock();
        match self.node_at(path)? {
            Inode::File(f) => Ok(FileBytes::new(Arc::new(AlignedBytes::from_slice(
                &f.lock().data,
            )))),
            Inode::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                path.display().to_string(),
            )),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let _g = self.shared.ns.lock();
        let (parent, name) = self.parent_of(path)?;
        let node = Arc::new(Mutex::new(FileData::default()));
        let mut p = parent.lock();
        if let Some(Inode::Dir(_)) = p.live.get(&name) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                path.display().to_string(),
            ));
        }
        p.live.insert(name, Inode::File(node.clone()));
        drop(p);
        Ok(self.open_file(node))
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let _g = self.shared.ns.lock();
        match self.node_at(path)? {
            Inode::File(f) => Ok(self.open_file(f)),
            Inode::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                path.display().to_string(),
            )),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _g = self.shared.ns.lock();
        let (src, src_name) = self.parent_of(from)?;
        let (dst, dst_name) = self.parent_of(to)?;
        let node = src
            .lock()
            .live
            .remove(&src_name)
            .ok_or_else(|| not_found(from))?;
        let mut d = dst.lock();
        if let (Inode::Dir(_), Some(Inode::Dir(existing))) = (&node, d.live.get(&dst_name))
            && !existing.lock().live.is_empty()
        {
            drop(d);
            src.lock().live.insert(src_name, node);
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                to.display().to_string(),
            ));
        }
        d.live.insert(dst_name, node);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let _g = self.shared.ns.lock();
        let (parent, name) = self.parent_of(path)?;
        let mut p = parent.lock();
        match p.live.get(&name) {
            Some(Inode::File(_)) => {
                p.live.remove(&name);
                Ok(())
            }
            Some(Inode::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                path.display().to_string(),
            )),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let _g = self.shared.ns.lock();
        let (parent, name) = self.parent_of(path)?;
        parent
            .lock()
            .live
            .remove(&name)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let _g = self.shared.ns.lock();
        let d = self.dir_at(dir)?;
        let d = d.lock();
        Ok(d.live
            .iter()
            .map(|(name, node)| DirEntry {
                name: name.clone(),
                is_dir: matches!(node, Inode::Dir(_)),
            })
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let _g = self.shared.ns.lock();
        names(path).map(|n| n.is_empty()).unwrap_or(false) || self.node_at(path).is_ok()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.shared.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        let _g = self.shared.ns.lock();
        let d = self.dir_at(dir)?;
        let mut d = d.lock();
        d.durable = d.live.clone();
        Ok(())
    }

    fn lock(&self) -> io::Result<Box<dyn LockGuard>> {
        if self.shared.locked.swap(true, Ordering::SeqCst) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(MemLock {
            shared: self.shared.clone(),
        }))
    }
}

struct MemLock {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemLock")
    }
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.shared.locked.store(false, Ordering::SeqCst);
    }
}

struct MemFile {
    node: Arc<Mutex<FileData>>,
    dir: MemoryDirectory,
}

impl std::fmt::Debug for MemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemFile({} bytes)", self.node.lock().data.len())
    }
}

impl WritableFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let room = match *self.dir.shared.capacity.lock() {
            Some(cap) => cap.saturating_sub(self.dir.used_bytes()) as usize,
            None => usize::MAX,
        };
        let n = buf.len().min(room);
        self.node.lock().data.extend_from_slice(&buf[..n]);
        if n < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (simulated)",
            ));
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut f = self.node.lock();
        let start = offset as usize;
        let end = start + buf.len();
        if end > f.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write_at past the end",
            ));
        }
        f.data[start..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        MemSync(self.node.clone(), self.dir.clone()).sync()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.node.lock().data.resize(len as usize, 0);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.node.lock().data.len() as u64
    }

    fn sync_handle(&self) -> io::Result<Arc<dyn SyncHandle>> {
        Ok(Arc::new(MemSync(self.node.clone(), self.dir.clone())))
    }
}

struct MemSync(Arc<Mutex<FileData>>, MemoryDirectory);

impl std::fmt::Debug for MemSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemSync")
    }
}

impl SyncHandle for MemSync {
    fn sync(&self) -> io::Result<()> {
        if self.1.shared.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut f = self.0.lock();
        f.synced = f.data.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &MemoryDirectory, path: &str, bytes: &[u8], sync: bool) {
        let mut f = dir.create(Path::new(path)).unwrap();
        f.write_all(bytes).unwrap();
        if sync {
            f.sync().unwrap();
        }
    }

    #[test]
    fn crash_keeps_only_synced_bytes_and_synced_entries() {
        let dir = MemoryDirectory::new();
        dir.create_dir_all(Path::new("a")).unwrap();
        dir.sync_dir(Path::new("")).unwrap();
        write(&dir, "a/durable", b"x", true);
        write(&dir, "a/unsynced", b"y", false);
        dir.sync_dir(Path::new("a")).unwrap();
        write(&dir, "a/unlisted", b"z", true);
        let mut f = dir.append(Path::new("a/durable")).unwrap();
        f.write_all(b"more").unwrap();

        let after = dir.crash_copy();
        assert_eq!(&*after.read(Path::new("a/durable")).unwrap(), b"x");
        assert_eq!(&*after.read(Path::new("a/unsynced")).unwrap(), b"");
        assert!(!after.exists(Path::new("a/unlisted")));
        // The original is untouched.
        assert_eq!(&*dir.read(Path::new("a/durable")).unwrap(), b"xmore");
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() {
        let dir = MemoryDirectory::new();
        write(&dir, "f.tmp", b"new", true);
        dir.sync_dir(Path::new("")).unwrap();
        dir.rename(Path::new("f.tmp"), Path::new("f")).unwrap();
        assert!(!dir.crash_copy().exists(Path::new("f")));
        dir.sync_dir(Path::new("")).unwrap();
        assert_eq!(&*dir.crash_copy().read(Path::new("f")).unwrap(), b"new");
    }

    #[test]
    fn capacity_fails_writes_half_way() {
        let dir = MemoryDirectory::new();
        dir.set_capacity(Some(10));
        let mut f = dir.create(Path::new("f")).unwrap();
        let err = f.write_all(&[1; 16]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(f.len(), 10);
        f.set_len(4).unwrap();
        f.write_all(&[2; 6]).unwrap();
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = MemoryDirectory::new();
        let g = dir.lock().unwrap();
        assert_eq!(dir.lock().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(g);
        dir.lock().unwrap();
    }
}
