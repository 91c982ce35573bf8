from pathlib import Path

import pytest

from eqfpga.config import Config

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def small_config() -> Config:
    """A small network with the shipped formats: fast enough for unit tests."""
    return Config(name="small", hidden=32, w2_init=6, w1_shift=13, w2_shift=14,
                  b1_shift=7, b2_shift=7, beta_shift=0)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED / "mnist").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED
