"""Generated Verilog: Verilator's -Wall lint, with waivers that carry their reasons."""

import pytest

from eqfpga import checkpoint
from eqfpga.hw import verilog
from eqfpga.sim.verilator import HARNESS, harness_parameters


@pytest.fixture(scope="module")
def trained_verilog(tmp_path_factory):
    ck = checkpoint.load(checkpoint.shipped())
    return verilog.generate(ck.config, tmp_path_factory.mktemp("v"), params=ck.params,
                            streams=ck.streams)


def test_trained_design_is_lint_clean(trained_verilog):
    assert "initial" in trained_verilog.read_text()   # the weights are in the memories
    assert verilog.lint(trained_verilog) == []


def test_harness_is_lint_clean_without_waivers(trained_verilog):
    # The waivers apply to the generated file only: the harness is held to full -Wall, with
    # the parameters a build of the shipped network gives it.
    c = checkpoint.load(checkpoint.shipped()).config
    params = [f"-G{k}={v}" for k, v in harness_parameters(c, verilog.DEFAULT_LANES).items()]
    assert verilog.lint(trained_verilog, extra=["--timing", HARNESS, *params],
                        top="eqfpga_harness") == []


def test_lint_reports_warnings(trained_verilog):
    # Without the waivers Amaranth's style triggers -Wall warnings: the check can fail.
    warnings = verilog.lint(trained_verilog, waive=False)
    assert warnings and all(w.startswith("%Warning") for w in warnings)


def test_every_waiver_gives_its_reason(tmp_path):
    text = verilog.waiver_file(tmp_path / "w.vlt", "x.v").read_text()
    for rule, reason in verilog.WAIVERS:
        assert len(reason) > 40 and f"// {rule}: {reason}" in text
        assert f'lint_off -rule {rule} -file "*/x.v"' in text


def test_generation_is_deterministic(tmp_path, small_config):
    a = verilog.generate(small_config, tmp_path / "a", lanes=4).read_text()
    b = verilog.generate(small_config, tmp_path / "b", lanes=4).read_text()
    assert a == b
