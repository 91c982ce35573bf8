# amaranth: UnusedElaboratable=no
import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings, strategies as st

from eqfpga.config import Config
from eqfpga.golden import neuron
from eqfpga.hw.neuron import NeuronUnit


def golden_step(c, v, drive, phi, nudge_en, target, sign):
    """One golden time step per element; ``sign`` is +1/-1 as in golden.network.step."""
    r_old = neuron.rate(v, c)
    nudge = np.where(sign > 0, neuron.nudge(r_old, target, c, 1), neuron.nudge(r_old, target, c, -1))
    p = drive + np.where(nudge_en == 1, nudge, 0)
    v_new = neuron.membrane_step(v, p, c)
    r = neuron.rate(v_new, c)
    phi_new, spike = neuron.sigma_delta(phi, r, c)
    return v_new, phi_new, r, spike


def nudge_bounds(c):
    """Range of the nudge over both signs (drive + nudge must fit the drive width)."""
    return (-(1 << c.rate_bits)) >> c.nudge_shift, (1 << c.rate_bits) >> c.nudge_shift


def random_vectors(c, n, rng, nudge=True):
    """``n`` neuron inputs, a third of each quantity drawn from its corner cases."""
    w = c.widths
    mlo, mhi = w["membrane"].lo, w["membrane"].hi
    dlo, dhi = w["drive"].lo, w["drive"].hi
    rs = c.rate_shift

    def mix(uniform, corners):
        pick = rng.integers(0, 3, size=n) == 0
        return np.where(pick, rng.choice(np.array(corners, np.int64), size=n), uniform)

    v = mix(rng.integers(mlo, mhi, size=n, endpoint=True),
            [mlo, mhi, 0, -1, 1, c.rate_max << rs, ((c.rate_max + 1) << rs) - 1,
             (c.rate_max + 1) << rs, -(1 << rs), (1 << rs) - 1, 1 << rs])
    drive = mix(rng.integers(dlo, dhi, size=n, endpoint=True), [dlo, dhi, 0, -1, 1])
    phi = mix(rng.integers(0, c.rate_max, size=n, endpoint=True), [0, c.rate_max])
    if nudge:
        nudge_en = rng.integers(0, 2, size=n)
        target = rng.integers(0, 2, size=n)
        sign = rng.choice([1, -1], size=n)
        nlo, nhi = nudge_bounds(c)
        drive = np.where(nudge_en == 1, np.clip(drive, dlo - nlo, dhi - nhi), drive)
    else:
        nudge_en = target = np.zeros(n, np.int64)
        sign = np.ones(n, np.int64)
    return v, drive, phi, nudge_en, target, sign


def run_unit(c, lanes, vectors, *, nudge=True, rng=None):
    """Stream ``vectors`` through a NeuronUnit (with random bubbles); returns its outputs in
    input order as arrays (v, phi, rate, spike). Also checks the latency."""
    v, drive, phi, nudge_en, target, sign = vectors
    n = len(v)
    # One sign per input word (the negate port is shared by the lanes).
    groups = [list(range(k, min(k + lanes, n))) for k in range(0, n, lanes)]
    for g in groups:
        sign[g] = sign[g[0]]
    dut = NeuronUnit(config=c, lanes=lanes, nudge=nudge)
    rng = rng or np.random.default_rng(0)
    outputs, in_cycles, out_cycles = [], [], []

    async def tb(ctx):
        cycle = 0
        pending = list(groups)
        while pending or len(outputs) < len(groups):
            if pending and rng.integers(0, 4) != 0:
                g = pending.pop(0)
                lane_vals = []
                for p in range(lanes):
                    k = g[p] if p < len(g) else g[0]      # pad a short last word
                    d = {"drive": int(drive[k]), "v": int(v[k]), "phi": int(phi[k])}
                    if nudge:
                        d.update(nudge=int(nudge_en[k]), target=int(target[k]))
                    lane_vals.append(d)
                ctx.set(dut.i.payload, lane_vals)
                ctx.set(dut.i.valid, 1)
                if nudge:
                    ctx.set(dut.negate, int(sign[g[0]] < 0))
                in_cycles.append(cycle)
            else:
                ctx.set(dut.i.valid, 0)
            if ctx.get(dut.o.valid):
                out = ctx.get(dut.o.payload)
                outputs.append([(out[p].v, out[p].phi, out[p].rate, out[p].spike)
                                for p in range(lanes)])
                out_cycles.append(cycle)
            await ctx.tick()
            cycle += 1
            assert cycle < 10 * len(groups) + 20, "outputs missing"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert [o - i for i, o in zip(in_cycles, out_cycles)] == [dut.latency] * len(groups)
    flat = [lane for word, g in zip(outputs, groups) for lane in word[:len(g)]]
    return tuple(np.array(col, np.int64) for col in zip(*flat))


