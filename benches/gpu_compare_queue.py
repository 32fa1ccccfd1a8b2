#!/usr/bin/env python3
"""Queries against a queue: metric-loss beside PyTorch on the same machine, in one run.

B queries (with gradient) against M detached reference rows (a MoCo-style queue), D = 128,
unit Gaussian rows, every label uniform over B/8 classes; forward + backward per call,
median of --repeat after one warm-up:
  * metric-loss `bench --reference-rows M --json` (end to end: upload and read-back
    included; kernel time from GPU timestamps where the adapter has them);
  * PyTorch, float32, on the same device: S = Q_n R_n^T / tau (B x M) and
      supcon       mean over queries with a positive of logsumexp_j S_ij - mean_{j pos} S_ij
      ntxent       mean over (query, positive reference) pairs of
                   softplus(logsumexp over the other-label references - S_ij)
      contrastive  torch.cdist(Q, R) (B x M), squared hinge (margin 1.5), mean over the pairs
The PyTorch forms hold B x M matrices (B = 4096, M = 65536: 1 GiB each); metric-loss holds
O((B + M) D). Each PyTorch case runs in a child process so that running out of memory is
reported as OOM. The generated inputs differ between the two (each side's own generator)
but have the same distribution; the losses are printed for reference.

Usage: python3 benches/gpu_compare_queue.py [--exe target/release/metric-loss]
       [--batch 4096] [--reference-rows 65536] [--dim 128] [--repeat 3]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gpu_compare import ratio  # noqa: E402

LOSSES = ["supcon", "ntxent", "contrastive"]


def child(args):
    import torch
    import torch.nn.functional as F

    from gpu_compare import timed

    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator().manual_seed(0)
    b, m, d, t = args.batch, args.reference_rows, args.dim, args.temperature
    classes = max(b // 8, 1)
    q = F.normalize(torch.randn(b, d, generator=gen), dim=1).to(device).requires_grad_()
    r = F.normalize(torch.randn(m, d, generator=gen), dim=1).to(device)
    lq = torch.randint(classes, (b,), generator=gen).to(device)
    lr = torch.randint(classes, (m,), generator=gen).to(device)
    box = {}

    def supcon():
        s = F.normalize(q, dim=1) @ F.normalize(r, dim=1).T / t
        pos = lq[:, None] == lr[None, :]
        npos = pos.sum(1)
        lse = torch.logsumexp(s, dim=1)
        mean_pos = (s * pos).sum(1) / npos.clamp(min=1)
        loss = (lse - mean_pos)[npos > 0].mean()
        loss.backward()
        box["loss"] = loss.item()

    def ntxent():
        s = F.normalize(q, dim=1) @ F.normalize(r, dim=1).T / t
        pos = lq[:, None] == lr[None, :]
        lse = torch.logsumexp(s.masked_fill(pos, float("-inf")), dim=1)
        loss = F.softplus(lse[:, None] - s)[pos].mean()
        loss.backward()
        box["loss"] = loss.item()

    def contrastive():
        dist = torch.cdist(q, r)
        sim = lq[:, None] == lr[None, :]
        terms = torch.where(sim, dist.square(), F.relu(1.5 - dist).square())
        loss = terms.mean()
        loss.backward()
        box["loss"] = loss.item()

    fn = {"supcon": supcon, "ntxent": ntxent, "contrastive": contrastive}[args.child]
    secs = timed(fn, args.repeat, device)
    print(json.dumps({"s": secs, "loss": box.get("loss"), "device": device.type}))


def torch_case(loss, args):
    cmd = [sys.executable, __file__, "--child", loss]
    for k in ["batch", "reference_rows", "dim", "repeat", "temperature"]:
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"s": "OOM" if "memory" in out.stderr.lower() else "failed", "loss": None}
    return json.loads(out.stdout.strip().splitlines()[-1])


def metric_loss(loss, args):
    cmd = [args.exe, "bench", "--loss", loss, "--batch", str(args.batch)]
    cmd += ["--reference-rows", str(args.reference_rows), "--dim", str(args.dim)]
    cmd += ["--repeat", str(args.repeat), "--json"]
    if loss != "contrastive":
        cmd += ["--temperature", str(args.temperature)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exe", default="target/release/metric-loss")
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--reference-rows", type=int, default=65536)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--child", choices=LOSSES)
    args = ap.parse_args()
    if args.child:
        return child(args)
    print(
        f"B={args.batch} queries against M={args.reference_rows} detached reference rows, "
        f"D={args.dim}, median of {args.repeat} (forward + backward)"
    )
    print(f"{'loss':12} {'metric-loss s':>14} {'kernel s':>10} {'torch s':>10} {'ratio':>8}")
    for loss in LOSSES:
        ml = metric_loss(loss, args)
        th = torch_case(loss, args)
        ts = th["s"]
        print(
            f"{loss:12} {ml['median_s']:14.3f} {ml.get('kernel_s') or float('nan'):10.3f} "
            f"{ts if isinstance(ts, str) else f'{ts:.3f}':>10} {ratio(ml['median_s'], ts)}"
            f"   peak device {ml.get('peak_device_bytes', 0) / 2**20:.0f} MiB, torch on "
            f"{th.get('device', '?')}, torch loss {th['loss']}"
        )


if __name__ == "__main__":
    main()
