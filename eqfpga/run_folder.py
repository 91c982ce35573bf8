"""A training run's folder and the settings a resumed run must keep (:mod:`eqfpga.trainer`).

A run folder holds one run: its checkpoints (``last.npz``, ``epochNNN.npz``), ``history.json``
and ``training.png``. A new run refuses a folder that holds one unless told to start over, so
a forgotten ``--resume`` cannot overwrite days of training. Which samples a run visits is a
function of its configuration and of its *settings* (data set, training and test sample
counts); every checkpoint stores them in its ``meta`` and a resume that changes them is
refused, since the stored position and accuracy tallies only mean something for the same
samples. The data set's name fixes its content: :func:`eqfpga.data.load` checks every file
against the published MD5, so the data folder itself is no setting and may move.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RunError", "SETTINGS", "run_files", "claim", "count", "settings", "check_resume"]

#: The settings of a run, stored in every checkpoint's ``meta``, with the option that sets each.
SETTINGS = {"dataset": "--dataset", "train_samples": "--train-samples", "test_samples": "--test-samples"}

_RUN_FILES = ("last.npz", "history.json", "training.png")
_EPOCH_FILES = "epoch[0-9][0-9][0-9].npz"


class RunError(ValueError):
    """A run's settings are impossible, differ from those of the run it resumes, or its folder
    holds another run."""


def run_files(out: str | Path) -> list[Path]:
    """The files of a training run in folder ``out`` (empty when it holds none)."""
    out = Path(out)
    if not out.is_dir():
        return []
    return [p for p in (out / name for name in _RUN_FILES) if p.is_file()] + sorted(out.glob(_EPOCH_FILES))


def claim(out: str | Path, force: bool) -> None:
    """Make ``out`` the folder of a new run.

    Parameters
    ----------
    out : path
        The run folder; it need not exist.
    force : bool
        Start over: the files of a run already in ``out`` are deleted. Without it such files
        raise :class:`RunError` and nothing is touched.
    """
    found = run_files(out)
    if found and not force:
        raise RunError(f"{out} already holds a training run ({', '.join(p.name for p in found[:4])}"
                       f"{', ...' if len(found) > 4 else ''}): continue it with --resume, or start it "
                       f"over with --force")
    for p in found:
        p.unlink()


def count(name: str, value, *, minimum: int = 1, available: int | None = None, of: str = "") -> int:
    """``value`` if it is a whole number in ``[minimum, available]``, else :class:`RunError`.

    Parameters
    ----------
    name : str
        The argument's name, for the message (``train_samples``).
    value : int
        The count; ``bool`` is refused although Python counts it as an ``int``.
    minimum : int
        The smallest allowed value.
    available : int or None
        The largest allowed value (how many there are), if bounded.
    of : str
        What ``available`` counts, for the message (``"mnist training images"``).
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise RunError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise RunError(f"{name} must be at least {minimum}, got {value}")
    if available is not None and value > available:
        raise RunError(f"{name} = {value} is more than the {available} {of}")
    return value


def settings(dataset: str, train_samples: int, test_samples: int) -> dict:
    """The settings of a run, as stored in its checkpoints' ``meta``: the data set's name and
    the numbers of training and test samples it uses."""
    return {"dataset": dataset, "train_samples": train_samples, "test_samples": test_samples}


def check_resume(path: str | Path, meta: dict, position: int, epoch: int, wanted: dict) -> None:
    """Refuse to resume the run whose checkpoint ``path`` holds ``meta`` with other settings.

    Parameters
    ----------
    path : path
        The checkpoint, for the message.
    meta : dict
        Its ``meta`` (the stored settings, :func:`settings`).
    position, epoch : int
        Samples done in the current epoch, epochs completed.
    wanted : dict
        The settings of the resume (:func:`settings`).

    Notes
    -----
    A checkpoint that stores no settings (written by another tool) can be resumed at the end
    of an epoch, where nothing depends on the samples already seen: the resume's settings then
    become the run's. In the middle of an epoch it is refused.
    """
    missing = [k for k in SETTINGS if k not in meta]
    if missing:
        if position:
            raise RunError(f"{path}: stopped in the middle of epoch {epoch + 1} and records no run "
                           f"settings ({', '.join(SETTINGS[k] for k in missing)}), so a resume cannot be "
                           f"checked to visit the same samples; start a new run (--force, or another folder)")
        return
    for key, option in SETTINGS.items():
        if meta[key] != wanted[key]:
            raise RunError(f"{path}: {option} differs from the run's: {meta[key]} when it started, "
                           f"{wanted[key]} now (resume with {option} {meta[key]}, or start a new run "
                           f"in another folder)")
