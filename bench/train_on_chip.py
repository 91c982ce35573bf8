"""On-chip training in cycle-accurate simulation, checked weight for weight against golden.

    python bench/train_on_chip.py [--samples 60000] [--test-samples 10000]

Runs what ``eqfpga train --on-chip --sim verilator`` runs on the first ``--samples`` training
samples of epoch 1 (all of them: one full epoch), reads every parameter back, compares with
the golden model trained on the same samples, evaluates the test accuracy, prints a table and
writes ``bench/results/train_on_chip_CONFIG.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from eqfpga.config import load_config
from eqfpga.sim.train_on_chip import train_on_chip

RESULTS = Path(__file__).resolve().parent / "results"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="up5k")
    ap.add_argument("--samples", type=int, default=60_000)
    ap.add_argument("--test-samples", type=int, default=10_000)
    ap.add_argument("--lanes", type=int, default=8)
    a = ap.parse_args()
    c = load_config(a.config)
    with tempfile.TemporaryDirectory() as d:
        r = train_on_chip(c, Path(d), 1, lanes=a.lanes, train_samples=a.samples,
                          test_samples=a.test_samples)
    e = r["history"][0]
    print("| samples | wall | samples/s | cycles/sample | weights = golden | LFSRs = golden | "
          "predictions = golden | test accuracy | golden's |")
    print("|---:|---:|---:|---:|---|---|---|---:|---:|")
    print(f"| {e['samples']:,} | {e['seconds'] / 60:.1f} min | {e['samples_per_second']:.0f} | "
          f"{e['cycles_per_sample']:,.0f} | {e['weights_equal_golden']} | {e['streams_equal_golden']} | "
          f"{e['predictions_equal_golden']} | {e['test_accuracy']:.2%} | {e['golden_test_accuracy']:.2%} |")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"train_on_chip_{c.name}_{a.samples}.json"
    path.write_text(json.dumps({"config": c.name, "lanes": a.lanes, **e}, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
