#!/usr/bin/env python3
"""Triplet half of benches/gpu.sh: metric-loss's mined triplet losses against PyTorch.

For each batch size B (D = 128 by default): Gaussian rows, L2-normalised, labels uniform over
B/8 classes, margin 1. Times forward + backward per call (median of --repeat after one
warm-up) of
  * metric-loss `bench --loss triplet --mining M --json` on the saved inputs: end to end
    (upload and readback included) and kernel-only (GPU timestamps);
  * the same function in plain PyTorch, written to be fast:
      hard      cdist, masked max / min per row, mean over anchors with a positive and a
                negative;
      semihard  cdist, negatives sorted per row, searchsorted for each positive pair's
                nearest farther negative (else the farthest), mean over positive pairs;
      all       pytorch-metric-learning's TripletMarginLoss (normalised embeddings, mean of
                the non-zero terms), against metric-loss with --normalize; only for
                B <= --all-max (PML lists every triplet).
Tensors are on the device before timing, TF32 is off, nothing is compiled. OOM is reported.
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import torch

from compare_triplet import masks
from gpu_compare import fmt, inputs, probe, ratio, timed


def batch_hard(x, labels, m):
    d = torch.cdist(x, x)
    pos, neg = masks(labels)
    valid = pos.any(1) & neg.any(1)
    hp = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values
    hn = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values
    return torch.relu(hp - hn + m)[valid].mean()


def semihard(x, labels, m):
    d = torch.cdist(x, x)
    pos, neg = masks(labels)
    n_neg = neg.sum(1)
    sorted_d, order = torch.sort(torch.where(neg, d, torch.full_like(d, float("inf"))), dim=1,
                                 stable=True)
    a, p = torch.nonzero(pos & (n_neg > 0)[:, None], as_tuple=True)
    dap = d[a, p]
    at = torch.searchsorted(sorted_d[a], dap.detach()[:, None], right=True).squeeze(1)
    last = n_neg[a] - 1
    k = torch.where(at < n_neg[a], at, last)
    dan = d[a, order[a, k]]
    return torch.relu(dap - dan + m).mean()


def metric_loss(exe, x, labels, mining, margin, repeat, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        xp, lp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "l.npy")
        np.save(xp, x)
        np.save(lp, labels)
        out = subprocess.run(
            [exe, "bench", "--loss", "triplet", "--mining", mining, "--embeddings", xp,
             "--labels", lp, "--margin", str(margin), "--repeat", str(repeat), "--json"],
            capture_output=True, text=True)
        ev = subprocess.run(
            [exe, "eval", "--loss", "triplet", "--mining", mining, "--embeddings", xp,
             "--labels", lp, "--margin", str(margin), *extra], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"metric-loss failed at B={len(labels)}: {out.stderr.strip()[-300:]}")
        return {"median_s": "failed"}, None
    loss = json.loads(ev.stdout.strip().splitlines()[-1])["loss"] if ev.returncode == 0 else None
    return json.loads(out.stdout.strip().splitlines()[-1]), loss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default="target/release/metric-loss")
    ap.add_argument("--batches", default="4096,16384,65536")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--all-max", type=int, default=4096)
    ap.add_argument("--peak-tflops", type=float, default=67.0)  # accepted for gpu.sh; unused
    ap.add_argument("--max-cpu-gb", type=float, default=12.0)
    args, _ = ap.parse_known_args()  # gpu.sh passes its options to both scripts
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        from pytorch_metric_learning.losses import TripletMarginLoss
        pml = TripletMarginLoss(margin=args.margin)
    except ImportError:
        pml = None
    print(f"triplet: torch {torch.__version__} on "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}; D={args.dim}, margin {args.margin}")
    print(f"{'B':>7} {'mining':>8} | {'ml e2e s':>10} {'ml kern s':>10} {'%probe':>7} | {'torch s':>10} | {'ml/torch':>8} | ml loss / torch loss")
    for b in [int(v) for v in args.batches.split(",")]:
        x, labels = inputs(b, args.dim, seed=b)
        for mining, reference, extra in [
            ("hard", batch_hard, ()),
            ("semihard", semihard, ()),
            ("all", None, ("--normalize",)),
        ]:
            if mining == "all" and b > args.all_max:
                continue
            ml, ml_loss = metric_loss(args.exe, x, labels, mining, args.margin, args.repeat, extra)
            xt = torch.tensor(x, device=device, requires_grad=True)
            lt = torch.tensor(labels, device=device)
            box = {}
            if device.type == "cpu" and 8 * b * b * 4 / 1e9 > args.max_cpu_gb:
                t = f"skip>{args.max_cpu_gb:g}GB"
            elif mining == "all" and pml is None:
                t = "no PML"
            else:
                def run():
                    xt.grad = None
                    loss = pml(xt, lt) if mining == "all" else reference(xt, lt, args.margin)
                    loss.backward()
                    box["loss"] = loss.item()
                t = timed(run, args.repeat, device)
            losses = (f"{ml_loss:.6f} / {box['loss']:.6f}"
                      if ml_loss is not None and "loss" in box else "-")
            kern = ml.get("kernel_s")
            print(f"{b:>7} {mining:>8} | {fmt(ml.get('median_s'))} {fmt(kern if kern else 'n/a')} "
                  f"{probe(ml)} | {fmt(t)} | {ratio(ml.get('median_s'), t)} | {losses}", flush=True)
            del xt, lt


if __name__ == "__main__":
    main()
