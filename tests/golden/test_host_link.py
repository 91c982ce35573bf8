"""The host link's spec: the CRC, the frame, the reader, and the device's repeat and hash rules."""

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train
from eqfpga.golden import host_link as link
from eqfpga.golden.host_link import Cmd, Error, frame

C = Config(name="spec", inputs=16, hidden=8, outputs=3, free_steps=6, nudge_steps=3, input_shift=6,
           w1_init=30, w2_init=20, seed=4)
G = link.Geometry(C, 4)
HASH = G.model_hash


def _device(params=None) -> link.Device:
    return link.Device(G, params=params.copy() if params is not None else network.init_params(C))


def _reply(raw: bytes) -> link.Frame:
    (r,) = link.FrameReader().feed(raw)
    return r


def test_crc32_check_value():
    assert link.crc32(b"123456789") == 0xCBF43926
    assert link.crc32(b"") == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_crc32_is_zlibs(data):
    assert link.crc32(data) == zlib.crc32(data)


def test_frame_layout():
    f = frame(Cmd.READ, b"\x01\x02", seq=0x9C)
    assert f[:5] == bytes([0xA5, Cmd.READ, 0x9C, 2, 0]) and f[5:7] == b"\x01\x02"
    assert f[7:] == zlib.crc32(f[1:7]).to_bytes(4, "little")


def test_frame_reader_skips_garbage():
    f = frame(Cmd.INFO, b"abc", 17)
    reader = link.FrameReader()
    assert reader.feed(b"\x00\xa5\xff" + f[:4]) == []
    assert reader.feed(f[4:] + b"\x13") == [(Cmd.INFO, 17, b"abc")]
    bad = bytearray(f)
    bad[-1] ^= 1
    assert link.FrameReader().feed(bytes(bad) + f) == [(Cmd.INFO, 17, b"abc")]


def test_every_reply_echoes_its_seq():
    dev = _device()
    for seq, (cmd, payload) in enumerate([(Cmd.INFO, b""), (0x42, b""), (Cmd.SHIFTS, b"\x01"),
                                           (Cmd.COUNTERS, b"")], start=250):
        assert _reply(dev.feed(frame(cmd, payload, seq))).seq == seq


def test_wrong_model_hash_changes_nothing():
    p = network.init_params(C)
    dev = _device(p)
    x = bytes(range(C.pixels))
    other = bytes(8)
    for f in (frame(Cmd.TRAIN, other + b"\x01" + x, 1), frame(Cmd.SHIFTS, other + bytes(4), 2),
              frame(Cmd.WRITE, other + bytes([2, 0, 0]) + bytes(G.word_bytes), 3)):
        assert _reply(dev.feed(f)).payload == bytes([Error.WRONG_MODEL])
    assert not dev.params.differences(p) and dev.samples == 0
    assert dev.streams == ep_update.Streams.seeded(C)
    # the SHIFTS was refused: a training step uses the configuration's shifts
    dev.feed(frame(Cmd.TRAIN, HASH + b"\x01" + x, 4))
    streams = ep_update.Streams.seeded(C)
    train.train_sample(np.frombuffer(x, np.uint8).astype(np.int64), 1, p, C, streams)
    assert not dev.params.differences(p)


def test_repeated_train_trains_once():
    p = network.init_params(C)
    x = bytes(range(0, 4 * C.pixels, 4))
    f = frame(Cmd.TRAIN, HASH + b"\x02" + x, 7)
    dev = _device(p)
    first = dev.feed(f)
    assert dev.feed(f) == first                 # the same reply, not a second step
    assert dev.feed(f[:-1] + bytes([f[-1] ^ 1])) == b"" and dev.feed(f) == first
    streams = ep_update.Streams.seeded(C)
    r = train.train_sample(np.frombuffer(x, np.uint8).astype(np.int64), 2, p, C, streams)
    assert not dev.params.differences(p) and dev.streams == streams and dev.samples == 1
    assert _reply(first).payload == bytes([r.prediction]) + bytes(int(v) for v in r.spike_counts)
    assert dev.frames == 3 and dev.crc_errors == 1
    # a new seq is a new request; so is the old frame after a READ (the device forgot it)
    dev.feed(frame(Cmd.TRAIN, HASH + b"\x02" + x, 8))
    dev.feed(f)
    assert dev.samples == 3
    dev.feed(frame(Cmd.READ, bytes([2, 0, 0, 1]), 9))
    dev.feed(f)
    assert dev.samples == 4


def test_repeated_classify_and_refusal_answer_the_same_once():
    dev = _device()
    classify = frame(Cmd.CLASSIFY, bytes(range(C.pixels)), 1)
    assert dev.feed(classify) == dev.feed(classify) and dev.samples == 1
    refused = frame(Cmd.TRAIN, HASH + bytes([9]) + bytes(C.pixels), 2)
    assert dev.feed(refused) == dev.feed(refused) == frame(link.NAK, bytes([Error.BAD_LABEL]), 2)
    dev.feed(classify)                  # no longer the last frame: it runs again
    assert dev.samples == 2


def test_reports_run_again():
    dev = _device()
    counters = frame(Cmd.COUNTERS, b"", 5)
    a, b = (_reply(dev.feed(counters)).payload for _ in range(2))
    assert int.from_bytes(a[:4], "little") == 1 and int.from_bytes(b[:4], "little") == 2


def test_train_and_shifts_without_the_hash_are_refused():
    dev = _device()
    for cmd, payload in ((Cmd.TRAIN, b"\x01" + bytes(C.pixels)), (Cmd.SHIFTS, bytes([3, 4, 5, 6]))):
        assert _reply(dev.feed(frame(cmd, payload, 1))).payload == bytes([Error.BAD_LENGTH])
    assert dev.samples == 0 and dev._shifts == (C.w1_shift, C.w2_shift, C.b1_shift, C.b2_shift)
