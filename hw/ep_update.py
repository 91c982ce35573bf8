"""Local EP weight update: ``lanes`` weights per cycle, stochastic rounding, saturation.

Hardware twin of :mod:`eqfpga.golden.ep_update`. Each lane updates one weight (or bias)
from the rates of the two neurons it connects, at the end of the free phase (``Rf``) and of
the nudged phase (``Rn``), and one draw of the tensor's LFSR stream::

    w1:  q = x * (Rn_h - Rf_h)
    w2:  q = Rn_h * Rn_y - Rf_h * Rf_y
    b1, b2:  q = Rn - Rf
    w'  = clip(w + ((q + (draw & (2**shift - 1))) >> shift), lo, hi)      # >> arithmetic

The unit is specialised for one tensor, so each lane has only the multipliers that tensor's
rule needs (one for ``w1``, two for ``w2``, none for the biases). The learning shift is a
runtime input because the host changes it between epochs (:meth:`Config.at_epoch`).

Pipeline: two register stages (``q`` and the masked draw; the rounded, saturated sum), one
input accepted per cycle, results after :attr:`EPUpdateUnit.latency` cycles, no back-pressure.
Draws come from :class:`eqfpga.hw.lfsr.LFSR` with the same lane count: drive its
``advance`` with ``i.valid`` and connect its ``draws`` to :attr:`EPUpdateUnit.draws`.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.config import LFSR_BITS, Config
from eqfpga.hw.flow import valid_signature

__all__ = ["EPUpdateUnit", "TENSORS"]

#: The learnable tensors, as named by the golden model and :class:`Config` (``<name>_shift``).
TENSORS = ("w1", "w2", "b1", "b2")


class EPUpdateUnit(wiring.Component):
    """``lanes`` parallel, pipelined EP updates of one tensor.

    Parameters
    ----------
    config : Config
        Formats: ``c.widths`` gives the weight/bias, input, rate and product widths, and
        ``c.weight_range`` / ``c.bias_range`` the saturation limits.
    tensor : str
        Which tensor the unit updates, one of ``"w1"``, ``"w2"``, ``"b1"``, ``"b2"``; it
        selects the rule for ``q``, the lane fields and the limits (weights or biases).
    lanes : int
        Weights updated per cycle, ``>= 1``.

    Attributes
    ----------
    latency : int
        Cycles from an accepted input to its result on :attr:`o` (2).
    in_lane : StructLayout
        Layout of one lane of ``i.payload``.
    value_shape : Shape
        Shape of a weight (``c.widths["weight"]``) or bias (``c.widths["bias"]``).

    Members
    -------
    i : ``In(valid_signature(ArrayLayout(in_lane, lanes)))``
        One weight per lane, taken in every cycle ``i.valid`` is high. Fields per lane:
        ``w`` (signed, the current value, inside the limits) and the rates of the rule:
        for ``w1`` ``x`` (the input, ``input_bits`` unsigned), ``rn`` and ``rf`` (the hidden
        neuron's rates); for ``w2`` ``rn_h``, ``rf_h`` (hidden) and ``rn_y``, ``rf_y``
        (output); for a bias ``rn`` and ``rf``. Rates are ``rate_bits`` unsigned.
    shift : ``In(range(LFSR_BITS + 1))``
        The learning shift in force (``c.<tensor>_shift``, or ``c.at_epoch(e)``'s), sampled
        with ``i``; the random rounding uses its ``shift`` low draw bits.
    draws : ``In(ArrayLayout(LFSR_BITS, lanes))``
        Lane ``p``'s draw, sampled with ``i``: the next ``lanes`` draws of the tensor's stream
        in update order, as :class:`~eqfpga.hw.lfsr.LFSR` presents them.
    o : ``Out(valid_signature(ArrayLayout(value_shape, lanes)))``
        The updated values, ``latency`` cycles after the input, in input order; the consumer
        must take them when ``o.valid`` is high (meaningless while it is low).
    """

    latency = 2

    def __init__(self, *, config: Config, tensor: str, lanes: int):
        if not isinstance(config, Config):
            raise TypeError(f"Configuration must be a Config, not {config!r}")
        if tensor not in TENSORS:
            raise ValueError(f"Tensor must be one of {', '.join(TENSORS)}, not {tensor!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        self._config = config
        self._tensor = tensor
        self._lanes = lanes

        w = config.widths
        rate = w["rate"].shape
        if tensor == "w1":
            rates = {"x": w["input"].shape, "rn": rate, "rf": rate}
        elif tensor == "w2":
            rates = {"rn_h": rate, "rf_h": rate, "rn_y": rate, "rf_y": rate}
        else:
            rates = {"rn": rate, "rf": rate}
        self._is_bias = tensor.startswith("b")
        self.value_shape = w["bias" if self._is_bias else "weight"].shape
        self.in_lane = data.StructLayout({"w": self.value_shape, **rates})
        super().__init__({
            "i": In(valid_signature(data.ArrayLayout(self.in_lane, lanes))),
            "shift": In(range(LFSR_BITS + 1)),
            "draws": In(data.ArrayLayout(LFSR_BITS, lanes)),
            "o": Out(valid_signature(data.ArrayLayout(self.value_shape, lanes))),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def tensor(self) -> str:
        return self._tensor

    @property
    def lanes(self) -> int:
        return self._lanes

    def _q(self, lane):
        """The tensor's rule for q, as an expression of one input lane."""
        # In Amaranth 0.5 the difference of unsigned values is signed and one bit wider.
        if self._tensor == "w1":
            # One multiplier: x * (Rn - Rf) rather than x*Rn - x*Rf.
            return lane.x * (lane.rn - lane.rf)
        if self._tensor == "w2":
            return lane.rn_h * lane.rn_y - lane.rf_h * lane.rf_y
        return lane.rn - lane.rf

    def elaborate(self, platform):
        c = self._config
        w = c.widths
        lo, hi = c.bias_range if self._is_bias else c.weight_range
        q_width = w[{"w1": "w1_product", "w2": "w2_product"}.get(self._tensor, "rate_delta")]
        m = Module()

        # Only the valid bits are reset; payload registers load every cycle.
        valid1 = Signal()
        valid2 = Signal()
        m.d.sync += [valid1.eq(self.i.valid), valid2.eq(valid1)]
        m.d.comb += self.o.valid.eq(valid2)

        # Thermometer mask: bit k is kept iff k < shift, i.e. draw & (2**shift - 1).
        mask = Signal(LFSR_BITS)
        m.d.comb += mask.eq(Cat(self.shift > k for k in range(LFSR_BITS)))
        shift1 = Signal.like(self.shift, name="shift1", reset_less=True)
        m.d.sync += shift1.eq(self.shift)

        for p in range(self._lanes):
            lane = self.i.payload[p]
            # Stage 1: q (the multipliers) and the random bits.
            q1 = Signal(q_width.shape, name=f"q1_{p}", reset_less=True)
            d1 = Signal(LFSR_BITS, name=f"d1_{p}", reset_less=True)
            old1 = Signal(self.value_shape, name=f"old1_{p}", reset_less=True)
            m.d.sync += [q1.eq(self._q(lane)), d1.eq(self.draws[p] & mask), old1.eq(lane.w)]

            # Stage 2: stochastic rounding (arithmetic shift of a signed sum) and saturation.
            rounded = (q1 + d1) >> shift1
            total = Signal((old1 + rounded).shape(), name=f"sum_{p}")
            m.d.comb += total.eq(old1 + rounded)
            out = Signal(self.value_shape, name=f"new2_{p}", reset_less=True)
            m.d.sync += out.eq(Mux(total < lo, lo, Mux(total > hi, hi, total)))
            m.d.comb += self.o.payload[p].eq(out)
        return m

