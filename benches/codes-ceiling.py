"""How good can a search on binary codes be, before any graph: scores every point of a data set
by the codes' estimate of q·x and reports how many of each query's exact top 10 are within the
best 10·x by the estimate (x = 1, 2, 4, 8, 16). The graph walk can only lose from there.

Compares the first binary codes (bits of x_j > mu_j in the data's own basis, weighted by each
dimension's mean absolute deviation) with the rotated ones the engine writes now (RaBitQ's
estimator q.mu + f (Pq).s on a random rotation P: dense, or 1 and 3 rounds of sign flip +
Walsh-Hadamard as in quantization/rotation.rs).

Usage: python3 benches/codes-ceiling.py bench-data/embeddings-1000000x1024-q1000-cosine-s1 [N]
(the data folders the `ann` harness writes; cosine, 200 queries; 1M x 1024 needs ~6 GB).
"""
import sys

import numpy as np


def fvecs(p):
    a = np.memmap(p, dtype=np.int32, mode="r")
    d = a[0]
    return np.asarray(a.view(np.float32).reshape(-1, d + 1)[:, 1:])


def ivecs(p):
    a = np.fromfile(p, dtype=np.int32)
    return a.reshape(-1, a[0] + 1)[:, 1:]


def hadamard(n):
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def main():
    folder = sys.argv[1].rstrip("/") + "/"
    base = fvecs(folder + "base.fvecs")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else len(base)
    x = base[:n].copy()
    q = fvecs(folder + "query.fvecs")[:200].copy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    d = x.shape[1]
    if n == len(base):
        gt = ivecs(folder + "gt.ivecs")[:200, :10]
    else:
        gt = np.argsort(-(q @ x.T), axis=1)[:, :10]

    def report(name, est):
        out = []
        for over in (1, 2, 4, 8, 16):
            top = np.argpartition(-est, 10 * over, axis=1)[:, : 10 * over]
            hits = [len(set(gt[i]).intersection(top[i])) / 10 for i in range(len(gt))]
            out.append(f"x{over}: {np.mean(hits):.3f}")
        print(f"{name:32} {'  '.join(out)}", flush=True)

    mu = x.mean(0)
    x -= mu  # in place: the offsets from the mean, without another copy of the data
    q_mu = (q @ mu)[:, None]
    dev = np.abs(x).mean(0)
    one, minus = np.float32(1.0), np.float32(-1.0)
    chunk = 1 << 16  # rows at a time: 1M x 1024 would not fit three more copies in 24 GB

    def estimate(codes):
        """q.mu + the estimate of q.r, filled a chunk of points at a time by `codes(rows)`,
        which returns (query weights, signs of the chunk, per-point factor)."""
        est = np.empty((len(q), n), dtype=np.float32)
        for i in range(0, n, chunk):
            weights, signs, factor = codes(x[i : i + chunk])
            est[:, i : i + len(signs)] = q_mu + (weights @ signs.T) * factor
        return est

    # The first codes: bits of x_j > mu_j, each dimension weighted by its mean |x_j - mu_j|.
    report(
        "data basis, weighted",
        estimate(lambda r: (q * dev, np.where(r > 0, one, minus), np.float32(1.0))),
    )

    rng = np.random.default_rng(1)
    dense, _ = np.linalg.qr(rng.standard_normal((d, d)).astype(np.float32))
    rotations = [("dense random rotation", dense)]
    h = hadamard(d)
    for rounds in (1, 3):
        p = np.eye(d, dtype=np.float32)
        for _ in range(rounds):
            p = p @ (rng.choice([-1.0, 1.0], d).astype(np.float32)[:, None] * h)
        rotations.append((f"Hadamard x{rounds}", p))
    for name, p in rotations:
        qp = q @ p

        def rotated(r, p=p, qp=qp):
            y = r @ p
            factor = np.einsum("ij,ij->i", y, y) / np.abs(y).sum(1)
            return qp, np.where(y > 0, one, minus), factor

        report(name, estimate(rotated))


if __name__ == "__main__":
    main()
