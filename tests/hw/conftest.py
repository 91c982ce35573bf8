"""Small configurations of different widths shared by the hardware unit tests."""

import pytest

from eqfpga.config import Config

CONFIGS = {
    # The shipped formats (rate_shift 2, nudge_shift 3).
    "default": Config(name="t"),
    # rate_shift = nudge_shift = leak_shift = 0: every shift degenerates to a wire.
    "zero_shifts": Config(name="t", hidden=16, inputs=64, weight_bits=5, w1_init=8, w2_init=8,
                          bias_bits=8, rate_bits=6, weight_frac_bits=6, membrane_frac_bits=0,
                          leak_shift=0, beta_shift=0, drive_bits=16, membrane_bits=16),
    # Wide weights and rates, a 26-bit membrane.
    "wide": Config(name="t", hidden=32, weight_bits=12, bias_bits=16, rate_bits=10,
                   weight_frac_bits=8, membrane_frac_bits=6, leak_shift=5, beta_shift=3,
                   drive_bits=24, membrane_bits=30),
    # Narrow everything: 4-bit weights and rates, leak_shift = membrane_frac_bits.
    "narrow": Config(name="t", hidden=8, inputs=16, input_bits=4, weight_bits=4, w1_init=4,
                     w2_init=4, bias_bits=6, rate_bits=4, weight_frac_bits=3,
                     membrane_frac_bits=3, leak_shift=3, input_shift=4, beta_shift=2,
                     drive_bits=10, membrane_bits=14),
}


@pytest.fixture(params=list(CONFIGS))
def hw_config(request) -> Config:
    """Each of :data:`CONFIGS` in turn."""
    return CONFIGS[request.param]
