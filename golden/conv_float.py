"""Float reference of the layered EP network (convolutions and dense layers), and its BPTT gradient
(for the gradient check).

The same network as :mod:`eqfpga.golden.network` with real numbers: weights ``W = W_int * 2**-a``
(``a = weight_frac_bits``), input ``x = (pixel >> (8 - input_bits)) * 2**-input_shift``, average
pooling ``pool_sum / win`` with transpose ``upsample / win`` (max pooling routes through the
window's argmax), membranes ``v += (P - v) / 2**leak_shift``, rates ``r = clip(v, 0, 1)``,
the output nudged by ``beta (t - r_L)``, the -beta phase from the free state or the +beta
one and each phase's rates averaged over its last steps as in the integer model. Two modes:

- ``spiking=False``: neurons pass their rates ``r`` (the convergent rate network EP is
  derived for: ``v* = dPhi/ds(r*)`` at the fixed point);
- ``spiking=True``: neurons pass sigma-delta spikes (``phi += r; s = phi >= 1; phi -= s``),
  as the integer model and the hardware do.

Learning rates are the ones the integer shifts imply (:func:`lr_scales`), so float and
integer runs of one configuration are comparable. :func:`bptt_grad` differentiates the
free-phase rate dynamics through time (the reference gradient of the gradient check): since
the drives are the gradient of ``Phi``, the Jacobian of the drives is symmetric and the
backward pass reuses the forward interaction with the adjoint in place of the rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqfpga.config import Config as ConvConfig
from eqfpga.golden import conv_ops as ops
from eqfpga.golden.network import quantize_input


@dataclass
class FParams(ops.FixedWeights):
    w: list
    b: list
    #: the convolutions' pooled kernels while the weights are fixed (``fixed``), else None
    pooled: list | None = field(default=None, repr=False, compare=False)

    def copy(self) -> "FParams":
        return FParams([a.copy() for a in self.w], [a.copy() for a in self.b])

    @classmethod
    def from_int(cls, p, c: ConvConfig, dtype=np.float64) -> "FParams":
        s = 2.0 ** -c.weight_frac_bits
        return cls([(a * s).astype(dtype) for a in p.w], [(a * s).astype(dtype) for a in p.b])


def lr_scales(c: ConvConfig) -> tuple[list, list]:
    """Per layer, the factor ``k`` with ``dW_real = k * (dPhi/dW(+) - dPhi/dW(ref))`` that the
    integer update implies (``1/beta`` or ``1/(2 beta)`` is inside it, as in the integer shifts)."""
    a, F = c.weight_frac_bits, c.rate_bits
    kw, kb = [], []
    for l, ly in enumerate(c.geometry):
        fa = c.input_shift if l == 0 else F
        win = ly.pool * ly.pool if (ly.kind == "conv" and ly.pooling == "avg") else 1
        kw.append(2.0 ** (fa + F - c.w_shifts[l] - a) * win)
        kb.append(2.0 ** (F - c.b_shifts[l] - a))
    return kw, kb


def float_input(pixels: np.ndarray, c: ConvConfig, dtype=np.float64) -> np.ndarray:
    """The integer model's input (:func:`eqfpga.golden.network.quantize_input`, border included) in real units."""
    return quantize_input(pixels, c).astype(dtype) * 2.0 ** -c.input_shift


def _unpool(s, idx, ly):
    """The transpose of conv layer ``ly``'s pooling (``ly``: a :class:`eqfpga.config.Layer`)."""
    if ly.pooling == "avg":
        return ops.upsample(s, ly.pool) / (ly.pool * ly.pool)
    return ops.unpool(s, idx, ly.pool)


def conv_pool(a, w, ly, we=None):
    """Convolution then pooling of ``a`` with kernel ``w`` as conv layer ``ly`` does
    (``we``: its pooled kernel, if known); returns (pooled, max-pool window choices)."""
    if ly.pooling == "avg":
        return ops.pooled_conv(a, w, ly.pool, we) / (ly.pool * ly.pool), None
    return ops.max_pool(ops.conv(a, w), ly.pool)


def input_drive(x, p: FParams, c: ConvConfig):
    """The first layer's drive from the input ``x`` (:func:`float_input`), and max pooling's
    window choices (None otherwise)."""
    ly = c.geometry[0]
    if ly.kind == "dense":
        return x.reshape(len(x), -1) @ p.w[0], None
    return conv_pool(x, p.w[0], ly, p.kernel(0))


