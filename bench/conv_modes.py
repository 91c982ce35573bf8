"""Test accuracy of one conv EP checkpoint's weights in each model: integer, float rates, float spikes.

Where the integer model trails float, this separates the two possible causes: the integer
*forward pass* (sigma-delta spikes, quantised rates and membranes; the float run's weights
rounded to the integer format, :func:`~eqfpga.trainer.convert`) and integer
*training* (its weights evaluated by the float models). ``--config`` / ``--set`` give the
configuration the weights are converted into (default: the checkpoint's own; the network must
be the same), for instance a float run's weights in ``conv_fashion_fine``'s integer formats::

    python bench/conv_modes.py RUN/epoch015.npz --config conv_fashion_fine --set 'conv_channels=[32,64]' \\
        --modes int float-spiking --json bench/results/conv_modes_RUN.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqfpga import data
from eqfpga.config import ConfigError
from eqfpga.config import load_config, with_overrides
from eqfpga import checkpoint, trainer

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--config", default=None, help="convert into this configuration (default: the checkpoint's)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override fields of --config (JSON values)")
    ap.add_argument("--modes", nargs="+", choices=checkpoint.MODES, default=list(checkpoint.MODES))
    ap.add_argument("--test-samples", type=int, default=None, help="default: the whole test set")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: by the run's dataset)")
    ap.add_argument("--json", type=Path, default=RESULTS / "conv_modes.json")
    a = ap.parse_args(argv)
    try:
        ck = checkpoint.load(a.checkpoint)
        c = with_overrides(load_config(a.config) if a.config else ck.config, a.set)
        converted = {m: trainer.convert(ck, c, m, a.checkpoint) for m in a.modes}
        dataset, folder = trainer.run_data(ck.config, ck.meta.get("dataset", "mnist"), a.data)
        test = data.load("test", dataset, folder).take(a.test_samples)
    except (checkpoint.CheckpointError, ConfigError, data.DataError) as e:
        raise SystemExit(f"error: {e}") from None
    h = ck.history[-1] if ck.history and not ck.position and ck.history[-1]["epoch"] == ck.epoch else {}
    print(f"{a.checkpoint}: {ck.mode} weights of {ck.config.name}, epoch {ck.epoch}"
          + (f", recorded {100 * h['test_accuracy']:.2f}% ({h['test_samples']} test images)" if h else ""))
    rows = []
    for m, cm in converted.items():
        accuracy = trainer.evaluate(cm, test.images, test.labels)
        saturated = cm.meta["converted"][-1]["saturated"]
        rows.append({"mode": m, "config": c.name, "test_accuracy": accuracy, "saturated": saturated})
        print(f"  as {m:13s} ({c.name}): {100 * accuracy:.2f}%"
              + (f"  ({saturated} weights saturated)" if saturated else ""))
    doc = {"checkpoint": str(a.checkpoint), "mode": ck.mode, "config": ck.config.name, "epoch": ck.epoch,
           "recorded_test_accuracy": h.get("test_accuracy"), "dataset": dataset,
           "test_samples": len(test), "converted_into": c.to_dict(), "results": rows}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=2))
    print(f"wrote {a.json}")
    return doc


if __name__ == "__main__":
    main()
