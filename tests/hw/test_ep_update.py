# amaranth: UnusedElaboratable=no
import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.sim import Simulator

from eqfpga.config import LFSR_BITS, Config
from eqfpga.golden import ep_update, lfsr
from eqfpga.golden.network import init_params
from eqfpga.hw.ep_update import TENSORS, EPUpdateUnit
from eqfpga.hw.lfsr import LFSR

RATES = {"w1": ("x", "rn", "rf"), "w2": ("rn_h", "rf_h", "rn_y", "rf_y"),
         "b1": ("rn", "rf"), "b2": ("rn", "rf")}


def golden_q(tensor, f):
    """The golden rule for q from a dict of field arrays (as in golden.ep_update.apply)."""
    if tensor == "w1":
        return f["x"] * (f["rn"] - f["rf"])
    if tensor == "w2":
        return f["rn_h"] * f["rn_y"] - f["rf_h"] * f["rf_y"]
    return f["rn"] - f["rf"]


def limits(c, tensor):
    return c.bias_range if tensor.startswith("b") else c.weight_range


def stream_words(dut, words, *, shifts, draws=None, rng, bias=False, top=None, setup=None,
                 per_word=None, teardown=None):
    """Drive ``words`` (one list of ``{w, q}`` lane dicts per input) through ``dut`` with random bubbles;
    ``draws`` is a list of per-word draw lists, or None when an LFSR inside ``top`` feeds them.
    ``setup(ctx)``, ``per_word(ctx, k)`` (as word ``k`` is presented) and ``teardown(ctx)`` are
    optional testbench hooks. Returns the output words; also checks the latency."""
    outputs, in_cycles, out_cycles, busy = [], [], [], []

    async def tb(ctx):
        if setup is not None:
            await setup(ctx)
        cycle, pending = 0, list(range(len(words)))
        while pending or len(outputs) < len(words):
            if pending and rng.integers(0, 4) != 0:
                k = pending.pop(0)
                ctx.set(dut.i.payload, words[k])
                ctx.set(dut.shift, int(shifts[k]))
                ctx.set(dut.bias, bias)
                if draws is not None:
                    ctx.set(dut.draws, [int(d) for d in draws[k]])
                ctx.set(dut.i.valid, 1)
                if per_word is not None:
                    per_word(ctx, k)
                in_cycles.append(cycle)
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.o.valid):
                out = ctx.get(dut.o.payload)
                outputs.append([int(out[p]) for p in range(dut.lanes)])
                out_cycles.append(cycle)
            # busy: some input taken before this cycle has not come out before this cycle
            in_flight = (sum(1 for c in in_cycles if c < cycle)
                         - sum(1 for c in out_cycles if c < cycle))
            busy.append((ctx.get(dut.busy), in_flight > 0))
            await ctx.tick()
            cycle += 1
            assert cycle < 10 * len(words) + 20, "outputs missing"
        if teardown is not None:
            await teardown(ctx)

    sim = Simulator(top if top is not None else dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert [o - i for i, o in zip(in_cycles, out_cycles)] == [dut.latency] * len(words)
    assert all(bool(got) == want for got, want in busy)
    return outputs


def random_fields(c, tensor, n, rng):
    """Field arrays for ``n`` lanes; a third of the rates at 0 or the maximum and a third of
    the weights at or next to a limit, so both saturations occur."""
    lo, hi = limits(c, tensor)

    def mix(uniform, corners):
        pick = rng.integers(0, 3, size=n) == 0
        return np.where(pick, rng.choice(np.array(corners, np.int64), size=n), uniform)

    f = {"w": mix(rng.integers(lo, hi, size=n, endpoint=True), [lo, lo + 1, hi - 1, hi, 0])}
    for name in RATES[tensor]:
        top = (1 << c.input_bits) - 1 if name == "x" else c.rate_max
        f[name] = mix(rng.integers(0, top, size=n, endpoint=True), [0, top])
    return f


@pytest.mark.parametrize("tensor, lanes", [("w1", 3), ("w2", 2), ("b1", 1), ("b2", 4)])
def test_random_vectors_against_golden(hw_config, tensor, lanes):
    c = hw_config
    rng = np.random.default_rng(lanes)
    words_n = 150
    n = words_n * lanes
    f = random_fields(c, tensor, n, rng)
    # Every shift 0..17 occurs; small shifts make steps large enough to saturate.
    shifts = rng.integers(0, LFSR_BITS, size=words_n, endpoint=True)
    shifts[:LFSR_BITS + 1] = np.arange(LFSR_BITS + 1)
    draws = rng.integers(0, 1 << LFSR_BITS, size=n)
    draws[rng.integers(0, 4, size=n) == 0] = (1 << LFSR_BITS) - 1
    dut = EPUpdateUnit(config=c, lanes=lanes)
    q = golden_q(tensor, f)
    words = [[{"w": int(f["w"][w * lanes + p]), "q": int(q[w * lanes + p])} for p in range(lanes)]
             for w in range(words_n)]
    got = np.array(stream_words(dut, words, shifts=shifts, rng=rng, bias=tensor[0] == "b",
                                draws=draws.reshape(words_n, lanes)), np.int64).ravel()

    lane_shift = np.repeat(shifts, lanes)
    lo, hi = limits(c, tensor)
    want = np.empty(n, np.int64)
    for s in range(LFSR_BITS + 1):       # golden takes one shift at a time
        sel = lane_shift == s
        want[sel] = np.clip(f["w"][sel] + ep_update.stochastic_round(q[sel], s, draws[sel]),
                            lo, hi)
    bad = np.flatnonzero(got != want)
    assert not bad.size, f"lanes {bad[:5]}: got {got[bad[:5]]}, want {want[bad[:5]]}"
    # The vectors did exercise both limits and unsaturated updates.
    raw = f["w"] + ep_update.stochastic_round(q, 0, draws)
    assert (raw < lo).any() and (raw > hi).any()
    assert ((want > lo) & (want < hi) & (want != f["w"])).any()


@pytest.mark.parametrize("lanes", [5, 4, 3])
def test_whole_w2_update_with_lfsr(lanes):
    """A complete W2 update of a small network: W2 column by column (golden draw order) through the unit, draws from the
    hardware LFSR stream, a runtime shift from Config.at_epoch; every weight and the final
    stream position must equal golden.ep_update.apply. With 3 lanes the 80 weights end in a
    short word, which consumes only 2 draws (LFSR ``count``)."""
    base = Config(name="t", inputs=16, hidden=8, outputs=10, weight_bits=6, w1_init=20,
                  w2_init=31, w2_shift=6, lr_decay_epochs=1, seed=3)
    c = base.at_epoch(2)
    assert c.w2_shift == 8
    rng = np.random.default_rng(lanes)
    p = init_params(base)
    x = np.zeros(base.inputs, np.int64)          # W1 draws nothing, keeps the test short
    rf_h, rn_h = (rng.integers(0, c.rate_max, size=c.hidden, endpoint=True) for _ in "ab")
    rf_y, rn_y = (rng.integers(0, c.rate_max, size=c.outputs, endpoint=True) for _ in "ab")
    rn_h[0], rf_h[0] = c.rate_max, 0             # a row with large steps: saturation
    streams = ep_update.Streams.seeded(c)
    start = streams.w2
    want = p.copy()
    ep_update.apply(want, x, rf_h, rf_y, rn_h, rn_y, c, streams)

    dut = EPUpdateUnit(config=c, lanes=lanes)
    gen = LFSR(lanes=lanes)
    top = Module()
    top.submodules.update = dut
    top.submodules.lfsr = gen
    top.d.comb += [dut.draws.eq(gen.draws), gen.advance.eq(dut.i.valid)]

    jk = [(j, k) for k in range(c.outputs) for j in range(c.hidden)]   # golden draw order
    words = [[{"w": int(p.w2[j, k]), "q": int(rn_h[j] * rn_y[k] - rf_h[j] * rf_y[k])}
              for j, k in jk[i:i + lanes]]
             for i in range(0, len(jk), lanes)]
    used = [len(word) for word in words]
    words = [word + word[:1] * (lanes - len(word)) for word in words]   # pad the short word

    async def setup(ctx):
        ctx.set(gen.seed, lfsr.state_at(start))
        ctx.set(gen.load, 1)
        await ctx.tick()
        ctx.set(gen.load, 0)

    def per_word(ctx, k):
        ctx.set(gen.count, used[k])

    async def teardown(ctx):
        assert ctx.get(gen.draws[0]) == lfsr.state_at(streams.w2)

    got = stream_words(dut, words, shifts=[c.w2_shift] * len(words), rng=rng, top=top,
                       setup=setup, per_word=per_word, teardown=teardown)
    got = np.array([v for word, n in zip(got, used) for v in word[:n]], np.int64)
    got = got.reshape(c.outputs, c.hidden).T
    assert np.array_equal(got, want.w2), np.argwhere(got != want.w2)[:5]
    lo, hi = c.weight_range
    assert (got == lo).any() or (got == hi).any()
    assert not np.array_equal(got, p.w2)


def test_lfsr_ends_at_golden_stream_position():
    """After a whole tensor the LFSR holds the golden stream's next position."""
    c = Config(name="t", inputs=16, hidden=8, outputs=10, w2_shift=9, seed=5)
    lanes = 4
    start = ep_update.Streams.seeded(c).w2
    _, end = lfsr.draws(start, c.hidden * c.outputs)
    dut = EPUpdateUnit(config=c, lanes=lanes)
    gen = LFSR(lanes=lanes)
    top = Module()
    top.submodules.update = dut
    top.submodules.lfsr = gen
    top.d.comb += [dut.draws.eq(gen.draws), gen.advance.eq(dut.i.valid)]

    async def tb(ctx):
        ctx.set(gen.seed, lfsr.state_at(start))
        ctx.set(gen.load, 1)
        await ctx.tick()
        ctx.set(gen.load, 0)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().repeat(c.hidden * c.outputs // lanes)
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        assert ctx.get(gen.draws[0]) == lfsr.state_at(end)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def test_lanes_and_rtlil():
    c = Config(name="t")
    dut = EPUpdateUnit(config=c, lanes=2)
    assert set(dut.in_lane.members) == {"w", "q"}
    assert dut.value_shape == c.widths["bias"].shape
    for tensor in TENSORS:       # every rule's q range fits the q input
        q = c.widths[{"w1": "w1_product", "w2": "w2_product"}.get(tensor, "rate_delta")]
        half = 1 << dut.q_shape.width - 1
        assert dut.q_shape.signed and -half <= q.lo and q.hi < half
    assert rtlil.convert(dut)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(config=None), TypeError, "Configuration must be a Config"),
    (dict(lanes=0), TypeError, "Lane count"),
    (dict(lanes="2"), TypeError, "Lane count"),
])
def test_rejects_bad_parameters(kwargs, exc, msg):
    args = dict(config=Config(name="t"), lanes=1)
    args.update(kwargs)
    with pytest.raises(exc, match=msg):
        EPUpdateUnit(**args)
