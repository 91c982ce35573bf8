"""Convolutional spiking EP (issue 7): integer semantics, adjoints, EP vs BPTT, training, resume."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from eqfpga import data
from eqfpga.conv_config import ConvConfig
from eqfpga.golden import conv, conv_float as cf, conv_ops as ops, conv_train, lfsr, neuron

TINY = ConvConfig(name="tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                  w_init=(700, 100, 150, 250), batch_size=8)
I = np.int64
ints = lambda shape: arrays(np.int64, shape, elements=st.integers(-50, 50))


# -- array operations: hand-computed cases ------------------------------------------------
def test_conv_hand_computed():
    a = np.arange(9, dtype=I).reshape(1, 1, 3, 3)          # [[0 1 2] [3 4 5] [6 7 8]]
    w = np.array([[[[1, 0], [0, -1]]]], I)                 # x[y,x] - x[y+1,x+1]
    assert ops.conv(a, w).tolist() == [[[[-4, -4], [-4, -4]]]]
    g = np.array([[[[1, 2], [3, 4]]]], I)
    # conv_t(g)[Y,X] = sum_ij g[Y-i, X-j] w[i,j]
    assert ops.conv_t(g, w).tolist() == [[[[1, 2, 0], [3, 3, -2], [0, -3, -4]]]]
    assert ops.weight_grad(a, g, 2).tolist() == [[[[0 + 2 + 9 + 16, 1 + 4 + 12 + 20],
                                                   [3 + 8 + 18 + 28, 4 + 10 + 21 + 32]]]]


def test_pooling_hand_computed():
    a = np.array([[[[1, 5, 2, 2], [3, 0, 2, 2], [0, 0, -1, 7], [0, 0, 7, 3]]]], I)
    assert ops.pool_sum(a, 2).tolist() == [[[[9, 8], [0, 16]]]]
    m, idx = ops.max_pool(a, 2)
    assert m.tolist() == [[[[5, 2], [0, 7]]]]
    assert idx.tolist() == [[[[1, 0], [0, 1]]]]            # first maximum in raster order
    assert ops.unpool(m, idx, 2).tolist() == [[[[0, 5, 2, 0], [0, 0, 0, 0], [0, 0, 0, 7], [0, 0, 0, 0]]]]
    assert ops.upsample(np.array([[[[1, 2]]]], I), 2).tolist() == [[[[1, 1, 2, 2], [1, 1, 2, 2]]]]


def test_round_shift_hand_computed():
    assert [int(conv.rs(I(q), 1)) for q in (5, -5, 4, -1)] == [3, -2, 2, 0]
    assert [int(conv.rs(I(q), 2)) for q in (6, 5, -6, -7)] == [2, 1, -1, -2]
    assert int(conv.rs(I(-7), 0)) == -7


# -- adjoints (exact in integers) ---------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(st.data())
def test_conv_t_is_exact_adjoint_of_conv(d):
    B, C, O, k = d.draw(st.integers(1, 2)), d.draw(st.integers(1, 3)), d.draw(st.integers(1, 3)), d.draw(st.integers(1, 4))
    H = d.draw(st.integers(k, k + 5))
    x, w = d.draw(ints((B, C, H, H))), d.draw(ints((O, C, k, k)))
    y = d.draw(ints((B, O, H - k + 1, H - k + 1)))
    assert int((ops.conv(x, w) * y).sum()) == int((x * ops.conv_t(y, w)).sum())
    assert int((ops.weight_grad(x, y, k) * w).sum()) == int((ops.conv(x, w) * y).sum())
    assert np.array_equal(ops.conv_t(y, w), ops.conv_t_reference(y, w))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_pool_transposes(d):
    p = d.draw(st.sampled_from([1, 2, 4]))
    n = p * d.draw(st.integers(1, 4))
    x, y = d.draw(ints((2, 2, n, n))), d.draw(ints((2, 2, n // p, n // p)))
    # sum pooling's adjoint is nearest-neighbour upsampling (so avg = /win, its transpose = up/win)
    assert int((ops.pool_sum(x, p) * y).sum()) == int((x * ops.upsample(y, p)).sum())
    xf, yf = x.astype(float), y.astype(float)
    avg = ops.pool_sum(xf, p) / p**2
    assert np.isclose((avg * yf).sum(), (xf * ops.upsample(yf, p) / p**2).sum())
    # unpool is the adjoint of selecting the max-pool positions
    m, idx = ops.max_pool(x, p)
    sel = ops._windows(x, p)
    picked = np.take_along_axis(sel, idx[..., None], -1)[..., 0]
    assert np.array_equal(picked, m)
    assert int((picked * y).sum()) == int((x * ops.unpool(y, idx, p)).sum())


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_pooled_convolutions_equal_pooling_after_convolution(d):
    """The stride-p forms the models use are exactly pool_sum(conv) and conv_t(upsample)."""
    p, k = d.draw(st.sampled_from([1, 2, 4])), d.draw(st.integers(1, 5))
    B, C, O = d.draw(st.integers(1, 2)), d.draw(st.integers(1, 3)), d.draw(st.integers(1, 3))
    H = k - 1 + p * d.draw(st.integers(1, 3))
    x, w = d.draw(ints((B, C, H, H))), d.draw(ints((O, C, k, k)))
    y = d.draw(ints((B, O, (H - k + 1) // p, (H - k + 1) // p)))
    assert np.array_equal(ops.pooled_conv(x, w, p), ops.pool_sum(ops.conv(x, w), p))
    assert np.array_equal(ops.upsampled_conv_t(y, w, p), ops.conv_t(ops.upsample(y, p), w))
    big = np.full((1, 1, 2 * p + k - 1, 2 * p + k - 1), 1 << 20, I)   # past float32's exact range
    assert np.array_equal(ops.pooled_conv(big, w[:, :1], p), ops.pool_sum(ops.conv(big, w[:, :1]), p))


def test_network_interaction_is_symmetric():
    """The drives are the gradient of one energy: <H a, b> == <a, H b> (avg and max pooling)."""
    rng = np.random.default_rng(0)
    for pooling in ("avg", "max"):
        c = replace(TINY, pooling=pooling)
        fp = cf.FParams.from_int(conv.init_params(c), c)
        a = [rng.random((2,) + ly.out_shape) for ly in c.layers]
        b = [rng.random((2,) + ly.out_shape) for ly in c.layers]
        ha, idx = cf.interact(a, fp, c)
        hb, _ = cf.interact(b, fp, c, idx)
        ha2, _ = cf.interact(a, fp, c, idx)
        assert np.isclose(sum((u * v).sum() for u, v in zip(ha2, b)), sum((u * v).sum() for u, v in zip(a, hb)))


def test_fixed_weights_drive_as_the_weights_and_follow_each_update(monkeypatch):
    """``fixed`` precomputes the pooled kernels for one batch's phases: the drives are those of
    the weights themselves, and successive training steps equal steps whose kernels are made
    anew at every use."""
    rng = np.random.default_rng(1)
    c = TINY
    p = conv.init_params(c)
    st = conv.State.zeros(2, c)
    st.s = [rng.integers(0, 2, (2,) + ly.out_shape) for ly in c.layers]
    d = np.zeros((2,) + c.layers[0].out_shape, I)
    plain, cached = conv.drives(st, d, p, c)[0], conv.drives(st, d, p.fixed(c), c)[0]
    assert all(np.array_equal(a, b) for a, b in zip(plain, cached))
    assert p.fixed(replace(c, pooling="max")) is p
    X, y = _images(4)
    fixed, anew = cf.FParams.from_int(p, c), cf.FParams.from_int(p, c)
    for batch in (slice(0, 2), slice(2, 4)):
        cf.train_batch(X[batch], y[batch], fixed, c)
    monkeypatch.setattr(cf.FParams, "fixed", lambda self, c: self)
    for batch in (slice(0, 2), slice(2, 4)):
        cf.train_batch(X[batch], y[batch], anew, c)
    assert all(np.array_equal(a, b) for a, b in zip(fixed.w + fixed.b, anew.w + anew.b))


# -- integer network semantics ------------------------------------------------------------
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
    assert np.array_equal(conv.quantize_input(X, c), conv.quantize_input(bordered, big))
    assert np.array_equal(cf.float_input(X, c), cf.float_input(bordered, big))
    p = conv.init_params(c)
    padded, explicit = conv.infer(X, p, c), conv.infer(bordered, p, big)
    assert np.array_equal(padded.spike_counts, explicit.spike_counts)
    assert np.array_equal(padded.prediction, explicit.prediction)
    fp = cf.FParams.from_int(p, c)
    assert np.array_equal(cf.infer(X, fp, c), cf.infer(bordered, fp, big))
    with pytest.raises(ValueError, match="expects"):
        conv.quantize_input(bordered, c)      # the border is the model's, not the caller's


def test_input_drive_and_first_step_semantics():
    c = TINY
    p = conv.init_params(c)
    p.b[0][:] = 7
    X, _ = _images(2)
    x = conv.quantize_input(X, c)
    assert x.shape == (2, 1, 14, 14) and x.max() <= 255
    d, idx = conv.input_drive(x, p, c)
    q = ops.conv(x, p.w[0])
    assert idx is None
    assert np.array_equal(d, (ops.pool_sum(q, 2) + (1 << (c.pool_shift + c.input_shift - 1)))
                          >> (c.pool_shift + c.input_shift))
    st0 = conv.State.zeros(2, c)
    st1 = conv.step(st0, d, p, c)
    # no spikes yet: layer 1 sees input drive + bias only, the others their bias (0)
    assert np.array_equal(st1.v[0], neuron.membrane_step(np.zeros_like(d), d + 7, c))
    assert all((v == 0).all() for v in st1.v[1:])
    st2 = conv.step(st1, d, p, c)
    ff, _ = conv.feedforward(1, st1.s[0], p, c)
    assert np.array_equal(ff, conv.rs(ops.pool_sum(ops.conv(st1.s[0], p.w[1]), 2), 2))
    assert np.array_equal(st2.v[1], neuron.membrane_step(st1.v[1], ff + p.b[1][:, None, None], c))


def test_max_pooling_feedback_routes_to_the_window_maximum():
    c = replace(TINY, pooling="max")
    p = conv.init_params(c)
    rng = np.random.default_rng(1)
    s0 = rng.integers(0, 2, (1,) + c.layers[0].out_shape)
    ff, idx = conv.feedforward(1, s0, p, c)
    s1 = np.ones((1,) + c.layers[1].out_shape, I)
    fb = conv.feedback(0, s1, idx, p, c)
    assert np.array_equal(fb, ops.conv_t(ops.unpool(s1, idx, 2), p.w[1]))


def test_update_zero_when_phases_agree_and_saturates():
    c = TINY
    p = conv.init_params(c)
    X, _ = _images(2)
    x = conv.quantize_input(X, c)
    R = [np.full((2,) + ly.out_shape, 100, I) for ly in c.layers]
    before = p.copy()
    s = conv.seeded_streams(c)
    conv.update(p, x, R, [None] * 4, R, [None] * 4, c, s)
    assert all(np.array_equal(a, b) for a, b in zip(p.w + p.b, before.w + before.b))
    assert s != conv.seeded_streams(c)                      # draws were consumed all the same
    Rn = [r + 50 for r in R]
    p.w[3][:] = c.weight_range[1]
    conv.update(p, x, R, [None] * 4, Rn, [None] * 4, replace(c, w_shifts=(0, 0, 0, 0), b_shifts=(0, 0, 0, 0)), s)
    assert p.w[3].max() == c.weight_range[1] and p.w[3].min() == c.weight_range[1]
    assert (p.b[3] == 2 * 50).all()                         # sum over the batch, shift 0


def test_update_q_is_the_rate_product_difference():
    """A fully connected layer's q is Rn_pre Rn_post - Rf_pre Rf_post summed over the batch."""
    c = replace(TINY, w_shifts=(0, 0, 0, 0), b_shifts=(0, 0, 0, 0), weight_bits=14, bias_bits=16)
    p = conv.Params([np.zeros(ly.weight_shape, I) for ly in c.layers],
                    [np.zeros(ly.weight_shape[0] if ly.kind == "conv" else ly.weight_shape[1], I) for ly in c.layers])
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 1, 14, 14))
    Rf = [rng.integers(0, 256, (2,) + ly.out_shape) for ly in c.layers]
    Rn = [rng.integers(0, 256, (2,) + ly.out_shape) for ly in c.layers]
    conv.update(p, x, Rf, [None] * 4, Rn, [None] * 4, c, conv.seeded_streams(c))
    q = Rn[2].T @ Rn[3] - Rf[2].T @ Rf[3]
    assert np.array_equal(p.w[3], np.clip(q, *c.weight_range))
    qb = (Rn[0] - Rf[0]).sum(axis=(0, 2, 3))
    assert np.array_equal(p.b[0], np.clip(qb, *c.bias_range))


