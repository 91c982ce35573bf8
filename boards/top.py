"""What goes on a board: UART, host link, accelerator and LEDs.

:class:`BoardTop` has plain pins (``uart_rx``, ``uart_tx``, ``leds``) so that the same design
runs on a board (:class:`PlatformTop` wires it to the platform's resources) and in the
virtual board (Verilator drives the pins).
"""

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.build import ResourceError
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from eqfpga.config import Config
from eqfpga.hw.accelerator import Accelerator
from eqfpga.hw.host_link import HostLink
from eqfpga.hw.uart import UARTReceiver, UARTTransmitter

__all__ = ["BoardTop", "PlatformTop"]

LED_BITS = 4


class BoardTop(wiring.Component):
    """The accelerator of ``config`` behind a UART host link.

    Parameters
    ----------
    config, lanes, spram, w1_bank_depth, deep_pipeline : as for
        :class:`~eqfpga.hw.accelerator.Accelerator`
    divisor : int
        Clock cycles per UART bit.
    timeout : int
        Clock cycles of silence that drop a partial frame.

    Members
    -------
    uart_rx : ``In(1)``, uart_tx : ``Out(1)``
    leds : ``Out(4)``
        The last predicted class (binary).
    """

    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    leds: Out(LED_BITS)

    def __init__(self, config: Config, *, lanes: int, divisor: int, timeout: int,
                 spram: bool = False, w1_bank_depth: int | None = None,
                 deep_pipeline: bool = False):
        self._config, self._lanes, self._spram = config, lanes, spram
        self._w1_bank_depth, self._deep_pipeline = w1_bank_depth, deep_pipeline
        self._divisor, self._timeout = divisor, timeout
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTReceiver(self._divisor)
        m.submodules.tx = tx = UARTTransmitter(self._divisor)
        acc = Accelerator(config=self._config, lanes=self._lanes, spram=self._spram, trace=False,
                          w1_bank_depth=self._w1_bank_depth, deep_pipeline=self._deep_pipeline)
        m.submodules.link = link = HostLink(acc, timeout=self._timeout)
        m.d.comb += [rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                     link.rx.payload.eq(rx.data.payload), link.rx.valid.eq(rx.data.valid),
                     self.leds.eq(link.prediction)]
        wiring.connect(m, link.tx, tx.data)
        return m


class PlatformTop(Elaboratable):
    """:class:`BoardTop` on an amaranth-boards platform: its UART and first LEDs, clocked by
    ``clocks`` (a :class:`~eqfpga.boards.clocking.ClockDomainGenerator`) or, without one, by
    the platform's own clock."""

    def __init__(self, top: BoardTop, clocks: Elaboratable | None = None):
        self.top, self.clocks = top, clocks

    def elaborate(self, platform):
        m = Module()
        if self.clocks is not None:
            m.domains.sync = ClockDomain("sync")
            m.submodules.clocks = self.clocks
        m.submodules.top = top = self.top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.uart_rx.eq(rx.i), tx.o.eq(top.uart_tx)]
        for i in range(LED_BITS):
            try:
                led = platform.request("led", i, dir="-")
            except ResourceError:       # a board with fewer LEDs shows fewer bits
                break
            m.submodules[f"led{i}"] = buf = io.Buffer("o", led)
            m.d.comb += buf.o.eq(top.leds[i])
        return m
