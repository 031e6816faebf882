//! A snapshot as one self-contained tar stream (Qdrant-style download and upload):
//! `snapshot.json` first, then `blobs/<sha256>` for each distinct file body. Import accepts
//! exactly those entries — regular files with those names — and refuses anything else
//! (absolute paths, `..`, links, devices) with an error naming the entry.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use super::{
    Capture, FORMAT_VERSION, FileRef, SnapshotInfo, SnapshotManifest, copy_hashed, sha256_hex,
};
use crate::directory::{Directory, FileBytes};
use crate::error::{Error, IoContext, Result};

fn io(what: &str, e: std::io::Error) -> Error {
    Error::io(what, e)
}

/// Writes the captured collection as a tar stream.
pub(crate) fn write(
    dir: &dyn Directory,
    folder: &Path,
    collection: &str,
    capture: Capture,
    out: &mut dyn Write,
) -> Result<SnapshotInfo> {
    let mut refs = Vec::new();
    let mut bodies: Vec<(String, FileBytes, usize)> = Vec::new();
    for (rel, len) in &capture.files {
        let path = folder.join(rel);
        let data = dir.read(&path).at(&dir.describe(&path))?;
        let len = *len as usize;
        let body = data.get(..len).ok_or_else(|| {
            Error::corrupted(dir.describe(&path), 0, "file shorter than captured")
        })?;
        let sha = sha256_hex(body);
        if !bodies.iter().any(|(s, _, _)| *s == sha) {
            bodies.push((sha.clone(), data.clone(), len));
        }
        refs.push(FileRef::new(rel, sha, len as u64));
    }
    let snap = SnapshotManifest::new(collection, capture.lsn, capture.manifest, refs);
    let created_at_ms = snap.created_at_ms;
    let json = serde_json::to_vec_pretty(&snap).expect("snapshot manifest serializes");
    let mut tar = tar::Builder::new(out);
    append(
        &mut tar,
        "snapshot.json",
        created_at_ms,
        json.len() as u64,
        &mut &json[..],
    )?;
    for (sha, data, len) in &bodies {
        append(
            &mut tar,
            &format!("blobs/{sha}"),
            created_at_ms,
            *len as u64,
            &mut &data[..*len],
        )?;
    }
    tar.finish().map_err(|e| io("tar stream", e))?;
    Ok(SnapshotInfo {
        uploaded_files: bodies.len(),
        uploaded_bytes: bodies.iter().map(|b| b.2 as u64).sum(),
        ..super::info_of(&snap)
    })
}

fn append(
    tar: &mut tar::Builder<&mut dyn Write>,
    name: &str,
    ms: u64,
    len: u64,
    body: &mut dyn Read,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_mtime(ms / 1000);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.append_data(&mut h, name, body.take(len))
        .map_err(|e| io(&format!("tar entry {name}"), e))
}

/// Writes a snapshot held in a store as a tar stream, streaming each distinct blob once.
pub(crate) fn write_from_store(
    store: &dyn super::ObjectStore,
    collection: &str,
    snap: &SnapshotManifest,
    out: &mut dyn Write,
) -> Result<()> {
    let json = serde_json::to_vec_pretty(snap).expect("snapshot manifest serializes");
    let mut tar = tar::Builder::new(out);
    append(
        &mut tar,
        "snapshot.json",
        snap.created_at_ms,
        json.len() as u64,
        &mut &json[..],
    )?;
    let mut seen = std::collections::HashSet::new();
    for f in &snap.files {
        if seen.insert(f.sha256.clone()) {
            let mut r = store.get(&super::blob_key(collection, &f.sha256))?;
            append(
                &mut tar,
                &format!("blobs/{}", f.sha256),
                snap.created_at_ms,
                f.size,
                &mut *r,
            )?;
        }
    }
    tar.finish().map_err(|e| io("tar stream", e))
}