def test_phase_rates_are_the_rounded_mean_of_the_last_steps():
    c = replace(TINY, average_steps=4, nudge_steps=6)
    p = conv.init_params(c)
    X, y = _images(2)
    x = conv.quantize_input(X, c)
    d, i0 = conv.input_drive(x, p, c)
    st = conv.run_phase(conv.State.zeros(2, c, i0), d, p, c, 10)
    target = np.eye(c.outputs, dtype=I)[y]
    end, R = conv.run_phase_mean(st, d, p, c, 6, target, 1)
    sums, s = [0] * c.n_layers, st
    for k in range(6):
        s = conv.step(s, d, p, c, target, 1)
        if k >= 2:
            sums = [a + b for a, b in zip(sums, s.rates(c))]
    assert all(np.array_equal(a, (b + 2) >> 2) for a, b in zip(R, sums))
    assert all(np.array_equal(a, b) for a, b in zip(end.v, s.v))
    one = replace(c, average_steps=1)
    assert all(np.array_equal(a, b) for a, b in zip(conv.run_phase_mean(st, d, p, one, 6, target, 1)[1],
                                                       s.rates(c)))


@pytest.mark.parametrize("from_free", [False, True])
def test_train_batch_updates_with_the_phases_the_config_names(from_free):
    """The update compares the +beta phase with the -beta phase started from the free state
    (``minus_from_free``) or from the +beta state, each with its averaged rates."""
    c = replace(TINY, average_steps=2, minus_from_free=from_free, free_steps=10, nudge_steps=4)
    p = conv.init_params(c)
    X, y = _images(2)
    got = p.copy()
    s1 = conv.seeded_streams(c)
    conv.train_batch(X, y, got, c, s1)
    x = conv.quantize_input(X, c)
    d, i0 = conv.input_drive(x, p, c)
    st = conv.run_phase(conv.State.zeros(2, c, i0), d, p, c, 10)
    target = np.eye(c.outputs, dtype=I)[y]
    plus, Rn = conv.run_phase_mean(st, d, p, c, 4, target, 1)
    ref, Rf = conv.run_phase_mean(st if from_free else plus, d, p, c, 4, target, -1)
    want = p.copy()
    s2 = conv.seeded_streams(c)
    conv.update(want, x, Rf, ref.idx, Rn, plus.idx, c, s2)
    assert s1 == s2
    assert all(np.array_equal(a, b) for a, b in zip(got.w + got.b, want.w + want.b))
    assert any(not np.array_equal(a, b) for a, b in zip(got.w, p.w))


