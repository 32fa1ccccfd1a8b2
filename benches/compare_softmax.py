#!/usr/bin/env python3
"""Cross-check metric-loss's softmax-contrastive losses against PyTorch and
pytorch-metric-learning: loss, gradients and dL/dtau.

  ntxent  pytorch_metric_learning.losses.NTXentLoss(temperature) and the definition written
          in torch (softplus(logsumexp over negatives - z_ap), mean over positive pairs).
          PML adds 1e-16 inside its log (c_f.small_val), far below these tolerances.
  supcon  pytorch_metric_learning.losses.SupConLoss(temperature) and Khosla et al.'s L_out in
          torch. PML averages over anchors with a non-zero loss (AvgNonZeroReducer) and
          returns 0 when the batch lacks a positive or a negative pair; the batches here have
          both, and every anchor has a positive, so the two agree.
  clip    (cross_entropy(S, arange) + cross_entropy(S.T, arange)) / 2 in torch, S = A_n B_n^T / t.
dL/dtau comes from torch autograd with tau a tensor (PML takes tau as a float).
Everything in float64 on the CPU. Needs numpy, torch, pytorch-metric-learning and a built
`metric-loss` binary.

Usage: python3 benches/compare_softmax.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F


def masks(labels):
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    return same & ~eye, ~same, eye


def ntxent(x, labels, t):
    xn = F.normalize(x, dim=1, eps=1e-12)
    z = xn @ xn.T / t
    pos, neg, _ = masks(labels)
    lse = torch.logsumexp(z.masked_fill(~neg, float("-inf")), dim=1)
    a, p = torch.nonzero(pos, as_tuple=True)
    return F.softplus(lse[a] - z[a, p]).mean()


def supcon(x, labels, t):
    xn = F.normalize(x, dim=1, eps=1e-12)
    z = xn @ xn.T / t
    pos, _, eye = masks(labels)
    lse = torch.logsumexp(z.masked_fill(eye, float("-inf")), dim=1)
    npos = pos.sum(1)
    mean_pos = (z * pos).sum(1) / npos.clamp(min=1)
    return (lse - mean_pos)[npos > 0].mean()


def clip(a, b, t):
    s = F.normalize(a, dim=1, eps=1e-12) @ F.normalize(b, dim=1, eps=1e-12).T / t
    target = torch.arange(len(a))
    return 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.T, target))


def metric_loss(exe, args):
    out = subprocess.run([exe, "eval", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", default="gpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=16)
    args = ap.parse_args()
    from pytorch_metric_learning.losses import NTXentLoss, SupConLoss

    rng = np.random.default_rng(0)
    b, d = args.batch, args.dim
    x = rng.standard_normal((b, d)).astype(np.float32)
    y = rng.standard_normal((b, d)).astype(np.float32)
    labels = rng.integers(0, b // 8, b).astype(np.int64)
    worst = {}
    with tempfile.TemporaryDirectory() as tmp:
        p = {k: os.path.join(tmp, k + ".npy") for k in ["x", "y", "l", "g", "ga", "gb"]}
        np.save(p["x"], x)
        np.save(p["y"], y)
        np.save(p["l"], labels)
        lt = torch.tensor(labels)
        for t in [0.07, 0.1, 0.5]:
            for name, fn, pml in [("ntxent", ntxent, NTXentLoss), ("supcon", supcon, SupConLoss)]:
                ml = metric_loss(exe := args.exe, [
                    "--loss", name, "--embeddings", p["x"], "--labels", p["l"], "--temperature",
                    str(t), "--grad", p["g"], "--device", args.device])
                g_ml = np.load(p["g"])
                for ref in ["torch", "pml"]:
                    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
                    tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
                    loss = fn(xt, lt, tt) if ref == "torch" else pml(temperature=t)(xt, lt)
                    loss.backward()
                    errs = [abs(ml["loss"] - loss.item()) / abs(loss.item()), rel(g_ml, xt.grad)]
                    if ref == "torch":
                        errs.append(abs(ml["grad_temperature"] - tt.grad.item())
                                    / abs(tt.grad.item()))
                    key = f"{name} vs {'PML ' + pml.__name__ if ref == 'pml' else 'torch'}"
                    worst[key] = max(worst.get(key, 0.0), *errs)
                    print(f"{name:6} tau {t:<4} vs {ref:5}: loss {ml['loss']:.7f} / "
                          f"{loss.item():.7f}, worst rel diff {max(errs):.2e}")
            ml = metric_loss(args.exe, [
                "--loss", "clip", "--a", p["x"], "--b", p["y"], "--temperature", str(t),
                "--grad-a", p["ga"], "--grad-b", p["gb"], "--device", args.device])
            at = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            bt = torch.tensor(y, dtype=torch.float64, requires_grad=True)
            tt = torch.tensor(t, dtype=torch.float64, requires_grad=True)
            loss = clip(at, bt, tt)
            loss.backward()
            errs = [abs(ml["loss"] - loss.item()) / abs(loss.item()),
                    rel(np.load(p["ga"]), at.grad), rel(np.load(p["gb"]), bt.grad),
                    abs(ml["grad_temperature"] - tt.grad.item()) / abs(tt.grad.item())]
            worst["clip vs torch cross_entropy"] = max(worst.get("clip vs torch cross_entropy",
                                                                 0.0), *errs)
            print(f"clip   tau {t:<4} vs torch: loss {ml['loss']:.7f} / {loss.item():.7f}, "
                  f"worst rel diff {max(errs):.2e}")
    print(f"B={b} D={d}, device {args.device}, torch {torch.__version__}")
    for k, v in worst.items():
        print(f"  {k:36} worst relative difference {v:.2e}")


if __name__ == "__main__":
    main()
