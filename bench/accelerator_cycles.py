"""Cycles per inference and per training sample of the accelerator, measured in simulation.

    python bench/accelerator_cycles.py [--config up5k] [--lanes 8] [--images 4]

Runs the generated accelerator in Amaranth's simulator on MNIST test images (inference) and
training images (training), fits ``cycles = a + b * nnz`` (``nnz``: non-zero pixels inside the crop; the
schedule has no other data dependence, so the fit is exact), and sets both beside the
memory-bandwidth floor of W1 (UP5K: 4 SPRAM x 16 bit per cycle = 64 bits), which every
inference must read (``nnz`` rows) and every training sample must also write back.
Prints a table and writes ``bench/results/accelerator_cycles_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from eqfpga import checkpoint, data
from eqfpga.config import load_config
from eqfpga.golden import network
from eqfpga.hw.accelerator import Accelerator
from eqfpga.sim import accelerator as drv

RESULTS = Path(__file__).resolve().parent / "results"
SPRAM_BITS_PER_CYCLE = 4 * 16


def measure(c, lanes, params, images, labels, train):
    dut = Accelerator(config=c, lanes=lanes, params=params)
    out = []

    async def bench(ctx):
        for x, y in zip(images, labels):
            r = await drv.run_sample(ctx, dut, x, train=train, label=int(y), record=False)
            out.append(r.cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    return out, time.perf_counter() - t0


def fit(nnz, cycles):
    a_mat = np.stack([np.ones(len(nnz)), nnz], axis=1)
    (a, b), *_ = np.linalg.lstsq(a_mat, np.array(cycles, float), rcond=None)
    resid = np.abs(a_mat @ [a, b] - cycles).max()
    return float(a), float(b), float(resid)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="up5k")
    ap.add_argument("--lanes", type=int, default=8)
    ap.add_argument("--images", type=int, default=4)
    a = ap.parse_args()
    c = load_config(a.config)
    try:
        params = checkpoint.load(checkpoint.shipped(c.name), c).params
    except checkpoint.CheckpointError:
        params = network.init_params(c)
    te, tr = data.load("test"), data.load("train")
    res = {"config": c.name, "lanes": a.lanes}
    rows = []
    for mode, split in (("inference", te), ("training", tr)):
        imgs, labels = split.images[:a.images], split.labels[:a.images]
        nnz = np.count_nonzero(network.flat_input(imgs, c), axis=1)
        cycles, secs = measure(c, a.lanes, params, imgs, labels, mode == "training")
        k0, k1, resid = fit(nnz, cycles)
        floor_per_row = c.hidden * c.weight_bits / SPRAM_BITS_PER_CYCLE * (2 if mode == "training" else 1)
        mean_nnz = float(np.count_nonzero(network.flat_input(te.images, c), axis=1).mean())
        res[mode] = {"nnz": nnz.tolist(), "cycles": cycles, "formula": [k0, k1], "fit_residual": resid,
                     "mean_test_nnz": mean_nnz, "cycles_at_mean_nnz": k0 + k1 * mean_nnz,
                     "bandwidth_floor_at_mean_nnz": floor_per_row * mean_nnz,
                     "simulated_cycles_per_s": sum(cycles) / secs}
        rows.append((mode, res[mode]))
    print(f"accelerator {c.name}, {a.lanes} lanes ({c.inputs}-{c.hidden}-{c.outputs}, "
          f"free {c.free_steps} / nudged {c.nudge_steps} steps{', symmetric' if c.symmetric_nudge else ''})")
    print("| sample | formula (cycles) | at mean nnz | W1 bandwidth floor | measured (nnz: cycles) |")
    print("|---|---|---|---|---|")
    for mode, r in rows:
        meas = ", ".join(f"{n}: {cy}" for n, cy in zip(r["nnz"], r["cycles"]))
        print(f"| {mode} | {r['formula'][0]:.0f} + {r['formula'][1]:.1f} nnz | "
              f"{r['cycles_at_mean_nnz']:.0f} | {r['bandwidth_floor_at_mean_nnz']:.0f} | {meas} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"accelerator_cycles_{c.name}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
