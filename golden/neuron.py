"""Spiking neuron: leaky membrane, hard-sigmoid rate, sigma-delta spike generator.

All arrays are integer (``int64``) and may have any shape; every operation is elementwise.
``>>`` is an arithmetic (floor) shift. Widths are those of :attr:`Config.widths`; the
configuration proves none of these operations overflows them.

One time step of one neuron, given its drive ``P`` (integer, drive units)::

    v   <- v + (((P << membrane_frac_bits) - v) >> leak_shift)       # membrane_step
    R   <- clip(v >> rate_shift, 0, 2**rate_bits - 1)                  # rate
    acc <- phi + R                                                    # sigma_delta
    spike <- acc >= 2**rate_bits ;  phi <- acc - spike * 2**rate_bits

``v`` relaxes towards ``P`` with time constant ``2**leak_shift`` steps and never leaves the
range ``P << membrane_frac_bits`` has spanned; ``phi`` stays in ``[0, 2**rate_bits)``; the neuron
fires on average ``R / 2**rate_bits`` spikes per step, deterministically.
"""

from __future__ import annotations

import numpy as np

from eqfpga.config import Config, shift


def membrane_step(v: np.ndarray, drive: np.ndarray, c: Config) -> np.ndarray:
    return v + (((drive << c.membrane_frac_bits) - v) >> c.leak_shift)


def rate(v: np.ndarray, c: Config) -> np.ndarray:
    return np.clip(v >> c.rate_shift, 0, c.rate_max)


def sigma_delta(phi: np.ndarray, r: np.ndarray, c: Config) -> tuple[np.ndarray, np.ndarray]:
    """Returns (new phi, spikes as 0/1 int64)."""
    acc = phi + r
    spike = (acc >= c.spike_threshold).astype(np.int64)
    return acc - (spike << c.rate_bits), spike


def nudge(r: np.ndarray, target: np.ndarray, c: Config, sign: int = 1) -> np.ndarray:
    """EP nudge of an output neuron, toward the target (``sign=1``) or away (``sign=-1``)::

        sign = +1:  ((target << rate_bits) - R) >> nudge_shift
        sign = -1:  (R - (target << rate_bits)) >> nudge_shift

    ``target`` is 1 for the labelled class and 0 elsewhere; this is +-beta * (target - rate)
    in drive units with beta = ``2**-beta_shift`` (each rounded down). A negative
    ``nudge_shift`` (weights with more fraction bits than ``beta_shift + rate_bits``, allowed
    for the convolutional model only) shifts left, exactly.
    """
    q = (target << c.rate_bits) - r
    return shift(q if sign > 0 else -q, c.nudge_shift)
