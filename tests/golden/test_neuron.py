import numpy as np
from hypothesis import given, strategies as st

from eqfpga.config import Config
from eqfpga.golden import neuron

C = Config(name="t", leak_shift=2, membrane_frac_bits=4, weight_frac_bits=6, rate_bits=8,
           beta_shift=0)
I = np.int64


def test_membrane_step_hand_computed():
    # v + ((P << 4) - v) >> 2
    assert neuron.membrane_step(I(0), I(10), C) == 40            # (160 - 0) >> 2
    assert neuron.membrane_step(I(100), I(10), C) == 115         # 100 + (60 >> 2)
    assert neuron.membrane_step(I(0), I(-1), C) == -4            # -16 >> 2
    assert neuron.membrane_step(I(1), I(0), C) == 0              # floor(-1/4) = -1


def test_rate_hand_computed():
    # rate_shift = 4 + 6 - 8 = 2; clip to [0, 255]
    assert C.rate_shift == 2
    assert list(neuron.rate(np.array([-5, 0, 7, 1019, 1020, 5000]), C)) == [0, 0, 1, 254, 255, 255]


def test_sigma_delta_hand_computed():
    phi, s = neuron.sigma_delta(np.array([0, 200, 255]), np.array([255, 100, 1]), C)
    assert list(phi) == [255, 44, 0] and list(s) == [0, 1, 1]


def test_nudge_hand_computed():
    # nudge_shift = 0 + 8 - 6 = 2: ((t << 8) - R) >> 2
    assert list(neuron.nudge(np.array([0, 100, 255, 3]), np.array([1, 1, 0, 0]), C)) == [64, 39, -64, -1]


@given(st.integers(-2**15, 2**15 - 1), st.lists(st.integers(-2**15, 2**15 - 1), min_size=1, max_size=40))
def test_membrane_stays_within_drive_range(p0, drives):
    v = I(p0) << C.membrane_frac_bits
    lo, hi = min([p0] + drives), max([p0] + drives)
    for p in drives:
        v = neuron.membrane_step(v, I(p), C)
        assert lo << C.membrane_frac_bits <= v <= hi << C.membrane_frac_bits


@given(st.integers(-2**15, 2**15 - 1))
def test_membrane_settles_within_one_drive_unit(p):
    v = I(0)
    for _ in range(200):
        v = neuron.membrane_step(v, I(p), C)
    assert abs(int(v) - (p << C.membrane_frac_bits)) < (1 << C.membrane_frac_bits)


@given(st.integers(0, 255), st.integers(1, 600))
def test_sigma_delta_rate_is_exact(r, steps):
    phi, count = I(0), 0
    for _ in range(steps):
        phi, s = neuron.sigma_delta(phi, I(r), C)
        count += int(s)
        assert 0 <= phi < C.spike_threshold
    # count = floor(r * steps / 256) exactly, from a zero start
    assert count == (r * steps) >> 8


def test_negative_nudge_rounds_its_own_way():
    # sign -1: (R - (t << 8)) >> 2, not -(((t << 8) - R) >> 2)
    r, t = np.array([0, 100, 255, 3]), np.array([1, 1, 0, 0])
    assert list(neuron.nudge(r, t, C, -1)) == [-64, -39, 63, 0]
