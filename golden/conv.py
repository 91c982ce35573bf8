"""The convolutional spiking EP network, integer golden model (issue 7; after Lin, Bal, Sengupta 2024).

Geometry and formats come from :class:`eqfpga.conv_config.ConvConfig`; array operations from
:mod:`eqfpga.golden.conv_ops`; the neuron (membrane, rate, sigma-delta, nudge) is
:mod:`eqfpga.golden.neuron`, the same as the fully connected model's. ``>>`` is an arithmetic
(floor) shift; ``rs(q, n) = (q + (1 << (n - 1))) >> n`` (``q`` for ``n = 0``) rounds half up.
``win = pool * pool``, ``ps = log2(win)``. Neuron layer ``l`` (1-based) follows weight layer
``l``; ``s_0`` is the input, ``s_L`` the output layer.

**Energy.** The network is the spiking version of the Hopfield-like primitive

    Phi(s) = sum_l <s_l, pool(conv(s_{l-1}, W_l))>   (conv layers)
           + sum_l <s_l, W_l^T s_{l-1}>             (fully connected layers)
           + sum_l <s_l, b_l>  - beta/2 ||s_L - t||^2

whose gradient with respect to ``s_l`` is each neuron's drive: the feed-forward term from the
layer below plus the *transposed* convolution (or transposed matrix) of the layer above. With
``pool = avg`` the pooling is linear and its transpose is nearest-neighbour upsampling / win,
so a neuron's spike rate sees exactly the gradient of ``Phi`` at the rates. ``pool = max``
is the option that shows why max pooling fails with spikes: the max of a window of spike
driven sums is not the max of the rate-driven sums, and the selected position moves from step
to step.

**Integer semantics of one sample** (every array batched over ``B``):

1. Input ``x = pixel >> (8 - input_bits)``, shape ``(B, input_channels, n, n)``.
2. Input drive, once per sample: ``q = conv(x, W_1)``; avg: ``D = rs(pool_sum(q), ps + input_shift)``;
   max: ``(m, idx_1) = max_pool(q)``, ``D = rs(m, input_shift)``.
3. Reset: every ``v``, ``phi``, spike 0.
4. Each time step every neuron updates from the spikes ``s`` of the previous step::

       P_1 = D + b_1 + FB_1;   P_l = FF_l + b_l + FB_l;   P_L = FF_L + b_L + nudge(R_L)

   with, for a convolution ``l`` (input spikes ``s_{l-1}``): ``q = conv(s_{l-1}, W_l)``,
   avg: ``FF_l = rs(pool_sum(q), ps)``; max: ``(FF_l, idx_l) = max_pool(q)``;
   for a fully connected ``l``: ``FF_l = flatten(s_{l-1}) @ W_l``; and the feedback from
   layer ``l+1``: convolution: avg ``FB_l = rs(conv_t(upsample(s_{l+1}), W_{l+1}), ps)``, max
   ``FB_l = conv_t(unpool(s_{l+1}, idx_{l+1}), W_{l+1})`` (``idx_{l+1}`` from this step's
   ``FF_{l+1}``); fully connected: ``FB_l = s_{l+1} @ W_{l+1}^T`` (reshaped to the map).
   Then ``(v, R, phi, s)`` of every layer: :mod:`eqfpga.golden.neuron` (``nudge`` uses
   the output rate *before* the step, ``sign`` +1 toward the label, -1 away).
5. Free phase ``free_steps``; prediction ``argmax v_L`` (lowest index on ties); rates ``Rf``.
   Nudged phase ``nudge_steps`` with ``+beta`` -> rates ``Rn``; with ``symmetric_nudge`` a
   ``-beta`` phase, from the free state (``minus_from_free``) or continuing from the ``+beta``
   state, whose rates replace ``Rf``. A phase's rates are the mean of its last
   ``average_steps`` steps' rates, ``rs(sum, average_shift)`` (:func:`run_phase_mean`): with
   spikes, one step's rates carry the sigma-delta noise that the nudge's small effect on the
   hidden layers would drown in.
6. Update (:func:`update`): for each weight layer ``l`` with pre-synaptic ``a = x`` (l = 1)
   or ``R_{l-1}`` and post-synaptic ``u = upsample(R_l)`` (avg) / ``unpool(R_l, idx_l)``
   (max; ``idx`` of the last step of that phase), for a convolution
   ``q = weight_grad(a^n, u^n) - weight_grad(a^f, u^f)``, for a fully connected layer
   ``q = a^n (x) R^n - a^f (x) R^f``; biases ``q = sum over positions (R^n_l - R^f_l)``;
   all summed over the batch. ``W += sr(q, w_shifts[l])``, ``b += sr(q, b_shifts[l])``
   with the LFSR stochastic rounding of :mod:`eqfpga.golden.ep_update`, then saturation.
   The LFSR gives 17 random bits; a shift ``n > 17`` (allowed by ``w_shift_caps`` /
   ``b_shift_caps``) is ``sr(rs(q, n - 17), 17)``.
   Each tensor has its own LFSR stream (``2L`` streams: ``W_1..W_L`` then ``b_1..b_L``),
   drawn in C order of the tensor (``W[o, c, i, j]`` / ``W[i, j]`` / ``b[o]``).

A batch of ``B`` samples is ``B`` independent networks that share one update (the
hardware's per-sample mode is ``batch_size = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqfpga.conv_config import ConvConfig
from eqfpga.golden import conv_ops as ops
from eqfpga.golden import lfsr, neuron
from eqfpga.golden.ep_update import stochastic_round


def rs(q: np.ndarray, n: int) -> np.ndarray:
    """Shift right by ``n`` rounding half up: ``(q + 2**(n-1)) >> n``; ``q`` itself for n = 0."""
    return q if n == 0 else (q + (1 << (n - 1))) >> n


@dataclass
class Params(ops.FixedWeights):
    """``w[l]``: ``(O, C, k, k)`` for convolutions, ``(N_in, N_out)`` for fully connected
    layers; ``b[l]``: one per output channel / neuron. All int64."""

    w: list
    b: list
    #: the convolutions' pooled kernels while the weights are fixed (``fixed``), else None
    pooled: list | None = field(default=None, repr=False, compare=False)

    def copy(self) -> "Params":
        return Params([a.copy() for a in self.w], [a.copy() for a in self.b])

    def arrays(self) -> dict[str, np.ndarray]:
        d = {f"w{i + 1}": a for i, a in enumerate(self.w)}
        d.update({f"b{i + 1}": a for i, a in enumerate(self.b)})
        return d

    @classmethod
    def from_arrays(cls, d: dict, c: ConvConfig) -> "Params":
        L = c.n_layers
        return cls([np.asarray(d[f"w{i + 1}"], np.int64) for i in range(L)],
                   [np.asarray(d[f"b{i + 1}"], np.int64) for i in range(L)])

    def check(self, c: ConvConfig) -> None:
        """Raise ValueError if shapes or ranges do not fit ``c``."""
        for ly, w, b in zip(c.layers, self.w, self.b, strict=True):
            if w.shape != ly.weight_shape:
                raise ValueError(f"w{ly.index + 1} has shape {w.shape}, needs {ly.weight_shape}")
            if b.shape != (ly.weight_shape[0] if ly.kind == "conv" else ly.weight_shape[1],):
                raise ValueError(f"b{ly.index + 1} has shape {b.shape}")
            for arr, (lo, hi), nm in ((w, c.weight_range, "w"), (b, c.bias_range, "b")):
                if arr.size and (arr.min() < lo or arr.max() > hi):
                    raise ValueError(f"{nm}{ly.index + 1} holds values outside [{lo}, {hi}]")


def init_params(c: ConvConfig) -> Params:
    """Uniform integer weights in ``[-w_init[l], w_init[l]]`` from the seed; zero biases."""
    rng = np.random.default_rng(c.seed)
    w, b = [], []
    for ly, a in zip(c.layers, c.w_init):
        w.append(rng.integers(-a, a, size=ly.weight_shape, endpoint=True).astype(np.int64))
        n = ly.weight_shape[0] if ly.kind == "conv" else ly.weight_shape[1]
        b.append(np.zeros(n, np.int64))
    return Params(w, b)


def stream_names(c: ConvConfig) -> list[str]:
    L = c.n_layers
    return [f"w{i + 1}" for i in range(L)] + [f"b{i + 1}" for i in range(L)]


def seeded_streams(c: ConvConfig) -> list[int]:
    """Start positions of the ``2L`` LFSR streams, spread evenly over the period."""
    n = 2 * c.n_layers
    return [(c.seed * 7919 + k * (lfsr.PERIOD // n)) % lfsr.PERIOD for k in range(n)]


def quantize_input(pixels: np.ndarray, c: ConvConfig) -> np.ndarray:
    """8-bit images ``(B, n*n*channels)`` or ``(B, C, n, n)`` -> ``x = pixel >> (8 - input_bits)``,
    with the ``input_pad`` border of zeros: ``(B, C, padded_size, padded_size)``."""
    pixels = np.asarray(pixels)
    shape = (c.input_channels, c.image_size, c.image_size)
    if pixels.shape[-1] == int(np.prod(shape)):
        pixels = pixels.reshape((-1,) + shape)
    if pixels.shape[1:] != shape:
        raise ValueError(f"images of shape {pixels.shape[1:]}, config {c.name!r} expects {shape}")
    x = pixels.astype(np.int64) >> (8 - c.input_bits)
    if c.input_pad:
        x = np.pad(x, ((0, 0), (0, 0)) + ((c.input_pad, c.input_pad),) * 2)
    return x


def input_drive(x: np.ndarray, p: Params, c: ConvConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """``(D, idx_1)`` of step 2 (``idx_1`` is None for average pooling)."""
    if c.pooling == "avg":
        return rs(ops.pooled_conv(x, p.w[0], c.pool, p.kernel(0)), c.pool_shift + c.input_shift), None
    m, idx = ops.max_pool(ops.conv(x, p.w[0]), c.pool)
    return rs(m, c.input_shift), idx


@dataclass
class State:
    v: list
    phi: list
    s: list
    idx: list     # max pooling: window index per conv layer from the last step (None for avg / fc)

    @classmethod
    def zeros(cls, batch: int, c: ConvConfig, idx0=None) -> "State":
        shapes = [(batch,) + ly.out_shape for ly in c.layers]
        z = lambda: [np.zeros(s, np.int64) for s in shapes]
        return cls(z(), z(), z(), [idx0] + [None] * (c.n_layers - 1))

    def rates(self, c: ConvConfig) -> list:
        return [neuron.rate(v, c) for v in self.v]


def feedforward(l: int, a: np.ndarray, p: Params, c: ConvConfig):
    """``(FF_l, idx_l)`` from the spikes ``a`` of layer ``l-1`` (0-based ``l >= 1``)."""
    ly = c.layers[l]
    if ly.kind == "conv":
        if c.pooling == "avg":
            return rs(ops.pooled_conv(a, p.w[l], c.pool, p.kernel(l)), c.pool_shift), None
        return ops.max_pool(ops.conv(a, p.w[l]), c.pool)
    return ops._exact(a.reshape(len(a), -1), p.w[l], True), None


def feedback(l: int, s_next: np.ndarray, idx_next, p: Params, c: ConvConfig) -> np.ndarray:
    """``FB_l``: the spikes of layer ``l+1`` through the transpose of weight layer ``l+1``."""
    nx = c.layers[l + 1]
    B = len(s_next)
    if nx.kind == "conv":
        if c.pooling == "avg":
            return rs(ops.upsampled_conv_t(s_next, p.w[l + 1], c.pool, p.kernel(l + 1)), c.pool_shift)
        return ops.conv_t(ops.unpool(s_next, idx_next, c.pool), p.w[l + 1])
    return ops._exact(s_next, p.w[l + 1].T, True).reshape((B,) + c.layers[l].out_shape)


def _bias(b: np.ndarray, ndim: int) -> np.ndarray:
    return b.reshape((-1,) + (1,) * (ndim - 2)) if ndim > 2 else b


def drives(st: State, d: np.ndarray, p: Params, c: ConvConfig, target=None, sign: int = 1):
    """Drives ``P_l`` of every layer from the state's spikes; returns (drives, idx)."""
    L = c.n_layers
    idx = [st.idx[0]] + [None] * (L - 1)
    P = [d]
    for l in range(1, L):
        ff, idx[l] = feedforward(l, st.s[l - 1], p, c)
        P.append(ff)
    for l in range(L):
        P[l] = P[l] + _bias(p.b[l], P[l].ndim)
        if l + 1 < L:
            P[l] = P[l] + feedback(l, st.s[l + 1], idx[l + 1], p, c)
    if target is not None:
        P[-1] = P[-1] + neuron.nudge(neuron.rate(st.v[-1], c), target, c, sign)
    return P, idx


