#!/usr/bin/env python3
"""Cross-check metric-loss against pytorch-metric-learning's ContrastiveLoss.

With --normalize, --hinge linear, --distance euclidean and --reduction mean-nonzero,
metric-loss's batch mode is PML's ContrastiveLoss(pos_margin=p, neg_margin=m) (PML
normalises embeddings by default, uses a linear hinge and AvgNonZeroReducer). This script
evaluates both on the same seeded inputs, loss and gradient, and prints the differences.

Needs: numpy, torch, pytorch-metric-learning, and a built `metric-loss` binary.
Usage: python3 benches/compare_pml.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from pytorch_metric_learning.losses import ContrastiveLoss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    args = ap.parse_args()
    exe, device = args.exe, args.device
    torch.set_default_dtype(torch.float64)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for seed, (b, d, classes, p, m) in enumerate(
            [(64, 16, 8, 0.0, 1.0), (100, 32, 10, 0.3, 1.2), (33, 5, 3, 0.1, 0.9)]
        ):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((b, d)).astype(np.float32)
            labels = rng.integers(0, classes, b).astype(np.int64)
            xp, lp, gp = (os.path.join(tmp, f) for f in ("x.npy", "l.npy", "g.npy"))
            np.save(xp, x)
            np.save(lp, labels)
            out = subprocess.run(
                [exe, "eval", "--loss", "contrastive", "--embeddings", xp, "--labels", lp,
                 "--normalize", "--hinge", "linear", "--reduction", "mean-nonzero",
                 "--pos-margin", str(p), "--margin", str(m), "--device", device, "--grad", gp],
                check=True, capture_output=True, text=True,
            )
            ours = json.loads(out.stdout.strip().splitlines()[-1])
            grad = np.load(gp)
            xt = torch.tensor(x.astype(np.float64), requires_grad=True)
            loss = ContrastiveLoss(pos_margin=p, neg_margin=m)(xt, torch.tensor(labels))
            loss.backward()
            dl = abs(ours["loss"] - loss.item())
            dg = float(np.max(np.abs(grad - xt.grad.numpy())))
            gscale = float(np.max(np.abs(xt.grad.numpy())))
            worst = max(worst, dl / max(abs(loss.item()), 1e-12), dg / max(gscale, 1e-12))
            print(f"B={b:<4} D={d:<3} p={p} m={m}: loss metric-loss {ours['loss']:.9f} "
                  f"PML {loss.item():.9f} |diff| {dl:.2e}; grad max |diff| {dg:.2e} "
                  f"(max |grad| {gscale:.2e})")
    print(f"worst relative difference {worst:.2e}")
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
