"""The stochastic-rounding random source: several LFSR draws per cycle.

Hardware twin of :mod:`eqfpga.golden.lfsr`. The golden stream is a 17-bit Fibonacci LFSR
(x^17 + x^14 + 1) whose *draw* is the current state followed by 17 single steps. An update
unit with ``lanes`` lanes consumes ``lanes`` consecutive draws per cycle, so this unit
computes draw ``n + p`` for every lane ``p`` from the state of draw ``n`` and then jumps the
state by ``17 * lanes`` steps at once.

The LFSR step is linear over GF(2), so any number of steps is a fixed XOR network of the
state bits ("leap-forward"). The networks are derived at elaboration time by pushing each
basis state through the golden step function; the golden model stays the only definition of
the polynomial. A cycle may also consume fewer than ``lanes`` draws (the tail of a tensor).
"""

from amaranth.hdl import Array, Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.golden import lfsr as golden

__all__ = ["leap_matrix", "LFSR"]


def leap_matrix(steps: int) -> list[int]:
    """The ``steps``-step LFSR transition as GF(2) columns.

    Returns a list of :data:`~eqfpga.golden.lfsr.BITS` integers: entry ``i`` is the state
    reached after ``steps`` steps from the state that has only bit ``i`` set. By linearity, the
    state reached from ``s`` is the XOR of the entries for the set bits of ``s``.
    """
    if not isinstance(steps, int) or steps < 0:
        raise TypeError(f"Step count must be a non-negative integer, not {steps!r}")
    return [golden.advance(1 << i, steps) for i in range(golden.BITS)]


def _apply(columns: list[int], state):
    """The XOR network that maps ``state`` (a 17-bit value) through ``columns``."""
    bits = []
    for b in range(golden.BITS):
        # An invertible transition has no all-zero row, but the constant keeps it total.
        bit = Const(0, 1)
        for i, col in enumerate(columns):
            if (col >> b) & 1:
                bit = bit ^ state[i]
        bits.append(bit)
    return Cat(*bits)


def _compose(columns: list[int], state: int) -> int:
    """``state`` mapped through the transition given by ``columns`` (integer arithmetic)."""
    out = 0
    for i, col in enumerate(columns):
        if (state >> i) & 1:
            out ^= col
    return out


class LFSR(wiring.Component):
    """One LFSR stream that produces ``lanes`` consecutive draws per cycle.

    The unit holds the state of the stream's next draw, i.e. ``golden.lfsr.state_at(n)`` for
    the stream position ``n``. Lane ``p`` of :attr:`draws` is draw ``n + p``; advancing moves
    the stream to position ``n + lanes``. The state is never zero: a zero seed would lock the
    LFSR, so loading one is a caller error (``state_at`` never returns zero).

    With ``streams > 1`` the unit holds that many independent streams (the learnable
    tensors each have one) and one set of leap networks serves whichever :attr:`stream` selects:
    the streams are used one at a time, so the lane logic need not be repeated.

    Parameters
    ----------
    lanes : int
        Number of draws presented per cycle (the number of update lanes fed), ``>= 1``.
    init : int or list of int
        State after reset, a non-zero 17-bit value (one per stream); ``1`` is stream position 0.
    streams : int
        Number of streams, ``>= 1``.

    Members
    -------
    stream : ``In(range(streams))``
        The stream that :attr:`draws`, :attr:`advance`, :attr:`load` and :attr:`seed` refer to.
    states : ``Out(ArrayLayout(17, streams))``
        Every stream's state (the state of its next draw).
    seed : ``In(17)``
        State to load, e.g. ``golden.lfsr.state_at(position)`` of a saved stream position.
    load : ``In(1)``
        Replace the state with :attr:`seed` at the next clock edge. Takes precedence over
        :attr:`advance` in the same cycle.
    advance : ``In(1)``
        Consume this cycle's draws: at the next clock edge the stream moves on by
        :attr:`count` draws.
    count : ``In(range(lanes + 1), init=lanes)``
        How many of this cycle's draws :attr:`advance` consumes, lanes ``0 .. count-1``. The
        golden streams consume exactly one draw per weight, so the last word of a tensor (or
        of a W1 row) whose size is not a multiple of ``lanes`` must consume fewer; left
        undriven it stays ``lanes`` and synthesis removes the selection. Values above
        ``lanes`` leave the state as it is.
    draws : ``Out(ArrayLayout(17, lanes))``
        The draws of the current position, combinationally from the state register; lane 0 is
        the state itself. Valid every cycle.
    """

    def __init__(self, *, lanes: int, init: int | list[int] = 1, streams: int = 1):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise TypeError(f"Lane count must be a positive integer, not {lanes!r}")
        if not isinstance(streams, int) or isinstance(streams, bool) or streams < 1:
            raise TypeError(f"Stream count must be a positive integer, not {streams!r}")
        inits = init if isinstance(init, (list, tuple)) else [init] * streams
        if len(inits) != streams:
            raise ValueError(f"{streams} streams need {streams} initial states, not {len(inits)}")
        for v in inits:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= golden.PERIOD:
                raise ValueError(f"Initial state must be a non-zero {golden.BITS}-bit integer, "
                                 f"not {v!r}")
        self._lanes = lanes
        self._inits = list(inits)
        super().__init__({
            "stream": In(range(streams)),
            "states": Out(data.ArrayLayout(golden.BITS, streams)),
            "seed": In(golden.BITS),
            "load": In(1),
            "advance": In(1),
            "count": In(range(lanes + 1), init=lanes),
            "draws": Out(data.ArrayLayout(golden.BITS, lanes)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        regs = Array(Signal(golden.BITS, init=v, name=f"state{i}") for i, v in enumerate(self._inits))
        m.d.comb += [self.states[i].eq(r) for i, r in enumerate(regs)]
        state = Signal(golden.BITS)
        m.d.comb += state.eq(regs[self.stream])

        # Draw p is 17*p steps ahead and the jump to the next cycle is 17*lanes steps; the
        # columns are stepped on one draw at a time (linearity) rather than recomputed per lane.
        step_draw = leap_matrix(golden.STEPS_PER_DRAW)
        columns = leap_matrix(0)
        for p in range(self._lanes):
            m.d.comb += self.draws[p].eq(state if p == 0 else _apply(columns, state))
            columns = [_compose(step_draw, col) for col in columns]
        jump = _apply(columns, state)

        selected = regs[self.stream]
        with m.If(self.load):
            m.d.sync += selected.eq(self.seed)
        with m.Elif(self.advance):
            # Draw k is already the state k draws on, so a partial advance is only a mux.
            with m.Switch(self.count):
                for k in range(1, self._lanes):
                    with m.Case(k):
                        m.d.sync += selected.eq(self.draws[k])
                with m.Case(self._lanes):
                    m.d.sync += selected.eq(jump)
        return m
