"""Checkpoints: configuration + parameters + training position + metadata + checksum.

One ``.npz`` file for every network and training mode: the weights ``w1 .. wL`` and biases
``b1 .. bL`` (integers for the golden model, ``mode = "int"``; float32 for the float
references), a trainer's further arrays as ``x_<name>``, and a JSON document ``meta`` with
the format, the mode, the configuration and its model hash, the LFSR stream positions, the
training position (epoch and sample within it), the history of per-epoch figures, the run's
own metadata and a SHA-256 over all of it. Files are written atomically (temporary file, then
rename), so a stopped run never leaves half a file. The two earlier formats (one hidden layer:
``eqfpga-checkpoint-1``; convolutional: ``eqfpga-conv-checkpoint-1``) are still read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from eqfpga.config import Config, ConfigError, config_from_dict
from eqfpga.golden.ep_update import Streams
from eqfpga.golden.network import Params

FORMAT = "eqfpga-checkpoint-2"
_DENSE_FORMAT = "eqfpga-checkpoint-1"
_CONV_FORMAT = "eqfpga-conv-checkpoint-1"

#: How a network can be trained: the integer golden model (the chip's arithmetic), the float
#: rate network, the float spiking network (:mod:`eqfpga.golden.conv_float`).
MODES = ("int", "float", "float-spiking")

_EXTRA = "x_"   # file-name prefix of a trainer's further arrays (an optimiser's moments)


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or made for another configuration or mode."""


@dataclass
class Checkpoint:
    config: Config
    params: object              # golden.network.Params, or conv_float.FParams for a float mode
    streams: Streams | list     # LFSR positions (none in the float modes)
    epoch: int = 0              # epochs completed
    position: int = 0           # samples done within the current epoch
    samples_seen: int = 0
    history: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    mode: str = "int"
    extra: dict = field(default_factory=dict)


def _tensors(ck: Checkpoint) -> dict[str, np.ndarray]:
    p = ck.params
    dtype = np.int64 if ck.mode == "int" else None
    d = {f"w{i + 1}": np.asarray(a, dtype) for i, a in enumerate(p.w)}
    d.update({f"b{i + 1}": np.asarray(a, dtype) for i, a in enumerate(p.b)})
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


def _dense_digest(arrays: dict, meta: dict) -> str:
    """The one-hidden-layer format's checksum."""
    h = hashlib.sha256()
    for name in ("w1", "w2", "b1", "b2"):
        a = np.ascontiguousarray(arrays[name], dtype=np.int64)
        h.update(name.encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save(ck: Checkpoint, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _tensors(ck)
    meta = {
        "format": FORMAT, "mode": ck.mode,
        "config": ck.config.to_dict(),
        "model_hash": ck.config.model_hash,
        "streams": [int(s) for s in ck.streams],
        "epoch": ck.epoch, "position": ck.position, "samples_seen": ck.samples_seen,
        "history": ck.history, "meta": ck.meta,
    }
    meta["sha256"] = _digest(arrays, meta)
    # integer weights are stored in the narrowest type that holds them and widened again on
    # load; every other array (float weights, a trainer's arrays) is stored as it is
    stored = {k: (v.astype(_storage_dtype(v)) if ck.mode == "int" and not k.startswith(_EXTRA) else v)
              for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **stored)
    return write_atomically(path, buf.getvalue())


def write_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a stop at any
    moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)   # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:      # a full disk, or a stop while writing: no temporary file is left
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _storage_dtype(a: np.ndarray):
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32):
        if np.iinfo(dt).min <= lo and hi <= np.iinfo(dt).max:
            return dt
    return np.int64


