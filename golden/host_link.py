"""The host link: a framed byte protocol over the UART, and the device it talks to (the spec).

Hardware twin: :class:`eqfpga.hw.host_link.HostLink`, which must answer every byte stream with
exactly the bytes :class:`Device` answers. The host driver (:mod:`eqfpga.boards.host`) speaks
the same frames.

**Frame** (both directions, protocol version 2)::

    SYNC=0xA5 | cmd | seq | len_lo | len_hi | payload[len] | crc (4 bytes, little-endian)

``crc`` is CRC-32 (IEEE 802.3, as ``zlib.crc32``: reflected, polynomial 0xEDB88320, register
starts at 0xFFFFFFFF and is complemented at the end) over ``cmd, seq, len_lo, len_hi,
payload``; :func:`crc32` is its only definition. Multi-byte fields are little-endian. ``seq``
is the host's request number; every reply, NAK included, carries its request's ``seq``.

**Parser and resync rule.** The device hunts for ``SYNC``, dropping (and counting) every other
byte. After ``SYNC`` it reads ``cmd``, ``seq`` and ``len``; a ``len`` over :data:`MAX_PAYLOAD`
drops the frame at once. A frame whose CRC is wrong is dropped silently (counted). If no byte
arrives for :attr:`Device.timeout` byte times in the middle of a frame, the frame is dropped.
In every case the parser returns to hunting, so garbage can delay the device by at most one
frame length plus the timeout and never hangs it; a host that gets no answer waits out the
timeout and sends the same frame again.

**Repeats.** A host resends a request it got no reply to as the identical frame (same
``seq``), so a retry can arrive after the first copy executed (its reply was lost or late).
The device remembers the ``seq`` and CRC of the last frame it executed, unless that frame was
INFO, READ or COUNTERS (which only report: they are executed every time, and the device then
remembers no frame). A good frame whose ``seq`` and CRC both equal the remembered ones is not
executed again: the device sends the reply it sent the first time. So WRITE, TRAIN and SHIFTS
act once however often they are resent, and a retried CLASSIFY does not count a sample twice.

**Commands** (the reply's ``cmd`` is ``cmd | 0x80``; an error reply has ``cmd = NAK`` and a
one-byte payload, the :class:`Error` code). Only frames with a good CRC are executed. Every
frame that changes the device's state starts with the 8-byte model hash (the first 8 bytes of
:attr:`~eqfpga.config.Config.model_hash`).

=========== ===================================================== ======================================
cmd         request payload                                       reply payload
=========== ===================================================== ======================================
INFO 0x01   (none)                                                protocol version, model hash (8 bytes),
                                                                  inputs (2), hidden (2), outputs,
                                                                  lanes, word bytes
WRITE 0x02  model hash (8), sel, addr (2), n words (word bytes    (none)
            each)
READ 0x03   sel, addr (2), n (1..:data:`MAX_READ`)                n words
CLASSIFY 04 ``pixels`` pixels                                     prediction, ``outputs`` spike counts
TRAIN 0x05  model hash (8), label, ``pixels`` pixels              prediction, ``outputs`` spike counts
SHIFTS 0x06 model hash (8), w1, w2, b1, b2 learning shifts        (none)
COUNTERS 07 (none)                                                frames, CRC errors, dropped bytes,
                                                                  samples (4 bytes each)
=========== ===================================================== ======================================

Each command checks the length first (BAD_LENGTH), then the model hash (WRONG_MODEL: made for
another configuration), then the rest, and changes nothing unless every check passes. WRITE
checks, in this order: the length holds the header and one word, the model hash, the length is
a whole number of words, the words fit the tensor. ``sel``/``addr``/words are those of the
accelerator's host port (:class:`~eqfpga.hw.accelerator.Tensor`; a word is ``lanes`` weights of
``weight_bits``, lane 0 lowest, or a bias / LFSR state sign-extended),
``word bytes = ceil(word_bits / 8)``. ``frames`` counts every frame with a good CRC, repeats
included.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from eqfpga.config import LFSR_BITS, Config
from eqfpga.golden import ep_update, lfsr, network, train

__all__ = ["SYNC", "NAK", "MAX_PAYLOAD", "MAX_READ", "PROTOCOL_VERSION", "HEADER_BYTES",
           "CRC_BYTES", "HASH_BYTES", "TRAIN_OVERHEAD", "Cmd", "Error", "crc32_register", "crc32",
           "frame", "Frame", "Geometry", "Device", "FrameReader", "param_entries", "write_payloads"]

SYNC = 0xA5
NAK = 0x7F
PROTOCOL_VERSION = 2
#: SYNC, cmd, seq, len_lo, len_hi.
HEADER_BYTES = 5
CRC_BYTES = 4
#: The model hash that starts every state-changing frame.
HASH_BYTES = 8
#: Bytes of a TRAIN payload besides the pixels: model hash and label.
TRAIN_OVERHEAD = HASH_BYTES + 1
#: Largest payload the device accepts: a TRAIN frame of images up to 1,015 pixels fits, and
#: the frame buffer is two iCE40 block RAMs (512 x 8 each).
MAX_PAYLOAD = 1024
#: Most words one READ returns.
MAX_READ = 64


class Cmd(enum.IntEnum):
    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    CLASSIFY = 0x04
    TRAIN = 0x05
    SHIFTS = 0x06
    COUNTERS = 0x07


class Error(enum.IntEnum):
    UNKNOWN_COMMAND = 1
    WRONG_MODEL = 2       #: WRITE with another configuration's model hash
    BAD_LENGTH = 3        #: payload length does not fit the command
    BAD_ADDRESS = 4       #: sel unknown, or addr + n past the end of the tensor
    BAD_LABEL = 5
    BAD_SHIFT = 6


#: The CRC-32 polynomial, reflected (IEEE 802.3).
CRC32_POLY = 0xEDB88320


def crc32_register(data: bytes | bytearray, register: int = 0xFFFFFFFF) -> int:
    """The CRC-32 shift register after ``data``, starting from ``register``: reflected, one
    bit at a time (bit 0 of each byte first). The definition of the protocol's CRC."""
    for b in data:
        register ^= b
        for _ in range(8):
            register = (register >> 1) ^ (CRC32_POLY if register & 1 else 0)
    return register


