"""The bench scripts are programs, not a library: their tests run them as a user does."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(tmp_path):
    """``bench(script, *args, ok=True)``: run ``bench/<script>`` in a fresh folder with the same
    interpreter; returns the CompletedProcess (text output). ``ok=True`` requires exit status
    0, ``ok=False`` a failure, ``ok=None`` either."""
    def run(script: str, *args, ok: bool | None = True) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
        if ok is not None and (r.returncode == 0) != ok:
            raise AssertionError(f"bench/{script} {' '.join(map(str, args))}: exit status {r.returncode}\n"
                                 f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
        return r
    return run
