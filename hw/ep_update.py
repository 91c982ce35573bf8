"""Local EP weight update: ``lanes`` weights per cycle, stochastic rounding, saturation.

Hardware twin of :func:`eqfpga.golden.ep_update.stochastic_round` and the clip that follows
it in :func:`eqfpga.golden.ep_update.apply`. Each lane takes one weight (or bias) ``w``, its
rule's product ``q`` (computed from the rates of the two neurons the weight connects, at the
end of the free phase ``Rf`` and of the nudged phase ``Rn``) and one draw of the tensor's
LFSR stream::

    w1:  q = x * (Rn_h - Rf_h)
    w2:  q = Rn_h * Rn_y - Rf_h * Rf_y
    b1, b2:  q = Rn - Rf
    w'  = clip(w + ((q + (draw & (2**shift - 1))) >> shift), lo, hi)      # >> arithmetic

The products are not made here: the accelerator has one bank of ``lanes`` multipliers that
serves the input drive and both weight rules in turn (a UP5K has 8 DSPs), so one unit serves
all four tensors. The learning shift and the limits (``bias``: the bias range, else the
weight range) are runtime inputs.

Pipeline: four register stages (``q`` and the masked draw; their sum; the shifted sum; the
saturated new value), one input accepted per cycle, results after
:attr:`EPUpdateUnit.latency` cycles, no back-pressure. The stages are short so that the unit
is not what limits the clock of a UP5K, and the latency is even, which the accelerator's
single-port W1 schedule (read and write slots alternate) relies on.
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
    """``lanes`` parallel, pipelined stochastic-rounding updates of weights or biases.

    Parameters
    ----------
    config : Config
        Formats: ``c.widths`` gives the weight, bias and product widths, and
        ``c.weight_range`` / ``c.bias_range`` the saturation limits.
    lanes : int
        Values updated per cycle, ``>= 1``.

    Attributes
    ----------
    latency : int
        Cycles from an accepted input to its result on :attr:`o` (4).
    in_lane : StructLayout
        Layout of one lane of ``i.payload``: ``w`` (signed, bias width: the current value,
        inside the limits) and ``q`` (signed, :attr:`q_shape`: the rule's product).
    q_shape : Shape
        Wide enough for every tensor's ``q`` (``w1_product``, ``w2_product``, ``rate_delta``).
    value_shape : Shape
        Shape of ``w`` and of the results (the bias width, the wider of the two).

    Members
    -------
    i : ``In(valid_signature(ArrayLayout(in_lane, lanes)))``
        One value per lane, taken in every cycle ``i.valid`` is high.
    bias : ``In(1)``
        Sampled with ``i``: saturate to ``c.bias_range`` (else ``c.weight_range``).
    shift : ``In(range(LFSR_BITS + 1))``
        The learning shift in force (``c.<tensor>_shift``, or ``c.at_epoch(e)``'s), sampled
        with ``i``; the random rounding uses its ``shift`` low draw bits.
    draws : ``In(ArrayLayout(LFSR_BITS, lanes))``
        Lane ``p``'s draw, sampled with ``i``: the next ``lanes`` draws of the tensor's stream
        in update order, as :class:`~eqfpga.hw.lfsr.LFSR` presents them.
    o : ``Out(valid_signature(ArrayLayout(value_shape, lanes)))``
        The updated values, ``latency`` cycles after the input, in input order; the consumer
        must take them when ``o.valid`` is high (meaningless while it is low).
    busy : ``Out(1)``
        An accepted input has not left :attr:`o` yet (high up to and including the cycle of
        its ``o.valid``): a consumer waits for it to fall before moving on.
    """

    latency = 4

    def __init__(self, *, config: Config, lanes: int):
        if not isinstance(config, Config):
            raise TypeError(f"Configuration must be a Config, not {config!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        self._config = config
        self._lanes = lanes
        w = config.widths
        self.q_shape = max((w[n] for n in ("w1_product", "w2_product", "rate_delta")),
                           key=lambda f: f.shape.width).shape
        self.value_shape = w["bias"].shape
        self.in_lane = data.StructLayout({"w": self.value_shape, "q": self.q_shape})
        super().__init__({
            "i": In(valid_signature(data.ArrayLayout(self.in_lane, lanes))),
            "bias": In(1),
            "shift": In(range(LFSR_BITS + 1)),
            "draws": In(data.ArrayLayout(LFSR_BITS, lanes)),
            "o": Out(valid_signature(data.ArrayLayout(self.value_shape, lanes))),
            "busy": Out(1),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        c = self._config
        m = Module()

        # Only the valid bits are reset; payload registers load every cycle.
        valid = [self.i.valid] + [Signal(name=f"valid{k}") for k in range(1, self.latency + 1)]
        m.d.sync += [valid[k + 1].eq(valid[k]) for k in range(self.latency)]
        m.d.comb += [self.o.valid.eq(valid[self.latency]), self.busy.eq(Cat(*valid[1:]).any())]

        # Thermometer mask: bit k is kept iff k < shift, i.e. draw & (2**shift - 1).
        mask = Signal(LFSR_BITS)
        m.d.comb += mask.eq(Cat(self.shift > k for k in range(LFSR_BITS)))
        shift = [self.shift] + [Signal.like(self.shift, name=f"shift{k}", reset_less=True)
                                for k in (1, 2)]
        bias = [self.bias] + [Signal(name=f"bias{k}", reset_less=True) for k in (1, 2, 3)]
        m.d.sync += [shift[k + 1].eq(shift[k]) for k in range(2)]
        m.d.sync += [bias[k + 1].eq(bias[k]) for k in range(3)]
        (wlo, whi), (blo, bhi) = c.weight_range, c.bias_range
        lo, hi = Mux(bias[3], blo, wlo), Mux(bias[3], bhi, whi)

        for p in range(self._lanes):
            lane = self.i.payload[p]
            old = [lane.w] + [Signal(self.value_shape, name=f"old{k}_{p}", reset_less=True)
                              for k in (1, 2, 3)]
            m.d.sync += [old[k + 1].eq(old[k]) for k in range(3)]
            # Stage 1: q and the random bits.
            q1 = Signal(self.q_shape, name=f"q1_{p}", reset_less=True)
            d1 = Signal(LFSR_BITS, name=f"d1_{p}", reset_less=True)
            m.d.sync += [q1.eq(lane.q), d1.eq(self.draws[p] & mask)]
            # Stage 2: their sum; stage 3: the arithmetic shift (the stochastic rounding).
            sum2 = Signal((q1 + d1).shape(), name=f"sum2_{p}", reset_less=True)
            m.d.sync += sum2.eq(q1 + d1)
            rounded3 = Signal(sum2.shape(), name=f"rounded3_{p}", reset_less=True)
            m.d.sync += rounded3.eq(sum2 >> shift[2])
            # Stage 4: the new value, saturated. The limits are full two's-complement ranges,
            # so "inside" means the bits from the limit's sign bit up are all equal.
            total = Signal((old[3] + rounded3).shape(), name=f"total_{p}")
            m.d.comb += total.eq(old[3] + rounded3)
            inside = Mux(bias[3], _fits(total, c.bias_bits), _fits(total, c.weight_bits))
            out = Signal(self.value_shape, name=f"new4_{p}", reset_less=True)
            m.d.sync += out.eq(Mux(inside, total, Mux(total[-1], lo, hi)))
            m.d.comb += self.o.payload[p].eq(out)
        return m


def _fits(value, bits: int):
    """``value`` (signed) lies in the ``bits``-bit two's-complement range."""
    top = value[bits - 1:]
    return top.all() | ~top.any()
