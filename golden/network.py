"""The spiking EP network, integer golden model: any stack of convolutions and fully connected
layers (EqSpike, Martin et al. 2021; convolutions after Lin, Bal, Sengupta 2024).

Geometry and formats come from :class:`eqfpga.config.Config`; array operations from
:mod:`eqfpga.golden.conv_ops`; the neuron (membrane, rate, sigma-delta, nudge) is
:mod:`eqfpga.golden.neuron`; the update :mod:`eqfpga.golden.ep_update`; phases and update of a
sample or a batch :mod:`eqfpga.golden.train`. ``>>`` is an arithmetic (floor) shift;
``rs(q, n) = (q + (1 << (n - 1))) >> n`` (``q`` for ``n = 0``) rounds half up. For a
convolution with ``p x p`` pooling ``win = p * p`` and ``ps = log2(win)``. Neuron layer ``l``
(1-based) follows weight layer ``l``; ``s_0`` is the input, ``s_L`` the output layer.

**Energy.** The network is the spiking version of the Hopfield-like primitive

    Phi(s) = sum_l <s_l, pool(conv(s_{l-1}, W_l))>   (conv layers)
           + sum_l <s_l, W_l^T s_{l-1}>             (fully connected layers)
           + sum_l <s_l, b_l>  - beta/2 ||s_L - t||^2

whose gradient with respect to ``s_l`` is each neuron's drive: the feed-forward term from the
layer below plus the *transposed* convolution (or transposed matrix) of the layer above. With
average pooling the pooling is linear and its transpose is nearest-neighbour upsampling / win,
so a neuron's spike rate sees exactly the gradient of ``Phi`` at the rates. Max pooling is
the option that shows why it fails with spikes: the max of a window of spike driven sums is
not the max of the rate-driven sums, and the selected position moves from step to step.

**Integer semantics of one sample** (every array batched over ``B``):

1. Input ``x = pixel >> (8 - input_bits)`` of the image with its ``crop`` border dropped or a
   ``pad`` border of zeros added, shape ``(B,) + first_shape``.
2. Input drive, once per sample: a dense first layer ``D = (flatten(x) @ W_1) >> input_shift``;
   a convolution ``q = conv(x, W_1)``, avg: ``D = rs(pool_sum(q), ps + input_shift)``; max:
   ``(m, idx_1) = max_pool(q)``, ``D = rs(m, input_shift)``.
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
5. Free phase ``free_steps``; prediction ``argmax v_L`` (lowest index on ties); output spike
   counts over the free phase. The nudged phases and the update: :mod:`eqfpga.golden.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqfpga.config import Config, ConfigError
from eqfpga.golden import conv_ops as ops
from eqfpga.golden import neuron


def rs(q: np.ndarray, n: int) -> np.ndarray:
    """Shift right by ``n`` rounding half up: ``(q + 2**(n-1)) >> n``; ``q`` itself for n = 0."""
    return q if n == 0 else (q + (1 << (n - 1))) >> n


def _two_layers(n: int, what: str) -> None:
    if n != 2:
        raise ConfigError(f"{what} names the layers of a one-hidden-layer network; this one has {n} layers")


@dataclass
class Params(ops.FixedWeights):
    """``w[l]``: ``(O, C, k, k)`` for convolutions, ``(N_in, N_out)`` for fully connected
    layers; ``b[l]``: one per output channel / neuron. All int64. A one-hidden-layer network's
    tensors are also ``w1``, ``w2``, ``b1``, ``b2``."""

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

    def _tensor(self, kind: str, i: int) -> np.ndarray:
        _two_layers(len(self.w), f"{kind}{i + 1}")
        return getattr(self, kind)[i]

    w1 = property(lambda self: self._tensor("w", 0))
    w2 = property(lambda self: self._tensor("w", 1))
    b1 = property(lambda self: self._tensor("b", 0))
    b2 = property(lambda self: self._tensor("b", 1))

    @classmethod
    def from_arrays(cls, d: dict, c: Config) -> "Params":
        L = c.n_layers
        return cls([np.asarray(d[f"w{i + 1}"], np.int64) for i in range(L)],
                   [np.asarray(d[f"b{i + 1}"], np.int64) for i in range(L)])

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
        """Raise ValueError if shapes or ranges do not fit ``c``."""
        if len(self.w) != c.n_layers or len(self.b) != c.n_layers:
            raise ValueError(f"{len(self.w)} weight layers, config {c.name!r} has {c.n_layers}")
        for ly, w, b in zip(c.geometry, self.w, self.b):
            n = ly.index + 1
            if w.shape != ly.weight_shape:
                raise ValueError(f"w{n} has shape {w.shape}, config {c.name!r} needs {ly.weight_shape}")
            if b.shape != (ly.bias_size,):
                raise ValueError(f"b{n} has shape {b.shape}, config {c.name!r} needs {(ly.bias_size,)}")
            for arr, (lo, hi), nm in ((w, c.weight_range, "w"), (b, c.bias_range, "b")):
                if arr.size and (arr.min() < lo or arr.max() > hi):
                    raise ValueError(f"{nm}{n} holds values outside [{lo}, {hi}]")


def init_params(c: Config) -> Params:
    """Uniform integer weights in ``[-w_init, w_init]`` of each layer from the seed, layer by
    layer; zero biases."""
    rng = np.random.default_rng(c.seed)
    w, b = [], []
    for ly, a in zip(c.geometry, c.w_init):
        w.append(rng.integers(-a, a, size=ly.weight_shape, endpoint=True).astype(np.int64))
        b.append(np.zeros(ly.bias_size, np.int64))
    return Params(w, b)


def shape_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """Samples ``(B, pixels)`` or ``(B,) + input_shape`` as ``(B,) + first_shape``: the image's
    ``crop`` border dropped or a ``pad`` border of zeros added (values unchanged)."""
    pixels = np.asarray(pixels)
    shape = tuple(c.input_shape)
    if pixels.ndim == 2 and pixels.shape[1] == c.pixels:
        pixels = pixels.reshape((-1,) + shape)
    if pixels.shape[1:] != shape:
        raise ValueError(f"samples of shape {pixels.shape[1:]}, config {c.name!r} expects {shape} "
                         f"({c.pixels} values)")
    x = pixels
    if c.pad:
        x = np.pad(x, ((0, 0), (0, 0)) + ((c.pad, c.pad),) * 2)
    if c.crop:
        k = c.crop
        x = x[:, :, k:-k, k:-k]
    return x


def crop_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """:func:`shape_input` as ``(B, inputs)`` rows (row-major): what a dense first layer takes."""
    x = shape_input(np.atleast_2d(pixels) if np.ndim(pixels) == 1 else pixels, c)
    return x.reshape(len(x), -1)


def quantize_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """8-bit samples -> ``x = pixel >> (8 - input_bits)`` of shape ``(B,) + first_shape``
    (:func:`shape_input`)."""
    return shape_input(pixels, c).astype(np.int64) >> (8 - c.input_bits)


def flat_input(pixels: np.ndarray, c: Config) -> np.ndarray:
    """:func:`quantize_input` as ``(B, inputs)`` rows (row-major)."""
    return crop_input(pixels, c).astype(np.int64) >> (8 - c.input_bits)


def input_drive(x: np.ndarray, p: Params, c: Config) -> tuple[np.ndarray, np.ndarray | None]:
    """``(D, idx_1)`` of step 2 (``idx_1`` is None but for max pooling)."""
    ly = c.geometry[0]
    if ly.kind == "dense":
        return ops._exact(x.reshape(len(x), -1), p.w[0], True) >> c.input_shift, None
    if ly.pooling == "avg":
        return rs(ops.pooled_conv(x, p.w[0], ly.pool, p.kernel(0)), ly.pool_shift + c.input_shift), None
    m, idx = ops.max_pool(ops.conv(x, p.w[0]), ly.pool)
    return rs(m, c.input_shift), idx


@dataclass
class State:
    """Every neuron's membrane ``v``, sigma-delta ``phi`` and last spikes ``s``, per layer;
    ``idx``: max pooling's window per conv layer from the last step (None otherwise). A
    one-hidden-layer network's are also ``v_h``, ``v_y``, ``phi_h``, ``phi_y``, ``s_h``, ``s_y``."""

    v: list
    phi: list
    s: list
    idx: list

    @classmethod
    def zeros(cls, batch: int, c: Config, idx0=None) -> "State":
        shapes = [(batch,) + ly.out_shape for ly in c.geometry]
        z = lambda: [np.zeros(s, np.int64) for s in shapes]  # noqa: E731
        return cls(z(), z(), z(), [idx0] + [None] * (c.n_layers - 1))

    def rates(self, c: Config) -> list:
        return [neuron.rate(v, c) for v in self.v]

    def _layer(self, name: str, i: int):
        _two_layers(len(self.v), name)
        return getattr(self, name.split("_")[0])[i]

    v_h = property(lambda self: self._layer("v_h", 0))
    v_y = property(lambda self: self._layer("v_y", 1))
    phi_h = property(lambda self: self._layer("phi_h", 0))
    phi_y = property(lambda self: self._layer("phi_y", 1))
    s_h = property(lambda self: self._layer("s_h", 0))
    s_y = property(lambda self: self._layer("s_y", 1))


