# amaranth: UnusedElaboratable=no
"""The whole accelerator against the golden model: every spike of every step in inference,
every weight, bias and LFSR position after training."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from eqfpga import data
from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train
from eqfpga.hw.accelerator import Accelerator
from eqfpga.sim import accelerator as drv

# Three networks of different sizes, lane counts, widths and nudging.
CONFIGS = {
    "64-16-10/P4/one-sided": (Config(name="a", inputs=64, hidden=16, free_steps=12, nudge_steps=6,
                                     input_shift=8, w1_init=30, w2_init=20, w1_shift=11,
                                     w2_shift=13, b1_shift=6, b2_shift=6, seed=2), 4, {}),
    "64-16-10/P4/one-sided/deep": (Config(name="a", inputs=64, hidden=16, free_steps=12,
                                          nudge_steps=6, input_shift=8, w1_init=30, w2_init=20,
                                          w1_shift=11, w2_shift=13, b1_shift=6, b2_shift=6,
                                          seed=2), 4, {"deep_pipeline": True}),
    "64-24-10/P8/symmetric/6-bit": (Config(name="b", inputs=64, hidden=24, weight_bits=6,
                                           weight_frac_bits=4, rate_bits=6, membrane_frac_bits=3,
                                           leak_shift=1, input_shift=7, bias_bits=9, free_steps=10,
                                           nudge_steps=5, symmetric_nudge=True, beta_shift=0,
                                           w1_init=12, w2_init=10, w1_shift=10, w2_shift=11,
                                           b1_shift=7, b2_shift=7, seed=3), 8, {}),
    "49-12-10/P3/symmetric/10-bit/W1 banks/deep": (Config(name="c", inputs=49, hidden=12, input_bits=4,
                                            weight_bits=10, bias_bits=14, weight_frac_bits=8,
                                            input_shift=4, drive_bits=18, membrane_bits=22,
                                            free_steps=8, nudge_steps=4, symmetric_nudge=True,
                                            w1_init=200, w2_init=150, w1_shift=8, w2_shift=12,
                                            b1_shift=4, b2_shift=4, seed=4), 3,
                                     # W1: 4 registered banks, the last short
                                     {"w1_bank_depth": 64, "deep_pipeline": True}),
    "8x8 cropped to 6x6/P4/symmetric": (Config(name="d", inputs=36, crop=1, hidden=16,
                                                free_steps=10, nudge_steps=5, symmetric_nudge=True,
                                                input_shift=7, w1_init=30, w2_init=20,
                                                w1_shift=11, w2_shift=13, b1_shift=6, b2_shift=6,
                                                seed=6), 4, {}),
}


def _images(c: Config, n: int, offset: int = 0):
    split = data.load("train")
    size = int(round(c.pixels ** 0.5))
    return (data.downsample(split.images[offset:offset + n], size),
            split.labels[offset:offset + n].astype(int))


def _pretrained(c: Config):
    """Weights after a short golden training run, so that neurons are active."""
    p = network.init_params(c)
    st = ep_update.Streams.seeded(c)
    x, y = _images(c, 200, offset=1000)
    for i in range(len(x)):
        train.train_sample(x[i], int(y[i]), p, c, st)
    return p, st


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("name", CONFIGS)
def test_inference_is_spike_exact(name):
    c, lanes, kw = CONFIGS[name]
    p, st = _pretrained(c)
    x, _ = _images(c, 4)
    dut = Accelerator(config=c, lanes=lanes, params=p, streams=st, **kw)
    runs = []

    async def bench(ctx):
        for img in x:
            runs.append(await drv.run_sample(ctx, dut, img))

    _simulate(dut, bench)
    for i, run in enumerate(runs):
        trace = network.Trace()
        want = network.infer(x[i], p, c, trace=trace)
        rec = trace.stacked()
        assert len(run.s_h) == c.free_steps
        for t in range(c.free_steps):
            assert (run.s_h[t] == rec["s_h"][t, 0]).all(), f"image {i} step {t} hidden spikes"
            assert (run.s_y[t] == rec["s_y"][t, 0]).all(), f"image {i} step {t} output spikes"
        assert run.prediction == want.prediction[0]
        assert (run.spike_counts == want.spike_counts[0]).all()
        assert run.spikes == want.spikes[0]
    assert sum(r.spikes for r in runs) > 0


@pytest.mark.parametrize("name", CONFIGS)
def test_training_is_weight_exact(name):
    c, lanes, kw = CONFIGS[name]
    p0, st0 = _pretrained(c)
    x, y = _images(c, 20, offset=3000)
    dut = Accelerator(config=c, lanes=lanes, params=p0, streams=st0, **kw)
    got = {}

    async def bench(ctx):
        got["runs"] = [await drv.run_sample(ctx, dut, x[i], train=True, label=y[i])
                       for i in range(len(x))]
        got["params"] = await drv.read_params(ctx, dut)
        got["streams"] = await drv.read_streams(ctx, dut)

    _simulate(dut, bench)
    p, st = p0.copy(), ep_update.Streams(*st0.as_list())
    for i in range(len(x)):
        trace = network.Trace()
        r = train.train_sample(x[i], int(y[i]), p, c, st, trace=trace)
        run = got["runs"][i]
        rec = trace.stacked()
        assert len(run.s_h) == len(rec["s_h"]), f"sample {i}: number of steps"
        assert all((a == b[0]).all() for a, b in zip(run.s_h, rec["s_h"])), f"sample {i} spikes"
        assert run.prediction == r.prediction and run.spikes == r.spikes
    for k, v in p.arrays().items():
        assert np.array_equal(got["params"].arrays()[k], v), (k, np.argwhere(got["params"].arrays()[k] != v)[:5])
    assert got["streams"] == st
    assert not np.array_equal(p.w1, p0.w1)          # the weights did move


@pytest.mark.parametrize("bank_depth, deep", [(None, False), (32, True)])
def test_weights_load_and_read_back_through_the_port(bank_depth, deep):
    c, lanes, _ = CONFIGS["64-16-10/P4/one-sided"]
    p = network.init_params(c)
    p.w1[:] = np.random.default_rng(1).integers(-128, 128, p.w1.shape)
    p.b1[:] = np.random.default_rng(2).integers(-2048, 2048, p.b1.shape)
    dut = Accelerator(config=c, lanes=lanes, w1_bank_depth=bank_depth, deep_pipeline=deep)
    got = {}

    async def bench(ctx):
        await drv.write_params(ctx, dut, p)
        got["p"] = await drv.read_params(ctx, dut)

    _simulate(dut, bench)
    for k, v in p.arrays().items():
        assert np.array_equal(got["p"].arrays()[k], v), k


def test_bad_parameters():
    c, _, _ = CONFIGS["64-16-10/P4/one-sided"]
    with pytest.raises(ValueError, match="multiple of lanes"):
        Accelerator(config=c, lanes=5)
    with pytest.raises(ValueError, match="SPRAM"):
        Accelerator(config=c, lanes=4, params=network.init_params(c), spram=True)


@pytest.mark.slow
def test_w1_lands_in_spram_on_the_up5k():
    """Yosys would silently map W1 to block RAM; count the cells (minutes: run from bench/)."""
    import importlib.util
    from pathlib import Path
    from eqfpga.config import load_config
    path = Path(__file__).resolve().parents[2] / "bench" / "accelerator_synth.py"
    spec = importlib.util.spec_from_file_location("accelerator_synth", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cells = mod.synth_cells(load_config("up5k"), 8)
    assert cells.get("SB_SPRAM256KA") == 4
