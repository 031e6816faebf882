#!/usr/bin/env python3
"""Runs the C++ peers, hnswlib and faiss (IndexHNSWFlat), on exactly the files and parameters
the Rust harness (`ann`) wrote, and prints the same table.

    python3 benches/peers.py --dataset clustered --n 1000000 --dim 128 [same options as ann]

Install once: python3 -m pip install hnswlib faiss-cpu numpy
"""
import argparse
import os
import resource
import sys
import threading
import time

import numpy as np


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="clustered")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construct", type=int, default=200)
    p.add_argument("--ef", default="16,32,64,128,256")
    p.add_argument("--engines", default="hnswlib,faiss")
    p.add_argument("--metric", default="l2")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    a, _ = p.parse_known_args()
    # The harness' --engines lists Rust engines; keep only peers here.
    a.engines = [e for e in a.engines.split(",") if e in ("hnswlib", "faiss")] or ["hnswlib", "faiss"]
    a.efs = [int(e) for e in a.ef.split(",")]
    return a


def set_dir(a):
    kind = a.dataset.replace(":", "_").replace("/", "_").replace(".", "_")
    name = f"{kind}-{a.n}x{a.dim}-q{a.queries}-{a.metric}-s{a.seed}"
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench-data")
    return os.path.join(os.environ.get("DEFTECH_BENCH_DATA", root), name)


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    rows = raw.reshape(-1, dim + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def resident_bytes():
    anon = file_ = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith("RssFile:"):
                file_ = int(line.split()[1]) * 1024
    return anon + file_


def recall(found, gt, k):
    hits = 0
    for row, truth in zip(found, gt):
        t = set(truth[:k].tolist())
        hits += sum(1 for x in row[:k] if x in t)
    return hits / (len(found) * k)


def measure(search_batch, queries, threads, min_seconds=1.5):
    """QPS of batch searches over all queries with `threads` threads, whole passes."""
    first = search_batch(queries, 1)
    start = time.perf_counter()
    done = 0
    while True:
        search_batch(queries, threads)
        done += len(queries)
        if time.perf_counter() - start >= min_seconds:
            break
    return done / (time.perf_counter() - start), first


def main():
    a = parse()
    d = set_dir(a)
    base = read_vecs(os.path.join(d, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(d, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(d, "gt.ivecs"), np.int32)
    threads = os.cpu_count() or 1
    print(f"data set {d}: {base.shape[0]} x {base.shape[1]} base, {len(queries)} queries; "
          f"m = {a.m}, ef_construct = {a.ef_construct}, {threads} threads", file=sys.stderr)
    space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[a.metric]
    rows = []
    for engine in a.engines:
        before = resident_bytes()
        if engine == "hnswlib":
            import hnswlib
            index = hnswlib.Index(space=space, dim=base.shape[1])
            t = time.perf_counter()
            index.init_index(max_elements=base.shape[0], M=a.m, ef_construction=a.ef_construct, random_seed=a.seed)
            index.add_items(base, np.arange(base.shape[0]), num_threads=threads)
            build = time.perf_counter() - t

            def set_ef(ef):
                index.set_ef(ef)

            def search(q, nthreads):
                labels, _ = index.knn_query(q, k=a.k, num_threads=nthreads)
                return labels
        else:
            import faiss
            metric = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
            index = faiss.IndexHNSWFlat(base.shape[1], a.m, metric)
            index.hnsw.efConstruction = a.ef_construct
            faiss.omp_set_num_threads(threads)
            t = time.perf_counter()
            index.add(base)
            build = time.perf_counter() - t

            def set_ef(ef):
                index.hnsw.efSearch = ef

            def search(q, nthreads):
                faiss.omp_set_num_threads(nthreads)
                _, labels = index.search(q, a.k)
                return labels
        print(f"{engine}: built in {build:.1f} s", file=sys.stderr)
        resident = (resident_bytes() - before) / base.shape[0]
        for ef in a.efs:
            set_ef(max(ef, a.k))
            qps1, found = measure(search, queries, 1)
            qps_all, _ = measure(search, queries, threads)
            rows.append((engine, build, resident, ef, recall(found, gt, a.k), qps1, qps_all))
        del index
    print(f"\n{base.shape[0]} x {base.shape[1]} ({a.dataset}), {len(queries)} queries, k = {a.k}, "
          f"m = {a.m}, ef_construct = {a.ef_construct}")
    print(f"{'engine':<10} | {'build s':>9} | {'graph B/pt':>10} | {'resident B/pt':>13} | {'ef':>5} | "
          f"{'recall@10':>9} | {'QPS 1 thr':>10} | {f'QPS {threads} thr':>10}")
    for e, build, resident, ef, r, q1, qa in rows:
        graph = 4 * (1 + 2 * a.m) if e == "hnswlib" else float("nan")
        print(f"{e:<10} | {build:>9.1f} | {graph:>10.1f} | {resident:>13.1f} | {ef:>5} | {r:>9.4f} | "
              f"{q1:>10.0f} | {qa:>10.0f}")
    print("(hnswlib graph B/pt: its level-0 link block per point, upper levels not counted;"
          " resident B/pt: growth of process memory from building, vectors included)")


if __name__ == "__main__":
    main()