def step(st: State, d: np.ndarray, p: Params, c: ConvConfig, target=None, sign: int = 1) -> State:
    P, idx = drives(st, d, p, c, target, sign)
    v, phi, s = [], [], []
    for l in range(c.n_layers):
        vl = neuron.membrane_step(st.v[l], P[l], c)
        ph, sp = neuron.sigma_delta(st.phi[l], neuron.rate(vl, c), c)
        v.append(vl); phi.append(ph); s.append(sp)
    return State(v, phi, s, idx)


def run_phase(st: State, d, p: Params, c: ConvConfig, steps: int, target=None, sign: int = 1,
              counts: np.ndarray | None = None) -> State:
    for _ in range(steps):
        st = step(st, d, p, c, target, sign)
        if counts is not None:
            counts += st.s[-1]
    return st


def run_phase_mean(st: State, d, p: Params, c: ConvConfig, steps: int, target=None,
                   sign: int = 1) -> tuple[State, list]:
    """:func:`run_phase`, and the rates averaged over its last ``average_steps`` steps."""
    st = run_phase(st, d, p, c, steps - c.average_steps, target, sign)
    sums = [0] * c.n_layers
    for _ in range(c.average_steps):
        st = step(st, d, p, c, target, sign)
        sums = [a + r for a, r in zip(sums, st.rates(c))]
    return st, [rs(a, c.average_shift) for a in sums]


