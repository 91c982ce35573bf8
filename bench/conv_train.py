"""Train the convolutional spiking EP network (float reference or integer golden model), resumable.

    python bench/conv_train.py --config conv_mnist --mode int --epochs 30            # full run
    python bench/conv_train.py --config conv_mnist --mode int --epochs 30 --resume   # after a stop
    python bench/conv_train.py --config conv_fashion --mode float --data /work/shared/data/fashion-mnist
    python bench/conv_train.py --config conv_mnist --train-samples 3000 --test-samples 1000 --epochs 2
    python bench/conv_train.py --mode float-spiking --set free_steps=40 average_steps=1 --train-samples 2000 ...

Checkpoints go to ``--out`` (default ``bench/results/conv_<config>-<mode>-<dataset>``):
``last.npz`` every ``--checkpoint-every`` samples, on Ctrl-C / SIGTERM and at each epoch end
(plus ``epochNNN.npz``), ``history.json`` with per-epoch accuracy and time per sample, and
``training.png``. ``--set KEY=VALUE`` changes configuration fields (values in JSON: ``w_shifts=[15,15,14,13]``,
``minus_from_free=false``) for experiments. ``--max-minutes`` stops (with a checkpoint) after that much training time.
``--branch-from CK`` starts a new run (``--out``) from the end of an epoch of another run, with this
configuration (network and weight formats must match; the learning rule, phases and dynamics may differ),
or in another ``--mode``: its weights are converted (a float run finished in the integer model).
The summary (``--json``) includes the time per full 60,000-sample epoch extrapolated from the
measured time per sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eqfpga.config import ConfigError
from eqfpga.data import DataError
from eqfpga.conv_config import load_conv_config, with_overrides
from eqfpga.golden import conv_train

RESULTS = Path(__file__).resolve().parent / "results"
FULL_EPOCH = 60000


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="conv_mnist")
    ap.add_argument("--mode", choices=conv_train.MODES, default="int")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="override configuration fields (JSON values)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--dataset", default=None, help="mnist or fashion-mnist (default: from the config name)")
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: shipped MNIST, else ../shared/data/<dataset>)")
    ap.add_argument("--train-samples", type=int, default=None)
    ap.add_argument("--test-samples", type=int, default=None)
    ap.add_argument("--checkpoint-every", type=int, default=2000)
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--branch-from", type=Path, default=None, metavar="CK",
                    help="start from the end of an epoch of another run (its last.npz or epochNNN.npz) "
                         "with this configuration: a new schedule, phases or dynamics for trained weights")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write a summary here")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.resume and a.branch_from:
        ap.error("--resume continues a run, --branch-from starts a new one: give one")
    c = load_conv_config(a.config)
    try:
        c = with_overrides(c, a.set)
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    dataset, data_dir = conv_train.run_data(c, a.dataset, a.data)
    out = a.out or RESULTS / f"{c.name}-{a.mode}-{dataset}"
    try:
        ck = conv_train.fit(c, out, a.epochs, mode=a.mode, resume=a.resume, dataset=dataset,
                            data_dir=data_dir, train_samples=a.train_samples, test_samples=a.test_samples,
                            checkpoint_every=a.checkpoint_every,
                            max_seconds=None if a.max_minutes is None else 60 * a.max_minutes,
                            branch_from=a.branch_from, progress=not a.no_progress)
    except (conv_train.ConvCheckpointError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    if ck.history:
        plot(ck.history, out / "training.png", f"{c.name} ({a.mode}, {dataset})")
    h = ck.history[-1] if ck.history else None
    summary = {"config": c.name, "mode": a.mode, "dataset": dataset, "epochs_done": ck.epoch,
               "history": ck.history,
               "command": "python " + " ".join(["bench/conv_train.py"] + (argv if argv is not None else sys.argv[1:]))}
    if h:
        summary["ms_per_sample"] = h["ms_per_sample"]
        summary["full_epoch_minutes"] = h["ms_per_sample"] * FULL_EPOCH / 6e4
        print(f"time per sample {h['ms_per_sample']:.1f} ms -> a {FULL_EPOCH}-sample epoch takes "
              f"{summary['full_epoch_minutes']:.0f} min on this machine")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(summary, indent=2))
    return summary


def plot(history, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [100 * h["train_accuracy"] for h in history], "o-", label="train (online)")
    ax.plot(ep, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    ax.set_xlabel("epoch"); ax.set_ylabel("accuracy (%)"); ax.set_title(title)
    ax.grid(alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


if __name__ == "__main__":
    main()
