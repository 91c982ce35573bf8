"""The local EP weight update, with LFSR stochastic rounding and saturation.

Each weight changes by a quantity of the two neurons it connects only: their rates at the
end of the free phase (``Rf``) and of the nudged phase (``Rn``). Integer semantics::

    dW1[i, j] = sr(x[i] * (Rn_h[j] - Rf_h[j]),                    w1_shift)
    dW2[j, k] = sr(Rn_h[j] * Rn_y[k] - Rf_h[j] * Rf_y[k],          w2_shift)
    db1[j]    = sr(Rn_h[j] - Rf_h[j],                              b1_shift)
    db2[k]    = sr(Rn_y[k] - Rf_y[k],                              b2_shift)
    W <- clip(W + dW, weight range);   b <- clip(b + db, bias range)

with stochastic rounding ``sr(q, s) = (q + (d & (2**s - 1))) >> s`` where ``d`` is the next
draw of the tensor's LFSR stream (:mod:`eqfpga.golden.lfsr`): unbiased, and exactly 0 when
``q`` is 0. Draw order: W1 over the rows ``i`` with ``x[i] != 0`` in increasing ``i`` and,
within a row, ``j`` increasing (rows with ``x[i] == 0`` are skipped and draw nothing); W2
column by column (``k``, then ``j`` increasing); b1 and b2 in index order. ``1/beta`` is folded into the shifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import lfsr
from eqfpga.golden.network import Params


@dataclass
class Streams:
    """Positions of the four LFSR streams (kept by hardware between samples)."""

    w1: int
    w2: int
    b1: int
    b2: int

    @classmethod
    def seeded(cls, c: Config) -> "Streams":
        return cls(*(lfsr.stream_seed(c.seed, s) for s in lfsr.STREAMS))

    def as_list(self) -> list[int]:
        return [self.w1, self.w2, self.b1, self.b2]


def stochastic_round(q: np.ndarray, shift: int, draws: np.ndarray) -> np.ndarray:
    return (q + (draws & ((1 << shift) - 1))) >> shift


def _sr_stream(q: np.ndarray, shift: int, streams: Streams, name: str) -> np.ndarray:
    d, pos = lfsr.draws(getattr(streams, name), q.size)
    setattr(streams, name, pos)
    return stochastic_round(q, shift, d.reshape(q.shape))


def apply(p: Params, x: np.ndarray, rf_h: np.ndarray, rf_y: np.ndarray,
          rn_h: np.ndarray, rn_y: np.ndarray, c: Config, streams: Streams) -> None:
    """Update ``p`` in place for one sample (1-D arrays ``x``, rates), advancing ``streams``."""
    d_h = rn_h - rf_h
    d_y = rn_y - rf_y
    rows = np.flatnonzero(x)
    dw1 = _sr_stream(x[rows, None] * d_h[None, :], c.w1_shift, streams, "w1")
    wlo, whi = c.weight_range
    p.w1[rows] = np.clip(p.w1[rows] + dw1, wlo, whi)
    # W2 draws go column by column (k, then j): hardware keeps W2[gP .. gP+P-1, k] in one word
    q2 = np.outer(rn_y, rn_h) - np.outer(rf_y, rf_h)          # (outputs, hidden) = q2[k, j]
    dw2 = _sr_stream(q2, c.w2_shift, streams, "w2").T
    np.clip(p.w2 + dw2, wlo, whi, out=p.w2)
    blo, bhi = c.bias_range
    np.clip(p.b1 + _sr_stream(d_h, c.b1_shift, streams, "b1"), blo, bhi, out=p.b1)
    np.clip(p.b2 + _sr_stream(d_y, c.b2_shift, streams, "b2"), blo, bhi, out=p.b2)
