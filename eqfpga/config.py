"""The one configuration that golden model, hardware generator and boards share.

A network is an input (image shape, crop or zero padding) and an ordered list of layers,
each a convolution (:class:`Conv`: kernel, channels, pooling) or fully connected
(:class:`Dense`: neurons); the last layer is the output layer (dense, one neuron per class).
One neuron layer follows each weight layer; each layer feeds back to the one below through
the transpose of its weights. Fixed point and phases are the network's; the learning rule's
shifts and initial weight range are per layer.

A :class:`Config` is frozen and validated when it is made: every integer quantity of the
network has its worst-case range computed here, and a configuration whose declared widths
cannot hold that range is refused with a :class:`ConfigError` naming the quantity.
:attr:`Config.widths` is where the golden model and the RTL read the formats.

Number formats (all integers):

- input ``x``: ``input_bits`` unsigned, ``x = pixel >> (8 - input_bits)``, of the image once
  ``crop`` pixels are dropped at every border, or ``pad`` zero pixels added (MNIST's 4-pixel
  border is nearly always blank: dropping it frees three fifths of the first weights).
- weights: ``weight_bits`` signed. A rate of 1.0 fed through a weight ``w`` adds ``w`` to the
  drive; ``2**weight_frac_bits`` drive units are the rate 1.0 (``one``).
- biases: ``bias_bits`` signed, in drive units.
- drive: the neuron's input per time step, ``drive_bits`` signed.
- membrane ``v``: ``membrane_bits`` signed, drive units scaled by ``2**membrane_frac_bits``.
- rate ``R``: ``rate_bits`` unsigned, ``R = clip(v >> rate_shift, 0, 2**rate_bits - 1)``
  where ``rate_shift = membrane_frac_bits + weight_frac_bits - rate_bits``; the spike rate of
  a neuron is ``R / 2**rate_bits`` spikes per step.
- a convolution's accumulator (a pooling window's sum before its shift): ``acc_bits``, and an
  EP update's sum over positions and batch: ``update_bits``; ``0`` leaves either at its
  worst case (shown by ``eqfpga info``).

Two learning-rule choices make the same network the chip's or the batched model's:
``batch_size`` (1: per sample, as the chip trains) and ``update_order``: ``"hardware"`` draws
the stochastic-rounding bits in the accelerator's order (the first layer's rows of zero inputs
skipped, the layers above output column by output column), ``"tensor"`` in each tensor's C
order (see :mod:`eqfpga.golden.ep_update`).
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from importlib import resources
from pathlib import Path

__all__ = ["ConfigError", "Config", "Conv", "Dense", "Layer", "NeuronFormats", "Width", "load_config",
           "shipped_configs", "config_to_toml", "config_from_dict", "with_overrides", "LFSR_BITS",
           "FLOAT64_EXACT_BITS", "UPDATE_ORDERS"]

#: Width of the stochastic-rounding LFSR (see :mod:`eqfpga.golden.lfsr`); a learning shift
#: beyond it rounds its surplus half up first (allowed up to a layer's shift cap).
LFSR_BITS = 17

#: Integer sums are computed through float64 BLAS; exact while every partial sum stays
#: below 2**53 (checked on creation).
FLOAT64_EXACT_BITS = 53

UPDATE_ORDERS = ("hardware", "tensor")


class ConfigError(ValueError):
    """The configuration is impossible: unknown keys, bad values, or an overflow."""


@dataclass(frozen=True)
class Width:
    """Width of one integer quantity and the worst-case range it must hold."""

    bits: int
    signed: bool
    lo: int
    hi: int

    @property
    def shape(self):
        from amaranth.hdl import signed, unsigned
        return signed(self.bits) if self.signed else unsigned(self.bits)


def shift(q, n: int):
    """``q >> n`` (arithmetic, rounding down), and for negative ``n`` the exact ``q << -n``."""
    return q >> n if n >= 0 else q << -n


def bits_for(lo: int, hi: int) -> tuple[int, bool]:
    """Smallest (bits, signed) two's-complement format holding every integer in [lo, hi]."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    return max((-int(lo) - 1).bit_length(), int(hi).bit_length()) + 1, True


def _signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# -- layers -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dense:
    """A fully connected layer of ``neurons``, and its learning rule: weight and bias updates
    are ``2**-w_shift`` and ``2**-b_shift`` of EP's estimate (stochastically rounded), the
    shifts grow with the schedule up to the caps (0: the LFSR's 17 bits), and the initial
    weights are uniform in ``[-w_init, w_init]``."""

    neurons: int
    w_shift: int = 12
    b_shift: int = 8
    w_init: int = 16
    w_shift_cap: int = 0
    b_shift_cap: int = 0

    kind = "dense"

    @property
    def size(self) -> int:
        return self.neurons


@dataclass(frozen=True)
class Conv:
    """A ``kernel`` x ``kernel`` valid convolution to ``channels`` maps, then ``pool`` x ``pool``
    pooling (``"avg"``: the EP-correct choice, whose transpose is nearest-neighbour upsampling;
    ``"max"``: to show why max pooling breaks EP's estimate); learning as :class:`Dense`."""

    channels: int
    kernel: int = 5
    pool: int = 2
    pooling: str = "avg"
    w_shift: int = 14
    b_shift: int = 12
    w_init: int = 30
    w_shift_cap: int = 0
    b_shift_cap: int = 0

    kind = "conv"

    @property
    def size(self) -> int:
        return self.channels


_SPEC_KEYS = {"dense": ("neurons",), "conv": ("channels", "kernel", "pool", "pooling")}
_LEARNING_KEYS = ("w_shift", "b_shift", "w_init")
_CAP_KEYS = ("w_shift_cap", "b_shift_cap")


@dataclass(frozen=True)
class Layer:
    """Geometry of weight layer ``index`` (0-based) and the neuron layer it feeds."""

    index: int
    kind: str                      # "conv" or "dense"
    in_shape: tuple[int, ...]      # (C, H, W) or (N,)
    out_shape: tuple[int, ...]     # neuron layer shape after pooling: (C, H, W) or (N,)
    weight_shape: tuple[int, ...]  # (O, C, k, k) or (N_in, N_out)
    conv_shape: tuple[int, ...] = ()  # (O, H, W) before pooling (conv only)
    fan_in: int = 0                # inputs summed into one convolution output / dense neuron
    fan_back: int = 0              # most weights one input position receives feedback through
    kernel: int = 0
    pool: int = 1
    pooling: str = "avg"

    @property
    def neurons(self) -> int:
        return math.prod(self.out_shape)

    @property
    def pool_shift(self) -> int:
        """log2 of the pooling window (``pool * pool`` positions): average = sum >> pool_shift."""
        return 2 * (self.pool.bit_length() - 1)

    @property
    def bias_size(self) -> int:
        return self.weight_shape[0] if self.kind == "conv" else self.weight_shape[1]


