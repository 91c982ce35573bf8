# amaranth: UnusedElaboratable=no
import numpy as np
import pytest
from amaranth.sim import Simulator

from eqfpga.golden import lfsr as golden
from eqfpga.hw.lfsr import LFSR, leap_matrix


def test_leap_matrix_matches_stepping():
    rng = np.random.default_rng(0)
    for steps in (0, 1, 17, 17 * 5, 17 * 8):
        cols = leap_matrix(steps)
        for s in map(int, rng.integers(1, golden.PERIOD + 1, size=20)):
            x = 0
            for i, col in enumerate(cols):
                if (s >> i) & 1:
                    x ^= col
            assert x == golden.advance(s, steps)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_rejects_bad_lanes(bad):
    with pytest.raises(TypeError, match="Lane count"):
        LFSR(lanes=bad)


@pytest.mark.parametrize("bad", [0, 1 << 17, -3])
def test_rejects_bad_init(bad):
    with pytest.raises(ValueError, match="non-zero 17-bit"):
        LFSR(lanes=1, init=bad)


def _run(dut, tb):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("lanes", [1, 2, 5, 8])
def test_draws_match_golden(lanes):
    """Load saved stream positions, advance with gaps and by fewer draws than lanes, and
    compare every lane."""
    dut = LFSR(lanes=lanes)
    # Positions near the wrap of the period as well as ordinary ones.
    starts = [0, 12345, golden.PERIOD - 3, golden.stream_seed(7, "w2")]
    rng = np.random.default_rng(lanes)

    async def tb(ctx):
        # Reset state is stream position 0.
        want, _ = golden.draws(0, lanes)
        assert [int(d) for d in ctx.get(dut.draws)] == list(want)
        for start in starts:
            ctx.set(dut.seed, golden.state_at(start))
            ctx.set(dut.load, 1)
            ctx.set(dut.advance, 1)     # load wins over advance
            await ctx.tick()
            ctx.set(dut.load, 0)
            pos = start
            for k in range(16):
                adv = int(rng.integers(0, 4) != 0)
                ctx.set(dut.advance, adv)
                # First the default (all lanes' draws consumed), then partial advances.
                count = lanes if k < 8 else int(rng.integers(0, lanes + 1))
                if k >= 8:
                    ctx.set(dut.count, count)
                want, _ = golden.draws(pos, lanes)
                assert [int(d) for d in ctx.get(dut.draws)] == list(want), (start, pos)
                await ctx.tick()
                if adv:
                    pos = (pos + count) % golden.PERIOD
            ctx.set(dut.advance, 0)
            ctx.set(dut.count, lanes)

    _run(dut, tb)


def test_streams_are_independent():
    """Four streams behind one set of lanes: each advances only while selected, a load goes
    to the selected stream only, and ``states`` shows every stream's next draw."""
    lanes, n = 3, 4
    starts = [golden.stream_seed(5, s) for s in golden.STREAMS]
    dut = LFSR(lanes=lanes, streams=n, init=[golden.state_at(p) for p in starts])
    rng = np.random.default_rng(1)
    pos = list(starts)

    async def tb(ctx):
        for k in range(60):
            sel = int(rng.integers(0, n))
            count = int(rng.integers(1, lanes + 1))
            ctx.set(dut.stream, sel)
            ctx.set(dut.count, count)
            ctx.set(dut.advance, 1)
            load = k % 17 == 16
            if load:
                pos[sel] = int(rng.integers(0, golden.PERIOD))
                ctx.set(dut.seed, golden.state_at(pos[sel]))
            ctx.set(dut.load, load)
            want, _ = golden.draws(pos[sel], lanes) if not load else (None, None)
            if want is not None:
                assert [int(d) for d in ctx.get(dut.draws)] == list(want)
            await ctx.tick()
            if not load:
                pos[sel] = (pos[sel] + count) % golden.PERIOD
            assert [int(s) for s in ctx.get(dut.states)] == [golden.state_at(p) for p in pos]

    _run(dut, tb)


@pytest.mark.parametrize("kwargs, msg", [(dict(streams=0), "Stream count"),
                                         (dict(streams=2, init=[1]), "2 streams need 2")])
def test_rejects_bad_streams(kwargs, msg):
    with pytest.raises((TypeError, ValueError), match=msg):
        LFSR(lanes=1, **kwargs)