/// Reads a tar stream into `staging` (a collection folder under construction); returns the
/// snapshot manifest. Every file is checked against its SHA-256 and size.
pub(crate) fn read(
    r: &mut dyn Read,
    dir: &dyn Directory,
    staging: &Path,
) -> Result<SnapshotManifest> {
    let mut archive = tar::Archive::new(r);
    let mut snap: Option<SnapshotManifest> = None;
    let mut by_sha: HashMap<String, Vec<FileRef>> = HashMap::new();
    let mut written = 0usize;
    for entry in archive.entries().map_err(|e| io("tar stream", e))? {
        let mut entry = entry.map_err(|e| io("tar stream (truncated or damaged)", e))?;
        let name = entry
            .path_bytes()
            .iter()
            .map(|&b| b as char)
            .collect::<String>();
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(Error::invalid_argument(
                "snapshot",
                format!("tar entry {name:?}: only regular files are accepted, found {kind:?}"),
            ));
        }
        if name == "snapshot.json" {
            let mut json = Vec::new();
            entry
                .read_to_end(&mut json)
                .map_err(|e| io("tar entry snapshot.json", e))?;
            let s: SnapshotManifest = serde_json::from_slice(&json).map_err(|e| {
                Error::corrupted(
                    "tar entry snapshot.json",
                    0,
                    format!("bad snapshot manifest: {e}"),
                )
            })?;
            if s.format_version != FORMAT_VERSION {
                return Err(Error::UnsupportedVersion {
                    path: "tar entry snapshot.json".into(),
                    found: s.format_version,
                    supported: FORMAT_VERSION,
                });
            }
            for f in &s.files {
                super::check_rel_path(&f.path).map_err(|reason| {
                    Error::corrupted(
                        "tar entry snapshot.json",
                        0,
                        format!("file {:?}: {reason}", f.path),
                    )
                })?;
                by_sha.entry(f.sha256.clone()).or_default().push(f.clone());
            }
            snap = Some(s);
            continue;
        }
        let sha = name
            .strip_prefix("blobs/")
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                Error::invalid_argument(
                    "snapshot",
                    format!("tar entry {name:?}: not snapshot.json or blobs/<sha256>"),
                )
            })?
            .to_owned();
        if snap.is_none() {
            return Err(Error::invalid_argument(
                "snapshot",
                format!("tar entry {name:?} comes before snapshot.json"),
            ));
        }
        let targets = by_sha.remove(&sha).ok_or_else(|| {
            Error::invalid_argument(
                "snapshot",
                format!("tar entry {name:?} is not part of the snapshot"),
            )
        })?;
        // Streamed into the first file that has this content while hashing (bodies can be
        // gigabytes), then checked; other files with the same content are copies of it.
        let shown = format!("tar entry {name}");
        let (first, rest) = targets.split_first().expect("at least one target");
        let write_to =
            |f: &FileRef, src: &mut dyn Read| copy_hashed(src, dir, &staging.join(&f.path), &shown);
        let (size, got) = write_to(first, &mut entry)?;
        if got != sha {
            return Err(Error::corrupted(
                &shown,
                0,
                "content does not match its checksum",
            ));
        }
        for f in targets.iter() {
            if size != f.size {
                return Err(Error::corrupted(
                    &shown,
                    0,
                    format!("{size} bytes, {} expected for {}", f.size, f.path),
                ));
            }
        }
        let first_path = staging.join(&first.path);
        for f in rest {
            let data = dir.read(&first_path).at(&dir.describe(&first_path))?;
            write_to(f, &mut &data[..])?;
        }
        written += targets.len();
    }
    let snap = snap.ok_or_else(|| {
        Error::invalid_argument("snapshot", "the tar stream has no snapshot.json")
    })?;
    if let Some(missing) = by_sha.values().flatten().next() {
        return Err(Error::corrupted(
            "tar stream",
            0,
            format!(
                "truncated: {} is missing ({} of {} files present)",
                missing.path,
                written,
                snap.files.len()
            ),
        ));
    }
    Ok(snap)
}
