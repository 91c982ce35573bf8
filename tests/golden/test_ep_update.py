"""golden/ep_update.py: stochastic rounding, the LFSR streams, and the update of every layer
kind in both draw orders."""

import copy
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from eqfpga import data
from eqfpga.config import Config
from eqfpga.golden import ep_update, lfsr, network
from eqfpga.golden.ep_update import Streams
from eqfpga.golden.network import init_params

I = np.int64
TINY = Config.convolutional("tiny", image_size=14, conv_channels=(4, 6), kernel=3, fc_hidden=(16,),
                            w_init=(700, 100, 150, 250), batch_size=8)


def test_stochastic_round_hand_computed():
    q = np.array([5, 5, -5, 0, 0])
    d = np.array([0, 3, 3, 3, 0])
    # (q + (d & 3)) >> 2
    assert list(ep_update.stochastic_round(q, 2, d)) == [1, 2, -1, 0, 0]


@given(st.integers(-1000, 1000), st.integers(1, 10))
@settings(max_examples=50)
def test_stochastic_round_is_unbiased(q, shift):
    d = np.arange(1 << shift)       # every draw value once
    r = ep_update.stochastic_round(np.full(d.shape, q), shift, d)
    assert r.sum() == q             # mean over all draws equals q / 2**shift exactly
    assert set(r) <= {q >> shift, (q >> shift) + 1}


def _reference_update(p, x, rf_h, rf_y, rn_h, rn_y, c, streams):
    """Scalar loops in the documented draw order."""
    tab = lfsr.draw_table()
    def draw(name):
        pos = getattr(streams, name)
        setattr(streams, name, (pos + 1) % lfsr.PERIOD)
        return int(tab[pos])
    def sr(q, s, d):
        return (q + (d & ((1 << s) - 1))) >> s
    wlo, whi = c.weight_range; blo, bhi = c.bias_range
    for i in range(c.inputs):
        if x[i] == 0:
            continue
        for j in range(c.hidden):
            dw = sr(int(x[i]) * int(rn_h[j] - rf_h[j]), c.w1_shift, draw("w1"))
            p.w1[i, j] = min(max(p.w1[i, j] + dw, wlo), whi)
    for k in range(c.outputs):
        for j in range(c.hidden):
            q = int(rn_h[j]) * int(rn_y[k]) - int(rf_h[j]) * int(rf_y[k])
            p.w2[j, k] = min(max(p.w2[j, k] + sr(q, c.w2_shift, draw("w2")), wlo), whi)
    for j in range(c.hidden):
        p.b1[j] = min(max(p.b1[j] + sr(int(rn_h[j] - rf_h[j]), c.b1_shift, draw("b1")), blo), bhi)
    for k in range(c.outputs):
        p.b2[k] = min(max(p.b2[k] + sr(int(rn_y[k] - rf_y[k]), c.b2_shift, draw("b2")), blo), bhi)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=10, deadline=None)
def test_vectorised_update_equals_scalar_reference(seed):
    c = Config(name="small", hidden=32)
    rng = np.random.default_rng(seed)
    p = init_params(c)
    p.w1[:] = rng.integers(-128, 128, p.w1.shape)    # saturation corners included
    p.w2[:] = rng.integers(-128, 128, p.w2.shape)
    x = rng.integers(0, 256, c.inputs) * (rng.random(c.inputs) < 0.2)
    rates = [rng.integers(0, 256, n) for n in (c.hidden, c.outputs, c.hidden, c.outputs)]
    s1 = ep_update.Streams.seeded(c); s2 = ep_update.Streams.seeded(c)
    p_ref = p.copy()
    ep_update.apply(p, x, *rates, c, s1)
    _reference_update(p_ref, x, *rates, c, s2)
    for k, v in p.arrays().items():
        np.testing.assert_array_equal(v, p_ref.arrays()[k], err_msg=k)
    assert s1 == s2


def test_no_change_when_phases_agree(small_config):
    c = small_config
    p = init_params(c); before = p.copy()
    r_h, r_y = np.full(c.hidden, 77), np.full(c.outputs, 200)
    ep_update.apply(p, np.full(c.inputs, 255), r_h, r_y, r_h, r_y, c, ep_update.Streams.seeded(c))
    for k, v in p.arrays().items():
        np.testing.assert_array_equal(v, before.arrays()[k])


def test_weights_saturate(small_config):
    c = small_config
    p = init_params(c)
    p.w1[:] = 127; p.w2[:] = -128
    zeros_h, zeros_y = np.zeros(c.hidden, int), np.zeros(c.outputs, int)
    ep_update.apply(p, np.full(c.inputs, 255), zeros_h, np.full(c.outputs, 255),
                    np.full(c.hidden, 255), zeros_y, c, ep_update.Streams.seeded(c))
    assert p.w1.max() == 127 and p.w1.min() == 127      # pushed up, held at max
    assert p.w2.min() == -128                             # pushed down, held at min


def test_hardware_order_refuses_a_batch(small_config):
    c = small_config
    p = init_params(c)
    x = np.ones((2, c.inputs), I)
    R = [np.zeros((2, n), I) for n in (c.hidden, c.outputs)]
    s = Streams.seeded(c)
    with pytest.raises(ValueError, match="update_order 'hardware' updates after every sample, got a batch of 2"):
        ep_update.update(p, x, R, [None] * 2, R, [None] * 2, c, s)
    assert s == Streams.seeded(c)