@dataclass
class Trace:
    """Per-step record: for each step the spikes and membranes of every layer."""

    s: list = field(default_factory=list)
    v: list = field(default_factory=list)

    def add(self, st: State) -> None:
        self.s.append(st.s)
        self.v.append(st.v)

    def stacked(self) -> dict[str, np.ndarray]:
        """``s_1`` .. ``s_L`` and ``v_1`` .. ``v_L``: arrays (steps, B, ...) per layer; for a
        one-hidden-layer network also ``s_h``, ``s_y``, ``v_h``, ``v_y``."""
        L = len(self.s[0]) if self.s else 0
        out = {}
        for kind in ("s", "v"):
            rec = getattr(self, kind)
            for l in range(L):
                out[f"{kind}_{l + 1}"] = np.stack([step[l] for step in rec])
            if L == 2:
                out[f"{kind}_h"], out[f"{kind}_y"] = out[f"{kind}_1"], out[f"{kind}_2"]
        return out


def feedforward(l: int, a: np.ndarray, p: Params, c: Config):
    """``(FF_l, idx_l)`` from the spikes ``a`` of layer ``l-1`` (0-based ``l >= 1``)."""
    ly = c.geometry[l]
    if ly.kind == "conv":
        if ly.pooling == "avg":
            return rs(ops.pooled_conv(a, p.w[l], ly.pool, p.kernel(l)), ly.pool_shift), None
        return ops.max_pool(ops.conv(a, p.w[l]), ly.pool)
    return ops._exact(a.reshape(len(a), -1), p.w[l], True), None


