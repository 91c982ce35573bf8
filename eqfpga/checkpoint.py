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


def load(path: str | Path, config: Config | None = None) -> Checkpoint:
    """Load and verify a checkpoint; if ``config`` is given, it must be the one it was made for."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            arrays = {k: z[k].astype(np.int64) for k in _ARRAYS}
    except Exception as e:  # zip, npz and JSON faults all mean the same thing to a user
        raise CheckpointError(f"{path}: not a readable eqfpga checkpoint ({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    stored = meta.pop("sha256", None)
    if stored != _digest(arrays, meta):
        raise CheckpointError(f"{path}: checksum mismatch (the file is corrupt or was edited)")
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