def interact(s: list, p: FParams, c: ConvConfig, idx: list | None = None):
    """Feed-forward (layers >= 2) plus feedback terms of every layer's drive from the layer
    outputs ``s``; with ``idx`` given, max pooling uses those window choices (backward pass).
    Returns (terms, idx)."""
    L = c.n_layers
    new_idx = [None] * L if idx is None else list(idx)
    out = [np.zeros_like(s[0])]
    for l in range(1, L):
        ly = c.geometry[l]
        if ly.kind == "conv":
            if ly.pooling == "avg":
                out.append(ops.pooled_conv(s[l - 1], p.w[l], ly.pool, p.kernel(l)) / (ly.pool * ly.pool))
                continue
            q = ops.conv(s[l - 1], p.w[l])
            if idx is None:
                m, new_idx[l] = ops.max_pool(q, ly.pool)
                out.append(m)
            else:
                w = ops._windows(q, ly.pool)
                out.append(np.take_along_axis(w, idx[l][..., None], -1)[..., 0])
        else:
            out.append(s[l - 1].reshape(len(s[l - 1]), -1) @ p.w[l])
    for l in range(L - 1):
        nx = c.geometry[l + 1]
        if nx.kind == "conv" and nx.pooling == "avg":
            fb = ops.upsampled_conv_t(s[l + 1], p.w[l + 1], nx.pool, p.kernel(l + 1))
            out[l] = out[l] + fb / (nx.pool * nx.pool)
        elif nx.kind == "conv":
            out[l] = out[l] + ops.conv_t(_unpool(s[l + 1], new_idx[l + 1], nx), p.w[l + 1])
        else:
            out[l] = out[l] + (s[l + 1] @ p.w[l + 1].T).reshape(out[l].shape)
    return out, new_idx


def _bias(b, ndim):
    return b.reshape((-1,) + (1,) * (ndim - 2)) if ndim > 2 else b


@dataclass
class FState:
    v: list
    phi: list
    s: list
    idx: list

    @classmethod
    def zeros(cls, batch, c: ConvConfig, idx0=None, dtype=np.float64):
        shapes = [(batch,) + ly.out_shape for ly in c.geometry]
        z = lambda: [np.zeros(s, dtype) for s in shapes]
        return cls(z(), z(), z(), [idx0] + [None] * (c.n_layers - 1))

    def rates(self):
        return [np.clip(v, 0, 1) for v in self.v]


def step(st: FState, d, p: FParams, c: ConvConfig, spiking: bool, target=None, beta=0.0):
    terms, idx = interact(st.s, p, c)
    idx[0] = st.idx[0]
    tau = 2.0 ** -c.leak_shift
    v, phi, s = [], [], []
    for l in range(c.n_layers):
        P = terms[l] + _bias(p.b[l], terms[l].ndim)
        if l == 0:
            P = P + d
        if l == c.n_layers - 1 and target is not None:
            P = P + beta * (target - np.clip(st.v[l], 0, 1))
        vl = st.v[l] + (P - st.v[l]) * tau
        r = np.clip(vl, 0, 1)
        if spiking:
            acc = st.phi[l] + r
            sp = (acc >= 1).astype(vl.dtype)
            phi.append(acc - sp); s.append(sp)
        else:
            phi.append(st.phi[l]); s.append(r)
        v.append(vl)
    return FState(v, phi, s, idx)


def run_phase(st, d, p, c, steps, spiking, target=None, beta=0.0):
    for _ in range(steps):
        st = step(st, d, p, c, spiking, target, beta)
    return st


def run_phase_mean(st, d, p, c, steps, spiking, target=None, beta=0.0):
    """:func:`run_phase`, and the rates averaged over its last ``average_steps`` steps."""
    st = run_phase(st, d, p, c, steps - c.average_steps, spiking, target, beta)
    sums = [0.0] * c.n_layers
    for _ in range(c.average_steps):
        st = step(st, d, p, c, spiking, target, beta)
        sums = [a + r for a, r in zip(sums, st.rates())]
    return st, [a / c.average_steps for a in sums]


def phi_grads(a: list, u: list, x, idx: list, c: ConvConfig):
    """``d<u, interaction(a)>/dW``-style terms: for each layer ``l`` the weight gradient of
    ``<u_l, FF_l(a_{l-1})>`` (``a_{-1} = x``; skipped when ``x`` is None) and the bias term
    ``sum u_l``, batch summed. ``phi_grads(s, s, x, ...)`` is ``dPhi/dW`` at state ``s``."""
    gw, gb = [], []
    for l, ly in enumerate(c.geometry):
        pre = x if l == 0 else a[l - 1]
        if ly.kind == "conv":
            gb.append(u[l].sum(axis=(0, 2, 3)))
            gw.append(None if pre is None else
                      ops.weight_grad(pre, _unpool(u[l], idx[l], ly), ly.kernel))
        else:
            gb.append(u[l].sum(axis=0))
            gw.append(None if pre is None else pre.reshape(len(pre), -1).T @ u[l])
    return gw, gb


