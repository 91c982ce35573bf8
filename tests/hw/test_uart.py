# amaranth: UnusedElaboratable=no
"""8N1 UART against the golden line model."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from eqfpga.golden import uart as golden
from eqfpga.hw.uart import UARTReceiver, UARTTransmitter


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def transmit(data: bytes, divisor: int) -> np.ndarray:
    dut = UARTTransmitter(divisor)
    line = []

    async def bench(ctx):
        i = 0
        total = len(data) * 10 * divisor + 4 * divisor
        for _ in range(total):
            if i < len(data):
                ctx.set(dut.data.payload, data[i])
                ctx.set(dut.data.valid, 1)
            else:
                ctx.set(dut.data.valid, 0)
            _, _, ready, valid, tx = await ctx.tick().sample(dut.data.ready, dut.data.valid, dut.tx)
            line.append(tx)
            if ready and valid:
                i += 1

    _run(dut, bench)
    return np.array(line, np.uint8)


def receive(line: np.ndarray, divisor: int) -> tuple[bytes, int]:
    dut = UARTReceiver(divisor)
    got, errors = bytearray(), 0

    async def bench(ctx):
        nonlocal errors
        for level in list(line) + [1] * (3 * divisor):
            ctx.set(dut.rx, int(level))
            _, _, valid, payload, error = await ctx.tick().sample(dut.data.valid, dut.data.payload,
                                                                  dut.error)
            if valid:
                got.append(payload)
            errors += error

    _run(dut, bench)
    return bytes(got), errors


@settings(max_examples=8, deadline=None)
@given(st.binary(min_size=1, max_size=6), st.integers(4, 13))
def test_transmitter_matches_golden_line(data, divisor):
    line = transmit(data, divisor)
    start = int(np.argmin(line))          # the first start bit
    want = golden.encode(data, divisor)
    assert (line[start:start + len(want)] == want).all()
    assert line[start + len(want):].all()  # idle afterwards
    assert golden.decode(line, divisor) == data


@settings(max_examples=8, deadline=None)
@given(st.binary(min_size=1, max_size=6), st.integers(4, 13), st.integers(0, 3))
def test_receiver_recovers_golden_line(data, divisor, gap):
    line = np.concatenate([np.ones(5, np.uint8), golden.encode(data, divisor, gap=gap)])
    assert receive(line, divisor) == (data, 0)


def test_receiver_drops_glitches_and_framing_errors():
    d = 8
    glitch = np.array([1] * 10 + [0] * 2 + [1] * 20, np.uint8)       # shorter than half a bit
    bad_stop = golden.encode(b"\x5a", d).copy()
    bad_stop[-d:] = 0                                                  # stop bit low
    line = np.concatenate([glitch, bad_stop, np.ones(3 * d, np.uint8), golden.encode(b"ok", d)])
    got, errors = receive(line, d)
    assert got == golden.decode(line, d) == b"ok"
    assert errors == 1


def test_divisor_is_checked():
    with pytest.raises(ValueError, match="at least 4"):
        UARTReceiver(2)