@pytest.mark.parametrize("shift", [3, 17, 18, 21])
def test_update_rounding_is_unbiased_beyond_the_lfsr_bits(shift):
    # over the LFSR's whole period the draws are uniform: the mean of the rounded update is
    # q / 2**shift, and every result is the floor or the ceiling of it
    d, _ = lfsr.draws(0, lfsr.PERIOD)
    for q in (-(5 << shift) - 12345, 7, (3 << shift) + (1 << (shift - 1)) + 1):
        r = ep_update.round_update(np.full(d.shape, q, np.int64), shift, d)
        lo = q >> shift
        assert set(np.unique(r)) <= {lo, lo + 1}
        assert abs(r.mean() - q / 2 ** shift) < 2 ** -15


# -- streams --------------------------------------------------------------------------------
def test_streams_by_name_and_index():
    s = Streams(10, 11, 12, 13, 14, 15)        # W1 W2 W3, then b1 b2 b3
    assert (s.w1, s.w3, s.b1, s.b3) == (10, 12, 13, 15)
    assert (s[0], s[3], s[-1], len(s), list(s)) == (10, 13, 15, 6, [10, 11, 12, 13, 14, 15])
    s.b2 = 99
    s[1] = 98
    assert s.as_list() == [10, 98, 12, 13, 99, 15] and s.positions == s.as_list()
    s.w1 = np.int64(7)                         # positions stay Python ints (they go into JSON)
    assert type(s.w1) is int and type(s[0]) is int
    for bad in ("w0", "w4", "b4", "x1", "w"):
        with pytest.raises(AttributeError):
            getattr(s, bad)
    with pytest.raises(AttributeError):
        s.w4 = 1
    assert not hasattr(s, "b7")
    with pytest.raises(ValueError, match="two streams per weight layer, got 3 positions"):
        Streams(1, 2, 3)
    assert repr(Streams(1, 2)) == "Streams(1, 2)"


def test_streams_equal_lists_and_copy_deeply():
    s = Streams(1, 2, 3, 4)
    assert s == [1, 2, 3, 4] and [1, 2, 3, 4] == s and s == (1, 2, 3, 4) and s == Streams(1, 2, 3, 4)
    assert s != [1, 2, 3, 5] and s != [1, 2, 3, 4, 0, 0] and s != Streams(1, 2, 4, 3) and s != "1234"
    for dup in (copy.deepcopy(s), copy.copy(s)):
        assert dup == s and dup is not s and dup.positions is not s.positions
        dup.w2 = 20
        dup[3] = 40
        assert s == [1, 2, 3, 4] and dup == [1, 20, 3, 40]


def test_seeded_streams_spread_over_the_period_for_every_depth(small_config):
    # one hidden layer: the positions the four-stream hardware has always started from
    assert Streams.seeded(small_config) == [lfsr.stream_seed(small_config.seed, n) for n in lfsr.STREAMS]
    s = Streams.seeded(TINY)
    assert len(s) == 2 * TINY.n_layers
    gaps = np.diff(s.as_list()) % lfsr.PERIOD
    assert set(gaps.tolist()) == {lfsr.PERIOD // 8}
    assert Streams.seeded(replace(TINY, seed=2)) != s


# -- convolutional and deeper networks -------------------------------------------------------
def _images(n, size=14):
    tr = data.load("train")
    return data.downsample(tr.images[:n], size), tr.labels[:n].astype(I)


def test_update_zero_when_phases_agree_and_saturates():
    c = TINY
    p = network.init_params(c)
    X, _ = _images(2)
    x = network.quantize_input(X, c)
    R = [np.full((2,) + ly.out_shape, 100, I) for ly in c.geometry]
    before = p.copy()
    s = Streams.seeded(c).as_list()
    ep_update.update(p, x, R, [None] * 4, R, [None] * 4, c, s)
    assert all(np.array_equal(a, b) for a, b in zip(p.w + p.b, before.w + before.b))
    assert s != Streams.seeded(c).as_list()                      # draws were consumed all the same
    Rn = [r + 50 for r in R]
    p.w[3][:] = c.weight_range[1]
    ep_update.update(p, x, R, [None] * 4, Rn, [None] * 4, replace(c, w_shifts=(0, 0, 0, 0), b_shifts=(0, 0, 0, 0)), s)
    assert p.w[3].max() == c.weight_range[1] and p.w[3].min() == c.weight_range[1]
    assert (p.b[3] == 2 * 50).all()                         # sum over the batch, shift 0


def test_update_q_is_the_rate_product_difference():
    """A fully connected layer's q is Rn_pre Rn_post - Rf_pre Rf_post summed over the batch;
    a convolution's bias q the rate difference summed over batch and positions."""
    c = replace(TINY, w_shifts=(0, 0, 0, 0), b_shifts=(0, 0, 0, 0), weight_bits=14, bias_bits=16)
    p = network.Params([np.zeros(ly.weight_shape, I) for ly in c.geometry],
                       [np.zeros(ly.bias_size, I) for ly in c.geometry])
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 1, 14, 14))
    Rf = [rng.integers(0, 256, (2,) + ly.out_shape) for ly in c.geometry]
    Rn = [rng.integers(0, 256, (2,) + ly.out_shape) for ly in c.geometry]
    ep_update.update(p, x, Rf, [None] * 4, Rn, [None] * 4, c, Streams.seeded(c))
    q = Rn[2].T @ Rn[3] - Rf[2].T @ Rf[3]
    assert np.array_equal(p.w[3], np.clip(q, *c.weight_range))
    qb = (Rn[0] - Rf[0]).sum(axis=(0, 2, 3))
    assert np.array_equal(p.b[0], np.clip(qb, *c.bias_range))
