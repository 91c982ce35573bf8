import numpy as np

from eqfpga.golden import lfsr


def test_step_hand_computed():
    assert lfsr.step(1) == 2                    # no tap set: shift in 0
    assert lfsr.step(1 << 16) == 1              # bit 16 set: feedback 1, bit 16 shifted out
    assert lfsr.step((1 << 16) | (1 << 13)) == (1 << 14)   # taps cancel


def test_table_matches_stepping_and_is_a_permutation():
    t = lfsr.draw_table()
    assert t[0] == 1 and t[1] == lfsr.advance(1, 17) and t[5] == lfsr.advance(1, 85)
    assert len(np.unique(t)) == lfsr.PERIOD and t.min() == 1 and t.max() == lfsr.PERIOD


def test_draws_wrap_and_advance():
    vals, pos = lfsr.draws(lfsr.PERIOD - 2, 4)
    assert pos == 2
    t = lfsr.draw_table()
    assert list(vals) == [t[-2], t[-1], t[0], t[1]]


def test_streams_are_distinct():
    seeds = {lfsr.stream_seed(1, s) for s in lfsr.STREAMS}
    assert len(seeds) == 4
