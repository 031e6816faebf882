use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::directory::{Directory, MemoryDirectory};
use crate::types::PointId;

fn op(i: u64) -> Op {
    Op::Delete(vec![PointId::Num(i)])
}

fn open(dir: &MemoryDirectory, applied: Lsn, seg: u64) -> Result<(Wal, Vec<(Lsn, Op)>)> {
    let mut seen = Vec::new();
    let wal = Wal::open(
        Arc::new(dir.clone()),
        Path::new("wal"),
        seg,
        applied,
        |lsn, op| {
            seen.push((lsn, op));
            Ok(())
        },
    )?;
    Ok((wal, seen))
}

fn write_n(wal: &mut Wal, n: u64) {
    for _ in 0..n {
        let lsn = wal.next_lsn();
        wal.append(lsn, &op(lsn).encode()).unwrap();
    }
    wal.sync().unwrap();
}

fn wal_files(dir: &MemoryDirectory) -> Vec<String> {
    dir.list(Path::new("wal"))
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[test]
fn replays_after_applied_in_order() {
    let dir = MemoryDirectory::new();
    let (mut wal, seen) = open(&dir, 0, 1 << 20).unwrap();
    assert!(seen.is_empty());
    write_n(&mut wal, 10);
    drop(wal);
    let (wal, seen) = open(&dir, 4, 1 << 20).unwrap();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (5..=10).collect::<Vec<_>>()
    );
    assert_eq!(seen[0].1, op(5));
    assert_eq!(wal.next_lsn(), 11);
}

#[test]
fn rotates_and_removes_covered_files() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 4096).unwrap();
    write_n(&mut wal, 500);
    let files = wal.file_count();
    assert!(files > 2, "{files} files");
    let removed = wal.remove_covered(250).unwrap();
    assert!(removed > 0);
    drop(wal);
    let (wal, seen) = open(&dir, 250, 4096).unwrap();
    assert_eq!(seen.first().unwrap().0, 251);
    assert_eq!(seen.last().unwrap().0, 500);
    assert_eq!(wal.next_lsn(), 501);
}

#[test]
fn torn_tail_is_truncated_with_warning() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 1 << 20).unwrap();
    write_n(&mut wal, 3);
    drop(wal);
    let name = wal_files(&dir)[0].clone();
    let path = Path::new("wal").join(&name);
    let full = dir.read(&path).unwrap().to_vec();
    // Cut the last record in the middle, at every possible byte.
    let (_, _) = (full.len(), 0);
    for cut in 1..20 {
        let d2 = MemoryDirectory::new();
        d2.create_dir_all(Path::new("wal")).unwrap();
        let mut f = d2.create(&path).unwrap();
        f.write_all(&full[..full.len() - cut]).unwrap();
        drop(f);
        let (mut wal, seen) = open(&d2, 0, 1 << 20).unwrap();
        assert_eq!(seen.len(), 2, "cut {cut}");
        assert_eq!(wal.next_lsn(), 3);
        // Appending continues cleanly after the cut.
        wal.append(3, &op(3).encode()).unwrap();
        drop(wal);
        let (_, seen) = open(&d2, 0, 1 << 20).unwrap();
        assert_eq!(seen.len(), 3);
    }
}

#[test]
fn damage_before_the_tail_is_an_error_naming_file_and_offset() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 1 << 20).unwrap();
    write_n(&mut wal, 5);
    drop(wal);
    let name = wal_files(&dir)[0].clone();
    let path = Path::new("wal").join(&name);
    let mut bytes = dir.read(&path).unwrap().to_vec();
    bytes[HEADER_LEN + 20] ^= 0xff; // inside the first record's body
    let mut f = dir.create(&path).unwrap();
    f.write_all(&bytes).unwrap();
    drop(f);
    let err = open(&dir, 0, 1 << 20).unwrap_err().to_string();
    assert!(err.contains(&name), "{err}");
    assert!(err.contains(&format!("offset {HEADER_LEN}")), "{err}");
}

#[test]
fn rollback_cuts_back_across_rotation() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 4096).unwrap();
    write_n(&mut wal, 10);
    let pos = wal.pos();
    let files = wal.file_count();
    write_n(&mut wal, 400);
    assert!(wal.file_count() > files);
    wal.rollback(pos).unwrap();
    assert_eq!(wal.next_lsn(), 11);
    write_n(&mut wal, 2);
    drop(wal);
    let (_, seen) = open(&dir, 0, 4096).unwrap();
    assert_eq!(seen.len(), 12);
}

#[test]
fn full_disk_leaves_the_log_appendable() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 1 << 20).unwrap();
    write_n(&mut wal, 2);
    dir.set_capacity(Some(dir.used_bytes() + 10));
    let big = Op::Delete((0..100).map(PointId::Num).collect()).encode();
    let err = wal.append(3, &big).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    dir.set_capacity(None);
    wal.append(3, &op(3).encode()).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, seen) = open(&dir, 0, 1 << 20).unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].1, op(3));
}

#[test]
fn missing_records_after_the_manifest_are_an_error() {
    let dir = MemoryDirectory::new();
    let (mut wal, _) = open(&dir, 0, 4096).unwrap();
    write_n(&mut wal, 400);
    wal.remove_covered(300).unwrap();
    drop(wal);
    assert!(
        open(&dir, 100, 4096)
            .unwrap_err()
            .to_string()
            .contains("missing")
    );
}
