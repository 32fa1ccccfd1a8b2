#!/usr/bin/env python3
"""Cross-check metric-loss's InfoNCE against sentence-transformers: loss, dL/dA, dL/dK and
dL/dscale.

  plain      sentence_transformers.losses.MultipleNegativesRankingLoss(model, scale)
             (cosine similarity): anchors against their positives and, with --negatives k,
             k columns of hard negatives, the keys [positives; negatives 1; ...; negatives k]
  symmetric  MultipleNegativesSymmetricRankingLoss(model, scale): the same with the reverse
             term over the anchors for each positive (sentence-transformers 6 builds it as
             MultipleNegativesRankingLoss(directions=("query_to_doc", "doc_to_query"),
             partition_mode="per_direction"))

The loss is called through `compute_loss_from_embeddings` (no model runs) in float64, the
reference, and in float32; dL/dscale comes from autograd with the loss's scale replaced by a
tensor. metric-loss runs `eval --loss infonce` (f32, on --device). For each value the
script prints the largest difference from the float64 reference relative to the largest
reference value, for metric-loss and for sentence-transformers' own float32 run: "f32
precision" is metric-loss within 10× of that (or 1e-5). Near-duplicate positives make the
loss a small difference of logits near the scale, so both f32 runs lose digits there alike.
Needs numpy, torch, sentence-transformers and a built `metric-loss` binary.

Usage: python3 benches/compare_infonce.py [path/to/metric-loss] [--device gpu|cpu]
"""
import argparse
import json
import os
import subprocess
import tempfile
import warnings

import numpy as np
import torch


def metric_loss(exe, args):
    out = subprocess.run([exe, "eval", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def sentence_transformers_loss(symmetric, scale, anchors, docs, dtype):
    """Loss and gradients (anchors, every doc column, scale) in `dtype`."""
    from sentence_transformers.losses import (
        MultipleNegativesRankingLoss,
        MultipleNegativesSymmetricRankingLoss,
    )

    cls = MultipleNegativesSymmetricRankingLoss if symmetric else MultipleNegativesRankingLoss
    with warnings.catch_warnings():
        # The symmetric class is deprecated for its equal MultipleNegativesRankingLoss form.
        warnings.simplefilter("ignore", DeprecationWarning)
        loss_fn = cls(model=None, scale=scale)
    s = torch.tensor(scale, dtype=dtype, requires_grad=True)
    loss_fn.scale = s
    a = torch.tensor(anchors, dtype=dtype, requires_grad=True)
    d = [torch.tensor(x, dtype=dtype, requires_grad=True) for x in docs]
    loss = loss_fn.compute_loss_from_embeddings([a, *d], labels=None)
    loss.backward()
    keys_grad = np.concatenate([x.grad.numpy() for x in d])
    return [loss.item(), a.grad.numpy(), keys_grad, s.grad.item()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exe", nargs="?", default="target/release/metric-loss")
    ap.add_argument("--device", default="gpu")
    args = ap.parse_args()
    import sentence_transformers

    print(
        f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}, "
        f"metric-loss --device {args.device}"
    )
    rng = np.random.default_rng(0)
    worst, failed = 0.0, False
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        for n, negatives, dim, scale in [
            (1, 0, 8, 20.0),
            (64, 0, 32, 20.0),
            (64, 1, 32, 20.0),
            (130, 3, 48, 20.0),
            (200, 2, 16, 1.0 / 0.07),
            (96, 1, 64, 5.0),
        ]:
            anchors = rng.standard_normal((n, dim))
            docs = [rng.standard_normal((n, dim)) for _ in range(1 + negatives)]
            # Near-duplicate positives, as a trained model gives.
            docs[0] = anchors + 0.3 * docs[0]
            keys = np.concatenate(docs)
            np.save(p("a.npy"), anchors.astype(np.float32))
            np.save(p("k.npy"), keys.astype(np.float32))
            for symmetric in [False, True]:
                # The reference takes the f32-rounded inputs metric-loss reads.
                a32 = anchors.astype(np.float32).astype(np.float64)
                d32 = [x.astype(np.float32).astype(np.float64) for x in docs]
                ref = sentence_transformers_loss(symmetric, scale, a32, d32, torch.float64)
                f32 = sentence_transformers_loss(symmetric, scale, a32, d32, torch.float32)
                flags = ["--loss", "infonce", "--a", p("a.npy"), "--b", p("k.npy")]
                flags += ["--scale", repr(scale)]
                flags += ["--grad-a", p("ga.npy"), "--grad-b", p("gk.npy")]
                flags += ["--device", args.device]
                if symmetric:
                    flags.append("--symmetric")
                out = metric_loss(args.exe, flags)
                ours = [out["loss"], np.load(p("ga.npy")), np.load(p("gk.npy")), out["grad_scale"]]
                name = "symmetric" if symmetric else "plain"
                cells = []
                for what, m, t, r in zip(["loss", "dA", "dK", "dscale"], ours, f32, ref):
                    d_ours, d_f32 = rel(m, r), rel(t, r)
                    worst = max(worst, d_ours)
                    failed |= d_ours > max(10 * d_f32, 1e-5)
                    cells.append(f"{what} {d_ours:.1e} ({d_f32:.1e})")
                print(
                    f"N={n:4} keys={len(keys):4} D={dim:3} scale={scale:6.3f} {name:9} "
                    f"loss {out['loss']:.9f} / {ref[0]:.9f} | " + " ".join(cells)
                )
    print(
        "columns: metric-loss's relative difference from sentence-transformers in float64 "
        f"(sentence-transformers' own float32 run's); largest {worst:.1e}"
    )
    if failed:
        raise SystemExit("metric-loss and sentence-transformers disagree beyond f32 precision")


if __name__ == "__main__":
    main()
