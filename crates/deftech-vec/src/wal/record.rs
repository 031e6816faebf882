//! WAL operation records: the deterministic form of every write.
//!
//! Writes that select points by filter are resolved to ids before they are logged, so replay
//! never depends on the state it replays onto.
//!
//! ```text
//! op      := tag u8, fields
//! 1 upsert        count u32, point*        point := id, dim u32, f32 LE * dim, json
//! 2 delete        ids
//! 3 set_payload   ids, json, key_present u8, [key str]
//! 4 overwrite     ids, json
//! 5 delete_keys   ids, count u32, str*
//! 6 clear_payload ids
//! 7 create_index  str field, kind u8
//! 8 drop_index    str field
//! ids   := count u32, id*
//! id    := 0 u8, u64 LE  |  1 u8, u128 LE (UUID)
//! json  := len u32, UTF-8 JSON object text
//! str   := len u32, UTF-8 bytes
//! ```

use crate::codec::{DecodeResult, PutLe, Reader};
use crate::payload::PayloadIndexKind;
use crate::types::{Payload, PointId};

/// A point as logged and stored: the vector is already normalized for Cosine.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PointData {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Payload,
}

/// One logged write.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Upsert(Vec<PointData>),
    Delete(Vec<PointId>),
    SetPayload {
        ids: Vec<PointId>,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        ids: Vec<PointId>,
        payload: Payload,
    },
    DeletePayloadKeys {
        ids: Vec<PointId>,
        keys: Vec<String>,
    },
    ClearPayload(Vec<PointId>),
    CreateIndex {
        field: String,
        kind: PayloadIndexKind,
    },
    DropIndex {
        field: String,
    },
}

