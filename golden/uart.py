"""The UART line: 8 data bits, no parity, one stop bit (8N1), LSB first; idle high.

Hardware twin: :mod:`eqfpga.hw.uart`. ``divisor`` is the number of clock cycles per bit. The
receiver samples each bit in the middle of its cell: it sees the falling edge of the start
bit, waits ``divisor // 2`` cycles, checks the start bit is still low (otherwise it was a
glitch and it hunts again), then samples the 8 data bits and the stop bit ``divisor`` cycles
apart. A byte whose stop bit is low is dropped (a framing error) and the receiver waits for
the line to go high before hunting again.
"""

from __future__ import annotations

import numpy as np

__all__ = ["encode", "decode"]


def encode(data: bytes, divisor: int, gap: int = 0) -> np.ndarray:
    """Line level in every clock cycle while sending ``data`` (``gap`` idle bits between bytes)."""
    bits = []
    for b in data:
        bits += [0] + [(b >> i) & 1 for i in range(8)] + [1] * (1 + gap)
    return np.repeat(np.array(bits, np.uint8), divisor)


def decode(line: np.ndarray, divisor: int) -> bytes:
    """The bytes a receiver recovers from the line levels ``line`` (one per clock cycle)."""
    out, t, n = bytearray(), 0, len(line)
    while t < n:
        if line[t]:                     # hunting: wait for the start bit's falling edge
            t += 1
            continue
        mid = t + divisor // 2
        if mid >= n:
            break
        if line[mid]:                   # a glitch, not a start bit
            t = mid + 1
            continue
        samples = [mid + divisor * (i + 1) for i in range(9)]
        if samples[-1] >= n:
            break
        bits = [int(line[s]) for s in samples]
        t = samples[-1]
        if bits[8]:
            out.append(sum(b << i for i, b in enumerate(bits[:8])))
        while t < n and not line[t]:    # framing error: wait for the line to recover
            t += 1
    return bytes(out)
