"""EP training of one sample or one batch: what the chip does for one labelled sample.

For each sample: reset the neuron state, free phase (``free_steps``: the prediction, and the
rates ``Rf``), nudged phase (``nudge_steps``, the output nudged toward the one-hot label: the
rates ``Rn``); with ``symmetric_nudge`` then a phase nudged away from it (-beta), from the free
state (``minus_from_free``; the hardware would keep a copy of it) or continuing from the +beta
state, whose rates replace ``Rf``. A phase's rates are the mean of its last ``average_steps``
steps' rates (:func:`eqfpga.golden.network.run_phase_mean`; one step: its end). Then the local
update (:mod:`eqfpga.golden.ep_update`). Nothing but the parameters and the LFSR stream
positions survives from one sample to the next.

A batch of ``B`` samples is ``B`` independent networks that share one update; the chip
trains per sample (``batch_size = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import ep_update, network
from eqfpga.golden.network import Params, State, Trace


@dataclass
class BatchResult:
    prediction: np.ndarray    # (B,) free-phase predictions (before the update)
    spike_counts: np.ndarray  # (B, outputs) output spikes over the free phase
    spikes: np.ndarray        # (B,) spikes of every layer over every phase
    rates: tuple              # (Rf, Rn): every layer's rates the update compared


@dataclass
class SampleResult:
    prediction: int          # free-phase prediction (before the update)
    spike_counts: np.ndarray  # (outputs,) output spikes over the free phase
    spikes: int              # spikes of every layer over every phase
    rates: tuple = ()        # one hidden layer: (rf_h, rf_y, rn_h, rn_y); else (Rf, Rn) per layer


def train_step(pixels: np.ndarray, labels: np.ndarray, p: Params, c: Config,
               streams: ep_update.Streams, trace: Trace | None = None) -> BatchResult:
    """Free, nudged (and -beta) phases and one update for the batch ``pixels``; updates ``p``
    in place and advances ``streams``. ``trace`` records every step of every phase in order."""
    x = network.quantize_input(np.atleast_2d(pixels) if np.ndim(pixels) == 1 else pixels, c)
    labels = np.asarray(labels, np.int64)
    fixed = p.fixed(c)
    d, idx0 = network.input_drive(x, fixed, c)
    B = len(x)
    counts = np.zeros((B, c.outputs), np.int64)
    total = np.zeros(B, np.int64)
    st, Rf = network.run_phase_mean(State.zeros(B, c, idx0), d, fixed, c, c.free_steps,
                                    counts=counts, trace=trace, total=total)
    prediction = np.argmax(st.v[-1], axis=1)
    target = np.zeros((B, c.outputs), np.int64)
    target[np.arange(B), labels] = 1
    plus, Rn = network.run_phase_mean(st, d, fixed, c, c.nudge_steps, target, 1, trace=trace, total=total)
    ref = st
    if c.symmetric_nudge:
        ref, Rf = network.run_phase_mean(st if c.minus_from_free else plus, d, fixed, c, c.nudge_steps,
                                         target, -1, trace=trace, total=total)
    ep_update.update(p, x, Rf, ref.idx, Rn, plus.idx, c, streams)
    return BatchResult(prediction, counts, total, (Rf, Rn))


def train_batch(pixels: np.ndarray, labels: np.ndarray, p: Params, c: Config,
                streams: ep_update.Streams) -> np.ndarray:
    """:func:`train_step`'s free-phase predictions."""
    return train_step(pixels, labels, p, c, streams).prediction


def train_sample(pixels: np.ndarray, label: int, p: Params, c: Config,
                 streams: ep_update.Streams, trace: Trace | None = None) -> SampleResult:
    """:func:`train_step` of one 8-bit sample (whatever the configuration's ``batch_size``)."""
    r = train_step(np.asarray(pixels)[None], [int(label)], p, c, streams, trace)
    Rf, Rn = r.rates
    rates = (Rf[0][0], Rf[1][0], Rn[0][0], Rn[1][0]) if c.n_layers == 2 else \
        ([a[0] for a in Rf], [a[0] for a in Rn])
    return SampleResult(int(r.prediction[0]), r.spike_counts[0], int(r.spikes[0]), rates)


def accuracy(pixels: np.ndarray, labels: np.ndarray, p: Params, c: Config) -> float:
    return network.accuracy(pixels, labels, p, c)
