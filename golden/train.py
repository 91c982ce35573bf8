"""Per-sample EP training: exactly what the chip does for one labelled sample.

For each sample: reset the neuron state, free phase, nudged phase (output nudged toward the
one-hot label; with ``symmetric_nudge`` then a phase nudged away from it, continuing from the
nudged state, and the update compares those two instead of nudged with free), local update (:mod:`eqfpga.golden.ep_update`). Nothing but the parameters and
the LFSR stream positions survives from one sample to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import ep_update, network
from eqfpga.golden.network import Params, State


@dataclass
class SampleResult:
    prediction: int          # free-phase prediction (before the update)
    spike_counts: np.ndarray  # (outputs,) output spikes over the free phase
    spikes: int              # hidden + output spikes over every phase
    rates: tuple = ()        # (rf_h, rf_y, rn_h, rn_y): the rates the update compared


def train_sample(pixels: np.ndarray, label: int, p: Params, c: Config,
                 streams: ep_update.Streams, trace: network.Trace | None = None) -> SampleResult:
    """Free phase, nudged phase(s) and update for one 8-bit image; updates ``p`` in place.
    ``trace`` records every step of every phase in order."""
    x = network.quantize_input(pixels[None, :], c)
    drive_h = network.input_drive(x, p, c)
    st = State.zeros(1, c)
    counts = np.zeros((1, c.outputs), np.int64)
    total = np.zeros(1, np.int64)
    st = network.run_phase(st, drive_h, p, c, c.free_steps, counts=counts, total=total, trace=trace)
    rf_h, rf_y = st.rates(c)
    prediction = int(np.argmax(st.v_y[0]))
    target = np.zeros((1, c.outputs), np.int64)
    target[0, label] = 1
    plus = network.run_phase(st, drive_h, p, c, c.nudge_steps, target=target, total=total,
                             trace=trace)
    rn_h, rn_y = plus.rates(c)
    if c.symmetric_nudge:  # compare +beta with -beta instead of +beta with free
        # -beta continues from the +beta state: hardware keeps no copy of the free state
        minus = network.run_phase(plus, drive_h, p, c, c.nudge_steps, target=target, sign=-1,
                                  total=total, trace=trace)
        rf_h, rf_y = minus.rates(c)
    ep_update.apply(p, x[0], rf_h[0], rf_y[0], rn_h[0], rn_y[0], c, streams)
    return SampleResult(prediction, counts[0], int(total[0]),
                        (rf_h[0], rf_y[0], rn_h[0], rn_y[0]))


def accuracy(pixels: np.ndarray, labels: np.ndarray, p: Params, c: Config) -> float:
    pred, _ = network.predict(pixels, p, c)
    return float(np.mean(pred == labels))
