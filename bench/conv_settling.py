"""Test accuracy of trained conv EP networks against the length of the free phase.

EP's update assumes the free phase has reached the network's fixed point. A network whose
accuracy falls as the free phase grows classifies better in its transient than at its fixed
point: its training no longer fits what EP estimates. For each checkpoint (``eqfpga train``
runs of a network whose first layer is a convolution, any mode; inference in that mode) and
each number of free steps it prints the test
accuracy, the test accuracy of the same weights without feedback (one feed-forward pass,
:func:`~eqfpga.golden.conv_float.feedforward`: how much of what the network computes is the
recurrence) and the RMS of each weight layer, and writes ``--json``::

    python bench/conv_settling.py eqfpga/checkpoints/conv_mnist.npz \\
        bench/results/conv_fashion-float-fashion-c32_64-d2-pad2/last.npz --steps 32,64,128,256 --test-samples 2000

(``docs/conv.md``'s figures came from run checkpoints that are no longer kept: the ``-d1`` and
``-x2`` float Fashion-MNIST runs at epoch 2, and the MNIST runs named there.)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from eqfpga import checkpoint, trainer
from eqfpga import data
from eqfpga.golden import conv_float as cf

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+")
    ap.add_argument("--steps", default="32,64,128,256", help="free-phase lengths")
    ap.add_argument("--test-samples", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: by the run's dataset)")
    ap.add_argument("--json", type=Path, default=RESULTS / "conv_settling.json")
    a = ap.parse_args(argv)
    steps = [int(s) for s in a.steps.split(",")]
    rows = []
    for path in a.checkpoints:
        try:
            ck = checkpoint.load(path)
            dataset, folder = trainer.run_data(ck.config, ck.meta.get("dataset", "mnist"), a.data)
            test = data.load("test", dataset, folder).take(a.test_samples)
        except (checkpoint.CheckpointError, data.DataError) as e:
            raise SystemExit(f"error: {e}") from None
        acc = {}
        for n in steps:
            ck.config = replace(ck.config, free_steps=n)
            acc[n] = trainer.evaluate(ck, test.images, test.labels)
        fp = ck.params if ck.mode != "int" else cf.FParams.from_int(ck.params, ck.config, np.float32)
        ff = cf.feedforward_accuracy(test.images, test.labels, fp, ck.config)
        rms = [float(np.sqrt(np.mean(np.asarray(w, np.float64) ** 2))) for w in ck.params.w]
        rows.append({"checkpoint": str(path), "mode": ck.mode, "epoch": ck.epoch, "dataset": dataset,
                     "accuracy": {str(n): v for n, v in acc.items()}, "feedforward_accuracy": ff,
                     "weight_rms": rms})
        cells = "  ".join(f"{100 * acc[n]:6.2f}%" for n in steps)
        print(f"{path.parent.name}/{path.name} (epoch {ck.epoch}): {cells}   without feedback {100 * ff:6.2f}%"
              "   weight RMS "
              + " ".join(f"{v:.3g}" for v in rms), flush=True)
    doc = {"steps": steps, "test_samples": a.test_samples, "rows": rows}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=2))
    print(f"free steps {', '.join(map(str, steps))}; wrote {a.json}")
    return doc


if __name__ == "__main__":
    main()
