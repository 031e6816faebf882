//! `deftech snapshot create|list|restore|delete`: snapshots of a data folder without a running
//! server (the folder is locked while a server has it open: then use the HTTP API). Transfers
//! report progress in the log every few seconds.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deftech_vec::{Database, ObjectMeta, ObjectStore, RestorePoint, snapshots};
use parking_lot::Mutex;

use crate::api::iso_time;
use crate::config::ServerConfig;

/// What to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Snapshot these collections (all when empty).
    Create(Vec<String>),
    /// List snapshots of these collections (all in the database when empty).
    List(Vec<String>),
    /// Restore collection `from` at `point` as `name` (default: the same name).
    Restore {
        from: String,
        point: RestorePoint,
        name: Option<String>,
    },
    /// Delete one snapshot and the blobs only it used.
    Delete { collection: String, id: String },
}

/// Parses a restore time: milliseconds since the Unix epoch, or `YYYY-MM-DDTHH:MM:SS[Z]` (UTC).
pub fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let bad =
        || format!("--time {s:?}: expected milliseconds since 1970 or YYYY-MM-DDTHH:MM:SS (UTC)");
    let s = s.trim_end_matches('Z');
    let (date, time) = s
        .split_once('T')
        .or_else(|| s.split_once(' '))
        .ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let t: Vec<i64> = time
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let (&[y, m, day], &[hh, mm, ss]) = (&d[..], &t[..]) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000).map_err(|_| bad())
}

/// A store wrapper that logs transfer progress.
#[derive(Debug)]
struct Progress {
    inner: Arc<dyn ObjectStore>,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    last: Arc<Mutex<Instant>>,
}

struct Counting<R> {
    r: R,
    n: Arc<AtomicU64>,
    last: Arc<Mutex<Instant>>,
    what: &'static str,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.r.read(buf)?;
        let total = self.n.fetch_add(k as u64, Ordering::Relaxed) + k as u64;
        let mut last = self.last.lock();
        if last.elapsed() >= Duration::from_secs(2) {
            *last = Instant::now();
            tracing::info!(
                "{} {:.1} MiB so far",
                self.what,
                total as f64 / (1 << 20) as f64
            );
        }
        Ok(k)
    }
}

impl ObjectStore for Progress {
    fn put(&self, key: &str, data: &mut dyn Read, len: u64) -> deftech_vec::Result<()> {
        let mut c = Counting {
            r: data,
            n: self.up.clone(),
            last: self.last.clone(),
            what: "uploaded",
        };
        self.inner.put(key, &mut c, len)
    }
    fn get(&self, key: &str) -> deftech_vec::Result<Box<dyn Read + Send>> {
        let r = self.inner.get(key)?;
        Ok(Box::new(Counting {
            r,
            n: self.down.clone(),
            last: self.last.clone(),
            what: "downloaded",
        }))
    }
    fn head(&self, key: &str) -> deftech_vec::Result<Option<u64>> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> deftech_vec::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> deftech_vec::Result<()> {
        self.inner.delete(key)
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// Runs `action` on the data folder and snapshot store of `config`, writing results to `out`.
pub fn run(config: &ServerConfig, action: Action, out: &mut dyn Write) -> Result<(), String> {
    let store = config.snapshots.open_store(&config.data)?;
    let store = Progress {
        inner: store,
        up: Default::default(),
        down: Default::default(),
        last: Arc::new(Mutex::new(Instant::now())),
    };
    let open = || {
        Database::open(&config.data).map_err(|e| match e {
            deftech_vec::Error::InUse { .. } => format!(
                "{e}: a server has this data folder open; use its HTTP API \
                 (POST /collections/{{name}}/snapshots, PUT /collections/{{name}}/snapshots/recover)"
            ),
            e => e.to_string(),
        })
    };
    let w = |out: &mut dyn Write, line: String| writeln!(out, "{line}").map_err(|e| e.to_string());
    match action {
        Action::Create(names) => {
            let db = open()?;
            let names = if names.is_empty() {
                db.list_collections()
            } else {
                names
            };
            for n in names {
                let t = Instant::now();
                let c = db.collection(&n).map_err(|e| e.to_string())?;
                let i = c.snapshot(&store).map_err(|e| format!("{n}: {e}"))?;
                w(
                    out,
                    format!(
                        "{n}: snapshot {} at LSN {}: {} files, {:.1} MiB; uploaded {} files, {:.1} MiB in {:.1} s",
                        i.id,
                        i.lsn,
                        i.files,
                        i.bytes as f64 / (1 << 20) as f64,
                        i.uploaded_files,
                        i.uploaded_bytes as f64 / (1 << 20) as f64,
                        t.elapsed().as_secs_f64()
                    ),
                )?;
            }
            db.close().map_err(|e| e.to_string())
        }
        Action::List(names) => {
            let names = if names.is_empty() {
                // Collections with snapshots in the store: the first key segment.
                let mut v: Vec<String> = store
                    .list("")
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .filter(|o| o.key.contains("/snapshots/"))
                    .filter_map(|o| o.key.split('/').next().map(str::to_owned))
                    .collect();
                v.dedup();
                v
            } else {
                names
            };
            for n in names {
                for s in snapshots::list(&store, &n).map_err(|e| e.to_string())? {
                    w(
                        out,
                        format!(
                            "{n}\t{}\tLSN {}\t{}\t{} files\t{:.1} MiB",
                            s.id,
                            s.lsn,
                            iso_time(s.created_at_ms),
                            s.files,
                            s.bytes as f64 / (1 << 20) as f64
                        ),
                    )?;
                }
            }
            Ok(())
        }
        Action::Restore { from, point, name } => {
            let db = open()?;
            let name = name.unwrap_or_else(|| from.clone());
            let t = Instant::now();
            let c = db
                .restore(&store, &from, &point, &name)
                .map_err(|e| e.to_string())?;
            w(
                out,
                format!(
                    "restored {from} ({point:?}) as {name}: {} points at LSN {}, {:.1} MiB downloaded in {:.1} s",
                    c.count(None).map_err(|e| e.to_string())?,
                    c.lsn(),
                    store.down.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
                    t.elapsed().as_secs_f64()
                ),
            )?;
            drop(c);
            db.close().map_err(|e| e.to_string())
        }
        Action::Delete { collection, id } => {
            let r = snapshots::delete(&store, &collection, &id).map_err(|e| e.to_string())?;
            w(
                out,
                format!(
                    "deleted {collection}/{id}: {} blobs, {} bytes freed",
                    r.blobs, r.bytes
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_both_ways() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2023-11-14T22:13:20").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            crate::api::iso_time(1_700_000_000_000),
            "2023-11-14T22:13:20"
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2023-13-01T00:00:00").is_err());
    }
}
