"""Byte streams through the host link: the RTL in Amaranth's simulator against the golden device.

:func:`run_link` feeds chunks of bytes to :class:`~eqfpga.hw.host_link.HostLink` and
:func:`golden_replies` to :class:`~eqfpga.golden.host_link.Device`; both return the bytes sent
back after each chunk, which must be equal. :func:`streams` draws random streams for
property-based tests (it needs ``hypothesis``, a development dependency) and
:func:`compare_stream` checks one, on a configuration small enough for Amaranth's simulator
(:data:`FUZZ_CONFIG`).
"""

from __future__ import annotations

from collections import Counter

from amaranth.sim import Simulator

from eqfpga.config import LFSR_BITS, Config
from eqfpga.golden import host_link as golden
from eqfpga.golden.host_link import Cmd, frame

__all__ = ["run_link", "golden_replies", "read_all", "streams", "compare_stream", "FUZZ_CONFIG",
           "FUZZ_LANES", "FUZZ_TIMEOUT"]

#: A network small enough that a long byte stream simulates in seconds.
FUZZ_CONFIG = Config(name="tiny-link", inputs=16, hidden=8, outputs=3, free_steps=4, nudge_steps=2,
                     input_shift=6, w1_init=30, w2_init=20, seed=3)
FUZZ_LANES = 4
#: Cycles: short, so that pauses past it cost little simulation.
FUZZ_TIMEOUT = 40


def run_link(config: Config, lanes: int, chunks, *, timeout: int, gaps=None) -> list[bytes]:
    """The bytes the RTL sends back after each of ``chunks``.

    Parameters
    ----------
    config, lanes : the accelerator behind the link.
    chunks : sequence of bytes
        Fed one byte per cycle whenever the link is ``receiving`` (so no byte is dropped for
        arriving while it executes); a chunk ends once the link is receiving again.
    timeout : int
        The link's inter-byte timeout in cycles.
    gaps : sequence of int, optional
        ``gaps[i]``: idle cycles before chunk ``i``.
    """
    from eqfpga.hw.accelerator import Accelerator
    from eqfpga.hw.host_link import HostLink
    dut = HostLink(Accelerator(config=config, lanes=lanes), timeout=timeout)
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


def golden_replies(config: Config, lanes: int, chunks, *, timeout: int, gaps=None,
                   device: golden.Device | None = None) -> list[bytes]:
    """What :func:`run_link` must return: the golden device's replies (``device``, or a
    fresh one, is left as the stream leaves it)."""
    dev = device or golden.Device(golden.Geometry(config, lanes), timeout=timeout)
    out = []
    for i, chunk in enumerate(chunks):
        if gaps:
            dev.idle(gaps[i])
        out.append(dev.feed(chunk))
    return out


def read_all(g: golden.Geometry, seq: int = 0) -> list[bytes]:
    """READ frames for every word of every tensor (LFSR states included), then COUNTERS."""
    out = []
    for sel in range(5):
        depth = g.depth(sel)
        for a in range(0, depth, golden.MAX_READ):
            n = min(golden.MAX_READ, depth - a)
            out.append(frame(Cmd.READ, bytes([sel]) + a.to_bytes(2, "little") + bytes([n]), seq))
    return out + [frame(Cmd.COUNTERS, b"", seq)]