def feedback(l: int, s_next: np.ndarray, idx_next, p: Params, c: Config) -> np.ndarray:
    """``FB_l``: the spikes of layer ``l+1`` through the transpose of weight layer ``l+1``."""
    nx = c.geometry[l + 1]
    if nx.kind == "conv":
        if nx.pooling == "avg":
            return rs(ops.upsampled_conv_t(s_next, p.w[l + 1], nx.pool, p.kernel(l + 1)), nx.pool_shift)
        return ops.conv_t(ops.unpool(s_next, idx_next, nx.pool), p.w[l + 1])
    return ops._exact(s_next, p.w[l + 1].T, True).reshape((len(s_next),) + c.geometry[l].out_shape)


def _bias(b: np.ndarray, ndim: int) -> np.ndarray:
    return b.reshape((-1,) + (1,) * (ndim - 2)) if ndim > 2 else b


def drives(st: State, d: np.ndarray, p: Params, c: Config, target=None, sign: int = 1):
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


def step(st: State, d: np.ndarray, p: Params, c: Config, target=None, sign: int = 1) -> State:
    """One synchronous time step of every neuron (step 4)."""
    P, idx = drives(st, d, p, c, target, sign)
    v, phi, s = [], [], []
    for l in range(c.n_layers):
        vl = neuron.membrane_step(st.v[l], P[l], c)
        ph, sp = neuron.sigma_delta(st.phi[l], neuron.rate(vl, c), c)
        v.append(vl); phi.append(ph); s.append(sp)
    return State(v, phi, s, idx)


