"""The one trainer: data order and augmentation, resumable runs, per-epoch evaluation, branching,
averaging, and the training-curve plot, for every configuration and training mode.

``mode`` is ``"int"`` (the integer golden model, :mod:`eqfpga.golden.train`: the chip's
arithmetic), ``"float"`` (the float reference, :mod:`eqfpga.golden.conv_float`, rate neurons,
learning rates implied by the integer shifts) or ``"float-spiking"`` (the float reference with
sigma-delta spiking neurons). Epoch ``e`` visits the training set in ``permutation([seed, e])``
in batches of ``batch_size`` (1: per sample, as the chip trains), each image moved and mirrored
as :func:`epoch_augmentation` draws from ``(seed, e)``. A checkpoint
(:mod:`eqfpga.checkpoint`) holds the parameters, the LFSR stream positions, the position
(epoch, sample) and the history; a run stopped at any point (Ctrl-C, SIGTERM or
``max_seconds`` save a checkpoint first) continues with ``resume=True`` and, in integer mode,
ends with exactly the weights of an uninterrupted run. Every trainer (golden, float reference,
on chip) takes its samples from :func:`epoch_order`, :func:`epoch_augmentation` and
:func:`batch_images`.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eqfpga import data, run_folder
from eqfpga.checkpoint import MODES, Checkpoint, CheckpointError, load, save, write_atomically
from eqfpga.config import Config
from eqfpga.golden import conv_float as cf
from eqfpga.golden import ep_update, network, train


#: Where data sets that are not shipped are looked for by default: ``shared/data/<name>``
#: beside the repository (the layout of the development and CI machines).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_data(c: Config, dataset: str | None = None, data_dir=None) -> tuple[str, Path | None]:
    """The data set of a run (given, else Fashion-MNIST for configurations named for it, else
    MNIST) and its folder (given, else the shipped MNIST or :data:`SHARED_DATA`)."""
    dataset = dataset or ("fashion-mnist" if "fashion" in c.name else "mnist")
    if data_dir is None and dataset != "mnist" and (SHARED_DATA / dataset).is_dir():
        data_dir = SHARED_DATA / dataset
    return dataset, data_dir


def epoch_order(c: Config, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([c.seed, epoch]).permutation(n)


class Augmentation(NamedTuple):
    """How an epoch changes its training images, one row per position of its order: a
    (rows, columns) translation in [-shift_pixels, shift_pixels] and a left-right mirror flag
    (applied first); None where the configuration asks for neither."""
    shifts: np.ndarray | None
    mirrors: np.ndarray | None


def epoch_augmentation(c: Config, epoch: int, n: int) -> Augmentation:
    """``epoch``'s augmentation: a function of the seed and the epoch only, so a resumed run
    sees the same images. Shifts and mirrors come from separate streams, so adding one leaves
    the other's draws as they were."""
    shifts = mirrors = None
    if c.shift_pixels:
        shifts = np.random.default_rng([c.seed, epoch, 1]).integers(-c.shift_pixels, c.shift_pixels + 1, (n, 2))
    if c.mirror_images:
        mirrors = np.random.default_rng([c.seed, epoch, 2]).integers(0, 2, n).astype(bool)
    return Augmentation(shifts, mirrors)


def network_split(c: Config, split: data.Split, dataset: str = "the data set") -> data.Split:
    """``split`` with its images as ``c`` takes them (:func:`eqfpga.data.images_for`; raises
    :class:`~eqfpga.run_folder.RunError`, one line, where they cannot be)."""
    try:
        images = data.images_for(split, c.input_shape, c.outputs, f"configuration {c.name!r}", dataset)
    except data.DataError as e:
        raise run_folder.RunError(str(e)) from None
    return data.Split(images, split.labels, c.input_shape if c.is_image else split.shape)


def batch_images(split: data.Split, order: np.ndarray, augmentation: Augmentation, start: int, size: int):
    """Images and labels of the batch at ``start`` of an epoch's ``order``, changed as
    ``augmentation`` says."""
    idx = order[start:start + size]
    images = split.images[idx]
    if augmentation.mirrors is not None:
        images = data.mirror(images, augmentation.mirrors[start:start + size], split.shape)
    if augmentation.shifts is not None:
        images = data.translate(images, augmentation.shifts[start:start + size], split.shape)
    return images, split.labels[idx]


