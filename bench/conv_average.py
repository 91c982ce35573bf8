"""Test accuracy of the mean of several conv EP checkpoints' weights (weight averaging).

Once a run has levelled off, its weights wander around the fixed point of training by the
noise of the last updates (for the integer model also by the stochastic rounding of every
update). The element-wise mean of the weights of its last epochs
(:func:`~eqfpga.trainer.average`; integer weights: the exact mean rounded half up, so
the same integer format) removes that noise at no training cost. It prints each source's
recorded test accuracy and the average's, writes ``--json`` and, with ``--save``, the averaged
checkpoint (it loads like any other: ``bench/conv_settling.py``, ``--branch-from``)::

    python bench/conv_average.py RUN/epoch0{10..14}.npz --save RUN/average010-014.npz \\
        --json bench/results/conv_average_RUN.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqfpga import data
from eqfpga import checkpoint, trainer

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints of one network, in epoch order")
    ap.add_argument("--test-samples", type=int, default=None, help="default: the whole test set")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: by the run's dataset)")
    ap.add_argument("--save", type=Path, default=None, help="write the averaged checkpoint here")
    ap.add_argument("--json", type=Path, default=RESULTS / "conv_average.json")
    a = ap.parse_args(argv)
    try:
        ck = trainer.average(a.checkpoints)
        dataset, folder = trainer.run_data(ck.config, ck.meta.get("dataset", "mnist"), a.data)
        test = data.load("test", dataset, folder).take(a.test_samples)
    except (checkpoint.CheckpointError, data.DataError) as e:
        raise SystemExit(f"error: {e}") from None
    sources = ck.meta["averaged"]
    for src in sources:
        acc = "" if src["test_accuracy"] is None else \
            f"{100 * src['test_accuracy']:.2f}% ({src['test_samples']} test images, recorded)"
        print(f"{src['from']} (epoch {src['epoch']}): {acc}")
    accuracy = trainer.evaluate(ck, test.images, test.labels)
    print(f"mean of {len(sources)} ({ck.mode}, {dataset}): {100 * accuracy:.2f}% ({len(test)} test images)")
    if a.save:
        checkpoint.save(ck, a.save)
        print(f"wrote {a.save}")
    doc = {"mode": ck.mode, "config": ck.config.name, "dataset": dataset, "sources": sources,
           "test_samples": len(test), "test_accuracy": accuracy,
           "saved": str(a.save) if a.save else None}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.json}")
    return doc


if __name__ == "__main__":
    main()
