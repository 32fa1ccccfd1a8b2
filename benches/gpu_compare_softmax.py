#!/usr/bin/env python3
"""Second half of benches/gpu.sh: metric-loss's NT-Xent, CLIP, SigLIP, Multi-Similarity and
Circle against PyTorch.

For each batch size B (D = 128 by default, tau = 0.07): Gaussian rows, L2-normalised.
NT-Xent takes two views of B/2 samples (labels i mod B/2, SimCLR's setting); CLIP two
independent B x D views. Times forward + backward per call (median of --repeat after one
warm-up) of
  * metric-loss `bench --json` on the saved inputs: end to end (upload and readback
    included) and kernel-only (GPU timestamps), and its workspace;
  * pytorch-metric-learning's NTXentLoss(temperature) in float32 ("PML"), and NT-Xent as
    plain PyTorch ("torch"): S = X_n X_n^T / tau, L_i = logsumexp of row i over the other
    classes, mean over positive pairs (i, p) of softplus(L_i - S_ip) (PML's definition);
  * CLIP as plain PyTorch: (cross_entropy(S, arange) + cross_entropy(S.T, arange)) / 2 with
    S = A_n B_n^T / tau, float32;
  * SigLIP as open_clip's SigLipLoss (t' = ln 10, b = -10, both leaf tensors with
    gradients, as in training; the features normalised by F.normalize), float32, two
    independent B x D views;
  * Multi-Similarity and Circle as pytorch-metric-learning's MultiSimilarityLoss() and
    CircleLoss() (PML's defaults), float32, labels uniform over B/8 classes (as `bench`);
  * ArcFace, CosFace and sub-center ArcFace as PML's ArcFaceLoss(num_classes=C,
    embedding_size=D), CosFaceLoss(...) and SubCenterArcFaceLoss(...) (PML's defaults, 3
    sub-centres; its W a parameter with a gradient), float32, B queries against --classes C
    unit-row class weights (C·3 rows with sub-centres), class indices uniform below C.
Each PyTorch measurement runs in a child process, so that one running out of memory
(CUDA OOM, or on the CPU an address-space cap of --max-cpu-gb) is reported as OOM with the
rest of the table intact; its peak memory is torch.cuda.max_memory_allocated() on a GPU and
the peak resident set on the CPU. TF32 is off, nothing is compiled.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gpu_compare import probe, ratio  # noqa: E402


def inputs(b, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, d)).astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def class_labels(b):
    """Labels uniform over B/8 classes (seeded by B)."""
    return np.random.default_rng(b + 7).integers(0, max(b // 8, 1), b).astype(np.int64)


def sub_centers(loss):
    """W's rows a class: PML's SubCenterArcFaceLoss default, 3."""
    return 3 if loss == "subcenter-arcface" else 1


def class_indices(b, classes):
    """Class indices uniform below `classes` (seeded by B)."""
    return np.random.default_rng(b + 3).integers(0, classes, b).astype(np.int64)


def child(args):
    """One PyTorch measurement; prints one JSON line."""
    if args.cpu_cap_gb > 0:
        cap = int(args.cpu_cap_gb * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, HERE)
    from gpu_compare import timed

    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    b, d, t = args.b, args.dim, args.temperature
    box = {}
    try:
        x = torch.tensor(inputs(b, d, seed=b), device=device, requires_grad=True)
        if args.child == "ntxent-torch":
            labels = torch.arange(b, device=device) % ((b + 1) // 2)
            same = labels[:, None] == labels[None, :]
            pos = same & ~torch.eye(b, dtype=torch.bool, device=device)

            def run():
                x.grad = None
                xn = F.normalize(x, dim=1)
                s = xn @ xn.T / t
                lse = torch.logsumexp(s.masked_fill(same, float("-inf")), dim=1)
                loss = F.softplus(lse[:, None] - s)[pos].mean()
                loss.backward()
                box["loss"] = loss.item()
        elif args.child == "ntxent":
            from pytorch_metric_learning.losses import NTXentLoss

            fn = NTXentLoss(temperature=t)
            labels = torch.arange(b, device=device) % ((b + 1) // 2)

            def run():
                x.grad = None
                loss = fn(x, labels)
                loss.backward()
                box["loss"] = loss.item()
        elif args.child in ("multi-similarity", "circle"):
            from pytorch_metric_learning.losses import CircleLoss, MultiSimilarityLoss

            fn = MultiSimilarityLoss() if args.child == "multi-similarity" else CircleLoss()
            labels = torch.tensor(class_labels(b), device=device)

            def run():
                x.grad = None
                loss = fn(x, labels)
                loss.backward()
                box["loss"] = loss.item()
        elif args.child in ("arcface", "cosface", "subcenter-arcface"):
            from pytorch_metric_learning.losses import (ArcFaceLoss, CosFaceLoss,
                                                        SubCenterArcFaceLoss)

            cls = {"arcface": ArcFaceLoss, "cosface": CosFaceLoss,
                   "subcenter-arcface": SubCenterArcFaceLoss}[args.child]
            fn = cls(num_classes=args.classes, embedding_size=d).to(device)
            rows = args.classes * sub_centers(args.child)
            fn.W.data = torch.tensor(inputs(rows, d, seed=b + 2).T.copy(), device=device)
            labels = torch.tensor(class_indices(b, args.classes), device=device)

            def run():
                x.grad = fn.W.grad = None
                loss = fn(x, labels)
                loss.backward()
                box["loss"] = loss.item()
        elif args.child == "siglip":
            from compare_siglip import open_clip_siglip

            fn = open_clip_siglip()()
            y = torch.tensor(inputs(b, d, seed=b + 1), device=device, requires_grad=True)
            t = torch.tensor(np.log(10.0), device=device, requires_grad=True)
            c = torch.tensor(-10.0, device=device, requires_grad=True)

            def run():
                x.grad = y.grad = t.grad = c.grad = None
                loss = fn(F.normalize(x, dim=-1), F.normalize(y, dim=-1), t.exp(), c)
                loss.backward()
                box["loss"] = loss.item()
        else:
            y = torch.tensor(inputs(b, d, seed=b + 1), device=device, requires_grad=True)
            target = torch.arange(b, device=device)

            def run():
                x.grad = y.grad = None
                s = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T / t
                loss = 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.T, target))
                loss.backward()
                box["loss"] = loss.item()

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        s = timed(run, args.repeat, device)
    except (MemoryError, RuntimeError) as e:  # allocation under the CPU cap
        if not isinstance(e, MemoryError) and "alloc" not in str(e).lower():
            raise
        s = "OOM"
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"s": s, "peak": peak, "loss": box.get("loss"),
                      "device": torch.cuda.get_device_name() if device.type == "cuda" else "CPU",
                      "torch": torch.__version__}))


def torch_run(loss, b, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", loss, "--b", str(b),
           "--dim", str(args.dim), "--repeat", str(args.repeat), "--temperature",
           str(args.temperature), "--cpu-cap-gb", str(args.max_cpu_gb), "--classes",
           str(args.classes)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["killed"]
        oom = out.returncode < 0 or "memory" in out.stderr.lower()
        return {"s": "OOM" if oom else "failed", "peak": None, "loss": None, "why": tail[0]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def ml_run(exe, loss, b, args):
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--temperature", str(args.temperature)] if loss in ("ntxent", "clip") else []
        if loss in ("arcface", "cosface", "subcenter-arcface"):
            xp, lp, wp = (os.path.join(tmp, f) for f in ("x.npy", "l.npy", "w.npy"))
            np.save(xp, inputs(b, args.dim, seed=b))
            np.save(lp, class_indices(b, args.classes))
            np.save(wp, inputs(args.classes * sub_centers(loss), args.dim, seed=b + 2))
            bench = ["--batch", str(b), "--dim", str(args.dim), "--classes", str(args.classes)]
            ev = ["eval", "--loss", loss, "--embeddings", xp, "--labels", lp, "--weights", wp]
        elif loss in ("ntxent", "multi-similarity", "circle"):
            xp, lp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "l.npy")
            np.save(xp, inputs(b, args.dim, seed=b))
            two_views = (np.arange(b) % ((b + 1) // 2)).astype(np.int64)
            np.save(lp, two_views if loss == "ntxent" else class_labels(b))
            bench = ["--embeddings", xp, "--labels", lp]
            ev = ["eval", "--loss", loss, "--embeddings", xp, "--labels", lp, *common]
        else:
            ap, bp = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
            np.save(ap, inputs(b, args.dim, seed=b))
            np.save(bp, inputs(b, args.dim, seed=b + 1))
            bench = ["--batch", str(b), "--dim", str(args.dim)]
            ev = ["eval", "--loss", loss, "--a", ap, "--b", bp, *common]
        out = subprocess.run([exe, "bench", "--loss", loss, *bench, *common, "--repeat",
                              str(args.repeat), "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"metric-loss failed at B={b}: {out.stderr.strip()[-300:]}")
            return {"median_s": "failed"}, None
        value = None
        if b <= args.eval_max:
            e = subprocess.run([exe, *ev], capture_output=True, text=True)
            if e.returncode == 0:
                value = json.loads(e.stdout.strip().splitlines()[-1])["loss"]
    return json.loads(out.stdout.strip().splitlines()[-1]), value


def fmt(v):
    return f"{v:10.4f}" if isinstance(v, float) else f"{str(v):>10}"


def mb(v):
    return f"{v / 1e6:9.1f}" if isinstance(v, (int, float)) else f"{'-':>9}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default="target/release/metric-loss")
    ap.add_argument("--softmax-batches", default="1024,2048,4096,16384,65536")
    ap.add_argument("--softmax-losses",
                    default="ntxent,clip,siglip,multi-similarity,circle,arcface,cosface,"
                            "subcenter-arcface")
    ap.add_argument("--classes", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.07)
    ap.add_argument("--max-cpu-gb", type=float, default=12.0)
    ap.add_argument("--eval-max", type=int, default=16384)
    ap.add_argument("--peak-tflops", type=float, default=67.0)
    ap.add_argument("--child")
    ap.add_argument("--b", type=int)
    ap.add_argument("--cpu-cap-gb", type=float, default=0.0)
    args, _ = ap.parse_known_args()  # gpu.sh passes its options to every script
    if args.child:
        return child(args)
    print(f"softmax: D={args.dim}, tau {args.temperature}; PyTorch float32 in a child process "
          f"per cell (CPU cap {args.max_cpu_gb:g} GB)")
    print(f"{'B':>7} {'loss':>16} | {'ml e2e s':>10} {'ml kern s':>10} {'%probe':>7} "
          f"{'ml MB':>9} | {'PML s':>10} {'torch s':>10} {'torch MB':>9} | {'ml/torch':>8} | "
          f"ml loss / torch loss")
    for b in [int(v) for v in args.softmax_batches.split(",")]:
        for loss in args.softmax_losses.split(","):
            ml, value = ml_run(args.exe, loss, b, args)
            # NT-Xent: PML's class, then the plain PyTorch formulation the ratio is against.
            pml = torch_run(loss, b, args) if loss == "ntxent" else None
            tr = torch_run("ntxent-torch" if loss == "ntxent" else loss, b, args)
            kern = ml.get("kernel_s")
            pct = ""
            if kern and args.peak_tflops > 0:
                frac = ml.get("kernel_flops", 0.0) / kern / 1e12 / args.peak_tflops
                pct = f" ({frac:.1%} of FP32 peak)"
            losses = (f"{value:.6f} / {tr['loss']:.6f}"
                      if value is not None and tr.get("loss") is not None else "-")
            print(f"{b:>7} {loss:>16} | {fmt(ml.get('median_s'))} {fmt(kern if kern else 'n/a')} "
                  f"{probe(ml)} {mb(ml.get('peak_device_bytes'))} | "
                  f"{fmt(pml['s']) if pml else fmt('-')} {fmt(tr['s'])} {mb(tr.get('peak'))} | "
                  f"{ratio(ml.get('median_s'), tr['s'])} | {losses}{pct}", flush=True)


if __name__ == "__main__":
    main()
