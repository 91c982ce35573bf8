"""golden/conv_float.py: the float reference's energy, its EP estimate against BPTT and finite
differences, and its agreement with the integer network."""

from dataclasses import replace

import numpy as np
import pytest

from eqfpga import data
from eqfpga.config import Config, Dense
from eqfpga.golden import conv_float as cf, network

I = np.int64
TINY = Config.convolutional("tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                            w_init=(700, 100, 150, 250), batch_size=8)
#: per-layer pooling and kernels: 14 -> conv3 12 -> avg 6 -> conv5 2 -> max 1
MIXED = replace(TINY, name="mixed", layers=(TINY.layers[0], replace(TINY.layers[1], kernel=5, pooling="max"),
                                             *TINY.layers[2:]))
#: fully connected from the image on: 196 -> 24 -> 16 -> 10
DENSE = replace(TINY, name="dense", layers=(Dense(24, w_shift=16, b_shift=12, w_init=300),
                                             Dense(16, w_shift=15, b_shift=10, w_init=200),
                                             Dense(10, w_shift=14, b_shift=10, w_init=250)))


def _images(n, size=14, offset=0):
    tr = data.load("train")
    return data.downsample(tr.images[offset:offset + n], size), tr.labels[offset:offset + n].astype(I)


@pytest.mark.parametrize("c", [TINY, replace(TINY, pooling="max"), MIXED, DENSE], ids=["avg", "max", "mixed", "dense"])
def test_network_interaction_is_symmetric(c):
    """The drives are the gradient of one energy: <H a, b> == <a, H b>."""
    rng = np.random.default_rng(0)
    fp = cf.FParams.from_int(network.init_params(c), c)
    a = [rng.random((2,) + ly.out_shape) for ly in c.geometry]
    b = [rng.random((2,) + ly.out_shape) for ly in c.geometry]
    ha, idx = cf.interact(a, fp, c)
    hb, _ = cf.interact(b, fp, c, idx)
    ha2, _ = cf.interact(a, fp, c, idx)
    assert np.isclose(sum((u * v).sum() for u, v in zip(ha2, b)), sum((u * v).sum() for u, v in zip(a, hb)))


def test_fixed_weights_follow_each_update(monkeypatch):
    """Successive training steps with the pooled kernels made once per batch equal steps
    whose kernels are made anew at every use."""
    c = TINY
    p = network.init_params(c)
    X, y = _images(4)
    fixed, anew = cf.FParams.from_int(p, c), cf.FParams.from_int(p, c)
    for batch in (slice(0, 2), slice(2, 4)):
        cf.train_batch(X[batch], y[batch], fixed, c)
    monkeypatch.setattr(cf.FParams, "fixed", lambda self, c: self)
    for batch in (slice(0, 2), slice(2, 4)):
        cf.train_batch(X[batch], y[batch], anew, c)
    assert all(np.array_equal(a, b) for a, b in zip(fixed.w + fixed.b, anew.w + anew.b))


@pytest.mark.parametrize("c", [TINY, MIXED, DENSE], ids=["avg", "mixed", "dense"])
def test_input_drive_is_the_integer_drive_in_real_units(c):
    """The integer drive rounds the real one to a drive unit (``2**-weight_frac_bits``)."""
    X, _ = _images(3)
    p = network.init_params(c)
    d_int, idx_int = network.input_drive(network.quantize_input(X, c), p, c)
    d, idx = cf.input_drive(cf.float_input(X, c), cf.FParams.from_int(p, c), c)
    assert d.shape == d_int.shape == (3,) + c.geometry[0].out_shape and idx is idx_int is None
    assert np.abs(d - d_int * 2.0 ** -c.weight_frac_bits).max() <= 2.0 ** -c.weight_frac_bits
    assert np.abs(d_int).max() > 0


# -- float reference: EP against BPTT, integer agreement -----------------------------------
@pytest.mark.parametrize("from_free, average", [(False, 1), (True, 64)])
def test_ep_matches_bptt_with_average_pooling(from_free, average):
    c = replace(TINY, leak_shift=2, minus_from_free=from_free, average_steps=average, free_steps=400,
                nudge_steps=400)
    X, y = _images(4)
    fp = cf.FParams.from_int(network.init_params(c), c)
    x = cf.float_input(X, c)
    ref, _, _, _ = cf.bptt_grad(x, y, fp, c, steps=400)
    est, _, _ = cf.ep_estimate(x, y, fp, c, spiking=False, free_steps=400, nudge_steps=400, beta=0.01)
    for a, b in zip(ref, est):
        assert (a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.2


def test_ep_matches_bptt_in_a_dense_network():
    c = replace(DENSE, free_steps=400, nudge_steps=400)
    X, y = _images(4)
    fp = cf.FParams.from_int(network.init_params(c), c)
    fp.b[0][:] = 0.3
    x = cf.float_input(X, c)
    ref, _, _, _ = cf.bptt_grad(x, y, fp, c, steps=400)
    est, _, _ = cf.ep_estimate(x, y, fp, c, spiking=False, free_steps=400, nudge_steps=400, beta=0.01)
    for a, b in zip(ref, est):
        assert np.linalg.norm(a) > 0
        assert (a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.99
        assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.2


@pytest.mark.parametrize("c", [TINY, MIXED], ids=["avg", "mixed"])
def test_bptt_matches_finite_differences(c):
    X, y = _images(2)
    fp = cf.FParams.from_int(network.init_params(c), c)
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
    fp = cf.FParams.from_int(network.init_params(c), c)
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
    p = network.init_params(c)
    r_int = network.infer(X, p, c).state.rates(c)
    fp = cf.FParams.from_int(p, c)
    x = cf.float_input(X, c)
    d, i0 = cf.input_drive(x, fp, c)
    stf = cf.run_phase(cf.FState.zeros(8, c, i0), d, fp, c, c.free_steps, spiking=True)
    for ri, rf in zip(r_int, stf.rates()):
        assert np.abs(ri / 2**c.rate_bits - rf).mean() < 0.03


# -- the feed-forward network (what backprop trains) ----------------------------------------
@pytest.mark.parametrize("pooling", ["avg", "max", "mixed"])
@pytest.mark.parametrize("mask_output", [True, False])
def test_feedforward_grad_matches_finite_differences(pooling, mask_output):
    c = MIXED if pooling == "mixed" else replace(TINY, pooling=pooling)
    X, y = _images(3)
    fp = cf.FParams.from_int(network.init_params(c), c)
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
    fp = cf.FParams.from_int(network.init_params(c), c)
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
    fp = cf.FParams.from_int(network.init_params(c), c, np.float32)
    pred = np.argmax(cf.feedforward(cf.float_input(X, c, np.float32), fp, c)[1][-1], axis=1)
    assert cf.feedforward_accuracy(X, pred, fp, c, batch=2) == 1.0
    assert cf.feedforward_accuracy(X, (pred + 1) % c.outputs, fp, c) == 0.0


def test_feedforward_grad_refuses_an_unknown_loss():
    c = TINY
    X, y = _images(1)
    with pytest.raises(ValueError, match="loss must be one of mse, ce"):
        cf.feedforward_grad(cf.float_input(X, c), y, cf.FParams.from_int(network.init_params(c), c), c, loss="l1")


def test_lr_scales_follow_each_layers_pooling():
    """Average pooling divides a convolution's drive by its window, so its learning rate
    carries the window back; max pooling and dense layers do not."""
    kw_avg, kb_avg = cf.lr_scales(TINY)
    kw_mix, kb_mix = cf.lr_scales(MIXED)
    assert kw_mix[0] == kw_avg[0] and kw_mix[1] == kw_avg[1] / 4 and kw_mix[2:] == kw_avg[2:]
    assert kb_mix == kb_avg
    kw_dense, _ = cf.lr_scales(DENSE)
    assert kw_dense[0] == 2.0 ** (DENSE.input_shift + DENSE.rate_bits - 16 - DENSE.weight_frac_bits)
