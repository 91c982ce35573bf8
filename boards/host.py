"""Host driver for the device's UART link (the frames of :mod:`eqfpga.golden.host_link`).

:class:`Host` talks to anything with pyserial's ``write``/``read``: a board's USB UART, the
virtual board's pseudo-terminal, or (in tests) the reference device. Every request waits for
its reply; a reply that does not come within ``timeout`` seconds is asked for again once,
after the device's inter-byte timeout has passed, so that garbage on the line cannot leave
the two sides out of step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from eqfpga.config import Config
from eqfpga.golden import host_link as link
from eqfpga.golden.host_link import Cmd, Error, Geometry

__all__ = ["Host", "HostError", "DeviceInfo", "open_port"]


class HostError(Exception):
    """The device refused a request, or did not answer; one line."""


@dataclass(frozen=True)
class DeviceInfo:
    protocol: int
    model_hash: bytes
    inputs: int
    hidden: int
    outputs: int
    lanes: int
    word_bytes: int


def open_port(port: str, baud: int = 115_200, timeout: float = 0.05):
    """A pyserial port (a device path, a pty, or any pyserial URL)."""
    import serial
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError) as e:
        raise HostError(f"cannot open {port}: {e}") from None


class Host:
    def __init__(self, io, *, timeout: float = 5.0, retry_after: float = 0.05):
        self._io = io
        self._reader = link.FrameReader()
        self.timeout = timeout
        self.retry_after = retry_after
        self.info = None

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one frame and return the reply's payload; :class:`HostError` on NAK or silence."""
        for attempt in range(2):
            self._io.write(link.frame(cmd, payload))
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                data = self._io.read(4096)
                for rcmd, rpayload in self._reader.feed(data or b""):
                    if rcmd == cmd | 0x80:
                        return rpayload
                    if rcmd == link.NAK:
                        code = rpayload[0] if rpayload else 0
                        name = Error(code).name if code in Error._value2member_map_ else str(code)
                        raise HostError(f"the device refused {Cmd(cmd).name}: {name.lower().replace('_', ' ')}")
            time.sleep(self.retry_after)     # let the device drop any partial frame
        raise HostError(f"no reply to {Cmd(cmd).name} after two tries of {self.timeout:g} s")

    # -- commands ------------------------------------------------------------------------
    def identify(self) -> DeviceInfo:
        p = self.request(Cmd.INFO)
        if len(p) != 16:
            raise HostError(f"INFO reply of {len(p)} bytes, expected 16: not an eqfpga device?")
        self.info = DeviceInfo(p[0], p[1:9], int.from_bytes(p[9:11], "little"),
                               int.from_bytes(p[11:13], "little"), p[13], p[14], p[15])
        return self.info

    def check(self, config: Config) -> Geometry:
        """The device's geometry, after checking it runs ``config``."""
        info = self.info or self.identify()
        if info.model_hash != bytes.fromhex(config.model_hash[:16]):
            raise HostError(f"the device runs another configuration (model hash "
                            f"{info.model_hash.hex()}, {config.name!r} is {config.model_hash[:16]})")
        return Geometry(config, info.lanes)

    def load(self, config: Config, params, streams=None, progress=None) -> None:
        g = self.check(config)
        payloads = link.write_payloads(g, link.param_entries(g, params, streams))
        for p in payloads:
            self.request(Cmd.WRITE, p)
            if progress is not None:
                progress.update(1)

    def read_params(self, config: Config):
        from eqfpga.golden.network import Params
        g = self.check(config)
        c, P, G = config, g.lanes, g.groups
        words = {}
        for sel in range(4):
            depth, out = g.depth(sel), []
            for a in range(0, depth, link.MAX_READ):
                n = min(link.MAX_READ, depth - a)
                p = self.request(Cmd.READ, bytes([sel]) + a.to_bytes(2, "little") + bytes([n]))
                out += [int.from_bytes(p[i * g.word_bytes:(i + 1) * g.word_bytes], "little") for i in range(n)]
            words[sel] = out

        def lanes(word):
            wb = c.weight_bits
            v = [(word >> (l * wb)) & ((1 << wb) - 1) for l in range(P)]
            return [x - (1 << wb) if x >> (wb - 1) else x for x in v]

        def signed(word):
            x = word & ((1 << c.bias_bits) - 1)
            return x - (1 << c.bias_bits) if x >> (c.bias_bits - 1) else x

        w1 = np.array([lanes(w) for w in words[0]], np.int64).reshape(c.inputs, G * P)
        w2 = np.array([lanes(w) for w in words[1]], np.int64).reshape(c.outputs, G * P).T.copy()
        return Params(w1, w2, np.array([signed(w) for w in words[2]], np.int64),
                      np.array([signed(w) for w in words[3]], np.int64))

    def _sample(self, cmd: int, payload: bytes, outputs: int) -> tuple[int, np.ndarray]:
        p = self.request(cmd, payload)
        if len(p) != 1 + outputs:
            raise HostError(f"{Cmd(cmd).name} reply of {len(p)} bytes, expected {1 + outputs}")
        return p[0], np.frombuffer(p[1:], np.uint8).astype(np.int64)

    def classify(self, pixels, outputs: int) -> tuple[int, np.ndarray]:
        """Prediction and output spike counts for one 8-bit image."""
        return self._sample(Cmd.CLASSIFY, bytes(np.asarray(pixels, np.uint8).ravel()), outputs)

    def train(self, pixels, label: int, outputs: int) -> tuple[int, np.ndarray]:
        return self._sample(Cmd.TRAIN, bytes([label]) + bytes(np.asarray(pixels, np.uint8).ravel()),
                            outputs)

    def set_shifts(self, w1: int, w2: int, b1: int, b2: int) -> None:
        self.request(Cmd.SHIFTS, bytes([w1, w2, b1, b2]))

    def counters(self) -> dict:
        p = self.request(Cmd.COUNTERS)
        names = ("frames", "crc_errors", "dropped_bytes", "samples")
        return {n: int.from_bytes(p[4 * i:4 * i + 4], "little") for i, n in enumerate(names)}
