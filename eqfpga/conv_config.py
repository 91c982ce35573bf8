"""Configuration of the convolutional spiking EP network (issue 7), same rules as :mod:`eqfpga.config`.

A :class:`ConvConfig` is frozen and validated when it is made: the geometry must tile (every
valid convolution's output divisible by the pooling window), and every integer quantity's
worst-case range is computed from the formats; a configuration whose declared widths
(``acc_bits``, ``drive_bits``, ``membrane_bits``, ``update_bits``) cannot hold it is refused
with a :class:`~eqfpga.config.ConfigError` naming the quantity and the range.

Network (``L = len(conv_channels) + len(fc_hidden) + 1`` weight layers, one neuron layer after
each)::

    x (input_channels, image_size, image_size), zero-padded by input_pad on every side
    -> conv k x k (valid) -> pool p x p -> neurons s_1 (conv_channels[0], ...)
    -> conv k x k (valid) -> pool p x p -> neurons s_2 ...
    -> flatten -> fully connected -> neurons (fc_hidden[0]) ... -> fully connected -> outputs

Number formats (all integers), as in :mod:`eqfpga.config`:

- input ``x``: ``input_bits`` unsigned, ``x = pixel >> (8 - input_bits)``.
- weights ``W_l``: ``weight_bits`` signed; a rate of 1.0 through ``w`` adds ``w`` drive units,
  ``2**weight_frac_bits`` drive units are 1.0. Biases: ``bias_bits`` signed, drive units.
- conv accumulator (a pooling window's sum of convolution outputs, before its shift): ``acc_bits``.
- drive ``P``: ``drive_bits`` signed. Membrane ``v``: ``membrane_bits`` signed.
- rate ``R = clip(v >> rate_shift, 0, 2**rate_bits - 1)``; spikes are 0/1.
- EP update accumulator ``q`` of one weight (sum over positions and the batch of rate
  products, +beta minus -beta): ``update_bits`` signed.

The neuron fields (``membrane_frac_bits``, ``leak_shift``, ``rate_bits``, ``rate_shift``,
``rate_max``, ``spike_threshold``, ``nudge_shift``) have the meaning and names of
:class:`eqfpga.config.Config`, so :mod:`eqfpga.golden.neuron` serves both networks. Unlike
the fully connected model (whose RTL neuron only shifts right), ``nudge_shift`` may be
negative: weights may carry more fraction bits than ``beta_shift + rate_bits``, which makes
the weight grid finer than the EP update's natural step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from importlib import resources
from pathlib import Path

from eqfpga.config import IMAGE_SIDE, LFSR_BITS, ConfigError, NeuronFormats, Width, bits_for, read_sections, shift

__all__ = ["TRAINING_MODES", "ConvConfig", "Layer", "load_conv_config", "conv_config_from_dict", "conv_config_to_toml",
           "shipped_conv_configs", "FLOAT64_EXACT_BITS"]

#: Integer sums are computed through float64 BLAS; exact while every partial sum stays
#: below 2**53 (checked on creation).
FLOAT64_EXACT_BITS = 53

#: How a conv network can be trained: the integer golden model, the float rate network, the
#: float spiking network (:mod:`eqfpga.golden.conv_train`).
TRAINING_MODES = ("int", "float", "float-spiking")

_TUPLES = ("conv_channels", "fc_hidden", "w_shifts", "b_shifts", "w_init", "w_shift_caps", "b_shift_caps")


@dataclass(frozen=True)
class Layer:
    """Geometry of weight layer ``index`` (0-based) and the neuron layer it feeds."""

    index: int
    kind: str                      # "conv" or "fc"
    in_shape: tuple[int, ...]      # (C, H, W) or (N,)
    out_shape: tuple[int, ...]     # neuron layer shape after pooling: (C, H, W) or (N,)
    weight_shape: tuple[int, ...]  # (O, C, k, k) or (N_in, N_out)
    conv_shape: tuple[int, ...] = ()  # (O, H, W) before pooling (conv only)
    fan_in: int = 0                # inputs summed into one convolution output / FC neuron
    fan_back: int = 0              # most weights one input position receives feedback through


@dataclass(frozen=True)
class ConvConfig(NeuronFormats):
    """Geometry, fixed-point formats, phases and learning rule of the convolutional network."""

    name: str
    # network
    image_size: int = 28
    # zero pixels around the image before the first convolution (kernel // 2 keeps its output
    # at the image's size, a 'same' convolution); the hardware streams them as zeros
    input_pad: int = 0
    input_channels: int = 1
    conv_channels: tuple = (16, 32)
    kernel: int = 5
    pool: int = 2
    pooling: str = "avg"            # "avg" (the EP-correct choice) or "max" (to show the mismatch)
    fc_hidden: tuple = (128,)
    outputs: int = 10
    # fixed point
    input_bits: int = 8
    weight_bits: int = 12
    weight_frac_bits: int = 9
    bias_bits: int = 14
    rate_bits: int = 8
    membrane_frac_bits: int = 2
    leak_shift: int = 2
    input_shift: int = 8
    beta_shift: int = 1
    acc_bits: int = 28
    drive_bits: int = 24
    membrane_bits: int = 26
    update_bits: int = 32
    # phases
    free_steps: int = 40
    nudge_steps: int = 12
    symmetric_nudge: bool = True
    # the -beta phase starts from the free state (True; the hardware keeps a copy of it) or
    # continues from the +beta state (False)
    minus_from_free: bool = False
    # the update's rates are the mean over the last average_steps steps of each nudged phase
    average_steps: int = 1
    # learning: one shift per weight layer (larger shift = smaller rate)
    w_shifts: tuple = (16, 16, 15, 14)
    b_shifts: tuple = (12, 12, 10, 10)
    w_init: tuple = (100, 26, 22, 44)
    batch_size: int = 16
    lr_decay_epochs: int = 0
    # the decay stops at these shifts, one per layer; empty: the LFSR's LFSR_BITS for every
    # layer. Formats with more rate or weight fraction bits need larger shifts for the same
    # real rates, and caps above LFSR_BITS keep their schedule that of the coarser format.
    w_shift_caps: tuple = ()
    b_shift_caps: tuple = ()
    # training images are moved by a random whole number of pixels in [-shift_pixels,
    # shift_pixels] along each axis (zero fill), drawn per epoch (``conv_train.epoch_augmentation``)
    shift_pixels: int = 0
    # half of the training images, drawn per epoch, are mirrored left to right (before the
    # shift); for data whose classes a mirror keeps (Fashion-MNIST, not digits)
    mirror_images: bool = False
    seed: int = 1
    description: str = field(default="", compare=False)

    def __post_init__(self):
        for name in _TUPLES:   # TOML gives lists; a frozen config keeps tuples
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        self._validate()

    # -- formats beyond the neuron's (NeuronFormats) -------------------------------------
    @property
    def average_shift(self) -> int:
        """log2 of ``average_steps``: the update's rate = (sum of the last rates) >> average_shift, rounded."""
        return self.average_steps.bit_length() - 1

    @property
    def pool_shift(self) -> int:
        """log2 of the pooling window (``pool * pool`` positions): average = sum >> pool_shift."""
        return 2 * (self.pool.bit_length() - 1)

    @property
    def weight_range(self) -> tuple[int, int]:
        return -(1 << (self.weight_bits - 1)), (1 << (self.weight_bits - 1)) - 1

    @property
    def bias_range(self) -> tuple[int, int]:
        return -(1 << (self.bias_bits - 1)), (1 << (self.bias_bits - 1)) - 1

    @property
    def padded_size(self) -> int:
        """Side of the first convolution's input: the image with its ``input_pad`` border."""
        return self.image_size + 2 * self.input_pad

    @property
    def n_conv(self) -> int:
        return len(self.conv_channels)

    @property
    def n_layers(self) -> int:
        """Weight layers (= neuron layers; the last is the output)."""
        return len(self.conv_channels) + len(self.fc_hidden) + 1

    @cached_property
    def layers(self) -> tuple[Layer, ...]:
        """Computed once per configuration (the models ask for it every step)."""
        return tuple(_geometry(self))

    @property
    def widths(self) -> dict[str, Width]:
        return _worst_case(self)

    @property
    def beta(self) -> float:
        return 2.0 ** -self.beta_shift

    def at_epoch(self, epoch: int) -> "ConvConfig":
        """Learning shifts in force during ``epoch``: +1 every ``lr_decay_epochs`` epochs."""
        if not self.lr_decay_epochs:
            return self
        d = epoch // self.lr_decay_epochs
        return replace(self, w_shifts=tuple(min(cap, s + d) for s, cap in zip(self.w_shifts, self.caps("w"))),
                       b_shifts=tuple(min(cap, s + d) for s, cap in zip(self.b_shifts, self.caps("b"))))

    def caps(self, kind: str) -> tuple:
        """Per-layer ceiling of the ``w`` or ``b`` learning shifts."""
        given = getattr(self, f"{kind}_shift_caps")
        return given or (LFSR_BITS,) * self.n_layers

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}

    @property
    def model_hash(self) -> str:
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    # -- validation -----------------------------------------------------------------------
    def _validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"conv config {self.name!r}: {msg}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                need(isinstance(v, int) and not isinstance(v, bool),
                     f"{f.name} must be an integer, got {v!r}")
            if f.name in _TUPLES:
                need(isinstance(v, tuple) and all(isinstance(e, int) and not isinstance(e, bool)
                                                  for e in v),
                     f"{f.name} must be a list of integers, got {v!r}")
        need(isinstance(self.name, str), f"name must be a string, got {self.name!r}")
        need(isinstance(self.description, str), f"description must be a string, got {self.description!r}")
        need(isinstance(self.symmetric_nudge, bool), "symmetric_nudge must be true or false")
        need(isinstance(self.minus_from_free, bool), "minus_from_free must be true or false")
        need(isinstance(self.mirror_images, bool), "mirror_images must be true or false")
        need(not self.minus_from_free or self.symmetric_nudge, "minus_from_free needs symmetric_nudge")
        need(self.pooling in ("avg", "max"), f"pooling must be 'avg' or 'max', got {self.pooling!r}")
        for name in ("image_size", "input_channels", "kernel", "pool", "outputs", "input_bits",
                     "weight_bits", "bias_bits", "rate_bits", "acc_bits", "drive_bits",
                     "membrane_bits", "update_bits", "free_steps", "nudge_steps", "batch_size",
                     "average_steps"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_frac_bits", "membrane_frac_bits", "leak_shift", "input_shift",
                     "beta_shift", "lr_decay_epochs", "shift_pixels", "seed", "input_pad"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.shift_pixels < self.image_size,
             f"shift_pixels must be < image_size ({self.image_size}), got {self.shift_pixels}")
        need(len(self.conv_channels) >= 1, "conv_channels needs at least one convolution")
        need(all(c >= 1 for c in self.conv_channels + self.fc_hidden),
             "every layer needs at least one channel / neuron")
        need(self.average_steps & (self.average_steps - 1) == 0
             and self.average_steps <= min(self.nudge_steps, self.free_steps),
             f"average_steps must be a power of two <= nudge_steps and free_steps, got {self.average_steps}")
        need(self.pool & (self.pool - 1) == 0, f"pool must be a power of two, got {self.pool}")
        need(self.outputs >= 2, "outputs must be >= 2 (argmax needs classes)")
        need(self.input_bits <= 8, f"input_bits must be <= 8, got {self.input_bits}")
        need(self.weight_bits >= 2, "weight_bits must be >= 2")
        need(self.bias_bits >= self.weight_bits, "bias_bits must be >= weight_bits")
        need(self.rate_shift >= 0, "membrane_frac_bits + weight_frac_bits must be >= rate_bits")
        need(self.leak_shift <= self.membrane_frac_bits,
             f"leak_shift ({self.leak_shift}) must be <= membrane_frac_bits ({self.membrane_frac_bits})")
        L = self.n_layers
        for name in ("w_shifts", "b_shifts", "w_init"):
            need(len(getattr(self, name)) == L,
                 f"{name} needs one entry per weight layer ({L}), got {len(getattr(self, name))}")
        for kind in ("w", "b"):
            caps = getattr(self, f"{kind}_shift_caps")
            need(not caps or len(caps) == L,
                 f"{kind}_shift_caps needs one entry per weight layer ({L}) or none, got {len(caps)}")
            need(all(LFSR_BITS <= cap < self.update_bits for cap in caps),
                 f"{kind}_shift_caps entries must be in [{LFSR_BITS}, update_bits - 1], got {list(caps)}")
            for s, cap in zip(getattr(self, f"{kind}_shifts"), self.caps(kind)):
                need(0 <= s <= cap,
                     f"{kind}_shifts entry {s} must be in [0, {cap}] (the LFSR gives {LFSR_BITS} random "
                     f"bits; larger shifts need {kind}_shift_caps)")
        whi = self.weight_range[1]
        need(all(0 <= w <= whi for w in self.w_init),
             f"w_init {self.w_init} must lie in [0, {whi}] (the {self.weight_bits}-bit weight maximum)")
        _geometry(self, need)
        widths = _worst_case(self)
        for name in ("acc", "drive", "membrane", "update"):
            w, declared = widths[name], getattr(self, f"{name}_bits")
            need(w.bits <= declared,
                 f"{name}_bits = {declared} cannot hold the worst-case {name} range "
                 f"[{w.lo}, {w.hi}] (needs {w.bits} bits)")
        need(widths["update"].bits <= FLOAT64_EXACT_BITS and widths["acc"].bits <= FLOAT64_EXACT_BITS,
             "integer sums would exceed float64's exact range (2**53)")


