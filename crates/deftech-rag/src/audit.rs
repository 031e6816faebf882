//! The tamper-evident audit log: one JSON record per line, each carrying the SHA-256 of the
//! record before it, so that editing, removing, inserting or reordering any record breaks the
//! chain at a line that [`verify`] names.
//!
//! ```text
//! {"seq":0,"prev":"000…0","hash":"<sha256>","event":{…}}
//! {"seq":1,"prev":"<hash of record 0>","hash":"<sha256>","event":{…}}
//! ```
//!
//! `hash = SHA-256(prev ‖ "\n" ‖ seq ‖ "\n" ‖ compact JSON of event)`. Removing records from
//! the end leaves a valid shorter chain, so every append also rewrites a small sidecar file
//! `<log>.head` (sequence number and hash of the last record, written to a temporary file,
//! fsynced and renamed): [`verify`] checks the log's end against it. An attacker able to rewrite
//! both files consistently defeats this; shipping records to a second sink (PostgreSQL) is the
//! defence against that.
//!
//! Appends are fsynced before they return: a caller that fails closed on an audit error never
//! acts without a durable record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What went wrong with the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The chain is broken: a record was edited, removed, inserted, reordered or cut.
    #[error("{path}: line {line}: {reason}")]
    Tampered {
        /// The log.
        path: PathBuf,
        /// 1-based line number of the first bad record (one past the end for a missing tail).
        line: u64,
        /// What check failed.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev: String,
    /// Hash of this record.
    pub hash: String,
    /// What happened (an ingest, an ask, a denial, …): any JSON object.
    pub event: Value,
}

fn hash_of(prev: &str, seq: u64, event: &Value) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(event).expect("JSON values serialize"));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

fn head_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// An open audit log, appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    next_seq: u64,
    last_hash: String,
    /// An append failed and could not be undone: refuse further appends.
    poisoned: bool,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking the whole chain first: a damaged log is
    /// never appended to.
    pub fn open(path: impl Into<PathBuf>) -> Result<AuditLog, AuditError> {
        let path = path.into();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let summary = if path.exists() {
            verify(&path)?
        } else {
            Summary {
                records: 0,
                last_hash: GENESIS.to_owned(),
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(AuditLog {
            path,
            file,
            next_seq: summary.records,
            last_hash: summary.last_hash,
            poisoned: false,
        })
    }

    /// Appends an event and makes it durable (log and head file fsynced) before returning.
    pub fn append(&mut self, event: Value) -> Result<AuditRecord, AuditError> {
        if self.poisoned {
            return Err(AuditError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(
                    "an earlier append failed and could not be rolled back; reopen the log",
                ),
            });
        }
        let seq = self.next_seq;
        let hash = hash_of(&self.last_hash, seq, &event);
        let record = AuditRecord {
            seq,
            prev: self.last_hash.clone(),
            hash: hash.clone(),
            event,
        };
        let mut line = serde_json::to_vec(&record).expect("records serialize");
        line.push(b'\n');
        let before = self.file.metadata().map_err(io(&self.path))?.len();
        let head = head_path(&self.path);
        let tmp = head.with_extension("head.tmp");
        let body = serde_json::to_vec(&Head {
            seq,
            hash: hash.clone(),
        })
        .expect("head serializes");
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(io(&self.path))
            .and_then(|()| {
                (|| {
                    let mut f = File::create(&tmp)?;
                    f.write_all(&body)?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, &head)
                })()
                .map_err(io(&head))
            });
        if let Err(e) = written {
            // Take the record back out, so the chain stays valid and the next append (or the
            // next start) does not find a duplicate or half-written line. If even that fails,
            // the log refuses further appends rather than break the chain.
            if self
                .file
                .set_len(before)
                .and_then(|()| self.file.sync_data())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(e);
        }
        self.next_seq += 1;
        self.last_hash = hash;
        Ok(record)
    }

    /// Records appended so far (including those found at open).
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    /// True if the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }
}

/// What a verified log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of records.
    pub records: u64,
    /// Hash of the last record ([`GENESIS`] when empty).
    pub last_hash: String,
}

