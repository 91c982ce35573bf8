"""golden/network.py: the integer network's phases, against scalar loops and hand-computed
semantics (dense and convolutional layers)."""

from dataclasses import replace

import numpy as np
import pytest

from eqfpga import data
from eqfpga.config import Config
from eqfpga.golden import conv_float as cf, conv_ops as ops, network, neuron
from eqfpga.golden.network import Params, State

I = np.int64
TINY = Config.convolutional("tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                            w_init=(700, 100, 150, 250), batch_size=8)


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
        Params([p.w1[:, :5], p.w2], [p.b1, p.b2]).check(c)


def test_crop_input_drops_the_border_row_major():
    c = Config(name="c", inputs=4, crop=1, hidden=4, w1_init=4, w2_init=4, input_bits=4)
    img = np.arange(16).reshape(1, 16)            # 4x4, the inside is 5 6 / 9 10
    assert network.crop_input(img, c).tolist() == [[5, 6, 9, 10]]
    assert network.crop_input(img[0], c).tolist() == [[5, 6, 9, 10]]
    # quantised: pixel >> (8 - input_bits), as the image (B, C, H, W) or as rows
    assert network.flat_input(img * 16, c).tolist() == [[5, 6, 9, 10]]
    assert network.quantize_input(img * 16, c).tolist() == [[[[5, 6], [9, 10]]]]
    with pytest.raises(ValueError, match=r"samples of shape \(4,\), config 'c' expects \(1, 4, 4\) \(16 values\)"):
        network.crop_input(np.zeros((1, 4)), c)


def test_round_shift_hand_computed():
    assert [int(network.rs(I(q), 1)) for q in (5, -5, 4, -1)] == [3, -2, 2, 0]
    assert [int(network.rs(I(q), 2)) for q in (6, 5, -6, -7)] == [2, 1, -1, -2]
    assert int(network.rs(I(-7), 0)) == -7


def test_params_and_state_name_the_layers_of_one_hidden_layer_networks_only(small_config):
    p = network.init_params(small_config)
    assert p.w1 is p.w[0] and p.w2 is p.w[1] and p.b1 is p.b[0] and p.b2 is p.b[1]
    assert list(p.arrays()) == ["w1", "w2", "b1", "b2"]
    st = State.zeros(3, small_config)
    assert st.v_y is st.v[1] and st.s_h is st.s[0] and st.phi_y.shape == (3, small_config.outputs)
    deep = network.init_params(TINY)
    with pytest.raises(ValueError, match="w2 names the layers of a one-hidden-layer network; this one has 4"):
        deep.w2
    with pytest.raises(ValueError, match="v_h names"):
        State.zeros(1, TINY).v_h
    assert list(deep.arrays()) == ["w1", "w2", "w3", "w4", "b1", "b2", "b3", "b4"]


# -- convolutional layers -----------------------------------------------------------------
def _images(n, size=14, offset=0):
    tr = data.load("train")
    return data.downsample(tr.images[offset:offset + n], size), tr.labels[offset:offset + n].astype(I)


def test_input_pad_is_a_border_of_zero_pixels_in_both_models():
    """A padded network is the unpadded network of the larger size fed the bordered image:
    same input, same spikes and predictions, integer and float."""
    c = replace(TINY, image_size=12, input_pad=1)
    big = replace(TINY, image_size=14)
    X, _ = _images(3, 12)
    bordered = np.pad(X.reshape(-1, 12, 12), ((0, 0), (1, 1), (1, 1))).reshape(3, -1)
    assert np.array_equal(network.quantize_input(X, c), network.quantize_input(bordered, big))
    assert np.array_equal(cf.float_input(X, c), cf.float_input(bordered, big))
    p = network.init_params(c)
    padded, explicit = network.infer(X, p, c), network.infer(bordered, p, big)
    assert np.array_equal(padded.spike_counts, explicit.spike_counts)
    assert np.array_equal(padded.prediction, explicit.prediction)
    fp = cf.FParams.from_int(p, c)
    assert np.array_equal(cf.infer(X, fp, c), cf.infer(bordered, fp, big))
    with pytest.raises(ValueError, match="expects"):
        network.quantize_input(bordered, c)      # the border is the model's, not the caller's


def test_input_drive_and_first_step_semantics():
    c = TINY
    p = network.init_params(c)
    p.b[0][:] = 7
    X, _ = _images(2)
    x = network.quantize_input(X, c)
    assert x.shape == (2, 1, 14, 14) and x.max() <= 255
    d, idx = network.input_drive(x, p, c)
    q = ops.conv(x, p.w[0])
    assert idx is None
    assert np.array_equal(d, (ops.pool_sum(q, 2) + (1 << (c.pool_shift + c.input_shift - 1)))
                          >> (c.pool_shift + c.input_shift))
    st0 = State.zeros(2, c)
    st1 = network.step(st0, d, p, c)
    # no spikes yet: layer 1 sees input drive + bias only, the others their bias (0)
    assert np.array_equal(st1.v[0], neuron.membrane_step(np.zeros_like(d), d + 7, c))
    assert all((v == 0).all() for v in st1.v[1:])
    st2 = network.step(st1, d, p, c)
    ff, _ = network.feedforward(1, st1.s[0], p, c)
    assert np.array_equal(ff, network.rs(ops.pool_sum(ops.conv(st1.s[0], p.w[1]), 2), 2))
    assert np.array_equal(st2.v[1], neuron.membrane_step(st1.v[1], ff + p.b[1][:, None, None], c))


def test_max_pooling_feedback_routes_to_the_window_maximum():
    c = replace(TINY, pooling="max")
    p = network.init_params(c)
    rng = np.random.default_rng(1)
    s0 = rng.integers(0, 2, (1,) + c.geometry[0].out_shape)
    ff, idx = network.feedforward(1, s0, p, c)
    s1 = np.ones((1,) + c.geometry[1].out_shape, I)
    fb = network.feedback(0, s1, idx, p, c)
    assert np.array_equal(fb, ops.conv_t(ops.unpool(s1, idx, 2), p.w[1]))


def test_each_convolution_pools_as_its_layer_says():
    """Pool size and pooling are per layer: an unpooled average convolution below a max-pooled one."""
    c = replace(TINY, layers=(replace(TINY.layers[0], pool=1), replace(TINY.layers[1], pooling="max"),
                              *TINY.layers[2:]))
    assert [ly.out_shape for ly in c.geometry[:2]] == [(4, 12, 12), (6, 5, 5)]
    p = network.init_params(c)
    X, _ = _images(2)
    x = network.quantize_input(X, c)
    d, idx0 = network.input_drive(x, p.fixed(c), c)
    assert idx0 is None and np.array_equal(d, network.rs(ops.conv(x, p.w[0]), c.input_shift))
    s0 = np.random.default_rng(2).integers(0, 2, (2, 4, 12, 12))
    ff, idx = network.feedforward(1, s0, p, c)
    m, want_idx = ops.max_pool(ops.conv(s0, p.w[1]), 2)
    assert np.array_equal(ff, m) and np.array_equal(idx, want_idx)
    s1 = np.ones((2, 6, 5, 5), I)
    assert np.array_equal(network.feedback(0, s1, idx, p, c), ops.conv_t(ops.unpool(s1, idx, 2), p.w[1]))
    assert network.infer(X, p, c).spikes.min() > 0


def test_fixed_weights_drive_as_the_weights():
    """``fixed`` precomputes the pooled kernels for one batch's phases: the drives are those of
    the weights themselves."""
    rng = np.random.default_rng(1)
    c = TINY
    p = network.init_params(c)
    st = State.zeros(2, c)
    st.s = [rng.integers(0, 2, (2,) + ly.out_shape) for ly in c.geometry]
    d = np.zeros((2,) + c.geometry[0].out_shape, I)
    plain, cached = network.drives(st, d, p, c)[0], network.drives(st, d, p.fixed(c), c)[0]
    assert all(np.array_equal(a, b) for a, b in zip(plain, cached))
    assert p.fixed(replace(c, pooling="max")) is p


def test_phase_rates_are_the_rounded_mean_of_the_last_steps():
    c = replace(TINY, average_steps=4, nudge_steps=6)
    p = network.init_params(c)
    X, y = _images(2)
    x = network.quantize_input(X, c)
    d, i0 = network.input_drive(x, p, c)
    st = network.run_phase(State.zeros(2, c, i0), d, p, c, 10)
    target = np.eye(c.outputs, dtype=I)[y]
    end, R = network.run_phase_mean(st, d, p, c, 6, target, 1)
    sums, s = [0] * c.n_layers, st
    for k in range(6):
        s = network.step(s, d, p, c, target, 1)
        if k >= 2:
            sums = [a + b for a, b in zip(sums, s.rates(c))]
    assert all(np.array_equal(a, (b + 2) >> 2) for a, b in zip(R, sums))
    assert all(np.array_equal(a, b) for a, b in zip(end.v, s.v))
    one = replace(c, average_steps=1)
    assert all(np.array_equal(a, b) for a, b in zip(network.run_phase_mean(st, d, p, one, 6, target, 1)[1],
                                                       s.rates(c)))


def test_predict_gives_predictions_and_output_spike_counts_of_every_network(small_config):
    for c in (small_config, TINY):
        p = network.init_params(c)
        X, _ = _images(5, 28 if c is small_config else 14)
        pred, counts = network.predict(X, p, c, batch=2)
        whole = network.infer(X, p, c)
        assert np.array_equal(pred, whole.prediction) and np.array_equal(counts, whole.spike_counts)
        assert counts.shape == (5, c.outputs)
        assert network.accuracy(X, pred, p, c) == 1.0
        empty = network.predict(X[:0], p, c)
        assert empty[0].shape == (0,) and empty[1].shape == (0, c.outputs)