def with_overrides(c: ConvConfig, items: list[str]) -> ConvConfig:
    """``c`` with ``KEY=VALUE`` fields replaced (JSON values: ``leak_shift=1``,
    ``w_shifts=[15,15,14,13]``, ``minus_from_free=false``); raises ConfigError."""
    changes, known = {}, {f.name for f in fields(ConvConfig)}
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
    return replace(c, **changes)


def _geometry(c: ConvConfig, need=None) -> list[Layer]:
    def check(cond, msg):
        if need is not None:
            need(cond, msg)
        elif not cond:
            raise ConfigError(msg)

    k, p = c.kernel, c.pool
    shape = (c.input_channels, c.padded_size, c.padded_size)
    layers: list[Layer] = []
    for i, ch in enumerate(c.conv_channels):
        cin, h, _ = shape
        ho = h - k + 1
        check(ho >= 1, f"conv layer {i + 1}: {h}x{h} input is smaller than the {k}x{k} kernel")
        check(ho % p == 0, f"conv layer {i + 1}: output {ho}x{ho} is not divisible by pool {p}")
        out = (ch, ho // p, ho // p)
        layers.append(Layer(i, "conv", shape, out, (ch, cin, k, k), (ch, ho, ho),
                            fan_in=cin * k * k, fan_back=ch * k * k))
        shape = out
    n_in = shape[0] * shape[1] * shape[2]
    sizes = list(c.fc_hidden) + [c.outputs]
    for j, n in enumerate(sizes):
        layers.append(Layer(c.n_conv + j, "fc", shape if j == 0 else (n_in,), (n,), (n_in, n),
                            fan_in=n_in, fan_back=n))
        n_in, shape = n, (n,)
    return layers


def _worst_case(c: ConvConfig) -> dict[str, Width]:
    """Worst-case range of every integer quantity, from formats and geometry alone."""
    wlo, whi = c.weight_range
    blo, bhi = c.bias_range
    xmax = (1 << c.input_bits) - 1
    R = c.rate_max
    win = c.pool * c.pool
    layers = _geometry(c)
    out: dict[str, tuple[int, int]] = {"input": (0, xmax), "weight": (wlo, whi), "bias": (blo, bhi)}
    out["nudge"] = (shift(-(1 << c.rate_bits), c.nudge_shift), shift(1 << c.rate_bits, c.nudge_shift))
    acc_lo = acc_hi = 0
    drive_lo = drive_hi = 0
    upd = 0
    for i, ly in enumerate(layers):
        # feed-forward term: inputs are x (layer 0, then >> input_shift) or 0/1 spikes
        amax = xmax if i == 0 else 1
        if ly.kind == "conv":
            lo, hi = win * ly.fan_in * amax * wlo, win * ly.fan_in * amax * whi
            acc_lo, acc_hi = min(acc_lo, lo), max(acc_hi, hi)
            sh = (c.input_shift if i == 0 else 0) + (c.pool_shift if c.pooling == "avg" else 0)
            ff = (lo >> sh, -((-hi) >> sh))
            positions = ly.conv_shape[1] * ly.conv_shape[2]
        else:
            sh = c.input_shift if i == 0 else 0
            ff = ((ly.fan_in * amax * wlo) >> sh, -((-(ly.fan_in * amax * whi)) >> sh))
            positions = 1
        # feedback term from the next layer (transposed weights), none for the output layer
        if i + 1 < len(layers):
            nxt = layers[i + 1]
            if nxt.kind == "conv":
                fl, fh = nxt.fan_back * wlo, nxt.fan_back * whi
                if c.pooling == "avg":
                    fl, fh = fl >> c.pool_shift, -((-fh) >> c.pool_shift)
            else:
                fl, fh = nxt.fan_back * wlo, nxt.fan_back * whi
        else:
            fl, fh = out["nudge"]
        lo, hi = ff[0] + fl + blo, ff[1] + fh + bhi
        out[f"drive_{i + 1}"] = (lo, hi)
        drive_lo, drive_hi = min(drive_lo, lo), max(drive_hi, hi)
        # EP update accumulator: sum over positions and batch of (pre-synaptic x or rate) *
        # (post-synaptic rate, upsampled); +beta term minus -beta term
        a = xmax if i == 0 else R
        m = positions * c.batch_size * a * R
        out[f"update_{i + 1}"] = (-m, m)
        upd = max(upd, m)
    out["acc"] = (acc_lo, acc_hi)
    out["drive"] = (drive_lo, drive_hi)
    out["membrane"] = (drive_lo << c.membrane_frac_bits, drive_hi << c.membrane_frac_bits)
    out["rate"] = (0, R)
    out["sigma_delta"] = (0, R)
    out["rate_sum"] = (0, R * c.average_steps)
    out["update"] = (-upd, upd)
    result = {}
    for name, (lo, hi) in out.items():
        bits, sgn = bits_for(lo, hi)
        result[name] = Width(bits, sgn, lo, hi)
    return result


#: The TOML sections of a conv configuration and their fields.
SECTIONS = {
    "network": ("image_size", "input_pad", "input_channels", "conv_channels", "kernel", "pool", "pooling",
                "fc_hidden", "outputs"),
    "fixed_point": ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits", "rate_bits",
                    "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift", "acc_bits",
                    "drive_bits", "membrane_bits", "update_bits"),
    "phases": ("free_steps", "nudge_steps", "symmetric_nudge", "minus_from_free", "average_steps"),
    "learning": ("w_shifts", "b_shifts", "w_init", "batch_size", "lr_decay_epochs", "w_shift_caps",
                 "b_shift_caps", "shift_pixels", "mirror_images", "seed"),
}


