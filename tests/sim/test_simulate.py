"""``simulate``: Amaranth's simulator and Verilator agree; waveforms on request."""

import numpy as np
import pytest

from eqfpga import checkpoint, data
from eqfpga.sim import simulate


@pytest.fixture(scope="module")
def shipped():
    return checkpoint.load(checkpoint.shipped())


def test_amaranth_and_verilator_agree(shipped):
    test = data.load("test")
    x, y = test.images[100:102], test.labels[100:102]
    am = simulate.simulate(shipped, x, y, sim="amaranth")
    vl = simulate.simulate(shipped, x, y, sim="verilator", jobs=1)
    for r in (am, vl):
        assert r["mismatches"] == [] and r["class_agreement"] == 1.0
        assert r["spike_count_agreement"] == 1.0
    assert am["cycles"] == vl["cycles"]
    assert vl["images_per_second_at_clock"] == pytest.approx(30e6 / vl["cycles"]["mean"])


def test_vcd_of_the_first_image(shipped, tmp_path):
    test = data.load("test")
    path = tmp_path / "wave.vcd"
    r = simulate.simulate(shipped, test.images[:1], test.labels[:1], vcd=str(path), first_index=0)
    assert r["vcd_image"] == 0
    text = path.read_text(errors="replace")
    assert "$enddefinitions" in text and "sample_done" in text


def test_report_names_mismatching_images():
    r = {"simulator": "verilator", "config": "up5k", "lanes": 8, "jobs": 1, "images": 3,
         "accuracy": 1.0, "golden_accuracy": 1.0, "class_agreement": 2 / 3,
         "spike_count_agreement": 2 / 3, "mismatches": [17],
         "cycles": {"min": 1, "mean": 2.0, "max": 3}, "cycles_per_second": 1e6,
         "cycles_per_second_all_jobs": 1e6, "wall_seconds": 1.0, "clock_hz": 30e6,
         "images_per_second_at_clock": 1.5e7}
    text = simulate.format_report(r)
    assert "MISMATCH on image(s) 17" in text


def test_unknown_simulator(shipped):
    with pytest.raises(ValueError, match="unknown simulator"):
        simulate.simulate(shipped, np.zeros((1, 784), np.uint8), np.zeros(1, int), sim="iverilog")
