#!/usr/bin/env python3
"""Cross-check metric-loss's SigLIP against open_clip's SigLipLoss: loss, dL/dA, dL/dB,
dL/dt' and dL/db.

open_clip's `SigLipLoss._loss(image_features, text_features, logit_scale, logit_bias,
negative_only)` takes normalised features, the logit scale t = exp(t') already exponentiated
and the bias; its distributed form adds, for each chunk of text features from another
device, the same loss with every pair negative (`negative_only=True`), each divided by the
local batch N. metric-loss's B with M = k·N rows is that: its first N rows the local texts,
the rest k − 1 chunks of other devices' texts. The features are normalised with
torch.nn.functional.normalize, t = exp(t') with t' and b leaf tensors, so that autograd
gives every gradient metric-loss returns; in float64 (the reference) and in float32.
metric-loss runs `eval --loss siglip` (f32, on --device). For each value the script prints
the largest difference from the float64 reference relative to the largest reference value,
for metric-loss and for open_clip's own float32 run: "f32 precision" is metric-loss within
10x of that (or 1e-5).

open_clip is imported from its loss.py alone (the package's __init__ pulls in torchvision
and timm, which the comparison does not need). Needs numpy, torch, open_clip_torch (pip
install --no-deps open_clip_torch==3.3.0) and a built `metric-loss` binary.

Usage: python3 benches/compare_siglip.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import importlib.util
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F


def open_clip_siglip():
    """open_clip's SigLipLoss class, from the installed package's loss.py."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        raise SystemExit("open_clip_torch is not installed (pip install --no-deps open_clip_torch)")
    path = os.path.join(spec.submodule_search_locations[0], "loss.py")
    mod_spec = importlib.util.spec_from_file_location("open_clip_loss", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.SigLipLoss


def metric_loss(exe, args):
    out = subprocess.run([exe, "eval", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def open_clip_loss(cls, a, b, log_scale, bias, dtype):
    """open_clip's loss over A and B (chunks of N rows past the first negative only) and the
    gradients (A, B, t', b) in `dtype`."""
    fn = cls()
    at = torch.tensor(a, dtype=dtype, requires_grad=True)
    bt = torch.tensor(b, dtype=dtype, requires_grad=True)
    t = torch.tensor(log_scale, dtype=dtype, requires_grad=True)
    c = torch.tensor(bias, dtype=dtype, requires_grad=True)
    an, bn = F.normalize(at, dim=-1), F.normalize(bt, dim=-1)
    n = a.shape[0]
    loss = fn._loss(an, bn[:n], t.exp(), c)
    for k in range(n, b.shape[0], n):
        loss = loss + fn._loss(an, bn[k:k + n], t.exp(), c, negative_only=True)
    loss.backward()
    return [loss.item(), at.grad.numpy(), bt.grad.numpy(), t.grad.item(), c.grad.item()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", default="gpu")
    args = ap.parse_args()
    cls = open_clip_siglip()
    from importlib.metadata import version

    print(f"open_clip_torch {version('open_clip_torch')}, torch {torch.__version__}, "
          f"metric-loss --device {args.device}")
    rng = np.random.default_rng(0)
    worst, failed = 0.0, False
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        # (N, chunks of B, D, t', b): open_clip's initialisation, a trained model's, none.
        for n, chunks, dim, log_scale, bias in [
            (1, 1, 8, np.log(10.0), -10.0),
            (64, 1, 32, np.log(10.0), -10.0),
            (64, 2, 32, 4.72, -16.5),
            (130, 3, 48, np.log(10.0), -10.0),
            (200, 1, 16, 0.0, 0.0),
            (96, 2, 64, 2.0, -5.0),
        ]:
            a = rng.standard_normal((n, dim))
            b = rng.standard_normal((n * chunks, dim))
            # Matched rows near their image, as a trained model gives.
            b[:n] = a + 0.5 * b[:n]
            np.save(p("a.npy"), a.astype(np.float32))
            np.save(p("b.npy"), b.astype(np.float32))
            # The reference takes the f32-rounded inputs and options metric-loss reads.
            a32, b32 = (x.astype(np.float32).astype(np.float64) for x in (a, b))
            t32, c32 = float(np.float32(log_scale)), float(np.float32(bias))
            ref = open_clip_loss(cls, a32, b32, t32, c32, torch.float64)
            f32 = open_clip_loss(cls, a32, b32, t32, c32, torch.float32)
            flags = ["--loss", "siglip", "--a", p("a.npy"), "--b", p("b.npy")]
            flags += ["--log-scale", repr(t32), "--bias", repr(c32)]
            flags += ["--grad-a", p("ga.npy"), "--grad-b", p("gb.npy"), "--device", args.device]
            out = metric_loss(args.exe, flags)
            ours = [out["loss"], np.load(p("ga.npy")), np.load(p("gb.npy")),
                    out["grad_log_scale"], out["grad_bias"]]
            cells = []
            for what, m, t, r in zip(["loss", "dA", "dB", "dt'", "db"], ours, f32, ref):
                d_ours, d_f32 = rel(m, r), rel(t, r)
                worst = max(worst, d_ours)
                failed |= d_ours > max(10 * d_f32, 1e-5)
                cells.append(f"{what} {d_ours:.1e} ({d_f32:.1e})")
            print(f"N={n:4} M={n * chunks:4} D={dim:3} t'={t32:6.3f} b={c32:6.1f} "
                  f"loss {out['loss']:.7f} / {ref[0]:.7f} | " + " ".join(cells))
    print("columns: metric-loss's relative difference from open_clip in float64 (open_clip's "
          f"own float32 run's); largest {worst:.1e}")
    if failed:
        raise SystemExit("metric-loss and open_clip disagree beyond f32 precision")


if __name__ == "__main__":
    main()
