//! The database: a folder of named collections, owned by one `Database` at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::collection::{Collection, SEGMENTS_DIR, WAL_DIR};
use crate::config::CollectionConfig;
use crate::directory::{Directory, FsDirectory, LockGuard, MemoryDirectory};
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;

const COLLECTIONS: &str = "collections";
/// Longest accepted collection name.
pub const MAX_NAME_LEN: usize = 128;

/// A database: named collections in one folder.
///
/// The folder is owned by one `Database` at a time: opening it again, from this or another
/// process, fails with [`Error::InUse`] until every handle (including [`Collection`] handles)
/// is dropped.
///
/// ```
/// use deftech_vec::{CollectionConfig, Database, Metric, Point, SearchRequest};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let db = Database::open(dir.path())?;
/// let docs = db.create_collection("docs", CollectionConfig::new(3, Metric::Cosine))?;
/// docs.upsert([
///     Point::new(1, vec![1.0, 0.0, 0.0]).with_payload(json!({"lang": "en"})),
///     Point::new(2, vec![0.0, 1.0, 0.0]).with_payload(json!({"lang": "fr"})),
/// ])?;
/// let hits = docs.search(&SearchRequest::new(vec![0.9, 0.1, 0.0], 1))?;
/// assert_eq!(hits[0].id, 1u64.into());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Database {
    inner: Arc<DbInner>,
}

struct DbInner {
    dir: Arc<dyn Directory>,
    lock: Arc<dyn LockGuard>,
    collections: Mutex<BTreeMap<String, Collection>>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("at", &self.inner.dir.describe(Path::new("")))
            .field("collections", &self.list_collections())
            .finish()
    }
}

/// Checks that `name` is a plain identifier: 1 to 128 characters of ASCII letters, digits,
/// `_`, `-` and `.`, not starting with `.` or `-`.
pub fn validate_collection_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 128 characters");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("only ASCII letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

fn collection_folder(name: &str) -> PathBuf {
    Path::new(COLLECTIONS).join(name)
}

