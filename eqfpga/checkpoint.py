"""Checkpoints: configuration + parameters + training position + metadata + checksum.

One ``.npz`` file holding the four parameter arrays and a JSON document ``meta`` with the
configuration, its model hash, the LFSR stream positions, the training position (epoch and
sample within it), the history of per-epoch figures and a SHA-256 over all of it. Files are
written atomically (temporary file, then rename), so a stopped run never leaves half a file.
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

FORMAT = "eqfpga-checkpoint-1"
_ARRAYS = ("w1", "w2", "b1", "b2")


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, or made for another configuration."""


@dataclass
class Checkpoint:
    config: Config
    params: Params
    streams: Streams
    epoch: int = 0          # epochs completed
    position: int = 0       # samples done within the current epoch
    samples_seen: int = 0
    history: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def _digest(arrays: dict[str, np.ndarray], meta: dict) -> str:
    h = hashlib.sha256()
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name], dtype=np.int64)
        h.update(name.encode()); h.update(str(a.shape).encode()); h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save(ck: Checkpoint, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.astype(np.int64) for k, v in ck.params.arrays().items()}
    meta = {
        "format": FORMAT,
        "config": ck.config.to_dict(),
        "model_hash": ck.config.model_hash,
        "streams": ck.streams.as_list(),
        "epoch": ck.epoch, "position": ck.position, "samples_seen": ck.samples_seen,
        "history": ck.history, "meta": ck.meta,
    }
    meta["sha256"] = _digest(arrays, meta)
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                        **{k: v.astype(_storage_dtype(v)) for k, v in arrays.items()})
    return write_atomically(path, buf.getvalue())


def write_atomically(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a stop at any
    moment leaves either the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)   # mkstemp makes it private; the result is an ordinary file
    os.replace(tmp, path)
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
    or None: the fields every checkpoint (fully connected or convolutional) stores."""
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
    n = meta["meta"].get("train_samples")
    if _whole(n) and meta["position"] > n:
        return f"its position {meta['position']} lies beyond its {n} training samples"
    return None


def load(path: str | Path, config: Config | None = None) -> Checkpoint:
    """Load and verify a checkpoint; if ``config`` is given, it must be the one it was made for."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        meta, arrays = read_archive(path, _ARRAYS, "eqfpga checkpoint")
        arrays = {k: arrays[k].astype(np.int64) for k in _ARRAYS}
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    stored = meta.pop("sha256", None)
    if stored != _digest(arrays, meta):
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt or was edited)")
    problem = meta_problem(meta)
    if problem is None and len(meta["streams"]) != len(_ARRAYS):
        problem = f"its meta's 'streams' must hold {len(_ARRAYS)} positions, got {len(meta['streams'])}"
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        own = config_from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: its configuration is invalid ({e})") from None
    if own.model_hash != meta["model_hash"]:
        raise CheckpointError(f"{path}: configuration hash does not match its configuration")
    if config is not None and config.model_hash != own.model_hash:
        raise CheckpointError(f"{path}: made for configuration {own.name!r} "
                              f"({own.model_hash[:12]}), not {config.name!r} ({config.model_hash[:12]})")
    params = Params(**arrays)
    try:
        params.check(own)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return Checkpoint(own, params, Streams(*meta["streams"]), meta["epoch"], meta["position"],
                      meta["samples_seen"], meta["history"], meta["meta"])


def shipped(name: str = "up5k") -> Path:
    """Path of a trained checkpoint shipped in the package."""
    return Path(str(resources.files("eqfpga") / "checkpoints" / f"{name}.npz"))
