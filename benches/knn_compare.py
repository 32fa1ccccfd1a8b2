#!/usr/bin/env python3
"""Exact k-NN side by side on the same inputs, in one run: `metric-loss knn` (its own
process, timed from outside with its peak resident memory read by /usr/bin/time -v),
faiss-cpu's exact IndexFlatL2, and torch.cdist + topk over query chunks (the whole N×M
distance matrix does not fit: 16 GiB at 65,536²). Every method's neighbours are compared
with the others'.

Inputs: N queries and M references of standard normals in D dimensions (seeded), float32;
no structure a method could exploit. Times are wall-clock seconds of the search alone for
faiss and torch (inputs in memory), and of the whole `metric-loss knn` process (reading the
.npy files, the device set-up and the shader builds included) beside its kernel sweep.

Usage: python3 benches/knn_compare.py [--queries 65536] [--references 65536] [--dim 128]
       [--k 10] [--exe target/release/metric-loss]
Needs numpy, torch, faiss-cpu.
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

import faiss
import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=65536)
    ap.add_argument("--references", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=2048, help="torch: queries per cdist")
    ap.add_argument("--exe", default="target/release/metric-loss")
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    q = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
    r = rng.standard_normal((a.references, a.dim), dtype=np.float32)
    threads = torch.get_num_threads()
    print(f"N={a.queries} M={a.references} D={a.dim} k={a.k}; torch {torch.__version__} "
          f"({threads} threads), faiss {faiss.__version__} ({faiss.omp_get_max_threads()} "
          f"threads)")
    with tempfile.TemporaryDirectory() as tmp:
        qp, rp, ip, dp = (os.path.join(tmp, f) for f in ("q.npy", "r.npy", "i.npy", "d.npy"))
        np.save(qp, q)
        np.save(rp, r)
        cmd = ["/usr/bin/time", "-v", os.path.abspath(a.exe), "knn", "--queries", qp,
               "--reference", rp, "-k", str(a.k), "--indices", ip, "--distances", dp]
        t = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        ours_s = time.perf_counter() - t
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)[1])
        info = json.loads(out.stdout.strip().splitlines()[-1])
        ours_i, ours_d = np.load(ip), np.load(dp)
    print(f"metric-loss knn   {ours_s:9.2f} s   peak RSS {rss / 1024:.0f} MiB "
          f"(inputs {(q.nbytes + r.nbytes) / 2**20:.0f} MiB)   {info['device']}")

    index = faiss.IndexFlatL2(a.dim)
    index.add(r)
    t = time.perf_counter()
    fd, fi = index.search(q, a.k)
    faiss_s = time.perf_counter() - t
    print(f"faiss IndexFlatL2 {faiss_s:9.2f} s   ratio metric-loss/faiss {ours_s / faiss_s:.2f}")

    qt, rt = torch.from_numpy(q), torch.from_numpy(r)
    ti = np.empty((a.queries, a.k), dtype=np.int64)
    td = np.empty((a.queries, a.k), dtype=np.float32)
    t = time.perf_counter()
    with torch.no_grad():
        for s in range(0, a.queries, a.chunk):
            d = torch.cdist(qt[s:s + a.chunk], rt)
            v, i = torch.topk(d, a.k, dim=1, largest=False)
            td[s:s + a.chunk], ti[s:s + a.chunk] = v.numpy(), i.numpy()
    torch_s = time.perf_counter() - t
    print(f"torch cdist+topk  {torch_s:9.2f} s   ratio metric-loss/torch {ours_s / torch_s:.2f}"
          f"   (chunks of {a.chunk} queries: {a.chunk * a.references * 4 / 2**20:.0f} MiB "
          f"each)")

    for name, (i, d) in [("faiss", (fi, np.sqrt(np.maximum(fd, 0)))), ("torch", (ti, td))]:
        same = float((ours_i == i).mean())
        sets = float(np.mean([len(set(x) & set(y)) for x, y in zip(ours_i, i)]) / a.k)
        print(f"neighbours equal to {name}'s: {same:.4%} position by position, "
              f"{sets:.4%} as sets; max |distance diff| {np.abs(ours_d - d).max():.2e}")


if __name__ == "__main__":
    main()