class NeuronFormats:
    """The neuron's derived fixed-point formats."""

    @property
    def one(self) -> int:
        """Drive units of a rate of 1.0."""
        return 1 << self.weight_frac_bits

    @property
    def rate_max(self) -> int:
        return (1 << self.rate_bits) - 1

    @property
    def spike_threshold(self) -> int:
        """The sigma-delta accumulator fires when it reaches this value."""
        return 1 << self.rate_bits

    @property
    def rate_shift(self) -> int:
        return self.membrane_frac_bits + self.weight_frac_bits - self.rate_bits

    @property
    def nudge_shift(self) -> int:
        """Nudge = (target - R) >> nudge_shift drive units, i.e. beta = 2**-beta_shift
        (negative: weights with more fraction bits than ``beta_shift + rate_bits``; exact)."""
        return self.beta_shift + self.rate_bits - self.weight_frac_bits


# Keywords of the two configuration kinds this one replaced, accepted by the constructor (and
# by dataclasses.replace) and mapped onto the layered fields.
_LEGACY_DENSE = ("inputs", "hidden", "outputs", "w1_shift", "w2_shift", "b1_shift", "b2_shift",
                 "w1_init", "w2_init", "augment_shift")
_LEGACY_CONV = ("image_size", "input_pad", "input_channels", "conv_channels", "kernel", "pool",
                "pooling", "fc_hidden", "w_shifts", "b_shifts", "w_init", "w_shift_caps",
                "b_shift_caps")
_LEGACY = frozenset(_LEGACY_DENSE + _LEGACY_CONV)


