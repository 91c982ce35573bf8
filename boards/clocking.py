"""The board's ``sync`` clock: the platform's own clock, or a PLL that makes another from it.

:func:`ice40_pll_params` and :func:`ecp5_pll_params` choose divider settings the way Project
IceStorm's ``icepll`` and Project Trellis's ``ecppll`` do (every setting inside the
datasheet's VCO and phase-detector ranges, the output closest to the request).
:class:`ClockDomainGenerator` instantiates the PLL and holds ``sync`` in reset until the PLL
has locked and a power-on delay has passed (iCE40 block RAMs read 0 for about 3 us after
configuration).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

__all__ = ["ClockDomainGenerator", "PLLError", "ice40_pll_params", "ecp5_pll_params"]

POWER_ON_DELAY_S = 15e-6


class PLLError(Exception):
    """No PLL setting makes the requested clock; one line."""


@dataclass(frozen=True)
class ICE40PLL:
    divr: int
    divf: int
    divq: int
    filter_range: int
    hz: float          # the output frequency these settings give


@dataclass(frozen=True)
class ECP5PLL:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    hz: float


def ice40_pll_params(f_in: float, f_out: float) -> ICE40PLL:
    """SB_PLL40 settings (simple feedback) for ``f_out`` from ``f_in``: PFD 10–133 MHz, VCO
    533–1066 MHz, output VCO / 2**DIVQ."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                hz = f_vco / 2 ** divq
                if best is None or abs(hz - f_out) < abs(best.hz - f_out):
                    rng = next(i for i, top in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                               if f_pfd < top) if f_pfd < 101e6 else 6
                    best = ICE40PLL(divr, divf, divq, rng, hz)
    if best is None or abs(best.hz - f_out) > 0.01 * f_out:
        raise PLLError(f"no iCE40 PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


def ecp5_pll_params(f_in: float, f_out: float) -> ECP5PLL:
    """EHXPLLL settings (feedback from CLKOP) for ``f_out`` from ``f_in``: PFD 3.125–400 MHz,
    VCO 400–800 MHz (nearest 600), output ``f_in * CLKFB_DIV / CLKI_DIV``."""
    best = None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            hz = f_pfd * clkfb_div
            dividers = [d for d in range(1, 129) if 400e6 <= hz * d <= 800e6]
            if not dividers:
                continue
            clkop_div = min(dividers, key=lambda d: abs(hz * d - 600e6))   # mid-range VCO
            if best is None or abs(hz - f_out) < abs(best.hz - f_out):
                best = ECP5PLL(clki_div, clkfb_div, clkop_div, hz)
    if best is None or abs(best.hz - f_out) > 0.01 * f_out:
        raise PLLError(f"no ECP5 PLL setting makes {f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    return best


class ClockDomainGenerator(Elaboratable):
    """Drives the ``sync`` domain (which the caller defines) at ``hz`` from the platform's
    default clock through a PLL.

    ``family`` is ``"ice40"`` (SB_PLL40_PAD: the clock pin must be a PLL pad, as the
    iCEBreaker's 12 MHz pin is) or ``"ecp5"`` (EHXPLLL)."""

    def __init__(self, family: str, hz: float):
        self.family, self.hz = family, hz

    def elaborate(self, platform):
        m = Module()
        f_in = platform.default_clk_frequency
        pin = platform.request(platform.default_clk, dir="-")
        clk, lock = Signal(), Signal()
        if self.family == "ice40":
            p = ice40_pll_params(f_in, self.hz)
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf,
                p_DIVQ=p.divq, p_FILTER_RANGE=p.filter_range,
                i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk, o_LOCK=lock)
        else:
            from amaranth.lib import io
            p = ecp5_pll_params(f_in, self.hz)
            m.submodules.clk_buf = buf = io.Buffer("i", pin)
            m.submodules.pll = Instance(
                "EHXPLLL", a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{p.hz / 1e6:g}", a_ICP_CURRENT="12",
                a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD", p_CLKI_DIV=p.clki_div,
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
                p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                p_CLKFB_DIV=p.clkfb_div,
                i_CLKI=buf.i, i_CLKFB=clk, i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clk, o_LOCK=lock)
        # sync stays in reset until the PLL has been locked for POWER_ON_DELAY_S
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        delay = int(POWER_ON_DELAY_S * self.hz)
        timer = Signal(range(delay + 1))
        ready = Signal()
        m.d.comb += ClockSignal("por").eq(clk)
        with m.If(~lock):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        # the sync domain itself is defined by the top level, above everything it clocks
        m.d.comb += [ClockSignal("sync").eq(clk), ResetSignal("sync").eq(~ready)]
        return m
