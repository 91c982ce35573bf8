import os

# The models' matrices are small: a BLAS thread pool costs more than it gains, and on a busy
# machine (CI's 2 cores running a simulator beside) it makes them many times slower. Set before
# NumPy loads; the subprocesses that tests start inherit it.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

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


@pytest.fixture(scope="session")
def formal_tools():
    """Skip a test that needs the formal tools (SymbiYosys, Yosys, boolector) where they
    are missing; checked once per session (the solver's first call compiles it)."""
    from eqfpga.sim import formal
    try:
        formal.require_tools()
    except formal.FormalToolError as e:
        pytest.skip(str(e))
