"""The local EP update, with LFSR stochastic rounding and saturation.

Each weight changes by a quantity of the two neurons it connects only: the pre-synaptic input
or rate ``a`` and the post-synaptic rate ``u`` at the end of two phases (``f``: free or -beta,
``n``: +beta; see :mod:`eqfpga.golden.train`), summed over the batch. Integer semantics of
weight layer ``l`` (pre-synaptic ``a = x`` for the first layer, else the rates ``R_{l-1}``)::

    fully connected:  q[i, j]   = a^n[i] * R^n_l[j] - a^f[i] * R^f_l[j]
    convolution:      q         = weight_grad(a^n, post(R^n_l)) - weight_grad(a^f, post(R^f_l))
                      (post: upsample for average pooling, unpool at the phase's last window
                      for max pooling; see :mod:`eqfpga.golden.conv_ops`)
    bias:             q[j]      = sum over positions of (R^n_l[j] - R^f_l[j])
    W <- clip(W + sr(q, w_shift), weight range);   b <- clip(b + sr(q, b_shift), bias range)

with stochastic rounding ``sr(q, s) = (q + (d & (2**s - 1))) >> s`` where ``d`` is the next
draw of the tensor's LFSR stream (:mod:`eqfpga.golden.lfsr`): unbiased, and exactly 0 when
``q`` is 0. A shift ``s`` beyond the LFSR's 17 bits (up to the layer's cap) first rounds the
surplus half up: ``sr(rs(q, s - 17), 17)``. ``1/beta`` is folded into the shifts.

Each tensor owns one stream (``2L`` streams: ``W_1 .. W_L`` then ``b_1 .. b_L``); the draw
order is the configuration's ``update_order``:

- ``"hardware"`` (per sample, dense layers; the accelerator's order): the first layer over the
  rows ``i`` with ``x[i] != 0`` in increasing ``i`` and, within a row, ``j`` increasing (rows
  with ``x[i] == 0`` are skipped and draw nothing); every layer above column by column
  (``j``, then ``i`` increasing: the hardware keeps ``W[gP .. gP+P-1, j]`` in one word);
  biases in index order.
- ``"tensor"``: every tensor in C order (``W[o, c, i, j]`` / ``W[i, j]`` / ``b[o]``), every
  entry drawn.
"""

from __future__ import annotations

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import conv_ops as ops
from eqfpga.golden import lfsr
from eqfpga.golden.network import Params, rs


class Streams:
    """Positions of the LFSR streams (kept by the hardware between samples): ``W_1 .. W_L``
    then ``b_1 .. b_L``, by index or by name (``w1``, ``b2``)."""

    __slots__ = ("positions",)

    def __init__(self, *positions: int):
        if len(positions) % 2:
            raise ValueError(f"two streams per weight layer, got {len(positions)} positions")
        object.__setattr__(self, "positions", [int(p) for p in positions])

    @classmethod
    def seeded(cls, c: Config) -> "Streams":
        """Start positions for the configuration's seed, spread evenly over the period."""
        n = 2 * c.n_layers
        return cls(*(lfsr.stream_seed(c.seed, k, n) for k in range(n)))

    def as_list(self) -> list[int]:
        return list(self.positions)

    def _index(self, name: str) -> int:
        L = len(self.positions) // 2
        if len(name) >= 2 and name[0] in "wb" and name[1:].isdigit() and 1 <= int(name[1:]) <= L:
            return int(name[1:]) - 1 + (L if name[0] == "b" else 0)
        raise AttributeError(name)

    def __getattr__(self, name):
        if name == "positions" or name.startswith("__"):
            raise AttributeError(name)
        return self.positions[self._index(name)]

    def __setattr__(self, name, value):
        if name == "positions":
            object.__setattr__(self, name, list(value))
        else:
            self.positions[self._index(name)] = int(value)

    def __getitem__(self, k):
        return self.positions[k]

    def __setitem__(self, k, value):
        self.positions[k] = int(value)

    def __len__(self):
        return len(self.positions)

    def __iter__(self):
        return iter(self.positions)

    def __eq__(self, other):
        if isinstance(other, Streams):
            return self.positions == other.positions
        if isinstance(other, (list, tuple)):
            return self.positions == [int(p) for p in other]
        return NotImplemented

    def __repr__(self):
        return f"Streams({', '.join(map(str, self.positions))})"


