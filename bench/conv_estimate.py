"""How close the spiking network's EP estimate is to the rate network's, per layer and phase schedule.

    python bench/conv_estimate.py [--config conv_mnist] [--warmup 480] [--batches 4]

The gradient check (``conv_gradcheck.py``) shows EP = BPTT for the rate network; this measures
what the spiking network's sigma-delta noise and finite phases do to that estimate on the
real network. Weights: ``--warmup`` samples of float rate-network training from the
configuration's initialisation (so the rates are in a trained regime). Reference: the rate
network's EP estimate with long phases (200 free, 60 nudged steps). For each schedule, the
cosine between its estimate and the reference, and the norm ratio (> 1: noise adds to the
estimate), per weight layer, averaged over ``--batches`` batches of 32 MNIST training images.
Prints a Markdown table; writes ``bench/results/conv_estimate.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from eqfpga import data
from eqfpga.config import load_config
from eqfpga.golden import network, conv_float as cf

RESULTS = Path(__file__).resolve().parent / "results"

def schedule(spiking: bool, free: int, nudge: int, from_free: bool, average: int, note: str = ""):
    """(label, spiking, configuration changes) of one phase schedule."""
    label = (f"{'spiking' if spiking else 'rate'}, {free}/{nudge}, -beta from "
             f"{'free' if from_free else '+beta'}, "
             f"{'end rates' if average == 1 else f'mean of last {average}'}{note}")
    return label, spiking, dict(free_steps=free, nudge_steps=nudge, minus_from_free=from_free,
                                average_steps=average)


SCHEDULES = [
    schedule(False, 40, 12, False, 1),
    schedule(True, 40, 12, False, 1, " (first choice)"),
    schedule(True, 64, 16, False, 1),
    schedule(True, 64, 16, True, 1),
    schedule(True, 64, 16, True, 8),
    schedule(True, 64, 64, True, 64),
]


def cosines(a: list, b: list) -> tuple[list, list]:
    cos = [float(np.sum(x * y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)) for x, y in zip(a, b)]
    ratio = [float(np.linalg.norm(x) / (np.linalg.norm(y) + 1e-30)) for x, y in zip(a, b)]
    return cos, ratio


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="conv_mnist")
    ap.add_argument("--warmup", type=int, default=480, help="rate-network training samples first")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--json", type=Path, default=RESULTS / "conv_estimate.json")
    a = ap.parse_args(argv)
    c0 = load_config(a.config)
    tr = data.load("train")
    p = cf.FParams.from_int(network.init_params(c0), c0, np.float32)
    for i in range(0, a.warmup, c0.batch_size):
        cf.train_batch(tr.images[i:i + c0.batch_size], tr.labels[i:i + c0.batch_size], p, c0)
    p = cf.FParams([w.astype(np.float64) for w in p.w], [b.astype(np.float64) for b in p.b])
    batches = [(a.warmup + 32 * k, a.warmup + 32 * (k + 1)) for k in range(a.batches)]
    ref_cfg = replace(c0, free_steps=200, nudge_steps=60, minus_from_free=True, average_steps=1)
    refs = []
    for lo, hi in batches:
        x = cf.float_input(tr.images[lo:hi], c0)
        refs.append(cf.ep_estimate(x, tr.labels[lo:hi], p, ref_cfg, spiking=False)[0])
    rows = []
    for label, spiking, change in SCHEDULES:
        c = replace(c0, **change)
        cs, rs = [], []
        for (lo, hi), ref in zip(batches, refs):
            x = cf.float_input(tr.images[lo:hi], c)
            cos, ratio = cosines(cf.ep_estimate(x, tr.labels[lo:hi], p, c, spiking)[0], ref)
            cs.append(cos); rs.append(ratio)
        rows.append({"schedule": label, "spiking": spiking, "config": change,
                     "steps_per_sample": c.free_steps + 2 * c.nudge_steps,
                     "cosine": np.mean(cs, axis=0).round(3).tolist(),
                     "norm_ratio": np.mean(rs, axis=0).round(2).tolist()})
    L = c0.n_layers
    print(f"{c0.name}: EP estimate against the rate network's long-phase estimate, "
          f"{a.batches} batches of 32, after {a.warmup} warm-up samples")
    print("| schedule | steps | " + " | ".join(f"W{l + 1} cos / norm" for l in range(L)) + " |")
    print("|---|---|" + "---|" * L)
    for r in rows:
        print(f"| {r['schedule']} | {r['steps_per_sample']} | " +
              " | ".join(f"{c:.2f} / {n:.1f}" for c, n in zip(r["cosine"], r["norm_ratio"])) + " |")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"config": c0.name, "warmup": a.warmup, "batches": a.batches,
                                  "reference": "rate network, 200 free / 60 nudged steps", "rows": rows},
                                 indent=2))
    return rows


if __name__ == "__main__":
    main()