/// Checks every record of the log at `path` and its end against the head file; the error names
/// the first bad line.
pub fn verify(path: &Path) -> Result<Summary, AuditError> {
    let bad = |line: u64, reason: String| AuditError::Tampered {
        path: path.to_owned(),
        line,
        reason,
    };
    let file = File::open(path).map_err(io(path))?;
    let mut reader = BufReader::new(file);
    let mut prev = GENESIS.to_owned();
    let mut seq = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        let line = seq + 1;
        if buf.last() != Some(&b'\n') {
            return Err(bad(
                line,
                "incomplete record (the log was cut mid-record)".into(),
            ));
        }
        let r: AuditRecord = serde_json::from_slice(&buf[..buf.len() - 1])
            .map_err(|e| bad(line, format!("not an audit record: {e}")))?;
        if r.seq != seq {
            return Err(bad(
                line,
                format!(
                    "sequence number {} where {seq} was expected (a record was removed, inserted or moved)",
                    r.seq
                ),
            ));
        }
        if r.prev != prev {
            return Err(bad(
                line,
                "does not follow the previous record (removed, inserted or reordered)".into(),
            ));
        }
        if hash_of(&r.prev, r.seq, &r.event) != r.hash {
            return Err(bad(
                line,
                "content does not match its hash (the record was edited)".into(),
            ));
        }
        prev = r.hash;
        seq += 1;
    }
    let head = head_path(path);
    match std::fs::read(&head) {
        Ok(bytes) => {
            let h: Head = serde_json::from_slice(&bytes).map_err(|e| {
                bad(
                    seq + 1,
                    format!("{}: unreadable head file: {e}", head.display()),
                )
            })?;
            if h.seq + 1 != seq || h.hash != prev {
                return Err(bad(
                    seq + 1,
                    format!(
                        "the log ends after record {} but the head file records {} records ending in {}: records were removed from the end",
                        seq as i64 - 1,
                        h.seq + 1,
                        &h.hash[..h.hash.len().min(12)]
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && seq == 0 => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                seq + 1,
                format!(
                    "{} is missing: the end of the log cannot be checked",
                    head.display()
                ),
            ));
        }
        Err(e) => {
            return Err(AuditError::Io {
                path: head,
                source: e,
            });
        }
    }
    Ok(Summary {
        records: seq,
        last_hash: prev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("audit/audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..n {
            log.append(
                json!({"action": "ask", "user": format!("u{i}"), "query": format!("question {i}")}),
            )
            .unwrap();
        }
        (d, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut s = lines.join("\n");
        s.push('\n');
        std::fs::write(path, s).unwrap();
    }

    fn tampered_line(path: &Path) -> u64 {
        match verify(path) {
            Err(AuditError::Tampered { line, .. }) => line,
            other => panic!("expected tampering to be found, got {other:?}"),
        }
    }

    #[test]
    fn a_clean_log_verifies_and_reopens_where_it_ended() {
        let (_d, path) = log_with(5);
        let s = verify(&path).unwrap();
        assert_eq!(s.records, 5);
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(log.len(), 5);
        let r = log.append(json!({"action": "ingest"})).unwrap();
        assert_eq!(r.seq, 5);
        assert_eq!(r.prev, s.last_hash);
        // Floats survive the trip through the file bit for bit (scores, latencies).
        let floats: Vec<f64> = (1..200)
            .map(|i| 1.0 / f64::from(i) + f64::from(i) * 1e-7)
            .collect();
        log.append(
            json!({"action": "ask", "scores": floats, "ms": 60.31234567891234, "f32": 0.1f32}),
        )
        .unwrap();
        assert_eq!(verify(&path).unwrap().records, 7);
    }

    #[test]
    fn edits_removals_insertions_reorders_and_cuts_are_found_at_their_line() {
        let (_d, path) = log_with(6);
        let original = lines(&path);

        let mut edited = original.clone();
        edited[2] = edited[2].replace("question 2", "question two");
        write_lines(&path, &edited);
        assert_eq!(tampered_line(&path), 3);

        let mut removed = original.clone();
        removed.remove(3);
        write_lines(&path, &removed);
        assert_eq!(tampered_line(&path), 4);

        let mut reordered = original.clone();
        reordered.swap(1, 2);
        write_lines(&path, &reordered);
        assert_eq!(tampered_line(&path), 2);

        let mut inserted = original.clone();
        inserted.insert(4, original[4].clone()); // a replayed copy of record 4 (line 5)
        write_lines(&path, &inserted);
        assert_eq!(tampered_line(&path), 6);

        // The last records removed: a valid but shorter chain, caught by the head file.
        write_lines(&path, &original[..4]);
        let line = tampered_line(&path);
        assert_eq!(line, 5);
        assert!(
            verify(&path)
                .unwrap_err()
                .to_string()
                .contains("removed from the end")
        );

        // Cut in the middle of the last record.
        let mut text = original.join("\n");
        text.truncate(text.len() - 10);
        std::fs::write(&path, text).unwrap();
        assert_eq!(tampered_line(&path), 6);

        // A damaged log is not appended to.
        assert!(AuditLog::open(&path).is_err());
        write_lines(&path, &original);
        verify(&path).unwrap();
    }

    #[test]
    fn a_failed_append_is_rolled_back_and_the_chain_stays_valid() {
        let (_d, path) = log_with(3);
        let before = std::fs::read(&path).unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        // The head file cannot be written (a directory sits where its temporary file goes).
        let blocker = head_path(&path).with_extension("head.tmp");
        std::fs::create_dir(&blocker).unwrap();
        assert!(log.append(json!({"action": "ask"})).is_err());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the record was taken back out"
        );
        assert_eq!(verify(&path).unwrap().records, 3);
        std::fs::remove_dir(&blocker).unwrap();
        let r = log.append(json!({"action": "ask", "again": true})).unwrap();
        assert_eq!(r.seq, 3);
        assert_eq!(verify(&path).unwrap().records, 4);
    }

    #[test]
    fn a_recomputed_hash_still_breaks_the_chain() {
        // An editor who also recomputes the edited record's hash breaks the next record's link.
        let (_d, path) = log_with(4);
        let mut l = lines(&path);
        let mut r: AuditRecord = serde_json::from_str(&l[1]).unwrap();
        r.event = json!({"action": "ask", "user": "someone else"});
        r.hash = hash_of(&r.prev, r.seq, &r.event);
        l[1] = serde_json::to_string(&r).unwrap();
        write_lines(&path, &l);
        assert_eq!(tampered_line(&path), 3);
    }
}
