#!/usr/bin/env python3
"""Cross-check metric-loss's retrieval metrics, k-NN and anomaly AUC against the peers.

`metric-loss retrieval` against pytorch-metric-learning's AccuracyCalculator (precision_at_1,
r_precision, mean_average_precision_at_r; its default k-NN, faiss IndexFlatL2), recall@k
against the same faiss search, `metric-loss knn` against faiss IndexFlatL2 row by row, and
`metric-loss score`'s roc_auc against scikit-learn's roc_auc_score. Sets: the demo's digits
test split (raw pixels / 16, the split drawn as examples/train/demo.rs draws it) against
itself and against the training split, and random labelled sets of a few thousand rows
(clustered, so that the metrics are far from 0 and 1), one with query classes the
reference lacks.

Needs: numpy, torch, pytorch-metric-learning, faiss-cpu, scikit-learn, and a built
`metric-loss` binary.
Usage: python3 benches/compare_retrieval.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile

import faiss
import numpy as np
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from sklearn.metrics import roc_auc_score

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class Rng:
    """metric_loss::testing::Rng (splitmix64)."""

    def __init__(self, seed):
        self.s = (seed ^ GOLDEN) & MASK

    def next(self):
        self.s = (self.s + GOLDEN) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)


def digits_split(root):
    """The demo's fixed split: test = the first 360 of a Fisher-Yates permutation."""
    raw = np.loadtxt(os.path.join(root, "data", "digits.csv"), delimiter=",", dtype=np.int64)
    x = (raw[:, :64] / 16.0).astype(np.float32)
    y = raw[:, 64]
    p = list(range(len(y)))
    rng = Rng(20_261_128)
    for i in range(len(p) - 1, 0, -1):
        j = rng.next() % (i + 1)
        p[i], p[j] = p[j], p[i]
    test, train = np.array(p[:360]), np.array(p[360:])
    return (x[test], y[test]), (x[train], y[train])


def clustered(seed, n, d, classes, spread):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * spread
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    return x, y.astype(np.int64)


def faiss_knn(q, r, k, exclude_self):
    index = faiss.IndexFlatL2(r.shape[1])
    index.add(r)
    d, i = index.search(q, k + int(exclude_self))
    return (d[:, 1:], i[:, 1:]) if exclude_self else (d, i)


def run(exe, args, tmp, arrays, outputs=()):
    """Runs `metric-loss args` with each name in `arrays` saved and each name in `outputs`
    a path in `tmp`; the JSON line and the paths."""
    paths = {name: os.path.join(tmp, f"{name}.npy") for name in outputs}
    for name, a in arrays.items():
        paths[name] = os.path.join(tmp, f"{name}.npy")
        np.save(paths[name], a)
    cmd = [exe] + [paths.get(a, a) if isinstance(a, str) else str(a) for a in args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tx, ty), (rx, ry) = digits_split(root)
    sets = [
        ("digits test split, itself", tx, ty, None, None),
        ("digits test split vs train split", tx, ty, rx, ry),
        ("random 3000x32, 20 classes, itself", *clustered(1, 3000, 32, 20, 0.5), None, None),
    ]
    qx, qy = clustered(2, 2000, 24, 30, 0.6)
    refx, refy = clustered(2, 4000, 24, 30, 0.6)
    refx, refy = refx[refy < 27], refy[refy < 27]  # classes 27..29 lone
    sets.append(("random 2000 vs 3600x24, 3 lone classes", qx, qy, refx, refy))
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
    )
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, y, r, rl in sets:
            k = 4
            flags = ["--embeddings", "x", "--labels", "y", "-k", k, "--device", a.device]
            arrays = {"x": x, "y": y}
            if r is not None:
                flags += ["--reference", "r", "--reference-labels", "rl"]
                arrays.update(r=r, rl=rl)
            ours, _ = run(exe_path(a.exe), ["retrieval"] + flags, tmp, arrays)
            if r is None:
                pml = calc.get_accuracy(x, y)
                _, idx = faiss_knn(x, x, k, True)
                ref_labels = y
            else:
                pml = calc.get_accuracy(x, y, r, rl, False)
                _, idx = faiss_knn(x, r, k, False)
                ref_labels = rl
            lone = ~np.isin(y, ref_labels) if r is not None else np.zeros(len(y), bool)
            hits = (ref_labels[idx] == y[:, None]).any(axis=1)[~lone]
            peer = {
                "precision_at_1": pml["precision_at_1"],
                "r_precision": pml["r_precision"],
                "map_at_r": pml["mean_average_precision_at_r"],
                "recall_at_k": float(hits.mean()),
            }
            diffs = {m: abs(ours[m] - peer[m]) for m in peer}
            worst = max(worst, *diffs.values())
            print(f"{name}: " + ", ".join(
                f"{m} {ours[m]:.6f} vs {peer[m]:.6f}" for m in peer
            ) + f"; max |diff| {max(diffs.values()):.2e}")
            # The neighbours themselves against faiss.
            ref = x if r is None else r
            knn_flags = ["--queries", "x", "--reference", "r", "-k", 10, "--indices", "i",
                         "--distances", "d", "--device", a.device]
            if r is None:
                knn_flags.append("--exclude-self")
            _, paths = run(exe_path(a.exe), ["knn"] + knn_flags, tmp, {"x": x, "r": ref},
                           ("i", "d"))
            mine, mine_d = np.load(paths["i"]), np.load(paths["d"])
            fd, fi = faiss_knn(x, ref, 10, r is None)
            same = float((mine == fi).mean())
            ddiff = float(np.abs(mine_d ** 2 - fd).max())
            print(f"  knn k=10 vs faiss IndexFlatL2: {same:.4%} of indices equal, "
                  f"max |d² diff| {ddiff:.2e}")
        # Anomaly scores: class 9 of the digits test split against the training split's
        # other classes.
        normal = rx[ry != 9]
        flags = (ty == 9).astype(np.int64)
        ours, paths = run(exe_path(a.exe), ["score", "--queries", "q", "--reference", "n", "-k", 5,
                                            "--flags", "f", "--scores", "s", "--device", a.device],
                          tmp, {"q": tx, "n": normal, "f": flags}, ("s",))
        d, _ = faiss_knn(tx, normal, 5, False)
        peer_auc = roc_auc_score(flags, np.sqrt(np.maximum(d[:, 4], 0)))
        worst = max(worst, abs(ours["roc_auc"] - peer_auc))
        print(f"anomaly AUC (digit 9 vs the rest, k=5): metric-loss {ours['roc_auc']:.6f}, "
              f"faiss + scikit-learn {peer_auc:.6f}")
    print(f"worst |difference| of a metric: {worst:.2e}")


def exe_path(p):
    return os.path.abspath(p)


if __name__ == "__main__":
    main()