# -- float reference: EP against BPTT, integer agreement -----------------------------------
@pytest.mark.parametrize("from_free, average", [(False, 1), (True, 64)])
def test_ep_matches_bptt_with_average_pooling(from_free, average):
    c = replace(TINY, leak_shift=2, minus_from_free=from_free, average_steps=average, free_steps=400,
                nudge_steps=400)
    X, y = _images(4)
    fp = cf.FParams.from_int(conv.init_params(c), c)
    x = cf.float_input(X, c)
    ref, _, _, _ = cf.bptt_grad(x, y, fp, c, steps=400)
    est, _, _ = cf.ep_estimate(x, y, fp, c, spiking=False, free_steps=400, nudge_steps=400, beta=0.01)
    for a, b in zip(ref, est):
        assert (a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.2


def test_bptt_matches_finite_differences():
    c = TINY
    X, y = _images(2)
    fp = cf.FParams.from_int(conv.init_params(c), c)
    x = cf.float_input(X, c)
    gw, _, _, _ = cf.bptt_grad(x, y, fp, c, steps=20)
    _assert_matches_finite_differences(gw, lambda q: cf.bptt_grad(x, y, q, c, steps=20)[2], fp,
                                       ((0, (1, 0, 1, 2)), (1, (2, 3, 0, 1)), (2, (5, 3)), (3, (4, 7))),
                                       rtol=1e-3, atol=1e-7)


def _assert_matches_finite_differences(gw, loss, fp, entries, rtol, atol, e=1e-6):
    """Each ``gw[l][i]`` for ``(l, i)`` in ``entries`` equals the central difference of ``loss``."""
    for l, i in entries:
        f = []
        for sgn in (1, -1):
            q = fp.copy(); q.w[l][i] += sgn * e
            f.append(loss(q))
        assert np.isclose(gw[l][i], (f[0] - f[1]) / (2 * e), rtol=rtol, atol=atol)


def _middle_entries(fp):
    return [(l, tuple(s // 2 for s in w.shape)) for l, w in enumerate(fp.w)]


def test_bptt_unmasked_output_error_matches_finite_differences_and_predicts_as_infer():
    c = replace(TINY, free_steps=20)
    X, y = _images(3)
    fp = cf.FParams.from_int(conv.init_params(c), c)
    x = cf.float_input(X, c)
    gw, _, _, pred = cf.bptt_grad(x, y, fp, c, mask_output=False)
    assert np.array_equal(pred, cf.infer(X, fp, c, dtype=np.float64))
    vT = _free_output_membranes(x, fp, c)
    err = np.clip(vT, 0, 1) - np.eye(c.outputs)[y]

    def loss(q):   # the error held fixed meets the output membranes directly
        return float(np.sum(err * _free_output_membranes(x, q, c)))
    _assert_matches_finite_differences(gw, loss, fp, _middle_entries(fp), rtol=1e-3, atol=1e-7)


def _free_output_membranes(x, p, c):
    d, idx0 = cf.input_drive(x, p, c)
    st = cf.run_phase(cf.FState.zeros(len(x), c, idx0, x.dtype), d, p, c, c.free_steps, False)
    return st.v[-1]


def test_integer_and_float_spiking_networks_agree():
    """Same weights: the integer spiking free phase and the float spiking one (no rounding)
    end with close rates; stated tolerance: mean |difference| < 0.03 of the rate range."""
    c = replace(TINY, leak_shift=3, membrane_frac_bits=6, weight_frac_bits=9, free_steps=200, drive_bits=24,
                membrane_bits=28)
    X, _ = _images(8)
    p = conv.init_params(c)
    r_int = conv.infer(X, p, c).state.rates(c)
    fp = cf.FParams.from_int(p, c)
    x = cf.float_input(X, c)
    d, i0 = cf.input_drive(x, fp, c)
    stf = cf.run_phase(cf.FState.zeros(8, c, i0), d, fp, c, c.free_steps, spiking=True)
    for ri, rf in zip(r_int, stf.rates()):
        assert np.abs(ri / 2**c.rate_bits - rf).mean() < 0.03


# -- training -----------------------------------------------------------------------------
SMALL = replace(TINY, conv_channels=(4, 8), w_init=(600, 60, 60, 120), w_shifts=(13, 13, 12, 11),
                b_shifts=(11, 11, 9, 9), free_steps=24, nudge_steps=8, batch_size=8)


def test_resume_is_bit_exact_and_checksummed(tmp_path):
    X, y = _images(32)
    run = conv_train.fresh(SMALL, "int")
    for i in range(0, 32, 8):
        conv_train.train_step(run, SMALL, X[i:i + 8], y[i:i + 8])
    ck = conv_train.fresh(SMALL, "int")
    for i in range(0, 16, 8):
        conv_train.train_step(ck, SMALL, X[i:i + 8], y[i:i + 8])
    ck.position = 16
    conv_train.save(ck, tmp_path / "a.npz")
    back = conv_train.load(tmp_path / "a.npz", SMALL, "int")
    assert back.position == 16 and back.streams == ck.streams
    for i in range(16, 32, 8):
        conv_train.train_step(back, SMALL, X[i:i + 8], y[i:i + 8])
    assert all(np.array_equal(a, b) for a, b in zip(back.params.w + back.params.b, run.params.w + run.params.b))
    raw = bytearray((tmp_path / "a.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "b.npz").write_bytes(bytes(raw))
    with pytest.raises(conv_train.ConvCheckpointError):
        conv_train.load(tmp_path / "b.npz")
    with pytest.raises(conv_train.ConvCheckpointError, match=r"not 'tiny' \(they differ in w_shifts, seed\)"):
        conv_train.load(tmp_path / "a.npz", replace(SMALL, seed=2, w_shifts=(15, 15, 14, 13)))


def test_checkpoint_keeps_extra_arrays_under_its_checksum(tmp_path):
    ck = conv_train.fresh(SMALL, "int")
    ck.extra = {"m0": np.arange(6.0, dtype=np.float32).reshape(2, 3), "t": np.array(7)}
    conv_train.save(ck, tmp_path / "x.npz")
    back = conv_train.load(tmp_path / "x.npz", SMALL, "int")
    assert back.extra.keys() == {"m0", "t"} and int(back.extra["t"]) == 7
    assert back.extra["m0"].dtype == np.float32 and np.array_equal(back.extra["m0"], ck.extra["m0"])
    assert all(np.array_equal(a, b) for a, b in zip(back.params.w, ck.params.w))
    assert conv_train.load(tmp_path / "x.npz").extra["m0"].shape == (2, 3)


def test_shipped_integer_network_learns_mnist():
    """30 updates of the shipped conv_mnist (480 samples) lift test accuracy well above chance
    (measured 33%; with end-of-phase rates and -beta from +beta it stayed at 13%)."""
    from eqfpga.conv_config import load_conv_config
    c = load_conv_config("conv_mnist")
    tr, te = data.load("train"), data.load("test")
    order = conv_train.epoch_order(c, 0, 480)
    p, streams = conv.init_params(c), conv.seeded_streams(c)
    for i in range(0, 480, c.batch_size):
        idx = order[i:i + c.batch_size]
        conv.train_batch(tr.images[idx], tr.labels[idx], p, c, streams)
    assert conv.accuracy(te.images[:300], te.labels[:300], p, c) > 0.25


def test_float_spiking_mode_trains_with_spikes_and_keeps_its_mode(tmp_path):
    X, y = _images(16)
    ck = conv_train.fresh(SMALL, "float-spiking")
    rate = conv_train.fresh(SMALL, "float")
    conv_train.train_step(ck, SMALL, X[:8], y[:8])
    conv_train.train_step(rate, SMALL, X[:8], y[:8])
    assert any(not np.allclose(a, b) for a, b in zip(ck.params.w, rate.params.w))
    conv_train.save(ck, tmp_path / "s.npz")
    assert conv_train.load(tmp_path / "s.npz").mode == "float-spiking"
    with pytest.raises(conv_train.ConvCheckpointError, match="trained in float-spiking mode, not float"):
        conv_train.load(tmp_path / "s.npz", SMALL, "float")
    with pytest.raises(ValueError, match="mode must be one of"):
        conv_train.fresh(SMALL, "double")


@pytest.mark.parametrize("shift_pixels, mirror_images", [(0, False), (2, False), (0, True)])
def test_fit_stops_and_resumes(tmp_path, shift_pixels, mirror_images):
    import eqfpga.golden.conv_train as ct

    small = replace(SMALL, image_size=28, conv_channels=(2, 2), fc_hidden=(8,), kernel=5, batch_size=16,
                    free_steps=4, nudge_steps=2, w_init=(400, 60, 60, 120), shift_pixels=shift_pixels,
                    mirror_images=mirror_images)
    ck = ct.fit(small, tmp_path, 1, mode="int", train_samples=64, test_samples=32, max_seconds=0.0,
                progress=False, log=lambda *a: None)
    assert ck.epoch == 0 and ck.position == 16
    ck = ct.fit(small, tmp_path, 1, mode="int", resume=True, train_samples=64, test_samples=32,
                progress=False, log=lambda *a: None)
    assert ck.epoch == 1 and (tmp_path / "history.json").is_file()
    ref = ct.fit(small, tmp_path / "ref", 1, mode="int", train_samples=64, test_samples=32,
                 progress=False, log=lambda *a: None)
    assert all(np.array_equal(a, b) for a, b in zip(ck.params.w, ref.params.w))
    if shift_pixels or mirror_images:   # the changed images are what it learned from
        plain = ct.fit(replace(small, shift_pixels=0, mirror_images=False), tmp_path / "plain", 1, mode="int", train_samples=64,
                       test_samples=32, progress=False, log=lambda *a: None)
        assert any(not np.array_equal(a, b) for a, b in zip(ck.params.w, plain.params.w))


def test_epoch_augmentation_covers_the_range_and_depends_on_seed_and_epoch():
    c = replace(SMALL, shift_pixels=2, mirror_images=True)
    a = conv_train.epoch_augmentation(c, 3, 5000)
    assert a.shifts.shape == (5000, 2) and set(np.unique(a.shifts)) == {-2, -1, 0, 1, 2}
    assert a.mirrors.shape == (5000,) and 2200 < a.mirrors.sum() < 2800
    for other, same in ((c, True), (replace(c, mirror_images=False), True), (replace(c, seed=2), False)):
        b = conv_train.epoch_augmentation(other, 3, 5000)
        assert np.array_equal(a.shifts, b.shifts) == same   # mirrors leave the shifts as they were
    assert not np.array_equal(a.shifts, conv_train.epoch_augmentation(c, 4, 5000).shifts)
    assert not np.array_equal(a.mirrors, conv_train.epoch_augmentation(c, 4, 5000).mirrors)
    assert conv_train.epoch_augmentation(SMALL, 3, 5000) == (None, None)


def test_batch_images_mirror_before_the_shift():
    split = data.load("test").take(8)
    c = replace(SMALL, shift_pixels=3, mirror_images=True)
    order = np.arange(8)[::-1]
    a = conv_train.epoch_augmentation(c, 0, 8)
    images, labels = conv_train.batch_images(split, order, a, 2, 4)
    assert np.array_equal(labels, split.labels[order[2:6]])
    want = data.translate(data.mirror(split.images[order[2:6]], a.mirrors[2:6]), a.shifts[2:6])
    assert np.array_equal(images, want)
    plain, _ = conv_train.batch_images(split, order, conv_train.Augmentation(None, None), 2, 4)
    assert np.array_equal(plain, split.images[order[2:6]])


@pytest.mark.parametrize("shift", [3, 17, 18, 21])
def test_update_rounding_is_unbiased_beyond_the_lfsr_bits(shift):
    # over the LFSR's whole period the draws are uniform: the mean of the rounded update is
    # q / 2**shift, and every result is the floor or the ceiling of it
    d, _ = lfsr.draws(0, lfsr.PERIOD)
    for q in (-(5 << shift) - 12345, 7, (3 << shift) + (1 << (shift - 1)) + 1):
        r = conv.round_update(np.full(d.shape, q, np.int64), shift, d)
        lo = q >> shift
        assert set(np.unique(r)) <= {lo, lo + 1}
        assert abs(r.mean() - q / 2 ** shift) < 2 ** -15


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("mask_output", [True, False])
def test_feedforward_grad_matches_finite_differences(pooling, mask_output):
    c = replace(TINY, pooling=pooling)
    X, y = _images(3)
    fp = cf.FParams.from_int(conv.init_params(c), c)
    fp.b[2][:] = 0.3   # some hidden units inside (0, 1) so every layer's gradient is non-zero
    x = cf.float_input(X, c)
    gw, gb, _, _ = cf.feedforward_grad(x, y, fp, c, mask_output)
    t = np.eye(c.outputs)[y]
    err = cf.feedforward(x, fp, c)[0][-1] - t

    def loss(q):
        r, z, _ = cf.feedforward(x, q, c)
        # unmasked: the error is held fixed and meets the output's pre-activation directly
        return 0.5 * np.sum((r[-1] - t) ** 2) if mask_output else np.sum(err * z[-1])
    _assert_matches_finite_differences(gw, loss, fp, _middle_entries(fp), rtol=1e-4, atol=1e-8)
    assert all(np.abs(g).sum() > 0 for g in gw)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_feedforward_grad_of_cross_entropy_matches_finite_differences(pooling):
    c = replace(TINY, pooling=pooling)
    X, y = _images(3)
    fp = cf.FParams.from_int(conv.init_params(c), c)
    fp.b[2][:] = 0.3
    x = cf.float_input(X, c)
    gw, gb, value, _ = cf.feedforward_grad(x, y, fp, c, loss="ce")

    def loss(q):
        z = cf.feedforward(x, q, c)[1][-1]
        return float(np.sum(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))
    assert np.isclose(value, loss(fp))
    _assert_matches_finite_differences(gw, loss, fp, _middle_entries(fp), rtol=1e-4, atol=1e-8)
    assert all(np.abs(g).sum() > 0 for g in gw)


def test_feedforward_accuracy_scores_the_feedforward_predictions():
    c = TINY
    X, _ = _images(5)
    fp = cf.FParams.from_int(conv.init_params(c), c, np.float32)
    pred = np.argmax(cf.feedforward(cf.float_input(X, c, np.float32), fp, c)[1][-1], axis=1)
    assert cf.feedforward_accuracy(X, pred, fp, c, batch=2) == 1.0
    assert cf.feedforward_accuracy(X, (pred + 1) % c.outputs, fp, c) == 0.0


def test_feedforward_grad_refuses_an_unknown_loss():
    c = TINY
    X, y = _images(1)
    with pytest.raises(ValueError, match="loss must be one of mse, ce"):
        cf.feedforward_grad(cf.float_input(X, c), y, cf.FParams.from_int(conv.init_params(c), c), c, loss="l1")


def test_branch_carries_weights_and_history_into_a_new_configuration(tmp_path):
    ct = conv_train
    small = replace(SMALL, image_size=28, conv_channels=(2, 2), fc_hidden=(8,), kernel=5, batch_size=16,
                    free_steps=4, nudge_steps=2, w_init=(400, 60, 60, 120))
    quiet = dict(mode="int", train_samples=32, test_samples=16, progress=False, log=lambda *a: None)
    first = ct.fit(small, tmp_path / "a", 1, **quiet)
    slower = replace(small, name="slower", w_shifts=tuple(s + 2 for s in small.w_shifts), nudge_steps=3)
    ck = ct.fit(slower, tmp_path / "b", 2, branch_from=tmp_path / "a" / "epoch001.npz", **quiet)
    assert ck.epoch == 2 and ck.history[0] == first.history[0] and len(ck.history) == 2
    assert ck.meta["branches"] == [{"from": str(tmp_path / "a" / "epoch001.npz"), "config": small.name,
                                    "model_hash": small.model_hash, "epoch": 1}]
    # the branch trained epoch 2 with its own rule, from the first run's weights
    manual = ct.load(tmp_path / "a" / "epoch001.npz")
    tr = data.load("train").take(32)
    order = ct.epoch_order(slower, 1, 32)
    for i in range(0, 32, 16):
        ct.train_step(manual, slower.at_epoch(1), tr.images[order[i:i + 16]], tr.labels[order[i:i + 16]])
    assert all(np.array_equal(a, b) for a, b in zip(manual.params.w, ck.params.w))
    assert ct.load(tmp_path / "b" / "last.npz", slower, "int").meta["branches"][0]["epoch"] == 1
    with pytest.raises(ct.ConvCheckpointError, match=r"do not fit configuration 'wide' \(they differ in fc_hidden\)"):
        ct.branch(tmp_path / "a" / "epoch001.npz", replace(small, name="wide", fc_hidden=(9,)), "int")
    as_float = ct.branch(tmp_path / "a" / "epoch001.npz", small, "float")   # converted: the same real weights
    assert as_float.mode == "float" and as_float.meta["converted"][0]["mode"] == "int"
    assert all(np.array_equal(f, i * 2.0 ** -small.weight_frac_bits) for f, i in zip(as_float.params.w, first.params.w))
    ct.fit(small, tmp_path / "c", 1, max_seconds=0.0, **quiet)
    with pytest.raises(ct.ConvCheckpointError, match="middle of epoch 1"):
        ct.branch(tmp_path / "c" / "last.npz", small, "int")
    with pytest.raises(ValueError, match="not both"):
        ct.fit(small, tmp_path / "a", 2, resume=True, branch_from=tmp_path / "a" / "epoch001.npz", **quiet)


@pytest.mark.parametrize("mode", ["int", "float"])
def test_average_is_the_elementwise_mean_rounded_half_up(tmp_path, mode):
    ct = conv_train
    rng = np.random.default_rng(3)
    cks, paths = [], []
    for k in range(3):
        ck = ct.fresh(TINY, mode)
        lo, hi = TINY.weight_range
        if mode == "int":
            ck.params = conv.Params([rng.integers(lo, hi + 1, w.shape) for w in ck.params.w],
                                    [rng.integers(-5, 6, b.shape) for b in ck.params.b])
        else:
            ck.params = cf.FParams([rng.standard_normal(w.shape).astype(np.float32) for w in ck.params.w],
                                   [rng.standard_normal(b.shape).astype(np.float32) for b in ck.params.b])
        ck.epoch = k + 1
        cks.append(ck)
        paths.append(ct.save(ck, tmp_path / f"epoch{k + 1:03d}.npz"))
    for n in (1, 2, 3):
        mean = ct.average(paths[:n])
        assert mean.mode == mode and mean.epoch == n
        assert [s["epoch"] for s in mean.meta["averaged"]] == list(range(1, n + 1))
        for i in range(TINY.n_layers):
            for got, parts in ((mean.params.w[i], [c.params.w[i] for c in cks[:n]]),
                               (mean.params.b[i], [c.params.b[i] for c in cks[:n]])):
                assert got.dtype == parts[0].dtype
                exact = np.sum(np.asarray(parts, np.float64), axis=0) / n
                if mode == "int":
                    assert np.array_equal(got, np.floor(exact + 0.5))   # thirds and halves round up
                else:
                    assert np.allclose(got, exact, atol=1e-6)
    if mode == "int":
        mean.params.check(TINY)
    again = ct.load(ct.save(ct.average(paths), tmp_path / "mean.npz"), TINY, mode)
    assert all(np.array_equal(a, b) for a, b in zip(again.params.w, ct.average(paths).params.w))


def test_average_refuses_other_modes_and_networks(tmp_path):
    ct = conv_train
    a = ct.save(ct.fresh(TINY, "int"), tmp_path / "a.npz")
    b = ct.save(ct.fresh(TINY, "float"), tmp_path / "b.npz")
    wide = ct.save(ct.fresh(replace(TINY, name="wide", fc_hidden=(17,)), "int"), tmp_path / "wide.npz")
    faster = ct.save(ct.fresh(replace(TINY, name="faster", w_shifts=(9, 9, 9, 9)), "int"), tmp_path / "f.npz")
    with pytest.raises(ct.ConvCheckpointError, match="trained in float mode, not int"):
        ct.average([b, a])
    with pytest.raises(ct.ConvCheckpointError, match=r"differ in fc_hidden"):
        ct.average([wide, a])
    assert ct.average([faster, a]).config == TINY   # another learning rule, the same weights' format
    with pytest.raises(ValueError, match="at least one"):
        ct.average([])


def test_convert_keeps_real_weights_and_rounds_into_the_integer_formats():
    ct = conv_train
    rng = np.random.default_rng(5)
    fine = replace(TINY, name="fine", weight_bits=TINY.weight_bits + 2, weight_frac_bits=TINY.weight_frac_bits + 2,
                   bias_bits=TINY.bias_bits + 2)
    ck = ct.fresh(fine, "int")
    lo, hi = fine.weight_range
    ck.params = conv.Params([rng.integers(lo, hi + 1, w.shape) for w in ck.params.w],
                            [rng.integers(-9, 10, b.shape) for b in ck.params.b])
    ck.params.w[0].flat[:3] = [hi, lo, 2]   # rounds past TINY's top (saturates), its bottom, half its LSB (up)
    as_float = ct.convert(ck, fine, "float")
    assert all(np.array_equal(f, i * 2.0 ** -fine.weight_frac_bits) for f, i in zip(as_float.params.w, ck.params.w))
    coarse = ct.convert(as_float, TINY, "int", "f.npz")
    exact = [np.floor(w / 4 + 0.5) for w in ck.params.w]
    tlo, thi = TINY.weight_range
    assert all(np.array_equal(q, np.clip(e, tlo, thi)) for q, e in zip(coarse.params.w, exact))
    assert coarse.params.w[0].flat[2] == 1
    coarse.params.check(TINY)
    assert coarse.meta["converted"][-1] == {"from": "f.npz", "mode": "float", "config": "fine",
                                            "saturated": sum(int(np.count_nonzero((e < tlo) | (e > thi))) for e in exact)}
    assert coarse.meta["converted"][-1]["saturated"] >= 1 and coarse.params.w[0].flat[1] == tlo
    same = ct.convert(ck, fine, "int")   # a round trip in one format changes nothing
    assert all(np.array_equal(a, b) for a, b in zip(same.params.w + same.params.b, ck.params.w + ck.params.b))
    with pytest.raises(ct.ConvCheckpointError, match="differ in fc_hidden"):
        ct.convert(ck, replace(TINY, name="wide", fc_hidden=(17,)), "float")
    with pytest.raises(ValueError, match="mode must be one of"):
        ct.convert(ck, TINY, "analog")
