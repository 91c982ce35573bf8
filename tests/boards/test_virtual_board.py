"""The icebreaker board top (UART included) in Verilator behind a pseudo-terminal, driven by
`eqfpga run` exactly as a board would be."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from eqfpga import checkpoint, data
from eqfpga.boards import targets, virtual
from eqfpga.boards.host import Host, open_port
from eqfpga.cli import main
from eqfpga.golden import network
from eqfpga.golden.host_link import Geometry


@pytest.fixture(scope="module")
def board():
    proc, pty = virtual.start(targets.get_board("icebreaker"))
    yield pty
    virtual.stop(proc)


def test_run_classifies_like_golden(board, capsys):
    assert main(["run", "--port", board, "--images", "3", "--first", "20", "--quiet"]) == 0
    assert "agreement with golden 100.00%" in capsys.readouterr().out


def test_garbage_then_run_without_reloading(board, capsys):
    fd = os.open(board, os.O_RDWR | os.O_NOCTTY)
    os.write(fd, bytes(np.random.default_rng(3).integers(0, 256, 3000, dtype=np.uint8)))
    os.close(fd)
    assert main(["run", "--port", board, "--images", "2", "--no-load", "--quiet"]) == 0
    assert "agreement with golden 100.00%" in capsys.readouterr().out


def test_weights_read_back(board):
    ck = checkpoint.load(checkpoint.shipped())
    host = Host(open_port(board), timeout=5)
    g = Geometry(ck.config, targets.get_board("icebreaker").lanes)
    wb = g.word_bytes
    back_b2 = host.request(3, bytes([3, 0, 0, 10]))  # READ b2: sign-extended to a word
    words = [int.from_bytes(back_b2[wb * i:wb * i + wb], "little") for i in range(10)]
    b2 = [w - (1 << g.word_bits) if w >> (g.word_bits - 1) else w for w in words]
    assert b2 == [int(v) for v in ck.params.b2]
    counters = host.counters()
    assert counters["samples"] >= 5 and counters["dropped_bytes"] > 0


def test_on_chip_training_over_the_link(board, tmp_path, capsys):
    assert main(["train", "--on-chip", "--port", board, "--train-samples", "4", "--test-samples",
                 "50", "--out", str(tmp_path), "--quiet"]) == 0
    assert "weights, LFSRs and predictions equal golden" in capsys.readouterr().out


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait(cond, seconds=30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGKILL])
def test_the_board_ends_with_its_command(board, tmp_path, how):
    """However `eqfpga virtual-board` ends, its Verilator child ends too (and frees the pty)."""
    pty_file = tmp_path / "pty"
    cmd = subprocess.Popen([sys.executable, "-m", "eqfpga.cli", "virtual-board", "--pty-file",
                            str(pty_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: pty_file.exists() and _children(cmd.pid)), "the board did not start"
        child = _children(cmd.pid)[0]
        cmd.send_signal(how)
        cmd.wait(timeout=30)
        assert _wait(lambda: not _alive(child)), f"the board outlived its command ({how!r})"
    finally:
        if cmd.poll() is None:
            cmd.kill()


def test_an_unwritable_pty_file_starts_no_board(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cmd = subprocess.Popen([sys.executable, "-m", "eqfpga.cli", "virtual-board", "--pty-file",
                            str(blocker / "pty")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    started = []
    while cmd.poll() is None:
        started += _children(cmd.pid)
        time.sleep(0.01)
    err = cmd.stderr.read()
    assert cmd.returncode == 2 and err.count("\n") == 1 and "--pty-file" in err
    assert not started


def test_a_board_that_goes_away_mid_run_is_one_line(board, tmp_path):
    """The port vanishes while `eqfpga run` talks to it: one line, exit 2, no traceback."""
    proc, pty = virtual.start(targets.get_board("icebreaker"))
    try:
        run = subprocess.Popen([sys.executable, "-m", "eqfpga.cli", "run", "--port", pty,
                                "--images", "10000", "--quiet", "--timeout", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        virtual.stop(proc)
        out, err = run.communicate(timeout=60)
    finally:
        virtual.stop(proc)
    assert run.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("eqfpga: error: ") and "Traceback" not in err