def ep_estimate(x, labels, p: FParams, c: ConvConfig, spiking: bool, free_steps=None,
                nudge_steps=None, beta=None):
    """EP's gradient estimate ``-(dPhi/dtheta(+beta) - dPhi/dtheta(ref)) / (k beta)`` (``k = 2`` with
    symmetric nudging, ``ref`` the -beta state, else 1 and the free state), in the units of
    ``dL/dtheta``, and the free-phase predictions."""
    beta = c.beta if beta is None else beta
    p = p.fixed(c)
    d, idx0 = input_drive(x, p, c)
    st, rr = run_phase_mean(FState.zeros(len(x), c, idx0, x.dtype), d, p, c, free_steps or c.free_steps, spiking)
    pred = np.argmax(st.v[-1], axis=1)
    t = np.eye(c.outputs, dtype=x.dtype)[labels]
    n = nudge_steps or c.nudge_steps
    plus, rp = run_phase_mean(st, d, p, c, n, spiking, t, beta)
    ref, k = st, 1.0
    if c.symmetric_nudge:
        (ref, rr), k = run_phase_mean(st if c.minus_from_free else plus, d, p, c, n, spiking, t, -beta), 2.0
    gwp, gbp = phi_grads(rp, rp, x, plus.idx, c)
    gwr, gbr = phi_grads(rr, rr, x, ref.idx, c)
    gw = [-(a - b) / (k * beta) for a, b in zip(gwp, gwr)]
    gb = [-(a - b) / (k * beta) for a, b in zip(gbp, gbr)]
    return gw, gb, pred


def train_batch(pixels, labels, p: FParams, c: ConvConfig, spiking: bool = False, dtype=np.float32):
    """One EP step in float with the learning rates the integer shifts imply; returns predictions."""
    x = float_input(pixels, c, dtype)
    gw, gb, pred = ep_estimate(x, np.asarray(labels), p, c, spiking)
    sw, sb = step_sizes(c)
    for l in range(c.n_layers):
        p.w[l] -= (sw[l] * gw[l]).astype(p.w[l].dtype)
        p.b[l] -= (sb[l] * gb[l]).astype(p.b[l].dtype)
    return pred


def step_sizes(c: ConvConfig) -> tuple[list, list]:
    """Per layer, the learning rate one training step applies to a batch-summed ``dL/dW``
    (``dL/db``): :func:`lr_scales` times ``k beta``, since the integer shifts hold ``1/(k beta)``."""
    kw, kb = lr_scales(c)
    k = (2.0 if c.symmetric_nudge else 1.0) * c.beta
    return [k * s for s in kw], [k * s for s in kb]


def infer(pixels, p: FParams, c: ConvConfig, spiking: bool = False, dtype=np.float32):
    x = float_input(pixels, c, dtype)
    p = p.fixed(c)
    d, idx0 = input_drive(x, p, c)
    st = run_phase(FState.zeros(len(x), c, idx0, dtype), d, p, c, c.free_steps, spiking)
    return np.argmax(st.v[-1], axis=1)


def accuracy(pixels, labels, p: FParams, c: ConvConfig, spiking=False, batch=500) -> float:
    pred = np.concatenate([infer(pixels[i:i + batch], p, c, spiking) for i in range(0, len(pixels), batch)])
    return float(np.mean(pred == np.asarray(labels)))


def bptt_grad(x, labels, p: FParams, c: ConvConfig, steps: int | None = None, mask_output: bool = True):
    """Gradient of ``L = 1/2 sum ||r_L(T) - t||^2`` (batch summed) after ``T`` free steps of
    the rate dynamics, by backpropagation through time. Stores every step's state (the memory
    EP avoids). ``mask_output=False`` passes the output error through the output's clip, as
    :func:`feedforward_grad` does by default (what bench/conv_backprop.py trains); the gradient
    check keeps the true gradient. Returns (dL/dW list, dL/db list, L, predictions: the argmax
    of the output membranes after ``T`` steps, as :func:`infer`)."""
    T = steps or c.free_steps
    tau = 2.0 ** -c.leak_shift
    L = c.n_layers
    p = p.fixed(c)
    d, idx0 = input_drive(x, p, c)
    st = FState.zeros(len(x), c, idx0, x.dtype)
    vs, idxs = [], []
    for _ in range(T):
        vs.append(st.v); idxs.append(None)
        terms, idx = interact([np.clip(v, 0, 1) for v in st.v], p, c)
        idx[0] = idx0
        idxs[-1] = idx
        v = []
        for l in range(L):
            P = terms[l] + _bias(p.b[l], terms[l].ndim) + (d if l == 0 else 0)
            v.append(st.v[l] + (P - st.v[l]) * tau)
        st = FState(v, st.phi, st.s, idx)
    t = np.eye(c.outputs, dtype=x.dtype)[labels]
    rT = np.clip(st.v[-1], 0, 1)
    loss = 0.5 * float(np.sum((rT - t) ** 2))
    grad_v = [np.zeros_like(v) for v in st.v]
    grad_v[-1] = (rT - t) * ((st.v[-1] > 0) & (st.v[-1] < 1)) if mask_output else rT - t
    gw = [np.zeros_like(w) for w in p.w]
    gb = [np.zeros_like(b) for b in p.b]
    for tt in range(T - 1, -1, -1):
        g = [a * tau for a in grad_v]                      # dL/dP_t
        r = [np.clip(v, 0, 1) for v in vs[tt]]
        w1, b1 = phi_grads(r, g, x, idxs[tt], c)           # FF terms (and the input drive)
        w2, _ = phi_grads(g, r, None, idxs[tt], c)         # feedback terms
        for l in range(L):
            gw[l] += w1[l] + (0 if w2[l] is None else w2[l])
            gb[l] += b1[l]
        h, _ = interact(g, p, c, idxs[tt])                  # symmetric Jacobian^T g
        grad_v = [(1 - tau) * a + ((v > 0) & (v < 1)) * hh
                  for a, v, hh in zip(grad_v, vs[tt], h)]
    return gw, gb, loss, np.argmax(st.v[-1], axis=1)


