"""Training run of the convolutional EP network: resumable checkpoints, progress, per-epoch figures.

``mode`` is ``"int"`` (the integer golden model, :mod:`eqfpga.golden.conv`), ``"float"`` (the
float reference, :mod:`eqfpga.golden.conv_float`, rate neurons, learning rates implied by the
integer shifts) or ``"float-spiking"`` (the float reference with sigma-delta spiking neurons).
Epoch ``e`` visits the training set in ``permutation([seed, e])`` in batches of ``batch_size``;
a checkpoint holds the parameters, the LFSR stream positions, the position (epoch, batch) and
the history, with a SHA-256 over all of it, and is written atomically. A run stopped at any
point (Ctrl-C or SIGTERM save a checkpoint first) continues with ``resume=True`` and, in
integer mode, ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from eqfpga import data, run_folder
from eqfpga.checkpoint import meta_problem, read_archive, write_atomically
from eqfpga.conv_config import SECTIONS, TRAINING_MODES as MODES, ConvConfig, ConfigError, conv_config_from_dict
from eqfpga.golden import conv, conv_float as cf

FORMAT = "eqfpga-conv-checkpoint-1"


class ConvCheckpointError(Exception):
    """A conv checkpoint is missing, corrupt, or made for another configuration or mode."""


@dataclass
class ConvCheckpoint:
    config: ConvConfig
    mode: str                 # one of MODES
    params: object            # conv.Params or conv_float.FParams
    streams: list
    epoch: int = 0            # epochs completed
    position: int = 0         # samples done within the current epoch
    samples_seen: int = 0
    history: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # further arrays of a trainer (an optimiser's moments)


_EXTRA = "x_"   # file-name prefix of the extra arrays


def _arrays(ck: ConvCheckpoint) -> dict[str, np.ndarray]:
    p = ck.params
    d = {f"w{i + 1}": a for i, a in enumerate(p.w)}
    d.update({f"b{i + 1}": a for i, a in enumerate(p.b)})
    d.update({_EXTRA + k: np.asarray(a) for k, a in ck.extra.items()})
    return d


def _digest(arrays: dict, meta: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode()); h.update(str(a.dtype).encode()); h.update(str(a.shape).encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save(ck: ConvCheckpoint, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(ck)
    meta = {"format": FORMAT, "mode": ck.mode, "config": ck.config.to_dict(),
            "model_hash": ck.config.model_hash, "streams": list(map(int, ck.streams)),
            "epoch": ck.epoch, "position": ck.position, "samples_seen": ck.samples_seen,
            "history": ck.history, "meta": ck.meta}
    meta["sha256"] = _digest(arrays, meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return write_atomically(path, buf.getvalue())


def load(path: str | Path, config: ConvConfig | None = None, mode: str | None = None) -> ConvCheckpoint:
    path = Path(path)
    if not path.is_file():
        raise ConvCheckpointError(f"{path}: checkpoint not found")
    try:
        meta, arrays = read_archive(path, (), "eqfpga conv checkpoint")
    except ValueError as e:
        raise ConvCheckpointError(f"{path}: {e}") from None
    if meta.get("format") != FORMAT:
        raise ConvCheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    stored = meta.pop("sha256", None)
    if stored != _digest(arrays, meta):
        raise ConvCheckpointError(f"{path}: checksum mismatch (the file is corrupt or was edited)")
    problem = meta_problem(meta)
    if problem is None and meta.get("mode") not in MODES:
        problem = f"its meta's 'mode' must be one of {', '.join(MODES)}, got {meta.get('mode')!r}"
    if problem:
        raise ConvCheckpointError(f"{path}: {problem}")
    try:
        own = conv_config_from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise ConvCheckpointError(f"{path}: its configuration is invalid ({e})") from None
    if meta["mode"] == "int" and len(meta["streams"]) != 2 * own.n_layers:   # float modes draw none
        raise ConvCheckpointError(f"{path}: its meta's 'streams' must hold {2 * own.n_layers} positions "
                                  f"(two per weight layer), got {len(meta['streams'])}")
    missing = [k for i in range(own.n_layers) for k in (f"w{i + 1}", f"b{i + 1}") if k not in arrays]
    if missing:
        raise ConvCheckpointError(f"{path}: the archive has no {', '.join(missing)} for its "
                                  f"{own.n_layers} weight layers")
    if config is not None and config.model_hash != own.model_hash:
        ours, theirs = own.to_dict(), config.to_dict()
        differ = [k for k in ours if k not in ("name", "description") and ours[k] != theirs[k]]
        raise ConvCheckpointError(f"{path}: made for configuration {own.name!r}, not {config.name!r} "
                                  f"(they differ in {', '.join(differ)})")
    if mode is not None and meta["mode"] != mode:
        raise ConvCheckpointError(f"{path}: trained in {meta['mode']} mode, not {mode}")
    L = own.n_layers
    extra = {k[len(_EXTRA):]: arrays.pop(k) for k in [k for k in arrays if k.startswith(_EXTRA)]}
    if meta["mode"] == "int":
        params = conv.Params.from_arrays(arrays, own)
        try:
            params.check(own)
        except ValueError as e:
            raise ConvCheckpointError(f"{path}: {e}") from None
    else:
        params = cf.FParams([arrays[f"w{i + 1}"] for i in range(L)], [arrays[f"b{i + 1}"] for i in range(L)])
    return ConvCheckpoint(own, meta["mode"], params, meta["streams"], meta["epoch"], meta["position"],
                          meta["samples_seen"], meta["history"], meta["meta"], extra)


#: Where data sets that are not shipped are looked for by default: ``shared/data/<name>``
#: beside the repository (the layout of the development and CI machines).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def run_data(c: ConvConfig, dataset: str | None = None, data_dir=None) -> tuple[str, Path | None]:
    """The data set of a run (given, else Fashion-MNIST for configurations named for it, else
    MNIST) and its folder (given, else the shipped MNIST or :data:`SHARED_DATA`)."""
    dataset = dataset or ("fashion-mnist" if "fashion" in c.name else "mnist")
    if data_dir is None and dataset != "mnist" and (SHARED_DATA / dataset).is_dir():
        data_dir = SHARED_DATA / dataset
    return dataset, data_dir


def epoch_order(c: ConvConfig, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([c.seed, epoch]).permutation(n)


class Augmentation(NamedTuple):
    """How an epoch changes its training images, one row per position of its order: a
    (rows, columns) translation in [-shift_pixels, shift_pixels] and a left-right mirror flag
    (applied first); None where the configuration asks for neither."""
    shifts: np.ndarray | None
    mirrors: np.ndarray | None


def epoch_augmentation(c: ConvConfig, epoch: int, n: int) -> Augmentation:
    """``epoch``'s augmentation: a function of the seed and the epoch only, so a resumed run
    sees the same images. Shifts and mirrors come from separate streams, so adding one leaves
    the other's draws as they were."""
    shifts = mirrors = None
    if c.shift_pixels:
        shifts = np.random.default_rng([c.seed, epoch, 1]).integers(-c.shift_pixels, c.shift_pixels + 1, (n, 2))
    if c.mirror_images:
        mirrors = np.random.default_rng([c.seed, epoch, 2]).integers(0, 2, n).astype(bool)
    return Augmentation(shifts, mirrors)