impl Database {
    /// Opens (or creates) the database in folder `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Database> {
        let path = path.as_ref();
        let dir = FsDirectory::open(path).at(path)?;
        Self::open_in(Arc::new(dir))
    }

    /// A database held in memory (nothing is written to disk).
    pub fn in_memory() -> Result<Database> {
        Self::open_in(Arc::new(MemoryDirectory::new()))
    }

    /// Opens the database stored in `dir` (any [`Directory`]: the file system, memory).
    pub fn open_in(dir: Arc<dyn Directory>) -> Result<Database> {
        let root = dir.describe(Path::new(""));
        let lock: Arc<dyn LockGuard> = match dir.lock() {
            Ok(g) => Arc::from(g),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(Error::InUse { path: root });
            }
            Err(e) => return Err(Error::io(root.join("LOCK"), e)),
        };
        let cdir = Path::new(COLLECTIONS);
        if !dir.exists(cdir) {
            dir.create_dir_all(cdir).at(&dir.describe(cdir))?;
            dir.sync_dir(Path::new("")).at(&root)?;
        }
        let mut collections = BTreeMap::new();
        for entry in dir.list(cdir).at(&dir.describe(cdir))? {
            let path = cdir.join(&entry.name);
            if !entry.is_dir {
                continue;
            }
            if entry.name.starts_with('.') {
                // An interrupted create or drop.
                dir.remove_dir_all(&path).at(&dir.describe(&path))?;
                continue;
            }
            let c = Collection::open(dir.clone(), path, entry.name.clone(), lock.clone())?;
            collections.insert(entry.name, c);
        }
        Ok(Database {
            inner: Arc::new(DbInner {
                dir,
                lock,
                collections: Mutex::new(collections),
            }),
        })
    }

    /// Creates a collection.
    pub fn create_collection(&self, name: &str, config: CollectionConfig) -> Result<Collection> {
        validate_collection_name(name)?;
        config.validate()?;
        let mut cols = self.inner.collections.lock();
        if cols.contains_key(name) {
            return Err(Error::CollectionExists(name.to_owned()));
        }
        let dir = &*self.inner.dir;
        let staging = Path::new(COLLECTIONS).join(format!(".creating-{name}"));
        let result = (|| {
            if dir.exists(&staging) {
                dir.remove_dir_all(&staging).at(&dir.describe(&staging))?;
            }
            for sub in [WAL_DIR, SEGMENTS_DIR] {
                dir.create_dir_all(&staging.join(sub))
                    .at(&dir.describe(&staging))?;
            }
            dir.sync_dir(&staging).at(&dir.describe(&staging))?;
            Manifest::new(config).write(dir, &staging)?;
            dir.rename(&staging, &collection_folder(name))
                .at(&dir.describe(&staging))?;
            dir.sync_dir(Path::new(COLLECTIONS))
                .at(&dir.describe(Path::new(COLLECTIONS)))
        })();
        if let Err(e) = result {
            let _ = dir.remove_dir_all(&staging);
            return Err(e);
        }
        let c = Collection::open(
            self.inner.dir.clone(),
            collection_folder(name),
            name.to_owned(),
            self.inner.lock.clone(),
        )?;
        cols.insert(name.to_owned(), c.clone());
        tracing::info!(collection = name, "created collection");
        Ok(c)
    }

    /// A handle to an existing collection.
    pub fn collection(&self, name: &str) -> Result<Collection> {
        self.inner
            .collections
            .lock()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::CollectionNotFound(name.to_owned()))
    }

    /// Names of all collections, sorted.
    pub fn list_collections(&self) -> Vec<String> {
        self.inner.collections.lock().keys().cloned().collect()
    }

    /// Deletes a collection and its files. Existing handles to it fail with
    /// [`Error::CollectionDropped`] from then on.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        let mut cols = self.inner.collections.lock();
        let c = cols
            .get(name)
            .cloned()
            .ok_or_else(|| Error::CollectionNotFound(name.to_owned()))?;
        let dir = &*self.inner.dir;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let trash = Path::new(COLLECTIONS).join(format!(".dropped-{name}-{nanos}"));
        c.retire(|| {
            dir.rename(&collection_folder(name), &trash)
                .at(&dir.describe(&collection_folder(name)))
        })?;
        cols.remove(name);
        dir.sync_dir(Path::new(COLLECTIONS))
            .at(&dir.describe(Path::new(COLLECTIONS)))?;
        if let Err(e) = dir.remove_dir_all(&trash) {
            tracing::warn!(path = %dir.describe(&trash).display(), "could not remove dropped collection files: {e}");
        }
        tracing::info!(collection = name, "dropped collection");
        Ok(())
    }

    /// Restores collection `from` of `store` as collection `name` of this database, at
    /// `point`. Every file is checked against its checksum; nothing is replaced unless the whole
    /// restore succeeded (an existing collection called `name` is then replaced; a failed
    /// restore leaves it untouched). The error names the bad file.
    pub fn restore(
        &self,
        store: &dyn crate::snapshot::ObjectStore,
        from: &str,
        point: &crate::snapshot::RestorePoint,
        name: &str,
    ) -> Result<Collection> {
        validate_collection_name(name)?;
        let snap = crate::snapshot::choose(store, from, point)?;
        let staging = self.staging(name, "restoring")?;
        let dir = &*self.inner.dir;
        let result = (|| {
            crate::snapshot::parallel(&snap.files, crate::snapshot::TRANSFER_THREADS, |f| {
                crate::snapshot::fetch(store, from, f, dir, &staging.join(&f.path))
            })?;
            crate::snapshot::archive::extend_to(store, from, &snap, point, dir, &staging)?;
            Ok(())
        })();
        self.finish_restore(result, staging, &snap.manifest, name)
    }

    /// Imports a snapshot tar stream (from [`Collection::export_snapshot`]) as collection
    /// `name`, with the same checks and guarantees as [`restore`](Self::restore).
    pub fn import_snapshot(&self, tar: &mut dyn std::io::Read, name: &str) -> Result<Collection> {
        validate_collection_name(name)?;
        let staging = self.staging(name, "importing")?;
        let mut manifest = None;
        let result = crate::snapshot::tarball::read(tar, &*self.inner.dir, &staging).map(|s| {
            manifest = Some(s.manifest);
        });
        match manifest {
            Some(m) => self.finish_restore(result, staging, &m, name),
            None => {
                let _ = self.inner.dir.remove_dir_all(&staging);
                Err(result
                    .err()
                    .unwrap_or_else(|| Error::invalid_argument("snapshot", "no manifest")))
            }
        }
    }

    /// A fresh staging folder for a restore.
    fn staging(&self, name: &str, what: &str) -> Result<PathBuf> {
        let dir = &*self.inner.dir;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let staging = Path::new(COLLECTIONS).join(format!(".{what}-{name}-{nanos}"));
        for sub in [WAL_DIR, SEGMENTS_DIR] {
            dir.create_dir_all(&staging.join(sub))
                .at(&dir.describe(&staging))?;
        }
        Ok(staging)
    }

    /// Writes the manifest, checks that the staged collection opens and verifies, then swaps it
    /// in under `name`. On any error the staging folder is removed and nothing else changes.
    fn finish_restore(
        &self,
        files: Result<()>,
        staging: PathBuf,
        manifest: &Manifest,
        name: &str,
    ) -> Result<Collection> {
        let dir = &*self.inner.dir;
        let checked = files.and_then(|()| {
            manifest.write(dir, &staging)?;
            for sub in [WAL_DIR, SEGMENTS_DIR] {
                dir.sync_dir(&staging.join(sub))
                    .at(&dir.describe(&staging))?;
            }
            let c = Collection::open(
                self.inner.dir.clone(),
                staging.clone(),
                name.to_owned(),
                self.inner.lock.clone(),
            )?;
            let verified = c.verify();
            c.close()?;
            drop(c);
            verified
        });
        if let Err(e) = checked {
            let _ = dir.remove_dir_all(&staging);
            return Err(e);
        }
        let mut cols = self.inner.collections.lock();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let trash = Path::new(COLLECTIONS).join(format!(".dropped-{name}-{nanos}"));
        let old = cols.get(name).cloned();
        if let Some(old) = &old {
            old.retire(|| {
                dir.rename(&collection_folder(name), &trash)
                    .at(&dir.describe(&collection_folder(name)))
            })?;
            cols.remove(name);
        }
        dir.rename(&staging, &collection_folder(name))
            .at(&dir.describe(&staging))?;
        dir.sync_dir(Path::new(COLLECTIONS))
            .at(&dir.describe(Path::new(COLLECTIONS)))?;
        let c = Collection::open(
            self.inner.dir.clone(),
            collection_folder(name),
            name.to_owned(),
            self.inner.lock.clone(),
        )?;
        cols.insert(name.to_owned(), c.clone());
        if old.is_some() {
            let _ = dir.remove_dir_all(&trash);
        }
        tracing::info!(collection = name, "restored collection");
        Ok(c)
    }

    /// Flushes every collection and stops their background threads. Handles still held keep
    /// the folder locked until they are dropped.
    pub fn close(self) -> Result<()> {
        let cols: Vec<Collection> = self.inner.collections.lock().values().cloned().collect();
        let mut first_err = None;
        for c in cols {
            if let Err(e) = c.close() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