def crc32(data: bytes | bytearray) -> int:
    """CRC-32 of ``data`` as a frame carries it (equal to ``zlib.crc32(data)``)."""
    return crc32_register(data) ^ 0xFFFFFFFF


def frame(cmd: int, payload: bytes = b"", seq: int = 0) -> bytes:
    """One frame: SYNC, cmd, seq, length, payload, CRC-32."""
    if len(payload) > 0xFFFF:
        raise ValueError("payload too long for a frame")
    if not 0 <= seq <= 0xFF:
        raise ValueError(f"seq must be 0..255, not {seq}")
    body = bytes([cmd, seq, len(payload) & 0xFF, len(payload) >> 8]) + bytes(payload)
    return bytes([SYNC]) + body + crc32(body).to_bytes(CRC_BYTES, "little")


class Frame(NamedTuple):
    """A frame taken from a byte stream."""

    cmd: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class Geometry:
    """What the host must know of a device's memories: from its configuration and lanes."""

    config: Config
    lanes: int

    @property
    def groups(self) -> int:
        return self.config.hidden // self.lanes

    @property
    def word_bits(self) -> int:
        c = self.config
        return max(self.lanes * c.weight_bits, c.bias_bits, LFSR_BITS)

    @property
    def word_bytes(self) -> int:
        return -(-self.word_bits // 8)

    def depth(self, sel: int) -> int:
        """Words of tensor ``sel`` (0 for an unknown one)."""
        c, G = self.config, self.groups
        return {0: c.inputs * G, 1: c.outputs * G, 2: c.hidden, 3: c.outputs, 4: 4}.get(sel, 0)

    @property
    def model_hash(self) -> bytes:
        return bytes.fromhex(self.config.model_hash[:16])

    def info(self) -> bytes:
        c = self.config
        return (bytes([PROTOCOL_VERSION]) + self.model_hash + c.inputs.to_bytes(2, "little")
                + c.hidden.to_bytes(2, "little") + bytes([c.outputs, self.lanes, self.word_bytes]))


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


@dataclass
class Device:
    """The reference device: parser, counters and the golden network behind the port.

    :meth:`feed` takes received bytes and returns the bytes sent back. ``idle(byte_times)``
    tells it that the line was quiet that long (the inter-byte timeout).
    """

    geometry: Geometry
    params: network.Params | None = None
    streams: ep_update.Streams | None = None
    timeout: int = 64
    frames: int = 0
    crc_errors: int = 0
    dropped: int = 0
    samples: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _shifts: tuple | None = None
    #: ``(seq, crc, reply)`` of the last frame executed, None after INFO / READ / COUNTERS
    _last: tuple | None = None

    def __post_init__(self):
        c = self.geometry.config
        if self.params is None:
            z = np.zeros
            self.params = network.Params([z((c.inputs, c.hidden), np.int64), z((c.hidden, c.outputs), np.int64)],
                                         [z(c.hidden, np.int64), z(c.outputs, np.int64)])
        if self.streams is None:
            self.streams = ep_update.Streams.seeded(c)
        self._shifts = (c.w1_shift, c.w2_shift, c.b1_shift, c.b2_shift)

    # -- parser --------------------------------------------------------------------------
    def idle(self, byte_times: int) -> None:
        if byte_times >= self.timeout and self._buf:
            self._buf.clear()

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for b in data:
            out += self._byte(b)
        return bytes(out)

    def _byte(self, b: int) -> bytes:
        buf = self._buf
        if not buf:
            if b == SYNC:
                buf.append(b)
            else:
                self.dropped += 1
            return b""
        buf.append(b)
        if len(buf) < HEADER_BYTES:
            return b""
        n = buf[3] | buf[4] << 8
        if n > MAX_PAYLOAD:
            buf.clear()
            return b""
        if len(buf) < HEADER_BYTES + n + CRC_BYTES:
            return b""
        body, crc = bytes(buf[1:-CRC_BYTES]), int.from_bytes(buf[-CRC_BYTES:], "little")
        buf.clear()
        if crc32(body) != crc:
            self.crc_errors += 1
            return b""
        self.frames += 1
        cmd, seq = body[0], body[1]
        if self._last is not None and self._last[:2] == (seq, crc):
            return self._last[2]
        reply = self._execute(cmd, seq, body[HEADER_BYTES - 1:])
        reports = cmd in (Cmd.INFO, Cmd.READ, Cmd.COUNTERS)
        self._last = None if reports else (seq, crc, reply)
        return reply

    # -- commands ------------------------------------------------------------------------
    def _execute(self, cmd: int, seq: int, payload: bytes) -> bytes:
        g, c = self.geometry, self.geometry.config

        def nak(e: Error) -> bytes:
            return frame(NAK, bytes([e]), seq)

        def reply(data: bytes = b"") -> bytes:
            return frame(cmd | 0x80, data, seq)

        n = len(payload)
        if cmd == Cmd.INFO:
            return reply(g.info()) if n == 0 else nak(Error.BAD_LENGTH)
        if cmd == Cmd.COUNTERS:
            if n:
                return nak(Error.BAD_LENGTH)
            return reply(b"".join(v.to_bytes(4, "little") for v in
                                  (self.frames, self.crc_errors, self.dropped, self.samples)))
        if cmd == Cmd.WRITE:
            wb = g.word_bytes
            if n < 11 + wb:
                return nak(Error.BAD_LENGTH)
            if payload[:8] != g.model_hash:
                return nak(Error.WRONG_MODEL)
            if (n - 11) % wb:
                return nak(Error.BAD_LENGTH)
            sel, addr, count = payload[8], payload[9] | payload[10] << 8, (n - 11) // wb
            if addr + count > g.depth(sel):
                return nak(Error.BAD_ADDRESS)
            for i in range(count):
                word = int.from_bytes(payload[11 + i * wb:11 + (i + 1) * wb], "little")
                self._write(sel, addr + i, word)
            return reply()
        if cmd == Cmd.READ:
            if n != 4:
                return nak(Error.BAD_LENGTH)
            sel, addr, count = payload[0], payload[1] | payload[2] << 8, payload[3]
            if not 1 <= count <= MAX_READ:
                return nak(Error.BAD_LENGTH)
            if addr + count > g.depth(sel):
                return nak(Error.BAD_ADDRESS)
            return reply(b"".join(self._read(sel, addr + i).to_bytes(g.word_bytes, "little")
                                  for i in range(count)))
        if cmd in (Cmd.CLASSIFY, Cmd.TRAIN):
            training = cmd == Cmd.TRAIN
            head = TRAIN_OVERHEAD if training else 0
            if n != c.pixels + head:
                return nak(Error.BAD_LENGTH)
            if training and payload[:HASH_BYTES] != g.model_hash:
                return nak(Error.WRONG_MODEL)
            label = payload[HASH_BYTES] if training else 0
            if label >= c.outputs:
                return nak(Error.BAD_LABEL)
            pixels = np.frombuffer(payload[head:], np.uint8).astype(np.int64)
            self.samples += 1
            if training:
                rule = replace(c, **dict(zip(("w1_shift", "w2_shift", "b1_shift", "b2_shift"),
                                             self._shifts)))
                r = train.train_sample(pixels, label, self.params, rule, self.streams)
                pred, counts = r.prediction, r.spike_counts
            else:
                inf = network.infer(pixels, self.params, c)
                pred, counts = int(inf.prediction[0]), inf.spike_counts[0]
            return reply(bytes([pred]) + bytes(int(v) for v in counts))
        if cmd == Cmd.SHIFTS:
            if n != HASH_BYTES + 4:
                return nak(Error.BAD_LENGTH)
            if payload[:HASH_BYTES] != g.model_hash:
                return nak(Error.WRONG_MODEL)
            shifts = tuple(payload[HASH_BYTES:])
            if max(shifts) > LFSR_BITS:
                return nak(Error.BAD_SHIFT)
            self._shifts = shifts
            return reply()
        return nak(Error.UNKNOWN_COMMAND)

    # -- the port's words ----------------------------------------------------------------
    def _write(self, sel: int, addr: int, word: int) -> None:
        c, g, p = self.geometry.config, self.geometry, self.params
        P, G, wb = g.lanes, g.groups, c.weight_bits
        lanes = [_signed(word >> (l * wb), wb) for l in range(P)]
        if sel == 0:
            i, grp = divmod(addr, G)
            p.w1[i, grp * P:(grp + 1) * P] = lanes
        elif sel == 1:
            k, grp = divmod(addr, G)
            p.w2[grp * P:(grp + 1) * P, k] = lanes
        elif sel == 2:
            p.b1[addr] = _signed(word, c.bias_bits)
        elif sel == 3:
            p.b2[addr] = _signed(word, c.bias_bits)
        else:
            names = ("w1", "w2", "b1", "b2")
            setattr(self.streams, names[addr], lfsr.position_of(word & lfsr.PERIOD))

    def _read(self, sel: int, addr: int) -> int:
        c, g, p = self.geometry.config, self.geometry, self.params
        P, G, wb = g.lanes, g.groups, c.weight_bits
        mask = (1 << g.word_bits) - 1
        if sel in (0, 1):
            if sel == 0:
                i, grp = divmod(addr, G)
                lanes = p.w1[i, grp * P:(grp + 1) * P]
            else:
                k, grp = divmod(addr, G)
                lanes = p.w2[grp * P:(grp + 1) * P, k]
            return sum((int(v) & ((1 << wb) - 1)) << (l * wb) for l, v in enumerate(lanes))
        if sel in (2, 3):
            return int((p.b1 if sel == 2 else p.b2)[addr]) & mask
        return lfsr.state_at(self.streams.as_list()[addr])


def param_entries(g: Geometry, params, streams: ep_update.Streams | None = None) -> list[tuple[int, int, int]]:
    """``(sel, addr, word)`` for every word of ``params`` (and the LFSR ``streams``), as the
    host port stores them: W1 word ``i*G + g`` holds ``W1[i, gP .. gP+P-1]`` (lane 0 lowest),
    W2 word ``k*G + g`` holds ``W2[gP .. gP+P-1, k]``, biases one per word."""
    c, P, G, wb = g.config, g.lanes, g.groups, g.config.weight_bits
    lane_mask, mask = (1 << wb) - 1, (1 << g.word_bits) - 1

    def word(values):
        return sum((int(v) & lane_mask) << (l * wb) for l, v in enumerate(values))

    out = [(0, i * G + k, word(params.w1[i, k * P:(k + 1) * P])) for i in range(c.inputs) for k in range(G)]
    out += [(1, o * G + k, word(params.w2[k * P:(k + 1) * P, o])) for o in range(c.outputs) for k in range(G)]
    out += [(2, j, int(v) & mask) for j, v in enumerate(params.b1)]
    out += [(3, k, int(v) & mask) for k, v in enumerate(params.b2)]
    if streams is not None:
        out += [(4, i, lfsr.state_at(pos)) for i, pos in enumerate(streams.as_list())]
    return out


def write_payloads(g: Geometry, entries, words_per_frame: int = 64) -> list[bytes]:
    """WRITE payloads for ``(sel, addr, word)`` entries (runs of consecutive addresses)."""
    payloads, i = [], 0
    while i < len(entries):
        sel, addr, _ = entries[i]
        j = i
        while (j < len(entries) and j - i < words_per_frame and entries[j][0] == sel
               and entries[j][1] == addr + (j - i)):
            j += 1
        words = b"".join(w.to_bytes(g.word_bytes, "little") for _, _, w in entries[i:j])
        payloads.append(g.model_hash + bytes([sel]) + addr.to_bytes(2, "little") + words)
        i = j
    return payloads


class FrameReader:
    """Splits a received byte stream into :class:`Frame` s, skipping garbage.

    A frame is taken where a ``SYNC`` starts a complete frame with a good CRC; garbage that
    looks like the start of a long frame does not hide a good frame that follows it.
    """

    def __init__(self):
        self._buf = bytearray()

    def _at(self, i: int):
        """``(length, frame)`` of the candidate at ``i``: frame None if incomplete, length
        None if it cannot be a frame."""
        b = self._buf
        if len(b) < i + HEADER_BYTES:
            return 0, None
        n = b[i + 3] | b[i + 4] << 8
        if n > MAX_PAYLOAD:
            return None, None
        end = i + HEADER_BYTES + n
        if len(b) < end + CRC_BYTES:
            return 0, None
        body = bytes(b[i + 1:end])
        if crc32(body) != int.from_bytes(b[end:end + CRC_BYTES], "little"):
            return None, None
        return HEADER_BYTES + n + CRC_BYTES, Frame(body[0], body[1], body[HEADER_BYTES - 1:])

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out = []
        while True:
            found, pending = None, None
            i = self._buf.find(SYNC)
            while i >= 0:
                size, f = self._at(i)
                if f is not None:
                    found = (i, size, f)
                    break
                if size == 0 and pending is None:
                    pending = i
                i = self._buf.find(SYNC, i + 1)
            if found is None:
                del self._buf[:len(self._buf) if pending is None else pending]
                return out
            i, size, f = found
            out.append(f)
            del self._buf[:i + size]
