"""Input scaling from the data: the ``input_shift`` that gives a new data set the first-layer
drive the shipped configurations were tuned to on MNIST.

A data set with more ink than MNIST (Fashion-MNIST has about twice as much) drives the first
hidden layer into saturation with MNIST's shift, and learns badly. The measure is the *ink
drive*: the first layer's input sum with every weight at ``+w_init`` of that layer (a dense
layer: ``w_init * sum(x)``; a convolution: its pooled window sum, averaged over positions),
averaged over the samples, in rates of 1.0 (``one`` drive units), after the shift. The
calibrated shift puts ``log2`` of it nearest :data:`TARGET_LOG2` for the layer's kind: the
value every shipped configuration has on MNIST (dense 2.62 to 2.67, convolutional 1.78), so
calibrating a shipped configuration on MNIST returns its own shift.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from eqfpga.config import Config, ConfigError
from eqfpga.golden import conv_ops as ops
from eqfpga.golden import network

__all__ = ["TARGET_LOG2", "ink_drive", "input_shift", "calibrated"]

#: log2 of the ink drive (in rates of 1.0, after the shift) each kind of first layer is scaled to.
TARGET_LOG2 = {"dense": 2.65, "conv": 1.8}

#: Samples the measure averages over (the first ones of the split): enough for a stable mean.
SAMPLES = 5000


def ink_drive(c: Config, images: np.ndarray) -> float:
    """Mean ink drive of ``images`` (8-bit samples) before the input shift, in drive units."""
    x = network.quantize_input(images[:SAMPLES], c)
    ly = c.geometry[0]
    if ly.kind == "conv":
        ones = np.ones((1,) + ly.weight_shape[1:], np.int64)
        q = ops.pooled_conv(x, ones, ly.pool) / (ly.pool * ly.pool)
        total = float(q.mean())
    else:
        total = float(x.reshape(len(x), -1).sum(axis=1).mean())
    return total * c.layers[0].w_init


def input_shift(c: Config, images: np.ndarray) -> int:
    """The calibrated ``input_shift`` for ``images`` (see the module docstring)."""
    drive = ink_drive(c, images)
    if drive <= 0:
        raise ConfigError(f"config {c.name!r}: the images are blank (no ink): nothing to calibrate on")
    return max(0, round(math.log2(drive / c.one) - TARGET_LOG2[c.geometry[0].kind]))


def calibrated(c: Config, images: np.ndarray, dataset: str = "") -> Config:
    """``c`` with the calibrated ``input_shift``, its description saying so; raises
    ConfigError when the declared widths cannot hold the ranges that shift gives."""
    shift = input_shift(c, images)
    if shift == c.input_shift:
        return c
    note = f"input_shift {shift} calibrated on {dataset or 'the data'} (was {c.input_shift})"
    return replace(c, input_shift=shift, description=f"{c.description}; {note}" if c.description else note)
