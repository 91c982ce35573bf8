import numpy as np

from eqfpga import data
from eqfpga.golden import float_ref, network, train
from eqfpga.golden.ep_update import Streams


def test_scales_follow_the_config(small_config):
    s = float_ref.Scales.of(small_config)
    c = small_config
    assert s.w2 == 2.0 ** -c.weight_frac_bits
    assert s.beta == 2.0 ** -c.beta_shift
    # W1 scale: (x / 2**input_bits) @ (W1 * s.w1) == ((x @ W1) >> input_shift) / ONE, up to rounding
    x = np.random.default_rng(0).integers(0, 256, (4, c.inputs))
    p = network.init_params(c)
    exact = (x @ p.w1) / 2.0 ** c.input_shift / c.one
    np.testing.assert_allclose((x / 256.0) @ (p.w1 * s.w1), exact, rtol=1e-12)


def test_float_and_integer_models_agree_after_training(small_config):
    c = small_config
    tr, te = data.load("train").take(1500), data.load("test").take(500)
    p = network.init_params(c)
    st = Streams.seeded(c)
    for i in range(len(tr)):
        train.train_sample(tr.images[i], int(tr.labels[i]), p, c, st)
    fp = float_ref.FloatParams.from_int(p, c)
    pred_f = float_ref.infer(te.images, fp, c)[0]
    pred_i = network.predict(te.images, p, c)[0]
    # same weights, spikes vs rates: most predictions agree, and both are far above chance
    assert np.mean(pred_f == pred_i) > 0.85
    assert np.mean(pred_f == te.labels) > 0.6
    fp2 = float_ref.FloatParams.from_int(network.init_params(c), c)
    for i in range(300):
        float_ref.train_sample(tr.images[i], int(tr.labels[i]), fp2, c)
    assert float_ref.accuracy(te.images, te.labels, fp2, c) > 0.3
