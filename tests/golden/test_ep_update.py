import numpy as np
from hypothesis import given, settings, strategies as st

from eqfpga.config import Config
from eqfpga.golden import ep_update, lfsr
from eqfpga.golden.network import init_params


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