def check(c, vectors, got):
    want = golden_step(c, *vectors)
    for name, g, wv in zip(("v", "phi", "rate", "spike"), got, want):
        bad = np.flatnonzero(g != wv)
        assert not bad.size, (f"{name} differs at {bad[:5]}: got {g[bad[:5]]}, want {wv[bad[:5]]}"
                              f" for v={vectors[0][bad[:5]]} drive={vectors[1][bad[:5]]}")


@pytest.mark.parametrize("lanes", [1, 3])
def test_random_vectors_against_golden(hw_config, lanes):
    rng = np.random.default_rng(lanes)
    vectors = random_vectors(hw_config, 400, rng)
    check(hw_config, vectors, run_unit(hw_config, lanes, vectors, rng=rng))


def test_without_nudge(hw_config):
    rng = np.random.default_rng(5)
    vectors = random_vectors(hw_config, 200, rng, nudge=False)
    check(hw_config, vectors, run_unit(hw_config, 2, vectors, nudge=False, rng=rng))


def test_nudge_extremes():
    """Every combination of target, sign and a rate of 0 / max before the step, with the drive
    at the limit the nudge may reach."""
    c = Config(name="t", rate_bits=6, beta_shift=0, weight_frac_bits=6, membrane_frac_bits=2,
               leak_shift=1, hidden=16, inputs=64)
    assert c.nudge_shift == 0 and c.rate_shift == 2
    w = c.widths
    nlo, nhi = nudge_bounds(c)
    rows = []
    for v in (0, c.rate_max << c.rate_shift, w["membrane"].lo, w["membrane"].hi):
        for target in (0, 1):
            for sign in (1, -1):
                for drive in (w["drive"].lo - nlo, w["drive"].hi - nhi, 0):
                    rows.append((v, drive, c.rate_max, 1, target, sign))
    vectors = tuple(np.array(col, np.int64) for col in zip(*rows))
    check(c, vectors, run_unit(c, 1, vectors))


@st.composite
def neuron_inputs(draw, c):
    w = c.widths
    nlo, nhi = nudge_bounds(c)
    nudge_en = draw(st.integers(0, 1))
    dlo, dhi = w["drive"].lo, w["drive"].hi
    if nudge_en:
        dlo, dhi = dlo - nlo, dhi - nhi
    return (draw(st.integers(w["membrane"].lo, w["membrane"].hi)),
            draw(st.integers(dlo, dhi)), draw(st.integers(0, c.rate_max)),
            nudge_en, draw(st.integers(0, 1)), 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(neuron_inputs(Config(name="t")), min_size=1, max_size=16))
def test_hypothesis_default_config(rows):
    c = Config(name="t")
    vectors = tuple(np.array(col, np.int64) for col in zip(*rows))
    check(c, vectors, run_unit(c, 4, vectors))


def test_multi_step_trajectory():
    """Feed the unit's outputs back as its next inputs for a few steps (how an integration
    uses it), against golden steps, with constant drives at the range ends."""
    c = Config(name="t")
    w = c.widths
    drive = np.array([w["drive"].lo, w["drive"].hi, 0, 300, -300, 17], np.int64)
    v = np.zeros_like(drive); phi = np.zeros_like(drive)
    zeros = np.zeros_like(drive); ones = np.ones_like(drive)
    for _ in range(4):
        vectors = (v, drive, phi, zeros, zeros, ones)
        got = run_unit(c, len(drive), vectors)
        check(c, vectors, got)
        v, phi = got[0], got[1]


def test_ports_and_rtlil():
    c = Config(name="t")
    dut = NeuronUnit(config=c, lanes=2)
    assert dut.in_lane.size == (c.widths["drive"].bits + c.widths["membrane"].bits
                                + c.rate_bits + 2)
    assert "negate" in dut.signature.members
    assert "negate" not in NeuronUnit(config=c, lanes=1, nudge=False).signature.members
    assert rtlil.convert(dut)


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(config="t", lanes=1), TypeError, "Configuration must be a Config"),
    (dict(lanes=0), TypeError, "Lane count"),
    (dict(lanes=2, nudge=1), TypeError, "Nudge must be a bool"),
])
def test_rejects_bad_parameters(kwargs, exc, msg):
    kwargs.setdefault("config", Config(name="t"))
    with pytest.raises(exc, match=msg):
        NeuronUnit(**kwargs)
