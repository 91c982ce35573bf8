"""Accuracy of the golden model trained per sample: integer spiking model and float reference.

    python bench/golden_accuracy.py --config up5k --epochs 12 [--float] [--resume | --force]

Trains the integer model with :func:`eqfpga.trainer.fit` (what ``eqfpga train`` runs) into
``bench/results/CONFIG-DATASET/`` (resumable: ``--resume`` continues the run there, ``--force``
starts it over), optionally trains the float reference of the same one-hidden-layer network
(:mod:`eqfpga.golden.float_ref`) with the same sample order and learning-rate schedule, then
prints a table and writes ``bench/results/golden_accuracy_CONFIG-DATASET.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from eqfpga import data, trainer
from eqfpga.checkpoint import CheckpointError
from eqfpga.config import ConfigError, load_config
from eqfpga.data import DataError
from eqfpga.golden import float_ref, network

RESULTS = Path(__file__).resolve().parent / "results"


def train_float(c, epochs: int, out: Path, dataset: str, data_dir) -> list[dict]:
    """Float reference, per sample, same order and schedule; resumable per epoch."""
    state = out / "float_params.npz"
    hist_path = out / "float_history.json"
    history = json.loads(hist_path.read_text()) if hist_path.exists() else []
    if state.exists() and history:
        z = np.load(state)
        p = float_ref.FloatParams(z["w1"], z["w2"], z["b1"], z["b2"])
    else:
        p, history = float_ref.FloatParams.from_int(network.init_params(c), c), []
    tr, te = data.load("train", dataset, data_dir), data.load("test", dataset, data_dir)
    from tqdm import tqdm
    for ep in range(len(history), epochs):
        rule = c.at_epoch(ep)
        t0, correct = time.perf_counter(), 0
        xs, ys = trainer.epoch_samples(c, tr.images, tr.labels, ep)
        for x, y in tqdm(zip(xs, ys), total=len(ys), desc=f"float epoch {ep + 1}", mininterval=2):
            correct += float_ref.train_sample(x, int(y), p, rule) == y
        history.append({"epoch": ep + 1, "train_accuracy": correct / len(tr),
                        "test_accuracy": float_ref.accuracy(te.images, te.labels, p, c),
                        "seconds": time.perf_counter() - t0})
        np.savez(state, w1=p.w1, w2=p.w2, b1=p.b1, b2=p.b2)
        hist_path.write_text(json.dumps(history, indent=2))
        print(f"float epoch {ep + 1}: test {history[-1]['test_accuracy']:.2%}")
    return history


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="up5k")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--float", action="store_true", help="also train the float reference")
    ap.add_argument("--resume", action="store_true", help="continue the run in the results folder, if any")
    ap.add_argument("--force", action="store_true", help="start the run over (its files are deleted)")
    ap.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default=None,
                    help="default: fashion-mnist for a configuration named for it, else mnist")
    ap.add_argument("--data", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.resume and a.force:
        ap.error("--resume continues the run, --force starts it over: give one")
    try:
        c = load_config(a.config)
        dataset, data_dir = trainer.run_data(c, a.dataset, a.data)
        out = RESULTS / f"{c.name}-{dataset}"
        ck = trainer.fit(c, out, a.epochs, resume=a.resume and (out / "last.npz").exists(), force=a.force,
                         dataset=dataset, data_dir=data_dir)
    except (ConfigError, CheckpointError, DataError, ValueError) as e:
        sys.exit(f"error: {e}")
    if ck.epoch < a.epochs:
        sys.exit(f"stopped after {ck.epoch} of {a.epochs} epochs: continue with --resume")
    result = {"config": c.name, "model_hash": c.model_hash, "dataset": dataset,
              "command": "python bench/golden_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "integer": ck.history}
    if a.float:
        result["float"] = train_float(c, a.epochs, out, dataset, data_dir)
    print("\n| epoch | integer test | float test | s/epoch (integer) |\n|---|---|---|---|")
    for i, h in enumerate(ck.history):
        f = result.get("float", [])
        ft = f"{100 * f[i]['test_accuracy']:.2f}%" if i < len(f) else "-"
        seconds = h.get("train_seconds", h.get("seconds"))   # the name earlier runs recorded it under
        print(f"| {h['epoch']} | {100 * h['test_accuracy']:.2f}% | {ft} | {seconds:.0f} |")
    best = max(ck.history, key=lambda h: h["test_accuracy"])
    result["final_test_accuracy"] = ck.history[-1]["test_accuracy"]
    print(f"final integer test accuracy {100 * result['final_test_accuracy']:.2f}% "
          f"(best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']})")
    path = RESULTS / f"golden_accuracy_{c.name}-{dataset}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
