"""Time-multiplexed neuron update datapath: ``lanes`` neuron time steps per cycle.

Hardware twin of :mod:`eqfpga.golden.neuron` (and of the output-layer nudge in
:func:`eqfpga.golden.network.step`). The unit holds no neuron state: an integration keeps
``v`` and ``phi`` of every neuron in memory and streams them, with each neuron's drive,
through the lanes; each lane performs exactly one golden time step of one neuron::

    P     = drive [+ nudge(rate(v), target, sign)]       # output neurons in a nudged phase
    v'    = v + (((P << membrane_frac_bits) - v) >> leak_shift)
    R'    = clip(v' >> rate_shift, 0, 2**rate_bits - 1)
    acc   = phi + R';  spike = acc >= 2**rate_bits;  phi' = acc mod 2**rate_bits

The nudge uses the rate of the membrane *before* the step, as the golden network does.

Pipeline: four register stages (nudge, effective drive, new membrane, rate and sigma-delta;
the nudge and the drive sum are separate stages because together they were the longest path
on the UP5K), one input accepted per cycle, results after :attr:`NeuronUnit.latency` cycles, no back-pressure.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.config import Config
from eqfpga.hw.flow import valid_signature

__all__ = ["NeuronUnit"]


class NeuronUnit(wiring.Component):
    """``lanes`` parallel, pipelined neuron time steps.

    All formats come from ``config.widths``: ``drive`` is the ``"drive"`` width, ``v`` the
    ``"membrane"`` width, ``phi`` the ``"sigma_delta"`` width and ``rate`` the ``"rate"``
    width. The configuration's worst-case analysis proves that a membrane inside its range,
    stepped with a drive inside its range, stays inside its range; the unit relies on that and
    does not saturate. With the nudge, ``drive + nudge`` (not ``drive`` alone) must lie in the
    drive range, which is what the golden network's output drives satisfy.

    Parameters
    ----------
    config : Config
        Network formats (``membrane_frac_bits``, ``leak_shift``, ``rate_bits``, ...).
    lanes : int
        Neurons stepped per cycle, ``>= 1``.
    nudge : bool
        Whether the lanes carry the EP nudge of output neurons (``nudge``/``target`` fields
        and the :attr:`negate` port). Without it the unit only serves hidden neurons and
        free phases, and is smaller.

    Attributes
    ----------
    latency : int
        Cycles from an accepted input to its result on :attr:`o` (3).
    in_lane : StructLayout
        Layout of one lane of ``i.payload``.
    out_lane : StructLayout
        Layout of one lane of ``o.payload``.

    Members
    -------
    i : ``In(valid_signature(ArrayLayout(in_lane, lanes)))``
        One neuron per lane, taken in every cycle ``i.valid`` is high. Fields per lane:
        ``drive`` (signed, the neuron's drive ``P`` for this step without the nudge),
        ``v`` (signed, membrane before the step), ``phi`` (unsigned, sigma-delta accumulator
        before the step, ``< 2**rate_bits``) and, with ``nudge``, ``nudge`` (1: add the EP
        nudge, i.e. an output neuron in a nudged phase) and ``target`` (1 for the labelled
        class, else 0).
    negate : ``In(1)``, only with ``nudge``
        Sign of the nudge for the lanes of this input, sampled with ``i``: 0 pulls towards
        the target (``+beta``), 1 pushes away from it (``-beta``, the second phase of
        symmetric nudging).
    o : ``Out(valid_signature(ArrayLayout(out_lane, lanes)))``
        The results, ``latency`` cycles after the input, in input order; the consumer must
        take them when ``o.valid`` is high. Fields per lane: ``v`` (membrane after the step),
        ``phi`` (accumulator after the step), ``rate`` (rate of the new membrane, the ``R``
        the EP update reads at the end of a phase) and ``spike`` (0/1). The payload is
        meaningless while ``o.valid`` is low.
    """

    latency = 4

    def __init__(self, *, config: Config, lanes: int, nudge: bool = True):
        if not isinstance(config, Config):
            raise TypeError(f"Configuration must be a Config, not {config!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        if not isinstance(nudge, bool):
            raise TypeError(f"Nudge must be a bool, not {nudge!r}")
        self._config = config
        self._lanes = lanes
        self._nudge = nudge

        w = config.widths
        fields = {
            "drive": w["drive"].shape,
            "v": w["membrane"].shape,
            "phi": w["sigma_delta"].shape,
        }
        if nudge:
            fields.update(nudge=1, target=1)
        self.in_lane = data.StructLayout(fields)
        self.out_lane = data.StructLayout({
            "v": w["membrane"].shape,
            "phi": w["sigma_delta"].shape,
            "rate": w["rate"].shape,
            "spike": 1,
        })
        members = {
            "i": In(valid_signature(data.ArrayLayout(self.in_lane, lanes))),
            "o": Out(valid_signature(data.ArrayLayout(self.out_lane, lanes))),
        }
        if nudge:
            members["negate"] = In(1)
        super().__init__(members)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def nudge(self) -> bool:
        return self._nudge

    def _rate(self, m, v, name):
        """``clip(v >> rate_shift, 0, rate_max)`` as a new combinational signal."""
        c = self._config
        r = Signal(c.widths["rate"].shape, name=name)
        t = v >> c.rate_shift
        m.d.comb += r.eq(Mux(t < 0, 0, Mux(t > c.rate_max, c.rate_max, t)))
        return r

    def elaborate(self, platform):
        c = self._config
        w = c.widths
        rb = c.rate_bits
        m = Module()

        # Only the valid bits are reset; the payload registers load every cycle and are
        # qualified by them, which saves the enable logic.
        valid = [Signal(name=f"valid{k}") for k in range(self.latency)]
        m.d.sync += valid[0].eq(self.i.valid)
        m.d.sync += [valid[k + 1].eq(valid[k]) for k in range(self.latency - 1)]
        m.d.comb += self.o.valid.eq(valid[-1])

        for p in range(self._lanes):
            lane = self.i.payload[p]
            out = self.o.payload[p]

            # Stage 0: the nudge, from the rate before the step.
            drive0 = Signal(w["drive"].shape, name=f"drive0_{p}", reset_less=True)
            v0 = Signal(w["membrane"].shape, name=f"v0_{p}", reset_less=True)
            phi0 = Signal(w["sigma_delta"].shape, name=f"phi0_{p}", reset_less=True)
            m.d.sync += [drive0.eq(lane.drive), v0.eq(lane.v), phi0.eq(lane.phi)]
            # Stage 1: effective drive P = drive + nudge.
            drive1 = Signal(w["drive"].shape, name=f"drive1_{p}", reset_less=True)
            v1 = Signal(w["membrane"].shape, name=f"v1_{p}", reset_less=True)
            phi1 = Signal(w["sigma_delta"].shape, name=f"phi1_{p}", reset_less=True)
            if self._nudge:
                r_old = self._rate(m, lane.v, f"r_old_{p}")
                # target << rb is at most one above the largest rate: q needs rb + 2 signed bits.
                # -q is formed as r_old - target directly: one carry chain on the path, not two.
                q_signed = Signal(signed(rb + 2), name=f"nudge_q_{p}")
                target = Mux(lane.target, 1 << rb, 0)
                m.d.comb += q_signed.eq(Mux(self.negate, r_old - target, target - r_old))
                nudge0 = Signal.like(q_signed, name=f"nudge0_{p}", reset_less=True)
                m.d.sync += nudge0.eq(Mux(lane.nudge, q_signed >> c.nudge_shift, 0))
                # drive + nudge lies in the drive range by contract, so truncation is exact.
                m.d.sync += drive1.eq(drive0 + nudge0)
            else:
                m.d.sync += drive1.eq(drive0)
            m.d.sync += [v1.eq(v0), phi1.eq(phi0)]

            # Stage 2: membrane step. The new v lies between v and P << frac, so it fits.
            v2 = Signal(w["membrane"].shape, name=f"v2_{p}", reset_less=True)
            phi2 = Signal(w["sigma_delta"].shape, name=f"phi2_{p}", reset_less=True)
            m.d.sync += [
                v2.eq(v1 + (((drive1 << c.membrane_frac_bits) - v1) >> c.leak_shift)),
                phi2.eq(phi1),
            ]

            # Stage 3: rate and sigma-delta. phi, R < 2**rb, so acc < 2**(rb+1): the spike is
            # the carry out and the new phi the low bits, no comparator or subtractor needed.
            r_new = self._rate(m, v2, f"r_new_{p}")
            acc = Signal(rb + 1, name=f"acc_{p}")
            m.d.comb += acc.eq(phi2 + r_new)
            v3 = Signal(w["membrane"].shape, name=f"v3_{p}", reset_less=True)
            phi3 = Signal(w["sigma_delta"].shape, name=f"phi3_{p}", reset_less=True)
            r3 = Signal(w["rate"].shape, name=f"r3_{p}", reset_less=True)
            s3 = Signal(name=f"spike3_{p}", reset_less=True)
            m.d.sync += [v3.eq(v2), phi3.eq(acc[:rb]), r3.eq(r_new), s3.eq(acc[rb])]
            m.d.comb += [out.v.eq(v3), out.phi.eq(phi3), out.rate.eq(r3), out.spike.eq(s3)]
        return m