#: losses :func:`feedforward_grad` differentiates
LOSSES = ("mse", "ce")


def feedforward(x, p: FParams, c: ConvConfig):
    """The same layers and weights without feedback, in one pass:
    ``r_l = clip(FF_l(r_{l-1}) + b_l, 0, 1)`` with ``r_0 = x`` (``FF_l`` as in the drives).
    What backprop trains in bench/conv_backprop.py, the reference for what this architecture
    can reach. Returns (``[x, r_1, ..., r_L]``, pre-activations, max-pooling window choices)."""
    r, z, idx = [x], [], []
    for l, ly in enumerate(c.geometry):
        if ly.kind == "conv":
            q, i = conv_pool(r[-1], p.w[l], ly)
        else:
            q, i = r[-1].reshape(len(x), -1) @ p.w[l], None
        z.append(q + _bias(p.b[l], q.ndim)); idx.append(i)
        r.append(np.clip(z[-1], 0, 1))
    return r, z, idx


def feedforward_accuracy(pixels, labels, p: FParams, c: ConvConfig, batch=1000) -> float:
    """Test accuracy of the weights ``p`` in :func:`feedforward` (the network without feedback)."""
    pred = [np.argmax(feedforward(float_input(pixels[i:i + batch], c, np.float32), p, c)[1][-1], 1)
            for i in range(0, len(pixels), batch)]
    return float(np.mean(np.concatenate(pred) == np.asarray(labels)))


def feedforward_grad(x, labels, p: FParams, c: ConvConfig, mask_output: bool = False, loss: str = "mse"):
    """Gradient of the batch-summed loss through :func:`feedforward`. ``loss="mse"``:
    ``L = 1/2 sum ||r_L - t||^2``; with ``mask_output=False`` the output's clip passes the
    error through unchanged, as EP's nudge acts on the output membranes (an output clipped at
    0 is still pulled up to its target). ``loss="ce"``: softmax cross-entropy of the output
    pre-activations (a read-out outside the energy, for comparison; ``mask_output`` does not
    apply). The clip of every hidden layer is differentiated. Returns (dL/dW, dL/db, L,
    predictions)."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    r, z, idx = feedforward(x, p, c)
    t = np.eye(c.outputs, dtype=x.dtype)[labels]
    if loss == "ce":
        shifted = z[-1] - z[-1].max(axis=1, keepdims=True)
        log_soft = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        g = np.exp(log_soft) - t
        value = -float(np.sum(t * log_soft))
    else:
        err = r[-1] - t
        g = err * ((z[-1] > 0) & (z[-1] < 1)) if mask_output else err
        value = 0.5 * float(np.sum(err ** 2))
    gw, gb = [None] * c.n_layers, [None] * c.n_layers
    for l in range(c.n_layers - 1, -1, -1):
        a, ly = r[l], c.geometry[l]
        if ly.kind == "conv":
            up = _unpool(g, idx[l], ly)
            gw[l] = ops.weight_grad(a, up, ly.kernel)
            gb[l] = g.sum(axis=(0, 2, 3))
            if l:
                back = (ops.upsampled_conv_t(g, p.w[l], ly.pool) / (ly.pool * ly.pool)
                        if ly.pooling == "avg" else ops.conv_t(up, p.w[l]))
        else:
            gw[l] = a.reshape(len(a), -1).T @ g
            gb[l] = g.sum(axis=0)
            if l:
                back = (g @ p.w[l].T).reshape(a.shape)
        if l:
            g = back * ((z[l - 1] > 0) & (z[l - 1] < 1))
    return gw, gb, value, np.argmax(z[-1], axis=1)
