//! The README's main job: a collection in a local folder, end to end.
//!
//! `cargo run --release -p deftech-examples --bin quickstart [-- <folder>]`
//!
//! Creates a collection, inserts points with payloads, searches with and without a filter,
//! seals the data into an mmapped segment, reopens the database and searches again.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Instant;

use deftech_vec::{
    CollectionConfig, Condition, Database, Filter, Metric, PayloadIndexKind, Point, Range,
    ScrollRequest, SearchRequest,
};
use serde_json::json;

const DIM: usize = 64;
const POINTS: u64 = 20_000;

/// A deterministic pseudo-random vector around one of 8 topic centres.
fn vector(i: u64) -> Vec<f32> {
    let topic = i % 8;
    let mut s = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..DIM)
        .map(|d| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s % 1000) as f32 / 1000.0 - 0.5;
            let centre = if d as u64 % 8 == topic { 2.0 } else { 0.0 };
            centre + noise
        })
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./data/quickstart".into());
    println!("database folder: {folder}");
    let topics = [
        "maintenance",
        "logistics",
        "intelligence",
        "training",
        "medical",
        "comms",
        "legal",
        "finance",
    ];

    {
        let db = Database::open(&folder)?;
        if db.list_collections().contains(&"manuals".to_owned()) {
            db.drop_collection("manuals")?;
            println!("dropped the collection left by an earlier run");
        }
        let manuals =
            db.create_collection("manuals", CollectionConfig::new(DIM, Metric::Cosine))?;
        manuals.create_payload_index("topic", PayloadIndexKind::Keyword)?;
        manuals.create_payload_index("year", PayloadIndexKind::Integer)?;

        let start = Instant::now();
        for batch in (0..POINTS).collect::<Vec<_>>().chunks(1000) {
            let points = batch.iter().map(|&i| {
                Point::new(i, vector(i)).with_payload(json!({
                    "topic": topics[(i % 8) as usize],
                    "year": 1990 + (i % 35),
                    "title": format!("Manual {i}"),
                }))
            });
            manuals.upsert(points)?;
        }
        println!(
            "upserted {POINTS} points of {DIM} dimensions in {:.2?} (fsync per batch)",
            start.elapsed()
        );

        let query = vector(3);
        let hits = manuals.search(&SearchRequest::new(query.clone(), 3).with_payload(true))?;
        println!("nearest 3 to point 3:");
        for h in &hits {
            println!(
                "  id {:>6}  score {:.4}  {}",
                h.id,
                h.score,
                json!(h.payload)
            );
        }

        let filter = Filter::must([
            Condition::matches("topic", "medical"),
            Condition::range("year", Range::default().gte(2015.0)),
        ]);
        let hits = manuals.search(
            &SearchRequest::new(query.clone(), 3)
                .filter(filter.clone())
                .with_payload(true),
        )?;
        println!("nearest 3 with topic = medical and year >= 2015:");
        for h in &hits {
            println!(
                "  id {:>6}  score {:.4}  {}",
                h.id,
                h.score,
                json!(h.payload)
            );
        }
        println!(
            "points matching that filter: {}",
            manuals.count(Some(&filter))?
        );

        manuals.delete([3u64.into()])?;
        let start = Instant::now();
        manuals.optimize()?;
        let info = manuals.info();
        println!(
            "sealed into {} segment(s) in {:.2?}; {} live points; WAL now {} bytes",
            info.segments.iter().filter(|s| s.kind == "sealed").count(),
            start.elapsed(),
            info.points,
            info.wal_bytes
        );
        db.close()?;
    }

    let start = Instant::now();
    let db = Database::open(&folder)?;
    let manuals = db.collection("manuals")?;
    println!(
        "reopened in {:.2?}: {} points",
        start.elapsed(),
        manuals.count(None)?
    );
    let hits = manuals.search(&SearchRequest::new(vector(3), 3).with_payload(true))?;
    println!("nearest 3 to point 3 after reopening (point 3 was deleted):");
    for h in &hits {
        println!(
            "  id {:>6}  score {:.4}  {}",
            h.id,
            h.score,
            json!(h.payload)
        );
    }
    let page = manuals.scroll(
        &ScrollRequest::new(3).filter(Filter::must([Condition::matches("topic", "legal")])),
    )?;
    println!(
        "first legal manuals by id: {:?}, next page starts at {:?}",
        page.points.iter().map(|p| p.id).collect::<Vec<_>>(),
        page.next_page_offset
    );
    Ok(())
}
