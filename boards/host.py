"""Host driver for the device's UART link (the frames of :mod:`eqfpga.golden.host_link`).

:class:`Host` talks to anything with pyserial's ``write``/``read``: a board's USB UART, the
virtual board's pseudo-terminal, or (in tests) the reference device. Every request gets the
next ``seq`` (mod 256) and waits for the reply with that ``seq``; a reply with another
``seq`` is stale (the late answer to an earlier try or request) and is dropped, never taken
for this request's. A reply that does not come within ``timeout`` seconds is asked for again
with the identical frame, after the device's inter-byte timeout has passed (so it dropped any
partial frame), ``tries`` times in all; the device answers a repeat it already executed with
its first reply, so a retried TRAIN trains once.

A host's first request is INFO (made implicitly if need be): it makes the device forget its
last frame, which a new host's first ``seq`` could otherwise repeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import serial

from eqfpga.config import Config
from eqfpga.golden import host_link as link
from eqfpga.golden.host_link import Cmd, Error, Geometry

__all__ = ["Host", "HostError", "DeviceInfo", "open_port"]


class HostError(Exception):
    """The device refused a request, did not answer, or the port failed; one line."""


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
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, OSError) as e:
        raise HostError(f"cannot open {port}: {e}") from None


class Host:
    """Requests to a device over ``io``.

    Parameters
    ----------
    io
        ``write(bytes)`` and ``read(n) -> bytes`` (what arrived, possibly nothing, after at
        most a short wait): a pyserial port. ``OSError`` from either (pyserial's
        ``SerialException`` is one) becomes a :class:`HostError`.
    timeout : float
        Seconds to wait for the reply to one try (> 0).
    tries : int
        Sends of the same frame before giving up (>= 1).
    retry_after : float
        Seconds of silence before a retry (>= 0): longer than the device's inter-byte
        timeout.

    Attributes
    ----------
    info : DeviceInfo or None
        What INFO said, once asked.
    retries, stale : int
        Frames sent again, and replies dropped as stale, so far.
    """

    def __init__(self, io, *, timeout: float = 5.0, tries: int = 3, retry_after: float = 0.05):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        if not (isinstance(tries, int) and tries >= 1):
            raise ValueError(f"tries must be an integer >= 1, not {tries!r}")
        if not retry_after >= 0:
            raise ValueError(f"retry_after must be >= 0 seconds, not {retry_after!r}")
        self._io = io
        self._reader = link.FrameReader()
        self.timeout = timeout
        self.tries = tries
        self.retry_after = retry_after
        self.info = None
        self.retries = 0
        self.stale = 0
        self._seq = 0
        self._model_hash = None     # of the configuration last checked

    def _port(self, operation, *args):
        """``operation(*args)`` on the port, its failure as a :class:`HostError`."""
        try:
            return operation(*args)
        except OSError as e:
            name = getattr(self._io, "port", None)
            where = f"the serial port {name}" if isinstance(name, str) else "the serial port"
            detail = " ".join(str(e).split()) or type(e).__name__
            raise HostError(f"{where} stopped answering or was closed: {detail}") from None

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        """Send one frame and return the reply's payload.

        :class:`HostError` if the device refuses it (NAK), if no reply with its ``seq`` comes
        in ``tries`` tries, or if the port fails.
        """
        if self.info is None and cmd != Cmd.INFO:
            self.identify()
        self._seq = (self._seq + 1) & 0xFF
        seq, what = self._seq, Cmd(cmd).name if cmd in Cmd._value2member_map_ else f"{cmd:#04x}"
        request = link.frame(cmd, payload, seq)
        for attempt in range(self.tries):
            if attempt:
                self.retries += 1
                time.sleep(self.retry_after)     # let the device drop any partial frame
            self._port(self._io.write, request)
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                for reply in self._reader.feed(self._port(self._io.read, 4096) or b""):
                    if reply.seq != seq or reply.cmd not in (cmd | 0x80, link.NAK):
                        self.stale += 1
                    elif reply.cmd == link.NAK:
                        code = reply.payload[0] if reply.payload else 0
                        name = Error(code).name if code in Error._value2member_map_ else str(code)
                        raise HostError(f"the device refused {what}: {name.lower().replace('_', ' ')}")
                    else:
                        return reply.payload
        raise HostError(f"no reply to {what} after {self.tries} tries of {self.timeout:g} s")

    # -- commands ------------------------------------------------------------------------
    def identify(self) -> DeviceInfo:
        p = self.request(Cmd.INFO)
        if len(p) != 16:
            raise HostError(f"INFO reply of {len(p)} bytes, expected 16: not an eqfpga device?")
        if p[0] != link.PROTOCOL_VERSION:
            raise HostError(f"the device speaks protocol version {p[0]}, this host "
                            f"{link.PROTOCOL_VERSION}")
        self.info = DeviceInfo(p[0], p[1:9], int.from_bytes(p[9:11], "little"),
                               int.from_bytes(p[11:13], "little"), p[13], p[14], p[15])
        return self.info

    def check(self, config: Config) -> Geometry:
        """The device's geometry, after checking it runs ``config``."""
        info = self.info or self.identify()
        if info.model_hash != bytes.fromhex(config.model_hash[:16]):
            raise HostError(f"the device runs another configuration (model hash "
                            f"{info.model_hash.hex()}, {config.name!r} is {config.model_hash[:16]})")
        g = Geometry(config, info.lanes)
        self._model_hash = g.model_hash
        return g

    def _hash(self) -> bytes:
        """The model hash that state-changing frames carry: the configuration's last checked,
        else the device's own."""
        if self._model_hash is None:
            self._model_hash = (self.info or self.identify()).model_hash
        return self._model_hash

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
        return Params([w1, w2], [np.array([signed(w) for w in words[2]], np.int64),
                                 np.array([signed(w) for w in words[3]], np.int64)])

    def _sample(self, cmd: int, payload: bytes, outputs: int) -> tuple[int, np.ndarray]:
        p = self.request(cmd, payload)
        if len(p) != 1 + outputs:
            raise HostError(f"{Cmd(cmd).name} reply of {len(p)} bytes, expected {1 + outputs}")
        return p[0], np.frombuffer(p[1:], np.uint8).astype(np.int64)

    def classify(self, pixels, outputs: int) -> tuple[int, np.ndarray]:
        """Prediction and output spike counts for one 8-bit image."""
        return self._sample(Cmd.CLASSIFY, bytes(np.asarray(pixels, np.uint8).ravel()), outputs)

    def train(self, pixels, label: int, outputs: int) -> tuple[int, np.ndarray]:
        """One training step; prediction and output spike counts as for :meth:`classify`."""
        payload = self._hash() + bytes([label]) + bytes(np.asarray(pixels, np.uint8).ravel())
        return self._sample(Cmd.TRAIN, payload, outputs)

    def set_shifts(self, w1: int, w2: int, b1: int, b2: int) -> None:
        self.request(Cmd.SHIFTS, self._hash() + bytes([w1, w2, b1, b2]))

    def counters(self) -> dict:
        p = self.request(Cmd.COUNTERS)
        names = ("frames", "crc_errors", "dropped_bytes", "samples")
        return {n: int.from_bytes(p[4 * i:4 * i + 4], "little") for i, n in enumerate(names)}
