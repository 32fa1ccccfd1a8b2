#!/usr/bin/env python3
"""The Python half of benches/gpu.sh: metric-loss against PyTorch, same inputs, one run.

For each batch size B (D = 128 by default): Gaussian rows, L2-normalised, labels uniform over
B/8 classes, margin 1.5. Times forward + backward per call (median of --repeat after one
warm-up) of
  * metric-loss (`metric-loss bench --json` on the saved inputs): end to end through the
    host API (upload and readback included) and kernel-only (GPU timestamps);
  * a torch.cdist Hadsell loss: mean over pairs i < j of Y·D² + (1 − Y)·relu(m − D)², the
    same function metric-loss computes by default;
  * pytorch-metric-learning's ContrastiveLoss(pos_margin=0, neg_margin=m) (its own
    definition: normalised embeddings, linear hinge, mean of non-zero terms).
Tensors are on the device before timing, TF32 is off, nothing is compiled. Where PyTorch runs
out of memory the row says OOM. The fraction of FP32 peak is model FLOPs (6·B²·D) over
metric-loss's kernel time, against --peak-tflops (H200: about 67).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
import torch


def inputs(b, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, d)).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = rng.integers(0, max(b // 8, 1), b).astype(np.int64)
    return x, labels


def hadsell(x, labels, margin):
    d = torch.cdist(x, x)
    b = x.shape[0]
    upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=x.device), diagonal=1)
    same = labels[:, None] == labels[None, :]
    terms = torch.where(same, d.pow(2), torch.relu(margin - d).pow(2))
    return terms[upper].mean()


def timed(fn, repeat, device):
    """Median seconds of fn() (forward + backward), or the failure as a string."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    try:
        fn()
        sync()
        times = []
        for _ in range(repeat):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    except (torch.cuda.OutOfMemoryError, MemoryError):
        return "OOM"
    except RuntimeError as e:
        if "out of memory" in str(e).lower() or "can't allocate" in str(e).lower():
            return "OOM"
        raise
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def fmt(v):
    return f"{v:10.4f}" if isinstance(v, float) else f"{v:>10}"


def probe(ml):
    """The kernel's share of the adapter's FMA peak measured by the same bench run."""
    f = ml.get("fma_peak_fraction")
    return f"{100 * f:6.1f}%" if isinstance(f, float) else f"{'n/a':>7}"


def ratio(ml_s, torch_s):
    """metric-loss time / PyTorch time (below 1: metric-loss is faster)."""
    if isinstance(ml_s, float) and isinstance(torch_s, float) and torch_s > 0:
        return f"{ml_s / torch_s:8.3f}"
    return f"{'-':>8}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default="target/release/metric-loss")
    ap.add_argument("--batches", default="4096,16384,65536,262144")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--margin", type=float, default=1.5)
    ap.add_argument("--peak-tflops", type=float, default=67.0,
                    help="FP32 peak of the device (H200: about 67); 0 prints n/a")
    ap.add_argument("--max-cpu-gb", type=float, default=12.0,
                    help="skip PyTorch on the CPU where its B×B matrices would exceed this")
    args, _ = ap.parse_known_args()  # gpu.sh passes its options to both scripts
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        from pytorch_metric_learning.losses import ContrastiveLoss
        pml = ContrastiveLoss(pos_margin=0.0, neg_margin=args.margin)
    except ImportError:
        pml = None
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}"
          f"; pytorch-metric-learning {'present' if pml else 'missing'}; D={args.dim}, margin {args.margin}")
    print(f"{'B':>7} | {'ml e2e s':>10} {'ml kern s':>10} {'%probe':>7} {'%FP32pk':>8} | {'cdist s':>10} {'PML s':>10} | {'ml/cdist':>8} | ml loss / cdist loss")
    for b in [int(v) for v in args.batches.split(",")]:
        x, labels = inputs(b, args.dim, seed=b)
        with tempfile.TemporaryDirectory() as tmp:
            xp, lp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "l.npy")
            np.save(xp, x)
            np.save(lp, labels)
            out = subprocess.run(
                [args.exe, "bench", "--loss", "contrastive", "--embeddings", xp, "--labels", lp,
                 "--margin", str(args.margin), "--repeat", str(args.repeat), "--json"],
                capture_output=True, text=True)
        if out.returncode != 0:
            ml = {"median_s": "failed", "kernel_s": None}
            print(f"metric-loss failed at B={b}: {out.stderr.strip()[-300:]}")
        else:
            ml = json.loads(out.stdout.strip().splitlines()[-1])
        kern = ml.get("kernel_s")
        frac = None
        if kern and args.peak_tflops > 0:
            frac = ml.get("kernel_flops", 0.0) / kern / (args.peak_tflops * 1e12) * 100
        need_gb = 6 * b * b * 4 / 1e9
        xt = torch.tensor(x, device=device, requires_grad=True)
        lt = torch.tensor(labels, device=device)
        loss_box = {}
        if device.type == "cpu" and need_gb > args.max_cpu_gb:
            t_cdist = t_pml = f"skip>{args.max_cpu_gb:g}GB"
        else:
            def run_cdist():
                xt.grad = None
                loss = hadsell(xt, lt, args.margin)
                loss.backward()
                loss_box["cdist"] = loss.item()
            t_cdist = timed(run_cdist, args.repeat, device)
            if pml is None:
                t_pml = "missing"
            else:
                def run_pml():
                    xt.grad = None
                    pml(xt, lt).backward()
                t_pml = timed(run_pml, args.repeat, device)
        ml_t = ml.get("median_s")
        ml_loss = None
        # The loss of metric-loss on the same input, for a side-by-side sanity check.
        with tempfile.TemporaryDirectory() as tmp:
            xp, lp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "l.npy")
            np.save(xp, x)
            np.save(lp, labels)
            ev = subprocess.run([args.exe, "eval", "--loss", "contrastive", "--embeddings", xp,
                                 "--labels", lp, "--margin", str(args.margin)],
                                capture_output=True, text=True)
            if ev.returncode == 0:
                ml_loss = json.loads(ev.stdout.strip().splitlines()[-1])["loss"]
        pct = f"{frac:7.2f}%" if frac is not None else f"{'n/a':>8}"
        losses = f"{ml_loss:.6f} / {loss_box['cdist']:.6f}" if ml_loss is not None and "cdist" in loss_box else "-"
        print(f"{b:>7} | {fmt(ml_t)} {fmt(kern if kern else 'n/a')} {probe(ml)} {pct} | {fmt(t_cdist)} "
              f"{fmt(t_pml)} | {ratio(ml_t, t_cdist)} | {losses}", flush=True)
        del xt, lt


if __name__ == "__main__":
    main()
