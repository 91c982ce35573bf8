"""The host driver against the reference device (the protocol's spec) on an in-memory line."""

import dataclasses
import re

import numpy as np
import pytest
import serial

from eqfpga import data
from eqfpga.boards.host import Host, HostError
from eqfpga.config import Config
from eqfpga.golden import ep_update, network, train
from eqfpga.golden import host_link as link

C = Config(name="host", inputs=64, hidden=16, free_steps=12, nudge_steps=6, input_shift=8,
           w1_init=30, w2_init=20, seed=5)


class Line:
    """The device at the far end of a line that may add garbage before each reply."""

    def __init__(self, device, garbage=b""):
        self.device, self.garbage, self.pending = device, garbage, bytearray()

    def write(self, data):
        reply = self.device.feed(data)
        self.pending += (self.garbage + reply) if reply else b""

    def read(self, n):
        out = bytes(self.pending[:n])
        del self.pending[:n]
        return out


def _device(lanes=4):
    return link.Device(link.Geometry(C, lanes))


def test_identify_load_read_classify():
    dev = _device()
    host = Host(Line(dev, garbage=b"\xa5\x00\xff\x13"), timeout=0.2)
    info = host.identify()
    assert (info.inputs, info.hidden, info.outputs, info.lanes) == (64, 16, 10, 4)
    p = network.init_params(C)
    host.load(C, p)
    back = host.read_params(C)
    for a, b in zip(back.arrays().values(), p.arrays().values()):
        assert (a == b).all()
    x = data.downsample(data.load("test").images[:3], 8)
    for img in x:
        pred, counts = host.classify(img, C.outputs)
        want = network.infer(img, p, C)
        assert pred == want.prediction[0] and (counts == want.spike_counts[0]).all()
    assert host.counters()["samples"] == 3


def test_refusals_are_host_errors():
    host = Host(Line(_device()), timeout=0.2)
    with pytest.raises(HostError, match="bad label"):
        host.train(np.zeros(64, np.uint8), 12, C.outputs)
    with pytest.raises(HostError, match="bad shift"):
        host.set_shifts(1, 2, 3, 99)
    other = Config(name="other", inputs=64, hidden=16, seed=9, w1_init=3)
    with pytest.raises(HostError, match="another configuration"):
        host.load(other, network.init_params(other))


def test_silence_is_a_host_error():
    class Dead:
        def write(self, data):
            pass

        def read(self, n):
            return b""

    with pytest.raises(HostError, match=r"^no reply to INFO after 2 tries of 0.05 s$"):
        Host(Dead(), timeout=0.05, tries=2, retry_after=0.0).identify()


class LateLine(Line):
    """A line that holds a reply back: ``hold(i)`` says for how many more writes the reply to
    write ``i`` waits (0: at once, None: lost). A held reply arrives after the host's timeout,
    once the host sent again (the retry of the same request, or the next one)."""

    def __init__(self, device, hold):
        super().__init__(device)
        self.hold, self.writes, self.held, self.sent = hold, 0, [], []

    def write(self, data):
        self.sent.append(bytes(data))
        self.held = [(n - 1, r) for n, r in self.held]
        self.pending += b"".join(r for n, r in self.held if n <= 0)
        self.held = [(n, r) for n, r in self.held if n > 0]
        reply, wait = self.device.feed(data), self.hold(self.writes)
        self.writes += 1
        if wait == 0:
            self.pending += reply
        elif wait is not None:
            self.held.append((wait, reply))


def test_late_replies_never_answer_another_request():
    """Replies delayed past the timeout arrive during the retry or the next request: each
    image still gets its own answer (the late ones are stale by their seq)."""
    p = network.init_params(C)
    rng = np.random.default_rng(11)
    waits = rng.choice([0, 0, 1, 2], 400)
    line = LateLine(_device(), lambda i: int(waits[i]))
    host = Host(line, timeout=0.01, tries=3, retry_after=0.0)
    host.load(C, p)
    x = data.downsample(data.load("test").images[:40], 8)
    want_pred, want_counts = network.predict(x, p, C)
    got = [host.classify(img, C.outputs) for img in x]
    assert [g[0] for g in got] == list(want_pred)
    assert all((g[1] == w).all() for g, w in zip(got, want_counts))
    assert host.retries > 10 and host.stale > 10
    assert host.counters()["samples"] == len(x)        # a retried CLASSIFY is not run twice


def test_retry_is_the_identical_frame_and_trains_once():
    """The reply to the TRAIN is lost; the retry (the same frame) gets the device's first
    reply again, and the weights are those of one training step."""
    p = network.init_params(C)
    dev = _device()
    lost = None
    line = LateLine(dev, lambda i: None if i == lost else 0)
    host = Host(line, timeout=0.01, retry_after=0.0)
    host.load(C, p)
    host.set_shifts(9, 10, 5, 5)
    lost = line.writes
    img = data.downsample(data.load("train").images[:1], 8)[0]
    pred, counts = host.train(img, 3, C.outputs)
    assert line.sent[-1] == line.sent[-2] and host.retries == 1
    rule = dataclasses.replace(C, w1_shift=9, w2_shift=10, b1_shift=5, b2_shift=5)
    streams = ep_update.Streams.seeded(C)
    r = train.train_sample(img.astype(np.int64), 3, p, rule, streams)
    assert (pred, list(counts)) == (r.prediction, list(r.spike_counts))
    assert not host.read_params(C).differences(p) and dev.streams == streams
    assert host.counters()["samples"] == 1


@pytest.mark.parametrize("fails", ["read", "write"])
def test_a_port_that_fails_mid_request_is_a_host_error(fails):
    class Unplugged(Line):
        port = "/dev/ttyUSB7"

        def write(self, data):
            if fails == "write":
                raise serial.SerialException("write failed: [Errno 5] Input/output error")
            super().write(data)

        def read(self, n):
            if fails == "read":
                raise serial.SerialException("device reports readiness to read but returned no data\n"
                                             "(device disconnected or multiple access on port?)")
            return super().read(n)

    with pytest.raises(HostError, match=r"^the serial port /dev/ttyUSB7 stopped answering or was "
                                        r"closed: \S.*(error|\?\))$") as e:
        Host(Unplugged(_device()), timeout=0.05).identify()
    assert "\n" not in str(e.value)


def test_host_arguments_are_checked():
    for kw, msg in (({"timeout": 0}, "timeout must be > 0 seconds, not 0"),
                    ({"tries": 0}, "tries must be an integer >= 1, not 0"),
                    ({"retry_after": -1}, "retry_after must be >= 0 seconds, not -1")):
        with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
            Host(Line(_device()), **kw)
