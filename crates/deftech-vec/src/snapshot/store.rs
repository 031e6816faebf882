//! Object stores: where snapshots and archived WAL files go. A local folder (the embedded
//! default) and, behind the `s3` feature, S3 or any S3-compatible store.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An object's key and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key (`/`-separated).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A flat key-value store of immutable objects.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// Stores `len` bytes read from `data` under `key`, replacing any object there. The object
    /// becomes visible whole or not at all.
    fn put(&self, key: &str, data: &mut dyn Read, len: u64) -> Result<()>;
    /// Reads an object.
    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>>;
    /// The object's size, or `None` if absent.
    fn head(&self, key: &str) -> Result<Option<u64>>;
    /// Objects whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Removes an object (absent is fine).
    fn delete(&self, key: &str) -> Result<()>;
    /// Where the store is, for messages (`file:///backups`, `s3://bucket/prefix`).
    fn location(&self) -> String;
}

/// Checks a key: relative, `/`-separated, no empty, `.` or `..` segments.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.contains('\\')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(Error::invalid_argument(
            "key",
            format!("{key:?} is not a plain relative object key"),
        ));
    }
    Ok(())
}

/// A folder on the local file system.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Uses `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn walk(dir: &Path, base: &Path, out: &mut Vec<ObjectMeta>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let p = e.path();
        let t = e.file_type()?;
        if t.is_dir() {
            walk(&p, base, out)?;
        } else if t.is_file() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with(".tmp-") {
                continue;
            }
            if let Ok(rel) = p.strip_prefix(base)
                && let Some(key) = rel.to_str()
            {
                out.push(ObjectMeta {
                    key: key.replace(std::path::MAIN_SEPARATOR, "/"),
                    size: e.metadata()?.len(),
                });
            }
        }
    }
    Ok(())
}

impl ObjectStore for LocalStore {
    fn put(&self, key: &str, data: &mut dyn Read, len: u64) -> Result<()> {
        let path = self.path(key)?;
        let parent = path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            let copied = io::copy(&mut data.take(len), &mut f)?;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("expected {len} bytes, read {copied}"),
                ));
            }
            f.flush()?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&parent)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&path, e));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path(key)?;
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Box::new(io::BufReader::new(f)))
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out).map_err(|e| Error::io(&self.root, e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path()).unwrap();
        s.put("a/b/one", &mut &b"hello"[..], 5).unwrap();
        s.put("a/two", &mut &b"xy"[..], 2).unwrap();
        let mut out = String::new();
        s.get("a/b/one").unwrap().read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello");
        assert_eq!(s.head("a/two").unwrap(), Some(2));
        assert_eq!(s.head("nope").unwrap(), None);
        let keys: Vec<String> = s.list("a/").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, vec!["a/b/one", "a/two"]);
        s.delete("a/two").unwrap();
        s.delete("a/two").unwrap();
        assert_eq!(s.list("").unwrap().len(), 1);
        // A short reader is an error and leaves nothing behind.
        assert!(s.put("short", &mut &b"ab"[..], 5).is_err());
        assert_eq!(s.head("short").unwrap(), None);
        for bad in ["", "/abs", "a/../b", "a//b", "./a"] {
            assert!(s.put(bad, &mut &b""[..], 0).is_err(), "{bad:?}");
        }
    }
}