#: Keys a conv configuration file may leave out: features that are off by default.
OPTIONAL_KEYS = ("input_pad", "w_shift_caps", "b_shift_caps", "shift_pixels", "mirror_images")


def shipped_conv_configs() -> dict[str, Path]:
    """Names and paths of the shipped convolutional configurations (``configs/conv_*.toml``)."""
    folder = Path(str(resources.files("eqfpga.configs")))
    return {p.stem: p for p in sorted(folder.glob("conv_*.toml"))}


def load_conv_config(name_or_path: str | Path) -> ConvConfig:
    """Load by shipped name (``conv_mnist``) or TOML path. Raises ConfigError."""
    path = Path(name_or_path)
    if not path.suffix:
        shipped = shipped_conv_configs()
        if str(name_or_path) not in shipped:
            raise ConfigError(f"unknown conv configuration {str(name_or_path)!r} "
                              f"(shipped: {', '.join(shipped)}; or give a .toml path)")
        path = shipped[str(name_or_path)]
    c = ConvConfig(**read_sections(path, SECTIONS, OPTIONAL_KEYS))
    if (c.image_size, c.input_channels) != (IMAGE_SIDE, 1):
        raise ConfigError(f"{path}: image_size = {c.image_size}, input_channels = {c.input_channels}: the "
                          f"data sets' images are {IMAGE_SIDE}x{IMAGE_SIDE} with 1 channel")
    return c


def conv_config_to_toml(c: ConvConfig) -> str:
    lines = [f"name = {json.dumps(c.name)}"]
    if c.description:
        lines.append(f"description = {json.dumps(c.description)}")
    d = c.to_dict()
    for section, keys in SECTIONS.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {json.dumps(d[k])}" for k in keys]
    return "\n".join(lines) + "\n"


def conv_config_from_dict(d: dict) -> ConvConfig:
    known = {f.name for f in fields(ConvConfig)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown conv configuration keys {sorted(unknown)}")
    return ConvConfig(**d)
