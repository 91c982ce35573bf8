"""Programming commands as amaranth-boards runs them, and what a missing tool or bitstream says."""

import pytest

from eqfpga.boards import flash, targets
from eqfpga.boards.targets import BoardError
from eqfpga.cli import main


@pytest.mark.parametrize("name, tool, args, ext", [
    ("icebreaker", "iceprog", [], "bin"),
    ("ulx3s-85f", "openFPGALoader", ["-b", "ulx3s", "-m"], "bit"),
    ("orangecrab-25f", "dfu-util", ["-a", "0", "-D"], "bit"),
])
def test_program_command(tmp_path, monkeypatch, name, tool, args, ext):
    monkeypatch.delenv(flash.INSTALL_HINTS[tool][0], raising=False)
    (tmp_path / f"eqfpga.{ext}").write_bytes(b"\x00")
    cmd = flash.program_command(targets.get_board(name), tmp_path)
    assert cmd == [tool, *args, str(tmp_path / f"eqfpga.{ext}")]


def test_missing_bitstream(tmp_path):
    with pytest.raises(BoardError, match="eqfpga build --board icebreaker"):
        flash.program_command(targets.get_board("icebreaker"), tmp_path)


def test_missing_tool_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ICEPROG", "no-such-iceprog")
    (tmp_path / "eqfpga.bin").write_bytes(b"\x00")
    assert main(["flash", "--board", "icebreaker", "--build-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-iceprog not found" in err and "fpga-icestorm" in err


def test_absent_board_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ICEPROG", "false")      # a tool that runs and fails, as with no board
    (tmp_path / "eqfpga.bin").write_bytes(b"\x00")
    assert main(["flash", "--board", "icebreaker", "--build-dir", str(tmp_path)]) == 2
    assert "could not program icebreaker" in capsys.readouterr().err


def test_unknown_board(capsys):
    assert main(["flash", "--board", "de0-nano-x"]) == 2
    assert "unknown board 'de0-nano-x'; known: icebreaker" in capsys.readouterr().err


def test_orangecrab_gets_a_uart_on_its_feather_pins():
    from eqfpga.boards.build import design
    from eqfpga.boards.top import PlatformTop
    from eqfpga.config import Config
    small = Config(name="tiny", inputs=16, hidden=8, input_bits=4, free_steps=8, nudge_steps=4,
                   input_shift=4, w1_init=8, w2_init=8)
    board = targets.get_board("orangecrab-25f")
    platform = board.make_platform()
    plan = platform.build(PlatformTop(design(board, platform.default_clk_frequency, small, 1)),
                          do_build=False)
    lpf = plan.files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "N17"' in lpf and 'SITE "M18"' in lpf