def batch_images(split: data.Split, order: np.ndarray, augmentation: Augmentation, start: int, size: int):
    """Images and labels of the batch at ``start`` of an epoch's ``order``, changed as
    ``augmentation`` says."""
    idx = order[start:start + size]
    images = split.images[idx]
    if augmentation.mirrors is not None:
        images = data.mirror(images, augmentation.mirrors[start:start + size])
    if augmentation.shifts is not None:
        images = data.translate(images, augmentation.shifts[start:start + size])
    return images, split.labels[idx]


def fresh(c: ConvConfig, mode: str) -> ConvCheckpoint:
    p = conv.init_params(c)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "int":
        p = cf.FParams.from_int(p, c, np.float32)
    return ConvCheckpoint(c, mode, p, conv.seeded_streams(c))


def _check_weights_fit(path, own: ConvConfig, c: ConvConfig, integer: bool) -> None:
    """Weights saved under ``own`` can serve ``c``: the same network and, for ``integer``
    weights, the same weight and bias formats (learning rule, phases and dynamics may differ)."""
    fixed = SECTIONS["network"] + (("weight_bits", "weight_frac_bits", "bias_bits") if integer else ())
    differ = [f for f in fixed if getattr(own, f) != getattr(c, f)]
    if differ:
        raise ConvCheckpointError(f"{path}: its weights do not fit configuration {c.name!r} "
                                  f"(they differ in {', '.join(differ)})")


