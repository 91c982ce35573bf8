"""The training run around :func:`eqfpga.golden.train.train_sample`: data order, progress,
per-epoch evaluation, resumable checkpoints and the training-curve plot.

Sample order: epoch ``e`` visits the training set in ``permutation(seed, e)``, each image moved
by a shift drawn from ``(seed, e, 1)`` when ``augment_shift`` is set, so a run resumed from a
checkpoint at (epoch, position) continues with exactly the samples and LFSR positions an
uninterrupted run would have used: the weights come out identical. Every trainer (golden,
float reference, on chip) takes its samples from :func:`epoch_samples`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from eqfpga import checkpoint as ckpt
from eqfpga import data, run_folder
from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train


def epoch_order(c: Config, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([c.seed, epoch]).permutation(n)


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Square row-major images (n, side*side) moved down by ``dy`` and right by ``dx`` pixels
    (negative: up, left); pixels moved in from outside are 0."""
    n, side = len(images), math.isqrt(images.shape[1])
    src = images.reshape(n, side, side)
    out = np.zeros_like(src)
    out[:, max(dy, 0):side + min(dy, 0), max(dx, 0):side + min(dx, 0)] = \
        src[:, max(-dy, 0):side + min(-dy, 0), max(-dx, 0):side + min(-dx, 0)]
    return out.reshape(n, side * side)


def epoch_samples(c: Config, images: np.ndarray, labels: np.ndarray,
                  epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The images and labels epoch ``epoch`` (from 0) trains on, in the order it visits them."""
    order = epoch_order(c, epoch, len(images))
    x, y = images[order], labels[order]
    if c.augment_shift:
        s = c.augment_shift
        moves = np.random.default_rng([c.seed, epoch, 1]).integers(-s, s + 1, size=(len(x), 2))
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                pick = (moves[:, 0] == dy) & (moves[:, 1] == dx)
                if (dy or dx) and pick.any():
                    x[pick] = shift_images(x[pick], dy, dx)
    return x, y


def fresh(c: Config) -> ckpt.Checkpoint:
    return ckpt.Checkpoint(c, network.init_params(c), ep_update.Streams.seeded(c))


def fit(c: Config, out: Path, epochs: int, *, resume: bool = False, force: bool = False,
        dataset: str = "mnist", data_dir: Path | None = None, train_samples: int | None = None,
        test_samples: int | None = None, checkpoint_every: int = 5000,
        progress: bool = True, log=print) -> ckpt.Checkpoint:
    """Train to ``epochs`` completed epochs, checkpointing into ``out/last.npz``.

    Parameters
    ----------
    c : Config
        The network; its images must be the data sets' 28x28 (``c.pixels == 784``).
    out : path
        The run folder: ``last.npz``, ``epochNNN.npz``, ``history.json``, ``training.png``.
    epochs : int
        Epochs the run has completed when this returns (>= 1; counted from the run's start,
        so a resumed run trains only the missing ones).
    resume : bool
        Continue the run in ``out`` with the settings it started with (data set and sample
        counts; others raise :class:`~eqfpga.run_folder.RunError`).
    force : bool
        Start a new run in ``out`` even if it holds one (whose files are deleted first);
        without it, and without ``resume``, such a folder raises ``RunError``.
    dataset, data_dir :
        The data (:func:`eqfpga.data.load`).
    train_samples, test_samples : int or None
        Use the first N training / test images (1 to the split's size); None: all.
    checkpoint_every : int
        Samples between checkpoints within an epoch (>= 1).

    Raises
    ------
    RunError
        (a ``ValueError``) for impossible counts, changed settings or an occupied folder,
        before anything is trained or written.
    CheckpointError
        If ``resume`` finds no valid checkpoint for ``c``.
    """
    out = Path(out)
    last = out / "last.npz"
    run_folder.count("epochs", epochs)
    run_folder.count("checkpoint_every", checkpoint_every)
    for name, value in (("train_samples", train_samples), ("test_samples", test_samples)):
        if value is not None:
            run_folder.count(name, value)
    if resume and force:
        raise run_folder.RunError("resume continues the run in the folder, force starts it over: not both")
    if c.pixels != 784:
        raise run_folder.RunError(f"configuration {c.name!r} takes {c.pixels}-pixel images; the data "
                                  f"sets' images are 28x28 = 784 pixels")
    ck = ckpt.load(last, c) if resume else fresh(c)
    train_set = data.load("train", dataset, data_dir)
    test_set = data.load("test", dataset, data_dir)
    if train_samples is not None:
        train_set = train_set.take(run_folder.count(
            "train_samples", train_samples, available=len(train_set), of=f"{dataset} training images"))
    if test_samples is not None:
        test_set = test_set.take(run_folder.count(
            "test_samples", test_samples, available=len(test_set), of=f"{dataset} test images"))
    n = len(train_set)
    wanted = run_folder.settings(dataset, n, len(test_set))
    if resume:
        run_folder.check_resume(last, ck.meta, ck.position, ck.epoch, wanted)
        log(f"resuming {last}: epoch {ck.epoch}, sample {ck.position}")
        if ck.epoch >= epochs:
            log(f"the run has completed {ck.epoch} epoch(s) already: nothing to train "
                f"(epochs counts the run's epochs from its start)")
    else:
        run_folder.claim(out, force)
    ck.meta.update(wanted)
    from tqdm import tqdm

    while ck.epoch < epochs:
        xs, ys = epoch_samples(c, train_set.images, train_set.labels, ck.epoch)
        rule = c.at_epoch(ck.epoch)
        bar = tqdm(total=n, initial=ck.position, desc=f"epoch {ck.epoch + 1}/{epochs}",
                   unit="sample", disable=not progress, mininterval=1.0)
        correct = ck.meta.get("epoch_correct", 0)
        t0, done0 = time.perf_counter(), ck.position
        try:
            while ck.position < n:
                k = ck.position
                r = train.train_sample(xs[k], int(ys[k]), ck.params, rule, ck.streams)
                correct += int(r.prediction == ys[k])
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
        ckpt.write_atomically(out / "history.json", json.dumps(ck.history, indent=2).encode())
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
