"""Peak training memory of EP against BPTT on the same convolutional network (tracemalloc).

For one training step (a batch) of the float network of a configuration, measures with
``tracemalloc`` the peak of Python/NumPy allocations during (a) EP: free phase, +beta and
-beta phases and the local update terms, (b) BPTT through the free phase of the same
dynamics (every step's state kept for the backward pass). Parameters, which both need, are
allocated before measuring. Also counts the state a chip must keep: EP the neuron state
(membrane, sigma-delta accumulator and spike per neuron), two rate snapshots, a copy of the
free state's membrane and accumulator when the -beta phase starts from it
(``minus_from_free``) and a rate accumulator when rates are averaged (``average_steps > 1``);
BPTT the membrane of every neuron at every step.

    python bench/conv_memory.py [--config conv_mnist] [--batch 1] [--steps 40,100,200]
"""

from __future__ import annotations

import argparse
import json
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np

from eqfpga import data
from eqfpga.config import load_config
from eqfpga.golden import network, conv_float as cf

RESULTS = Path(__file__).resolve().parent / "results"


def peak(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    p = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return p


def ep_values_per_neuron(c) -> int:
    return 3 + 2 + (2 if c.minus_from_free else 0) + (1 if c.average_steps > 1 else 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="conv_mnist")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", default="40,100,200", help="free-phase lengths to measure")
    ap.add_argument("--json", type=Path, default=RESULTS / "conv_memory.json")
    a = ap.parse_args(argv)
    c0 = load_config(a.config)
    tr = data.load("train")
    x = cf.float_input(tr.images[:a.batch], c0, np.float32)
    y = tr.labels[:a.batch].astype(np.int64)
    neurons = sum(int(np.prod(ly.out_shape)) for ly in c0.geometry)
    rows = []
    for T in (int(s) for s in a.steps.split(",")):
        c = replace(c0, free_steps=T)
        fp = cf.FParams.from_int(network.init_params(c), c, np.float32)
        ep = peak(lambda: cf.ep_estimate(x, y, fp, c, spiking=False))
        bp = peak(lambda: cf.bptt_grad(x, y, fp, c, steps=T))
        rows.append({"free_steps": T, "nudge_steps": c.nudge_steps, "batch": a.batch,
                     "ep_peak_bytes": ep, "bptt_peak_bytes": bp, "ratio": bp / ep,
                     "ep_state_values": a.batch * neurons * ep_values_per_neuron(c),
                     "bptt_state_values": a.batch * neurons * T})
    print(f"{a.config}: {neurons} neurons, batch {a.batch}; peak traced memory of one training step")
    print(f"{'free steps':>10s} {'EP (MiB)':>10s} {'BPTT (MiB)':>11s} {'BPTT/EP':>8s}")
    for r in rows:
        print(f"{r['free_steps']:10d} {r['ep_peak_bytes'] / 2**20:10.2f} "
              f"{r['bptt_peak_bytes'] / 2**20:11.2f} {r['ratio']:8.1f}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"config": a.config, "neurons": neurons, "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
