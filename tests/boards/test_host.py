"""The host driver against the reference device (the protocol's spec) on an in-memory line."""

import numpy as np
import pytest

from eqfpga import data
from eqfpga.boards.host import Host, HostError
from eqfpga.config import Config
from eqfpga.golden import host_link as link
from eqfpga.golden import network

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

    with pytest.raises(HostError, match="no reply to INFO after two tries"):
        Host(Dead(), timeout=0.05, retry_after=0.0).identify()
