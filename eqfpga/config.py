"""The one configuration that golden model, hardware generator and boards share.

A :class:`Config` is frozen and validated when it is made: every integer quantity of the
network has its worst-case range computed here, and a configuration whose declared widths
cannot hold that range is refused with a :class:`ConfigError` naming the quantity. Fixed-point
formats are written down here once; :attr:`Config.widths` is where the golden model and the
RTL read them.

Number formats (all integers):

- input ``x``: ``input_bits`` unsigned, ``x = pixel >> (8 - input_bits)``, of the ``inputs``
  pixels left of a square image of ``pixels`` once ``crop`` pixels are dropped at every border
  (MNIST's 4-pixel border is nearly always blank: dropping it frees three fifths of W1).
- weights ``W1`` (inputs x hidden), ``W2`` (hidden x outputs): ``weight_bits`` signed. A rate of
  1.0 fed through a weight ``w`` adds ``w`` to the drive; ``2**weight_frac_bits`` drive units
  are the rate 1.0 (``ONE``).
- biases ``b1``, ``b2``: ``bias_bits`` signed, in drive units.
- drive ``P``: the neuron's input per time step, ``drive_bits`` signed.
- membrane ``v``: ``membrane_bits`` signed, drive units scaled by ``2**membrane_frac_bits``.
- rate ``R``: ``rate_bits`` unsigned, ``R = clip(v >> rate_shift, 0, 2**rate_bits - 1)``
  where ``rate_shift = membrane_frac_bits + weight_frac_bits - rate_bits``; the spike rate of
  a neuron is ``R / 2**rate_bits`` spikes per step.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

__all__ = ["ConfigError", "Config", "NeuronFormats", "Width", "load_config", "shipped_configs", "LFSR_BITS"]

#: Width of the stochastic-rounding LFSR (see :mod:`eqfpga.golden.lfsr`); a learning shift
#: may use at most this many random bits.
LFSR_BITS = 17


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


class NeuronFormats:
    """The neuron's derived fixed-point formats, shared by every configuration that has
    ``weight_frac_bits``, ``rate_bits``, ``membrane_frac_bits`` and ``beta_shift``."""

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
        """Nudge = (target - R) >> nudge_shift drive units, i.e. beta = 2**-beta_shift."""
        return self.beta_shift + self.rate_bits - self.weight_frac_bits


@dataclass(frozen=True)
class Config(NeuronFormats):
    """Network shape, fixed-point formats, phases and learning rule of one design."""

    name: str
    # network
    inputs: int = 784
    hidden: int = 128
    outputs: int = 10
    crop: int = 0   # pixels dropped at each border of a square image before the first layer
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
    # phases
    free_steps: int = 32
    nudge_steps: int = 16
    symmetric_nudge: bool = False
    # learning (learning rates are powers of two: a larger shift is a smaller rate)
    w1_shift: int = 12
    w2_shift: int = 12
    b1_shift: int = 8
    b2_shift: int = 8
    lr_decay_epochs: int = 0
    # training images are moved by up to this many pixels in x and y (zero fill) before they
    # reach the chip: host-side augmentation, the chip trains on whatever it is sent
    augment_shift: int = 0
    w1_init: int = 16
    w2_init: int = 16
    seed: int = 1
    description: str = field(default="", compare=False)

    def __post_init__(self):
        self._validate()

    @property
    def pixels(self) -> int:
        """Pixels of an input image: ``inputs``, or the square of side ``sqrt(inputs) + 2 crop``
        whose border of ``crop`` pixels is dropped (row-major; the kept pixels in order are
        the ``inputs`` inputs)."""
        if not self.crop:
            return self.inputs
        return (math.isqrt(self.inputs) + 2 * self.crop) ** 2

    @property
    def image_side(self) -> int:
        """Side of the (square) input image, when ``crop`` is set."""
        return math.isqrt(self.pixels)

    # -- derived formats (neuron formats: NeuronFormats) -------------------------------
    @property
    def weight_range(self) -> tuple[int, int]:
        return _signed_range(self.weight_bits)

    @property
    def bias_range(self) -> tuple[int, int]:
        return _signed_range(self.bias_bits)

    @property
    def widths(self) -> dict[str, Width]:
        """Every integer quantity's worst-case range and the width that holds it."""
        return _worst_case(self)

    def at_epoch(self, epoch: int) -> "Config":
        """The learning shifts in force during ``epoch`` (counted from 0): every
        ``lr_decay_epochs`` epochs each shift grows by one (the rate halves), at most to the
        LFSR width. The host sets these on the chip between epochs."""
        if not self.lr_decay_epochs:
            return self
        d = epoch // self.lr_decay_epochs
        return replace(self, **{k: min(LFSR_BITS, getattr(self, k) + d)
                                for k in ("w1_shift", "w2_shift", "b1_shift", "b2_shift")})

    # -- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def model_hash(self) -> str:
        """SHA-256 over everything that changes what the network computes (not its name).
        ``crop`` and ``augment_shift`` enter only when set, so configurations made before them
        keep their hash."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("name", "description")
             and not (k in ("crop", "augment_shift") and v == 0)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    # -- validation -----------------------------------------------------------------------
    def _validate(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(f"config {self.name!r}: {msg}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.type == "int":
                need(isinstance(v, int) and not isinstance(v, bool),
                     f"{f.name} must be an integer, got {v!r}")
        for name in ("inputs", "hidden", "outputs", "input_bits", "weight_bits", "bias_bits",
                     "rate_bits", "drive_bits", "membrane_bits", "free_steps", "nudge_steps"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_frac_bits", "membrane_frac_bits", "leak_shift", "input_shift",
                     "beta_shift", "w1_shift", "w2_shift", "b1_shift", "b2_shift",
                     "w1_init", "w2_init", "seed", "lr_decay_epochs", "crop", "augment_shift"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(isinstance(self.name, str), f"name must be a string, got {self.name!r}")
        need(isinstance(self.description, str), f"description must be a string, got {self.description!r}")
        need(isinstance(self.symmetric_nudge, bool),
             f"symmetric_nudge must be true or false, got {self.symmetric_nudge!r}")
        need(self.outputs >= 2, "outputs must be >= 2 (argmax needs classes)")
        need(not self.crop or math.isqrt(self.inputs) ** 2 == self.inputs,
             f"crop needs a square input window: inputs = {self.inputs} is not a square")
        need(not self.augment_shift or math.isqrt(self.pixels) ** 2 == self.pixels,
             f"augment_shift needs square images: {self.pixels} pixels is not a square")
        need(self.augment_shift < math.isqrt(self.pixels),
             f"augment_shift {self.augment_shift} moves the whole image out of its "
             f"{math.isqrt(self.pixels)}-pixel side")
        need(self.input_bits <= 8, f"input_bits must be <= 8 (pixels are 8 bit), got {self.input_bits}")
        need(self.weight_bits >= 2, "weight_bits must be >= 2")
        need(self.bias_bits >= self.weight_bits,
             f"bias_bits ({self.bias_bits}) must be >= weight_bits ({self.weight_bits})")
        need(self.rate_shift >= 0,
             f"membrane_frac_bits + weight_frac_bits ({self.membrane_frac_bits} + "
             f"{self.weight_frac_bits}) must be >= rate_bits ({self.rate_bits})")
        need(self.nudge_shift >= 0,
             f"beta_shift + rate_bits - weight_frac_bits must be >= 0, got {self.nudge_shift}")
        need(self.leak_shift <= self.membrane_frac_bits,
             f"leak_shift ({self.leak_shift}) must be <= membrane_frac_bits "
             f"({self.membrane_frac_bits}), or the membrane cannot settle to within one drive unit")
        for name in ("w1_shift", "w2_shift", "b1_shift", "b2_shift"):
            need(getattr(self, name) <= LFSR_BITS,
                 f"{name} = {getattr(self, name)} needs more random bits than the "
                 f"{LFSR_BITS}-bit LFSR gives")
        wlo, whi = self.weight_range
        need(self.w1_init <= whi and self.w2_init <= whi,
             f"initial weight range (w1_init={self.w1_init}, w2_init={self.w2_init}) "
             f"exceeds the {self.weight_bits}-bit weight maximum {whi}")
        widths = _worst_case(self)
        for name, declared in (("drive", self.drive_bits), ("membrane", self.membrane_bits)):
            w = widths[name]
            need(w.bits <= declared,
                 f"{name}_bits = {declared} cannot hold the worst-case {name} range "
                 f"[{w.lo}, {w.hi}] (needs {w.bits} bits)")


def _worst_case(c: Config) -> dict[str, Width]:
    """Worst-case range of every integer quantity, from the formats alone."""
    wlo, whi = _signed_range(c.weight_bits)
    blo, bhi = _signed_range(c.bias_bits)
    xmax = (1 << c.input_bits) - 1
    out: dict[str, tuple[int, int]] = {}
    out["input"] = (0, xmax)
    out["weight"] = (wlo, whi)
    out["bias"] = (blo, bhi)
    out["input_acc"] = (c.inputs * xmax * wlo, c.inputs * xmax * whi)
    lo, hi = out["input_acc"]
    out["input_drive"] = (lo >> c.input_shift, hi >> c.input_shift)
    # nudge = +-((target << rate_bits) - R) >> nudge_shift, target in {0, 1}, R in [0, rate_max]:
    # the -beta sign reaches -(1 << rate_bits) (target 1, R 0).
    out["nudge"] = ((-(1 << c.rate_bits)) >> c.nudge_shift, (1 << c.rate_bits) >> c.nudge_shift)
    hid = (out["input_drive"][0] + blo + c.outputs * wlo,
           out["input_drive"][1] + bhi + c.outputs * whi)
    outp = (c.hidden * wlo + blo + out["nudge"][0], c.hidden * whi + bhi + out["nudge"][1])
    out["hidden_drive"], out["output_drive"] = hid, outp
    out["drive"] = (min(hid[0], outp[0]), max(hid[1], outp[1]))
    # The membrane moves a fraction of the way to (drive << membrane_frac_bits) each step,
    # so it never leaves the range that drive spans (see golden.neuron.membrane_step).
    out["membrane"] = (out["drive"][0] << c.membrane_frac_bits,
                       out["drive"][1] << c.membrane_frac_bits)
    out["membrane_delta"] = (out["membrane"][0] - out["membrane"][1],
                             out["membrane"][1] - out["membrane"][0])
    out["rate"] = (0, c.rate_max)
    out["sigma_delta"] = (0, c.rate_max)
    out["rate_delta"] = (-c.rate_max, c.rate_max)
    out["w1_product"] = (-xmax * c.rate_max, xmax * c.rate_max)
    out["w2_product"] = (-c.rate_max * c.rate_max, c.rate_max * c.rate_max)
    result = {}
    for name, (lo, hi) in out.items():
        bits, sgn = bits_for(lo, hi)
        result[name] = Width(bits, sgn, lo, hi)
    return result


#: Side of the data sets' square images (MNIST, Fashion-MNIST): a configuration file's network
#: must take them.
IMAGE_SIDE = 28

#: Keys a configuration file may leave out: features that are off by default.
_OPTIONAL_KEYS = ("crop", "augment_shift")

_KNOWN_SECTIONS = {
    "network": ("inputs", "hidden", "outputs", "crop"),
    "fixed_point": ("input_bits", "weight_bits", "weight_frac_bits", "bias_bits", "rate_bits",
                    "membrane_frac_bits", "leak_shift", "input_shift", "beta_shift",
                    "drive_bits", "membrane_bits"),
    "phases": ("free_steps", "nudge_steps", "symmetric_nudge"),
    "learning": ("w1_shift", "w2_shift", "b1_shift", "b2_shift", "lr_decay_epochs",
                 "augment_shift", "w1_init", "w2_init", "seed"),
}


def shipped_configs() -> dict[str, Path]:
    """Names and paths of the fully connected configurations shipped in ``configs/`` (the
    convolutional ones, ``conv_*.toml``, are :func:`eqfpga.conv_config.shipped_conv_configs`)."""
    folder = Path(str(resources.files("eqfpga.configs")))
    return {p.stem: p for p in sorted(folder.glob("*.toml")) if not p.stem.startswith("conv_")}


def load_config(name_or_path: str | Path) -> Config:
    """Load a configuration by shipped name (``up5k``) or TOML path. Raises ConfigError."""
    path = Path(name_or_path)
    if not path.suffix:
        shipped = shipped_configs()
        if str(name_or_path) not in shipped:
            raise ConfigError(f"unknown configuration {str(name_or_path)!r} "
                              f"(shipped: {', '.join(shipped)}; or give a .toml path)")
        path = shipped[str(name_or_path)]
    c = Config(**read_sections(path, _KNOWN_SECTIONS, _OPTIONAL_KEYS))
    if c.pixels != IMAGE_SIDE * IMAGE_SIDE:
        raise ConfigError(f"{path}: inputs = {c.inputs} with crop = {c.crop} takes {c.pixels}-pixel "
                          f"images, but the data sets' images are {IMAGE_SIDE}x{IMAGE_SIDE} = "
                          f"{IMAGE_SIDE * IMAGE_SIDE} pixels (inputs must be ({IMAGE_SIDE} - 2 crop)**2)")
    return c


def read_sections(path: Path, sections: dict[str, tuple[str, ...]], optional: tuple[str, ...]) -> dict:
    """The fields of the configuration file ``path``, for the configuration's constructor.

    Parameters
    ----------
    path : Path
        A UTF-8 TOML file: optional top-level ``name`` (default: the file's stem) and
        ``description`` strings, then one table per entry of ``sections``.
    sections : dict
        Every section and the keys it holds. Each section is required, and each key but those
        in ``optional`` (features that are off by default), so that no value of the network
        is taken silently from a default.
    optional : tuple of str
        Keys that may be left out.

    Raises
    ------
    ConfigError
        One line naming the file and the fault: not found, not UTF-8, not TOML, an unknown or
        missing section or key, a section that is no table.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        doc = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); a TOML file must be UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    known = ", ".join(f"[{s}]" for s in sections)
    kwargs = {"name": doc.pop("name", path.stem), "description": doc.pop("description", "")}
    for section, table in doc.items():
        if section not in sections:
            what = f"section [{section}]" if isinstance(table, dict) else f"top-level key {section!r}"
            raise ConfigError(f"{path}: unknown {what} (known: name, description, {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section} must be a section [{section}], got {table!r}")
        for key, value in table.items():
            if key not in sections[section]:
                raise ConfigError(f"{path}: unknown key {key!r} in [{section}]")
            kwargs[key] = value
    missing = [f"[{s}]" for s in sections if s not in doc]
    if missing:
        raise ConfigError(f"{path}: missing section{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                          f"(a configuration needs {known})")
    for section, keys in sections.items():
        missing = [k for k in keys if k not in doc[section] and k not in optional]
        if missing:
            raise ConfigError(f"{path}: [{section}] lacks {', '.join(missing)} (every key is required "
                              f"but {', '.join(optional)})")
    return kwargs


def config_to_toml(c: Config) -> str:
    """The TOML text that :func:`load_config` turns back into ``c``."""
    lines = [f"name = {json.dumps(c.name)}"]
    if c.description:
        lines.append(f"description = {json.dumps(c.description)}")
    for section, keys in _KNOWN_SECTIONS.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {json.dumps(getattr(c, k))}" for k in keys]
    return "\n".join(lines) + "\n"


def config_from_dict(d: dict) -> Config:
    """Rebuild a configuration stored as :meth:`Config.to_dict` (e.g. in a checkpoint)."""
    known = {f.name for f in fields(Config)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown configuration keys {sorted(unknown)}")
    return Config(**d)

