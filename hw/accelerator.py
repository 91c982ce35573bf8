"""The EP accelerator: the whole golden network in hardware, for inference and training.

Hardware twin of :mod:`eqfpga.golden.network` and :func:`eqfpga.golden.train.train_sample`:
for the same parameters, image and label it produces the same spikes in every time step, the
same prediction and output spike counts, and after training the same weights, biases and LFSR
stream positions, bit for bit.

Organisation (``P`` lanes, ``G = hidden / P`` groups of hidden neurons):

- **W1** (inputs x hidden) in a single-port RAM of ``inputs * G`` words of ``P`` weights; word
  ``i*G + g`` holds ``W1[i, gP .. gP+P-1]``. On the iCE40 UP5K this is the SPRAM.
- **W2** (hidden x outputs, stored once) in a RAM of ``outputs * G`` words of ``P`` weights;
  word ``k*G + g`` holds ``W2[gP .. gP+P-1, k]``. One read gives the feedback of ``P`` hidden
  neurons from output ``k`` *and*, through an adder tree over the lanes that spiked, output
  ``k``'s forward sum from those ``P`` neurons.
- **Image**: the pixel stream is quantised on arrival and only non-zero pixels are kept, as
  (row address ``i*G``, ``x``) in ascending ``i`` (the order the W1 update draws in).
- **Neurons**: input drive ``D`` of the hidden neurons, state (``v``, ``phi``) and biases of
  all neurons in RAMs with the hidden neurons first (entry ``j``) and the outputs after them
  (entry ``hidden + k``), updated one per cycle by a single pipelined
  :class:`~eqfpga.hw.neuron.NeuronUnit` lane; rates needed by the update are saved in two
  ``P``-wide RAMs (hidden) and two small ones (outputs). Only the outputs' forward sums and
  free-phase spike counts live in registers.

One time step: the W2 loop (``G x outputs`` reads) accumulates the feedback of group ``g``
and hands it over through a double buffer to the neuron pass, which overlaps it and, once the
loop is done, goes on with the outputs; then the new spikes replace the old (all neurons see
the spikes of the previous step, as in the golden model). A training sample runs the free
phase, the nudged phase(s) and the update loops (W1, W2, then both biases), each in the golden
draw order (:mod:`eqfpga.golden.ep_update`).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.config import LFSR_BITS, Config, bits_for
from eqfpga.golden import lfsr as golden_lfsr
from eqfpga.golden.ep_update import Streams
from eqfpga.hw.ep_update import EPUpdateUnit
from eqfpga.hw.flow import valid_signature
from eqfpga.hw.lfsr import LFSR
from eqfpga.hw.neuron import NeuronUnit
from eqfpga.hw.spram import SinglePortRAM

__all__ = ["Accelerator", "Tensor", "pack_params", "unpack_params"]


class Tensor(enum.Enum, shape=3):
    """What the host port addresses (``port.sel``)."""

    W1 = 0    #: word i*G + g: W1[i, gP .. gP+P-1]
    W2 = 1    #: word k*G + g: W2[gP .. gP+P-1, k]
    B1 = 2    #: entry j: b1[j] (lane 0)
    B2 = 3    #: entry k: b2[k] (lane 0)
    LFSR = 4  #: entry 0..3: the w1, w2, b1, b2 stream states (lane 0)


class Phase(enum.Enum, shape=2):
    FREE = 0
    PLUS = 1
    MINUS = 2


def pack_params(params, c: Config, lanes: int) -> dict[str, list]:
    """Memory images of golden :class:`~eqfpga.golden.network.Params` for ``lanes`` lanes."""
    G = c.hidden // lanes
    w1 = [[int(v) for v in params.w1[i, g * lanes:(g + 1) * lanes]]
          for i in range(c.inputs) for g in range(G)]
    w2 = [[int(v) for v in params.w2[g * lanes:(g + 1) * lanes, k]]
          for k in range(c.outputs) for g in range(G)]
    return {"w1": w1, "w2": w2, "b1": [int(v) for v in params.b1],
            "b2": [int(v) for v in params.b2]}


def unpack_params(words: dict[str, list], c: Config, lanes: int):
    """Inverse of :func:`pack_params`."""
    import numpy as np

    from eqfpga.golden.network import Params
    G = c.hidden // lanes
    w1 = np.array(words["w1"], np.int64).reshape(c.inputs, G * lanes)
    w2 = np.array(words["w2"], np.int64).reshape(c.outputs, G * lanes).T.copy()
    return Params([w1, w2], [np.array(words["b1"], np.int64), np.array(words["b2"], np.int64)])


def _delay(m, value, n: int, name: str, *, shape=None, reset_less: bool = True) -> list:
    """``value`` and its copies delayed by 1 .. ``n`` cycles (registers ``name1`` .. ``nameN``,
    of ``shape``, by default unsigned of ``value``'s width)."""
    out = [value]
    for d in range(1, n + 1):
        out.append(Signal(shape or len(value), name=f"{name}{d}", reset_less=reset_less))
        m.d.sync += out[d].eq(out[d - 1])
    return out


def _stage(m, value, on: bool, name: str):
    """``value`` through a pipeline register when ``on`` (the deep pipeline), else itself."""
    if not on:
        return value
    reg = Signal.like(value, name=name, reset_less=True)
    m.d.sync += reg.eq(value)
    return reg


class Accelerator(wiring.Component):
    """The spiking EP network of ``config`` with ``lanes`` parallel weight lanes.

    Parameters
    ----------
    config : Config
        The network; ``config.hidden`` must be a multiple of ``lanes``.
    lanes : int
        Weights read, multiplied and updated per cycle (``P``).
    params : Params or None
        Initial weights and biases (memory initialisation); ``None`` gives zeros, to be
        loaded through :attr:`port`. Must be ``None`` with ``spram=True``.
    streams : Streams or None
        Initial LFSR stream positions (default: the configuration's seeds).
    spram : bool
        Put W1 in iCE40 SPRAM (see :class:`~eqfpga.hw.spram.SinglePortRAM`).
    w1_bank_depth : int or None
        W1 in registered banks of this many words (block RAM on ECP5; read latency 2; see
        :class:`~eqfpga.hw.spram.SinglePortRAM`), not with ``spram``.
    deep_pipeline : bool
        Register every memory output before arithmetic and pipeline the multiplier bank
        (:attr:`MUL_LATENCY`): a faster clock for a few hundred flip-flops and a few cycles
        per sample; the results are the same. For the ECP5 boards; the UP5K has no cells to
        spare for it.
    trace : bool
        Have the :attr:`trace` port (simulation; it costs ``hidden`` flip-flops).

    Members
    -------
    pixels : ``In(stream.Signature(8))``
        The image, ``config.pixels`` 8-bit pixels in order (the border of ``config.crop``
        pixels is dropped on arrival), accepted while idle
        (``ready`` is high) until the image is complete (``image_ready``).
    image_ready : ``Out(1)``
        A whole image has been received and not yet used.
    start : ``In(1)``
        While idle with ``image_ready``: begin a sample with the ``train`` and ``label``
        inputs of this cycle (inference if ``train`` is 0).
    train, label : ``In(1)``, ``In(range(outputs))``
        Sampled with ``start``.
    shifts : ``In(StructLayout w1, w2, b1, b2)``
        Learning shifts in force (reset values: the configuration's): used by the update at
        the end of a training sample, so they must hold still from ``start`` until ``done``
        (not registered here: on the UP5K every flip-flop counts).
    busy : ``Out(1)``
        A sample is being processed; the host port and ``pixels`` are ignored meanwhile.
    done : ``Out(1)``
        High for one cycle when a sample ends; results below then stay until the next ``start``.
    prediction : ``Out(range(outputs))``
        Argmax of the output membranes after the free phase (lowest index on ties).
    spike_counts : ``Out(ArrayLayout(count, outputs))``
        Output spikes during the free phase.
    cycles, spikes : ``Out(32)``
        Cycles from ``start`` to ``done``; spikes (hidden and output, every phase) of the sample.
    trace : ``Out(valid_signature(StructLayout phase, s_h, s_y))``
        With ``trace``: valid for one cycle at the end of every time step, with that step's
        spikes.
    port : host access to parameters while idle: ``sel`` (:class:`Tensor`), ``addr``,
        ``wdata``/``we`` (write this cycle), ``re`` (read: ``rdata`` valid with ``rvalid``,
        one cycle later, or W1's read latency for W1, plus one with ``deep_pipeline``; one
        read at a time). Words of W1/W2 are ``P`` weights (lane ``l`` in bits
        ``l*weight_bits ..``); biases and LFSR states use the low bits, sign-extended on read.
    """

    #: Cycles from the multiplier bank's operands to its products with ``deep_pipeline``.
    MUL_LATENCY = 2

    def __init__(self, *, config: Config, lanes: int, params=None, streams: Streams | None = None,
                 spram: bool = False, trace: bool = True, w1_bank_depth: int | None = None,
                 deep_pipeline: bool = False):
        if not isinstance(config, Config):
            raise TypeError(f"Configuration must be a Config, not {config!r}")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        if config.hidden % lanes:
            raise ValueError(f"hidden ({config.hidden}) must be a multiple of lanes ({lanes})")
        if spram and params is not None:
            raise ValueError("W1 in SPRAM cannot be initialised: load weights through the port")
        if params is not None:
            params.check(config)
        self._c = config
        self._P = lanes
        self._G = config.hidden // lanes
        self._params = params
        self._streams = streams or Streams.seeded(config)
        self._spram = spram
        self._w1_bank_depth = w1_bank_depth
        self._deep = bool(deep_pipeline)
        self._trace = trace

        c = config
        wb = c.weight_bits
        self.count_shape = unsigned(bits_for(0, c.free_steps)[0])
        shift = range(LFSR_BITS + 1)
        shifts = data.StructLayout({"w1": shift, "w2": shift, "b1": shift, "b2": shift})
        self.word_bits = max(lanes * wb, c.bias_bits, LFSR_BITS)
        self.addr_depth = max(c.inputs * self._G, c.outputs * self._G, c.hidden, 4)
        trace_layout = data.StructLayout({"phase": Phase, "s_h": c.hidden, "s_y": c.outputs})
        super().__init__({
            "pixels": In(stream.Signature(8)),
            "image_ready": Out(1),
            "start": In(1),
            "train": In(1),
            "label": In(range(c.outputs)),
            "shifts": In(shifts, init={"w1": c.w1_shift, "w2": c.w2_shift,
                                       "b1": c.b1_shift, "b2": c.b2_shift}),
            "busy": Out(1),
            "done": Out(1),
            "prediction": Out(range(c.outputs)),
            "spike_counts": Out(data.ArrayLayout(self.count_shape, c.outputs)),
            "cycles": Out(32),
            "spikes": Out(32),
            **({"trace": Out(valid_signature(trace_layout))} if trace else {}),
            "port": In(wiring.Signature({
                "sel": Out(Tensor), "addr": Out(range(self.addr_depth)),
                "wdata": Out(self.word_bits), "we": Out(1), "re": Out(1),
                "rdata": In(self.word_bits), "rvalid": In(1),
            })),
        })

    @property
    def config(self) -> Config:
        return self._c

    @property
    def lanes(self) -> int:
        return self._P

    def elaborate(self, platform):
        c, P, G = self._c, self._P, self._G
        H, Y, N = c.hidden, c.outputs, c.inputs
        w = c.widths
        wshape, bshape = w["weight"].shape, w["bias"].shape
        drive_s, mem_s, phi_s, rate_s = (w["drive"].shape, w["membrane"].shape,
                                         w["sigma_delta"].shape, w["rate"].shape)
        word = data.ArrayLayout(wshape, P)
        rates = data.ArrayLayout(rate_s, P)
        m = Module()
        init = pack_params(self._params, c, P) if self._params is not None else None

        # -- memories ------------------------------------------------------------------------
        # Deep: W1's inputs are registered (bank by bank with w1_bank_depth): its address is a
        # wide selection (host, drive, update read and write) that fans out to ~100 block RAMs.
        m.submodules.w1 = w1 = SinglePortRAM(
            width=P * c.weight_bits, depth=N * G, spram=self._spram,
            bank_depth=self._w1_bank_depth, input_register=self._deep,
            init=None if init is None else [word.const(v).as_value().value for v in init["w1"]])
        w1_rdata = data.View(word, w1.rdata)
        RL = w1.read_latency
        m.submodules.w2 = w2mem = memory.Memory(shape=word, depth=Y * G,
                                                init=init["w2"] if init else [])
        w2_rd, w2_wr = w2mem.read_port(), w2mem.write_port()
        # b1 then b2: entry j < H is b1[j], entry H + k is b2[k]. Beside each hidden neuron's
        # bias lies its input drive D (written at the start of a sample, used by every step;
        # the bias update at the end leaves it undefined): one block RAM fewer than apart.
        bd = data.StructLayout({"b": bshape, "d": drive_s})
        m.submodules.bias = bmem = memory.Memory(
            shape=bd, depth=H + Y, init=[{"b": v, "d": 0} for v in init["b1"] + init["b2"]]
            if init else [])
        b_rd, b_wr = bmem.read_port(), bmem.write_port()
        row_bits = bits_for(0, max(0, (N - 1) * G))[0]
        pix = data.StructLayout({"base": unsigned(row_bits), "x": unsigned(c.input_bits)})
        m.submodules.image = image = memory.Memory(shape=pix, depth=N, init=[])
        img_rd, img_wr = image.read_port(), image.write_port()
        vp = data.StructLayout({"v": mem_s, "phi": phi_s})
        # Neuron j < H is hidden neuron j, neuron H + k is output k.
        m.submodules.state = smem = memory.Memory(shape=vp, depth=H + Y, init=[])
        s_rd, s_wr = smem.read_port(), smem.write_port()
        # Rates at the end of the two phases the update compares (see record_for below).
        # Word g: the P hidden neurons of group g; word G + k: output k (lane 0).
        m.submodules.rate_a = ra_mem = memory.Memory(shape=rates, depth=G + Y, init=[])
        m.submodules.rate_b = rb_mem = memory.Memory(shape=rates, depth=G + Y, init=[])
        ra_rd, ra_wr = ra_mem.read_port(), ra_mem.write_port(granularity=1)
        rb_rd, rb_wr = rb_mem.read_port(), rb_mem.write_port(granularity=1)

        # -- arithmetic units ----------------------------------------------------------------
        m.submodules.neuron = nu = NeuronUnit(config=c, lanes=1, nudge=True)
        # One bank of P multipliers (a common operand times one per lane) serves the input
        # drive, the W1 rule and the W2 rule in turn; one update unit serves all four tensors.
        mul_a = Signal(signed(max(c.input_bits, c.rate_bits) + 1))
        mul_b = [Signal(signed(max(c.weight_bits, c.rate_bits + 1)), name=f"mul_b{l}")
                 for l in range(P)]
        prod = [Signal(signed(mul_a.shape().width + mul_b[0].shape().width), name=f"prod{l}")
                for l in range(P)]
        # Deep: the bank is a pipeline, operands registered, then products registered (ML
        # cycles from operands to ``prod``), so that no memory output and no adder shares a
        # cycle with a multiplier. Each user delays what travels beside its products by ML,
        # and D (one register stage after a memory output) where it reads one.
        deep = self._deep
        D = int(deep)
        ML = self.MUL_LATENCY if deep else 0
        if deep:
            mul_a_r = Signal.like(mul_a, reset_less=True)
            mul_b_r = [Signal.like(mul_b[l], name=f"mul_b_r{l}", reset_less=True) for l in range(P)]
            m.d.sync += [mul_a_r.eq(mul_a)] + [mul_b_r[l].eq(mul_b[l]) for l in range(P)]
            m.d.sync += [prod[l].eq(mul_a_r * mul_b_r[l]) for l in range(P)]
        else:
            m.d.comb += [prod[l].eq(mul_a * mul_b[l]) for l in range(P)]
        m.submodules.update = up = EPUpdateUnit(config=c, lanes=P)
        # Every rule's q is (kept product) - (this cycle's product): the kept product is
        # W2's Rn_h * Rn_y and zero otherwise, so the W1 and bias rules negate their operand.
        keep_prod = Signal()
        rn_prod = [Signal.like(prod[l], name=f"rn_prod{l}") for l in range(P)]
        m.d.sync += [rn_prod[l].eq(Mux(keep_prod, prod[l], 0)) for l in range(P)]
        m.d.comb += [up.i.payload[l].q.eq(rn_prod[l] - prod[l]) for l in range(P)]
        s0 = self._streams
        # Each tensor has its own stream (Tensor.LFSR entries 0..3: w1, w2, b1, b2); the
        # tensors are updated one after the other, so one P-lane generator holds all four.
        m.submodules.lfsr = gen = LFSR(
            lanes=P, streams=4, init=[golden_lfsr.state_at(v) for v in s0.as_list()])
        m.d.comb += [up.draws[l].eq(gen.draws[l]) for l in range(P)]

        # -- sample control ------------------------------------------------------------------
        busy = Signal()
        training = Signal()
        label = Signal.like(self.label)
        shifts = self.shifts
        phase = Signal(Phase)
        step = Signal(range(max(c.free_steps, c.nudge_steps) + 1))
        cycles = Signal(32)
        spikes = Signal(32)
        counts = Array(Signal(self.count_shape, name=f"count{k}") for k in range(Y))
        m.d.comb += [self.busy.eq(busy), self.cycles.eq(cycles), self.spikes.eq(spikes)]
        m.d.comb += [self.spike_counts[k].eq(counts[k]) for k in range(Y)]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
        m.d.sync += self.done.eq(0)

        # -- image load (idle) ---------------------------------------------------------------
        NP = c.pixels      # pixels streamed per image; the N inputs are those inside the crop
        n_pix = Signal(range(NP + 1))
        nnz = Signal(range(N + 1))
        base_in = Signal(row_bits + 1)
        x_in = Signal(c.input_bits)
        inside = Signal(init=1)
        m.d.comb += [self.image_ready.eq(n_pix == NP),
                     self.pixels.ready.eq(~busy & (n_pix != NP)),
                     x_in.eq(self.pixels.payload >> (8 - c.input_bits)),
                     img_wr.addr.eq(nnz), img_wr.data.base.eq(base_in), img_wr.data.x.eq(x_in)]
        if c.crop:
            # Row and column of the pixel arriving; border pixels are counted, not kept.
            side, k = c.image_side, c.crop
            row, col = Signal(range(side)), Signal(range(side))
            m.d.comb += inside.eq((row >= k) & (row < side - k) & (col >= k) & (col < side - k))
            with m.If(self.pixels.valid & self.pixels.ready):
                with m.If(col == side - 1):
                    m.d.sync += [col.eq(0), row.eq(Mux(row == side - 1, 0, row + 1))]
                with m.Else():
                    m.d.sync += col.eq(col + 1)
        with m.If(self.pixels.valid & self.pixels.ready):
            m.d.sync += n_pix.eq(n_pix + 1)
            with m.If(inside):
                m.d.sync += base_in.eq(base_in + G)
                with m.If(x_in != 0):
                    m.d.comb += img_wr.en.eq(1)
                    m.d.sync += nnz.eq(nnz + 1)

        # -- host port (idle) ----------------------------------------------------------------
        port = self.port
        # A W1 read's word arrives after W1's read latency, the others' after one cycle (deep:
        # two, from the registers the time step reads them from); deep, the selected word is
        # registered too (no memory output on a path into the host link).
        w1_re = _delay(m, port.re & ~busy & (port.sel == Tensor.W1), RL, "w1_re", reset_less=False)
        other_re = _delay(m, port.re & ~busy & (port.sel != Tensor.W1), 1 + D, "other_re",
                          reset_less=False)
        other_sel = _delay(m, port.sel, 1 + D, "other_sel", shape=Tensor, reset_less=False)
        other_addr = _delay(m, port.addr, 1 + D, "other_addr", reset_less=False)
        with m.If(~busy):
            wr = port.we
            m.d.comb += [w1.addr.eq(port.addr), w1.wdata.eq(port.wdata),
                         w1.we.eq(wr & (port.sel == Tensor.W1)),
                         w2_rd.addr.eq(port.addr), w2_wr.addr.eq(port.addr),
                         w2_wr.data.eq(port.wdata[:P * c.weight_bits]),
                         w2_wr.en.eq(wr & (port.sel == Tensor.W2)),
                         b_wr.data.b.eq(port.wdata),
                         b_wr.en.eq(wr & ((port.sel == Tensor.B1) | (port.sel == Tensor.B2)))]
            b_addr = Mux(port.sel == Tensor.B2, H + port.addr, port.addr)
            m.d.comb += [b_rd.addr.eq(b_addr), b_wr.addr.eq(b_addr)]
            m.d.comb += [gen.seed.eq(port.wdata[:LFSR_BITS]),
                         gen.load.eq(wr & (port.sel == Tensor.LFSR) & (port.addr < 4))]
        # The stream and draw count in use come from registers set as each update begins.
        lfsr_sel, one_draw = Signal(2), Signal()
        m.d.comb += [gen.stream.eq(Mux(busy, lfsr_sel, port.addr[:2])),
                     gen.count.eq(Mux(one_draw, 1, P))]

        # -- the time step: W2 loop (A), then the neuron pass (B) --------------------------
        # Hidden spikes in two banks of G words of P lanes: A reads the previous step's bank,
        # the results fill the other, and the banks swap at the end of a step.
        gw = max((G - 1).bit_length(), 1)
        m.submodules.spikes = spk = memory.Memory(shape=P, depth=2 << gw, init=[])
        spk_rd, spk_wr = spk.read_port(), spk.write_port()
        bank = Signal()                       # the bank of the previous step's spikes
        s_h_lanes = Signal(max(P - 1, 1))     # lanes 0 .. P-2 of the group coming back
        s_y_prev, s_y_next = Signal(Y), Signal(Y)
        # The outputs' forward sums in a small RAM: A reads output k's with each W2 word of
        # column k and writes it back; B reads it for output neuron k once A is done. A reads
        # output k again Y >= 2 cycles after writing it, so the read port need not bypass.
        m.submodules.fwd = fwd_mem = memory.Memory(shape=drive_s, depth=Y, init=[])
        fwd_wr = fwd_mem.write_port()
        fwd_rd = fwd_mem.read_port(transparent_for=())
        fb = [Signal(drive_s, name=f"fb{l}") for l in range(P)]
        # A finished group's feedback waits in fbq for B, which takes P cycles to use it
        # while A needs Y (outputs) cycles for the next group: with a few cycles to spare one
        # buffer suffices, otherwise two let A run a group ahead.
        nbuf = 1 if P + 3 <= Y else 2
        fbq = Array(Array(Signal(drive_s, name=f"fbq{b}_{l}") for l in range(P))
                    for b in range(nbuf))

        def fbq_bank(group):
            return group[0] if nbuf == 2 else 0
        step_run = Signal()      # a step is in progress
        first_step = Signal()    # the sample's first step: every state starts at zero
        record = Signal(2)       # 0: no, 1: save rates in A, 2: in B (set for a phase's last step)

        # A: issue W2 reads in (g, k) order, then accumulate.
        a_g, a_k = Signal(range(G + 1)), Signal(range(Y))
        a_addr = Signal(range(Y * G + G + 1))
        a_groups = Signal(range(G + 1))     # groups whose feedback is in fbq
        b_g = Signal(range(G + 1))          # groups whose feedback B has taken (B's group)
        # The W2 word and the spikes of its group arrive at 1 and are summed at 1 + D (deep:
        # registered first); a_*A describe the word being summed.
        a_v1, a_k1, a_g1, a_last1 = Signal(), Signal.like(a_k), Signal.like(a_g), Signal()
        if deep:
            a_vA, a_kA, a_gA, a_lastA = Signal(), Signal.like(a_k), Signal.like(a_g), Signal()
            m.d.sync += [a_vA.eq(a_v1), a_kA.eq(a_k1), a_gA.eq(a_g1), a_lastA.eq(a_last1)]
        else:
            a_vA, a_kA, a_gA, a_lastA = a_v1, a_k1, a_g1, a_last1
        a_issue = Signal()
        if nbuf == 1:   # a group's last word overwrites fbq: B must have taken the previous
            m.d.comb += a_issue.eq(step_run & (a_g < G) & ((a_k != Y - 1) | (b_g == a_g)))
        else:
            m.d.comb += a_issue.eq(step_run & (a_g < G) & (a_g <= b_g + 1))
        with m.If(busy):
            m.d.comb += w2_rd.addr.eq(a_addr)
        m.d.sync += [a_v1.eq(a_issue), a_k1.eq(a_k), a_g1.eq(a_g), a_last1.eq(a_k == Y - 1)]
        with m.If(a_issue):
            with m.If(a_k == Y - 1):
                m.d.sync += [a_k.eq(0), a_g.eq(a_g + 1), a_addr.eq(a_g + 1)]
            with m.Else():
                m.d.sync += [a_k.eq(a_k + 1), a_addr.eq(a_addr + G)]
        m.d.comb += spk_rd.addr.eq(Cat(a_g[:gw], bank))   # read with the W2 word of group a_g
        wrow = _stage(m, w2_rd.data, deep, "wrow")
        spiked = _stage(m, Mux(first_step, 0, spk_rd.data), deep, "spiked")
        lane_sum = sum(Mux(spiked[l], wrow[l], 0) for l in range(P))
        fb_new = [Signal(drive_s, name=f"fb_new{l}") for l in range(P)]
        for l in range(P):
            m.d.comb += fb_new[l].eq(Mux(a_kA == 0, 0, fb[l]) + Mux(s_y_prev.bit_select(a_kA, 1),
                                                                    wrow[l], 0))
        # Group 0 starts each output's forward sum afresh: no clearing between steps.
        fwd_new = Signal(drive_s)
        m.d.comb += [fwd_new.eq(Mux(a_gA == 0, 0, fwd_rd.data) + lane_sum),
                     fwd_wr.addr.eq(a_kA), fwd_wr.data.eq(fwd_new), fwd_wr.en.eq(a_vA)]
        with m.If(a_vA):
            m.d.sync += [fb[l].eq(fb_new[l]) for l in range(P)]
            with m.If(a_lastA):
                m.d.sync += a_groups.eq(a_groups + 1)
                m.d.sync += [fbq[fbq_bank(a_gA)][l].eq(fb_new[l]) for l in range(P)]

        # B: the neurons one per cycle through the neuron lane in index order: hidden neuron
        # j once its group's feedback is ready, then output k (neuron H + k) once A is done.
        b_j = Signal(range(H + Y + 1))
        b_l = Signal(range(P))
        b_k = Signal(range(Y + 1))
        b_out = Signal()
        b_issue = Signal()
        b_v1, b_fb1, b_out1 = Signal(), Signal(drive_s), Signal()
        b_l1, b_k1 = Signal.like(b_l), Signal(range(Y))
        # A neuron's group (hidden) or its k (output), never both: they share the result's tag.
        b_n1 = Signal(range(max(G, Y)))
        m.d.comb += [b_out.eq(b_j >= H),
                     b_issue.eq(step_run & Mux(b_out, (b_k < Y) & (a_groups == G),
                                               a_groups > b_g))]
        with m.If(busy):
            m.d.comb += [s_rd.addr.eq(b_j), b_rd.addr.eq(b_j)]
        m.d.sync += [b_v1.eq(b_issue), b_fb1.eq(fbq[fbq_bank(b_g)][b_l]),
                     b_l1.eq(b_l), b_n1.eq(Mux(b_out, b_k, b_g)), b_k1.eq(b_k), b_out1.eq(b_out)]
        with m.If(b_issue):
            m.d.sync += b_j.eq(b_j + 1)
            with m.If(b_out):
                m.d.sync += b_k.eq(b_k + 1)
            with m.Elif(b_l == P - 1):
                m.d.sync += [b_l.eq(0), b_g.eq(b_g + 1)]
            with m.Else():
                m.d.sync += b_l.eq(b_l + 1)

        # The memories' outputs (deep: registered first) are summed into the lane's input,
        # which is registered: the drive sum does not share a cycle with the neuron's first
        # stage (its nudge).
        if deep:
            b_v2, b_fb2, b_out2, b_k2 = Signal(), Signal(drive_s), Signal(), Signal(range(Y))
            m.d.sync += [b_v2.eq(b_v1), b_fb2.eq(b_fb1), b_out2.eq(b_out1), b_k2.eq(b_k1)]
        else:
            b_v2, b_fb2, b_out2, b_k2 = b_v1, b_fb1, b_out1, b_k1
        s_r = _stage(m, s_rd.data, deep, "s_r")
        bd_r = _stage(m, b_rd.data, deep, "bd_r")
        fwd_r = _stage(m, fwd_rd.data, deep, "fwd_r")

        answer = m.d.sync if deep else m.d.comb
        answer += port.rvalid.eq(w1_re[RL] | other_re[1 + D])
        with m.Switch(Mux(w1_re[RL], Tensor.W1, other_sel[1 + D])):
            with m.Case(Tensor.W1):
                answer += port.rdata.eq(w1.rdata)
            with m.Case(Tensor.W2):
                answer += port.rdata.eq(wrow.as_value())
            with m.Case(Tensor.B1, Tensor.B2):
                answer += port.rdata.eq(bd_r.b)
            with m.Case(Tensor.LFSR):
                answer += port.rdata.eq(gen.states[other_addr[1 + D][:2]])
        lane_in = Signal.like(nu.i.payload[0])
        m.d.sync += [nu.i.valid.eq(b_v2), nu.i.payload[0].eq(lane_in)]
        m.d.comb += [lane_in.v.eq(Mux(first_step, 0, s_r.v)),
                     lane_in.phi.eq(Mux(first_step, 0, s_r.phi)),
                     lane_in.drive.eq(bd_r.b + Mux(b_out2, fwd_r, bd_r.d + b_fb2)),
                     lane_in.nudge.eq(b_out2 & (phase != Phase.FREE)),
                     lane_in.target.eq(b_k2 == label)]
        m.d.comb += [nu.negate.eq(phase == Phase.MINUS), fwd_rd.addr.eq(Mux(b_out, b_k, a_k1 if deep else a_k))]
        # Who each result belongs to, delayed by the lane's latency: a hidden neuron's lane
        # and group (no divider by P on the way back), an output's k, in the same bits; the
        # neuron's index is rebuilt from them (the tags are a few hundred flip-flops on the
        # UP5K otherwise).
        tag = data.StructLayout({"out": 1, "lane": range(P), "n": b_n1.shape()})
        lat = NeuronUnit.latency + 1 + D     # and the registers in front of the lane
        tags = [Signal(tag, name=f"tag{d}") for d in range(lat + 1)]
        m.d.comb += [tags[0].out.eq(b_out1), tags[0].lane.eq(b_l1), tags[0].n.eq(b_n1)]
        m.d.sync += [tags[d + 1].eq(tags[d]) for d in range(lat)]
        res = nu.o.payload[0]
        res_tag = tags[lat]
        r_lane, r_group, k_out = res_tag.lane, res_tag.n, res_tag.n[:len(b_k1)]
        hidden_j = Cat(r_lane, r_group) if P & (P - 1) == 0 else r_group * P + r_lane
        res_j = Mux(res_tag.out, H + k_out, hidden_j)    # the neuron's index
        y_done = Signal(range(Y + 1))
        best, best_v = Signal(range(Y)), Signal(mem_s)   # argmax of this step's output membranes
        with m.If(nu.o.valid):
            m.d.comb += [s_wr.addr.eq(res_j), s_wr.en.eq(1),
                         s_wr.data.v.eq(res.v), s_wr.data.phi.eq(res.phi)]
            m.d.sync += spikes.eq(spikes + res.spike)
        with m.If(nu.o.valid & ~res_tag.out):
            with m.If(r_lane == P - 1):
                m.d.comb += [spk_wr.addr.eq(Cat(r_group[:gw], ~bank)), spk_wr.en.eq(1),
                             spk_wr.data.eq(Cat(s_h_lanes[:P - 1], res.spike))]
            with m.Else():
                m.d.sync += s_h_lanes.bit_select(r_lane, 1).eq(res.spike)
        rate_addr = Mux(res_tag.out, G + k_out, r_group)
        rate_en = Mux(res_tag.out, 1, 1 << r_lane)
        with m.If(nu.o.valid & (record == 1)):
            m.d.comb += ra_wr.en.eq(rate_en)
        with m.If(nu.o.valid & (record == 2)):
            m.d.comb += rb_wr.en.eq(rate_en)
        m.d.comb += [ra_wr.addr.eq(rate_addr), rb_wr.addr.eq(rate_addr)]
        m.d.comb += [ra_wr.data[l].eq(res.rate) for l in range(P)]
        m.d.comb += [rb_wr.data[l].eq(res.rate) for l in range(P)]
        with m.If(nu.o.valid & res_tag.out):
            m.d.sync += [s_y_next.bit_select(k_out, 1).eq(res.spike), y_done.eq(y_done + 1)]
            # Running argmax over the outputs as they arrive in ascending order (lowest index
            # on ties): one comparison a cycle instead of a chain of Y.
            with m.If((k_out == 0) | (res.v > best_v)):
                m.d.sync += [best.eq(k_out), best_v.eq(res.v)]
        for k in range(Y):
            with m.If(self.start & ~busy & (n_pix == NP)):
                m.d.sync += counts[k].eq(0)
            with m.Elif(nu.o.valid & res_tag.out & (k_out == k) & (phase == Phase.FREE)):
                m.d.sync += counts[k].eq(counts[k] + res.spike)

        step_end = Signal()
        m.d.comb += step_end.eq(step_run & (y_done == Y))
        # Compared a cycle ahead (step and phase change only as a step begins, many cycles
        # before it ends): the comparisons' carry chains were the UP5K's longest path.
        step_more, step_penult = Signal(), Signal()    # a step follows this one; just one
        steps_now = Mux(phase == Phase.FREE, c.free_steps, c.nudge_steps)
        m.d.sync += [step_more.eq(step + 1 < steps_now), step_penult.eq(step + 2 == steps_now)]

        def begin_step():
            return [step_run.eq(1), a_g.eq(0), a_k.eq(0), a_addr.eq(0), a_groups.eq(0),
                    b_j.eq(0), b_l.eq(0), b_g.eq(0), b_k.eq(0), y_done.eq(0)]

        if self._trace:
            # The step's hidden spikes arrive in index order: shift them in.
            s_h_all = Signal(H)
            with m.If(nu.o.valid & ~res_tag.out):
                m.d.sync += s_h_all.eq(Cat(s_h_all[1:], res.spike))
            m.d.comb += [self.trace.payload.phase.eq(phase), self.trace.payload.s_h.eq(s_h_all),
                         self.trace.payload.s_y.eq(s_y_next)]

        # Which rates a phase's last step saves: one-sided EP compares (free, nudged),
        # symmetric EP compares (+beta, -beta); rn/rf below follow the same choice.
        def record_for(ph):
            if c.symmetric_nudge:
                return {Phase.FREE: 0, Phase.PLUS: 1, Phase.MINUS: 2}[ph]
            return {Phase.FREE: 1, Phase.PLUS: 2, Phase.MINUS: 0}[ph]

        def enter_phase(ph, steps):
            stmts = [phase.eq(ph), step.eq(0)] + begin_step()
            rec = record_for(ph)
            if steps == 1:
                stmts.append(record.eq(Mux(training, rec, 0)))
            else:
                stmts.append(record.eq(0))
            return stmts

        # The update's Rn and Rf: symmetric EP compares rates A (+beta) and B (-beta),
        # one-sided EP rates B (nudged) and A (free).
        # Deep: they are registered (rn, rf: two cycles after their address) before any
        # arithmetic. R: the extra cycle.
        R = D
        ra_r, rb_r = _stage(m, ra_rd.data, deep, "ra_r"), _stage(m, rb_rd.data, deep, "rb_r")
        rn, rf = (ra_r, rb_r) if c.symmetric_nudge else (rb_r, ra_r)

        # -- sequencer -----------------------------------------------------------------------
        # input drive counters
        dg = Signal(range(G + 1))
        dn = Signal(range(N + 1))
        # d_v[n]: an image entry issued n cycles ago (its W1 word arrives at 2 + RL, its
        # products at 2 + RL + ML); d_x[n]: its pixel, n - 1 cycles after it arrived.
        DW = 2 + RL
        d_v = [Signal(name=f"d_v{n}") for n in range(DW + ML + 1)]
        d_x = [None] + [Signal(c.input_bits, name=f"d_x{n}", reset_less=True) for n in range(1, DW)]
        d_addr = Signal(range(N * G))    # the W1 word of the entry that arrived last cycle
        acc_s = w["input_acc"].shape
        # No reset (cleared at start and after each group): on the iCE40 the clear then takes
        # the flip-flops' synchronous reset rather than a LUT input beside the adder's.
        acc = [Signal(acc_s, name=f"acc{l}", reset_less=True) for l in range(P)]
        dl = Signal(range(P + 1))
        d_wv, d_wl = Signal(), Signal(range(P))
        d_j, d_wj = Signal(range(H + 1)), Signal(range(H))   # the neuron filled (counted: no dg * P)
        # update counters
        un, ug = Signal(range(N + 1)), Signal(range(G + 1))
        u_slot = Signal()
        row_x = Signal(c.input_bits)
        # u_v[n]: an update read (W2: the first cycle of a word) n cycles ago; the states set
        # u_v[1], the rest follow. Its rates are there at 1 + R, its products at 1 + R + ML
        # (W2: the first at 1 + R + ML, the second at 2 + R + ML).
        u_v = [None] + [Signal(name=f"u_v{n}") for n in range(1, 3 + R + ML)]
        m.d.sync += [u_v[n + 1].eq(u_v[n]) for n in range(1, 2 + R + ML)]
        u_v1 = u_v[1]
        # A single-port W1 reads in even slots and writes in odd ones: when the results come an
        # even number of cycles after the read, they wait a cycle in a register.
        W1W = 1 - (1 + R + ML + EPUpdateUnit.latency) % 2
        # The update unit's results as a memory word (they are inside the weight range).
        new_weights = Cat(up.o.payload[l][:c.weight_bits] for l in range(P))
        w1_wv = _delay(m, up.o.valid, W1W, "w1_wv", reset_less=False)
        w1_wd = _delay(m, new_weights, W1W, "w1_wd")
        u_drained = Signal()     # no update in flight: in the bank, in the unit, to be written
        m.d.comb += u_drained.eq(~Cat(u_v[1:]).any() & ~up.busy & ~Cat(w1_wv[1:]).any())
        u_col, u_latch = Signal(), Signal()          # W2: fetch, then latch, a column's rates
        u_latch2 = Signal()
        y_rn, y_rf = Signal(rate_s), Signal(rate_s)  # the rates of output k in that column
        # The address of each update read (u_addr) and of each write of a result (u_waddr):
        # registers stepped by one per read and per write (W1: row base + group; W2:
        # k * G + group; biases: b1 then b2), so no adder or multiplier sits in front of a
        # memory address. Results are written in the order of their reads, and every run of
        # reads from one start address (a W1 row, W2, the biases) drains before the next
        # begins, so the write address is a second counter from the same start rather than
        # the read address delayed (a hundred flip-flops on the UP5K).
        u_addr = Signal(range(max(N * G, Y * G, H + Y) + 1))
        u_waddr = Signal.like(u_addr)
        # The old values beside the products: W1's word arrives RL cycles after its read, a
        # bias 1 cycle after, a W2 word 1 and 2 cycles after; the products come at 1 + R + ML.
        w1_old_word = data.View(word, _delay(m, w1.rdata, 1 + R + ML - RL, "w1_old")[-1])
        w2_old_word = data.View(word, _delay(m, w2_rd.data.as_value(), R + ML, "w2_old")[-1])
        b_old = _delay(m, b_rd.data.b, R + ML, "b_old")[-1]
        u_k = Signal(range(Y + 1))
        u_lane1 = Signal(range(P))
        u_lane = _stage(m, u_lane1, deep, "u_lane2")     # a bias read's lane, with its rates
        u_out = Signal()                                 # a bias read is of b2 (not b1)
        u_out_d = _delay(m, u_out, 1 + R + ML, "u_out", reset_less=False)
        u_bl, u_bg = Signal(range(P)), Signal(range(G + 1))
        u_fetch = Signal()       # ROW: the image entry of row un arrives in the next cycle

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start & (n_pix == NP)):
                    m.d.sync += [busy.eq(1), first_step.eq(1), training.eq(self.train),
                                 label.eq(self.label), cycles.eq(0), spikes.eq(0),
                                 dg.eq(0), dn.eq(0), dl.eq(0), d_j.eq(0), s_y_prev.eq(0)]
                    m.d.sync += [acc[l].eq(0) for l in range(P)]
                    m.next = "DRIVE"

            with m.State("DRIVE"):
                # D[j] = (sum over non-zero pixels of x * W1[i, j]) >> input_shift, group by group.
                issue = Signal()
                m.d.comb += [issue.eq((dn < nnz) & (dl == 0)), img_rd.addr.eq(dn),
                             w1.addr.eq(d_addr), d_v[0].eq(issue)]
                # the image entry arrives one cycle after its issue, its W1 address is registered,
                # its W1 word arrives one cycle after that
                m.d.sync += [d_v[n + 1].eq(d_v[n]) for n in range(DW + ML)]
                m.d.sync += [d_x[1].eq(img_rd.data.x), d_addr.eq(img_rd.data.base + dg)]
                m.d.sync += [d_x[n + 1].eq(d_x[n]) for n in range(1, DW - 1)]
                with m.If(issue):
                    m.d.sync += dn.eq(dn + 1)
                m.d.comb += [mul_a.eq(d_x[DW - 1])] + [mul_b[l].eq(w1_rdata[l]) for l in range(P)]
                with m.If(d_v[DW + ML]):
                    m.d.sync += [acc[l].eq(acc[l] + prod[l]) for l in range(P)]
                # Write the group's drives beside the biases and reset its state, one neuron
                # per cycle: read the bias word (cycle dl), write it back with D (cycle dl + 1).
                filling = Signal()
                m.d.comb += filling.eq((dn == nnz) & ~Cat(d_v[1:]).any() & (dl < P))
                with m.If(filling):
                    m.d.comb += b_rd.addr.eq(d_j)
                    m.d.sync += [dl.eq(dl + 1), d_j.eq(d_j + 1)]
                m.d.sync += [d_wv.eq(filling), d_wl.eq(dl), d_wj.eq(d_j)]
                with m.If(d_wv):
                    acc_sel = Array(acc)
                    m.d.comb += [b_wr.addr.eq(d_wj), b_wr.en.eq(1),
                                 b_wr.data.b.eq(b_rd.data.b),
                                 b_wr.data.d.eq(acc_sel[d_wl] >> c.input_shift),
                                 s_wr.addr.eq(d_wj), s_wr.en.eq(1), s_wr.data.eq(0)]
                with m.If(dl == P):     # the group's last write is in this cycle
                    m.d.sync += [dl.eq(0), dn.eq(0), dg.eq(dg + 1)] + [acc[l].eq(0) for l in range(P)]
                    with m.If(dg == G - 1):
                        m.d.sync += enter_phase(Phase.FREE, c.free_steps)
                        m.next = "STEP"

            with m.State("STEP"):
                with m.If(step_end):
                    m.d.sync += [s_y_prev.eq(s_y_next), step_run.eq(0)]
                    m.d.sync += [bank.eq(~bank), first_step.eq(0)]
                    if self._trace:
                        m.d.comb += self.trace.valid.eq(1)
                    with m.If(step_more):
                        m.d.sync += [step.eq(step + 1)] + begin_step()
                        with m.If(step_penult):
                            for ph in (Phase.FREE, Phase.PLUS, Phase.MINUS):
                                with m.If(phase == ph):
                                    m.d.sync += record.eq(Mux(training, record_for(ph), 0))
                    with m.Elif(phase == Phase.FREE):
                        m.d.sync += self.prediction.eq(best)
                        with m.If(training):
                            m.d.sync += enter_phase(Phase.PLUS, c.nudge_steps)
                        with m.Else():
                            m.next = "FINISH"
                    with m.Elif((phase == Phase.PLUS) & c.symmetric_nudge):
                        m.d.sync += enter_phase(Phase.MINUS, c.nudge_steps)
                    with m.Else():
                        m.d.sync += [un.eq(0), ug.eq(0), u_slot.eq(0), u_fetch.eq(0),
                                     lfsr_sel.eq(0)]
                        m.next = "ROW"

            with m.State("ROW"):
                # W1: rows with x != 0 ascending, words of a row ascending; the single-port RAM
                # reads in even slots and writes (two cycles after the read) in odd slots.
                m.d.comb += img_rd.addr.eq(un)
                m.d.sync += u_fetch.eq(1)
                with m.If(un == nnz):
                    m.d.sync += [u_k.eq(0), ug.eq(0), u_addr.eq(0), u_waddr.eq(0), u_fetch.eq(0),
                                 u_slot.eq(0), u_col.eq(1), lfsr_sel.eq(1)]
                    m.next = "UPD_W2"
                with m.Elif(u_fetch):   # image entry of row un has arrived
                    m.d.sync += [u_addr.eq(img_rd.data.base), u_waddr.eq(img_rd.data.base),
                                 row_x.eq(img_rd.data.x),
                                 ug.eq(0), u_slot.eq(0), u_fetch.eq(0)]
                    m.next = "UPD_W1"

            with m.State("UPD_W1"):
                m.d.sync += u_slot.eq(~u_slot)
                read = Signal()
                m.d.comb += read.eq(~u_slot & (ug < G))
                m.d.comb += [ra_rd.addr.eq(ug), rb_rd.addr.eq(ug)]
                with m.If(read):
                    m.d.comb += w1.addr.eq(u_addr)
                    m.d.sync += [ug.eq(ug + 1), u_addr.eq(u_addr + 1)]
                m.d.sync += u_v1.eq(read)
                # q = x * (Rn - Rf) = 0 - x * (Rf - Rn), lane by lane
                m.d.comb += [up.i.valid.eq(u_v[1 + R + ML]), gen.advance.eq(u_v[1 + R + ML]),
                             up.shift.eq(shifts.w1),
                             mul_a.eq(row_x)]
                for l in range(P):
                    m.d.comb += [mul_b[l].eq(rf[l] - rn[l]),
                                 up.i.payload[l].w.eq(w1_old_word[l])]
                with m.If(w1_wv[W1W]):
                    m.d.comb += [w1.addr.eq(u_waddr), w1.we.eq(1), w1.wdata.eq(w1_wd[W1W])]
                    m.d.sync += u_waddr.eq(u_waddr + 1)
                with m.If((ug == G) & ~read & u_drained):
                    m.d.sync += [un.eq(un + 1), u_fetch.eq(0)]
                    m.next = "ROW"

            with m.State("UPD_W2"):
                # W2: columns k ascending, groups ascending (golden draw order). A column begins
                # with a cycle that fetches output k's rates (u_col) and one that latches them.
                # A word takes two cycles, its address held for both: the bank makes
                # Rn_h * Rn_y in the first, Rf_h * Rf_y in the second; q is their difference.
                more = Signal()
                m.d.comb += [more.eq(u_k < Y), w2_rd.addr.eq(u_addr),
                             ra_rd.addr.eq(Mux(u_col, G + u_k, ug)),
                             rb_rd.addr.eq(Mux(u_col, G + u_k, ug))]
                m.d.sync += [u_v1.eq(more & ~u_slot & ~u_col),
                             u_latch.eq(u_col), u_latch2.eq(u_latch)]
                with m.If(u_latch2 if deep else u_latch):
                    m.d.sync += [y_rn.eq(rn[0]), y_rf.eq(rf[0])]
                with m.If(u_col):
                    m.d.sync += u_col.eq(0)
                with m.Else():
                    m.d.sync += u_slot.eq(~u_slot)
                with m.If(more & u_slot):
                    m.d.sync += u_addr.eq(u_addr + 1)     # k * G + g, counted
                    with m.If(ug == G - 1):
                        m.d.sync += [ug.eq(0), u_k.eq(u_k + 1), u_col.eq(1)]
                    with m.Else():
                        m.d.sync += ug.eq(ug + 1)
                m.d.comb += mul_a.eq(Mux(u_v[1 + R], y_rn, y_rf))
                m.d.comb += [mul_b[l].eq(Mux(u_v[1 + R], rn[l], rf[l])) for l in range(P)]
                m.d.comb += [keep_prod.eq(u_v[1 + R + ML]), up.i.valid.eq(u_v[2 + R + ML]),
                             gen.advance.eq(u_v[2 + R + ML]),
                             up.shift.eq(shifts.w2)]
                for l in range(P):
                    m.d.comb += up.i.payload[l].w.eq(w2_old_word[l])
                with m.If(up.o.valid):
                    m.d.comb += [w2_wr.addr.eq(u_waddr), w2_wr.en.eq(1),
                                 w2_wr.data.eq(new_weights)]
                    m.d.sync += u_waddr.eq(u_waddr + 1)
                with m.If(~more & u_drained):
                    m.d.sync += [u_addr.eq(0), u_waddr.eq(0), u_k.eq(0), u_bl.eq(0), u_bg.eq(0),
                                 one_draw.eq(1)]
                    m.next = "UPD_B"

            with m.State("UPD_B"):
                # b1 then b2, in the bias memory's order, through lane 0; the address u_j =
                # u_bg * P + u_bl for b1 (counted rather than divided), u_j = H + u_k for b2.
                u_j = u_addr
                read = Signal()
                # Output k's rates are in lane 0 of word G + k (u_bl stays 0 for b2).
                rate_word = Mux(u_out, G + u_k, u_bg)
                m.d.comb += [u_out.eq(u_j >= H), read.eq(u_j < H + Y), b_rd.addr.eq(u_j),
                             ra_rd.addr.eq(rate_word), rb_rd.addr.eq(rate_word)]
                m.d.sync += [u_v1.eq(read), u_lane1.eq(u_bl),
                             lfsr_sel.eq(2 + u_out_d[R + ML])]     # b1's stream, then b2's
                with m.If(read):
                    m.d.sync += u_j.eq(u_j + 1)
                    with m.If(u_out):
                        m.d.sync += u_k.eq(u_k + 1)
                    with m.Elif(u_bl == P - 1):
                        m.d.sync += [u_bl.eq(0), u_bg.eq(u_bg + 1)]
                    with m.Else():
                        m.d.sync += u_bl.eq(u_bl + 1)
                rn_arr, rf_arr = Array(rn[l] for l in range(P)), Array(rf[l] for l in range(P))
                lane0 = up.i.payload[0]
                m.d.comb += [up.i.valid.eq(u_v[1 + R + ML]), up.bias.eq(1),
                             gen.advance.eq(u_v[1 + R + ML]),
                             up.shift.eq(Mux(u_out_d[1 + R + ML], shifts.b2, shifts.b1)),
                             lane0.w.eq(b_old),
                             mul_a.eq(1), mul_b[0].eq(rf_arr[u_lane] - rn_arr[u_lane])]
                with m.If(up.o.valid):
                    m.d.comb += [b_wr.addr.eq(u_waddr), b_wr.en.eq(1),
                                 b_wr.data.b.eq(up.o.payload[0])]
                    m.d.sync += u_waddr.eq(u_waddr + 1)
                with m.If(~read & u_drained):
                    m.next = "FINISH"

            with m.State("FINISH"):
                m.d.sync += [one_draw.eq(0), busy.eq(0), self.done.eq(1), n_pix.eq(0), nnz.eq(0),
                             base_in.eq(0), step_run.eq(0)]
                m.next = "IDLE"
        return m

