#!/usr/bin/env python3
"""Drives a running deftech server with the official Python `qdrant-client`, unchanged, over
every API the server implements. Exits non-zero on the first failure.

    python3 suite.py http://127.0.0.1:6333 [api-key]
"""
import sys
import uuid
import warnings

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

URL = sys.argv[1]
KEY = sys.argv[2] if len(sys.argv) > 2 else None
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(what)


def expect_error(fn, status, what):
    try:
        fn()
    except UnexpectedResponse as e:
        check(e.status_code == status, f"{what}: expected HTTP {status}, got {e.status_code}: {e.content!r}")
        return e
    raise AssertionError(f"{what}: expected HTTP {status}, got success")


def main():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = QdrantClient(url=URL, api_key=KEY, https=URL.startswith("https"), timeout=30)
        info = client.info()
    check(info.version.startswith("1."), f"server version {info.version}")

    name = "client_suite"
    if client.collection_exists(name):
        client.delete_collection(name)
    check(client.create_collection(
        name,
        vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
        hnsw_config=models.HnswConfigDiff(m=16, ef_construct=100),
    ), "create_collection")
    check(client.collection_exists(name), "collection_exists")
    check(name in [c.name for c in client.get_collections().collections], "get_collections")
    expect_error(lambda: client.create_collection(
        name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT)), 409, "duplicate create")

    u = str(uuid.UUID(int=0xABCDEF))
    points = [
        models.PointStruct(id=i, vector=[float(i), 1.0, 0.0, -1.0],
                           payload={"city": ["London", "Berlin", "Paris"][i % 3], "n": i, "tags": ["a", "b"][: i % 3]})
        for i in range(1, 31)
    ]
    points.append(models.PointStruct(id=u, vector=[0.5, 0.5, 0.5, 0.5], payload={"city": "Oslo", "n": 100}))
    r = client.upsert(name, points=points, wait=True)
    check(r.status == models.UpdateStatus.COMPLETED and r.operation_id >= 1, f"upsert result {r}")

    # Columnar batch form.
    client.upsert(name, points=models.Batch(ids=[40, 41], vectors=[[1, 2, 3, 4], [4, 3, 2, 1]],
                                            payloads=[{"city": "Rome"}, {"city": "Madrid"}]))
    check(client.count(name, exact=True).count == 33, "count after batch upsert")

    c = client.get_collection(name)
    check(c.points_count == 33, f"points_count {c.points_count}")
    check(c.config.params.vectors.size == 4, "vector size in info")
    check(c.config.params.vectors.distance == models.Distance.DOT, "distance in info")

    got = client.retrieve(name, ids=[1, 2, u, 999], with_vectors=True)
    check(sorted(str(p.id) for p in got) == sorted(["1", "2", u]), f"retrieve {[p.id for p in got]}")
    check(got[0].vector is not None and len(got[0].vector) == 4, "retrieve with vectors")

    hits = client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], limit=3, with_payload=True).points
    check([h.id for h in hits] == [30, 29, 28], f"query_points {[h.id for h in hits]}")
    check(abs(hits[0].score - 30.0) < 1e-4 and hits[0].payload["n"] == 30, "query score and payload")

    london = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(value="London"))])
    hits = client.query_points(name, query=[1.0, 0.0, 0.0, 0.0], query_filter=london, limit=5).points
    check([h.id for h in hits] == [30, 27, 24, 21, 18], f"filtered query {[h.id for h in hits]}")

    rng = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=10, lt=20))])
    check(client.count(name, count_filter=rng, exact=True).count == 10, "count with range")
    nested = models.Filter(should=[models.FieldCondition(key="city", match=models.MatchAny(any=["Paris", "Oslo"]))],
                           must_not=[models.HasIdCondition(has_id=[2])])
    check(client.count(name, count_filter=nested).count == 10, "should + must_not has_id")
    empty = models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))])
    check(client.count(name, count_filter=empty).count == 10 + 3, "is_empty")

    # Legacy search APIs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(client, "search"):
            res = client.search(name, query_vector=[1.0, 0.0, 0.0, 0.0], limit=2, score_threshold=28.5)
            check([h.id for h in res] == [30, 29], f"search with threshold {[h.id for h in res]}")
    batch = client.query_batch_points(name, requests=[
        models.QueryRequest(query=[1.0, 0.0, 0.0, 0.0], limit=1),
        models.QueryRequest(query=[-1.0, 0.0, 0.0, 0.0], limit=1, filter=london),
    ])
    check([b.points[0].id for b in batch] == [30, 3], f"query batch {[b.points[0].id for b in batch]}")
    by_id = client.query_points(name, query=30, limit=1).points
    check(by_id[0].id == 29, f"query by point id {[h.id for h in by_id]}")

    # Scroll pages.
    seen, offset = [], None
    while True:
        page, offset = client.scroll(name, limit=7, offset=offset, with_payload=False)
        seen += [p.id for p in page]
        if offset is None:
            break
    check(len(seen) == 33 and seen[:3] == [1, 2, 3] and seen[-1] == u, f"scroll order {seen}")

    # Payload edits.
    client.set_payload(name, payload={"checked": True}, points=[1, 2])
    client.set_payload(name, payload={"deep": 1}, points=[1], key="meta")
    p = client.retrieve(name, ids=[1])[0].payload
    check(p["checked"] is True and p["meta"] == {"deep": 1}, f"set_payload {p}")
    client.overwrite_payload(name, payload={"only": "this"}, points=[2])
    check(client.retrieve(name, ids=[2])[0].payload == {"only": "this"}, "overwrite_payload")
    client.delete_payload(name, keys=["checked", "n"], points=[1])
    p = client.retrieve(name, ids=[1])[0].payload
    check("checked" not in p and "n" not in p and p["city"] == "Berlin", f"delete_payload {p}")
    client.clear_payload(name, points_selector=models.PointIdsList(points=[2]))
    check(client.retrieve(name, ids=[2])[0].payload == {}, "clear_payload")
    client.set_payload(name, payload={"flag": "x"}, points=models.FilterSelector(filter=rng))
    check(client.count(name, count_filter=models.Filter(must=[
        models.FieldCondition(key="flag", match=models.MatchValue(value="x"))])).count == 10, "set_payload by filter")
    expect_error(lambda: client.set_payload(name, payload={"a": 1}, points=[12345]), 404, "set_payload on a missing id")

    # Payload indexes.
    r = client.create_payload_index(name, field_name="city", field_schema=models.PayloadSchemaType.KEYWORD)
    check(r.status == models.UpdateStatus.COMPLETED, "create_payload_index")
    client.create_payload_index(name, field_name="n", field_schema="integer")
    schema = client.get_collection(name).payload_schema
    check(schema["city"].data_type == models.PayloadSchemaType.KEYWORD, f"payload schema {schema}")
    check(client.count(name, count_filter=london).count == 10, "count with an index")
    expect_error(lambda: client.count(name, count_filter=models.Filter(must=[
        models.FieldCondition(key="city", range=models.Range(gt=1))])), 400, "range on a keyword index")
    client.delete_payload_index(name, field_name="n")
    check("n" not in client.get_collection(name).payload_schema, "delete_payload_index")

    # Deletes.
    client.delete(name, points_selector=models.PointIdsList(points=[1, u]))
    client.delete(name, points_selector=models.FilterSelector(filter=models.Filter(must=[
        models.FieldCondition(key="city", match=models.MatchValue(value="Rome"))])))
    check(client.count(name).count == 30, f"count after deletes {client.count(name).count}")

    # Bad input: wrong dimension, unknown collection.
    expect_error(lambda: client.upsert(name, points=[models.PointStruct(id=77, vector=[1.0, 2.0])]), 400,
                 "wrong dimension")
    expect_error(lambda: client.query_points("no_such_collection", query=[1, 2, 3, 4]), 404, "unknown collection")
    check(client.count(name).count == 30, "nothing changed after rejected writes")

    # wait=False is acknowledged, then visible.
    r = client.upsert(name, points=[models.PointStruct(id=500, vector=[0, 0, 0, 1])], wait=False)
    check(r.status == models.UpdateStatus.ACKNOWLEDGED, f"wait=False status {r.status}")
    import time
    for _ in range(100):
        if client.retrieve(name, ids=[500]):
            break
        time.sleep(0.05)
    check(bool(client.retrieve(name, ids=[500])), "acknowledged write becomes visible")

    # Snapshots: create, list, recover by name and from the download URL, upload, delete.
    before = client.count(name).count
    snap = client.create_snapshot(name, wait=True)
    check(snap.name.endswith(".snapshot") and snap.size > 0, f"create_snapshot {snap}")
    check([s.name for s in client.list_snapshots(name)] == [snap.name], "list_snapshots")
    client.upsert(name, points=[models.PointStruct(id=900, vector=[1, 0, 0, 0])])
    check(client.count(name).count == before + 1, "a write after the snapshot")
    check(client.recover_snapshot(name, location=snap.name, wait=True), "recover_snapshot by name")
    check(client.count(name).count == before, "recovered to the snapshot")
    download = f"{URL}/collections/{name}/snapshots/{snap.name}"
    if not URL.startswith("https"):
        check(client.recover_snapshot(name + "_copy", location=download, api_key=KEY, wait=True),
              "recover from a URL")
        check(client.count(name + "_copy").count == before, "recovered copy")
        client.delete_collection(name + "_copy")
    import io
    import urllib.request
    req = urllib.request.Request(download, headers={"api-key": KEY} if KEY else {})
    if not URL.startswith("https"):
        tar = urllib.request.urlopen(req).read()
        check(len(tar) > 1024, "download")
        client.http.snapshots_api.recover_from_uploaded_snapshot(
            collection_name=name + "_up", wait=True, snapshot=io.BytesIO(tar))
        check(client.count(name + "_up").count == before, "uploaded snapshot")
        client.delete_collection(name + "_up")
    check(client.delete_snapshot(name, snap.name, wait=True), "delete_snapshot")
    check(client.list_snapshots(name) == [], "no snapshots left")

    # Quantization: int8 codes, sealed after 256 points (indexing_threshold 64 KB at 64-d) with
    # a graph (full_scan_threshold 10 KB: 40 points), so searches walk the codes and rescore;
    # per-query ignore / rescore / oversampling.
    qname = name + "_q"
    if client.collection_exists(qname):
        client.delete_collection(qname)
    check(client.create_collection(
        qname,
        vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE),
        quantization_config=models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True)),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=64),
        hnsw_config=models.HnswConfigDiff(full_scan_threshold=10),
    ), "create a quantized collection")
    qc = client.get_collection(qname).config.quantization_config
    check(isinstance(qc, models.ScalarQuantization) and abs(qc.scalar.quantile - 0.99) < 1e-6
          and qc.scalar.always_ram is True, f"quantization_config in the info: {qc!r}")
    import random
    rnd = random.Random(7)
    vecs = [[rnd.gauss(0.0, 1.0) for _ in range(64)] for _ in range(300)]
    client.upsert(qname, points=[models.PointStruct(id=i, vector=v) for i, v in enumerate(vecs)], wait=True)
    for _ in range(400):
        if (client.get_collection(qname).indexed_vectors_count or 0) >= 256:
            break
        time.sleep(0.05)
    indexed = client.get_collection(qname).indexed_vectors_count
    check(indexed >= 256, f"sealed with codes: indexed_vectors_count {indexed}")
    import json
    import urllib.request
    raw = urllib.request.Request(f"{URL}/collections/{qname}", headers={"api-key": KEY} if KEY else {})
    if not URL.startswith("https"):
        segments = json.load(urllib.request.urlopen(raw))["result"]["deftech"]["segments"]
        codes = [c for s in segments for c in s["components"] if c["name"] == "codes"]
        check(codes and codes[0]["mapped_bytes"] >= 256 * 64, f"codes reported per segment: {codes}")
    exact = client.query_points(qname, query=vecs[5], limit=5,
                                search_params=models.SearchParams(exact=True)).points
    for qp in [models.QuantizationSearchParams(rescore=True, oversampling=2.0),
               models.QuantizationSearchParams(ignore=True),
               models.QuantizationSearchParams(ignore=False, rescore=True)]:
        got = client.query_points(qname, query=vecs[5], limit=5,
                                  search_params=models.SearchParams(quantization=qp)).points
        check([h.id for h in got] == [h.id for h in exact], f"{qp}: {[h.id for h in got]} vs {[h.id for h in exact]}")
        check(all(abs(a.score - b.score) < 1e-5 for a, b in zip(got, exact)), f"{qp}: rescored scores are exact")
    expect_error(lambda: client.query_points(qname, query=vecs[5], limit=5, search_params=models.SearchParams(
        quantization=models.QuantizationSearchParams(oversampling=0.5))), 400, "oversampling below 1")
    # update_collection: the quantization changes (durably at once; the optimizer rewrites the
    # segments in the background), the other settings are fixed at creation.
    check(client.update_collection(qname, quantization_config=models.BinaryQuantization(
        binary=models.BinaryQuantizationConfig(always_ram=False))), "update_collection quantization")
    qc = client.get_collection(qname).config.quantization_config
    check(isinstance(qc, models.BinaryQuantization), f"quantization after the update: {qc!r}")
    if not URL.startswith("https"):
        for _ in range(400):
            segments = json.load(urllib.request.urlopen(raw))["result"]["deftech"]["segments"]
            codes = [c["mapped_bytes"] for s in segments if s["kind"] == "sealed"
                     for c in s["components"] if c["name"] == "codes"]
            if codes and all(b < 64 * 300 for b in codes):
                break
            time.sleep(0.05)
        check(codes and all(b < 64 * 300 for b in codes), f"segments rewritten with binary codes: {codes}")
    got = client.query_points(qname, query=vecs[5], limit=5, search_params=models.SearchParams(
        quantization=models.QuantizationSearchParams(oversampling=8.0))).points
    check(got[0].id == 5 and len({h.id for h in got} & {h.id for h in exact}) >= 4,
          f"binary search after the update {[h.id for h in got]} vs {[h.id for h in exact]}")
    check(client.update_collection(qname, quantization_config=models.Disabled.DISABLED), "quantization disabled")
    check(client.get_collection(qname).config.quantization_config is None, "no quantization after Disabled")
    e = expect_error(lambda: client.update_collection(qname, optimizers_config=models.OptimizersConfigDiff(
        indexing_threshold=10)), 501, "update_collection of a fixed setting")
    check(b"optimizers_config" in e.content and b"fixed at creation" in e.content, f"update refused: {e.content!r}")
    check(client.http.collections_api.update_collection(qname, update_collection=models.UpdateCollection()).result,
          "an update that changes nothing succeeds")
    expect_error(lambda: client.update_collection("no_such_collection", optimizers_config=models.OptimizersConfigDiff(
        indexing_threshold=10)), 404, "update of an unknown collection")
    client.delete_collection(qname)
    check(client.create_collection(
        qname,
        vectors_config=models.VectorParams(size=64, distance=models.Distance.DOT),
        quantization_config=models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=False)),
    ), "create a binary-quantized collection")
    qc = client.get_collection(qname).config.quantization_config
    check(isinstance(qc, models.BinaryQuantization) and not qc.binary.always_ram, f"binary config in the info: {qc!r}")
    client.delete_collection(qname)
    expect_error(lambda: client.create_collection(
        qname,
        vectors_config=models.VectorParams(size=64, distance=models.Distance.DOT),
        quantization_config=models.ProductQuantization(product=models.ProductQuantizationConfig(
            compression=models.CompressionRatio.X16)),
    ), 400, "product quantization")
    check(not client.collection_exists(qname), "no collection from a refused create")

    check(client.delete_collection(name), "delete_collection")
    check(not client.collection_exists(name), "deleted")
    incompatible = [w for w in caught if "incompatible" in str(w.message)]
    check(not incompatible, f"version warnings: {[str(w.message) for w in incompatible]}")
    print(f"qdrant-client suite: {checks} checks passed")


if __name__ == "__main__":
    main()