def _count_spikes(st: State) -> np.ndarray:
    return sum(s.reshape(len(s), -1).sum(axis=1) for s in st.s)


def run_phase(st: State, d, p: Params, c: Config, steps: int, target=None, sign: int = 1,
              counts: np.ndarray | None = None, trace: Trace | None = None,
              total: np.ndarray | None = None) -> State:
    """Run ``steps`` time steps; optionally record them (``trace``), add the output spikes per
    class to ``counts`` ``(B, outputs)`` and every layer's spikes to ``total`` ``(B,)``."""
    for _ in range(steps):
        st = step(st, d, p, c, target, sign)
        if trace is not None:
            trace.add(st)
        if counts is not None:
            counts += st.s[-1]
        if total is not None:
            total += _count_spikes(st)
    return st


def run_phase_mean(st: State, d, p: Params, c: Config, steps: int, target=None, sign: int = 1,
                   counts: np.ndarray | None = None, trace: Trace | None = None,
                   total: np.ndarray | None = None) -> tuple[State, list]:
    """:func:`run_phase`, and the rates averaged over its last ``average_steps`` steps,
    ``rs(sum, average_shift)`` (with one step: the rates at the phase's end)."""
    st = run_phase(st, d, p, c, steps - c.average_steps, target, sign, counts, trace, total)
    sums = [0] * c.n_layers
    for _ in range(c.average_steps):
        st = run_phase(st, d, p, c, 1, target, sign, counts, trace, total)
        sums = [a + r for a, r in zip(sums, st.rates(c))]
    return st, [rs(a, c.average_shift) for a in sums]


@dataclass
class Inference:
    prediction: np.ndarray    # (B,) class index
    spike_counts: np.ndarray  # (B, outputs) output spikes over the free phase
    state: State              # state at the end of the free phase
    drive: np.ndarray         # the input drive D
    spikes: np.ndarray        # (B,) spikes of every layer over the free phase

    @property
    def drive_h(self) -> np.ndarray:
        return self.drive


def infer(pixels: np.ndarray, p: Params, c: Config, trace: Trace | None = None) -> Inference:
    """Free phase on a batch of 8-bit samples."""
    x = quantize_input(np.atleast_2d(pixels) if np.ndim(pixels) == 1 else pixels, c)
    p = p.fixed(c)
    d, idx0 = input_drive(x, p, c)
    counts = np.zeros((len(x), c.outputs), np.int64)
    total = np.zeros(len(x), np.int64)
    st = run_phase(State.zeros(len(x), c, idx0), d, p, c, c.free_steps, counts=counts, trace=trace,
                   total=total)
    return Inference(np.argmax(st.v[-1], axis=1), counts, st, d, total)


def predict(pixels: np.ndarray, p: Params, c: Config, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and output spike counts for many samples, in batches."""
    preds, counts = [], []
    for i in range(0, len(pixels), batch):
        r = infer(pixels[i:i + batch], p, c)
        preds.append(r.prediction); counts.append(r.spike_counts)
    if not preds:
        return np.zeros(0, np.int64), np.zeros((0, c.outputs), np.int64)
    return np.concatenate(preds), np.concatenate(counts)


def accuracy(pixels, labels, p: Params, c: Config) -> float:
    return float(np.mean(predict(pixels, p, c)[0] == np.asarray(labels)))
