#!/usr/bin/env python3
"""Cross-check metric-loss's triplet losses against PyTorch and pytorch-metric-learning.

  explicit  torch.nn.TripletMarginLoss(margin, p=2, swap) (reduction mean). PyTorch adds
            eps = 1e-6 to every difference inside the norm, so the two differ by O(1e-6).
  all       pytorch_metric_learning.losses.TripletMarginLoss(margin) with metric-loss's
            --normalize --reduction mean-nonzero (PML normalises by default and averages the
            non-zero terms of every triplet).
  hard      batch-hard written directly in torch (cdist, masks, max/min), sum reduction.
  semihard  TensorFlow Addons' rule written directly in torch (for each positive pair, the
            nearest negative farther than the positive, else the farthest negative), mean.

Needs: numpy, torch, pytorch-metric-learning, and a built `metric-loss` binary.
Usage: python3 benches/compare_triplet.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch


def run(exe, args, grads):
    out = subprocess.run([exe, "eval", "--loss", "triplet", *args],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), [np.load(g) for g in grads]


def masks(labels):
    """(positive, negative) pair masks of a label vector: same label and not the row itself,
    and a different label."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def batch_hard_sum(x, labels, m):
    d = torch.cdist(x, x)
    pos, neg = masks(labels)
    valid = pos.any(1) & neg.any(1)
    hp = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values
    hn = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
    return torch.relu(hp - hn + m)[valid].sum()


def semihard_mean(x, labels, m):
    d = torch.cdist(x, x)
    pos, neg = masks(labels)
    terms = []
    for a in range(len(labels)):
        if not neg[a].any():
            continue
        dn = d[a][neg[a]]
        for p in torch.nonzero(pos[a]).flatten():
            above = dn[dn > d[a, p]]
            chosen = above.min() if len(above) else dn.max()
            terms.append(torch.relu(d[a, p] - chosen + m))
    return torch.stack(terms).mean() if terms else x.sum() * 0.0


def compare(name, ours, ref_loss, grads, ref_grads):
    dl = abs(ours["loss"] - ref_loss)
    worst = dl / max(abs(ref_loss), 1e-12)
    line = f"{name:<38} loss metric-loss {ours['loss']:.9f} reference {ref_loss:.9f} |diff| {dl:.1e}"
    for g, r in zip(grads, ref_grads):
        scale = float(np.max(np.abs(r))) or 1.0
        dg = float(np.max(np.abs(g - r)))
        worst = max(worst, dg / scale)
        line += f"; grad |diff| {dg:.1e} (max {scale:.1e})"
    print(line)
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    args = ap.parse_args()
    from pytorch_metric_learning.losses import TripletMarginLoss as PmlTriplet
    torch.set_default_dtype(torch.float64)
    worst_mined, worst_explicit = 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        f = lambda name: os.path.join(tmp, name)
        for seed, (b, d, classes, m) in enumerate([(64, 16, 8, 0.2), (100, 8, 10, 0.5), (33, 5, 3, 1.0)]):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((b, d)).astype(np.float32)
            labels = rng.integers(0, classes, b).astype(np.int64)
            np.save(f("x.npy"), x)
            np.save(f("l.npy"), labels)
            lt = torch.tensor(labels)
            common = ["--embeddings", f("x.npy"), "--labels", f("l.npy"), "--margin", str(m),
                      "--device", args.device, "--grad", f("g.npy")]
            cases = [
                ("all (PML TripletMarginLoss)", ["--mining", "all", "--normalize"],
                 lambda xt: PmlTriplet(margin=m)(xt, lt)),
                ("hard (torch batch-hard, sum)", ["--mining", "hard", "--reduction", "sum"],
                 lambda xt: batch_hard_sum(xt, lt, m)),
                ("semihard (torch, TF Addons rule)", ["--mining", "semihard"],
                 lambda xt: semihard_mean(xt, lt, m)),
            ]
            for name, extra, reference in cases:
                ours, grads = run(args.exe, common + extra, [f("g.npy")])
                xt = torch.tensor(x.astype(np.float64), requires_grad=True)
                loss = reference(xt)
                loss.backward()
                worst_mined = max(worst_mined, compare(f"B={b} D={d} {name}", ours, loss.item(),
                                                       grads, [xt.grad.numpy()]))
            # Explicit triplets against torch.nn.TripletMarginLoss.
            t = [rng.standard_normal((b, d)).astype(np.float32) for _ in range(3)]
            for k, name in enumerate("apn"):
                np.save(f(f"{name}.npy"), t[k])
            for swap in [False, True]:
                extra = ["--swap"] if swap else []
                ours, grads = run(args.exe, [
                    "--anchor", f("a.npy"), "--positive", f("p.npy"), "--negative", f("n.npy"),
                    "--margin", str(m), "--device", args.device, *extra,
                    "--grad-anchor", f("ga.npy"), "--grad-positive", f("gp.npy"),
                    "--grad-negative", f("gn.npy")], [f("ga.npy"), f("gp.npy"), f("gn.npy")])
                ts = [torch.tensor(v.astype(np.float64), requires_grad=True) for v in t]
                loss = torch.nn.TripletMarginLoss(margin=m, p=2, swap=swap)(*ts)
                loss.backward()
                worst_explicit = max(worst_explicit, compare(
                    f"N={b} D={d} explicit swap={swap} (torch)", ours, loss.item(), grads,
                    [v.grad.numpy() for v in ts]))
    print(f"worst relative difference: mined {worst_mined:.2e}, explicit {worst_explicit:.2e} "
          f"(PyTorch's eps = 1e-6 inside the norm)")
    sys.exit(0 if worst_mined < 1e-4 and worst_explicit < 1e-4 else 1)


if __name__ == "__main__":
    main()