def stochastic_round(q: np.ndarray, shift: int, draws: np.ndarray) -> np.ndarray:
    return (q + (draws & ((1 << shift) - 1))) >> shift


def round_update(q: np.ndarray, shift: int, draws: np.ndarray) -> np.ndarray:
    """``q / 2**shift`` stochastically rounded with the LFSR ``draws``; shifts beyond the
    LFSR's bits round the surplus half up first."""
    if shift > lfsr.BITS:
        q, shift = rs(q, shift - lfsr.BITS), lfsr.BITS
    return stochastic_round(q, shift, draws)


def _post(R: np.ndarray, idx, ly) -> np.ndarray:
    """Post-synaptic factor of a conv layer's update: upsample (avg) or unpool (max)."""
    return ops.upsample(R, ly.pool) if ly.pooling == "avg" else ops.unpool(R, idx, ly.pool)


def update_terms(x: np.ndarray, R: list, idx: list, c: Config) -> tuple[list, list]:
    """Unscaled ``dPhi/dW`` and ``dPhi/db`` at rates ``R`` (integers, batch summed)."""
    gw, gb = [], []
    for l, ly in enumerate(c.geometry):
        a = x if l == 0 else R[l - 1]
        if ly.kind == "conv":
            gw.append(ops.weight_grad(a, _post(R[l], idx[l], ly), ly.kernel))
            gb.append(R[l].sum(axis=(0, 2, 3)))
        else:
            gw.append(ops._exact(a.reshape(len(a), -1).T, R[l], True))
            gb.append(R[l].sum(axis=0))
    return gw, gb


def update(p: Params, x: np.ndarray, Rf: list, idx_f: list, Rn: list, idx_n: list,
           c: Config, streams: Streams) -> None:
    """The local EP update of every tensor, in place; advances ``streams``. ``x`` is the
    quantised input ``(B,) + first_shape``, ``Rf``/``Rn`` every layer's rates of the two phases.
    Raises ValueError for a batch (``B > 1``) with update_order ``"hardware"``."""
    hardware = c.update_order == "hardware"
    if hardware and len(x) != 1:
        # the skipped rows are one sample's zero inputs: a batch has no such order
        raise ValueError(f"update_order 'hardware' updates after every sample, got a batch of {len(x)} "
                         f"(train a batch with update_order 'tensor')")
    gwn, gbn = update_terms(x, Rn, idx_n, c)
    gwf, gbf = update_terms(x, Rf, idx_f, c)
    L = c.n_layers
    wlo, whi = c.weight_range
    blo, bhi = c.bias_range
    for l in range(L):
        for k, (q, arr, shift, lo, hi) in enumerate(
                ((gwn[l] - gwf[l], p.w, c.w_shifts[l], wlo, whi),
                 (gbn[l] - gbf[l], p.b, c.b_shifts[l], blo, bhi))):
            s = l + k * L
            if hardware and k == 0 and l == 0:
                rows = np.flatnonzero(x.reshape(-1))      # the accelerator reads these rows only
                d, streams[s] = lfsr.draws(streams[s], rows.size * q.shape[1])
                arr[l][rows] = np.clip(arr[l][rows] + round_update(q[rows], shift, d.reshape(-1, q.shape[1])),
                                       lo, hi)
                continue
            column_wise = hardware and k == 0
            q = q.T if column_wise else q
            d, streams[s] = lfsr.draws(streams[s], q.size)
            delta = round_update(q, shift, d.reshape(q.shape))
            arr[l] = np.clip(arr[l] + (delta.T if column_wise else delta), lo, hi)


def apply(p: Params, x: np.ndarray, rf_h: np.ndarray, rf_y: np.ndarray,
          rn_h: np.ndarray, rn_y: np.ndarray, c: Config, streams: Streams) -> None:
    """:func:`update` of a one-hidden-layer network for one sample, from 1-D arrays: the
    quantised inputs ``x`` and the hidden and output rates of the two phases."""
    x = np.asarray(x)[None]
    update(p, x, [rf_h[None], rf_y[None]], [None, None], [rn_h[None], rn_y[None]], [None, None], c, streams)
