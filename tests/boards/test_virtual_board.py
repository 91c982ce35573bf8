"""The icebreaker board top (UART included) in Verilator behind a pseudo-terminal, driven by
`eqfpga run` exactly as a board would be."""

import os

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
    proc.terminate()
    proc.wait(timeout=10)


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
