"""PLL settings: inside the datasheet ranges, the requested clock, and a clear refusal."""

import pytest
from hypothesis import assume, given, settings, strategies as st

from eqfpga.boards.clocking import PLLError, ecp5_pll_params, ice40_pll_params


def test_icebreaker_30_mhz_matches_icepll():
    # icepll -i 12 -o 30: DIVR 0, DIVF 79, DIVQ 5, FILTER_RANGE 1
    p = ice40_pll_params(12e6, 30e6)
    assert (p.divr, p.divf, p.divq, p.filter_range, p.hz) == (0, 79, 5, 1, 30e6)


@settings(max_examples=50, deadline=None)
@given(st.integers(17, 250).map(lambda mhz: mhz * 1e6))
def test_ice40_settings_are_in_range(f_out):
    p = ice40_pll_params(12e6, f_out)
    f_pfd = 12e6 / (p.divr + 1)
    f_vco = f_pfd * (p.divf + 1)
    assert 10e6 <= f_pfd <= 133e6 and 533e6 <= f_vco <= 1066e6
    assert p.hz == f_vco / 2 ** p.divq
    assert abs(p.hz - f_out) <= 0.01 * f_out


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([25e6, 48e6]), st.integers(10, 300).map(lambda mhz: mhz * 1e6))
def test_ecp5_settings_are_in_range(f_in, f_out):
    try:
        p = ecp5_pll_params(f_in, f_out)
    except PLLError:        # e.g. 24 MHz from 25 MHz needs a phase detector below 3.125 MHz
        assume(False)
    assert 3.125e6 <= f_in / p.clki_div <= 400e6
    assert 400e6 <= p.hz * p.clkop_div <= 800e6
    assert p.hz == pytest.approx(f_in * p.clkfb_div / p.clki_div)
    assert abs(p.hz - f_out) <= 0.01 * f_out


def test_ulx3s_80_mhz():
    p = ecp5_pll_params(25e6, 80e6)
    assert (p.clki_div, p.clkfb_div, p.hz) == (5, 16, 80e6)


def test_an_impossible_clock_is_refused():
    with pytest.raises(PLLError, match="no iCE40 PLL setting makes 1 MHz from 12 MHz"):
        ice40_pll_params(12e6, 1e6)
    with pytest.raises(PLLError, match="no ECP5 PLL setting makes 2000 MHz"):
        ecp5_pll_params(25e6, 2000e6)
