"""Float reference of the same network: real rates instead of spikes, no rounding.

Same phases, nudge and local rule as the integer model, with every scale taken from the
configuration so that the two train with the same effective rates: the hidden drive is
``x @ W1 + b1 + R_y @ W2.T``, the output drive ``R_h @ W2 + b2 [+ beta (t - R_y)]``, each
membrane relaxes ``v += (P - v) / 2**leak_shift`` and ``R = clip(v, 0, 1)``. Neurons pass
their rates, not spikes, so this is the continuous EP network the spiking one approximates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import network
from eqfpga.golden.network import Params


@dataclass(frozen=True)
class Scales:
    """Real value of one integer LSB, and real learning rates (1/beta included)."""

    w1: float
    w2: float
    bias: float
    lr_w1: float
    lr_w2: float
    lr_b1: float
    lr_b2: float
    beta: float

    @classmethod
    def of(cls, c: Config) -> "Scales":
        ib, F, a = c.input_bits, c.rate_bits, c.weight_frac_bits
        w1 = 2.0 ** (ib - c.input_shift - a)
        return cls(w1=w1, w2=2.0 ** -a, bias=2.0 ** -a,
                   lr_w1=2.0 ** (ib + F - c.w1_shift) * w1,
                   lr_w2=2.0 ** (2 * F - c.w2_shift - a),
                   lr_b1=2.0 ** (F - c.b1_shift - a), lr_b2=2.0 ** (F - c.b2_shift - a),
                   beta=2.0 ** -c.beta_shift)


@dataclass
class FloatParams:
    w1: np.ndarray
    w2: np.ndarray
    b1: np.ndarray
    b2: np.ndarray

    @classmethod
    def from_int(cls, p: Params, c: Config) -> "FloatParams":
        s = Scales.of(c)
        return cls(p.w1 * s.w1, p.w2 * s.w2, p.b1 * s.bias, p.b2 * s.bias)


def _relax(v_h, v_y, drive_h, p: FloatParams, c: Config, steps: int, target=None, beta=0.0):
    """``steps`` Euler steps of the rate dynamics (nudged by beta * (target - R_y) if given)."""
    tau = 2.0 ** -c.leak_shift
    for _ in range(steps):
        r_h, r_y = np.clip(v_h, 0, 1), np.clip(v_y, 0, 1)
        p_h = drive_h + p.b1 + r_y @ p.w2.T
        p_y = r_h @ p.w2 + p.b2
        if target is not None:
            p_y = p_y + beta * (target - r_y)
        v_h = v_h + (p_h - v_h) * tau
        v_y = v_y + (p_y - v_y) * tau
    return v_h, v_y


def infer(pixels: np.ndarray, p: FloatParams, c: Config):
    """Free phase; returns (prediction, v_h, v_y, drive_h)."""
    x = np.atleast_2d(network.crop_input(pixels, c)).astype(np.float64) / 256.0
    drive_h = x @ p.w1
    z_h = np.zeros((len(x), c.hidden)); z_y = np.zeros((len(x), c.outputs))
    v_h, v_y = _relax(z_h, z_y, drive_h, p, c, c.free_steps)
    return np.argmax(v_y, axis=1), v_h, v_y, drive_h


def train_sample(pixels: np.ndarray, label: int, p: FloatParams, c: Config) -> int:
    """One per-sample EP step in float; returns the free-phase prediction."""
    s = Scales.of(c)
    x = network.crop_input(pixels, c).astype(np.float64)[None, :] / 256.0
    pred, v_h, v_y, drive_h = infer(pixels, p, c)
    rf_h, rf_y = np.clip(v_h, 0, 1)[0], np.clip(v_y, 0, 1)[0]
    target = np.zeros((1, c.outputs)); target[0, label] = 1.0
    vn_h, vn_y = _relax(v_h, v_y, drive_h, p, c, c.nudge_steps, target, s.beta)
    rn_h, rn_y = np.clip(vn_h, 0, 1)[0], np.clip(vn_y, 0, 1)[0]
    if c.symmetric_nudge:
        vm_h, vm_y = _relax(vn_h, vn_y, drive_h, p, c, c.nudge_steps, target, -s.beta)
        rf_h, rf_y = np.clip(vm_h, 0, 1)[0], np.clip(vm_y, 0, 1)[0]
    p.w1 += s.lr_w1 * np.outer(x[0], rn_h - rf_h)
    p.w2 += s.lr_w2 * (np.outer(rn_h, rn_y) - np.outer(rf_h, rf_y))
    p.b1 += s.lr_b1 * (rn_h - rf_h)
    p.b2 += s.lr_b2 * (rn_y - rf_y)
    return int(pred[0])


def accuracy(pixels: np.ndarray, labels: np.ndarray, p: FloatParams, c: Config,
             batch: int = 2000) -> float:
    preds = [infer(pixels[i:i + batch], p, c)[0] for i in range(0, len(pixels), batch)]
    return float(np.mean(np.concatenate(preds) == labels))