@dataclass(frozen=True, init=False)
class Config(NeuronFormats):
    """Input, layers, fixed-point formats, phases and learning rule of one network.

    Made with keywords: every field below (``layers`` a sequence of :class:`Dense` and
    :class:`Conv`), or the one-hidden-layer shorthand ``inputs``, ``hidden``, ``outputs``,
    ``w1_shift``/``w2_shift``/``b1_shift``/``b2_shift``, ``w1_init``/``w2_init`` and
    ``augment_shift`` (= ``shift_pixels``), or the convolutional shorthand ``image_size``,
    ``input_pad``, ``input_channels``, ``conv_channels``, ``kernel``, ``pool``, ``pooling``,
    ``fc_hidden`` and the per-layer tuples ``w_shifts``, ``b_shifts``, ``w_init``,
    ``w_shift_caps``, ``b_shift_caps``. The shorthands read back as properties.
    """

    name: str
    # input: (channels, height, width) of an image, or (n,) for a vector of n values
    input_shape: tuple = (1, 28, 28)
    crop: int = 0       # pixels dropped at each border of the image before the first layer
    pad: int = 0        # zero pixels added at each border of the image before the first layer
    layers: tuple = (Dense(128), Dense(10))
    # fixed point
    input_bits: int = 8
    weight_bits: int = 8
    weight_frac_bits: int = 6
    bias_bits: int = 12
    rate_bits: int = 8
    membrane_frac_bits: int = 4
    leak_shift: int = 2
    input_shift: int = 10
    beta_shift: int = 1
    drive_bits: int = 16
    membrane_bits: int = 20
    acc_bits: int = 0
    update_bits: int = 0
    # phases
    free_steps: int = 32
    nudge_steps: int = 16
    symmetric_nudge: bool = False
    # the -beta phase starts from the free state (True; hardware would keep a copy of it) or
    # continues from the +beta state (False)
    minus_from_free: bool = False
    # the update's rates are the mean over the last average_steps steps of each phase
    average_steps: int = 1
    # learning (per-layer shifts and initial ranges: in the layers)
    batch_size: int = 1
    update_order: str = "hardware"
    lr_decay_epochs: int = 0
    # training images are moved by a random whole number of pixels in [-shift_pixels,
    # shift_pixels] along each axis (zero fill), and with mirror_images half of them are
    # mirrored left to right first: drawn per epoch on the host, the chip trains on what it is sent
    shift_pixels: int = 0
    mirror_images: bool = False
    seed: int = 1
    description: str = field(default="", compare=False)

    def __init__(self, name, **kw):
        legacy = {k: kw.pop(k) for k in list(kw) if k in _LEGACY}
        names = {f.name for f in fields(self)}
        unknown = set(kw) - names
        if unknown:
            raise ConfigError(f"config {name!r}: unknown field{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(sorted(unknown))}")
        values = {"name": name}
        for f in fields(self):
            if f.name != "name":
                values[f.name] = kw.get(f.name, f.default)
        if "update_order" not in kw and ("conv_channels" in legacy or "fc_hidden" in legacy):
            values["update_order"] = "tensor"
        _apply_legacy(name, values, legacy)
        for k in ("input_shape", "layers"):
            if isinstance(values[k], list):
                values[k] = tuple(values[k])
        for k, v in values.items():
            object.__setattr__(self, k, v)
        self._validate()

    # -- input ----------------------------------------------------------------------------
    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def pixels(self) -> int:
        """Values of one input sample as the data hold it (before crop or pad)."""
        return math.prod(self.input_shape)

    @property
    def image_side(self) -> int:
        """Side of the (square) input image."""
        return self.input_shape[-1]

    @property
    def first_shape(self) -> tuple[int, ...]:
        """Shape of the first layer's input: the image cropped or padded, or the vector."""
        if not self.is_image:
            return self.input_shape
        ch, h, w = self.input_shape
        d = 2 * (self.pad - self.crop)
        return (ch, h + d, w + d)

    @property
    def inputs(self) -> int:
        """Values the first layer takes (after crop or pad)."""
        return math.prod(self.first_shape)

    # -- layers ---------------------------------------------------------------------------
    @cached_property
    def geometry(self) -> tuple[Layer, ...]:
        """Every weight layer's geometry, computed once per configuration."""
        return tuple(_geometry(self))

    @property
    def n_layers(self) -> int:
        """Weight layers (= neuron layers; the last is the output)."""
        return len(self.layers)

    @property
    def n_conv(self) -> int:
        return sum(ly.kind == "conv" for ly in self.layers)

    @property
    def outputs(self) -> int:
        return self.layers[-1].size

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(ly.neurons for ly in self.geometry[:-1])

    @property
    def is_dense(self) -> bool:
        return all(ly.kind == "dense" for ly in self.layers)

    @property
    def hidden(self) -> int:
        """Neurons of the hidden layer of a one-hidden-layer dense network."""
        self._need_one_hidden("hidden")
        return self.layers[0].neurons

    def _need_one_hidden(self, what: str) -> None:
        if not (self.is_dense and self.n_layers == 2):
            raise ConfigError(f"config {self.name!r}: {what} is defined for networks with one "
                              f"dense hidden layer; this one has {self.describe_layers()}")

    def describe_layers(self) -> str:
        parts = [f"{'x'.join(map(str, self.first_shape))}"]
        for ly in self.layers:
            if ly.kind == "dense":
                parts.append(str(ly.neurons))
            else:
                parts.append(f"conv{ly.kernel}x{ly.kernel}:{ly.channels}"
                             + (f"/{ly.pooling}{ly.pool}" if ly.pool > 1 else ""))
        return " -> ".join(parts)

    # per-layer learning, as tuples over the layers
    @property
    def w_shifts(self) -> tuple[int, ...]:
        return tuple(ly.w_shift for ly in self.layers)

    @property
    def b_shifts(self) -> tuple[int, ...]:
        return tuple(ly.b_shift for ly in self.layers)

    @property
    def w_init(self) -> tuple[int, ...]:
        return tuple(ly.w_init for ly in self.layers)

    def caps(self, kind: str) -> tuple[int, ...]:
        """Per-layer ceiling of the ``w`` or ``b`` learning shifts."""
        return tuple(getattr(ly, f"{kind}_shift_cap") or LFSR_BITS for ly in self.layers)

    # the one-hidden-layer shorthand
    def _layer_field(self, i: int, name: str, what: str):
        self._need_one_hidden(what)
        return getattr(self.layers[i], name)

    w1_shift = property(lambda self: self._layer_field(0, "w_shift", "w1_shift"))
    w2_shift = property(lambda self: self._layer_field(1, "w_shift", "w2_shift"))
    b1_shift = property(lambda self: self._layer_field(0, "b_shift", "b1_shift"))
    b2_shift = property(lambda self: self._layer_field(1, "b_shift", "b2_shift"))
    w1_init = property(lambda self: self._layer_field(0, "w_init", "w1_init"))
    w2_init = property(lambda self: self._layer_field(1, "w_init", "w2_init"))

    @property
    def augment_shift(self) -> int:
        return self.shift_pixels

    # the convolutional shorthand (uniform convolutions)
    def _conv_field(self, name: str):
        values = {getattr(ly, name) for ly in self.layers if ly.kind == "conv"}
        if len(values) != 1:
            raise ConfigError(f"config {self.name!r}: {name} is not one value for every "
                              f"convolution ({sorted(values) or 'no convolutions'})")
        return values.pop()

    kernel = property(lambda self: self._conv_field("kernel"))
    pool = property(lambda self: self._conv_field("pool"))
    pooling = property(lambda self: self._conv_field("pooling"))

    @property
    def pool_shift(self) -> int:
        return 2 * (self.pool.bit_length() - 1)

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return tuple(ly.channels for ly in self.layers if ly.kind == "conv")

    @property
    def fc_hidden(self) -> tuple[int, ...]:
        return tuple(ly.neurons for ly in self.layers[:-1] if ly.kind == "dense")

    @property
    def image_size(self) -> int:
        return self.image_side

    @property
    def input_channels(self) -> int:
        return self.input_shape[0] if self.is_image else 1

    @property
    def input_pad(self) -> int:
        return self.pad

    @property
    def padded_size(self) -> int:
        return self.first_shape[-1]

    # -- formats --------------------------------------------------------------------------
    @property
    def average_shift(self) -> int:
        """log2 of ``average_steps``: the update's rate = (sum of the last rates) >> average_shift, rounded."""
        return self.average_steps.bit_length() - 1

    @property
    def weight_range(self) -> tuple[int, int]:
        return _signed_range(self.weight_bits)

    @property
    def bias_range(self) -> tuple[int, int]:
        return _signed_range(self.bias_bits)

    @property
    def beta(self) -> float:
        return 2.0 ** -self.beta_shift

    @property
    def widths(self) -> dict[str, Width]:
        """Every integer quantity's worst-case range and the width that holds it."""
        return _worst_case(self)

    def at_epoch(self, epoch: int) -> "Config":
        """The learning shifts in force during ``epoch`` (counted from 0): every
        ``lr_decay_epochs`` epochs each shift grows by one (the rate halves), at most to its
        layer's cap. The host sets these on the chip between epochs."""
        if not self.lr_decay_epochs:
            return self
        d = epoch // self.lr_decay_epochs
        wcaps, bcaps = self.caps("w"), self.caps("b")
        layers = tuple(replace(ly, w_shift=min(wc, ly.w_shift + d), b_shift=min(bc, ly.b_shift + d))
                       for ly, wc, bc in zip(self.layers, wcaps, bcaps))
        return replace(self, layers=layers)

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every field, in JSON types (layers as tables with their ``kind``)."""
        d = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "layers":
                v = [_layer_dict(ly) for ly in v]
            elif isinstance(v, tuple):
                v = list(v)
            d[f.name] = v
        return d

    @property
    def model_hash(self) -> str:
        """SHA-256 over everything that changes what the network computes (not its name).
        A network that the earlier one-hidden-layer or convolutional configurations could
        describe keeps the hash they gave it, so their checkpoints still load."""
        d = self.legacy_dict()
        if d is not None and "hidden" in d:
            d = {k: v for k, v in d.items() if k not in ("name", "description")
                 and not (k in ("crop", "augment_shift") and v == 0)}
        elif d is not None:
            d = {k: v for k, v in d.items() if k not in ("name", "description")}
        else:
            d = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def legacy_dict(self) -> dict | None:
        """The network as the earlier one-hidden-layer or convolutional configuration stored
        it, or None when neither could describe it."""
        return _legacy_dense_dict(self) or _legacy_conv_dict(self)

    # -- validation -----------------------------------------------------------------------
    def _validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"config {self.name!r}: {msg}")

        need(isinstance(self.name, str), f"name must be a string, got {self.name!r}")
        need(isinstance(self.description, str), f"description must be a string, got {self.description!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                need(_is_int(v), f"{f.name} must be an integer, got {v!r}")
            if f.type == "bool":
                need(isinstance(v, bool), f"{f.name} must be true or false, got {v!r}")
        need(isinstance(self.input_shape, tuple) and len(self.input_shape) in (1, 3)
             and all(_is_int(n) and n >= 1 for n in self.input_shape),
             f"input_shape must be [channels, height, width] or [values], got {list(self.input_shape)}")
        need(isinstance(self.layers, tuple) and len(self.layers) >= 1,
             f"layers must be a non-empty list of Dense and Conv layers, got {self.layers!r}")
        for i, ly in enumerate(self.layers):
            need(isinstance(ly, (Dense, Conv)), f"layer {i + 1}: must be a Dense or Conv layer, got {ly!r}")
        need(self.layers[-1].kind == "dense", "the last layer (the outputs) must be dense")
        for i, ly in enumerate(self.layers):
            where = f"layer {i + 1}"
            for k in _SPEC_KEYS[ly.kind] + _LEARNING_KEYS + _CAP_KEYS:
                v = getattr(ly, k)
                if k == "pooling":
                    need(v in ("avg", "max"), f"{where}: pooling must be 'avg' or 'max', got {v!r}")
                else:
                    need(_is_int(v), f"{where}: {k} must be an integer, got {v!r}")
            need(ly.size >= 1, f"{where}: needs at least one {'neuron' if ly.kind == 'dense' else 'channel'}")
            if ly.kind == "conv":
                need(ly.kernel >= 1, f"{where}: kernel must be >= 1, got {ly.kernel}")
                need(ly.pool >= 1 and ly.pool & (ly.pool - 1) == 0,
                     f"{where}: pool must be a power of two, got {ly.pool}")
            need(ly.w_init >= 0, f"{where}: w_init must be >= 0, got {ly.w_init}")
            for kind in ("w", "b"):
                s, cap = getattr(ly, f"{kind}_shift"), getattr(ly, f"{kind}_shift_cap")
                need(cap == 0 or LFSR_BITS <= cap, _cap_message(where, kind, cap))
                cap = cap or LFSR_BITS
                need(0 <= s <= cap, f"{where}: {kind}_shift = {s} must be in [0, {cap}] (the LFSR gives "
                     f"{LFSR_BITS} random bits; larger shifts need {kind}_shift_cap)")
        for name in ("input_bits", "weight_bits", "bias_bits", "rate_bits", "drive_bits", "membrane_bits",
                     "free_steps", "nudge_steps", "batch_size", "average_steps"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_frac_bits", "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift",
                     "seed", "lr_decay_epochs", "crop", "pad", "shift_pixels", "acc_bits", "update_bits"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(not (self.crop and self.pad), "crop and pad: give one")
        need(self.is_image or not (self.crop or self.pad or self.shift_pixels or self.mirror_images),
             "crop, pad, shift_pixels and mirror_images need an image input_shape [channels, height, width]")
        if self.is_image:
            need(self.input_shape[1] == self.input_shape[2],
                 f"images must be square, got {self.input_shape[1]}x{self.input_shape[2]}")
            need(2 * self.crop < self.image_side,
                 f"crop = {self.crop} leaves nothing of the {self.image_side}-pixel side")
            need(self.shift_pixels < self.image_side,
                 f"shift_pixels {self.shift_pixels} moves the whole image out of its "
                 f"{self.image_side}-pixel side")
        need(self.update_order in UPDATE_ORDERS,
             f"update_order must be one of {', '.join(UPDATE_ORDERS)}, got {self.update_order!r}")
        if self.update_order == "hardware":
            need(self.is_dense, "update_order 'hardware' is defined for dense layers only (use 'tensor')")
            need(self.batch_size == 1, "update_order 'hardware' trains per sample: batch_size must be 1")
        if not self.conv_first_or_dense():
            i = next(i for i, ly in enumerate(self.layers)
                     if ly.kind == "conv" and any(d.kind == "dense" for d in self.layers[:i]))
            need(False, f"layer {i + 1}: a convolution after a dense layer (convolutions must come "
                        f"before every dense layer)")
        need(not self.minus_from_free or self.symmetric_nudge, "minus_from_free needs symmetric_nudge")
        need(self.average_steps & (self.average_steps - 1) == 0
             and self.average_steps <= min(self.nudge_steps, self.free_steps),
             f"average_steps must be a power of two <= nudge_steps and free_steps, got {self.average_steps}")
        need(self.outputs >= 2, "outputs must be >= 2 (argmax needs classes)")
        need(self.input_bits <= 8, f"input_bits must be <= 8 (pixels are 8 bit), got {self.input_bits}")
        need(self.weight_bits >= 2, "weight_bits must be >= 2")
        need(self.bias_bits >= self.weight_bits,
             f"bias_bits ({self.bias_bits}) must be >= weight_bits ({self.weight_bits})")
        need(self.rate_shift >= 0,
             f"membrane_frac_bits + weight_frac_bits ({self.membrane_frac_bits} + "
             f"{self.weight_frac_bits}) must be >= rate_bits ({self.rate_bits})")
        need(self.nudge_shift >= 0 or self.update_order != "hardware",
             f"beta_shift + rate_bits - weight_frac_bits must be >= 0 with update_order 'hardware' (the "
             f"chip's neuron shifts the nudge right only), got {self.nudge_shift}")
        need(self.leak_shift <= self.membrane_frac_bits,
             f"leak_shift ({self.leak_shift}) must be <= membrane_frac_bits "
             f"({self.membrane_frac_bits}), or the membrane cannot settle to within one drive unit")
        whi = self.weight_range[1]
        for i, ly in enumerate(self.layers):
            need(ly.w_init <= whi, f"layer {i + 1}: w_init = {ly.w_init} exceeds the "
                 f"{self.weight_bits}-bit weight maximum {whi}")
        _geometry(self, need)
        widths = _worst_case(self)
        for name in ("drive", "membrane", "acc", "update"):
            w, declared = widths.get(name), getattr(self, f"{name}_bits")
            if w is None or (declared == 0 and name in ("acc", "update")):
                continue
            need(w.bits <= declared,
                 f"{name}_bits = {declared} cannot hold the worst-case {name} range "
                 f"[{w.lo}, {w.hi}] (needs {w.bits} bits)")
        # a shift past a declared update width leaves none of the update's bits
        for i, ly in enumerate(self.layers):
            for kind in ("w", "b"):
                cap = getattr(ly, f"{kind}_shift_cap")
                need(not self.update_bits or cap < self.update_bits,
                     _cap_message(f"layer {i + 1}", kind, cap, self.update_bits))
        need(widths["update"].bits <= FLOAT64_EXACT_BITS
             and ("acc" not in widths or widths["acc"].bits <= FLOAT64_EXACT_BITS),
             "integer sums would exceed float64's exact range (2**53)")

    def conv_first_or_dense(self) -> bool:
        kinds = [ly.kind for ly in self.layers]
        return "conv" not in kinds[kinds.index("dense"):]

    @classmethod
    def convolutional(cls, name: str, **kw) -> "Config":
        """A configuration with the convolutional network's defaults (2C2FC after Lin, Bal,
        Sengupta 2024: 28x28 -> conv5x5 16 -> avgpool 2 -> conv5x5 32 -> avgpool 2 -> 128 -> 10,
        12-bit weights, batches of 16), changed by ``kw``."""
        base = dict(conv_channels=(16, 32), kernel=5, pool=2, pooling="avg", fc_hidden=(128,), outputs=10,
                    weight_bits=12, weight_frac_bits=9, bias_bits=14, rate_bits=8, membrane_frac_bits=2,
                    leak_shift=2, input_shift=8, beta_shift=1, acc_bits=28, drive_bits=24,
                    membrane_bits=26, update_bits=32, free_steps=40, nudge_steps=12, symmetric_nudge=True,
                    w_shifts=(16, 16, 15, 14), b_shifts=(12, 12, 10, 10), w_init=(100, 26, 22, 44),
                    batch_size=16, update_order="tensor")
        base.update(kw)
        return cls(name, **base)


def _cap_message(where: str, kind: str, cap: int, update_bits: int = 0) -> str:
    top = f"update_bits - 1 = {update_bits - 1}" if update_bits else "update_bits - 1"
    return (f"{where}: {kind}_shift_cap must be 0 (the LFSR's {LFSR_BITS} bits) or in "
            f"[{LFSR_BITS}, {top}], got {cap}")


def _apply_legacy(name: str, values: dict, legacy: dict) -> None:
    """Map the shorthand keywords onto ``values`` (the layered fields), in place."""
    if not legacy:
        return

    def fail(msg):
        raise ConfigError(f"config {name!r}: {msg}")

    layers = list(values["layers"])
    if isinstance(layers, tuple):
        layers = list(layers)
    # input
    if "inputs" in legacy:
        n = legacy["inputs"]
        if not _is_int(n) or n < 1:
            fail(f"inputs must be a positive integer, got {n!r}")
        side = math.isqrt(n)
        if side * side == n:
            values["input_shape"] = (1, side + 2 * values["crop"], side + 2 * values["crop"])
        elif values["crop"]:
            fail(f"crop needs a square input window: inputs = {n} is not a square")
        else:
            values["input_shape"] = (n,)
    if {"image_size", "input_channels"} & set(legacy):
        ch = legacy.get("input_channels", values["input_shape"][0] if len(values["input_shape"]) == 3 else 1)
        side = legacy.get("image_size", values["input_shape"][-1])
        values["input_shape"] = (ch, side, side)
    if "input_pad" in legacy:
        values["pad"] = legacy["input_pad"]
    # layers
    if "hidden" in legacy:
        if not (len(layers) == 2 and all(ly.kind == "dense" for ly in layers)):
            fail("hidden is the one-hidden-layer shorthand; this network has other layers")
        layers[0] = replace(layers[0], neurons=legacy["hidden"])
    if {"conv_channels", "fc_hidden", "kernel", "pool", "pooling"} & set(legacy):
        convs = [ly for ly in layers if ly.kind == "conv"]
        chans = legacy.get("conv_channels", tuple(ly.channels for ly in convs))
        hidden = legacy.get("fc_hidden", tuple(ly.neurons for ly in layers[:-1] if ly.kind == "dense"))
        if not isinstance(chans, (tuple, list)) or not isinstance(hidden, (tuple, list)):
            fail("conv_channels and fc_hidden must be lists of integers")
        kernel = legacy.get("kernel", convs[0].kernel if convs else 5)
        pool = legacy.get("pool", convs[0].pool if convs else 2)
        pooling = legacy.get("pooling", convs[0].pooling if convs else "avg")
        new = [Conv(ch, kernel, pool, pooling) for ch in chans] + [Dense(n) for n in hidden] + [layers[-1]]
        if len(new) == len(layers):
            new = [replace(n, **{k: getattr(o, k) for k in _LEARNING_KEYS + _CAP_KEYS})
                   for n, o in zip(new, layers)]
        layers = new
    if "outputs" in legacy:
        layers[-1] = replace(layers[-1], neurons=legacy["outputs"])
    # per-layer learning
    for key, (i, attr) in {"w1_shift": (0, "w_shift"), "w2_shift": (1, "w_shift"), "b1_shift": (0, "b_shift"),
                           "b2_shift": (1, "b_shift"), "w1_init": (0, "w_init"), "w2_init": (1, "w_init")}.items():
        if key in legacy:
            if len(layers) != 2:
                fail(f"{key} is the one-hidden-layer shorthand; give each layer's {attr}")
            layers[i] = replace(layers[i], **{attr: legacy[key]})
    for key, attr in (("w_shifts", "w_shift"), ("b_shifts", "b_shift"), ("w_init", "w_init"),
                      ("w_shift_caps", "w_shift_cap"), ("b_shift_caps", "b_shift_cap")):
        if key in legacy:
            v = legacy[key]
            if not isinstance(v, (tuple, list)):
                fail(f"{key} must be a list of integers, got {v!r}")
            if key.endswith("caps") and not v:
                v = [0] * len(layers)
            if len(v) != len(layers):
                fail(f"{key} needs one entry per weight layer ({len(layers)}), got {len(v)}")
            layers = [replace(ly, **{attr: x}) for ly, x in zip(layers, v)]
    if "augment_shift" in legacy:
        values["shift_pixels"] = legacy["augment_shift"]
    values["layers"] = tuple(layers)


def _layer_dict(ly) -> dict:
    d = {"kind": ly.kind}
    d.update({k: getattr(ly, k) for k in _SPEC_KEYS[ly.kind] + _LEARNING_KEYS})
    d.update({k: getattr(ly, k) for k in _CAP_KEYS if getattr(ly, k)})
    return d


def _layer_from_dict(d: dict, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: a layer must be a table, got {d!r}")
    kind = d.get("kind")
    if kind not in _SPEC_KEYS:
        raise ConfigError(f"{where}: kind must be 'dense' or 'conv', got {kind!r}")
    cls = Dense if kind == "dense" else Conv
    required = _SPEC_KEYS[kind] + _LEARNING_KEYS
    known = set(required) | set(_CAP_KEYS) | {"kind"}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"for a {kind} layer (known: {', '.join(sorted(known))})")
    missing = [k for k in required if k not in d]
    if missing:
        raise ConfigError(f"{where}: a {kind} layer needs {', '.join(missing)}")
    return cls(**{k: v for k, v in d.items() if k != "kind"})


def _legacy_dense_dict(c: Config) -> dict | None:
    if not (c.is_dense and c.n_layers == 2 and c.update_order == "hardware" and c.batch_size == 1
            and c.average_steps == 1 and not c.minus_from_free and not c.mirror_images and not c.pad
            and c.acc_bits == 0 and c.update_bits == 0 and c.input_channels == 1
            and not any(getattr(ly, k) for ly in c.layers for k in _CAP_KEYS)):
        return None
    h, y = c.layers
    return {"name": c.name, "inputs": c.inputs, "hidden": h.neurons, "outputs": y.neurons, "crop": c.crop,
            **{k: getattr(c, k) for k in ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits",
                                           "rate_bits", "membrane_frac_bits", "leak_shift", "input_shift",
                                           "beta_shift", "drive_bits", "membrane_bits", "free_steps",
                                           "nudge_steps", "symmetric_nudge")},
            "w1_shift": h.w_shift, "w2_shift": y.w_shift, "b1_shift": h.b_shift, "b2_shift": y.b_shift,
            "lr_decay_epochs": c.lr_decay_epochs, "augment_shift": c.shift_pixels,
            "w1_init": h.w_init, "w2_init": y.w_init, "seed": c.seed, "description": c.description}


def _legacy_conv_dict(c: Config) -> dict | None:
    convs = [ly for ly in c.layers if ly.kind == "conv"]
    if not (convs and c.layers[0].kind == "conv" and c.is_image and not c.crop and c.update_order == "tensor"
            and c.acc_bits and c.update_bits
            and len({(ly.kernel, ly.pool, ly.pooling) for ly in convs}) == 1):
        return None
    wcaps = [ly.w_shift_cap for ly in c.layers]
    bcaps = [ly.b_shift_cap for ly in c.layers]
    if (any(wcaps) and not all(wcaps)) or (any(bcaps) and not all(bcaps)):
        return None
    return {"name": c.name, "image_size": c.image_side, "input_pad": c.pad, "input_channels": c.input_channels,
            "conv_channels": list(c.conv_channels), "kernel": convs[0].kernel, "pool": convs[0].pool,
            "pooling": convs[0].pooling, "fc_hidden": list(c.fc_hidden), "outputs": c.outputs,
            **{k: getattr(c, k) for k in ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits",
                                           "rate_bits", "membrane_frac_bits", "leak_shift", "input_shift",
                                           "beta_shift", "acc_bits", "drive_bits", "membrane_bits",
                                           "update_bits", "free_steps", "nudge_steps", "symmetric_nudge",
                                           "minus_from_free", "average_steps")},
            "w_shifts": list(c.w_shifts), "b_shifts": list(c.b_shifts), "w_init": list(c.w_init),
            "batch_size": c.batch_size, "lr_decay_epochs": c.lr_decay_epochs,
            "w_shift_caps": wcaps if any(wcaps) else [], "b_shift_caps": bcaps if any(bcaps) else [],
            "shift_pixels": c.shift_pixels, "mirror_images": c.mirror_images, "seed": c.seed,
            "description": c.description}


def with_overrides(c: Config, items: list[str]) -> Config:
    """``c`` with ``KEY=VALUE`` fields replaced (JSON values: ``leak_shift=1``,
    ``w_shifts=[15,15,14,13]``, ``minus_from_free=false``); raises ConfigError."""
    changes = {}
    known = {f.name for f in fields(Config)} | _LEGACY
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        if key not in known:
            raise ConfigError(f"--set {item!r}: unknown configuration field {key!r}")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"--set {item!r}: the value must be JSON (true, 16, [15,15,14,13])") from None
        if key == "layers":
            changes[key] = tuple(_layer_from_dict(d, f"--set layers entry {i + 1}")
                                 for i, d in enumerate(changes[key]))
    return replace(c, **changes)


def _geometry(c: Config, need=None) -> list[Layer]:
    def check(cond, msg):
        if need is not None:
            need(cond, msg)
        elif not cond:
            raise ConfigError(msg)

    shape = c.first_shape
    layers: list[Layer] = []
    for i, spec in enumerate(c.layers):
        if spec.kind == "conv":
            check(len(shape) == 3, f"layer {i + 1}: a convolution needs an image (or maps) below it")
            cin, h, _ = shape
            k, p = spec.kernel, spec.pool
            ho = h - k + 1
            check(ho >= 1, f"layer {i + 1}: {h}x{h} input is smaller than the {k}x{k} kernel")
            check(ho % p == 0, f"layer {i + 1}: output {ho}x{ho} is not divisible by pool {p}")
            out = (spec.channels, ho // p, ho // p)
            layers.append(Layer(i, "conv", shape, out, (spec.channels, cin, k, k), (spec.channels, ho, ho),
                                fan_in=cin * k * k, fan_back=spec.channels * k * k, kernel=k, pool=p,
                                pooling=spec.pooling))
            shape = out
        else:
            n_in = math.prod(shape)
            layers.append(Layer(i, "dense", shape, (spec.neurons,), (n_in, spec.neurons),
                                fan_in=n_in, fan_back=spec.neurons))
            shape = (spec.neurons,)
    return layers


def _worst_case(c: Config) -> dict[str, Width]:
    """Worst-case range of every integer quantity, from formats and geometry alone.

    Per layer ``l`` (1-based): ``drive_l`` (feed-forward from the layer below: the input,
    shifted right by ``input_shift``, or 0/1 spikes; feedback through the layer above's
    transposed weights, or the nudge at the output; bias) and ``update_l``; then the maxima
    over the layers (``drive``, ``membrane``, ``update``, ``acc`` when there are convolutions)
    and, for the hardware's units, ``input_acc``/``input_drive`` (a dense first layer's sum),
    ``hidden_drive``/``output_drive``, ``w1_product``/``w2_product`` (an update's products of
    an input or a rate with a rate) and ``rate_delta``.
    """
    wlo, whi = c.weight_range
    blo, bhi = c.bias_range
    xmax = (1 << c.input_bits) - 1
    R = c.rate_max
    layers = _geometry(c)
    out: dict[str, tuple[int, int]] = {"input": (0, xmax), "weight": (wlo, whi), "bias": (blo, bhi)}
    out["nudge"] = (shift(-(1 << c.rate_bits), c.nudge_shift), shift(1 << c.rate_bits, c.nudge_shift))
    acc = None
    drive_lo = drive_hi = 0
    hid_lo = hid_hi = 0
    upd = 0
    for i, ly in enumerate(layers):
        amax = xmax if i == 0 else 1
        if ly.kind == "conv":
            win = ly.pool * ly.pool
            lo, hi = win * ly.fan_in * amax * wlo, win * ly.fan_in * amax * whi
            acc = (min(acc[0], lo), max(acc[1], hi)) if acc else (lo, hi)
            sh = (c.input_shift if i == 0 else 0) + (ly.pool_shift if ly.pooling == "avg" else 0)
            ff = (lo >> sh, -((-hi) >> sh))
            positions = ly.conv_shape[1] * ly.conv_shape[2]
        else:
            sh = c.input_shift if i == 0 else 0
            lo, hi = ly.fan_in * amax * wlo, ly.fan_in * amax * whi
            if i == 0:
                out["input_acc"] = (lo, hi)
                out["input_drive"] = (lo >> sh, hi >> sh)
            ff = (lo >> sh, hi >> sh)       # a dense layer's input drive rounds down
            positions = 1
        if i + 1 < len(layers):
            nx = layers[i + 1]
            fl, fh = nx.fan_back * wlo, nx.fan_back * whi
            if nx.kind == "conv" and nx.pooling == "avg":
                fl, fh = fl >> nx.pool_shift, -((-fh) >> nx.pool_shift)
        else:
            fl, fh = out["nudge"]
        lo, hi = ff[0] + fl + blo, ff[1] + fh + bhi
        out[f"drive_{i + 1}"] = (lo, hi)
        drive_lo, drive_hi = min(drive_lo, lo), max(drive_hi, hi)
        if i + 1 < len(layers):
            hid_lo, hid_hi = min(hid_lo, lo), max(hid_hi, hi)
        a = xmax if i == 0 else R
        m = positions * c.batch_size * a * R
        out[f"update_{i + 1}"] = (-m, m)
        upd = max(upd, m)
    if acc is not None:
        out["acc"] = acc
    if len(layers) > 1:
        out["hidden_drive"] = (hid_lo, hid_hi)
    out["output_drive"] = out[f"drive_{len(layers)}"]
    out["drive"] = (drive_lo, drive_hi)
    # The membrane moves a fraction of the way to (drive << membrane_frac_bits) each step,
    # so it never leaves the range that drive spans (see golden.neuron.membrane_step).
    out["membrane"] = (drive_lo << c.membrane_frac_bits, drive_hi << c.membrane_frac_bits)
    out["membrane_delta"] = (out["membrane"][0] - out["membrane"][1], out["membrane"][1] - out["membrane"][0])
    out["rate"] = (0, R)
    out["sigma_delta"] = (0, R)
    out["rate_delta"] = (-R, R)
    out["rate_sum"] = (0, R * c.average_steps)
    out["w1_product"] = (-xmax * R, xmax * R)
    out["w2_product"] = (-R * R, R * R)
    out["update"] = (-upd, upd)
    result = {}
    for name, (lo, hi) in out.items():
        bits, sgn = bits_for(lo, hi)
        result[name] = Width(bits, sgn, lo, hi)
    return result


# -- files ----------------------------------------------------------------------------------
#: The TOML sections and their keys; a network's layers are an array of tables [[layers]].
SECTIONS = {
    "input": ("shape", "crop", "pad"),
    "fixed_point": ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits", "rate_bits",
                    "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift", "drive_bits",
                    "membrane_bits", "acc_bits", "update_bits"),
    "phases": ("free_steps", "nudge_steps", "symmetric_nudge", "minus_from_free", "average_steps"),
    "learning": ("batch_size", "update_order", "lr_decay_epochs", "shift_pixels", "mirror_images", "seed"),
}
#: Keys a file may leave out: features that are off by default, and widths left at their worst case.
OPTIONAL = {"crop": 0, "pad": 0, "acc_bits": 0, "update_bits": 0, "minus_from_free": False,
            "average_steps": 1, "shift_pixels": 0, "mirror_images": False}

# The earlier files: one hidden layer ([network] inputs, hidden, outputs) or convolutional
# ([network] conv_channels ...): still read.
_LEGACY_DENSE_SECTIONS = {
    "network": ("inputs", "hidden", "outputs", "crop"),
    "fixed_point": ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits", "rate_bits",
                    "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift",
                    "drive_bits", "membrane_bits"),
    "phases": ("free_steps", "nudge_steps", "symmetric_nudge"),
    "learning": ("w1_shift", "w2_shift", "b1_shift", "b2_shift", "lr_decay_epochs",
                 "augment_shift", "w1_init", "w2_init", "seed"),
}
_LEGACY_CONV_SECTIONS = {
    "network": ("image_size", "input_pad", "input_channels", "conv_channels", "kernel", "pool", "pooling",
                "fc_hidden", "outputs"),
    "fixed_point": ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits", "rate_bits",
                    "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift", "acc_bits",
                    "drive_bits", "membrane_bits", "update_bits"),
    "phases": ("free_steps", "nudge_steps", "symmetric_nudge", "minus_from_free", "average_steps"),
    "learning": ("w_shifts", "b_shifts", "w_init", "batch_size", "lr_decay_epochs", "w_shift_caps",
                 "b_shift_caps", "shift_pixels", "mirror_images", "seed"),
}


def shipped_configs() -> dict[str, Path]:
    """Names and paths of the configurations shipped in ``configs/``."""
    folder = Path(str(resources.files("eqfpga.configs")))
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def load_config(name_or_path: str | Path) -> Config:
    """Load a configuration by shipped name (``up5k``) or TOML path. Raises ConfigError, one
    line naming the file."""
    path = Path(name_or_path)
    if not path.suffix:
        shipped = shipped_configs()
        if str(name_or_path) not in shipped:
            raise ConfigError(f"unknown configuration {str(name_or_path)!r} "
                              f"(shipped: {', '.join(shipped)}; or give a .toml path)")
        path = shipped[str(name_or_path)]
    kwargs = read_config_file(path)
    try:
        c = Config(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return c


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a TOML file must be UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def read_config_file(path: Path) -> dict:
    """The constructor's keywords from the configuration file ``path``: a UTF-8 TOML file with
    optional top-level ``name`` (default: the file's stem) and ``description``, the sections
    of :data:`SECTIONS` and an array of ``[[layers]]`` tables, each with its ``kind``
    (``"dense"``: ``neurons``; ``"conv"``: ``channels``, ``kernel``, ``pool``, ``pooling``) and
    its learning rule (``w_shift``, ``b_shift``, ``w_init``; optional ``w_shift_cap``,
    ``b_shift_cap``). Every section and key is required but those of :data:`OPTIONAL`, so
    that no value of the network is taken silently from a default. The earlier
    one-hidden-layer and convolutional files (a ``[network]`` section) are read too.

    Raises
    ------
    ConfigError
        One line naming the file and the fault: not found, not UTF-8, not TOML, an unknown or
        missing section or key, a section that is no table, a layer that is no table.
    """
    doc = _read_toml(path)
    kwargs = {"name": doc.pop("name", path.stem), "description": doc.pop("description", "")}
    if "network" in doc:
        legacy = (_LEGACY_CONV_SECTIONS if isinstance(doc["network"], dict) and "conv_channels" in doc["network"]
                  else _LEGACY_DENSE_SECTIONS)
        optional = ("crop", "augment_shift", "input_pad", "w_shift_caps", "b_shift_caps", "shift_pixels",
                    "mirror_images")
        kwargs.update(_sections(path, doc, legacy, optional))
        if legacy is _LEGACY_CONV_SECTIONS:
            kwargs["update_order"] = "tensor"
        return kwargs
    layers = doc.pop("layers", None)
    values = _sections(path, doc, SECTIONS, tuple(OPTIONAL), layers)
    if not isinstance(layers, list) or not layers:
        raise ConfigError(f"{path}: layers must be an array of tables [[layers]], got {layers!r}")
    shape = values.pop("shape")
    if not isinstance(shape, list):
        raise ConfigError(f"{path}: [input] shape must be [channels, height, width] or [values], got {shape!r}")
    kwargs["input_shape"] = tuple(shape)
    kwargs["layers"] = tuple(_layer_from_dict(d, f"{path}: layer {i + 1}") for i, d in enumerate(layers))
    kwargs.update(values)
    return kwargs


def _sections(path: Path, doc: dict, sections: dict, optional: tuple, layers=False) -> dict:
    """The keys of ``doc``'s ``sections``; ``layers`` is the file's [[layers]] (None: missing),
    or False for the earlier formats, which have none."""
    known = ", ".join([f"[{s}]" for s in sections] + (["[[layers]]"] if layers is not False else []))
    out = {}
    for section, table in doc.items():
        if section not in sections:
            what = (f"section [{section}]" if isinstance(table, dict) else
                    f"array of tables [[{section}]]" if isinstance(table, list) and table
                    and all(isinstance(t, dict) for t in table) else f"top-level key {section!r}")
            raise ConfigError(f"{path}: unknown {what} (known: name, description, {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a section [{section}], got {table!r}")
        for key, value in table.items():
            if key not in sections[section]:
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]")
            out[key] = value
    missing = [f"[{s}]" for s in sections if s not in doc] + (["[[layers]]"] if layers is None else [])
    if missing:
        raise ConfigError(f"{path}: missing section{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"(a configuration needs {known})")
    for section, keys in sections.items():
        missing = [k for k in keys if k not in doc[section] and k not in optional]
        if missing:
            may = [k for k in keys if k in optional]
            raise ConfigError(f"{path}: [{section}] lacks {', '.join(missing)} (every key of [{section}] is "
                              f"required" + (f" but {', '.join(may)})" if may else ")"))
    return out


def config_to_toml(c: Config) -> str:
    """The TOML text that :func:`load_config` turns back into ``c``."""
    lines = [f"name = {json.dumps(c.name)}"]
    if c.description:
        lines.append(f"description = {json.dumps(c.description)}")
    d = c.to_dict()
    d["shape"] = d.pop("input_shape")
    for section, keys in SECTIONS.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {json.dumps(d[k])}" for k in keys if not (k in OPTIONAL and d[k] == OPTIONAL[k])]
    for ly in d["layers"]:
        lines.append("\n[[layers]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in ly.items()]
    return "\n".join(lines) + "\n"


def config_from_dict(d: dict) -> Config:
    """Rebuild a configuration stored as :meth:`Config.to_dict` (e.g. in a checkpoint), or
    as the earlier configurations stored it."""
    if not isinstance(d, dict):
        raise ConfigError(f"a stored configuration must be a table, got {type(d).__name__}")
    d = dict(d)
    if "layers" in d:
        if not isinstance(d["layers"], list):
            raise ConfigError("stored configuration: layers must be a list")
        d["layers"] = tuple(_layer_from_dict(ly, f"stored configuration layer {i + 1}")
                            for i, ly in enumerate(d["layers"]))
        if isinstance(d.get("input_shape"), list):
            d["input_shape"] = tuple(d["input_shape"])
    elif "conv_channels" in d:
        d.setdefault("update_order", "tensor")
    name = d.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"stored configuration: name must be a string, got {name!r}")
    return Config(name, **d)
