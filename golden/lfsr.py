"""The stochastic-rounding random source, specified so hardware can copy it bit for bit.

Generator: a 17-bit Fibonacci LFSR with feedback polynomial x^17 + x^14 + 1 (maximal,
period ``2**17 - 1``). One *step* is::

    feedback = ((s >> 16) ^ (s >> 13)) & 1
    s = ((s << 1) | feedback) & 0x1FFFF

A *draw* returns the current state and then advances it by 17 steps, so consecutive draws
share no bits (17 is coprime with the prime period, so draws visit every non-zero state).
Each learnable tensor (``W_1 .. W_L`` then ``b_1 .. b_L``; a one-hidden-layer network's W1, W2,
b1, b2) owns one *stream*: an LFSR whose draws are consumed in the tensor's update order (see :mod:`eqfpga.golden.ep_update`). Hardware that updates ``P``
weights per cycle computes ``P`` consecutive draws at once with a leap-forward XOR network.

A stream's position is kept as the index ``n`` of its next draw in :func:`draw_table`, i.e.
the state ``step**(17*n)(1)``; :func:`stream_seed` gives each tensor's start.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BITS = 17
PERIOD = (1 << BITS) - 1
STEPS_PER_DRAW = 17
STREAMS = ("w1", "w2", "b1", "b2")


def step(s: int) -> int:
    """One LFSR step (the hardware's combinational next state)."""
    feedback = ((s >> 16) ^ (s >> 13)) & 1
    return ((s << 1) | feedback) & PERIOD


def advance(s: int, steps: int) -> int:
    for _ in range(steps):
        s = step(s)
    return s


@lru_cache(maxsize=1)
def _state_sequence() -> np.ndarray:
    seq = np.empty(PERIOD, dtype=np.int64)
    s = 1
    for i in range(PERIOD):
        seq[i] = s
        s = step(s)
    assert s == 1, "LFSR polynomial is not maximal"
    return seq


@lru_cache(maxsize=1)
def draw_table() -> np.ndarray:
    """``draw_table()[n]`` is the state after ``17*n`` steps from state 1 (read-only)."""
    seq = _state_sequence()
    table = seq[(np.arange(PERIOD, dtype=np.int64) * STEPS_PER_DRAW) % PERIOD]
    table.setflags(write=False)
    return table


def draws(position: int, count: int) -> tuple[np.ndarray, int]:
    """``count`` consecutive draws of a stream at ``position``; returns (values, new position)."""
    table = draw_table()
    idx = (position + np.arange(count, dtype=np.int64)) % PERIOD
    return table[idx], (position + count) % PERIOD


def stream_seed(seed: int, stream: str | int, streams: int = len(STREAMS)) -> int:
    """Start position of one of ``streams`` tensors' streams (by index, or a one-hidden-layer
    network's name in :data:`STREAMS`) for a configuration seed: spread evenly over the period."""
    k = STREAMS.index(stream) if isinstance(stream, str) else stream
    return (seed * 7919 + k * (PERIOD // streams)) % PERIOD


def state_at(position: int) -> int:
    """The 17-bit LFSR state of a stream at ``position`` (what hardware would hold)."""
    return int(draw_table()[position % PERIOD])


@lru_cache(maxsize=1)
def _positions() -> np.ndarray:
    pos = np.empty(PERIOD + 1, dtype=np.int64)
    pos[draw_table()] = np.arange(PERIOD)
    return pos


def position_of(state: int) -> int:
    """Inverse of :func:`state_at`: the stream position whose state is ``state`` (non-zero)."""
    if not 0 < state <= PERIOD:
        raise ValueError(f"{state} is not a non-zero {BITS}-bit LFSR state")
    return int(_positions()[state])
