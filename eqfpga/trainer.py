"""The training run around :func:`eqfpga.golden.train.train_sample`: data order, progress,
per-epoch evaluation, resumable checkpoints and the training-curve plot.

Sample order: epoch ``e`` visits the training set in ``permutation(seed, e)``, so a run resumed
from a checkpoint at (epoch, position) continues with exactly the samples and LFSR positions
an uninterrupted run would have used: the weights come out identical.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from eqfpga import checkpoint as ckpt
from eqfpga import data
from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train


def epoch_order(c: Config, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([c.seed, epoch]).permutation(n)


def fresh(c: Config) -> ckpt.Checkpoint:
    return ckpt.Checkpoint(c, network.init_params(c), ep_update.Streams.seeded(c))


def fit(c: Config, out: Path, epochs: int, *, resume: bool = False, dataset: str = "mnist",
        data_dir: Path | None = None, train_samples: int | None = None,
        test_samples: int | None = None, checkpoint_every: int = 5000,
        progress: bool = True, log=print) -> ckpt.Checkpoint:
    """Train to ``epochs`` completed epochs, checkpointing into ``out/last.npz``."""
    out = Path(out)
    last = out / "last.npz"
    if resume:
        ck = ckpt.load(last, c)
        log(f"resuming {last}: epoch {ck.epoch}, sample {ck.position}")
    else:
        ck = fresh(c)
    train_set = data.load("train", dataset, data_dir).take(train_samples)
    test_set = data.load("test", dataset, data_dir).take(test_samples)
    n = len(train_set)
    ck.meta.update({"dataset": dataset, "train_samples": n, "test_samples": len(test_set)})
    from tqdm import tqdm

    while ck.epoch < epochs:
        order = epoch_order(c, ck.epoch, n)
        rule = c.at_epoch(ck.epoch)
        bar = tqdm(total=n, initial=ck.position, desc=f"epoch {ck.epoch + 1}/{epochs}",
                   unit="sample", disable=not progress, mininterval=1.0)
        correct = ck.meta.get("epoch_correct", 0)
        t0, done0 = time.perf_counter(), ck.position
        try:
            while ck.position < n:
                i = order[ck.position]
                r = train.train_sample(train_set.images[i], int(train_set.labels[i]),
                                       ck.params, rule, ck.streams)
                correct += int(r.prediction == train_set.labels[i])
                ck.position += 1
                ck.samples_seen += 1
                bar.update(1)
                if ck.position % checkpoint_every == 0 and ck.position < n:
                    ck.meta["epoch_correct"] = correct
                    ckpt.save(ck, last)
        except KeyboardInterrupt:
            ck.meta["epoch_correct"] = correct
            ckpt.save(ck, last)
            bar.close()
            log(f"stopped: checkpoint saved to {last} (continue with --resume)")
            raise
        bar.close()
        seconds = time.perf_counter() - t0
        test_acc = train.accuracy(test_set.images, test_set.labels, ck.params, c)
        ck.epoch += 1
        ck.position = 0
        ck.meta["epoch_correct"] = 0
        entry = {"epoch": ck.epoch, "train_accuracy": correct / n, "test_accuracy": test_acc,
                 "seconds": seconds, "ms_per_sample": 1e3 * seconds / max(1, n - done0)}
        ck.history.append(entry)
        ckpt.save(ck, last)
        ckpt.save(ck, out / f"epoch{ck.epoch:03d}.npz")
        (out / "history.json").write_text(json.dumps(ck.history, indent=2))
        plot_history(ck.history, out / "training.png", c.name)
        log(f"epoch {ck.epoch}: train {entry['train_accuracy']:.2%}  test {test_acc:.2%}  "
            f"({seconds:.0f} s, {entry['ms_per_sample']:.2f} ms/sample)")
    return ck


def plot_history(history: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [100 * h["train_accuracy"] for h in history], "o-", label="train (online)")
    ax.plot(ep, [100 * h["test_accuracy"] for h in history], "s-", label="test")
    ax.set_xlabel("epoch"); ax.set_ylabel("accuracy (%)"); ax.set_title(f"eqfpga: {title}")
    ax.grid(alpha=0.3); ax.legend()
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)