def convert(ck: ConvCheckpoint, c: ConvConfig, mode: str, source="") -> ConvCheckpoint:
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
        params = conv.Params([to_int(w, *c.weight_range) for w in ck.params.w],
                             [to_int(b, *c.bias_range) for b in ck.params.b])
    else:
        params = cf.FParams([real(w).astype(np.float32) for w in ck.params.w],
                            [real(b).astype(np.float32) for b in ck.params.b])
    converted = {"from": str(source), "mode": ck.mode, "config": ck.config.name, "saturated": saturated}
    return ConvCheckpoint(c, mode, params, ck.streams, ck.epoch, ck.position, ck.samples_seen, ck.history,
                          {**ck.meta, "converted": ck.meta.get("converted", []) + [converted]})


def branch(path: str | Path, c: ConvConfig, mode: str) -> ConvCheckpoint:
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
        raise ConvCheckpointError(f"{path}: saved in the middle of epoch {ck.epoch + 1}; branch from "
                                  f"the end of an epoch (epoch{ck.epoch:03d}.npz)")
    if ck.mode != mode:
        ck = convert(ck, c, mode, path)
    branches = ck.meta.get("branches", []) + [{"from": str(path), "config": old.name,
                                               "model_hash": old.model_hash, "epoch": ck.epoch}]
    return ConvCheckpoint(c, mode, ck.params, ck.streams, ck.epoch, 0, ck.samples_seen, ck.history,
                          {"branches": branches, **({"converted": ck.meta["converted"]}
                                                   if "converted" in ck.meta else {})})


def average(paths) -> ConvCheckpoint:
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
            raise ConvCheckpointError(f"{p}: trained in {ck.mode} mode, not {last.mode} like {paths[-1]}")
        _check_weights_fit(p, ck.config, last.config, integer=last.mode == "int")
    n = len(cks)
    if last.mode == "int":
        def mean(arrays):   # floor((sum + n/2) / n), in integers
            return (2 * np.sum(arrays, axis=0) + n) // (2 * n)
        params = conv.Params
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
    return ConvCheckpoint(last.config, last.mode, averaged, last.streams, last.epoch, last.position,
                          last.samples_seen, last.history, {**last.meta, "averaged": sources})


def train_step(ck: ConvCheckpoint, rule: ConvConfig, images, labels) -> np.ndarray:
    if ck.mode == "int":
        return conv.train_batch(images, labels, ck.params, rule, ck.streams)
    return cf.train_batch(images, labels, ck.params, rule, spiking=ck.mode == "float-spiking")


def evaluate(ck: ConvCheckpoint, images, labels) -> float:
    if ck.mode == "int":
        return conv.accuracy(images, labels, ck.params, ck.config)
    return cf.accuracy(images, labels, ck.params, ck.config, spiking=ck.mode == "float-spiking")


class _Stop(Exception):
    pass


