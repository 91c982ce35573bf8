"""Golden-model speed on this machine: per-sample training and batched inference.

    python bench/golden_speed.py [--config up5k] [--samples 3000]

Times ``train_sample`` over the first N training images (one process, one core), extrapolates
to one 60,000-sample epoch, times batched inference over the test set, prints a table and
writes ``bench/results/golden_speed_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from eqfpga import data, trainer
from eqfpga.config import load_config
from eqfpga.golden import network, train

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="up5k")
    ap.add_argument("--samples", type=int, default=3000)
    a = ap.parse_args()
    c = load_config(a.config)
    tr, te = data.load("train"), data.load("test")
    ck = trainer.fresh(c)
    t0 = time.perf_counter()
    for i in range(a.samples):
        train.train_sample(tr.images[i], int(tr.labels[i]), ck.params, c, ck.streams)
    per_sample = (time.perf_counter() - t0) / a.samples
    t0 = time.perf_counter()
    network.predict(te.images, ck.params, c)
    infer_s = time.perf_counter() - t0
    res = {"config": c.name, "samples_timed": a.samples, "ms_per_training_sample": 1e3 * per_sample,
           "epoch_minutes_60k": per_sample * 60000 / 60, "test_set_inference_s": infer_s,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print("| config | ms / training sample | 60k-sample epoch | 10k test inference |")
    print("|---|---|---|---|")
    print(f"| {c.name} | {res['ms_per_training_sample']:.2f} | {res['epoch_minutes_60k']:.1f} min "
          f"| {infer_s:.1f} s |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"golden_speed_{c.name}.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