@dataclass
class Inference:
    prediction: np.ndarray
    spike_counts: np.ndarray
    state: State
    drive: np.ndarray


def infer(pixels: np.ndarray, p: Params, c: ConvConfig) -> Inference:
    x = quantize_input(np.atleast_2d(pixels), c)
    p = p.fixed(c)
    d, idx0 = input_drive(x, p, c)
    counts = np.zeros((len(x), c.outputs), np.int64)
    st = run_phase(State.zeros(len(x), c, idx0), d, p, c, c.free_steps, counts=counts)
    return Inference(np.argmax(st.v[-1], axis=1), counts, st, d)


def predict(pixels: np.ndarray, p: Params, c: ConvConfig, batch: int = 500) -> np.ndarray:
    return np.concatenate([infer(pixels[i:i + batch], p, c).prediction
                           for i in range(0, len(pixels), batch)])


def accuracy(pixels, labels, p: Params, c: ConvConfig) -> float:
    return float(np.mean(predict(pixels, p, c) == np.asarray(labels)))


def _post(R: np.ndarray, idx, c: ConvConfig) -> np.ndarray:
    """Post-synaptic factor of a conv layer's update: upsample (avg) or unpool (max)."""
    return ops.upsample(R, c.pool) if c.pooling == "avg" else ops.unpool(R, idx, c.pool)