def fit(c: ConvConfig, out: Path, epochs: int, *, mode: str = "int", resume: bool = False,
        dataset: str = "mnist", data_dir=None, train_samples: int | None = None,
        test_samples: int | None = None, checkpoint_every: int = 2000, max_seconds: float | None = None,
        branch_from: str | Path | None = None, force: bool = False, progress: bool = True,
        log=print) -> ConvCheckpoint:
    """Train to ``epochs`` completed epochs, checkpointing into ``out/last.npz`` every
    ``checkpoint_every`` samples, at each epoch end, on Ctrl-C / SIGTERM, and when
    ``max_seconds`` of training have passed (then it returns; continue with ``resume``).
    ``branch_from`` starts from another run's checkpoint instead of fresh weights (:func:`branch`).

    ``epochs`` and ``checkpoint_every`` must be >= 1; ``train_samples`` / ``test_samples`` (None:
    all) from 1 to the split's size. ``resume`` continues the run in ``out`` with the settings it
    started with (data set and sample counts); a new run (fresh or branched) refuses a folder
    that holds a run unless ``force`` (then that run's files are deleted first). These faults
    raise :class:`~eqfpga.run_folder.RunError` (a ``ValueError``) before anything is trained
    or written."""
    out = Path(out)
    last = out / "last.npz"
    run_folder.count("epochs", epochs)
    run_folder.count("checkpoint_every", checkpoint_every)
    for name, value in (("train_samples", train_samples), ("test_samples", test_samples)):
        if value is not None:
            run_folder.count(name, value)
    if resume and branch_from is not None:
        raise ValueError("resume continues this run; branch_from starts a new one: not both")
    if resume and force:
        raise run_folder.RunError("resume continues the run in the folder, force starts it over: not both")
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
    n = len(train_set)
    wanted = run_folder.settings(dataset, n, len(test_set))
    if resume:
        run_folder.check_resume(last, ck.meta, ck.position, ck.epoch, wanted)
        log(f"resuming {last}: epoch {ck.epoch}, sample {ck.position}")
    else:
        run_folder.claim(out, force)
        if branch_from is not None:
            log(f"branching from {branch_from} after epoch {ck.epoch}")
    ck.meta.update(wanted)
    from tqdm import tqdm

    def on_term(signum, frame):
        raise _Stop()
    old = signal.signal(signal.SIGTERM, on_term)
    t_start = time.perf_counter()
    try:
        while ck.epoch < epochs:
            order, augmentation = epoch_order(c, ck.epoch, n), epoch_augmentation(c, ck.epoch, n)
            rule = c.at_epoch(ck.epoch)
            bar = tqdm(total=n, initial=ck.position, desc=f"{mode} epoch {ck.epoch + 1}/{epochs}",
                       unit="sample", disable=not progress, mininterval=1.0)
            correct = ck.meta.get("epoch_correct", 0)
            secs = ck.meta.get("epoch_seconds", 0.0)
            try:
                while ck.position < n:
                    t0 = time.perf_counter()
                    images, labels = batch_images(train_set, order, augmentation, ck.position, c.batch_size)
                    pred = train_step(ck, rule, images, labels)
                    correct += int(np.sum(pred == labels))
                    ck.position += len(labels)
                    ck.samples_seen += len(labels)
                    secs += time.perf_counter() - t0
                    bar.update(len(labels))
                    bar.set_postfix(train=f"{correct / ck.position:.1%}")
                    if ck.position < n and (ck.position // c.batch_size) % max(1, checkpoint_every // c.batch_size) == 0:
                        ck.meta.update(epoch_correct=correct, epoch_seconds=secs)
                        save(ck, last)
                    if max_seconds is not None and time.perf_counter() - t_start > max_seconds and ck.position < n:
                        raise _Stop()
            except (KeyboardInterrupt, _Stop):
                ck.meta.update(epoch_correct=correct, epoch_seconds=secs)
                save(ck, last)
                bar.close()
                log(f"stopped at epoch {ck.epoch}, sample {ck.position}: checkpoint {last} "
                    f"(continue with --resume)")
                return ck
            bar.close()
            t0 = time.perf_counter()
            test_acc = evaluate(ck, test_set.images, test_set.labels)
            eval_s = time.perf_counter() - t0
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
            log(f"{mode} epoch {ck.epoch}: train {entry['train_accuracy']:.2%}  test {test_acc:.2%}  "
                f"({secs:.0f} s, {entry['ms_per_sample']:.1f} ms/sample training, "
                f"{entry['eval_ms_per_sample']:.1f} ms/sample inference)")
    finally:
        signal.signal(signal.SIGTERM, old)
    return ck
