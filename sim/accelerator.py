"""Drive an :class:`~eqfpga.hw.accelerator.Accelerator` from Amaranth async testbenches.

The host side of the accelerator in simulation: stream an image, run a sample, read the
parameters and LFSR streams back. Each helper takes the testbench ``ctx`` and the design.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eqfpga.golden import lfsr
from eqfpga.golden.ep_update import Streams
from eqfpga.hw.accelerator import Accelerator, Phase, Tensor, unpack_params


@dataclass
class SampleRun:
    prediction: int
    spike_counts: np.ndarray
    cycles: int
    spikes: int
    s_h: list = field(default_factory=list)   # per step, (hidden,) 0/1
    s_y: list = field(default_factory=list)   # per step, (outputs,) 0/1
    phases: list = field(default_factory=list)


def _bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> i) & 1 for i in range(n)], np.int64)


async def send_image(ctx, dut: Accelerator, pixels) -> None:
    for p in np.asarray(pixels).ravel():
        ctx.set(dut.pixels.payload, int(p))
        ctx.set(dut.pixels.valid, 1)
        await ctx.tick().until(dut.pixels.ready)
    ctx.set(dut.pixels.valid, 0)


async def run_sample(ctx, dut: Accelerator, pixels, *, train: bool = False, label: int = 0,
                     record: bool = True, limit: int = 10_000_000) -> SampleRun:
    """Stream ``pixels``, start a sample and wait for ``done``; records every step's spikes."""
    c = dut.config
    await send_image(ctx, dut, pixels)
    ctx.set(dut.train, int(train))
    ctx.set(dut.label, int(label))
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    run = SampleRun(0, np.zeros(c.outputs, np.int64), 0, 0)
    n = 0
    async for _, _, valid, payload, done in ctx.tick().sample(dut.trace.valid, dut.trace.payload,
                                                              dut.done):
        if valid and record:
            run.s_h.append(_bits(payload.s_h, c.hidden))
            run.s_y.append(_bits(payload.s_y, c.outputs))
            run.phases.append(Phase(payload.phase))
        if done:
            break
        n += 1
        if n > limit:
            raise TimeoutError(f"no done after {limit} cycles")
    run.prediction = ctx.get(dut.prediction)
    run.spike_counts = np.array([ctx.get(dut.spike_counts[k]) for k in range(c.outputs)])
    run.cycles = ctx.get(dut.cycles)
    run.spikes = ctx.get(dut.spikes)
    return run


async def read_entry(ctx, dut: Accelerator, sel: Tensor, addr: int) -> int:
    ctx.set(dut.port.sel, sel)
    ctx.set(dut.port.addr, addr)
    ctx.set(dut.port.re, 1)
    await ctx.tick()
    ctx.set(dut.port.re, 0)
    while not ctx.get(dut.port.rvalid):     # W1's read latency may be 2
        await ctx.tick()
    return ctx.get(dut.port.rdata)


async def write_entry(ctx, dut: Accelerator, sel: Tensor, addr: int, value: int) -> None:
    ctx.set(dut.port.sel, sel)
    ctx.set(dut.port.addr, addr)
    ctx.set(dut.port.wdata, value & ((1 << dut.word_bits) - 1))
    ctx.set(dut.port.we, 1)
    await ctx.tick()
    ctx.set(dut.port.we, 0)


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _lanes(word: int, lanes: int, bits: int) -> list[int]:
    return [_signed(word >> (l * bits), bits) for l in range(lanes)]


async def read_params(ctx, dut: Accelerator):
    """All parameters through the host port, as golden Params."""
    c, P = dut.config, dut.lanes
    G = c.hidden // P
    wb, bb = c.weight_bits, c.bias_bits
    words = {"w1": [_lanes(await read_entry(ctx, dut, Tensor.W1, a), P, wb) for a in range(c.inputs * G)],
             "w2": [_lanes(await read_entry(ctx, dut, Tensor.W2, a), P, wb) for a in range(c.outputs * G)],
             "b1": [_signed(await read_entry(ctx, dut, Tensor.B1, j), bb) for j in range(c.hidden)],
             "b2": [_signed(await read_entry(ctx, dut, Tensor.B2, k), bb) for k in range(c.outputs)]}
    return unpack_params(words, c, P)


async def write_params(ctx, dut: Accelerator, params) -> None:
    """Load golden Params through the host port."""
    from eqfpga.hw.accelerator import pack_params
    c, P = dut.config, dut.lanes
    packed = pack_params(params, c, P)

    def word(vals):
        return sum((v & ((1 << c.weight_bits) - 1)) << (l * c.weight_bits) for l, v in enumerate(vals))
    for a, vals in enumerate(packed["w1"]):
        await write_entry(ctx, dut, Tensor.W1, a, word(vals))
    for a, vals in enumerate(packed["w2"]):
        await write_entry(ctx, dut, Tensor.W2, a, word(vals))
    for j, v in enumerate(packed["b1"]):
        await write_entry(ctx, dut, Tensor.B1, j, v)
    for k, v in enumerate(packed["b2"]):
        await write_entry(ctx, dut, Tensor.B2, k, v)


async def read_streams(ctx, dut: Accelerator) -> Streams:
    states = [await read_entry(ctx, dut, Tensor.LFSR, i) for i in range(4)]
    return Streams(*(lfsr.position_of(s & lfsr.PERIOD) for s in states))
