# amaranth: UnusedElaboratable=no
"""The protocol engine against the reference device: the same bytes in, the same bytes out."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from eqfpga import data
from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train
from eqfpga.golden import host_link as golden
from eqfpga.golden.host_link import Cmd, Error, frame
from eqfpga.hw.accelerator import Accelerator
from eqfpga.hw.host_link import HostLink

C = Config(name="link", inputs=64, hidden=16, free_steps=12, nudge_steps=6, input_shift=8,
           w1_init=30, w2_init=20, w1_shift=11, w2_shift=13, b1_shift=6, b2_shift=6, seed=2)
LANES = 4
TIMEOUT = 300


def _images(n, offset=0):
    split = data.load("train")
    return (data.downsample(split.images[offset:offset + n], 8),
            split.labels[offset:offset + n].astype(int))


def _trained():
    p, st = network.init_params(C), ep_update.Streams.seeded(C)
    x, y = _images(100, 500)
    for i in range(len(x)):
        train.train_sample(x[i], int(y[i]), p, C, st)
    return p


def _write_frames(g: golden.Geometry, params) -> list[bytes]:
    """WRITE frames loading ``params``, as the host driver sends them."""
    return [frame(Cmd.WRITE, p) for p in golden.write_payloads(g, golden.param_entries(g, params), 16)]


def run_link(chunks, *, gaps=None):
    """Feed byte ``chunks`` to the RTL (each chunk once the link is receiving); return the
    bytes sent back after each chunk. ``gaps[i]``: idle cycles before chunk ``i``."""
    dut = HostLink(Accelerator(config=C, lanes=LANES), timeout=TIMEOUT)
    replies = []

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        out = bytearray()

        async def tick():
            _, _, valid, payload = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid:
                out.append(payload)

        for i, chunk in enumerate(chunks):
            for _ in range(gaps[i] if gaps else 0):
                await tick()
            for b in chunk:
                while not ctx.get(dut.receiving):
                    await tick()
                ctx.set(dut.rx.payload, b)
                ctx.set(dut.rx.valid, 1)
                await tick()
                ctx.set(dut.rx.valid, 0)
            await tick()
            while not ctx.get(dut.receiving):
                await tick()
            replies.append(bytes(out))
            out.clear()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return replies


def golden_replies(chunks, *, gaps=None):
    dev = golden.Device(golden.Geometry(C, LANES), timeout=TIMEOUT)
    out = []
    for i, chunk in enumerate(chunks):
        if gaps:
            dev.idle(gaps[i])
        out.append(dev.feed(chunk))
    return out


def test_info_counters_and_errors():
    chunks = [frame(Cmd.INFO), frame(Cmd.COUNTERS), frame(0x42), frame(Cmd.INFO, b"x"),
              frame(Cmd.READ, bytes([0, 0, 0, 0])), frame(Cmd.READ, bytes([9, 0, 0, 1])),
              frame(Cmd.SHIFTS, bytes([1, 2, 18, 3])), frame(Cmd.SHIFTS, bytes([1, 2, 3, 4])),
              frame(Cmd.WRITE, bytes(8) + bytes([0, 0, 0]) + bytes(8)),
              frame(Cmd.CLASSIFY, bytes(10)), frame(Cmd.TRAIN, bytes([10]) + bytes(C.inputs)),
              frame(Cmd.COUNTERS)]
    want = golden_replies(chunks)
    assert run_link(chunks) == want
    reader = golden.FrameReader()
    assert reader.feed(want[0])[0] == (Cmd.INFO | 0x80, golden.Geometry(C, LANES).info())
    assert reader.feed(want[2]) == [(golden.NAK, bytes([Error.UNKNOWN_COMMAND]))]
    assert reader.feed(want[8]) == [(golden.NAK, bytes([Error.WRONG_MODEL]))]


def test_load_read_classify_train_read():
    g = golden.Geometry(C, LANES)
    p = _trained()
    x, y = _images(3, 2000)
    reads = [frame(Cmd.READ, bytes([sel]) + a.to_bytes(2, "little") + bytes([n]))
             for sel, depth in ((0, g.depth(0)), (1, g.depth(1)), (2, g.depth(2)), (3, g.depth(3)),
                                (4, 4))
             for a in range(0, depth, 64) for n in [min(64, depth - a)]]
    chunks = (_write_frames(g, p) + reads[:3]
              + [frame(Cmd.CLASSIFY, bytes(x[0].astype(np.uint8)))]
              + [frame(Cmd.TRAIN, bytes([y[i]]) + bytes(x[i].astype(np.uint8))) for i in range(2)]
              + reads + [frame(Cmd.COUNTERS)])
    want = golden_replies(chunks)
    got = run_link(chunks)
    assert got == want
    # and the golden device did what the golden network does
    pred, counts = network.predict(x[:1], p, C)
    reply = golden.FrameReader().feed(want[len(_write_frames(g, p)) + 3])[0]
    assert reply == (Cmd.CLASSIFY | 0x80, bytes([pred[0]]) + bytes(int(v) for v in counts[0]))


def test_fuzz_garbage_never_hangs_the_link():
    rng = np.random.default_rng(7)
    x, _ = _images(1, 3000)
    valid = [frame(Cmd.INFO), frame(Cmd.CLASSIFY, bytes(x[0].astype(np.uint8))), frame(Cmd.COUNTERS)]
    chunks, total = [], 0
    while total < 10_000:
        junk = rng.integers(0, 256, int(rng.integers(1, 1500)), dtype=np.uint8).tobytes()
        if rng.random() < 0.3:   # a frame cut short, or with one byte flipped
            f = bytearray(valid[int(rng.integers(0, 3))])
            f[int(rng.integers(1, len(f)))] ^= 1 << int(rng.integers(0, 8))
            junk += bytes(f)
        chunks.append(junk)
        total += len(junk)
    # After the garbage, a pause longer than the timeout, then frames that must be answered.
    chunks += [valid[0], valid[1], valid[2]]
    gaps = [0] * (len(chunks) - 3) + [TIMEOUT + 5, 0, 0]
    want = golden_replies(chunks, gaps=gaps)
    got = run_link(chunks, gaps=gaps)
    assert got == want
    reader = golden.FrameReader()
    assert reader.feed(got[-3])[0][0] == Cmd.INFO | 0x80
    assert reader.feed(got[-2])[0][0] == Cmd.CLASSIFY | 0x80


def test_partial_frame_times_out():
    half = frame(Cmd.INFO)[:3]
    chunks = [half, frame(Cmd.INFO)]
    gaps = [0, TIMEOUT + 5]
    want = golden_replies(chunks, gaps=gaps)
    assert want[1] and run_link(chunks, gaps=gaps) == want


def test_crc16_known_value():
    assert golden.crc16(b"123456789") == 0x29B1   # CRC-16/CCITT-FALSE check value


def test_frame_reader_skips_garbage():
    f = frame(Cmd.INFO, b"abc")
    reader = golden.FrameReader()
    assert reader.feed(b"\x00\xa5\xff" + f[:4]) == []
    assert reader.feed(f[4:] + b"\x13") == [(Cmd.INFO, b"abc")]
