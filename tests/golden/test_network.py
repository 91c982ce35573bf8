import numpy as np
import pytest

from eqfpga.config import Config
from eqfpga.golden import network
from eqfpga.golden.network import Params, State


def _scalar_phase(x, p: Params, c: Config, steps, label=None, state=None):
    """Per-neuron Python loops of the documented semantics (one sample)."""
    H, Y = c.hidden, c.outputs
    drive = [sum(int(x[i]) * int(p.w1[i, j]) for i in range(c.inputs) if x[i]) >> c.input_shift
             for j in range(H)]
    v_h, phi_h, s_h, v_y, phi_y, s_y = state or ([0] * H, [0] * H, [0] * H, [0] * Y, [0] * Y, [0] * Y)
    rate = lambda v: min(max(v >> c.rate_shift, 0), c.rate_max)  # noqa: E731
    spikes = []
    for _ in range(steps):
        ph = [drive[j] + int(p.b1[j]) + sum(int(p.w2[j, k]) * s_y[k] for k in range(Y)) for j in range(H)]
        py = [sum(int(p.w2[j, k]) * s_h[j] for j in range(H)) + int(p.b2[k]) for k in range(Y)]
        if label is not None:
            py = [py[k] + ((((k == label) << c.rate_bits) - rate(v_y[k])) >> c.nudge_shift) for k in range(Y)]
        v_h = [v + (((P << c.membrane_frac_bits) - v) >> c.leak_shift) for v, P in zip(v_h, ph)]
        v_y = [v + (((P << c.membrane_frac_bits) - v) >> c.leak_shift) for v, P in zip(v_y, py)]
        acc_h = [f + rate(v) for f, v in zip(phi_h, v_h)]
        acc_y = [f + rate(v) for f, v in zip(phi_y, v_y)]
        s_h = [int(a >= c.spike_threshold) for a in acc_h]
        s_y = [int(a >= c.spike_threshold) for a in acc_y]
        phi_h = [a - s * c.spike_threshold for a, s in zip(acc_h, s_h)]
        phi_y = [a - s * c.spike_threshold for a, s in zip(acc_y, s_y)]
        spikes.append((s_h, s_y))
    return (v_h, phi_h, s_h, v_y, phi_y, s_y), spikes


@pytest.fixture
def tiny():
    c = Config(name="tiny", inputs=12, hidden=6, outputs=3, w1_init=100, w2_init=60, free_steps=12,
               nudge_steps=6, input_shift=6, beta_shift=0, seed=3)
    p = network.init_params(c)
    p.b1[:] = [5, -7, 0, 30, -100, 2]; p.b2[:] = [1, -3, 8]
    return c, p


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_phases_equal_scalar_loops(tiny, seed):
    c, p = tiny
    x = np.random.default_rng(seed).integers(0, 256, (1, c.inputs))
    x[0, ::3] = 0
    trace = network.Trace()
    inf = network.infer(x, p, c, trace=trace)
    st_ref, spikes = _scalar_phase(network.quantize_input(x, c)[0], p, c, c.free_steps)
    rec = trace.stacked()
    for t, (sh, sy) in enumerate(spikes):
        assert list(rec["s_h"][t, 0]) == sh and list(rec["s_y"][t, 0]) == sy, f"step {t}"
    assert list(inf.state.v_h[0]) == st_ref[0] and list(inf.state.v_y[0]) == st_ref[3]
    # nudged phase continues from the free state
    target = np.zeros((1, c.outputs), np.int64); target[0, 1] = 1
    st = network.run_phase(inf.state, inf.drive_h, p, c, c.nudge_steps, target=target)
    st_ref2, _ = _scalar_phase(network.quantize_input(x, c)[0], p, c, c.nudge_steps, 1, st_ref)
    assert list(st.v_y[0]) == st_ref2[3] and list(st.phi_h[0]) == st_ref2[1]


def test_batch_equals_one_at_a_time(small_config):
    c = small_config
    p = network.init_params(c)
    x = np.random.default_rng(0).integers(0, 256, (7, c.inputs))
    batch = network.infer(x, p, c)
    for i in range(7):
        one = network.infer(x[i], p, c)
        assert one.prediction[0] == batch.prediction[i]
        np.testing.assert_array_equal(one.spike_counts[0], batch.spike_counts[i])


def test_prediction_ties_pick_lowest_index(tiny):
    c, p = tiny
    p.w1[:] = 0; p.w2[:] = 0; p.b1[:] = 0; p.b2[:] = 0
    assert network.infer(np.zeros((2, c.inputs)), p, c).prediction.tolist() == [0, 0]


def test_wrong_image_shape_is_refused(small_config):
    p = network.init_params(small_config)
    with pytest.raises(ValueError, match="784"):
        network.infer(np.zeros((1, 100)), p, small_config)


def test_params_check(small_config):
    c = small_config
    p = network.init_params(c)
    p.check(c)
    p.w2[0, 0] = 200
    with pytest.raises(ValueError, match="w2 holds values outside"):
        p.check(c)
    with pytest.raises(ValueError, match="shape"):
        Params(p.w1[:, :5], p.w2, p.b1, p.b2).check(c)


def test_crop_input_drops_the_border_row_major():
    from eqfpga.config import Config
    c = Config(name="c", inputs=4, crop=1, hidden=4, w1_init=4, w2_init=4)
    img = np.arange(16).reshape(1, 16)            # 4x4, the inside is 5 6 / 9 10
    assert network.crop_input(img, c).tolist() == [[5, 6, 9, 10]]
    assert network.quantize_input(img * 16, c).tolist() == [[80 >> 0, 96, 144, 160]]
    with pytest.raises(ValueError, match="expects 16"):
        network.crop_input(np.zeros((1, 4)), c)
