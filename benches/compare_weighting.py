#!/usr/bin/env python3
"""Cross-check metric-loss's Multi-Similarity and Circle against pytorch-metric-learning:
loss and dL/dX.

  multi-similarity  MultiSimilarityLoss(alpha, beta, base), and with --epsilon the pairs of
                    MultiSimilarityMiner(epsilon) first (loss(x, labels, miner(x, labels)))
  circle            CircleLoss(m, gamma)

PML runs in float64 (the reference) and in float32, on the f32-rounded inputs metric-loss
reads, with the options rounded to f32 as metric-loss holds them; metric-loss runs `eval`
(f32, on --device). For each value the script prints the
largest difference from the float64 reference relative to the largest reference value,
metric-loss's and PML's own float32 run's: "f32 precision" is metric-loss within 10x of
that (or 1e-5). The miner's comparisons are decisions: ε is moved up in steps of 1e-3
until every comparison is 1e-4 clear of a tie in float64, as metric-loss's tests do.
Needs numpy, torch, pytorch-metric-learning and a built `metric-loss` binary.

Usage: python3 benches/compare_weighting.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import CircleLoss, MultiSimilarityLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def clear_epsilon(x, labels, eps):
    """eps moved up until no miner comparison is within 1e-4 of a tie (float64)."""
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    s = xn @ xn.T
    same = labels[:, None] == labels[None, :]
    eye = np.eye(len(x), dtype=bool)
    max_neg = np.where(~same, s, -np.inf).max(axis=1, keepdims=True)
    min_pos = np.where(same & ~eye, s, np.inf).min(axis=1, keepdims=True)
    for _ in range(100):
        gaps = np.concatenate([
            np.abs(s - eps - max_neg)[same & ~eye],
            np.abs(s + eps - min_pos)[~same],
        ])
        gaps = gaps[np.isfinite(gaps)]
        if gaps.size == 0 or gaps.min() > 1e-4:
            return eps
        eps += 1e-3
    return eps


def pml(kind, opts, x, labels, dtype):
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    lt = torch.tensor(labels)
    if kind == "circle":
        loss = CircleLoss(m=opts["margin"], gamma=opts["gamma"])(xt, lt)
    else:
        fn = MultiSimilarityLoss(alpha=opts["alpha"], beta=opts["beta"], base=opts["base"])
        if opts.get("epsilon") is None:
            loss = fn(xt, lt)
        else:
            loss = fn(xt, lt, MultiSimilarityMiner(epsilon=opts["epsilon"])(xt, lt))
    if loss.requires_grad:
        loss.backward()
        grad = xt.grad.numpy()
    else:  # PML's zero loss: a constant
        grad = np.zeros_like(x)
    return [float(loss.detach()), grad]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", default="gpu")
    args = ap.parse_args()
    import pytorch_metric_learning

    print(f"pytorch-metric-learning {pytorch_metric_learning.__version__}, torch "
          f"{torch.__version__}, metric-loss --device {args.device}")
    ms = {"alpha": 2.0, "beta": 50.0, "base": 0.5}
    cases = [
        ("multi-similarity", ms),
        ("multi-similarity", {**ms, "epsilon": 0.1}),
        ("multi-similarity", {"alpha": 1.0, "beta": 10.0, "base": 0.2}),
        ("circle", {"margin": 0.4, "gamma": 80.0}),
        ("circle", {"margin": 0.25, "gamma": 256.0}),
    ]
    worst, failed = 0.0, False
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        for seed, (b, d, classes) in enumerate([(64, 16, 8), (130, 32, 10), (200, 64, 50),
                                                (33, 5, 3)]):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((b, d)).astype(np.float32)
            labels = rng.integers(0, classes, b).astype(np.int64)
            np.save(p("x.npy"), x)
            np.save(p("l.npy"), labels)
            x64 = x.astype(np.float64)
            for kind, opts in cases:
                opts = dict(opts)
                if opts.get("epsilon") is not None:
                    opts["epsilon"] = clear_epsilon(x64, labels, opts["epsilon"])
                # The options metric-loss holds: f32.
                opts = {k: float(np.float32(v)) for k, v in opts.items()}
                ref = pml(kind, opts, x64, labels, torch.float64)
                f32 = pml(kind, opts, x, labels, torch.float32)
                flags = ["eval", "--loss", kind, "--embeddings", p("x.npy"), "--labels",
                         p("l.npy"), "--grad", p("g.npy"), "--device", args.device]
                for k, v in opts.items():
                    if v is not None:
                        flags += [f"--{k}", repr(v)]
                out = subprocess.run([args.exe, *flags], check=True, capture_output=True,
                                     text=True)
                line = json.loads(out.stdout.strip().splitlines()[-1])
                ours = [line["loss"], np.load(p("g.npy"))]
                cells = []
                for what, m, t, r in zip(["loss", "dX"], ours, f32, ref):
                    d_ours, d_f32 = rel(m, r), rel(t, r)
                    worst = max(worst, d_ours)
                    failed |= d_ours > max(10 * d_f32, 1e-5)
                    cells.append(f"{what} {d_ours:.1e} ({d_f32:.1e})")
                name = f"{kind} " + " ".join(f"{k}={v:g}" for k, v in opts.items())
                print(f"B={b:4} D={d:3} {name:44} loss {line['loss']:.7f} / {ref[0]:.7f} | "
                      + " ".join(cells))
    print("columns: metric-loss's relative difference from PML in float64 (PML's own float32 "
          f"run's); largest {worst:.1e}")
    if failed:
        raise SystemExit("metric-loss and PML disagree beyond f32 precision")


if __name__ == "__main__":
    main()