fn put_id(out: &mut Vec<u8>, id: PointId) {
    match id {
        PointId::Num(n) => {
            out.put_u8(0);
            out.put_u64(n);
        }
        PointId::Uuid(u) => {
            out.put_u8(1);
            out.put_u128(u.as_u128());
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[PointId]) {
    out.put_u32(ids.len() as u32);
    for &id in ids {
        put_id(out, id);
    }
}

fn put_json(out: &mut Vec<u8>, payload: &Payload) {
    let text = serde_json::to_vec(payload).expect("a JSON map always serializes");
    out.put_u32(text.len() as u32);
    out.extend_from_slice(&text);
}

fn get_id(r: &mut Reader<'_>) -> DecodeResult<PointId> {
    match r.u8()? {
        0 => Ok(PointId::Num(r.u64()?)),
        1 => Ok(PointId::Uuid(uuid::Uuid::from_u128(r.u128()?))),
        t => r.fail(format!("unknown point id kind {t}")),
    }
}

fn get_ids(r: &mut Reader<'_>) -> DecodeResult<Vec<PointId>> {
    let n = r.count(9)?;
    (0..n).map(|_| get_id(r)).collect()
}

fn get_json(r: &mut Reader<'_>) -> DecodeResult<Payload> {
    let n = r.count(1)?;
    let start = r.pos();
    let bytes = r.take(n)?;
    serde_json::from_slice(bytes).map_err(|e| crate::codec::DecodeError {
        offset: start,
        reason: format!("payload is not a JSON object: {e}"),
    })
}

impl Op {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Op::Upsert(points) => {
                out.put_u8(1);
                out.put_u32(points.len() as u32);
                for p in points {
                    put_id(&mut out, p.id);
                    out.put_u32(p.vector.len() as u32);
                    out.extend_from_slice(bytemuck::cast_slice(&p.vector));
                    put_json(&mut out, &p.payload);
                }
            }
            Op::Delete(ids) => {
                out.put_u8(2);
                put_ids(&mut out, ids);
            }
            Op::SetPayload { ids, payload, key } => {
                out.put_u8(3);
                put_ids(&mut out, ids);
                put_json(&mut out, payload);
                match key {
                    Some(k) => {
                        out.put_u8(1);
                        out.put_str(k);
                    }
                    None => out.put_u8(0),
                }
            }
            Op::OverwritePayload { ids, payload } => {
                out.put_u8(4);
                put_ids(&mut out, ids);
                put_json(&mut out, payload);
            }
            Op::DeletePayloadKeys { ids, keys } => {
                out.put_u8(5);
                put_ids(&mut out, ids);
                out.put_u32(keys.len() as u32);
                for k in keys {
                    out.put_str(k);
                }
            }
            Op::ClearPayload(ids) => {
                out.put_u8(6);
                put_ids(&mut out, ids);
            }
            Op::CreateIndex { field, kind } => {
                out.put_u8(7);
                out.put_str(field);
                out.put_u8(kind.code());
            }
            Op::DropIndex { field } => {
                out.put_u8(8);
                out.put_str(field);
            }
        }
        out
    }

    /// Decodes one record body; any malformed input is an error, never a panic.
    pub(crate) fn decode(bytes: &[u8]) -> DecodeResult<Op> {
        let mut r = Reader::new(bytes);
        let op = match r.u8()? {
            1 => {
                let n = r.count(9 + 4 + 4)?;
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = get_id(&mut r)?;
                    let dim = r.count(4)?;
                    let raw = r.take(dim * 4)?;
                    let vector = raw
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect();
                    let payload = get_json(&mut r)?;
                    points.push(PointData {
                        id,
                        vector,
                        payload,
                    });
                }
                Op::Upsert(points)
            }
            2 => Op::Delete(get_ids(&mut r)?),
            3 => {
                let ids = get_ids(&mut r)?;
                let payload = get_json(&mut r)?;
                let key = match r.u8()? {
                    0 => None,
                    1 => Some(r.string()?),
                    t => return r.fail(format!("bad key flag {t}")),
                };
                Op::SetPayload { ids, payload, key }
            }
            4 => {
                let ids = get_ids(&mut r)?;
                let payload = get_json(&mut r)?;
                Op::OverwritePayload { ids, payload }
            }
            5 => {
                let ids = get_ids(&mut r)?;
                let n = r.count(4)?;
                let keys = (0..n).map(|_| r.string()).collect::<DecodeResult<_>>()?;
                Op::DeletePayloadKeys { ids, keys }
            }
            6 => Op::ClearPayload(get_ids(&mut r)?),
            7 => {
                let field = r.string()?;
                let code = r.u8()?;
                let Some(kind) = PayloadIndexKind::from_code(code) else {
                    return r.fail(format!("unknown payload index kind {code}"));
                };
                Op::CreateIndex { field, kind }
            }
            8 => Op::DropIndex { field: r.string()? },
            t => return r.fail(format!("unknown operation tag {t}")),
        };
        if r.remaining() != 0 {
            return r.fail(format!(
                "{} trailing bytes after the operation",
                r.remaining()
            ));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: serde_json::Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn every_op_round_trips() {
        let u = PointId::Uuid(uuid::Uuid::from_u128(77));
        let ops = vec![
            Op::Upsert(vec![
                PointData {
                    id: PointId::Num(1),
                    vector: vec![0.5, -1.0],
                    payload: payload(json!({"a": [1, "x"], "b": {"c": null}})),
                },
                PointData {
                    id: u,
                    vector: vec![],
                    payload: Payload::new(),
                },
            ]),
            Op::Delete(vec![PointId::Num(3), u]),
            Op::SetPayload {
                ids: vec![u],
                payload: payload(json!({"k": 1})),
                key: Some("a.b".into()),
            },
            Op::SetPayload {
                ids: vec![],
                payload: Payload::new(),
                key: None,
            },
            Op::OverwritePayload {
                ids: vec![PointId::Num(9)],
                payload: payload(json!({"z": true})),
            },
            Op::DeletePayloadKeys {
                ids: vec![PointId::Num(9)],
                keys: vec!["a".into(), "b.c".into()],
            },
            Op::ClearPayload(vec![PointId::Num(4)]),
            Op::CreateIndex {
                field: "city".into(),
                kind: PayloadIndexKind::Keyword,
            },
            Op::DropIndex {
                field: "city".into(),
            },
        ];
        for op in ops {
            let bytes = op.encode();
            assert_eq!(Op::decode(&bytes).unwrap(), op);
            // Every strict prefix fails cleanly.
            for cut in 0..bytes.len() {
                assert!(Op::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
