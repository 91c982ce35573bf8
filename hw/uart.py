"""8N1 UART receiver and transmitter (hardware twin of :mod:`eqfpga.golden.uart`).

Both take ``divisor``, the clock cycles per bit (``clock_hz // baud``). Bytes travel as
:class:`amaranth.lib.stream` flows of 8 bits.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from eqfpga.hw.flow import valid_signature

__all__ = ["UARTReceiver", "UARTTransmitter"]


class _UARTComponent(wiring.Component):
    """A UART side: its bit time, ``divisor`` clock cycles."""

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"UART divisor must be an integer of at least 4 cycles per bit, not {divisor!r}")
        self._divisor = divisor
        super().__init__()


class UARTReceiver(_UARTComponent):
    """Receives bytes from the ``rx`` line.

    Members
    -------
    rx : ``In(1)``
        The line (asynchronous; synchronised here). Idle high.
    data : ``Out(valid_signature(8))``
        One byte, valid for one cycle, after the middle of its stop bit.
    error : ``Out(1)``
        High for one cycle when a byte is dropped for a low stop bit.
    """

    rx: In(1, init=1)
    data: Out(valid_signature(8))
    error: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(d))
        bit = Signal(range(10))
        shreg = Signal(8)
        m.d.sync += [self.data.valid.eq(0), self.error.eq(0)]
        with m.FSM():
            with m.State("HUNT"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "HUNT"
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "BITS"
            with m.State("BITS"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(d - 1), bit.eq(bit + 1)]
                    with m.If(bit == 8):
                        with m.If(rx):
                            m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                            m.next = "HUNT"
                        with m.Else():
                            m.d.sync += self.error.eq(1)
                            m.next = "RECOVER"
                    with m.Else():
                        m.d.sync += shreg.eq(Cat(shreg[1:], rx))
            with m.State("RECOVER"):
                with m.If(rx):
                    m.next = "HUNT"
        return m


class UARTTransmitter(_UARTComponent):
    """Sends the bytes of ``data`` on the ``tx`` line, back to back.

    Members
    -------
    data : ``In(stream.Signature(8))``
        Bytes to send; taken when the previous one has left.
    tx : ``Out(1)``
        The line, idle high.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self._divisor
        timer = Signal(range(d))
        bits = Signal(10)
        count = Signal(range(11))
        # The next byte is taken in the last cycle of the stop bit: bytes go back to back.
        last = (count == 0) | ((count == 1) & (timer == 0))
        m.d.comb += self.data.ready.eq(last)
        with m.If(count != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(d - 1), count.eq(count - 1), bits.eq(bits >> 1),
                             self.tx.eq(Mux(count == 1, 1, bits[1]))]   # after the stop bit: idle
        with m.If(last & self.data.valid):
            m.d.sync += [bits.eq(Cat(0, self.data.payload, 1)), count.eq(10), timer.eq(d - 1),
                         self.tx.eq(0)]
        return m