def read_archive(path: Path, arrays: tuple[str, ...], kind: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON object ``meta`` and every array of the ``.npz`` checkpoint at ``path``.

    Parameters
    ----------
    path : Path
        An existing file.
    arrays : tuple of str
        Arrays the archive must hold besides ``meta``.
    kind : str
        The checkpoint's kind, for messages (``"eqfpga checkpoint"``).

    Raises
    ------
    ValueError
        One line (without the path) saying what the file is not, or why it cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":   # .npz files are zip archives; anything else (text, .npy, pickle) is not one
        raise ValueError(f"is not an {kind} (not a NumPy .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    except Exception as e:  # zip and npz faults all mean the same thing to a user
        raise ValueError(f"not a readable {kind} ({type(e).__name__}: {e})") from None
    missing = [k for k in ("meta",) + arrays if k not in found]
    if missing:
        raise ValueError(f"is not an {kind} (the archive has no {', '.join(missing)})")
    raw = found.pop("meta")
    try:
        meta = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"is not an {kind} (its meta is not JSON)") from None
    if not isinstance(meta, dict):
        raise ValueError(f"is not an {kind} (its meta is a JSON {type(meta).__name__}, not an object)")
    return meta, found


_KINDS = {dict: "a JSON object", list: "a JSON list", str: "a string", int: "an integer"}


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def meta_problem(meta: dict) -> str | None:
    """What is wrong with the shape of a checkpoint's ``meta`` (its checksum already checked),
    or None."""
    need = {"config": dict, "model_hash": str, "streams": list, "epoch": int, "position": int,
            "samples_seen": int, "history": list, "meta": dict}
    for key, kind in need.items():
        if key not in meta:
            return f"its meta has no {key!r}"
        v = meta[key]
        if not isinstance(v, kind) or (kind is int and not _whole(v)):
            return f"its meta's {key!r} must be {_KINDS[kind]}, got {v!r}"
    for key in ("epoch", "position", "samples_seen"):
        if meta[key] < 0:
            return f"its meta's {key!r} must be >= 0, got {meta[key]}"
    from eqfpga.golden.lfsr import PERIOD
    if not all(_whole(s) and 0 <= s < PERIOD for s in meta["streams"]):
        return f"its meta's 'streams' must be LFSR positions in [0, {PERIOD}), got {meta['streams']!r}"
    if not all(isinstance(h, dict) for h in meta["history"]):
        return "its meta's 'history' must be a list of JSON objects"
    if meta.get("mode", "int") not in MODES:
        return f"its meta's 'mode' must be one of {', '.join(MODES)}, got {meta.get('mode')!r}"
    n = meta["meta"].get("train_samples")
    if _whole(n) and meta["position"] > n:
        return f"its position {meta['position']} lies beyond its {n} training samples"
    return None


def _differences(own: Config, other: Config) -> str:
    ours, theirs = own.to_dict(), other.to_dict()
    differ = [k for k in ours if k not in ("name", "description", "layers") and ours[k] != theirs[k]]
    if ours["layers"] != theirs["layers"]:
        if len(ours["layers"]) != len(theirs["layers"]):
            differ.append("layers")
        else:
            keys = sorted({k for a, b in zip(ours["layers"], theirs["layers"])
                           for k in set(a) | set(b) if a.get(k) != b.get(k)})
            differ += [f"layers' {k}" for k in keys]
    return ", ".join(differ)


def _stored_hash(stored: dict, form: str, own: Config) -> str:
    """The model hash of a stored configuration: the convolutional format hashed the fields it
    had when the file was written (later fields took their defaults)."""
    if form != _CONV_FORMAT:
        return own.model_hash
    d = {k: v for k, v in stored.items() if k not in ("name", "description")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def load(path: str | Path, config: Config | None = None, mode: str | None = None) -> Checkpoint:
    """Load and verify a checkpoint; if ``config`` is given, it must be the one it was made
    for, and if ``mode`` is, the mode it was trained in."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        meta, arrays = read_archive(path, (), "eqfpga checkpoint")
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    form = meta.get("format")
    if form not in (FORMAT, _DENSE_FORMAT, _CONV_FORMAT):
        raise CheckpointError(f"{path}: unknown checkpoint format {form!r}")
    if meta.get("mode", "int") not in MODES:   # it says how the arrays are checksummed
        raise CheckpointError(f"{path}: its meta's 'mode' must be one of {', '.join(MODES)}, "
                              f"got {meta.get('mode')!r}")
    stored = meta.pop("sha256", None)
    try:
        if form == _DENSE_FORMAT:
            arrays = {k: arrays[k].astype(np.int64) for k in ("w1", "w2", "b1", "b2")}
            good = stored == _dense_digest(arrays, meta)
        else:
            # save() narrows integer weights, so they are widened before the checksum; the
            # earlier convolutional format stored every array as it was
            if form == FORMAT and meta.get("mode", "int") == "int":
                arrays = {k: (v.astype(np.int64) if not k.startswith(_EXTRA) else v) for k, v in arrays.items()}
            good = stored == _digest(arrays, meta)
    except KeyError as e:
        raise CheckpointError(f"{path}: is not an eqfpga checkpoint (the archive has no {e.args[0]})") from None
    if not good:
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt or was edited)")
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        own = config_from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: its configuration is invalid ({e})") from None
    if _stored_hash(meta["config"], form, own) != meta["model_hash"]:
        raise CheckpointError(f"{path}: configuration hash does not match its configuration")
    got_mode = meta.get("mode", "int")
    L = own.n_layers
    if got_mode == "int" and len(meta["streams"]) != 2 * L:   # float modes draw none
        raise CheckpointError(f"{path}: its meta's 'streams' must hold {2 * L} positions "
                              f"(two per weight layer), got {len(meta['streams'])}")
    missing = [k for i in range(L) for k in (f"w{i + 1}", f"b{i + 1}") if k not in arrays]
    if missing:
        raise CheckpointError(f"{path}: the archive has no {', '.join(missing)} for its {L} weight layers")
    if config is not None and config.model_hash != own.model_hash:
        raise CheckpointError(f"{path}: made for configuration {own.name!r}, not {config.name!r} "
                              f"(they differ in {_differences(own, config) or 'their model hash'})")
    if mode is not None and got_mode != mode:
        raise CheckpointError(f"{path}: trained in {got_mode} mode, not {mode}")
    extra = {k[len(_EXTRA):]: v for k, v in arrays.items() if k.startswith(_EXTRA)}
    if got_mode == "int":
        params = Params.from_arrays(arrays, own)
        try:
            params.check(own)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        streams = Streams(*meta["streams"])
    else:
        from eqfpga.golden.conv_float import FParams
        params = FParams([arrays[f"w{i + 1}"] for i in range(L)], [arrays[f"b{i + 1}"] for i in range(L)])
        streams = list(meta["streams"])
    return Checkpoint(own, params, streams, meta["epoch"], meta["position"], meta["samples_seen"],
                      meta["history"], meta["meta"], got_mode, extra)


def shipped(name: str = "up5k") -> Path:
    """Path of a trained checkpoint shipped in the package."""
    return Path(str(resources.files("eqfpga") / "checkpoints" / f"{name}.npz"))


def shipped_names() -> list[str]:
    """Names of the checkpoints shipped in the package (``up5k``, ``conv_mnist``, ...)."""
    return sorted(p.stem for p in Path(str(resources.files("eqfpga") / "checkpoints")).glob("*.npz"))


def resolve(path_or_name: str | Path | None) -> Path:
    """A checkpoint argument: a file path, or the name of a shipped checkpoint (None: ``up5k``)."""
    if path_or_name is None:
        return shipped()
    text = str(path_or_name)
    if "/" not in text and not text.endswith(".npz") and text in shipped_names():
        return shipped(text)
    return Path(path_or_name)