def update_terms(x: np.ndarray, R: list, idx: list, c: ConvConfig) -> tuple[list, list]:
    """Unscaled ``dPhi/dW`` and ``dPhi/db`` at rates ``R`` (integers, batch summed)."""
    gw, gb = [], []
    for l, ly in enumerate(c.layers):
        a = x if l == 0 else R[l - 1]
        if ly.kind == "conv":
            gw.append(ops.weight_grad(a, _post(R[l], idx[l], c), c.kernel))
            gb.append(R[l].sum(axis=(0, 2, 3)))
        else:
            gw.append(ops._exact(a.reshape(len(a), -1).T, R[l], True))
            gb.append(R[l].sum(axis=0))
    return gw, gb


def round_update(q: np.ndarray, shift: int, draws: np.ndarray) -> np.ndarray:
    """``q / 2**shift`` stochastically rounded with the LFSR ``draws``; shifts beyond the
    LFSR's bits round the surplus half up first."""
    if shift > lfsr.BITS:
        q, shift = rs(q, shift - lfsr.BITS), lfsr.BITS
    return stochastic_round(q, shift, draws)


def update(p: Params, x: np.ndarray, Rf: list, idx_f: list, Rn: list, idx_n: list,
           c: ConvConfig, streams: list[int]) -> None:
    """Step 6: the local EP update of every tensor, in place; advances ``streams``."""
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
            d, streams[s] = lfsr.draws(streams[s], q.size)
            arr[l] = np.clip(arr[l] + round_update(q, shift, d.reshape(q.shape)), lo, hi)


def train_batch(pixels: np.ndarray, labels: np.ndarray, p: Params, c: ConvConfig,
                streams: list[int]) -> np.ndarray:
    """Free, nudged (and -beta) phases and one update for a batch; returns the free-phase
    predictions (before the update)."""
    x = quantize_input(np.atleast_2d(pixels), c)
    fixed = p.fixed(c)
    d, idx0 = input_drive(x, fixed, c)
    st, Rf = run_phase_mean(State.zeros(len(x), c, idx0), d, fixed, c, c.free_steps)
    pred = np.argmax(st.v[-1], axis=1)
    target = np.zeros((len(x), c.outputs), np.int64)
    target[np.arange(len(x)), np.asarray(labels, np.int64)] = 1
    plus, Rn = run_phase_mean(st, d, fixed, c, c.nudge_steps, target, 1)
    ref = st
    if c.symmetric_nudge:
        ref, Rf = run_phase_mean(st if c.minus_from_free else plus, d, fixed, c, c.nudge_steps, target, -1)
    update(p, x, Rf, ref.idx, Rn, plus.idx, c, streams)
    return pred