def epoch_samples(c: Config, images: np.ndarray, labels: np.ndarray,
                  epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """All the images and labels epoch ``epoch`` (from 0) trains on, in the order it visits
    them (what :func:`batch_images` gives batch by batch)."""
    order, aug = epoch_order(c, epoch, len(images)), epoch_augmentation(c, epoch, len(images))
    shape = c.input_shape if c.is_image else (images.shape[1],)
    return batch_images(data.Split(images, labels, shape), order, aug, 0, len(images))


def fresh(c: Config, mode: str = "int") -> Checkpoint:
    """A run's start: the seeded initial weights (:func:`eqfpga.golden.network.init_params`,
    as float32 in the float modes) and LFSR streams (none in the float modes)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    p = network.init_params(c)
    if mode != "int":
        p = cf.FParams.from_int(p, c, np.float32)
    return Checkpoint(c, p, ep_update.Streams.seeded(c) if mode == "int" else [], mode=mode)


def _check_weights_fit(path, own: Config, c: Config, integer: bool) -> None:
    """Weights saved under ``own`` can serve ``c``: the same network and, for ``integer``
    weights, the same weight and bias formats (learning rule, phases and dynamics may differ)."""
    fixed = ("input_shape", "crop", "pad") + (("weight_bits", "weight_frac_bits", "bias_bits") if integer else ())
    differ = [f for f in fixed if getattr(own, f) != getattr(c, f)]
    if [ly.weight_shape for ly in own.geometry] != [ly.weight_shape for ly in c.geometry] or \
            [(ly.kind, ly.pool, ly.pooling) for ly in own.geometry] != [(ly.kind, ly.pool, ly.pooling) for ly in c.geometry]:
        differ.append("layers")
    if differ:
        raise CheckpointError(f"{path}: its weights do not fit configuration {c.name!r} "
                                  f"(they differ in {', '.join(differ)})")


def convert(ck: Checkpoint, c: Config, mode: str, source="") -> Checkpoint:
    """``ck``'s weights as a checkpoint of ``mode`` on configuration ``c`` (the same network):
    the real values ``W_int * 2**-weight_frac_bits`` are kept; into the integer model they are
    rounded half up to ``c``'s weight and bias formats and saturated at their ends. Where they
    came from and how many saturated is recorded in ``meta["converted"]``; position, streams and
    history carry over."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    _check_weights_fit(source or "checkpoint", ck.config, c, integer=False)   # any formats: it rounds

    def real(a):
        a = np.asarray(a, np.float64)
        return a * 2.0 ** -ck.config.weight_frac_bits if ck.mode == "int" else a

    saturated = 0
    if mode == "int":
        def to_int(a, lo, hi):
            nonlocal saturated
            q = np.floor(real(a) * 2.0 ** c.weight_frac_bits + 0.5)
            saturated += int(np.count_nonzero((q < lo) | (q > hi)))
            return np.clip(q, lo, hi).astype(np.int64)
        params = network.Params([to_int(w, *c.weight_range) for w in ck.params.w],
                             [to_int(b, *c.bias_range) for b in ck.params.b])
    else:
        params = cf.FParams([real(w).astype(np.float32) for w in ck.params.w],
                            [real(b).astype(np.float32) for b in ck.params.b])
    converted = {"from": str(source), "mode": ck.mode, "config": ck.config.name, "saturated": saturated}
    return Checkpoint(c, params, ck.streams, ck.epoch, ck.position, ck.samples_seen, ck.history,
                      {**ck.meta, "converted": ck.meta.get("converted", []) + [converted]}, mode)


def branch(path: str | Path, c: Config, mode: str) -> Checkpoint:
    """A run on configuration ``c`` that starts from the end of an epoch of another run (its
    ``last.npz`` or ``epochNNN.npz``): weights, LFSR streams, epoch count and history carry
    over; the learning rule, phases and dynamics become ``c``'s (its schedule at that epoch).
    The network must be the same and, for the integer model, the weight and bias formats too,
    unless the other run trained in another mode: then its weights are converted
    (:func:`convert`; a float run finished in the integer model, say)."""
    ck = load(path)
    old = ck.config
    if ck.mode == mode:
        _check_weights_fit(path, old, c, integer=mode == "int")
    if ck.position:
        raise CheckpointError(f"{path}: saved in the middle of epoch {ck.epoch + 1}; branch from "
                                  f"the end of an epoch (epoch{ck.epoch:03d}.npz)")
    if ck.mode != mode:
        ck = convert(ck, c, mode, path)
    branches = ck.meta.get("branches", []) + [{"from": str(path), "config": old.name,
                                               "model_hash": old.model_hash, "epoch": ck.epoch}]
    return Checkpoint(c, ck.params, ck.streams, ck.epoch, 0, ck.samples_seen, ck.history,
                      {"branches": branches, **({"converted": ck.meta["converted"]}
                                               if "converted" in ck.meta else {})}, mode)


def average(paths) -> Checkpoint:
    """The element-wise mean of the weights and biases of several checkpoints of one network
    (the epochs of a run, or of a run and its branches): the others must fit the last one's
    configuration (:func:`branch`'s rule) and share its mode. Integer weights are the exact
    mean rounded half up, so they stay in range and are integers of the same format; the
    result carries the last checkpoint's configuration, epoch and history, and records its
    sources in ``meta["averaged"]``. Training noise (stochastic rounding, the last batches'
    steps) averages out while the weights themselves have levelled off."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average needs at least one checkpoint")
    cks = [load(p) for p in paths]
    last = cks[-1]
    for p, ck in zip(paths, cks):
        if ck.mode != last.mode:
            raise CheckpointError(f"{p}: trained in {ck.mode} mode, not {last.mode} like {paths[-1]}")
        _check_weights_fit(p, ck.config, last.config, integer=last.mode == "int")
    n = len(cks)
    if last.mode == "int":
        def mean(arrays):   # floor((sum + n/2) / n), in integers
            return (2 * np.sum(arrays, axis=0) + n) // (2 * n)
        params = network.Params
    else:
        def mean(arrays):
            return np.mean(np.asarray(arrays, np.float64), axis=0).astype(arrays[0].dtype)
        params = cf.FParams
    L = last.config.n_layers
    averaged = params([mean([ck.params.w[i] for ck in cks]) for i in range(L)],
                      [mean([ck.params.b[i] for ck in cks]) for i in range(L)])
    sources = []
    for p, ck in zip(paths, cks):   # each with the test result its own run recorded for it
        h = ck.history[-1] if ck.history and not ck.position and ck.history[-1]["epoch"] == ck.epoch else {}
        sources.append({"from": str(p), "epoch": ck.epoch, "position": ck.position,
                        "test_accuracy": h.get("test_accuracy"), "test_samples": h.get("test_samples")})
    return Checkpoint(last.config, averaged, last.streams, last.epoch, last.position,
                      last.samples_seen, last.history, {**last.meta, "averaged": sources}, last.mode)


def train_step(ck: Checkpoint, rule: Config, images, labels) -> np.ndarray:
    """One update of ``ck``'s parameters (and LFSR streams) in place from the batch ``images``
    (8-bit, ``(B, pixels)``) and ``labels`` under the learning rule ``rule`` (``ck.config`` at
    an epoch, :meth:`~eqfpga.config.Config.at_epoch`); returns the free phase's predictions."""
    if ck.mode == "int":
        return train.train_batch(images, labels, ck.params, rule, ck.streams)
    return cf.train_batch(images, labels, ck.params, rule, spiking=ck.mode == "float-spiking")


def evaluate(ck: Checkpoint, images, labels) -> float:
    """Test accuracy of ``ck``'s parameters on ``images`` (8-bit) with ``labels``, in its mode."""
    if ck.mode == "int":
        return network.accuracy(images, labels, ck.params, ck.config)
    return cf.accuracy(images, labels, ck.params, ck.config, spiking=ck.mode == "float-spiking")


class _Stop(Exception):
    """Ends a run early: Ctrl-C, SIGTERM, or ``max_seconds`` reached."""


class _Signals:
    """Ctrl-C (SIGINT) and SIGTERM while :func:`fit` runs. Outside a :meth:`deferred` block they
    stop the run at once (:class:`_Stop`, which :func:`fit` turns into a checkpoint); inside one
    they wait for its end. A batch's update is such a block: cut short, it would leave some
    weight layers and LFSR streams advanced and others not, and the resumed run could not repeat
    it exactly. Handlers are only installed in the main thread (Python delivers signals there)."""

    def __init__(self):
        self.deferring = False
        self.pending = False
        self._old = {}

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self.deferring:
            self.pending = True
        else:
            raise _Stop()

    @contextmanager
    def deferred(self):
        """A block that signals do not cut: one that arrives meanwhile raises :class:`_Stop`
        once the block is done."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending:
            raise _Stop()

    def ignore(self) -> None:
        """The run is ending (saving its last checkpoint): later signals change nothing."""
        self.deferring = True


def fit(c: Config, out: Path, epochs: int, *, mode: str = "int", resume: bool = False,
        dataset: str = "mnist", data_dir=None, train_samples: int | None = None,
        test_samples: int | None = None, checkpoint_every: int = 2000, max_seconds: float | None = None,
        branch_from: str | Path | None = None, force: bool = False, progress: bool = True,
        log=print) -> Checkpoint:
    """Train to ``epochs`` completed epochs, checkpointing into ``out/last.npz``.

    Parameters
    ----------
    c : Config
        The network and its learning rule (batches of ``c.batch_size``); the data set's
        images must have its input shape (:func:`network_split`).
    out : path
        The run folder: ``last.npz``, ``epochNNN.npz``, ``history.json``, ``training.png``.
    epochs : int
        Epochs the run has completed when it ends (>= 1; counted from the run's start, so a
        resumed or branched run trains only the missing ones).
    mode : str
        One of :data:`eqfpga.checkpoint.MODES`.
    resume : bool
        Continue the run in ``out`` with the settings it started with (data set and sample
        counts; others raise :class:`~eqfpga.run_folder.RunError`).
    force : bool
        Start a new run (fresh or branched) in ``out`` even if it holds one, whose files are
        deleted first; without it, and without ``resume``, such a folder raises ``RunError``.
    dataset, data_dir :
        The data (:func:`eqfpga.data.load`).
    train_samples, test_samples : int or None
        Use the first N training / test images (1 to the split's size); None: all.
    checkpoint_every : int
        Samples between checkpoints within an epoch (>= 1); one is also written at each epoch's
        end (with ``epochNNN.npz``) and when the run stops early.
    max_seconds : float or None
        Stop (with a checkpoint) once this much time has passed since the start.
    branch_from : path or None
        Start from another run's checkpoint instead of fresh weights (:func:`branch`).
    progress, log :
        A progress bar; where one-line messages go.

    Returns
    -------
    Checkpoint
        The run's state when it ended: after ``epochs`` epochs, or earlier (``epoch < epochs``)
        when Ctrl-C, SIGTERM or ``max_seconds`` stopped it; ``out/last.npz`` then holds that
        state, and ``resume=True`` continues it to exactly the weights of an uninterrupted
        run in integer mode. A signal during a batch's update takes effect after it.

    Raises
    ------
    RunError
        (a ``ValueError``) for impossible counts, a mode the network cannot train in, changed
        settings or an occupied folder, before anything is trained or written.
    CheckpointError
        If ``resume`` or ``branch_from`` finds no valid checkpoint for ``c`` and ``mode``.
    """
    out = Path(out)
    last = out / "last.npz"
    run_folder.count("epochs", epochs)
    run_folder.count("checkpoint_every", checkpoint_every)
    for name, value in (("train_samples", train_samples), ("test_samples", test_samples)):
        if value is not None:
            run_folder.count(name, value)
    if mode not in MODES:
        raise run_folder.RunError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if resume and branch_from is not None:
        raise run_folder.RunError("resume continues this run; branch_from starts a new one: not both")
    if resume and force:
        raise run_folder.RunError("resume continues the run in the folder, force starts it over: not both")
    if mode != "int" and c.geometry[0].kind != "conv":
        # golden/conv_float.py's float networks start with a convolution
        raise run_folder.RunError(f"mode {mode!r}: the float references take networks whose first layer is "
                                  f"a convolution; configuration {c.name!r} is {c.describe_layers()} "
                                  f"(train it in mode 'int')")
    if resume:
        ck = load(last, c, mode)
    elif branch_from is not None:
        ck = branch(branch_from, c, mode)
    else:
        ck = fresh(c, mode)
    train_set = data.load("train", dataset, data_dir)
    test_set = data.load("test", dataset, data_dir)
    if train_samples is not None:
        train_set = train_set.take(run_folder.count(
            "train_samples", train_samples, available=len(train_set), of=f"{dataset} training images"))
    if test_samples is not None:
        test_set = test_set.take(run_folder.count(
            "test_samples", test_samples, available=len(test_set), of=f"{dataset} test images"))
    name = data.dataset_name(dataset)
    train_set, test_set = (network_split(c, s, name) for s in (train_set, test_set))
    n = len(train_set)
    wanted = run_folder.settings(dataset, n, len(test_set))
    if resume:
        run_folder.check_resume(last, ck.meta, ck.position, ck.epoch, wanted)
        log(f"resuming {last}: epoch {ck.epoch}, sample {ck.position}")
    else:
        run_folder.claim(out, force)
        if branch_from is not None:
            log(f"branching from {branch_from} after epoch {ck.epoch}")
    if ck.epoch >= epochs:
        log(f"the run has completed {ck.epoch} epoch(s) already: nothing to train "
            f"(epochs counts the run's epochs from its start)")
    ck.meta.update(wanted)
    from tqdm import tqdm

    t_start = time.perf_counter()
    with _Signals() as signals:
        while ck.epoch < epochs:
            order, augmentation = epoch_order(c, ck.epoch, n), epoch_augmentation(c, ck.epoch, n)
            rule = c.at_epoch(ck.epoch)
            bar = tqdm(total=n, initial=ck.position, desc=f"{mode} epoch {ck.epoch + 1}/{epochs}",
                       unit="sample", disable=not progress, mininterval=1.0)
            correct = ck.meta.get("epoch_correct", 0)
            secs = ck.meta.get("epoch_seconds", 0.0)
            try:
                while ck.position < n:
                    images, labels = batch_images(train_set, order, augmentation, ck.position, c.batch_size)
                    t0 = time.perf_counter()
                    with signals.deferred():
                        pred = train_step(ck, rule, images, labels)
                        correct += int(np.sum(pred == labels))
                        ck.position += len(labels)
                        ck.samples_seen += len(labels)
                        secs += time.perf_counter() - t0
                    bar.update(len(labels))
                    bar.set_postfix(train=f"{correct / ck.position:.1%}")
                    if ck.position < n and ck.position // checkpoint_every > (ck.position - len(labels)) // checkpoint_every:
                        ck.meta.update(epoch_correct=correct, epoch_seconds=secs)
                        save(ck, last)
                    if max_seconds is not None and time.perf_counter() - t_start > max_seconds and ck.position < n:
                        raise _Stop()
                t0 = time.perf_counter()
                test_acc = evaluate(ck, test_set.images, test_set.labels)
                eval_s = time.perf_counter() - t0
            except (KeyboardInterrupt, _Stop):
                # the state is that after the last whole batch (an evaluation cut short is redone)
                signals.ignore()
                ck.meta.update(epoch_correct=correct, epoch_seconds=secs)
                save(ck, last)
                bar.close()
                log(f"stopped at epoch {ck.epoch}, sample {ck.position}: checkpoint {last} "
                    f"(continue with --resume)")
                return ck
            bar.close()
            try:
                with signals.deferred():
                    ck.epoch += 1
                    ck.position = 0
                    ck.meta.update(epoch_correct=0, epoch_seconds=0.0)
                    entry = {"epoch": ck.epoch, "train_accuracy": correct / n, "test_accuracy": test_acc,
                             "train_seconds": secs, "ms_per_sample": 1e3 * secs / n,
                             "eval_seconds": eval_s, "eval_ms_per_sample": 1e3 * eval_s / max(1, len(test_set)),
                             "train_samples": n, "test_samples": len(test_set)}
                    ck.history.append(entry)
                    save(ck, last)
                    save(ck, out / f"epoch{ck.epoch:03d}.npz")
                    write_atomically(out / "history.json", json.dumps(ck.history, indent=2).encode())
                    plot_history(ck.history, out / "training.png", f"{c.name} ({mode})")
                    log(f"{mode} epoch {ck.epoch}: train {entry['train_accuracy']:.2%}  test {test_acc:.2%}  "
                        f"({secs:.0f} s, {entry['ms_per_sample']:.1f} ms/sample training, "
                        f"{entry['eval_ms_per_sample']:.1f} ms/sample inference)")
            except _Stop:
                signals.ignore()
                if ck.epoch < epochs:
                    log(f"stopped after epoch {ck.epoch}: checkpoint {last} (continue with --resume)")
                return ck
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
