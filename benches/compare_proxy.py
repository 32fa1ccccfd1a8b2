#!/usr/bin/env python3
"""Cross-check metric-loss's ArcFace, CosFace and sub-center ArcFace against
pytorch-metric-learning: loss, dL/dX and dL/dW.

PML's ArcFaceLoss(num_classes=C, embedding_size=D, margin, scale), CosFaceLoss(...) and
SubCenterArcFaceLoss(..., sub_centers=K) with their W (D x C·K) set to the transpose of the
class weights metric-loss reads (C·K x D, rows cK .. cK + K - 1 class c's), the
loss called on (x, class indices), autograd for x and W; in float64 (the reference) and in
float32, on the f32-rounded inputs and options metric-loss holds. metric-loss runs `eval`
(f32, on --device). For each value the script prints the largest difference from the
float64 reference relative to the largest reference value, metric-loss's and PML's own
float32 run's: "f32 precision" is metric-loss within 10x of that (or 1e-5). Inputs include
queries near their class's weights (c ≈ 0.99, as a trained model gives; not on them: at
c = 1 PML's acos has an infinite slope) and a query opposite its class (past ArcFace's
branch at θ = π − m). With sub-centres, queries whose two largest cosines with a class's
sub-centres are within 1e-5 are drawn again (which one wins is a decision that rounding may
flip, in PML's float32 as in metric-loss).
Needs numpy, torch, pytorch-metric-learning and a built `metric-loss` binary.

Usage: python3 benches/compare_proxy.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
from pytorch_metric_learning.losses import ArcFaceLoss, CosFaceLoss, SubCenterArcFaceLoss


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def pml(kind, margin, scale, k, x, labels, w, dtype):
    if kind == "subcenter-arcface":
        fn = SubCenterArcFaceLoss(num_classes=w.shape[0] // k, embedding_size=w.shape[1],
                                  margin=margin, scale=scale, sub_centers=k)
    else:
        cls = ArcFaceLoss if kind == "arcface" else CosFaceLoss
        fn = cls(num_classes=w.shape[0], embedding_size=w.shape[1], margin=margin, scale=scale)
    fn.W.data = torch.tensor(w.T.copy(), dtype=dtype)
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    loss = fn(xt, torch.tensor(labels))
    loss.backward()
    return [loss.item(), xt.grad.numpy(), fn.W.grad.numpy().T]


def clear_of_ties(rng, x, w, k, gap=1e-5):
    """Redraws the rows of x whose two largest cosines with some class's k sub-centres are
    within `gap`."""
    if k == 1:
        return x
    wn = w.astype(np.float64) / np.linalg.norm(w.astype(np.float64), axis=1, keepdims=True)
    while True:
        xn = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        cos = np.sort((xn @ wn.T).reshape(len(x), -1, k), axis=2)
        tied = np.nonzero((cos[:, :, -1] - cos[:, :, -2] < gap).any(axis=1))[0]
        if len(tied) == 0:
            return x
        x[tied] = rng.standard_normal((len(tied), x.shape[1])).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", default="gpu")
    args = ap.parse_args()
    import pytorch_metric_learning

    print(f"pytorch-metric-learning {pytorch_metric_learning.__version__}, torch "
          f"{torch.__version__}, metric-loss --device {args.device}")
    worst, failed = 0.0, False
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        cases = [("arcface", 28.6, 64.0, 1), ("cosface", 0.35, 64.0, 1),
                 ("arcface", 10.0, 4.0, 1), ("cosface", 0.2, 2.0, 1),
                 ("subcenter-arcface", 28.6, 64.0, 3), ("subcenter-arcface", 10.0, 4.0, 2)]
        for seed, (b, c, d) in enumerate([(64, 10, 16), (130, 1000, 32), (33, 5, 5)]):
            for kind, margin, scale, k in cases:
                rng = np.random.default_rng(seed)
                x = rng.standard_normal((b, d)).astype(np.float32)
                w = rng.standard_normal((c * k, d)).astype(np.float32)
                labels = rng.integers(0, c, b).astype(np.int64)
                x = clear_of_ties(rng, x, w, k)
                # A few queries near a sub-centre of their class (a trained model), one
                # opposite it.
                x[:4] = w[labels[:4] * k] + 0.05 * x[:4]
                x[4] = -w[labels[4] * k]
                if k > 1:
                    x[:5] = clear_of_ties(rng, x[:5], w, k)
                np.save(p("x.npy"), x)
                np.save(p("w.npy"), w)
                np.save(p("l.npy"), labels)
                margin, scale = float(np.float32(margin)), float(np.float32(scale))
                ref = pml(kind, margin, scale, k, x.astype(np.float64), labels,
                          w.astype(np.float64), torch.float64)
                f32 = pml(kind, margin, scale, k, x, labels, w, torch.float32)
                flags = ["eval", "--loss", kind, "--embeddings", p("x.npy"), "--labels",
                         p("l.npy"), "--weights", p("w.npy"), "--margin", repr(margin),
                         "--scale", repr(scale), "--grad", p("g.npy"), "--grad-weights",
                         p("gw.npy"), "--device", args.device]
                if k > 1:
                    flags += ["--sub-centers", str(k)]
                out = subprocess.run([args.exe, *flags], check=True, capture_output=True,
                                     text=True)
                line = json.loads(out.stdout.strip().splitlines()[-1])
                ours = [line["loss"], np.load(p("g.npy")), np.load(p("gw.npy"))]
                cells = []
                for what, m, t, r in zip(["loss", "dX", "dW"], ours, f32, ref):
                    d_ours, d_f32 = rel(m, r), rel(t, r)
                    worst = max(worst, d_ours)
                    failed |= d_ours > max(10 * d_f32, 1e-5)
                    cells.append(f"{what} {d_ours:.1e} ({d_f32:.1e})")
                name = kind if k == 1 else f"{kind} K={k}"
                print(f"B={b:4} C={c:5} D={d:3} {name} m={margin:<5g} s={scale:<3g} "
                      f"loss {line['loss']:.7f} / {ref[0]:.7f} | " + " ".join(cells))
    print("columns: metric-loss's relative difference from PML in float64 (PML's own float32 "
          f"run's); largest {worst:.1e}")
    if failed:
        raise SystemExit("metric-loss and PML disagree beyond f32 precision")


if __name__ == "__main__":
    main()
