"""golden/conv_ops.py: convolution and pooling, hand-computed cases and exact adjoints."""

from dataclasses import replace

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from eqfpga.config import Config
from eqfpga.golden import conv_ops as ops, network

I = np.int64
ints = lambda shape: arrays(np.int64, shape, elements=st.integers(-50, 50))  # noqa: E731


# -- hand-computed cases ------------------------------------------------------------------
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


def test_fixed_weights_pool_the_kernels_of_average_pooled_convolutions_only():
    """Each layer's own pool size; max-pooled convolutions and dense layers get none, and a
    network without an average-pooled convolution keeps its parameters as they are."""
    base = Config.convolutional("mixed", image_size=14, conv_channels=(2, 3), kernel=3, fc_hidden=(4,),
                                w_init=(10, 10, 10, 10))
    c = replace(base, layers=(replace(base.layers[0], pool=1), replace(base.layers[1], pooling="max"),
                              *base.layers[2:]))
    p = network.init_params(c)
    f = p.fixed(c)
    assert f is not p and f.w is p.w and f.b is p.b
    assert np.array_equal(f.kernel(0), ops.pooled_kernel(p.w[0], 1)) and np.array_equal(f.kernel(0), p.w[0])
    assert [f.kernel(l) for l in (1, 2, 3)] == [None, None, None]
    assert p.kernel(0) is None                       # the original computes its kernels at each use
    avg2 = replace(c, layers=(base.layers[0], *c.layers[1:]))
    assert ops.pooled_kernels(p.w, avg2.geometry)[0].shape == (2, 1, 4, 4)
    dense = Config("dense", inputs=16, hidden=4, outputs=2, w1_init=3, w2_init=3)
    q = network.init_params(dense)
    assert q.fixed(dense) is q