def streams(g: golden.Geometry, *, timeout: int, max_pieces: int, max_garbage: int):
    """A hypothesis strategy for ``(chunks, gaps)`` of up to ``max_pieces`` chunks: random
    bytes (up to ``max_garbage``, rich in ``SYNC``), frames of every command (good and bad
    arguments and lengths, good and wrong model hashes, random ``seq``), frames sent twice,
    repeats of the previous frame, that frame with a flipped bit or cut short, and pauses past
    ``timeout`` (a gap is 0 or ``timeout + 5``).

    Frames are those the device must survive, not only those a host sends; LFSR states
    written are never 0 (the golden device has no position for that state).
    """
    from hypothesis import strategies as st
    c = g.config
    good_hash = g.model_hash
    # mostly good: a frame refused at its first check exercises little
    hashes = st.sampled_from([good_hash] * 4 + [bytes(8), good_hash[:7] + bytes([good_hash[7] ^ 1])])
    seqs = st.integers(0, 255)
    odd = st.integers(0, 5).map(lambda k: k == 5)      # one time in six (not the simplest draw)

    def word(sel):
        top = (1 << g.word_bits) - 1
        return (st.integers(1, (1 << LFSR_BITS) - 1) if sel == 4 else st.integers(0, top))

    @st.composite
    def place(draw, most):
        """``(sel, addr, n)``: mostly inside a tensor, sometimes past its end or unknown."""
        if draw(odd):
            sel = draw(st.integers(0, 5))
            return sel, draw(st.integers(0, g.depth(sel) + 1)), draw(st.integers(0, most + 1))
        sel = draw(st.integers(0, 4))
        addr = draw(st.integers(0, g.depth(sel) - 1))
        return sel, addr, draw(st.integers(1, min(most, g.depth(sel) - addr)))

    @st.composite
    def write(draw):
        sel, addr, n = draw(place(3))
        words = draw(st.lists(word(min(sel, 4)), min_size=n, max_size=n))
        body = b"".join(w.to_bytes(g.word_bytes, "little") for w in words)
        body += draw(st.binary(min_size=1, max_size=1)) if draw(odd) else b""
        return draw(hashes) + bytes([sel]) + addr.to_bytes(2, "little") + body

    @st.composite
    def read(draw):
        sel, addr, n = draw(place(golden.MAX_READ))
        extra = draw(st.binary(min_size=1, max_size=1)) if draw(odd) else b""
        return bytes([sel]) + addr.to_bytes(2, "little") + bytes([n]) + extra

    def resized(payload_strategy):
        """A payload, sometimes a byte short or long."""
        @st.composite
        def draw_it(draw):
            p = draw(payload_strategy)
            if not draw(odd):
                return p
            return p[:-1] if draw(st.booleans()) else p + b"\x00"
        return draw_it()

    pixels = st.binary(min_size=c.pixels, max_size=c.pixels)
    label = st.one_of(st.integers(0, c.outputs - 1), st.integers(0, c.outputs)).map(lambda v: bytes([v]))
    shift = odd.flatmap(lambda bad: st.integers(LFSR_BITS + 1, 255) if bad else st.integers(0, LFSR_BITS))
    payloads = {
        Cmd.INFO: st.sampled_from([b""] * 5 + [b"x"]),
        Cmd.COUNTERS: st.sampled_from([b""] * 5 + [b"\x00"]),
        Cmd.READ: read(),
        Cmd.WRITE: write(),
        Cmd.CLASSIFY: resized(pixels),
        Cmd.TRAIN: resized(st.tuples(hashes, label, pixels).map(b"".join)),
        Cmd.SHIFTS: resized(st.tuples(hashes, st.lists(shift, min_size=4, max_size=4).map(bytes))
                            .map(b"".join)),
        0x42: st.binary(max_size=3),
    }
    commands = sorted(payloads)
    one_frame = st.sampled_from(commands + [Cmd.WRITE, Cmd.TRAIN, Cmd.SHIFTS, Cmd.CLASSIFY]).flatmap(
        lambda cmd: st.tuples(st.just(cmd), payloads[cmd], seqs)).map(lambda t: frame(t[0], t[1], t[2]))
    garbage = st.binary(min_size=1, max_size=max_garbage).flatmap(
        lambda b: st.lists(st.integers(0, len(b) - 1), max_size=3).map(
            lambda at: bytes(golden.SYNC if i in at else v for i, v in enumerate(b))))
    piece = st.one_of(
        st.tuples(st.just("garbage"), garbage),
        st.tuples(st.just("frame"), one_frame),
        st.tuples(st.just("frame"), one_frame),
        st.tuples(st.just("twice"), one_frame),
        st.tuples(st.just("repeat"), st.none()),
        st.tuples(st.just("flip"), st.integers(0, 1 << 20)),
        st.tuples(st.just("cut"), st.integers(1, 1 << 20)),
        st.tuples(st.just("pause"), st.none()),
    )

    @st.composite
    def draw_stream(draw):
        chunks, gaps, last = [], [], frame(Cmd.INFO)
        pause = False
        for kind, arg in draw(st.lists(piece, min_size=max_pieces // 2, max_size=max_pieces)):
            if kind == "pause":
                pause = True
                continue
            if kind in ("frame", "twice"):
                last = arg
                chunk = arg * (2 if kind == "twice" else 1)
            elif kind == "repeat":
                chunk = last
            elif kind == "flip":
                f = bytearray(last)
                bit = arg % (8 * len(f))
                f[bit // 8] ^= 1 << (bit % 8)
                chunk = bytes(f)
            elif kind == "cut":
                chunk = last[:arg % len(last)]
            else:
                chunk = arg
            chunks.append(chunk)
            gaps.append(timeout + 5 if pause else 0)
            pause = False
        return chunks, gaps
    return draw_stream()


class _CountingDevice(golden.Device):
    """The golden device, counting the frames it executed by command and outcome."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.executed = Counter()

    def _execute(self, cmd, seq, payload):
        reply = super()._execute(cmd, seq, payload)
        name = Cmd(cmd).name if cmd in Cmd._value2member_map_ else "UNKNOWN"
        refused = golden.FrameReader().feed(reply)[0].cmd == golden.NAK
        self.executed[f"{name} {'refused' if refused else 'done'}"] += 1
        return reply


def compare_stream(chunks, gaps, *, config: Config = FUZZ_CONFIG, lanes: int = FUZZ_LANES,
                   timeout: int = FUZZ_TIMEOUT) -> dict:
    """Feed ``chunks`` (with ``gaps``), then a pause and :func:`read_all`, to the RTL and to
    the golden device; ``AssertionError`` unless every reply is the same bytes and the final
    reads are all answered. Returns what the stream made the device do: ``bytes``,
    ``frames`` (good CRC), ``crc_errors``, ``dropped`` bytes, ``repeats`` (answered again,
    not executed) and ``executed`` (by command and outcome)."""
    g = golden.Geometry(config, lanes)
    reads = read_all(g)
    dev = _CountingDevice(g, timeout=timeout)
    want = golden_replies(config, lanes, chunks, timeout=timeout, gaps=gaps, device=dev)
    stats = {"bytes": sum(map(len, chunks)), "frames": dev.frames, "crc_errors": dev.crc_errors,
             "dropped": dev.dropped, "repeats": dev.frames - sum(dev.executed.values()),
             "executed": dict(dev.executed)}
    pause = [timeout + 5] + [0] * (len(reads) - 1)
    want += golden_replies(config, lanes, reads, timeout=timeout, gaps=pause, device=dev)
    got = run_link(config, lanes, list(chunks) + reads, timeout=timeout, gaps=list(gaps) + pause)
    for i, (a, b) in enumerate(zip(got, want)):
        chunk = (list(chunks) + reads)[i]
        assert a == b, f"chunk {i} of {len(want)} ({chunk.hex()}): RTL sent {a.hex()}, golden {b.hex()}"
    final = [golden.FrameReader().feed(w) for w in want[-len(reads):]]
    assert all(len(f) == 1 and f[0].cmd != golden.NAK for f in final), "the final reads were not answered"
    return stats
