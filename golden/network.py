"""The fully connected spiking EP network: input drive, time steps, phases, inference.

Shapes: ``x`` is ``(B, inputs)`` (``B`` samples at once, any ``B >= 1``), hidden arrays are
``(B, hidden)``, output arrays ``(B, outputs)``. Integer semantics per time step ``t`` (all
neurons update together from the spikes of step ``t-1``; spikes start at 0)::

    input_drive = (x @ W1) >> input_shift                   # once per sample, zero x skipped
    P_h = input_drive + b1 + s_y @ W2.T                     # hidden drive (feedback via W2.T)
    P_y = s_h @ W2 + b2 [+ nudge(R_y, target)]              # output drive (nudged phase only)
    (v, R, phi, s) <- neuron step of each layer (see golden.neuron)

where ``R_y`` in the nudge is the output rate *before* this step. A sample starts from
all-zero state; the free phase runs ``free_steps`` steps; the nudged phase continues from the
free state for ``nudge_steps`` steps. With ``symmetric_nudge`` a second nudged phase with the
opposite sign (-beta) follows, continuing from the end of the first. The prediction is the argmax of the output membranes
``v_y`` at the end of the free phase (lowest index on ties).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import neuron


@dataclass
class Params:
    """Learnable integers: ``W1`` (inputs, hidden), ``W2`` (hidden, outputs), biases."""

    w1: np.ndarray
    w2: np.ndarray
    b1: np.ndarray
    b2: np.ndarray

    def copy(self) -> "Params":
        return Params(self.w1.copy(), self.w2.copy(), self.b1.copy(), self.b2.copy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {"w1": self.w1, "w2": self.w2, "b1": self.b1, "b2": self.b2}

    def differences(self, other: "Params") -> list[tuple[str, tuple, int, int]]:
        """Every entry where ``other`` differs: ``(tensor, index, self's value, other's)``."""
        out = []
        for name, a in self.arrays().items():
            b = other.arrays()[name]
            if a.shape != b.shape:
                out.append((name, (), a.shape, b.shape))
                continue
            for idx in zip(*np.nonzero(a != b)):
                out.append((name, tuple(int(i) for i in idx), int(a[idx]), int(b[idx])))
        return out

    def check(self, c: Config) -> None:
        """Raise ValueError if shapes or ranges do not fit configuration ``c``."""
        shapes = {"w1": (c.inputs, c.hidden), "w2": (c.hidden, c.outputs),
                  "b1": (c.hidden,), "b2": (c.outputs,)}
        for name, arr in self.arrays().items():
            if arr.shape != shapes[name]:
                raise ValueError(f"{name} has shape {arr.shape}, config {c.name!r} needs {shapes[name]}")
            lo, hi = c.bias_range if name.startswith("b") else c.weight_range
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise ValueError(f"{name} holds values outside [{lo}, {hi}]")


def init_params(c: Config) -> Params:
    """Uniform integer weights in ``[-w_init, w_init]`` from the config seed; zero biases."""
    rng = np.random.default_rng(c.seed)
    w1 = rng.integers(-c.w1_init, c.w1_init, size=(c.inputs, c.hidden), endpoint=True)
    w2 = rng.integers(-c.w2_init, c.w2_init, size=(c.hidden, c.outputs), endpoint=True)
    return Params(w1.astype(np.int64), w2.astype(np.int64),
                  np.zeros(c.hidden, np.int64), np.zeros(c.outputs, np.int64))


def crop_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """The ``inputs`` pixels of images of ``c.pixels`` pixels: their border of ``c.crop``
    pixels dropped (row-major order kept)."""
    pixels = np.asarray(pixels)
    if pixels.shape[-1] != c.pixels:
        raise ValueError(f"images have {pixels.shape[-1]} pixels, config {c.name!r} expects {c.pixels}")
    if not c.crop:
        return pixels
    side, k = c.image_side, c.crop
    square = pixels.reshape(*pixels.shape[:-1], side, side)
    return square[..., k:side - k, k:side - k].reshape(*pixels.shape[:-1], c.inputs)


def quantize_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """8-bit pixels -> ``input_bits`` unsigned: ``pixel >> (8 - input_bits)``, after
    :func:`crop_input`."""
    return crop_input(pixels, c).astype(np.int64) >> (8 - c.input_bits)


def exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matrix product through float64 BLAS: exact because every partial sum of the
    configurations' products stays far below 2**53 (Config.widths bounds them)."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def input_drive(x: np.ndarray, p: Params, c: Config) -> np.ndarray:
    return exact_matmul(x, p.w1) >> c.input_shift


@dataclass
class State:
    """Everything a neuron keeps; ``s_*`` are the spikes of the last step."""

    v_h: np.ndarray
    phi_h: np.ndarray
    s_h: np.ndarray
    v_y: np.ndarray
    phi_y: np.ndarray
    s_y: np.ndarray

    @classmethod
    def zeros(cls, batch: int, c: Config) -> "State":
        h = lambda: np.zeros((batch, c.hidden), np.int64)  # noqa: E731
        y = lambda: np.zeros((batch, c.outputs), np.int64)  # noqa: E731
        return cls(h(), h(), h(), y(), y(), y())

    def rates(self, c: Config) -> tuple[np.ndarray, np.ndarray]:
        return neuron.rate(self.v_h, c), neuron.rate(self.v_y, c)


@dataclass
class Trace:
    """Per-step record of one phase: arrays of shape (steps, B, n)."""

    s_h: list = field(default_factory=list)
    s_y: list = field(default_factory=list)
    v_h: list = field(default_factory=list)
    v_y: list = field(default_factory=list)

    def add(self, st: State) -> None:
        self.s_h.append(st.s_h); self.s_y.append(st.s_y)
        self.v_h.append(st.v_h); self.v_y.append(st.v_y)

    def stacked(self) -> dict[str, np.ndarray]:
        return {k: np.stack(getattr(self, k)) for k in ("s_h", "s_y", "v_h", "v_y")}


def step(st: State, drive_h: np.ndarray, p: Params, c: Config,
         target: np.ndarray | None = None, sign: int = 1) -> State:
    """One synchronous time step of every neuron (see the module docstring)."""
    p_h = drive_h + p.b1 + st.s_y @ p.w2.T
    p_y = st.s_h @ p.w2 + p.b2
    if target is not None:
        p_y = p_y + neuron.nudge(neuron.rate(st.v_y, c), target, c, sign)
    v_h = neuron.membrane_step(st.v_h, p_h, c)
    v_y = neuron.membrane_step(st.v_y, p_y, c)
    phi_h, s_h = neuron.sigma_delta(st.phi_h, neuron.rate(v_h, c), c)
    phi_y, s_y = neuron.sigma_delta(st.phi_y, neuron.rate(v_y, c), c)
    return State(v_h, phi_h, s_h, v_y, phi_y, s_y)


def run_phase(st: State, drive_h: np.ndarray, p: Params, c: Config, steps: int,
              target: np.ndarray | None = None, trace: Trace | None = None,
              counts: np.ndarray | None = None, sign: int = 1,
              total: np.ndarray | None = None) -> State:
    """Run ``steps`` time steps; optionally record them, add output spikes per class to
    ``counts`` (B, outputs) and all spikes, hidden and output, to ``total`` (B,)."""
    for _ in range(steps):
        st = step(st, drive_h, p, c, target, sign)
        if trace is not None:
            trace.add(st)
        if counts is not None:
            counts += st.s_y
        if total is not None:
            total += st.s_h.sum(axis=1) + st.s_y.sum(axis=1)
    return st


@dataclass
class Inference:
    prediction: np.ndarray   # (B,) class index
    spike_counts: np.ndarray  # (B, outputs) output spikes over the free phase
    state: State              # state at the end of the free phase
    drive_h: np.ndarray       # (B, hidden) input drive
    spikes: np.ndarray        # (B,) hidden and output spikes over the free phase


def infer(pixels: np.ndarray, p: Params, c: Config, trace: Trace | None = None) -> Inference:
    """Free phase on a batch of 8-bit images ``(B, inputs)``."""
    x = quantize_input(np.atleast_2d(pixels), c)
    drive_h = input_drive(x, p, c)
    counts = np.zeros((len(x), c.outputs), np.int64)
    total = np.zeros(len(x), np.int64)
    st = run_phase(State.zeros(len(x), c), drive_h, p, c, c.free_steps, None, trace, counts,
                   total=total)
    return Inference(np.argmax(st.v_y, axis=1), counts, st, drive_h, total)


def predict(pixels: np.ndarray, p: Params, c: Config, batch: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and output spike counts for many images, in batches."""
    preds, counts = [], []
    for i in range(0, len(pixels), batch):
        r = infer(pixels[i:i + batch], p, c)
        preds.append(r.prediction); counts.append(r.spike_counts)
    return np.concatenate(preds), np.concatenate(counts)
