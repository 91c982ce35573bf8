"""The shipped network in Verilator (cocotb runner): image for image the golden model's
class and output spike counts; a corrupted weight shows up as a mismatch."""

import numpy as np
import pytest

from eqfpga import checkpoint, data
from eqfpga.golden import network
from eqfpga.hw.accelerator import Tensor
from eqfpga.sim import simulate, verilator

IMAGES = 40


@pytest.fixture(scope="module")
def shipped():
    return checkpoint.load(checkpoint.shipped())


@pytest.fixture(scope="module")
def build(shipped):
    return verilator.build(shipped.config)


@pytest.fixture(scope="module")
def test_set():
    return data.load("test")


def test_ci_run_agrees_with_golden(build, shipped, test_set, tmp_path):
    x, y = test_set.images[:IMAGES], test_set.labels[:IMAGES]
    hw = verilator.run(build, x, shipped.params, jobs=2, work_dir=tmp_path)
    pred, counts = network.predict(x, shipped.params, shipped.config)
    class_bad, count_bad = simulate.compare(hw, pred, counts)
    assert len(class_bad) == 0 and len(count_bad) == 0
    assert hw.prediction.shape == (IMAGES,) and hw.spike_counts.shape == (IMAGES, 10)
    assert hw.spike_counts.sum() > 0 and np.mean(hw.prediction == y) > 0.9
    assert hw.cycles.min() > shipped.config.free_steps
    # The clock ran through parameter loads, pixel streams and samples, in both jobs.
    assert hw.clock_cycles > hw.cycles.sum() + IMAGES * shipped.config.inputs


def test_corrupted_weight_is_caught(build, shipped, test_set, tmp_path):
    x = test_set.images[:8]
    golden = network.infer(x, shipped.params, shipped.config)
    # One W2 weight, from one of the hidden neurons that spike most into the predicted class,
    # flipped to the far end of its range: the first such change that alters image 0's counts.
    trace = network.Trace()
    network.infer(x[:1], shipped.params, shipped.config, trace=trace)
    busiest = np.argsort(-trace.stacked()["s_h"][:, 0].sum(axis=0))[:20]
    k = int(golden.prediction[0])
    lo, hi = shipped.config.weight_range
    for j in busiest:
        bad = shipped.params.copy()
        bad.w2[j, k] = lo if bad.w2[j, k] > 0 else hi
        if (network.infer(x[:1], bad, shipped.config).spike_counts != golden.spike_counts[:1]).any():
            break
    else:
        pytest.fail("no single W2 change alters image 0")
    hw = verilator.run(build, x, bad, jobs=1, work_dir=tmp_path)
    class_bad, count_bad = simulate.compare(hw, golden.prediction, golden.spike_counts)
    assert 0 in count_bad


def test_param_words_pack_sel_addr_data(build, shipped):
    words = verilator.param_words(build, shipped.params)
    c, P = shipped.config, build.lanes
    G = c.hidden // P
    assert len(words) == c.inputs * G + c.outputs * G + c.hidden + c.outputs
    shift = build.word_bits + build.addr_bits
    first_b1 = words[c.inputs * G + c.outputs * G]
    assert first_b1 >> shift == Tensor.B1.value
    assert (first_b1 >> build.word_bits) & ((1 << build.addr_bits) - 1) == 0
    b1 = first_b1 & ((1 << build.word_bits) - 1)
    assert b1 == int(shipped.params.b1[0]) & ((1 << build.word_bits) - 1)


def test_training_is_weight_exact(build, shipped, tmp_path):
    """On-chip training from the initial weights, in Verilator: after every sample the same
    prediction, and at the end every weight, bias and LFSR position equal to golden's."""
    from eqfpga.golden import ep_update, train
    c, n = shipped.config, 120
    split = data.load("train")
    x, y = split.images[:n], split.labels[:n].astype(int)
    p0 = network.init_params(c)
    hw = verilator.run(build, x, p0, streams=ep_update.Streams.seeded(c), labels=y, train=True,
                       read_back=True, work_dir=tmp_path)
    golden, st = p0.copy(), ep_update.Streams.seeded(c)
    pred = [train.train_sample(x[i], int(y[i]), golden, c, st).prediction for i in range(n)]
    assert list(hw.prediction) == pred
    assert golden.differences(p0), "training changed nothing: the check would be empty"
    assert hw.params.differences(golden) == []
    assert hw.streams == st
    # The comparison sees a single one-LSB difference.
    off = golden.copy()
    off.w2[3, 7] += 1
    assert hw.params.differences(off) == [("w2", (3, 7), int(golden.w2[3, 7]), int(off.w2[3, 7]))]
